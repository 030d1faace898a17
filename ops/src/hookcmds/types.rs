//! The typed values hook commands take and print.
//!
//! Each type parses from (and, where Juju prints it, renders to) the exact
//! text of juju.md §2, so the real commands, the fake Juju engine and the
//! model agree on one spelling.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A relation: its endpoint and Juju's integer id, written `db:7`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelationId {
    /// The endpoint name from metadata, for example `db`.
    pub endpoint: String,
    /// Juju's relation id.
    pub id: u64,
}

impl RelationId {
    /// A relation id from its parts.
    pub fn new(endpoint: impl Into<String>, id: u64) -> RelationId {
        RelationId {
            endpoint: endpoint.into(),
            id,
        }
    }
}

impl fmt::Display for RelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.endpoint, self.id)
    }
}

/// Text that is not `<endpoint>:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid relation id {0:?}: expected <endpoint>:<number>, for example db:7")]
pub struct ParseRelationIdError(pub String);

impl FromStr for RelationId {
    type Err = ParseRelationIdError;
    fn from_str(s: &str) -> Result<RelationId, ParseRelationIdError> {
        let err = || ParseRelationIdError(s.to_owned());
        let (endpoint, id) = s.rsplit_once(':').ok_or_else(err)?;
        if endpoint.is_empty() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        Ok(RelationId {
            endpoint: endpoint.to_owned(),
            id: id.parse().map_err(|_| err())?,
        })
    }
}

impl Serialize for RelationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RelationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RelationId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The protocol of an opened port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (no port number).
    Icmp,
}

/// A port or port range as `open-port` takes it: `8080/tcp`,
/// `9000-9010/udp` or `icmp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// The protocol.
    pub protocol: Protocol,
    /// First port of the range (0 for ICMP).
    pub from: u16,
    /// Last port of the range, equal to `from` for a single port.
    pub to: u16,
}

impl Port {
    /// A single TCP port.
    pub fn tcp(port: u16) -> Port {
        Port {
            protocol: Protocol::Tcp,
            from: port,
            to: port,
        }
    }
    /// A single UDP port.
    pub fn udp(port: u16) -> Port {
        Port {
            protocol: Protocol::Udp,
            from: port,
            to: port,
        }
    }
    /// ICMP.
    pub fn icmp() -> Port {
        Port {
            protocol: Protocol::Icmp,
            from: 0,
            to: 0,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Icmp => return f.write_str("icmp"),
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        if self.from == self.to {
            write!(f, "{}/{proto}", self.from)
        } else {
            write!(f, "{}-{}/{proto}", self.from, self.to)
        }
    }
}

/// Text that is not a port as `open-port` takes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port {0:?}: expected <port>/<tcp|udp>, <from>-<to>/<tcp|udp> or icmp")]
pub struct ParsePortError(pub String);

impl FromStr for Port {
    type Err = ParsePortError;
    fn from_str(s: &str) -> Result<Port, ParsePortError> {
        let err = || ParsePortError(s.to_owned());
        if s == "icmp" {
            return Ok(Port::icmp());
        }
        let (range, proto) = s.split_once('/').ok_or_else(err)?;
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(err()),
        };
        let parse = |t: &str| t.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(err);
        let (from, to) = match range.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let p = parse(range)?;
                (p, p)
            }
        };
        if from > to {
            return Err(err());
        }
        Ok(Port { protocol, from, to })
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Port, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A workload status name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusName {
    /// Ready and providing service.
    Active,
    /// Needs a human (the message says what).
    Blocked,
    /// Busy with something that will finish on its own.
    Maintenance,
    /// Waiting for something outside this unit (a relation, a leader).
    Waiting,
    /// Set by Juju after a failed hook; a charm cannot set it.
    Error,
    /// Nothing set yet; a charm cannot set it.
    Unknown,
}

impl StatusName {
    /// The name as Juju spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusName::Active => "active",
            StatusName::Blocked => "blocked",
            StatusName::Maintenance => "maintenance",
            StatusName::Waiting => "waiting",
            StatusName::Error => "error",
            StatusName::Unknown => "unknown",
        }
    }

    /// Parses a status name.
    pub fn parse(text: &str) -> Option<StatusName> {
        Some(match text {
            "active" => StatusName::Active,
            "blocked" => StatusName::Blocked,
            "maintenance" => StatusName::Maintenance,
            "waiting" => StatusName::Waiting,
            "error" => StatusName::Error,
            "unknown" => StatusName::Unknown,
            _ => return None,
        })
    }
}

