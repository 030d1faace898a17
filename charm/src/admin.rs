//! A client for the server's admin API (api.md, "Admin API"), used by the
//! charm's admin actions.
//!
//! Why HTTP from the charm container rather than `livepatch-admin` exec'd in
//! the workload container: the pod's containers share one network namespace,
//! so the server's loopback listener is reachable from the charm; the answer
//! is the API's own JSON (no table or CLI output to parse, no coupling to the
//! CLI's flags); the internal admin password goes in an `Authorization`
//! header over loopback instead of through an exec's argv or environment,
//! where Pebble's change records could show it; and a failed call carries
//! the server's `{"error": {"code", "message"}}` straight to `action-fail`.
//!
//! Requests use HTTP Basic with the internal admin user, which the server
//! accepts on admin routes without a bcrypt per request once verified.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Sensitive;

/// Why an admin call failed; the text goes to `action-fail` as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The server could not be reached (not running, wrong port).
    #[error("cannot reach the Livepatch server at {url}: {reason}; is the service running (see `juju status`)?")]
    Unreachable {
        /// The base URL tried.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The server answered with an error.
    #[error("the Livepatch server refused the request ({status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server answered something that is not the API's JSON.
    #[error("unexpected answer from the Livepatch server: {0}")]
    Protocol(String),
    /// A sync ran and failed.
    #[error("sync {id} failed: {reason}")]
    SyncFailed {
        /// The sync's id.
        id: String,
        /// The server's reason.
        reason: String,
    },
    /// The request could not be built from the parameters given.
    #[error("{0}")]
    Invalid(String),
}

/// The admin API of one server.
pub struct AdminClient {
    base: String,
    user: String,
    password: Sensitive,
    http: reqwest::Client,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Characters kept as they are in a path segment: RFC 3986's unreserved set.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment, percent-encoded (a `/` can never add a segment).
fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A sync run's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// Patches downloaded so far.
    pub patches_done: u64,
    /// Bytes downloaded so far.
    pub bytes_done: u64,
    /// Why it failed.
    pub error: Option<String>,
}

