//! The Kubernetes NetworkPolicy the leader maintains when
//! `network-policy.enabled` is true: one policy for the application's pods
//! that keeps every port open except the admin port, which only
//! `network-policy.admin-cidrs` may reach.
//!
//! Which ports stay open, and why Juju is never cut off:
//! - The policy has `policyTypes: [Ingress]` only, so egress is untouched:
//!   the unit agent's connection to the controller, the charm's calls to the
//!   Kubernetes API and the server's calls to PostgreSQL and upstream all
//!   keep working.
//! - Rather than listing what to allow (and risk missing a port Juju uses:
//!   the kubelet probes the charm container's agent and each Pebble's health
//!   endpoint on ports Juju picks, and may add more in new versions), the
//!   policy allows every TCP and UDP port from anywhere except the admin
//!   port, expressed as port ranges (`endPort`, GA since Kubernetes 1.25). The
//!   public port 8080 is therefore open to everyone, as the issue asks.
//! - The admin port gets its own rule: only the listed CIDRs. With no CIDRs,
//!   nothing outside the pod reaches it; the charm's own admin actions use
//!   the pod's loopback, which a NetworkPolicy never filters.
//! - `/metrics` shares port 8080 with the public API, and a NetworkPolicy
//!   cannot tell paths apart; the server itself enforces
//!   `network-policy.metrics-cidrs` (`LP_SERVER_METRICS_ALLOWED_CIDRS`), and
//!   the admin CIDRs too, as defence in depth.
//!
//! The policy is applied with server-side apply, so one request creates or
//! updates it; turning the option off deletes it.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use crate::options::Cidr;

/// The field manager named in server-side apply.
pub const FIELD_MANAGER: &str = "livepatch-server-k8s-charm";

/// What the policy must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// The Juju application (pods carry `app.kubernetes.io/name=<app>`).
    pub app: String,
    /// The model's namespace.
    pub namespace: String,
    /// The admin port, when the admin API has one of its own.
    pub admin_port: Option<u16>,
    /// Who may reach the admin port.
    pub admin_cidrs: Vec<Cidr>,
}

/// The policy's name for an application.
pub fn policy_name(app: &str) -> String {
    format!("{app}-livepatch")
}

fn port_range(protocol: &str, from: u16, to: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_string()),
        port: Some(IntOrString::Int(i32::from(from))),
        end_port: (to > from).then_some(i32::from(to)),
    }
}

/// The NetworkPolicy object for `spec`.
pub fn build(spec: &PolicySpec) -> NetworkPolicy {
    let labels: BTreeMap<String, String> =
        [("app.kubernetes.io/name".to_string(), spec.app.clone())].into();
    let mut open: Vec<NetworkPolicyPort> = Vec::new();
    match spec.admin_port {
        Some(admin) => {
            if admin > 1 {
                open.push(port_range("TCP", 1, admin - 1));
            }
            if admin < u16::MAX {
                open.push(port_range("TCP", admin + 1, u16::MAX));
            }
        }
        None => open.push(port_range("TCP", 1, u16::MAX)),
    }
    open.push(port_range("UDP", 1, u16::MAX));
    let mut rules = vec![NetworkPolicyIngressRule {
        from: None,
        ports: Some(open),
    }];
    if let (Some(admin), false) = (spec.admin_port, spec.admin_cidrs.is_empty()) {
        rules.push(NetworkPolicyIngressRule {
            from: Some(
                spec.admin_cidrs
                    .iter()
                    .map(|c| NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: c.to_string(),
                            except: None,
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![port_range("TCP", admin, admin)]),
        });
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(policy_name(&spec.app)),
            namespace: Some(spec.namespace.clone()),
            labels: Some(
                [
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        FIELD_MANAGER.to_string(),
                    ),
                    ("app.kubernetes.io/part-of".to_string(), spec.app.clone()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(rules),
            egress: None,
        }),
    }
}

/// Why the policy could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetpolError {
    /// The application has no cluster access: `juju trust` is needed.
    #[error("the Kubernetes API refused access to NetworkPolicies (is the application trusted?)")]
    Forbidden,
    /// Not running inside Kubernetes, or the service account files are missing.
    #[error("cannot reach the Kubernetes API: {0}")]
    Config(String),
    /// Any other API failure.
    #[error("Kubernetes API error: {0}")]
    Api(String),
}

