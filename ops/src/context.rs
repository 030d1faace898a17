//! The Juju hook environment, read once.
//!
//! Juju describes the running hook entirely through environment variables
//! (juju.md §1.2). [`JujuContext`] reads all of them in one place, from any
//! iterator of `(name, value)` pairs, so the binary reads the process
//! environment and the tests pass a literal map. Every missing or malformed
//! required variable is reported in one [`ContextError`], so an operator fixing
//! a broken environment sees the whole list at once.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// Where the charm container mounts each workload container's Pebble socket
/// directory, unless `OPS_CONTAINERS_DIR` overrides it.
pub const DEFAULT_CONTAINERS_DIR: &str = "/charm/containers";

/// The environment variable that moves the Pebble sockets elsewhere (tests
/// point it at a temporary directory).
pub const CONTAINERS_DIR_ENV: &str = "OPS_CONTAINERS_DIR";

/// Everything Juju told this process about the hook it runs.
///
/// Built once at start-up by [`JujuContext::from_env`] (or
/// [`JujuContext::from_vars`] in tests) and never changed afterwards.
/// Variables Juju always exports but leaves empty on Kubernetes are `None`
/// when empty.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JujuContext {
    /// `JUJU_DISPATCH_PATH`: `hooks/<hook>` or `actions/<action>`.
    pub dispatch_path: String,
    /// `JUJU_HOOK_NAME`: the bare hook name; empty for actions.
    pub hook_name: String,
    /// `JUJU_UNIT_NAME`, for example `myapp/0`.
    pub unit_name: String,
    /// The application name: the part of the unit name before `/`.
    pub app_name: String,
    /// The unit number: the part of the unit name after `/`.
    pub unit_number: u32,
    /// `JUJU_MODEL_NAME`.
    pub model_name: String,
    /// `JUJU_MODEL_UUID`.
    pub model_uuid: String,
    /// `JUJU_CHARM_DIR` (or the legacy `CHARM_DIR`): the charm root, also the
    /// working directory. Lost when the pod is recreated.
    pub charm_dir: PathBuf,
    /// `JUJU_VERSION`; absent only in the legacy `meter-status-changed` hook.
    pub version: Option<JujuVersion>,
    /// `JUJU_CONTEXT_ID`, passed through untouched to hook commands.
    pub context_id: Option<String>,
    /// `JUJU_AGENT_SOCKET_ADDRESS`, passed through untouched.
    pub agent_socket_address: Option<String>,
    /// `JUJU_AGENT_SOCKET_NETWORK`, passed through untouched.
    pub agent_socket_network: Option<String>,
    /// `JUJU_API_ADDRESSES`, split on spaces.
    pub api_addresses: Vec<String>,
    /// `JUJU_MACHINE_ID` (usually empty on Kubernetes).
    pub machine_id: Option<String>,
    /// `JUJU_PRINCIPAL_UNIT` (set for subordinates only).
    pub principal_unit: Option<String>,
    /// `JUJU_AVAILABILITY_ZONE`.
    pub availability_zone: Option<String>,
    /// `JUJU_SLA`.
    pub sla: Option<String>,
    /// `CLOUD_API_VERSION`.
    pub cloud_api_version: Option<String>,
    /// The `JUJU_CHARM_*_PROXY` variables (from the model's `juju-*-proxy`).
    pub proxy: ProxySettings,
    /// `JUJU_DEBUG` is set: the hook runs under `juju debug-hooks`.
    pub debug: bool,
    /// `JUJU_DEBUG_AT`, set under `juju debug-code`.
    pub debug_at: Option<String>,
    /// `JUJU_TRACE_ID`, `JUJU_SPAN_ID`, `JUJU_TRACE_FLAGS` when tracing is on.
    pub trace: Option<TraceContext>,
    /// `JUJU_RELATION`: the endpoint of a relation hook.
    pub relation: Option<String>,
    /// `JUJU_RELATION_ID`: `<endpoint>:<id>` in relation hooks.
    pub relation_id: Option<String>,
    /// `JUJU_REMOTE_APP` in relation hooks.
    pub remote_app: Option<String>,
    /// `JUJU_REMOTE_UNIT`; `None` when empty (relation-created, -broken and
    /// changes to the remote application bag).
    pub remote_unit: Option<String>,
    /// `JUJU_DEPARTING_UNIT` in `-relation-departed`.
    pub departing_unit: Option<String>,
    /// `JUJU_ACTION_NAME` in actions.
    pub action_name: Option<String>,
    /// `JUJU_ACTION_UUID` in actions (for example `"12"`).
    pub action_uuid: Option<String>,
    /// `JUJU_ACTION_TAG` in actions.
    pub action_tag: Option<String>,
    /// `JUJU_WORKLOAD_NAME`: the container of a workload hook.
    pub workload_name: Option<String>,
    /// `JUJU_NOTICE_ID` in `-pebble-custom-notice`.
    pub notice_id: Option<String>,
    /// `JUJU_NOTICE_TYPE` in `-pebble-custom-notice` (`custom`).
    pub notice_type: Option<String>,
    /// `JUJU_NOTICE_KEY` in `-pebble-custom-notice`.
    pub notice_key: Option<String>,
    /// `JUJU_PEBBLE_CHECK_NAME` in `-pebble-check-failed` / `-recovered`.
    pub pebble_check_name: Option<String>,
    /// `JUJU_SECRET_ID` (a secret URI) in `secret-*` hooks.
    pub secret_id: Option<String>,
    /// `JUJU_SECRET_LABEL` in `secret-*` hooks; `None` when empty.
    pub secret_label: Option<String>,
    /// `JUJU_SECRET_REVISION` in `secret-remove` and `secret-expired`.
    pub secret_revision: Option<u32>,
    /// `JUJU_STORAGE_ID`, for example `data/0`.
    pub storage_id: Option<String>,
    /// `JUJU_STORAGE_LOCATION`.
    pub storage_location: Option<PathBuf>,
    /// `JUJU_STORAGE_KIND`.
    pub storage_kind: Option<String>,
    /// Where the workload containers' Pebble sockets live:
    /// `$OPS_CONTAINERS_DIR` or `/charm/containers`.
    pub containers_dir: PathBuf,
}