impl AdminClient {
    /// A client for the server at `base` (`http://127.0.0.1:8080`).
    pub fn new(base: &str, user: &str, password: Sensitive) -> Result<AdminClient, AdminError> {
        let tls = crate::contracts::tls_config(rustls::RootCertStore::empty())
            .map_err(|e| AdminError::Invalid(format!("cannot set up TLS: {e}")))?;
        let http = reqwest::Client::builder()
            // Loopback only: the model's proxies must never apply.
            .no_proxy()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| AdminError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_string(),
            user: user.to_string(),
            password,
            http,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(self.password.expose()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| AdminError::Unreachable {
            url: self.base.clone(),
            reason: describe(&e),
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| AdminError::Unreachable {
                url: self.base.clone(),
                reason: describe(&e),
            })?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                AdminError::Protocol(format!("{status} with a body that is not JSON ({e})"))
            });
        }
        let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) if !body.error.message.is_empty() => {
                if body.error.code.is_empty() {
                    body.error.message
                } else {
                    format!("{} [{}]", body.error.message, body.error.code)
                }
            }
            _ => String::from_utf8_lossy(&bytes)
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string(),
        };
        Err(AdminError::Server {
            status: status.as_u16(),
            message,
        })
    }

    /// `POST /v1/admin/auth-token` → (token, tier, id).
    pub async fn create_auth_token(
        &self,
        tier: &str,
        id: &str,
    ) -> Result<(Sensitive, String, String), AdminError> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/v1/admin/auth-token",
                Some(json!({"id": id, "tier": tier})),
            )
            .await?;
        Ok((
            Sensitive(text(&v, "token")?),
            text(&v, "tier")?,
            text(&v, "id")?,
        ))
    }

    /// `POST /v1/admin/sync-tokens` → (token, name, tier).
    pub async fn add_sync_token(
        &self,
        tier: &str,
        name: &str,
        valid_until: Option<&str>,
    ) -> Result<(Sensitive, String, String), AdminError> {
        let mut body = json!({"tier": tier, "name": name});
        if let Some(v) = valid_until {
            body["valid-until"] = Value::String(v.to_string());
        }
        let v = self
            .call(reqwest::Method::POST, "/v1/admin/sync-tokens", Some(body))
            .await?;
        Ok((
            Sensitive(text(&v, "token")?),
            text(&v, "name")?,
            text(&v, "tier")?,
        ))
    }

    /// `GET /v1/admin/tiers` → names in promotion order.
    pub async fn list_tiers(&self) -> Result<Vec<String>, AdminError> {
        let v = self
            .call(reqwest::Method::GET, "/v1/admin/tiers", None)
            .await?;
        let tiers = v
            .get("tiers")
            .and_then(Value::as_array)
            .ok_or_else(|| AdminError::Protocol("no `tiers` list".into()))?;
        let mut named: Vec<(i64, String)> = tiers
            .iter()
            .map(|t| {
                let name = t
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let position = t
                    .get("position")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MAX);
                (position, name)
            })
            .collect();
        named.sort();
        Ok(named.into_iter().map(|(_, n)| n).collect())
    }

    /// `POST /v1/admin/tiers`.
    pub async fn add_tier(&self, name: &str, after: Option<&str>) -> Result<(), AdminError> {
        let mut body = json!({"name": name});
        if let Some(a) = after {
            body["after"] = Value::String(a.to_string());
        }
        self.call(reqwest::Method::POST, "/v1/admin/tiers", Some(body))
            .await
            .map(drop)
    }

    /// `DELETE /v1/admin/tiers/{name}`.
    pub async fn remove_tier(&self, name: &str) -> Result<(), AdminError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/v1/admin/tiers/{}", seg(name)),
            None,
        )
        .await
        .map(drop)
    }

    /// `POST /v1/admin/patches/{version}/promote`.
    pub async fn promote_patch(&self, version: &str, tier: &str) -> Result<(), AdminError> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/admin/patches/{}/promote", seg(version)),
            Some(json!({"tier": tier})),
        )
        .await
        .map(drop)
    }

    /// `POST /v1/admin/tiers/{from}/promote-all` → patches promoted.
    pub async fn promote_all(&self, from: &str, to: &str) -> Result<u64, AdminError> {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/admin/tiers/{}/promote-all", seg(from)),
                Some(json!({"to": to})),
            )
            .await?;
        v.get("promoted")
            .and_then(Value::as_u64)
            .ok_or_else(|| AdminError::Protocol("no `promoted` count".into()))
    }

    /// `PUT /v1/admin/patches/{version}/blocklist`.
    pub async fn blocklist_patch(&self, version: &str, reason: &str) -> Result<(), AdminError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/admin/patches/{}/blocklist", seg(version)),
            Some(json!({"reason": reason})),
        )
        .await
        .map(drop)
    }

    /// `POST /v1/admin/sync` → the sync id.
    pub async fn trigger_sync(&self) -> Result<String, AdminError> {
        let v = self
            .call(reqwest::Method::POST, "/v1/admin/sync", None)
            .await?;
        text(&v, "sync-id")
    }

    /// `GET /v1/admin/sync/{id}`.
    pub async fn sync_state(&self, id: &str) -> Result<SyncState, AdminError> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/admin/sync/{}", seg(id)),
                None,
            )
            .await?;
        Ok(SyncState {
            state: text(&v, "state")?,
            patches_done: v.get("patches-done").and_then(Value::as_u64).unwrap_or(0),
            bytes_done: v.get("bytes-done").and_then(Value::as_u64).unwrap_or(0),
            error: v.get("error").and_then(Value::as_str).map(str::to_string),
        })
    }

    /// Polls a sync until it is no longer running, up to `limit`.
    pub async fn wait_sync(
        &self,
        id: &str,
        limit: Duration,
        every: Duration,
    ) -> Result<SyncState, AdminError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let state = self.sync_state(id).await?;
            if state.state != "running" {
                return Ok(state);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AdminError::Protocol(format!(
                    "sync {id} is still running after {}s; check later with the list of sync reports",
                    limit.as_secs()
                )));
            }
            tokio::time::sleep(every).await;
        }
    }
}

fn text(v: &Value, key: &str) -> Result<String, AdminError> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| AdminError::Protocol(format!("no `{key}` in the answer")))
}

fn describe(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        out = s.to_string();
        source = s.source();
    }
    if out.is_empty() {
        e.to_string()
    } else {
        out
    }
}

/// Normalises `valid-until`: an RFC 3339 time as it is, a date as midnight UTC.
pub fn normalise_valid_until(value: &str) -> Result<String, String> {
    use time::format_description::well_known::Rfc3339;
    let value = value.trim();
    if time::OffsetDateTime::parse(value, &Rfc3339).is_ok() {
        return Ok(value.to_string());
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(value, &format) {
        Ok(date) => Ok(format!("{date}T00:00:00Z")),
        Err(_) => Err(format!(
            "valid-until {value:?} is neither a date (2027-01-31) nor an RFC 3339 time (2027-01-31T00:00:00Z)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_until_takes_dates_and_times() {
        assert_eq!(
            normalise_valid_until("2027-01-31").unwrap(),
            "2027-01-31T00:00:00Z"
        );
        assert_eq!(
            normalise_valid_until("2027-01-31T12:00:00+01:00").unwrap(),
            "2027-01-31T12:00:00+01:00"
        );
        assert!(normalise_valid_until("next year")
            .unwrap_err()
            .contains("neither a date"));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("107.1"), "107.1");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }
}
