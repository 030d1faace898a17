//! The bare check-in handler: the limit the real server is measured against (issue 3). A plain
//! hyper HTTP/1.1 server with one route, `POST /v1/client/{id}/updates`, that does what the real
//! handler must do and nothing more — the machine-token lookup and the check-in + selection
//! statement through the very same [`Store`] methods (same SQL, same prepared statements, same
//! pool settings), the JSON body parsed and the answer serialised — with no router, no governor,
//! no request ids, no HTTP metrics, no security events and no tracing spans.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use workload::domain::{self, Kernel, MachineId};
use workload::store::{CheckIn, Store};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Body {
    kernel: String,
    architecture: String,
    patch_state: Option<String>,
    patch_version: Option<String>,
    client_version: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Answer {
    patch: Offer,
    kernel_supported: bool,
}

#[derive(Serialize)]
struct Offer {
    version: String,
    filename: String,
    sha256: String,
    size: i64,
    url: String,
    released: String,
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

async fn check_in(store: &Store, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let Some(raw) = path
        .strip_prefix("/v1/client/")
        .and_then(|p| p.strip_suffix("/updates"))
    else {
        return status(StatusCode::NOT_FOUND);
    };
    if request.method() != http::Method::POST {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Ok(id) = MachineId::parse(raw) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Some(token) = workload::http::auth::bearer(request.headers()).map(str::to_string) else {
        return status(StatusCode::UNAUTHORIZED);
    };
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let tier_id = match store.machine_credentials(&id).await {
        Ok(Some((hash, tier))) if domain::token_matches(&token, &hash) => tier,
        Ok(_) => return status(StatusCode::UNAUTHORIZED),
        Err(_) => return status(StatusCode::SERVICE_UNAVAILABLE),
    };
    let Ok(bytes) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(body) = serde_json::from_slice::<Body>(&bytes) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(kernel) = Kernel::parse_client(&body.kernel) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let c = CheckIn {
        kernel: kernel.to_string(),
        architecture: body.architecture,
        patch_state: body.patch_state,
        patch_version: body.patch_version,
        client_version: body.client_version,
        ..CheckIn::default()
    };
    let (known, update) = match store.check_in(&id, tier_id, &kernel, &c, None).await {
        Ok(r) => r,
        Err(_) => return status(StatusCode::SERVICE_UNAVAILABLE),
    };
    let Some(u) = update else {
        return status(StatusCode::NO_CONTENT);
    };
    let released = u
        .released
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let answer = Answer {
        patch: Offer {
            url: format!("http://{host}/v1/patches/{}", u.filename),
            version: u.version,
            filename: u.filename,
            sha256: u.sha256,
            size: u.size,
            released,
        },
        kernel_supported: known,
    };
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&answer).unwrap_or_default(),
    )));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves the bare handler on `listener` until `shutdown` completes (connections in flight are
/// simply dropped: this is a benchmark baseline, not a server).
pub async fn serve(listener: TcpListener, store: Store, shutdown: impl Future<Output = ()>) {
    let accept = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let store = store.clone();
                    async move { Ok::<_, Infallible>(check_in(&store, request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = shutdown => {}
    }
}
