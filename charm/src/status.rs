//! Unit statuses and their texts. Texts that the previous charm showed for
//! the same situation are kept word for word (livepatch-server.md §14.4), so
//! operators' runbooks and alerts keep matching.

use std::fmt;

/// A workload status kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Serving.
    Active,
    /// Needs the operator.
    Blocked,
    /// Waiting for something else to happen.
    Waiting,
    /// Busy with a change.
    Maintenance,
}

impl Kind {
    /// The name `status-set` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::Blocked => "blocked",
            Kind::Waiting => "waiting",
            Kind::Maintenance => "maintenance",
        }
    }
}

/// A status with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The kind.
    pub kind: Kind,
    /// The message (empty for a plain Active).
    pub message: String,
}

impl Status {
    /// Active with a message (usually empty).
    pub fn active(message: impl Into<String>) -> Status {
        Status {
            kind: Kind::Active,
            message: message.into(),
        }
    }
    /// Blocked.
    pub fn blocked(message: impl Into<String>) -> Status {
        Status {
            kind: Kind::Blocked,
            message: message.into(),
        }
    }
    /// Waiting.
    pub fn waiting(message: impl Into<String>) -> Status {
        Status {
            kind: Kind::Waiting,
            message: message.into(),
        }
    }
    /// Maintenance.
    pub fn maintenance(message: impl Into<String>) -> Status {
        Status {
            kind: Kind::Maintenance,
            message: message.into(),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

// Texts of the previous charm (same situations, same words).
/// The workload container's Pebble cannot be reached.
pub const NO_CONTAINER: &str = "Waiting to connect - workload container";
/// No database relation.
pub const NO_DATABASE: &str = "Waiting for postgres relation to be established.";
/// The database relation was removed.
pub const DATABASE_REMOVED: &str = "Database connection removed";
/// Sync is on and no token is configured.
pub const NO_SYNC_TOKEN: &str = "✘ patch-sync token not set, run get-resource-token action";
/// No download URL template.
pub const NO_URL_TEMPLATE: &str = "✘ server.url-template config not set";
/// The stop hook ran.
pub const STOPPED: &str = "service stopped";
/// The service did not start.
pub const NOT_READY: &str = "Service is not ready";
/// The leader is migrating the schema.
pub const UPGRADING_SCHEMA: &str = "pg connection successful, attempting upgrade";
/// The schema-upgrade action finished.
pub const SCHEMA_DONE: &str = "Schema migration done";

// Texts for situations the previous charm did not handle.
/// No peer relation yet (relation-created reconciles again).
pub const NO_PEER: &str = "Waiting for peer relation";
/// Database relation present without credentials.
pub const NO_DB_CREDENTIALS: &str = "Waiting for database credentials";
/// Both database endpoints related.
pub const TWO_DATABASES: &str =
    "Integration with both database relations is not allowed; remove database-legacy or database";
/// A non-leader waits for the leader's migration.
pub const WAITING_FOR_SCHEMA: &str = "Waiting for the leader to upgrade the database schema";
/// A non-leader waits for the leader to create the internal admin secret.
pub const WAITING_FOR_ADMIN: &str = "Waiting for the leader to create the admin credential";
/// Sync is off: the server runs, patches come from uploads.
pub const SYNC_DISABLED: &str =
    "patch sync disabled: upload patches with livepatch-admin or enable patch-sync";

/// Blocked text for filesystem storage shared by several units.
pub fn filesystem_shared(units: u32) -> String {
    format!("patch-storage.type=filesystem cannot be shared by {units} units; use s3, swift or postgres")
}

/// Blocked text for a `*-secret` option whose secret is not granted.
pub fn secret_not_granted(option: &str, uri: &str, app: &str) -> String {
    format!("{option}: secret {uri} is not granted to {app}; run: juju grant-secret {uri} {app}")
}

/// Blocked text for a failed schema migration.
pub fn schema_failed(message: &str) -> String {
    format!("schema upgrade failed: {message}")
}

/// Blocked text for the NetworkPolicy without cluster access.
pub fn network_policy_untrusted(app: &str) -> String {
    format!("network-policy.enabled needs cluster access; run: juju trust {app} --scope=cluster")
}