impl fmt::Display for StatusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One status as `status-get` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The status name.
    pub status: StatusName,
    /// The message (may be empty).
    #[serde(default)]
    pub message: String,
    /// Extra data Juju keeps with the status.
    #[serde(rename = "status-data", default)]
    pub data: BTreeMap<String, serde_json::Value>,
}

/// `status-get --application=true` output: the application status and each
/// unit's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatusReport {
    /// The application's own status.
    #[serde(rename = "application-status")]
    pub application: StatusReport,
    /// Every unit's status, by unit name.
    #[serde(default)]
    pub units: BTreeMap<String, StatusReport>,
}

/// `juju-log` levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Most verbose.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something an operator may want to know about.
    Warning,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The level as `juju-log --log-level` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
        }
    }

    /// Parses a level name (any case).
    pub fn parse(text: &str) -> Option<LogLevel> {
        Some(match text.to_ascii_uppercase().as_str() {
            "TRACE" => LogLevel::Trace,
            "DEBUG" => LogLevel::Debug,
            "INFO" => LogLevel::Info,
            "WARNING" => LogLevel::Warning,
            "ERROR" => LogLevel::Error,
            _ => return None,
        })
    }
}

/// Who owns a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretOwner {
    /// The application (the leader manages it).
    Application,
    /// This unit.
    Unit,
}

impl SecretOwner {
    /// The owner as `secret-add --owner` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretOwner::Application => "application",
            SecretOwner::Unit => "unit",
        }
    }
}

/// How often Juju asks the owner to rotate a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotatePolicy {
    /// Never.
    Never,
    /// Every hour.
    Hourly,
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
    /// Every month.
    Monthly,
    /// Every quarter.
    Quarterly,
    /// Every year.
    Yearly,
}

impl RotatePolicy {
    /// The policy as `--rotate` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RotatePolicy::Never => "never",
            RotatePolicy::Hourly => "hourly",
            RotatePolicy::Daily => "daily",
            RotatePolicy::Weekly => "weekly",
            RotatePolicy::Monthly => "monthly",
            RotatePolicy::Quarterly => "quarterly",
            RotatePolicy::Yearly => "yearly",
        }
    }

    /// Parses a policy name.
    pub fn parse(text: &str) -> Option<RotatePolicy> {
        Some(match text {
            "never" => RotatePolicy::Never,
            "hourly" => RotatePolicy::Hourly,
            "daily" => RotatePolicy::Daily,
            "weekly" => RotatePolicy::Weekly,
            "monthly" => RotatePolicy::Monthly,
            "quarterly" => RotatePolicy::Quarterly,
            "yearly" => RotatePolicy::Yearly,
            _ => return None,
        })
    }
}

/// What `secret-info-get` says about an owned secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// The secret URI (the key of the JSON object Juju prints).
    #[serde(skip)]
    pub id: String,
    /// The latest revision.
    pub revision: u32,
    /// The owner's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Who owns it.
    pub owner: SecretOwner,
    /// The description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The rotation policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotatePolicy>,
    /// When the latest revision expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
    /// When the next rotation is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotates: Option<String>,
    /// Grants, as Juju prints them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<serde_json::Value>,
}

/// `relation-model-get` output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationModel {
    /// The UUID of the model the remote application lives in.
    pub uuid: String,
}

/// `network-get` output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Network {
    /// The addresses the unit binds to.
    #[serde(default)]
    pub bind_addresses: Vec<BindAddress>,
    /// The subnets egress traffic comes from.
    #[serde(default)]
    pub egress_subnets: Vec<String>,
    /// The addresses others should use to reach this unit.
    #[serde(default)]
    pub ingress_addresses: Vec<String>,
}

/// One interface in `network-get`'s `bind-addresses`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BindAddress {
    /// The MAC address (empty on Kubernetes).
    #[serde(default)]
    pub mac_address: String,
    /// The interface name.
    #[serde(default)]
    pub interface_name: String,
    /// Its addresses.
    #[serde(default)]
    pub addresses: Vec<InterfaceAddress>,
}

