//! PostgreSQL connection strings: composed from relation credentials
//! (user and password percent-encoded, the first endpoint, TLS as `sslmode`
//! and `sslrootcert`) and translated from the legacy pgsql interface's libpq
//! `key=value` strings.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::Sensitive;

/// Characters kept as they are in URI userinfo: RFC 3986's unreserved set.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the database CA is pushed in the workload container.
pub const DB_CA_PATH: &str = "/etc/livepatch/db-ca.crt";
/// Where the metrics database CA is pushed.
pub const METRICS_DB_CA_PATH: &str = "/etc/livepatch/metrics-db-ca.crt";

/// TLS settings for a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls<'a> {
    /// libpq `sslmode` (`database.sslmode`).
    pub sslmode: &'a str,
    /// Path of the CA file inside the container.
    pub root_cert: &'a str,
}

/// `postgresql://<user>:<password>@<endpoint>/<database>[?sslmode=…&sslrootcert=…]`.
pub fn compose(
    user: &str,
    password: &str,
    endpoint: &str,
    database: &str,
    tls: Option<Tls<'_>>,
) -> Sensitive {
    let mut dsn = format!(
        "postgresql://{}:{}@{}/{}",
        utf8_percent_encode(user, USERINFO),
        utf8_percent_encode(password, USERINFO),
        endpoint,
        utf8_percent_encode(database, USERINFO),
    );
    if let Some(tls) = tls {
        dsn.push_str("?sslmode=");
        dsn.push_str(tls.sslmode);
        dsn.push_str("&sslrootcert=");
        dsn.push_str(&utf8_percent_encode(tls.root_cert, USERINFO).to_string());
    }
    Sensitive(dsn)
}

/// The first endpoint of a provider's `endpoints` field (`host:port[,host:port]`),
/// checked so that nothing but a host and port can reach the URI.
pub fn first_endpoint(endpoints: &str) -> Result<String, String> {
    let first = endpoints
        .split(',')
        .map(str::trim)
        .next()
        .unwrap_or_default();
    if first.is_empty() {
        return Err("`endpoints` is empty".into());
    }
    // url::Url percent-encodes what a host may not hold and would accept it, but the DSN gets
    // the text as given: only host-name and address characters may pass (found by the databag
    // fuzz target, where the server then read a host with a control character in it).
    let plain = first
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c));
    let ok = plain
        && url::Url::parse(&format!("postgresql://{first}"))
            .ok()
            .filter(|u| {
                u.host_str().is_some_and(|h| !h.is_empty())
                    && u.username().is_empty()
                    && u.password().is_none()
                    && matches!(u.path(), "" | "/")
                    && u.query().is_none()
                    && u.fragment().is_none()
            })
            .is_some();
    if ok {
        Ok(first.to_string())
    } else {
        Err(format!("`endpoints` entry {first:?} is not host:port"))
    }
}

/// Parses a libpq `key=value` connection string (values may be single-quoted
/// with backslash escapes) into its pairs.
pub fn parse_keyword_dsn(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return Err(format!("expected key=value near {key:?}"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or("unterminated quote")?),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err("unterminated quote".into()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    value.push(chars.next().ok_or("dangling backslash")?);
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// The legacy pgsql `master` string as a URI without its query string:
/// `postgresql://user:password@host:port/dbname`.
pub fn from_legacy_master(master: &str) -> Result<Sensitive, String> {
    let pairs = parse_keyword_dsn(master)?;
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let host = get("host").filter(|h| !h.is_empty()).ok_or("no host")?;
    let user = get("user").filter(|u| !u.is_empty()).ok_or("no user")?;
    let password = get("password").unwrap_or_default();
    let dbname = get("dbname").filter(|d| !d.is_empty()).ok_or("no dbname")?;
    // libpq reads `host=a,b` as several hosts; pgsql providers name one, and taking the first
    // would drop the port that goes with it (found by the databag fuzz target).
    if host.contains(',') {
        return Err(format!(
            "host {host:?} names several hosts; one is expected"
        ));
    }
    let port = get("port").unwrap_or("5432");
    if port.parse::<u16>().is_err() {
        return Err(format!("port {port:?} is not a number"));
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let endpoint = first_endpoint(&format!("{host}:{port}"))?;
    Ok(compose(user, password, &endpoint, dbname, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_are_composed_with_encoded_credentials_and_optional_tls() {
        let check = |user: &str, password: &str, tls: Option<Tls<'_>>, expected: &str| {
            assert_eq!(
                compose(user, password, "10.0.0.1:5432", "livepatch-server", tls).expose(),
                expected
            );
        };
        check(
            "testuser",
            "testpass",
            None,
            "postgresql://testuser:testpass@10.0.0.1:5432/livepatch-server",
        );
        check(
            "relation-7",
            "p@ss:w/rd?#%",
            None,
            "postgresql://relation-7:p%40ss%3Aw%2Frd%3F%23%25@10.0.0.1:5432/livepatch-server",
        );
        check(
            "u",
            "p",
            Some(Tls {
                sslmode: "verify-full",
                root_cert: DB_CA_PATH,
            }),
            "postgresql://u:p@10.0.0.1:5432/livepatch-server?sslmode=verify-full&sslrootcert=%2Fetc%2Flivepatch%2Fdb-ca.crt",
        );
    }

    #[test]
    fn the_first_endpoint_is_used_and_garbage_refused() {
        let check = |endpoints: &str, expected: Result<&str, ()>| {
            let got = first_endpoint(endpoints).map_err(drop);
            assert_eq!(got.as_deref().map_err(|_| ()), expected, "{endpoints}");
        };
        check(
            "some.database.host,some.other.database.host",
            Ok("some.database.host"),
        );
        check("10.0.0.1:5432, 10.0.0.2:5432", Ok("10.0.0.1:5432"));
        check("[fd00::1]:5432", Ok("[fd00::1]:5432"));
        check("", Err(()));
        check("user:pw@host:5432", Err(()));
        check("host/otherdb", Err(()));
        check("host:5432?sslmode=disable", Err(()));
        check("host name", Err(()));
        check("db=x:5432", Err(()));
        check("10.0.0.1\u{10}:5432", Err(()));
        check("db%41:5432", Err(()));
    }

    #[test]
    fn legacy_master_strings_become_uris() {
        let check = |master: &str, expected: Result<&str, &str>| {
            let got = from_legacy_master(master).map(|s| s.expose().to_string());
            match expected {
                Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{master}"),
                Err(fragment) => {
                    let err = got.unwrap_err();
                    assert!(err.contains(fragment), "{master}: {err}")
                }
            }
        };
        check(
            "host=host port=5432 dbname=livepatch-server user=username password=password",
            Ok("postgresql://username:password@host:5432/livepatch-server"),
        );
        check(
            "dbname=lp host=10.1.2.3 user=u password='it''s \\'quoted\\'' port=6432 sslmode=require",
            Err("expected key=value"),
        );
        check(
            "dbname=lp host=10.1.2.3 user=u password='it\\'s quoted' port=6432 sslmode=require",
            Ok("postgresql://u:it%27s%20quoted@10.1.2.3:6432/lp"),
        );
        check("host=h user=u dbname=d", Ok("postgresql://u:@h:5432/d"));
        check("user=u dbname=d", Err("no host"));
        check("host=a,b port=6432 user=u dbname=d", Err("several hosts"));
        check("host=h user=u dbname=d port=abc", Err("not a number"));
        check("host=h user=u dbname=d password='open", Err("unterminated"));
    }
}
