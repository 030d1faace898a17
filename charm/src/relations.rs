//! Reading and writing relation databags: the exact fields and encodings of
//! each interface (juju.md §5), kept in one place.
//!
//! Remote data is untrusted: every reader here takes whatever is in the bag
//! and returns either a value or a reason it is not usable yet. Nothing in a
//! remote bag can make a hook fail.

use std::collections::BTreeMap;

use serde_json::Value;

/// A relation databag.
pub type Bag = BTreeMap<String, String>;

/// Database name requested on `database`.
pub const DATABASE_NAME: &str = "livepatch-server";
/// Database name requested on `metrics-db`.
pub const METRICS_DATABASE_NAME: &str = "livepatch-metrics-db";
/// Secret fields the charm asks the PostgreSQL provider for.
pub const REQUESTED_SECRETS: &str = r#"["username","password","tls","tls-ca","uris"]"#;
/// Port the ingress relations publish.
pub const INGRESS_PORT: u16 = 8080;

/// What a `postgresql_client` provider's application bag offers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PostgresOffer {
    /// `endpoints`, as given.
    pub endpoints: Option<String>,
    /// `secret-user`: URI of the secret with `username` and `password`.
    pub secret_user: Option<String>,
    /// `secret-tls`: URI of the secret with `tls` and `tls-ca`.
    pub secret_tls: Option<String>,
    /// Plain `username` (providers without `requested-secrets` support).
    pub username: Option<String>,
    /// Plain `password` (same).
    pub password: Option<String>,
    /// Plain `tls` (same).
    pub tls: Option<String>,
    /// Plain `tls-ca` (same).
    pub tls_ca: Option<String>,
}

fn non_empty(bag: &Bag, key: &str) -> Option<String> {
    bag.get(key).filter(|v| !v.trim().is_empty()).cloned()
}

/// Reads a `postgresql_client` provider's application bag.
pub fn postgres_offer(bag: &Bag) -> PostgresOffer {
    PostgresOffer {
        endpoints: non_empty(bag, "endpoints"),
        secret_user: non_empty(bag, "secret-user"),
        secret_tls: non_empty(bag, "secret-tls"),
        username: non_empty(bag, "username"),
        password: non_empty(bag, "password"),
        tls: non_empty(bag, "tls"),
        tls_ca: non_empty(bag, "tls-ca"),
    }
}

/// What the requirer's application bag must hold on a `postgresql_client`
/// relation.
pub fn postgres_request(database: &str) -> Bag {
    [
        ("database".to_string(), database.to_string()),
        (
            "requested-secrets".to_string(),
            REQUESTED_SECRETS.to_string(),
        ),
    ]
    .into()
}

/// Whether a provider's `tls` field says TLS is on (`"True"` in Python's
/// spelling; any case accepted).
pub fn tls_enabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The label the charm binds to a `postgresql_client` secret, as the
/// data-platform library does: `<endpoint>.<relation-id>.<group>.secret`.
pub fn secret_label(endpoint: &str, relation_id: u64, group: &str) -> String {
    format!("{endpoint}.{relation_id}.{group}.secret")
}

/// The legacy pgsql `master` connection string, from the provider's
/// application bag or any unit bag; only offered once our unit is in the
/// provider's `allowed-units` when the provider lists them.
pub fn legacy_master(app: &Bag, units: &BTreeMap<String, Bag>, our_unit: &str) -> Option<String> {
    let allowed = |bag: &Bag| {
        bag.get("allowed-units")
            .is_none_or(|list| list.split_whitespace().any(|u| u == our_unit))
    };
    std::iter::once(app)
        .chain(units.values())
        .filter(|bag| allowed(bag))
        .find_map(|bag| non_empty(bag, "master"))
}

/// The URL a Traefik `ingress` v2 provider gives (`ingress` = `{"url": …}`).
pub fn ingress_url(provider_app: &Bag) -> Option<String> {
    let raw = provider_app.get("ingress")?;
    let value: Value = serde_json::from_str(raw).ok()?;
    let url = value.get("url")?.as_str()?;
    crate::options::check_http_url(url).ok()?;
    Some(url.trim_end_matches('/').to_string())
}

/// The requirer's application bag on `ingress` v2: every value JSON-encoded.
pub fn ingress_app_bag(model: &str, app: &str) -> Bag {
    [
        ("model".to_string(), json_string(model)),
        ("name".to_string(), json_string(app)),
        ("port".to_string(), INGRESS_PORT.to_string()),
    ]
    .into()
}

