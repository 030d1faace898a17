//! Raw HTTP behaviour of the double over its socket: envelopes, routing
//! errors, the request checks of pebble.md, in Pebble's words.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::*;
use crate::pebble::protocol;
use crate::pebble::transport::{Transport, UnixTransport};

async fn with_double<F, Fut>(container: Container, f: F)
where
    F: FnOnce(UnixTransport) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pebble.socket");
    let double = PebbleDouble::start(&socket, &container).await.unwrap();
    f(UnixTransport::new(&socket)).await;
    double.stop().await;
}

async fn send(t: &UnixTransport, req: Request<Bytes>) -> (StatusCode, Value) {
    let resp = t.send(req).await.unwrap();
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );
    (resp.status(), serde_json::from_slice(resp.body()).unwrap())
}

fn raw(method: Method, uri: &str, body: &str) -> Request<Bytes> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn routing_errors_and_the_envelope_read_like_pebble() {
    with_double(Container::new("web"), |t| async move {
        let (code, body) = send(&t, protocol::get("/v1/nope", &[])).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"type":"error","status-code":404,"status":"Not Found","result":{"message":"invalid API endpoint requested"}})
        );
        let (code, body) = send(&t, raw(Method::PUT, "/v1/plan", "")).await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["result"]["message"], "method \"PUT\" not allowed");
        let (code, body) = send(&t, protocol::get_system_info()).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!((body["type"].as_str(), body["result"]["version"].as_str()), (Some("sync"), Some("v1.32.1")));
        let (code, body) = send(&t, protocol::get("/v1/plan", &[("format", "json".into())])).await;
        assert_eq!((code, body["result"]["message"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid format \"json\"")));
        let (_, body) = send(&t, protocol::get("/v1/services/web", &[])).await;
        assert_eq!(body["result"]["message"], "not implemented");
    })
    .await;
}

#[tokio::test]
async fn layer_requests_are_checked_in_pebbles_order() {
    with_double(Container::new("web"), |t| async move {
        async fn check(t: &UnixTransport, body: Value, message: &str) {
            let (code, resp) = send(t, protocol::post_json("/v1/layers", &body)).await;
            assert_eq!((code, resp["result"]["message"].as_str()), (StatusCode::BAD_REQUEST, Some(message)), "{body}");
        }
        check(&t, json!({"action": "remove"}), "invalid action \"remove\"").await;
        check(&t, json!({"action": "add"}), "label must be set").await;
        check(&t, json!({"action": "add", "label": "a", "format": "json"}), "invalid format \"json\"").await;
        check(&t, json!({"action": "add", "label": "a", "format": "yaml", "layer": "bad: ["}), "cannot parse layer YAML: did not find expected node content at line 2 column 1, while parsing a flow node").await;
        check(&t, json!({"action": "add", "label": "a", "format": "yaml", "layer": "services: {s: {command: x}}"}), "layer \"a\" must define \"override\" for service \"s\"").await;
        let good = json!({"action": "add", "label": "a", "format": "yaml", "layer": "services: {s: {override: replace, command: x}}"});
        let (code, resp) = send(&t, protocol::post_json("/v1/layers", &good)).await;
        assert_eq!((code, resp["result"].clone()), (StatusCode::OK, json!(true)));
        check(&t, good, "layer \"a\" already exists").await;
    })
    .await;
}