fn api_error(e: kube::Error) -> NetpolError {
    match &e {
        kube::Error::Api(status) if status.code == 403 || status.code == 401 => {
            NetpolError::Forbidden
        }
        _ => NetpolError::Api(e.to_string()),
    }
}

/// A client for the cluster the pod runs in.
pub fn in_cluster_client() -> Result<kube::Client, NetpolError> {
    let config = kube::Config::incluster().map_err(|e| NetpolError::Config(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| NetpolError::Config(e.to_string()))
}

/// Creates or updates the policy (one server-side apply request).
pub async fn apply(client: kube::Client, spec: &PolicySpec) -> Result<(), NetpolError> {
    let api: Api<NetworkPolicy> = Api::namespaced(client, &spec.namespace);
    let mut policy = build(spec);
    // Server-side apply needs the type information in the body.
    let body = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": policy.metadata,
        "spec": policy.spec.take(),
    });
    api.patch(
        &policy_name(&spec.app),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(drop)
    .map_err(api_error)
}

/// Deletes the policy; a policy that is not there is fine.
pub async fn delete(client: kube::Client, app: &str, namespace: &str) -> Result<(), NetpolError> {
    let api: Api<NetworkPolicy> = Api::namespaced(client, namespace);
    match api
        .delete(&policy_name(app), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(api_error(e)),
    }
}

/// A digest of the spec, so the leader calls the API only when it changes.
pub fn digest(spec: Option<&PolicySpec>) -> String {
    match spec {
        None => "absent".into(),
        Some(s) => {
            let cidrs: Vec<String> = s.admin_cidrs.iter().map(ToString::to_string).collect();
            format!(
                "{}|{}|{:?}|{}",
                s.app,
                s.namespace,
                s.admin_port,
                cidrs.join(",")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(admin_port: Option<u16>, cidrs: &[&str]) -> PolicySpec {
        PolicySpec {
            app: "livepatch".into(),
            namespace: "lp-model".into(),
            admin_port,
            admin_cidrs: cidrs.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
        }
    }

    fn ports(rule: &NetworkPolicyIngressRule) -> Vec<(String, i32, Option<i32>)> {
        rule.ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| {
                let IntOrString::Int(port) = p.port.clone().unwrap() else {
                    panic!()
                };
                (p.protocol.clone().unwrap(), port, p.end_port)
            })
            .collect()
    }

    #[test]
    fn the_admin_port_is_fenced_and_every_other_port_stays_open() {
        let policy = build(&spec(Some(9090), &["10.0.0.0/8"]));
        let s = policy.spec.unwrap();
        assert_eq!(s.policy_types.unwrap(), ["Ingress"]);
        assert_eq!(
            s.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/name"],
            "livepatch"
        );
        let rules = s.ingress.unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules[0].from.is_none(), "open ports are open to everyone");
        assert_eq!(
            ports(&rules[0]),
            [
                ("TCP".to_string(), 1, Some(9089)),
                ("TCP".to_string(), 9091, Some(65535)),
                ("UDP".to_string(), 1, Some(65535)),
            ]
        );
        let from = rules[1].from.as_ref().unwrap();
        assert_eq!(from[0].ip_block.as_ref().unwrap().cidr, "10.0.0.0/8");
        assert_eq!(ports(&rules[1]), [("TCP".to_string(), 9090, None)]);
    }

    #[test]
    fn without_cidrs_the_admin_port_is_closed_to_everyone_outside_the_pod() {
        let rules = build(&spec(Some(9090), &[])).spec.unwrap().ingress.unwrap();
        assert_eq!(rules.len(), 1);
        assert!(!ports(&rules[0])
            .iter()
            .any(|(p, from, to)| p == "TCP" && *from <= 9090 && to.unwrap_or(*from) >= 9090));
    }

    #[test]
    fn without_an_admin_port_every_port_is_open() {
        let rules = build(&spec(None, &["10.0.0.0/8"]))
            .spec
            .unwrap()
            .ingress
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(ports(&rules[0])[0], ("TCP".to_string(), 1, Some(65535)));
    }

    #[test]
    fn digests_change_with_the_spec() {
        let a = digest(Some(&spec(Some(9090), &["10.0.0.0/8"])));
        let b = digest(Some(&spec(Some(9090), &["10.0.0.0/16"])));
        assert_ne!(a, b);
        assert_ne!(a, digest(None));
        assert_eq!(a, digest(Some(&spec(Some(9090), &["10.0.0.0/8"]))));
    }
}