/// The proxy settings Juju exports to every hook, each possibly empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxySettings {
    /// `JUJU_CHARM_HTTP_PROXY`.
    pub http: Option<String>,
    /// `JUJU_CHARM_HTTPS_PROXY`.
    pub https: Option<String>,
    /// `JUJU_CHARM_FTP_PROXY`.
    pub ftp: Option<String>,
    /// `JUJU_CHARM_NO_PROXY`.
    pub no_proxy: Option<String>,
}

/// The tracing context newer Juju versions export.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceContext {
    /// `JUJU_TRACE_ID`.
    pub trace_id: String,
    /// `JUJU_SPAN_ID`.
    pub span_id: Option<String>,
    /// `JUJU_TRACE_FLAGS`.
    pub trace_flags: Option<String>,
}

/// A Juju version such as `3.6.4`, `3.6-beta2` or `3.6.4.1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JujuVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version (0 for a pre-release such as `3.6-beta2`).
    pub patch: u32,
    /// The pre-release tag, for example `beta2`.
    pub tag: Option<String>,
    /// The build number of a four-part version.
    pub build: Option<u32>,
    raw: String,
}

impl JujuVersion {
    /// Parses a version as Juju prints it.
    pub fn parse(text: &str) -> Option<JujuVersion> {
        let (major, rest) = text.split_once('.')?;
        let major = major.parse().ok()?;
        // "3.6-beta2": minor, then a tag after '-'.
        if let Some((minor, tag)) = rest.split_once('-') {
            let minor = minor.parse().ok()?;
            let (tag, build) = match tag.split_once('.') {
                Some((tag, build)) => (tag, Some(build.parse().ok()?)),
                None => (tag, None),
            };
            if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
                return None;
            }
            return Some(JujuVersion {
                major,
                minor,
                patch: 0,
                tag: Some(tag.to_owned()),
                build,
                raw: text.to_owned(),
            });
        }
        let mut parts = rest.split('.');
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?.parse().ok()?;
        let build = match parts.next() {
            Some(b) => Some(b.parse().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(JujuVersion {
            major,
            minor,
            patch,
            tag: None,
            build,
            raw: text.to_owned(),
        })
    }

    /// True when this version is at least `major.minor.patch` (a pre-release
    /// counts as below its release).
    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        let own = (self.major, self.minor, self.patch);
        if own != (major, minor, patch) {
            return own > (major, minor, patch);
        }
        self.tag.is_none()
    }
}

