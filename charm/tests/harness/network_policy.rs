//! The NetworkPolicy through the harness, against a fake Kubernetes API
//! server on loopback that records every request.

use std::sync::{Arc, Mutex};

use livepatch_charm::charm::LivepatchCharm;
use livepatch_charm::reconcile::Endpoints;
use ops::testing::State;
use ops::{Event, Status};

use crate::common::{serve, Seen};
use crate::world::*;

struct FakeApi {
    seen: Arc<Mutex<Vec<Seen>>>,
    runtime: tokio::runtime::Runtime,
    url: String,
}

impl FakeApi {
    /// A server answering every request with `status`.
    fn start(status: u16) -> FakeApi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let addr = runtime.block_on(serve(None, move |req: Seen| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(req.clone());
                if status == 200 {
                    let body = if req.method == "DELETE" {
                        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"}"#.to_string()
                    } else {
                        // Echo the applied object back, as the API server does.
                        String::from_utf8_lossy(&req.body).to_string()
                    };
                    (200, "application/json", body)
                } else {
                    (
                        status,
                        "application/json",
                        format!(r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"networkpolicies is forbidden","reason":"Forbidden","code":{status}}}"#),
                    )
                }
            }
        }));
        FakeApi {
            seen,
            runtime,
            url: format!("http://{addr}"),
        }
    }

    fn charm(&self) -> LivepatchCharm {
        LivepatchCharm {
            endpoints: Endpoints {
                kube: Some(kube::Config::new(self.url.parse().unwrap())),
                admin_url: None,
            },
        }
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = &self.runtime;
    }
}

const PATH: &str = "/apis/networking.k8s.io/v1/namespaces/test-model/networkpolicies/livepatch-server-k8s-livepatch";

fn enabled() -> State {
    world()
        .with_config("network-policy.enabled", true)
        .with_config("server.admin-port", 9090)
        .with_config("network-policy.admin-cidrs", "10.0.0.0/8")
        .with_config("network-policy.metrics-cidrs", "10.1.0.0/16")
}

#[test]
fn a_trusted_leader_applies_the_policy_once_and_deletes_it_when_disabled() {
    let api = FakeApi::start(200);
    let out = run_with(api.charm(), &enabled(), Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status.name,
        ops::hookcmds::StatusName::Active
    );
    let requests = api.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].0, "PATCH");
    assert!(requests[0].1.starts_with(PATH), "{requests:?}");
    let body: serde_json::Value =
        serde_json::from_slice(&api.seen.lock().unwrap()[0].body).unwrap();
    assert_eq!(
        body["spec"]["ingress"][1]["from"][0]["ipBlock"]["cidr"],
        "10.0.0.0/8"
    );
    assert_eq!(body["spec"]["ingress"][1]["ports"][0]["port"], 9090);
    // The server fences /metrics and the admin routes by peer address too.
    let e = env(&out);
    assert_eq!(
        e["LP_SERVER_METRICS_ALLOWED_CIDRS"],
        "10.1.0.0/16,127.0.0.0/8,::1/128"
    );
    assert_eq!(
        e["LP_SERVER_ADMIN_ALLOWED_CIDRS"],
        "10.0.0.0/8,127.0.0.0/8,::1/128"
    );

    // Nothing changed: no API call.
    let again = run_with(api.charm(), &out.state, Event::ConfigChanged);
    assert_eq!(api.requests().len(), 1);
    // A new leader applies it again, whatever it remembers.
    run_with(api.charm(), &again.state, Event::LeaderElected);
    assert_eq!(api.requests().len(), 2);

    // Disabled: the policy is deleted.
    let off = again
        .state
        .clone()
        .with_config("network-policy.enabled", false);
    run_with(api.charm(), &off, Event::ConfigChanged);
    let requests = api.requests();
    let (method, path) = requests.last().unwrap();
    assert_eq!(method, "DELETE");
    assert!(path.starts_with(PATH), "{path}");
}

#[test]
fn without_trust_the_unit_is_blocked_with_the_command_to_run_and_retries() {
    let api = FakeApi::start(403);
    let out = run_with(api.charm(), &enabled(), Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("network-policy.enabled needs cluster access; run: juju trust livepatch-server-k8s --scope=cluster")
    );
    // The server still runs: the policy is a fence, not a dependency.
    assert!(service_active(&out));
    // `juju trust` fires config-changed: the charm tries again.
    run_with(api.charm(), &out.state, Event::ConfigChanged);
    assert_eq!(api.requests().len(), 2);
}

#[test]
fn followers_never_call_the_kubernetes_api() {
    let api = FakeApi::start(200);
    let state = State {
        leader: false,
        ..enabled()
    };
    run_with(api.charm(), &state, Event::ConfigChanged);
    assert!(api.requests().is_empty());
}

#[test]
fn a_policy_that_was_never_enabled_costs_no_api_call() {
    let api = FakeApi::start(200);
    run_with(api.charm(), &world(), Event::ConfigChanged);
    assert!(api.requests().is_empty());
}
