//! Security events (livepatch-server.md §4.4): JSON log lines with `type` = `security`, an
//! `appid`, an OWASP-style `event`, a `description`, the request's `method`, `path` and
//! `trace-id`. Authentication successes and failures, authorisation failures, token changes and
//! every admin request (`authz_admin`) go through [`emit`].

/// The application ids of §4.4.
pub mod appid {
    /// Admin authentication.
    pub const ADMIN_AUTHN: &str = "server.admin_authn";
    /// Admin authorisation (every admin request).
    pub const ADMIN_AUTHZ: &str = "server.admin_authz";
    /// Client (machine) authentication.
    pub const CLIENT_AUTHN: &str = "server.client_authn";
    /// Client authorisation.
    pub const CLIENT_AUTHZ: &str = "server.client_authz";
    /// Sync-token authentication (downstream servers).
    pub const SYNC_AUTHN: &str = "server.sync_authn";
    /// Token lifecycle.
    pub const TOKENS: &str = "server.tokens";
    /// Process lifecycle.
    pub const PROCESS: &str = "server.process";
}

/// The request an event is about.
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    /// HTTP method.
    pub method: String,
    /// Path (no query string).
    pub path: String,
    /// The request id (`X-Request-Id`).
    pub trace_id: String,
}

/// Severity of an event: failures are warnings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Normal activity.
    Info,
    /// A failure.
    Warn,
}

/// Emits one security event.
pub fn emit(severity: Severity, appid: &str, event: &str, description: &str, req: &RequestInfo) {
    match severity {
        Severity::Info => tracing::info!(
            target: "security",
            r#type = "security",
            appid,
            event,
            description,
            method = req.method.as_str(),
            path = req.path.as_str(),
            trace_id = req.trace_id.as_str(),
            "{description}"
        ),
        Severity::Warn => tracing::warn!(
            target: "security",
            r#type = "security",
            appid,
            event,
            description,
            method = req.method.as_str(),
            path = req.path.as_str(),
            trace_id = req.trace_id.as_str(),
            "{description}"
        ),
    }
}

/// A process lifecycle event (start, stop, signals), with no request.
pub fn process_event(event: &str, description: &str) {
    emit(
        Severity::Info,
        appid::PROCESS,
        event,
        description,
        &RequestInfo::default(),
    );
}
