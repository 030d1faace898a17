//! The NetworkPolicy calls against a scripted fake Kubernetes API server on
//! loopback: each test lists the requests it expects, in order, with their
//! answers; an unexpected request, or an expected one that never came,
//! fails the test.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use common::{serve, Reply, Seen};
use livepatch_charm::netpol::{self, NetpolError, PolicySpec};
use livepatch_charm::options::Cidr;

/// One expected request: method, path (query included) prefix, and the answer.
type Step = (&'static str, &'static str, Reply);

struct Script {
    steps: Arc<Mutex<VecDeque<Step>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    unexpected: Arc<Mutex<Vec<String>>>,
}

impl Script {
    async fn start(steps: Vec<Step>) -> (Script, kube::Client) {
        let script = Script {
            steps: Arc::new(Mutex::new(steps.into())),
            seen: Arc::default(),
            unexpected: Arc::default(),
        };
        let (steps, seen, unexpected) = (
            script.steps.clone(),
            script.seen.clone(),
            script.unexpected.clone(),
        );
        let addr = serve(None, move |req: Seen| {
            let (steps, seen, unexpected) = (steps.clone(), seen.clone(), unexpected.clone());
            async move {
                seen.lock().unwrap().push(req.clone());
                let next = steps.lock().unwrap().pop_front();
                match next {
                    Some((method, path, reply))
                        if req.method == method && req.path.starts_with(path) =>
                    {
                        reply
                    }
                    other => {
                        unexpected.lock().unwrap().push(format!(
                            "{} {} (expected {:?})",
                            req.method,
                            req.path,
                            other.map(|(m, p, _)| format!("{m} {p}"))
                        ));
                        (500, "application/json", "{}".into())
                    }
                }
            }
        })
        .await;
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        (script, client)
    }

    /// Fails unless every expected request came and nothing else did.
    fn finish(self) -> Vec<Seen> {
        let unexpected = self.unexpected.lock().unwrap().clone();
        assert!(unexpected.is_empty(), "unexpected requests: {unexpected:?}");
        let missing: Vec<String> = self
            .steps
            .lock()
            .unwrap()
            .iter()
            .map(|(m, p, _)| format!("{m} {p}"))
            .collect();
        assert!(
            missing.is_empty(),
            "expected requests never came: {missing:?}"
        );
        self.seen.lock().unwrap().clone()
    }
}

const PATH: &str =
    "/apis/networking.k8s.io/v1/namespaces/lp-model/networkpolicies/livepatch-livepatch";

fn spec() -> PolicySpec {
    PolicySpec {
        app: "livepatch".into(),
        namespace: "lp-model".into(),
        admin_port: Some(9090),
        admin_cidrs: vec![Cidr::parse("10.0.0.0/8").unwrap()],
    }
}

fn status(code: u16, reason: &str) -> Reply {
    (
        code,
        "application/json",
        format!(
            r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"{reason}","reason":"{reason}","code":{code}}}"#
        ),
    )
}

fn policy_reply() -> Reply {
    let mut body = serde_json::to_value(netpol::build(&spec())).unwrap();
    body["apiVersion"] = "networking.k8s.io/v1".into();
    body["kind"] = "NetworkPolicy".into();
    (200, "application/json", body.to_string())
}

#[tokio::test]
async fn apply_sends_one_server_side_apply_with_the_whole_policy() {
    let (script, client) = Script::start(vec![("PATCH", PATH, policy_reply())]).await;
    netpol::apply(client, &spec()).await.unwrap();
    let seen = script.finish();
    let req = &seen[0];
    assert!(
        req.path.contains("fieldManager=livepatch-server-k8s-charm"),
        "{}",
        req.path
    );
    assert!(req.path.contains("force=true"), "{}", req.path);
    assert_eq!(
        req.header("content-type"),
        Some("application/apply-patch+yaml")
    );
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["kind"], "NetworkPolicy");
    assert_eq!(body["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(body["metadata"]["namespace"], "lp-model");
    assert_eq!(
        body["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "livepatch"
    );
    assert_eq!(body["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
    let rules = body["spec"]["ingress"].as_array().unwrap();
    assert_eq!(rules[1]["from"][0]["ipBlock"]["cidr"], "10.0.0.0/8");
    assert_eq!(rules[1]["ports"][0]["port"], 9090);
}

#[tokio::test]
async fn an_untrusted_application_gets_forbidden() {
    let (script, client) = Script::start(vec![("PATCH", PATH, status(403, "Forbidden"))]).await;
    let err = netpol::apply(client, &spec()).await.unwrap_err();
    assert!(matches!(err, NetpolError::Forbidden), "{err}");
    script.finish();
}

#[tokio::test]
async fn delete_removes_the_policy_and_accepts_one_that_is_gone() {
    let ok = (
        200,
        "application/json",
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"}"#.to_string(),
    );
    let (script, client) = Script::start(vec![
        ("DELETE", PATH, ok),
        ("DELETE", PATH, status(404, "NotFound")),
    ])
    .await;
    netpol::delete(client.clone(), "livepatch", "lp-model")
        .await
        .unwrap();
    netpol::delete(client, "livepatch", "lp-model")
        .await
        .unwrap();
    script.finish();
}

#[tokio::test]
async fn other_api_errors_are_reported() {
    let (script, client) = Script::start(vec![
        ("DELETE", PATH, status(403, "Forbidden")),
        ("PATCH", PATH, status(422, "Invalid")),
    ])
    .await;
    assert!(matches!(
        netpol::delete(client.clone(), "livepatch", "lp-model")
            .await
            .unwrap_err(),
        NetpolError::Forbidden
    ));
    let err = netpol::apply(client, &spec()).await.unwrap_err();
    assert!(matches!(err, NetpolError::Api(_)), "{err}");
    script.finish();
}

#[tokio::test]
#[should_panic(expected = "expected requests never came")]
async fn the_script_fails_when_an_expected_request_is_missing() {
    let (script, _client) = Script::start(vec![("PATCH", PATH, policy_reply())]).await;
    script.finish();
}
