//! The HTTP governor (livepatch-server.md §12, api.md): at most `min(burst, concurrency)` requests
//! in flight, at most `|concurrency − burst|` waiting for a slot, the rest refused at once with 503
//! and `Retry-After: 1`, counted in `livepatch_server_httpgovernor_request_overload`. A request
//! holds its slot until its response body has been sent (a download keeps it while it streams).
//! `/`, `/debug/*` and `/metrics` are exempt: health probes must answer under load.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use prometheus::IntCounter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shared governor state; cheap to clone.
#[derive(Clone, Debug)]
pub struct Governor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One permit per request allowed in flight.
    slots: Arc<Semaphore>,
    /// How many may wait for a permit.
    queue_max: usize,
    /// How many wait right now (bounded by `queue_max`).
    waiting: AtomicUsize,
    /// The in-flight cap, for reporting.
    in_flight_max: usize,
    /// Counts rejections.
    overload: IntCounter,
}

/// Decrements the waiting count however the wait ends (admitted, or the client went away).
struct WaitGuard<'a>(&'a AtomicUsize);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Governor {
    /// Sizes the governor from `server.concurrency-limit` and `server.burst-limit`.
    pub fn new(concurrency_limit: u32, burst_limit: u32, overload: IntCounter) -> Self {
        let in_flight_max = concurrency_limit.min(burst_limit).max(1) as usize;
        let queue_max = concurrency_limit.abs_diff(burst_limit) as usize;
        Self {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(in_flight_max)),
                queue_max,
                waiting: AtomicUsize::new(0),
                in_flight_max,
                overload,
            }),
        }
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    /// Requests holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight_max - self.inner.slots.available_permits()
    }

    /// Takes a slot, waiting in the queue if there is room; `None` means refuse.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.inner.slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        // Reserve a place in the queue, or give up at once.
        let reserved = self
            .inner
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w < self.inner.queue_max).then_some(w + 1)
            })
            .is_ok();
        if !reserved {
            self.inner.overload.inc();
            return None;
        }
        let _guard = WaitGuard(&self.inner.waiting);
        self.inner.slots.clone().acquire_owned().await.ok()
    }
}

/// True for the routes the governor never limits.
pub fn is_exempt(path: &str) -> bool {
    path == "/" || path == "/metrics" || path.starts_with("/debug/")
}

/// The axum middleware.
pub async fn middleware(
    State(governor): State<Governor>,
    request: Request,
    next: Next,
) -> Response {
    if is_exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let Some(permit) = governor.admit().await else {
        let mut response = crate::http::ApiError::Overloaded.into_response();
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        return response;
    };
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(PermitBody {
            inner: body,
            permit: Some(permit),
        }),
    )
}

/// A response body that releases its governor slot once fully sent (or dropped, when the client
/// goes away).
struct PermitBody {
    inner: Body,
    permit: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for PermitBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) | Poll::Ready(Some(Err(_))) = &poll {
            self.permit = None;
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use std::sync::Mutex;
    use tokio::sync::{mpsc, oneshot};
    use tower::ServiceExt;

    /// A router whose `/work` handler reports that it started and then waits to be released;
    /// the test drives every step, so nothing depends on timing.
    fn app(governor: Governor) -> (Router, mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
        let (tx, rx) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
        let tx = Arc::new(Mutex::new(tx));
        let router = Router::new()
            .route(
                "/work",
                get(move || {
                    let tx = tx.clone();
                    async move {
                        let (release, wait) = oneshot::channel();
                        tx.lock().unwrap().send(release).unwrap();
                        let _ = wait.await;
                        "done"
                    }
                }),
            )
            .route("/debug/info", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(governor, middleware));
        (router, rx)
    }

    fn req(path: &str) -> Request {
        Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    async fn until(cond: impl Fn() -> bool) {
        while !cond() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_burst_fills_the_slots_then_the_queue_and_the_rest_is_refused_at_once() {
        let overload = IntCounter::new("x", "x").unwrap();
        // concurrency 3, burst 2: two in flight, one waiting.
        let governor = Governor::new(3, 2, overload.clone());
        let (app, mut started) = app(governor.clone());

        let a = tokio::spawn(app.clone().oneshot(req("/work")));
        let b = tokio::spawn(app.clone().oneshot(req("/work")));
        let release_a = started.recv().await.unwrap();
        let release_b = started.recv().await.unwrap();
        assert_eq!(governor.in_flight(), 2);

        let c = tokio::spawn(app.clone().oneshot(req("/work")));
        until(|| governor.waiting() == 1).await;

        // The queue is full: refused immediately, with Retry-After, and counted.
        let refused = app.clone().oneshot(req("/work")).await.unwrap();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()["retry-after"], "1");
        let body = refused.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("\"code\":\"overloaded\""));
        assert_eq!(overload.get(), 1);

        // Exempt routes still answer while the governor is saturated.
        let health = app.clone().oneshot(req("/debug/info")).await.unwrap();
        assert_eq!(health.status(), 200);

        // Releasing one lets the queued request in.
        release_a.send(()).unwrap();
        let done_a = a.await.unwrap().unwrap();
        assert_eq!(done_a.status(), 200);
        drop(done_a); // the slot is released once the body is gone
        let release_c = started.recv().await.unwrap();
        assert_eq!(governor.waiting(), 0);
        release_b.send(()).unwrap();
        release_c.send(()).unwrap();
        for h in [b, c] {
            let r = h.await.unwrap().unwrap();
            assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), "done");
        }
        assert_eq!(overload.get(), 1);
        until(|| governor.in_flight() == 0).await;
    }

    #[tokio::test]
    async fn a_slot_is_held_until_the_response_body_is_consumed() {
        let governor = Governor::new(1, 1, IntCounter::new("x", "x").unwrap());
        let (app, mut started) = app(governor.clone());
        let a = tokio::spawn(app.clone().oneshot(req("/work")));
        started.recv().await.unwrap().send(()).unwrap();
        let response = a.await.unwrap().unwrap();
        assert_eq!(governor.in_flight(), 1, "the body has not been sent yet");
        let second = app.clone().oneshot(req("/work")).await.unwrap();
        assert_eq!(second.status(), 503, "no queue with concurrency == burst");
        response.into_body().collect().await.unwrap();
        assert_eq!(governor.in_flight(), 0);
    }

    #[test]
    fn sizing_follows_the_recommendation_whichever_limit_is_larger() {
        let g = Governor::new(1000, 500, IntCounter::new("x", "x").unwrap());
        assert_eq!((g.inner.in_flight_max, g.inner.queue_max), (500, 500));
        let g = Governor::new(100, 300, IntCounter::new("x", "x").unwrap());
        assert_eq!((g.inner.in_flight_max, g.inner.queue_max), (100, 200));
    }
}