#[tokio::test]
async fn service_actions_validate_names_and_actions() {
    let container = Container::new("web").with_layer(
        "base",
        crate::pebble::plan::parse_layer("services: {s: {override: replace, command: x}}").unwrap(),
    );
    with_double(container, |t| async move {
        async fn check(t: &UnixTransport, body: Value, message: &str) {
            let (code, resp) = send(t, protocol::post_json("/v1/services", &body)).await;
            assert_eq!(
                (code, resp["result"]["message"].as_str()),
                (StatusCode::BAD_REQUEST, Some(message)),
                "{body}"
            );
        }
        check(
            &t,
            json!({"action": "start", "services": []}),
            "must specify services for start action",
        )
        .await;
        check(
            &t,
            json!({"action": "start", "services": ["x"]}),
            "cannot start services: service \"x\" does not exist",
        )
        .await;
        check(
            &t,
            json!({"action": "replan", "services": ["s"]}),
            "replan accepts no service names",
        )
        .await;
        check(
            &t,
            json!({"action": "dance", "services": ["s"]}),
            "invalid action \"dance\"",
        )
        .await;
        let (code, resp) = send(
            &t,
            protocol::post_json(
                "/v1/services",
                &json!({"action": "autostart", "services": []}),
            ),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(
            resp["result"],
            json!({"message": "no default services", "kind": "no-default-services"})
        );
        let (code, resp) = send(&t, protocol::get("/v1/changes/99", &[])).await;
        assert_eq!(
            (code, resp["result"]["message"].as_str()),
            (
                StatusCode::NOT_FOUND,
                Some("cannot find change with id \"99\"")
            )
        );
        let (code, resp) = send(
            &t,
            protocol::get("/v1/changes", &[("select", "some".into())]),
        )
        .await;
        assert_eq!(
            (code, resp["result"]["message"].as_str()),
            (
                StatusCode::BAD_REQUEST,
                Some("select should be one of: all,in-progress,ready")
            )
        );
    })
    .await;
}

#[tokio::test]
async fn file_requests_check_accept_paths_actions_and_boundaries() {
    with_double(Container::new("web"), |t| async move {
        let (code, resp) = send(&t, protocol::get("/v1/files", &[("action", "read".into()), ("path", "/x".into())])).await;
        assert_eq!((code, resp["result"]["message"].as_str()), (StatusCode::BAD_REQUEST, Some("must accept multipart/form-data")));
        let mut no_path = protocol::get("/v1/files", &[("action", "read".into())]);
        no_path.headers_mut().insert("accept", http::HeaderValue::from_static("multipart/form-data"));
        let (_, resp) = send(&t, no_path).await;
        assert_eq!(resp["result"]["message"], "must specify one or more paths");
        let (_, resp) = send(&t, protocol::post_json("/v1/files", &json!({"action": "write"}))).await;
        assert_eq!(resp["result"]["message"], "must use multipart with \"write\" action");
        let short = protocol::push("/a", b"x", false, &Default::default(), "short");
        let (code, resp) = send(&t, short).await;
        assert_eq!((code, resp["result"]["message"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid boundary")));
        let (code, resp) = send(&t, protocol::list_files("/nope", None, false)).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(resp["result"], json!({"message": "stat /nope: no such file or directory", "kind": "not-found"}));
        let (code, resp) = send(&t, protocol::get("/v1/files", &[("action", "list".into()), ("path", "rel".into())])).await;
        assert_eq!((code, resp["result"]["message"].as_str()), (StatusCode::BAD_REQUEST, Some("path must be absolute, got \"rel\"")));
        let bad_mode = json!({"action": "make-dirs", "dirs": [{"path": "/d", "permissions": "7777"}]});
        let (_, resp) = send(&t, protocol::post_json("/v1/files", &bad_mode)).await;
        assert_eq!(
            resp["result"],
            json!([{"path": "/d", "error": {"message": "permissions must be a 3-digit octal string, got \"7777\"", "kind": "generic-file-error"}}])
        );
    })
    .await;
}

#[tokio::test]
async fn exec_requests_fail_before_starting_like_pebble() {
    let container =
        Container::new("web").with_exec(crate::testing::ExecHandler::ok(&["echo"], "hi\n"));
    with_double(container, |t| async move {
        let (code, resp) = send(&t, protocol::post_json("/v1/exec", &json!({"command": []}))).await;
        assert_eq!(
            (code, resp["result"]["message"].as_str()),
            (StatusCode::BAD_REQUEST, Some("must specify command"))
        );
        let (code, resp) = send(
            &t,
            protocol::post_json("/v1/exec", &json!({"command": ["nope"]})),
        )
        .await;
        assert_eq!(
            (code, resp["result"]["message"].as_str()),
            (
                StatusCode::BAD_REQUEST,
                Some("cannot find executable \"nope\"")
            )
        );
        let (code, resp) = send(
            &t,
            protocol::post_json(
                "/v1/exec",
                &json!({"command": ["echo"], "working-dir": "/x"}),
            ),
        )
        .await;
        assert_eq!(
            (code, resp["result"]["message"].as_str()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("cannot call exec: working directory \"/x\" does not exist")
            )
        );
        let (code, resp) = send(
            &t,
            protocol::post_json(
                "/v1/exec",
                &json!({"command": ["echo"], "environment": {"A": "1"}}),
            ),
        )
        .await;
        assert_eq!(code, StatusCode::ACCEPTED);
        assert_eq!(resp["result"]["environment"]["A"], "1");
        assert_eq!(resp["result"]["environment"]["LANG"], "C.UTF-8");
        let task = resp["result"]["task-id"].as_str().unwrap();
        let (code, resp) = send(
            &t,
            protocol::get(&format!("/v1/tasks/{task}/websocket/stderr"), &[]),
        )
        .await;
        assert_eq!(
            (code, resp["result"]["message"].as_str()),
            (
                StatusCode::NOT_FOUND,
                Some(format!("cannot find stderr websocket for task {task:?}").as_str())
            )
        );
        // Nobody connects: after 5 seconds the task fails like Pebble's.
        let change = resp_change(&t, task).await;
        let (_, done) = send(
            &t,
            protocol::wait_change(
                &protocol::ChangeId(change),
                Some(std::time::Duration::from_secs(10)),
            ),
        )
        .await;
        assert_eq!(done["result"]["status"], "Error");
        let err = done["result"]["err"].as_str().unwrap();
        assert!(
            err.contains(&format!(
                "exec {task}: timeout waiting for websocket connections: context deadline exceeded"
            )),
            "{err}"
        );
    })
    .await;
}

async fn resp_change(t: &UnixTransport, task: &str) -> String {
    let (_, all) = send(t, protocol::get("/v1/changes", &[("select", "all".into())])).await;
    all["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tasks"][0]["id"] == task)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn notices_validate_keys_and_repeat_in_place() {
    with_double(Container::new("web"), |t| async move {
        let (code, resp) = send(&t, protocol::notify("nodomain", &Default::default(), None)).await;
        assert_eq!(
            (code, resp["result"]["message"].as_str()),
            (
                StatusCode::BAD_REQUEST,
                Some("invalid key \"nodomain\" (must be in \"example.com/path\" format)")
            )
        );
        let (_, first) = send(
            &t,
            protocol::notify("example.com/reload", &Default::default(), None),
        )
        .await;
        let (_, again) = send(
            &t,
            protocol::notify(
                "example.com/reload",
                &[("a".to_owned(), "1".to_owned())].into(),
                None,
            ),
        )
        .await;
        assert_eq!(first["result"]["id"], again["result"]["id"]);
        let (_, list) = send(&t, protocol::get_notices(&["custom"], &[])).await;
        assert_eq!(list["result"][0]["occurrences"], 2);
        assert_eq!(list["result"][0]["last-data"], json!({"a": "1"}));
        let (code, resp) = send(&t, protocol::get("/v1/notices/42", &[])).await;
        assert_eq!(
            (code, resp["result"]["message"].as_str()),
            (
                StatusCode::NOT_FOUND,
                Some("cannot find notice with ID \"42\"")
            )
        );
    })
    .await;
}