/// One address of an interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceAddress {
    /// The host name, if any.
    #[serde(default)]
    pub hostname: String,
    /// The address.
    pub value: String,
    /// The subnet in CIDR form.
    #[serde(default)]
    pub cidr: String,
}

/// `goal-state` output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalState {
    /// This application's units and their goal status.
    #[serde(default)]
    pub units: BTreeMap<String, GoalStatus>,
    /// Per endpoint, the related applications and units.
    #[serde(default)]
    pub relations: BTreeMap<String, BTreeMap<String, GoalStatus>>,
}

/// A unit's or application's goal status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalStatus {
    /// `active`, `waiting`, `dying`, …
    pub status: String,
    /// When it entered that status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl GoalState {
    /// The number of units Juju plans for this application: the units that
    /// are not dying.
    pub fn planned_units(&self) -> usize {
        self.units.values().filter(|u| u.status != "dying").count()
    }
}

/// `credential-get` output: the cloud spec (needs `juju trust`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CloudSpec {
    /// Cloud type, for example `kubernetes`.
    #[serde(rename = "type")]
    pub cloud_type: String,
    /// Cloud name.
    pub name: String,
    /// Region, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// API endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Identity endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_endpoint: Option<String>,
    /// Storage endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_endpoint: Option<String>,
    /// The credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CloudCredential>,
    /// CA certificates (PEM).
    #[serde(rename = "cacertificates", default)]
    pub ca_certificates: Vec<String>,
    /// Skip TLS verification.
    #[serde(default)]
    pub skip_tls_verify: bool,
    /// Whether this is the controller's cloud.
    #[serde(default)]
    pub is_controller_cloud: bool,
}

impl fmt::Debug for CloudSpec {
    // The credential attributes are secrets: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudSpec")
            .field("cloud_type", &self.cloud_type)
            .field("name", &self.name)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// A cloud credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CloudCredential {
    /// Auth type, for example `certificate` or `oauth2`.
    pub auth_type: String,
    /// The credential attributes (secret).
    #[serde(default)]
    pub attrs: BTreeMap<String, String>,
}

impl fmt::Debug for CloudCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudCredential")
            .field("auth_type", &self.auth_type)
            .field("attrs", &self.attrs.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `storage-get` output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageInfo {
    /// `filesystem` or `block`.
    pub kind: String,
    /// Where it is mounted.
    pub location: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_ids_parse_and_print() {
        fn check(text: &str, expected: Option<(&str, u64)>) {
            let got = text.parse::<RelationId>().ok();
            assert_eq!(got, expected.map(|(e, i)| RelationId::new(e, i)), "{text}");
            if let Some(id) = got {
                assert_eq!(id.to_string(), text);
            }
        }
        check("db:7", Some(("db", 7)));
        check("nginx-route:12", Some(("nginx-route", 12)));
        check("7", None);
        check(":7", None);
        check("db:", None);
        check("db:-1", None);
        check("db:x", None);
    }

    #[test]
    fn ports_parse_and_print() {
        fn check(text: &str, expected: Option<Port>) {
            let got = text.parse::<Port>().ok();
            assert_eq!(got, expected, "{text}");
            if let Some(p) = got {
                assert_eq!(p.to_string(), text);
            }
        }
        check("8080/tcp", Some(Port::tcp(8080)));
        check("53/udp", Some(Port::udp(53)));
        check("icmp", Some(Port::icmp()));
        check(
            "9000-9010/udp",
            Some(Port {
                protocol: Protocol::Udp,
                from: 9000,
                to: 9010,
            }),
        );
        check("8080", None);
        check("0/tcp", None);
        check("70000/tcp", None);
        check("10-9/tcp", None);
        check("80/sctp", None);
    }

    #[test]
    fn cloud_credentials_never_print_their_attributes() {
        let spec = CloudSpec {
            cloud_type: "kubernetes".into(),
            name: "k8s".into(),
            region: None,
            endpoint: None,
            identity_endpoint: None,
            storage_endpoint: None,
            credential: Some(CloudCredential {
                auth_type: "oauth2".into(),
                attrs: [("Token".to_owned(), "hunter2".to_owned())].into(),
            }),
            ca_certificates: vec![],
            skip_tls_verify: false,
            is_controller_cloud: false,
        };
        let printed = format!("{spec:?} {:?}", spec.credential);
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
