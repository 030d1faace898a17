//! The resource-token exchange against a real HTTPS server on loopback with
//! a private CA, and through a real CONNECT proxy.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{connect_proxy, serve, Reply, Seen, TestPki};
use livepatch_charm::contracts::{Exchange, ExchangeError, SystemInfo};
use livepatch_charm::desired::Proxies;

fn system() -> SystemInfo {
    SystemInfo {
        architecture: "x86_64".into(),
        kernel: "6.8.0-45-generic".into(),
        version: "24.04.1 LTS (Noble Numbat)".into(),
        version_id: "24.04".into(),
        version_codename: "noble".into(),
    }
}

fn exchange(url: String, ca: Option<&str>, proxies: Proxies) -> Exchange {
    let mut e = Exchange::new(&url, ca.map(str::to_string), proxies);
    e.system = system();
    e.system_bundles = Vec::new();
    e.timeout = Duration::from_secs(10);
    e
}

/// A contracts service that checks what the charm sends.
async fn contracts(
    pki: &TestPki,
    machine_token: &'static str,
    resource_token: &'static str,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = serve(Some(pki), move |req: Seen| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(req.clone());
            let reply: Reply = match (req.method.as_str(), req.path.as_str()) {
                ("POST", "/v1/context/machines/token") => {
                    if req.header("authorization") != Some("Bearer contract-token-123") {
                        (401, "application/json", r#"{"code":"unauthorized"}"#.into())
                    } else {
                        (
                            200,
                            "application/json",
                            format!(r#"{{"machineToken":"{machine_token}"}}"#),
                        )
                    }
                }
                ("GET", "/v1/resources/livepatch-onprem/context/machines/livepatch-onprem") => {
                    if req.header("authorization") != Some(&format!("Bearer {machine_token}")) {
                        (401, "application/json", "{}".into())
                    } else {
                        (
                            200,
                            "application/json",
                            format!(r#"{{"resourceToken":"{resource_token}"}}"#),
                        )
                    }
                }
                _ => (404, "text/plain", "not found".into()),
            };
            reply
        }
    })
    .await;
    (format!("https://localhost:{}", addr.port()), seen)
}

#[tokio::test]
async fn the_exchange_trades_the_contract_token_for_a_resource_token() {
    let pki = TestPki::new();
    let (url, seen) = contracts(&pki, "machine-tok", "resource-tok").await;
    let token = exchange(url, Some(&pki.ca_pem), Proxies::default())
        .resource_token("contract-token-123")
        .await
        .unwrap();
    assert_eq!(token.expose(), "resource-tok");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "architecture": "x86_64",
            "hostType": "container",
            "machineId": "livepatch-onprem",
            "os": {
                "distribution": "24.04.1 LTS (Noble Numbat)",
                "kernel": "6.8.0-45-generic",
                "release": "24.04",
                "series": "noble",
                "type": "Linux"
            }
        })
    );
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn a_server_whose_ca_is_not_trusted_is_refused() {
    let pki = TestPki::new();
    let (url, seen) = contracts(&pki, "m", "r").await;
    let err = exchange(url, None, Proxies::default())
        .resource_token("contract-token-123")
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::MachineToken(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot fetch the resource token: failed to fetch the machine token: "),
        "{text}"
    );
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_contract_token_fails_without_repeating_it() {
    let pki = TestPki::new();
    let (url, _) = contracts(&pki, "m", "r").await;
    let err = exchange(url, Some(&pki.ca_pem), Proxies::default())
        .resource_token("wrong-token")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("failed to fetch the machine token: the contracts service answered 401"),
        "{err}"
    );
    assert!(!err.contains("wrong-token"));
}

#[tokio::test]
async fn empty_tokens_are_errors_never_saved() {
    let pki = TestPki::new();
    let (url, _) = contracts(&pki, "", "r").await;
    let err = exchange(url, Some(&pki.ca_pem), Proxies::default())
        .resource_token("contract-token-123")
        .await
        .unwrap_err();
    assert!(
        err.to_string().ends_with("the reply holds no machineToken"),
        "{err}"
    );

    let (url, _) = contracts(&pki, "m", "").await;
    let err = exchange(url, Some(&pki.ca_pem), Proxies::default())
        .resource_token("contract-token-123")
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::ResourceToken(_)));
    assert!(
        err.to_string()
            .ends_with("the reply holds no resourceToken"),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_replies_are_reported() {
    let pki = TestPki::new();
    let addr = serve(Some(&pki), |_| async {
        (200, "application/json", "<html>".to_string())
    })
    .await;
    let err = exchange(
        format!("https://localhost:{}", addr.port()),
        Some(&pki.ca_pem),
        Proxies::default(),
    )
    .resource_token("t")
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("the reply is not the expected JSON"), "{err}");
}

#[tokio::test]
async fn the_models_https_proxy_is_used_unless_no_proxy_says_otherwise() {
    let pki = TestPki::new();
    let (url, _) = contracts(&pki, "m", "r").await;
    let (proxy, tunnels) = connect_proxy().await;
    let proxies = Proxies {
        http: String::new(),
        https: format!("http://{proxy}"),
        no_proxy: String::new(),
    };
    let token = exchange(url.clone(), Some(&pki.ca_pem), proxies.clone())
        .resource_token("contract-token-123")
        .await
        .unwrap();
    assert_eq!(token.expose(), "r");
    let port = url.rsplit(':').next().unwrap().to_string();
    let seen = tunnels.lock().unwrap().clone();
    // One tunnel per connection; reqwest may reuse it for the second call.
    assert!(!seen.is_empty(), "the proxy saw no CONNECT");
    assert!(
        seen.iter().all(|t| *t == format!("localhost:{port}")),
        "{seen:?}"
    );

    tunnels.lock().unwrap().clear();
    let bypass = Proxies {
        no_proxy: "localhost".into(),
        ..proxies
    };
    exchange(url, Some(&pki.ca_pem), bypass)
        .resource_token("contract-token-123")
        .await
        .unwrap();
    assert!(
        tunnels.lock().unwrap().is_empty(),
        "no-proxy must bypass the proxy"
    );
}

#[tokio::test]
async fn an_unreachable_service_times_out_with_a_clear_error() {
    // A listener that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut e = exchange(
        format!("https://localhost:{port}"),
        None,
        Proxies::default(),
    );
    e.timeout = Duration::from_millis(300);
    let err = e.resource_token("t").await.unwrap_err().to_string();
    assert!(err.contains("failed to fetch the machine token"), "{err}");
    assert!(
        err.to_lowercase().contains("timed out") || err.to_lowercase().contains("timeout"),
        "{err}"
    );
}