/// The requirer's unit bag on `ingress` v2: the unit's stable DNS name in the
/// cluster. `ip` is sent as JSON `null`, which tells Traefik to use `host`.
pub fn ingress_unit_bag(unit: &str, app: &str, model: &str) -> Bag {
    let pod = unit.replace('/', "-");
    let host = format!("{pod}.{app}-endpoints.{model}.svc.cluster.local");
    [
        ("host".to_string(), json_string(&host)),
        ("ip".to_string(), "null".to_string()),
    ]
    .into()
}

/// The requirer's application bag on `nginx-route`: plain strings.
pub fn nginx_route_bag(app: &str, model: &str) -> Bag {
    [
        ("service-hostname".to_string(), app.to_string()),
        ("service-name".to_string(), app.to_string()),
        ("service-port".to_string(), INGRESS_PORT.to_string()),
        ("service-namespace".to_string(), model.to_string()),
    ]
    .into()
}

/// The contracts URL a `pro-airgapped-server` unit offers
/// (`<scheme>://<hostname>[:<port>]`, scheme defaulting to http), from the
/// first unit, by unit number, whose data is usable.
pub fn airgapped_contracts_url(units: &BTreeMap<String, Bag>) -> Option<String> {
    let mut sorted: Vec<(&String, &Bag)> = units.iter().collect();
    sorted.sort_by_key(|(name, _)| unit_number(name));
    sorted.into_iter().find_map(|(_, bag)| {
        let host = non_empty(bag, "hostname")?;
        let scheme = non_empty(bag, "scheme").unwrap_or_else(|| "http".into());
        if !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        {
            return None;
        }
        let url = match non_empty(bag, "port") {
            Some(port) if port.parse::<u16>().is_ok() => format!("{scheme}://{host}:{port}"),
            Some(_) => return None,
            None => format!("{scheme}://{host}"),
        };
        // The URL must parse as one host; anything else is a broken provider.
        let parsed = url::Url::parse(&url).ok()?;
        parsed.host_str().filter(|h| !h.is_empty())?;
        Some(url)
    })
}

/// The CVE service URL a `cve-catalog` provider offers in its app bag.
pub fn cve_catalog_url(app: &Bag) -> Option<String> {
    let url = non_empty(app, "url")?;
    url::Url::parse(&url).ok()?;
    Some(url)
}