impl fmt::Display for JujuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The hook environment is incomplete or malformed.
///
/// Lists every problem found, not only the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the Juju hook environment: {}; is this binary being run by Juju (as the charm's dispatch)?", .problems.join("; "))]
pub struct ContextError {
    /// One line per missing or malformed variable.
    pub problems: Vec<String>,
}

impl JujuContext {
    /// Reads the context from the process environment.
    pub fn from_env() -> Result<JujuContext, ContextError> {
        JujuContext::from_vars(std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        }))
    }

    /// Reads the context from `(name, value)` pairs.
    ///
    /// Required: `JUJU_DISPATCH_PATH`, `JUJU_UNIT_NAME` (as `app/N`),
    /// `JUJU_MODEL_NAME`, `JUJU_MODEL_UUID`, `JUJU_CHARM_DIR` (or `CHARM_DIR`)
    /// and `JUJU_VERSION` (except in `meter-status-changed`).
    pub fn from_vars<I, K, V>(vars: I) -> Result<JujuContext, ContextError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let env: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut problems = Vec::new();
        // An empty value is treated as absent: Juju exports some variables
        // empty on purpose (JUJU_REMOTE_UNIT) and never a meaningful "".
        let get = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        let mut required = |name: &str| match get(name) {
            Some(v) => v,
            None => {
                problems.push(format!("{name} is not set"));
                String::new()
            }
        };

        let dispatch_path = required("JUJU_DISPATCH_PATH");
        let unit_name = required("JUJU_UNIT_NAME");
        let model_name = required("JUJU_MODEL_NAME");
        let model_uuid = required("JUJU_MODEL_UUID");
        let charm_dir = match get("JUJU_CHARM_DIR").or_else(|| get("CHARM_DIR")) {
            Some(dir) => PathBuf::from(dir),
            None => {
                problems.push("JUJU_CHARM_DIR (or CHARM_DIR) is not set".to_owned());
                PathBuf::new()
            }
        };
        let hook_name = env.get("JUJU_HOOK_NAME").cloned().unwrap_or_default();

        let (app_name, unit_number) = if unit_name.is_empty() {
            (String::new(), 0)
        } else {
            match unit_name
                .split_once('/')
                .and_then(|(app, n)| Some((app, n.parse::<u32>().ok()?)))
                .filter(|(app, _)| !app.is_empty())
            {
                Some((app, n)) => (app.to_owned(), n),
                None => {
                    problems.push(format!(
                        "JUJU_UNIT_NAME {unit_name:?} is not of the form <application>/<number>"
                    ));
                    (String::new(), 0)
                }
            }
        };

        let version = match get("JUJU_VERSION") {
            Some(text) => match JujuVersion::parse(&text) {
                Some(v) => Some(v),
                None => {
                    problems.push(format!("JUJU_VERSION {text:?} is not a Juju version"));
                    None
                }
            },
            None if dispatch_path == "hooks/meter-status-changed" => None,
            None => {
                problems.push("JUJU_VERSION is not set".to_owned());
                None
            }
        };

        let secret_revision = match get("JUJU_SECRET_REVISION") {
            Some(text) => match text.parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    problems.push(format!(
                        "JUJU_SECRET_REVISION {text:?} is not a revision number"
                    ));
                    None
                }
            },
            None => None,
        };

        let containers_dir = get(CONTAINERS_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTAINERS_DIR));

        if !problems.is_empty() {
            return Err(ContextError { problems });
        }

        Ok(JujuContext {
            dispatch_path,
            hook_name,
            unit_name,
            app_name,
            unit_number,
            model_name,
            model_uuid,
            charm_dir,
            version,
            context_id: get("JUJU_CONTEXT_ID"),
            agent_socket_address: get("JUJU_AGENT_SOCKET_ADDRESS"),
            agent_socket_network: get("JUJU_AGENT_SOCKET_NETWORK"),
            api_addresses: get("JUJU_API_ADDRESSES")
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            machine_id: get("JUJU_MACHINE_ID"),
            principal_unit: get("JUJU_PRINCIPAL_UNIT"),
            availability_zone: get("JUJU_AVAILABILITY_ZONE"),
            sla: get("JUJU_SLA"),
            cloud_api_version: get("CLOUD_API_VERSION"),
            proxy: ProxySettings {
                http: get("JUJU_CHARM_HTTP_PROXY"),
                https: get("JUJU_CHARM_HTTPS_PROXY"),
                ftp: get("JUJU_CHARM_FTP_PROXY"),
                no_proxy: get("JUJU_CHARM_NO_PROXY"),
            },
            debug: env.contains_key("JUJU_DEBUG"),
            debug_at: get("JUJU_DEBUG_AT"),
            trace: get("JUJU_TRACE_ID").map(|trace_id| TraceContext {
                trace_id,
                span_id: get("JUJU_SPAN_ID"),
                trace_flags: get("JUJU_TRACE_FLAGS"),
            }),
            relation: get("JUJU_RELATION"),
            relation_id: get("JUJU_RELATION_ID"),
            remote_app: get("JUJU_REMOTE_APP"),
            remote_unit: get("JUJU_REMOTE_UNIT"),
            departing_unit: get("JUJU_DEPARTING_UNIT"),
            action_name: get("JUJU_ACTION_NAME"),
            action_uuid: get("JUJU_ACTION_UUID"),
            action_tag: get("JUJU_ACTION_TAG"),
            workload_name: get("JUJU_WORKLOAD_NAME"),
            notice_id: get("JUJU_NOTICE_ID"),
            notice_type: get("JUJU_NOTICE_TYPE"),
            notice_key: get("JUJU_NOTICE_KEY"),
            pebble_check_name: get("JUJU_PEBBLE_CHECK_NAME"),
            secret_id: get("JUJU_SECRET_ID"),
            secret_label: get("JUJU_SECRET_LABEL"),
            secret_revision,
            storage_id: get("JUJU_STORAGE_ID"),
            storage_location: get("JUJU_STORAGE_LOCATION").map(PathBuf::from),
            storage_kind: get("JUJU_STORAGE_KIND"),
            containers_dir,
        })
    }

    /// The Pebble socket of workload container `container`.
    pub fn pebble_socket(&self, container: &str) -> PathBuf {
        self.containers_dir.join(container).join("pebble.socket")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("JUJU_DISPATCH_PATH", "hooks/config-changed"),
            ("JUJU_HOOK_NAME", "config-changed"),
            ("JUJU_UNIT_NAME", "livepatch/3"),
            ("JUJU_MODEL_NAME", "prod"),
            ("JUJU_MODEL_UUID", "f2a2c8b0-1111-4222-8333-444455556666"),
            (
                "JUJU_CHARM_DIR",
                "/var/lib/juju/agents/unit-livepatch-3/charm",
            ),
            ("JUJU_VERSION", "3.6.4"),
            ("JUJU_REMOTE_UNIT", ""),
            ("JUJU_API_ADDRESSES", "10.0.0.1:17070 10.0.0.2:17070"),
            ("JUJU_CHARM_HTTP_PROXY", ""),
        ]
    }

    #[test]
    fn a_complete_environment_gives_every_field() {
        let ctx = JujuContext::from_vars(base()).unwrap();
        assert_eq!(ctx.app_name, "livepatch");
        assert_eq!(ctx.unit_number, 3);
        assert_eq!(ctx.model_name, "prod");
        assert_eq!(ctx.hook_name, "config-changed");
        assert_eq!(ctx.version.as_ref().unwrap().to_string(), "3.6.4");
        assert_eq!(ctx.api_addresses, ["10.0.0.1:17070", "10.0.0.2:17070"]);
        assert_eq!(
            ctx.remote_unit, None,
            "an empty JUJU_REMOTE_UNIT is no unit"
        );
        assert_eq!(ctx.proxy.http, None);
        assert_eq!(ctx.containers_dir, PathBuf::from("/charm/containers"));
        assert_eq!(
            ctx.pebble_socket("livepatch"),
            PathBuf::from("/charm/containers/livepatch/pebble.socket")
        );
    }

    #[test]
    fn every_missing_required_variable_is_reported_at_once() {
        let err = JujuContext::from_vars([("JUJU_HOOK_NAME", "install")]).unwrap_err();
        assert_eq!(
            err.problems,
            [
                "JUJU_DISPATCH_PATH is not set",
                "JUJU_UNIT_NAME is not set",
                "JUJU_MODEL_NAME is not set",
                "JUJU_MODEL_UUID is not set",
                "JUJU_CHARM_DIR (or CHARM_DIR) is not set",
                "JUJU_VERSION is not set",
            ]
        );
        let text = err.to_string();
        assert!(text.starts_with("cannot read the Juju hook environment: JUJU_DISPATCH_PATH is not set; JUJU_UNIT_NAME"), "{text}");
    }

    #[test]
    fn malformed_values_are_reported_with_the_missing_ones() {
        let mut vars = base();
        vars.retain(|(k, _)| *k != "JUJU_MODEL_UUID");
        vars.push(("JUJU_UNIT_NAME", "no-slash"));
        vars.push(("JUJU_SECRET_REVISION", "two"));
        let err = JujuContext::from_vars(vars).unwrap_err();
        assert_eq!(
            err.problems,
            [
                "JUJU_MODEL_UUID is not set",
                "JUJU_UNIT_NAME \"no-slash\" is not of the form <application>/<number>",
                "JUJU_SECRET_REVISION \"two\" is not a revision number",
            ]
        );
    }

    #[test]
    fn legacy_charm_dir_and_containers_dir_override_are_honoured() {
        let mut vars = base();
        vars.retain(|(k, _)| *k != "JUJU_CHARM_DIR");
        vars.push(("CHARM_DIR", "/charm"));
        vars.push(("OPS_CONTAINERS_DIR", "/tmp/x"));
        let ctx = JujuContext::from_vars(vars).unwrap();
        assert_eq!(ctx.charm_dir, PathBuf::from("/charm"));
        assert_eq!(
            ctx.pebble_socket("web"),
            PathBuf::from("/tmp/x/web/pebble.socket")
        );
    }

    #[test]
    fn meter_status_changed_may_lack_a_version() {
        let mut vars = base();
        vars.retain(|(k, _)| *k != "JUJU_VERSION" && *k != "JUJU_DISPATCH_PATH");
        vars.push(("JUJU_DISPATCH_PATH", "hooks/meter-status-changed"));
        assert_eq!(JujuContext::from_vars(vars).unwrap().version, None);
    }

    #[test]
    fn versions_parse_and_compare() {
        /// major, minor, patch, tag, build.
        type Parts<'a> = (u32, u32, u32, Option<&'a str>, Option<u32>);
        fn check(text: &str, expected: Option<Parts<'_>>) {
            let got = JujuVersion::parse(text);
            let got = got
                .as_ref()
                .map(|v| (v.major, v.minor, v.patch, v.tag.as_deref(), v.build));
            assert_eq!(got, expected, "{text}");
        }
        check("3.6.4", Some((3, 6, 4, None, None)));
        check("3.6.4.1", Some((3, 6, 4, None, Some(1))));
        check("3.6-beta2", Some((3, 6, 0, Some("beta2"), None)));
        check("4.0-rc1.2", Some((4, 0, 0, Some("rc1"), Some(2))));
        check("3", None);
        check("3.x.1", None);
        check("3.6.4.1.1", None);
        let v = JujuVersion::parse("3.6.4").unwrap();
        assert!(v.at_least(3, 6, 4));
        assert!(v.at_least(3, 1, 7));
        assert!(!v.at_least(3, 6, 5));
        assert!(!JujuVersion::parse("3.6-beta2").unwrap().at_least(3, 6, 0));
    }
}
