//! The charm's database relation databags (juju.md §5.1, `postgresql_client`, and the legacy
//! `pgsql` `master` string): charm `gather::postgres_from_bag`, `relations`, `dsn`.
//!
//! Whatever a provider writes, the charm answers "waiting, because …" or a DSN, never a panic;
//! and a DSN it produces, read back by the server's own DSN parser, names exactly the user,
//! password, database, host, port and TLS settings the provider gave.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use livepatch_charm::desired::DbState;
use livepatch_charm::dsn::{first_endpoint, from_legacy_master, parse_keyword_dsn};
use livepatch_charm::gather::{postgres_from_bag, PostgresTarget};
use livepatch_charm::relations::legacy_master;
use ops::SecretContent;
use time::macros::datetime;
use workload::db::{Dsn, SslMode};

/// A CA the provider may hand over (so the TLS branch is reached).
const CA: &str = include_str!("../seeds/ca.pem");

/// The input is text, one `key=value` a line: first the provider's application bag, then
/// optional sections `[user-secret]` and `[tls-secret]` (a missing one cannot be read),
/// `[options]` (`sslmode`, `database`) and `[legacy]` (`master`, `allowed-units`). A `tls-ca`
/// of `REAL` is replaced by a real CA, so the TLS branch is reached.
#[derive(Default)]
struct Input {
    bag: BTreeMap<String, String>,
    user_secret: Option<BTreeMap<String, String>>,
    tls_secret: Option<BTreeMap<String, String>>,
    options: BTreeMap<String, String>,
    legacy: BTreeMap<String, String>,
}

impl Input {
    fn from(text: &str) -> Self {
        let mut input = Input::default();
        let mut section = String::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                match name {
                    "user-secret" => input.user_secret = Some(BTreeMap::new()),
                    "tls-secret" => input.tls_secret = Some(BTreeMap::new()),
                    _ => {}
                }
                continue;
            }
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            let v = if k == "tls-ca" && v == "REAL" { CA } else { v };
            let map = match section.as_str() {
                "user-secret" => input.user_secret.get_or_insert_default(),
                "tls-secret" => input.tls_secret.get_or_insert_default(),
                "options" => &mut input.options,
                "legacy" => &mut input.legacy,
                _ => &mut input.bag,
            };
            map.insert(k.to_string(), v.to_string());
        }
        input
    }
}

const SSLMODES: &[&str] = &["require", "verify-ca", "verify-full", "prefer", "disable"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let input = Input::from(text);
    let bag = input.bag;
    let (user_secret, tls_secret) = (input.user_secret, input.tls_secret);
    let mut read_secret = |_uri: &str, group: &str| {
        let c = if group == "user" {
            &user_secret
        } else {
            &tls_secret
        };
        c.clone()
            .map(SecretContent)
            .ok_or_else(|| "secret not found".to_string())
    };
    // Any sslmode the charm's config check lets through.
    let sslmode = input
        .options
        .get("sslmode")
        .map(String::as_str)
        .filter(|m| SSLMODES.contains(m))
        .unwrap_or("verify-full");
    // The charm only ever asks for its two fixed names.
    let database = match input.options.get("database").map(String::as_str) {
        Some("livepatch-metrics-db") => "livepatch-metrics-db",
        _ => "livepatch-server",
    };
    let target = PostgresTarget {
        database,
        sslmode,
        ca_path: "/etc/livepatch/db-ca.crt",
    };
    let state = postgres_from_bag(
        &bag,
        &mut read_secret,
        target,
        datetime!(2027-01-01 00:00 UTC),
    );
    match state {
        DbState::Waiting(reason) => assert!(!reason.is_empty()),
        DbState::Ready(db) => {
            // What the provider gave, by the charm's own precedence: secrets over plain fields.
            let from = |secret: &Option<BTreeMap<String, String>>, uri: &str, key: &str| {
                if bag.contains_key(uri) {
                    secret.as_ref().and_then(|s| s.get(key).cloned())
                } else {
                    bag.get(key).cloned()
                }
            };
            let user = from(&user_secret, "secret-user", "username").unwrap();
            let password = from(&user_secret, "secret-user", "password").unwrap();
            let endpoint = first_endpoint(&bag["endpoints"]).unwrap();
            let dsn = Dsn::parse(db.dsn.expose())
                .unwrap_or_else(|e| panic!("the server cannot read the DSN the charm wrote: {e}"));
            assert_eq!(dsn.pg.get_user(), Some(user.as_str()));
            assert_eq!(dsn.pg.get_password(), Some(password.as_bytes()));
            assert_eq!(dsn.pg.get_dbname(), Some(database));
            check_host(&dsn, &endpoint);
            match &db.ca {
                Some(_) => {
                    assert_eq!(
                        dsn.ssl_root_cert.as_deref(),
                        Some("/etc/livepatch/db-ca.crt")
                    );
                    let want = match sslmode {
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        "disable" => SslMode::Disable,
                        _ => SslMode::Prefer,
                    };
                    assert_eq!(dsn.ssl_mode, want);
                }
                None => assert_eq!(dsn.ssl_root_cert, None),
            }
        }
        other => panic!("a relation bag cannot give {other:?}"),
    }

    // The legacy interface: the `master` string, once this unit is allowed.
    let app = input.legacy;
    let offered = legacy_master(&app, &BTreeMap::new(), "livepatch/0");
    if let Some(master) = offered {
        if let Ok(uri) = from_legacy_master(&master) {
            let pairs = parse_keyword_dsn(&master).unwrap();
            let get = |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            let dsn = Dsn::parse(uri.expose()).unwrap_or_else(|e| {
                panic!("the server cannot read the legacy DSN the charm wrote: {e}")
            });
            assert_eq!(dsn.pg.get_user(), get("user").as_deref());
            assert_eq!(
                dsn.pg.get_password().unwrap_or_default(),
                get("password").unwrap_or_default().as_bytes()
            );
            assert_eq!(dsn.pg.get_dbname(), get("dbname").as_deref());
            let port: u16 = get("port").map_or(5432, |p| p.parse().unwrap());
            assert_eq!(dsn.pg.get_ports(), [port]);
        }
    }
});

/// The server connects to the host and port of the provider's first endpoint (the same address:
/// IPv6 spellings and host-name case may differ).
fn check_host(dsn: &Dsn, endpoint: &str) {
    use tokio_postgres::config::Host;
    let url = url::Url::parse(&format!("postgresql://{endpoint}")).unwrap();
    let want = url
        .host_str()
        .unwrap()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let got = match dsn.pg.get_hosts() {
        [Host::Tcp(h)] => h.trim_start_matches('[').trim_end_matches(']').to_string(),
        other => panic!("endpoint {endpoint:?} became hosts {other:?}"),
    };
    let same = match (
        want.parse::<std::net::IpAddr>(),
        got.parse::<std::net::IpAddr>(),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => want.eq_ignore_ascii_case(&got),
    };
    assert!(
        same,
        "endpoint {endpoint:?}: the charm means {want:?}, the server reads {got:?}"
    );
    let port = url.port().unwrap_or(5432);
    let ports = dsn.pg.get_ports();
    assert!(
        ports.is_empty() && port == 5432 || ports == [port],
        "{endpoint:?}: {ports:?}"
    );
}