fn unit_number(unit: &str) -> u64 {
    unit.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// The `relation-set` content that makes the keys the charm manages
/// (`managed`) equal `desired`: every desired pair, and `""` (which deletes)
/// for each managed key not desired. Keys the charm does not manage are left
/// alone. Empty `desired` clears everything the charm wrote.
pub fn full_write(desired: &Bag, managed: &[&str]) -> Bag {
    let mut out = desired.clone();
    for k in managed {
        out.entry((*k).to_string()).or_default();
    }
    out
}

/// Keys the charm writes on `ingress` (app bag).
pub const INGRESS_APP_KEYS: &[&str] = &[
    "model",
    "name",
    "port",
    "scheme",
    "strip-prefix",
    "redirect-https",
];
/// Keys the charm writes on `ingress` (unit bag).
pub const INGRESS_UNIT_KEYS: &[&str] = &["host", "ip"];
/// Keys the charm writes on `nginx-route` (app bag).
pub const NGINX_ROUTE_KEYS: &[&str] = &[
    "service-hostname",
    "service-name",
    "service-port",
    "service-namespace",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn bag(pairs: &[(&str, &str)]) -> Bag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn postgres_offers_read_secret_references_and_plain_fields() {
        let offer = postgres_offer(&bag(&[
            ("endpoints", "pg-primary:5432"),
            ("secret-user", "secret:abc"),
            ("secret-tls", "secret:def"),
            ("database", "livepatch-server"),
        ]));
        assert_eq!(offer.endpoints.as_deref(), Some("pg-primary:5432"));
        assert_eq!(offer.secret_user.as_deref(), Some("secret:abc"));
        assert_eq!(offer.secret_tls.as_deref(), Some("secret:def"));
        let plain = postgres_offer(&bag(&[
            ("username", "u"),
            ("password", ""),
            ("endpoints", " "),
        ]));
        assert_eq!(plain.username.as_deref(), Some("u"));
        assert_eq!(plain.password, None);
        assert_eq!(plain.endpoints, None);
    }

    #[test]
    fn the_request_names_the_database_and_the_secrets() {
        let req = postgres_request(DATABASE_NAME);
        assert_eq!(req["database"], "livepatch-server");
        let secrets: Vec<String> = serde_json::from_str(&req["requested-secrets"]).unwrap();
        assert_eq!(secrets, ["username", "password", "tls", "tls-ca", "uris"]);
    }

    #[test]
    fn tls_flags_read_any_case() {
        assert!(tls_enabled(Some("True")));
        assert!(tls_enabled(Some("true")));
        assert!(!tls_enabled(Some("False")));
        assert!(!tls_enabled(Some("garbage")));
        assert!(!tls_enabled(None));
    }

    #[test]
    fn ingress_urls_come_from_the_json_field_and_garbage_is_ignored() {
        let check = |raw: &str, expected: Option<&str>| {
            assert_eq!(
                ingress_url(&bag(&[("ingress", raw)])).as_deref(),
                expected,
                "{raw}"
            );
        };
        check(
            r#"{"url": "http://lp.example.com/model-livepatch/"}"#,
            Some("http://lp.example.com/model-livepatch"),
        );
        check(r#"{"url": 5}"#, None);
        check("not json", None);
        check(r#"{"url": "javascript:alert(1)"}"#, None);
        assert_eq!(ingress_url(&Bag::new()), None);
    }

    #[test]
    fn ingress_bags_are_json_encoded_and_nginx_route_bags_are_plain() {
        let app = ingress_app_bag("lp-model", "livepatch");
        assert_eq!(app["model"], "\"lp-model\"");
        assert_eq!(app["name"], "\"livepatch\"");
        assert_eq!(app["port"], "8080");
        let unit = ingress_unit_bag("livepatch/1", "livepatch", "lp-model");
        assert_eq!(
            unit["host"],
            "\"livepatch-1.livepatch-endpoints.lp-model.svc.cluster.local\""
        );
        assert_eq!(unit["ip"], "null");
        let nginx = nginx_route_bag("livepatch", "lp-model");
        assert_eq!(nginx["service-hostname"], "livepatch");
        assert_eq!(nginx["service-port"], "8080");
        assert_eq!(nginx["service-namespace"], "lp-model");
    }

    #[test]
    fn airgapped_urls_come_from_the_first_usable_unit() {
        let mut units = BTreeMap::new();
        units.insert(
            "pro/1".to_string(),
            bag(&[
                ("scheme", "scheme"),
                ("hostname", "second.host"),
                ("port", "9999"),
            ]),
        );
        units.insert(
            "pro/0".to_string(),
            bag(&[
                ("scheme", "scheme"),
                ("hostname", "first.host"),
                ("port", "9999"),
            ]),
        );
        assert_eq!(
            airgapped_contracts_url(&units).as_deref(),
            Some("scheme://first.host:9999")
        );
        units.remove("pro/0");
        assert_eq!(
            airgapped_contracts_url(&units).as_deref(),
            Some("scheme://second.host:9999")
        );
        units.insert("pro/0".to_string(), bag(&[("hostname", "h")]));
        assert_eq!(airgapped_contracts_url(&units).as_deref(), Some("http://h"));
        let garbage: BTreeMap<String, Bag> = [(
            "pro/0".to_string(),
            bag(&[("hostname", "a b/c"), ("port", "x")]),
        )]
        .into();
        assert_eq!(airgapped_contracts_url(&garbage), None);
    }

    #[test]
    fn legacy_masters_wait_for_allowed_units() {
        let master = "host=h user=u password=p dbname=d";
        let app = bag(&[("master", master), ("allowed-units", "other/0")]);
        assert_eq!(legacy_master(&app, &BTreeMap::new(), "lp/0"), None);
        let app = bag(&[("master", master), ("allowed-units", "other/0 lp/0")]);
        assert_eq!(
            legacy_master(&app, &BTreeMap::new(), "lp/0").as_deref(),
            Some(master)
        );
        let units = [("pg/0".to_string(), bag(&[("master", master)]))].into();
        assert_eq!(
            legacy_master(&Bag::new(), &units, "lp/0").as_deref(),
            Some(master)
        );
    }

    #[test]
    fn full_writes_set_wanted_keys_and_clear_the_rest_of_ours() {
        let write = full_write(&ingress_app_bag("m", "lp"), INGRESS_APP_KEYS);
        assert_eq!(write["name"], "\"lp\"");
        assert_eq!(write["scheme"], "");
        assert_eq!(write["strip-prefix"], "");
        assert!(!write.contains_key("other"));
        let cleared = full_write(&Bag::new(), NGINX_ROUTE_KEYS);
        assert_eq!(cleared.len(), 4);
        assert!(cleared.values().all(String::is_empty));
    }
}
