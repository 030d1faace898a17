//! Redaction of text before the charm logs it or shows it in a status or an
//! action failure (livepatch-server.md §14.8): URI credentials, `Bearer` and
//! `Basic` values, `key=value` / `key: value` pairs for secret-looking keys,
//! and every credential value the charm knows about.

/// What replaces a secret.
pub const REDACTED: &str = "***REDACTED***";

/// Keys whose values are hidden; `_` stands for `_`, `-`, a space or nothing.
const KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "access_key",
    "private_key",
    "auth_key",
    "api_secret",
    "credentials",
    "host",
];

/// Redacts `text`, including every non-empty string of `known`.
pub fn redact(text: &str, known: &[&str]) -> String {
    let mut out = text.to_string();
    // Longest first, so a DSN is replaced whole before the password in it.
    let mut known: Vec<&str> = known.iter().copied().filter(|s| s.len() >= 3).collect();
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in known {
        out = out.replace(secret, REDACTED);
    }
    let out = redact_uris(&out);
    let out = redact_auth_schemes(&out);
    redact_pairs(&out)
}

fn is_value_end(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | ',' | ';' | '&' | ')' | ']' | '}' | '<' | '>'
        )
}

/// `scheme://user:pw@host/...` → `scheme://***REDACTED***`.
fn redact_uris(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (before, after) = rest.split_at(pos + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
            .unwrap_or(after.len());
        let token = &after[..end];
        if token.contains('@') {
            out.push_str(REDACTED);
        } else {
            out.push_str(token);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `Bearer xyz` / `Basic xyz` → `Bearer ***REDACTED***`.
fn redact_auth_schemes(text: &str) -> String {
    let mut out = text.to_string();
    for scheme in ["Bearer ", "Basic ", "bearer ", "basic ", "Macaroon "] {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(pos) = rest.find(scheme) {
            let word_start = pos == 0 || !rest[..pos].ends_with(|c: char| c.is_alphanumeric());
            let (before, after) = rest.split_at(pos + scheme.len());
            result.push_str(before);
            if !word_start {
                rest = after;
                continue;
            }
            let end = after.find(is_value_end).unwrap_or(after.len());
            if end > 0 && !after.starts_with(REDACTED) {
                result.push_str(REDACTED);
            } else {
                result.push_str(&after[..end]);
            }
            rest = &after[end..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// Length of `key` matched case-insensitively at the start of `text`, where
/// `_` in the key matches `_`, `-`, a space or nothing.
fn match_key(text: &str, key: &str) -> Option<usize> {
    let t = text.as_bytes();
    let mut i = 0;
    for k in key.bytes() {
        if k == b'_' {
            if i < t.len() && matches!(t[i], b'_' | b'-' | b' ') {
                i += 1;
            }
            continue;
        }
        if i < t.len() && t[i].to_ascii_lowercase() == k {
            i += 1;
        } else {
            return None;
        }
    }
    Some(i)
}

/// `password=xyz`, `token: xyz` → the value replaced.
fn redact_pairs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < text.len() {
        let at_word_start = i == 0 || !(bytes[i - 1] as char).is_ascii_alphanumeric();
        if at_word_start && text.is_char_boundary(i) {
            if let Some(value_start) = KEYS.iter().find_map(|k| pair_value_start(&text[i..], k)) {
                let value_start = i + value_start;
                let value = &text[value_start..];
                let (quoted, body) = match value.chars().next() {
                    Some(q @ ('"' | '\'')) => (Some(q), &value[1..]),
                    _ => (None, value),
                };
                let len = match quoted {
                    Some(q) => body.find(q).unwrap_or(body.len()),
                    None => body.find(is_value_end).unwrap_or(body.len()),
                };
                out.push_str(&text[i..value_start]);
                if let Some(q) = quoted {
                    out.push(q);
                }
                if len > 0 && !body.starts_with(REDACTED) {
                    out.push_str(REDACTED);
                } else {
                    out.push_str(&body[..len]);
                }
                i = value_start + usize::from(quoted.is_some()) + len;
                continue;
            }
        }
        let c = text[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Where the value starts when `text` begins with `key` `=`/`:`.
fn pair_value_start(text: &str, key: &str) -> Option<usize> {
    let mut i = match_key(text, key)?;
    let b = text.as_bytes();
    if i < b.len() && (b[i] as char).is_ascii_alphanumeric() {
        return None;
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    if i >= b.len() || !matches!(b[i], b'=' | b':') {
        return None;
    }
    i += 1;
    // `a://` is a URI, not `key: value`.
    if text[i..].starts_with("//") {
        return None;
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_every_form() {
        let check = |input: &str, known: &[&str], expected: &str| {
            assert_eq!(redact(input, known), expected, "{input}");
        };
        check(
            "could not connect to server: postgresql://schemauser:schemasecret@db.host:5432/livepatch-server",
            &[],
            "could not connect to server: postgresql://***REDACTED***",
        );
        check(
            "GET https://example.com/path ok",
            &[],
            "GET https://example.com/path ok",
        );
        check(
            "Authorization: Bearer abc.def.ghi",
            &[],
            "Authorization: Bearer ***REDACTED***",
        );
        check(
            "header Basic dXNlcjpwdw==, done",
            &[],
            "header Basic ***REDACTED***, done",
        );
        check(
            "password=hunter2 user=bob",
            &[],
            "password=***REDACTED*** user=bob",
        );
        check(
            "Password: 'two words' next",
            &[],
            "Password: '***REDACTED***' next",
        );
        check(
            "api-key=k1 apikey=k2 API_KEY: k3",
            &[],
            "api-key=***REDACTED*** apikey=***REDACTED*** API_KEY: ***REDACTED***",
        );
        check(
            "host=db.internal port=5432",
            &[],
            "host=***REDACTED*** port=5432",
        );
        check("hostname=a", &[], "hostname=a");
        check("the token is fine", &[], "the token is fine");
        check(
            "error: s3cr3t-value leaked",
            &["s3cr3t-value"],
            "error: ***REDACTED*** leaked",
        );
        check("url: https://x/y", &[], "url: https://x/y");
    }

    #[test]
    fn a_known_dsn_is_replaced_whole() {
        let dsn = "postgresql://u:pw-123@h/db";
        assert_eq!(
            redact(&format!("bad {dsn}"), &["pw-123", dsn]),
            "bad ***REDACTED***"
        );
    }
}
