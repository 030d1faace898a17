//! Patch downloads: `GET`/`HEAD /v1/patches/{filename}` stream from storage with
//! `Content-Length`, `ETag` (the quoted SHA-256), `If-None-Match` (304) and one `Range` (206, 416
//! when unsatisfiable), or redirect (307) to `server.url-template` when `server.redirect-downloads`
//! is on. The name must match the patch filename grammar, so no path can escape the store. With
//! `patch-cache.enabled` the bytes come from the in-memory cache when it holds them.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::domain::PatchFilename;
use crate::http::{ApiError, ApiPath, ApiResult, AppState};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/patches/{filename}", get(download))
}

/// A `Range` that lies wholly outside the file (416).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A single byte range, resolved against the size: `Ok(None)` = serve everything (no Range, a
/// multi-range or a syntax we ignore, as RFC 9110 allows), `Err` = unsatisfiable.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Ok(None);
        };
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e.min(size.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if start >= size {
            return Err(Unsatisfiable);
        }
        (start, end)
    };
    Ok(Some(range))
}

fn etag_matches(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

async fn download(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<Response> {
    let name = PatchFilename::parse(&raw).map_err(|e| ApiError::invalid("filename", e))?;
    if state.config.server.redirect_downloads {
        if let Some(t) = &state.config.server.url_template {
            let location = t.replace("{filename}", name.as_str());
            let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
            r.headers_mut().insert(
                http::header::LOCATION,
                HeaderValue::from_str(&location).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            return Ok(r);
        }
    }
    serve_file(&state, &method, &headers, &name).await
}

/// Serves a registered file: validators, ranges, and the bytes from the patch cache when it
/// holds them, else from storage (starting a background fill of the cache). Shared by
/// `/v1/patches` and the sync API's `/v1/sync/patches`.
pub(crate) async fn serve_file(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    name: &PatchFilename,
) -> ApiResult<Response> {
    let meta =
        state.store.file_meta(name).await?.ok_or_else(|| {
            ApiError::NotFound(format!("there is no patch file {}", name.as_str()))
        })?;
    let etag = format!("\"{}\"", meta.sha256);
    let size = meta.size as u64;
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.to_string()))?;
    if headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| etag_matches(h, &etag))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(http::header::ETAG, etag_value);
        return Ok(r);
    }
    // If-Range: serve a range only of this very file.
    let range_allowed = headers
        .get(http::header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let range = if range_allowed {
        parse_range(
            headers
                .get(http::header::RANGE)
                .and_then(|v| v.to_str().ok()),
            size,
        )
        .map_err(|Unsatisfiable| ApiError::RangeNotSatisfiable(size))?
    } else {
        None
    };
    let (status, length) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, e - s + 1),
        None => (StatusCode::OK, size),
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else if let Some(bytes) = state
        .cache
        .as_ref()
        .and_then(|c| c.get(name.as_str(), &meta.sha256))
    {
        match range {
            Some((s, e)) => Body::from(bytes.slice(s as usize..=e as usize)),
            None => Body::from(bytes),
        }
    } else {
        let Some(object) = state.storage.open(name, range).await? else {
            // A registered file that storage cannot find: storage itself is gone (a volume not
            // mounted, a directory removed) — say so and let clients retry — or the file alone
            // was deleted behind the server's back, which retrying will not fix.
            if let Err(e) = state.storage.check().await {
                return Err(ApiError::StorageUnavailable(e.to_string()));
            }
            return Err(ApiError::Internal(format!(
                "{} is registered but missing from patch storage",
                name.as_str()
            )));
        };
        if object.size != size {
            return Err(ApiError::Internal(format!(
                "{} is {} bytes in storage but {size} in the database",
                name.as_str(),
                object.size
            )));
        }
        if let Some(cache) = &state.cache {
            cache.fill(
                state.storage.clone(),
                name.clone(),
                meta.sha256.clone(),
                size,
            );
        }
        Body::from_stream(object.body)
    };
    let mut r = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/x-bzip2")
        .header(http::header::CONTENT_LENGTH, length)
        .header(http::header::ACCEPT_RANGES, "bytes")
        .header(http::header::ETAG, etag_value)
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some((s, e)) = range {
        r.headers_mut().insert(
            http::header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {s}-{e}/{size}"))
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: Option<&str>, size: u64, expected: Result<Option<(u64, u64)>, Unsatisfiable>) {
        assert_eq!(parse_range(header, size), expected, "{header:?} of {size}");
    }

    #[test]
    fn single_ranges_resolve_against_the_size() {
        check(None, 10, Ok(None));
        check(Some("bytes=0-4"), 10, Ok(Some((0, 4))));
        check(Some("bytes=5-"), 10, Ok(Some((5, 9))));
        check(Some("bytes=-3"), 10, Ok(Some((7, 9))));
        check(Some("bytes=-30"), 10, Ok(Some((0, 9))));
        check(Some("bytes=8-100"), 10, Ok(Some((8, 9))));
        check(Some("bytes=10-"), 10, Err(Unsatisfiable));
        check(Some("bytes=-0"), 10, Err(Unsatisfiable));
        check(Some("bytes=0-1,4-5"), 10, Ok(None));
        check(Some("bytes=5-1"), 10, Ok(None));
        check(Some("items=0-1"), 10, Ok(None));
        check(Some("bytes=abc"), 10, Ok(None));
    }

    #[test]
    fn etags_match_lists_weak_forms_and_star() {
        assert!(etag_matches("\"a\"", "\"a\""));
        assert!(etag_matches("\"b\", W/\"a\"", "\"a\""));
        assert!(etag_matches("*", "\"a\""));
        assert!(!etag_matches("\"b\"", "\"a\""));
    }
}
