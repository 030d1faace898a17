//! Admin users for the server's Basic login: parsing `auth.basic.users`,
//! reading `auth.basic.users-secret`, hashing plain passwords, and the
//! charm's internal admin user.
//!
//! The server wants `user:bcrypt-hash` pairs (livepatch-server.md §4.1). A
//! secret may hold plain passwords, which the charm hashes; bcrypt is slow on
//! purpose and salted at random, so hashing again in every hook would cost
//! tens of milliseconds and change the environment (restarting the server)
//! each time. [`HashCache`] remembers each hash beside a keyed fingerprint of
//! the password it was made from, in the unit's Juju state.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// bcrypt cost for passwords the charm hashes (what operators generate).
pub const BCRYPT_COST: u32 = 10;

/// One `user:hash` pair.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub name: String,
    /// Its bcrypt hash.
    pub hash: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User({:?}, <hash>)", self.name)
    }
}

/// Parses `user:hash[, user:hash...]` (spaces after commas tolerated). Every
/// hash must look like bcrypt; user names may not repeat.
pub fn parse_users(text: &str) -> Result<Vec<User>, String> {
    let mut users: Vec<User> = Vec::new();
    for (i, item) in text.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, hash) = item
            .split_once(':')
            .ok_or_else(|| format!("entry {} is not user:bcrypt-hash", i + 1))?;
        check_user_name(name).map_err(|e| format!("entry {}: {e}", i + 1))?;
        if !is_bcrypt_hash(hash) {
            return Err(format!(
                "the hash of user {name:?} is not a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters); make one with `livepatch-admin hash-password`"
            ));
        }
        if users.iter().any(|u| u.name == name) {
            return Err(format!("user {name:?} appears twice"));
        }
        users.push(User {
            name: name.to_string(),
            hash: hash.to_string(),
        });
    }
    Ok(users)
}

fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the user name is empty".into());
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ':' || c == ',')
    {
        return Err(format!(
            "user name {name:?} may not hold spaces, ':' or ','"
        ));
    }
    Ok(())
}

/// Whether `hash` has the shape of a bcrypt hash: `$2a$`, `$2b$` or `$2y$`,
/// a two-digit cost from 04 to 31, and 53 characters of bcrypt's base64.
pub fn is_bcrypt_hash(hash: &str) -> bool {
    let b = hash.as_bytes();
    if b.len() != 60 || !hash.starts_with("$2") || b[3] != b'$' || b[6] != b'$' {
        return false;
    }
    if !matches!(b[2], b'a' | b'b' | b'y') {
        return false;
    }
    let cost = match hash[4..6].parse::<u32>() {
        Ok(c) if b[4].is_ascii_digit() && b[5].is_ascii_digit() => c,
        _ => return false,
    };
    (4..=31).contains(&cost)
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

/// Remembered bcrypt hashes of plain passwords, keyed by user. Stored in the
/// unit's Juju state (never in relation data), so it survives pod churn.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashCache {
    /// Random per-unit key for the fingerprints, so they cannot be compared
    /// across units or looked up in precomputed tables.
    pub key: String,
    /// user → (fingerprint of the password, bcrypt hash of it).
    pub entries: BTreeMap<String, CachedHash>,
}

/// One remembered hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedHash {
    /// Hex SHA-256 of key, user and password.
    pub fingerprint: String,
    /// bcrypt hash of the password.
    pub hash: String,
}

impl fmt::Debug for CachedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CachedHash(<redacted>)")
    }
}

impl fmt::Debug for HashCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashCache")
            .field("users", &self.entries.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl HashCache {
    fn fingerprint(&self, user: &str, password: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.key.as_bytes());
        h.update([0]);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        hex(&h.finalize())
    }

    /// The bcrypt hash for `user`'s `password`: the remembered one when the
    /// password is unchanged, else a new one (which is remembered).
    pub fn hash(&mut self, user: &str, password: &str) -> Result<String, String> {
        if self.key.is_empty() {
            self.key = random_token(32);
        }
        let fp = self.fingerprint(user, password);
        if let Some(entry) = self.entries.get(user) {
            if entry.fingerprint == fp {
                return Ok(entry.hash.clone());
            }
        }
        let hash = bcrypt::hash(password, BCRYPT_COST)
            .map_err(|e| format!("cannot hash the password of user {user:?}: {e}"))?;
        self.entries.insert(
            user.to_string(),
            CachedHash {
                fingerprint: fp,
                hash: hash.clone(),
            },
        );
        Ok(hash)
    }

    /// Forgets users no longer configured, so removed passwords leave no trace.
    pub fn retain(&mut self, users: &[String]) {
        self.entries.retain(|u, _| users.contains(u));
    }
}

/// Users from the content of an `auth.basic.users-secret` secret: key
/// `users` holds `user:hash` pairs; every other key is a user whose value is
/// a bcrypt hash or a plain password (hashed through `cache`).
pub fn users_from_secret(
    content: &BTreeMap<String, String>,
    cache: &mut HashCache,
) -> Result<Vec<User>, String> {
    let mut users = match content.get("users") {
        Some(list) => parse_users(list).map_err(|e| format!("key `users`: {e}"))?,
        None => Vec::new(),
    };
    let mut plain_users = Vec::new();
    for (key, value) in content {
        if key == "users" {
            continue;
        }
        check_user_name(key)?;
        if value.is_empty() {
            return Err(format!(
                "key `{key}` is empty; give a password or a bcrypt hash"
            ));
        }
        if users.iter().any(|u| &u.name == key) {
            return Err(format!("user {key:?} appears twice"));
        }
        let hash = if is_bcrypt_hash(value) {
            value.clone()
        } else {
            plain_users.push(key.clone());
            cache.hash(key, value)?
        };
        users.push(User {
            name: key.clone(),
            hash,
        });
    }
    cache.retain(&plain_users);
    Ok(users)
}

/// The value of `LP_AUTH_BASIC_USERS`: `user:hash` pairs joined by commas.
pub fn users_env(users: &[User]) -> String {
    users
        .iter()
        .map(|u| format!("{}:{}", u.name, u.hash))
        .collect::<Vec<_>>()
        .join(",")
}

/// A random URL-safe token of `len` characters from the OS's generator.
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$Y8o/3mvBaM7SfdNoHf9v4eWKh9yXHBS1YRKqKRpIhyfnAVD7f4qzK";

    #[test]
    fn bcrypt_shapes_are_recognised() {
        let check =
            |hash: &str, expected: bool| assert_eq!(is_bcrypt_hash(hash), expected, "{hash}");
        check(HASH, true);
        check(&HASH.replace("$2y$", "$2a$"), true);
        check(&HASH.replace("$2y$", "$2b$"), true);
        check(&HASH.replace("$2y$", "$2x$"), false);
        check(&HASH.replace("$10$", "$03$"), false);
        check(&HASH.replace("$10$", "$1a$"), false);
        check(&HASH[..59], false);
        check("secret", false);
        check(&HASH.replace('Y', "!"), false);
    }

    #[test]
    fn user_lists_parse_with_spaces_and_refuse_bad_entries() {
        let users = parse_users(&format!("alice:{HASH}, bob:{HASH}")).unwrap();
        assert_eq!(
            users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        let check = |text: String, fragment: &str| {
            let err = parse_users(&text).unwrap_err();
            assert!(err.contains(fragment), "{text}: {err}");
        };
        check("alice".into(), "entry 1 is not user:bcrypt-hash");
        check("alice:password".into(), "not a bcrypt hash");
        check(format!("alice:{HASH},alice:{HASH}"), "appears twice");
        check(format!(":{HASH}"), "user name is empty");
        check(format!("al ice:{HASH}"), "may not hold spaces");
    }

    #[test]
    fn secret_users_hash_plain_passwords_once_and_keep_given_hashes() {
        let mut cache = HashCache::default();
        let content: BTreeMap<String, String> = [
            ("users".to_string(), format!("carol:{HASH}")),
            ("alice".to_string(), "correct horse".to_string()),
            ("bob".to_string(), HASH.to_string()),
        ]
        .into();
        let first = users_from_secret(&content, &mut cache).unwrap();
        let names: Vec<_> = first.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["carol", "alice", "bob"]);
        let alice = &first[1].hash;
        assert!(is_bcrypt_hash(alice));
        assert!(bcrypt::verify("correct horse", alice).unwrap());
        assert_eq!(first[2].hash, HASH);

        // Same password: the same hash comes back, so the layer is unchanged.
        let again = users_from_secret(&content, &mut cache).unwrap();
        assert_eq!(again, first);

        // A new password gets a new hash.
        let mut changed = content.clone();
        changed.insert("alice".into(), "battery staple".into());
        let third = users_from_secret(&changed, &mut cache).unwrap();
        assert_ne!(&third[1].hash, alice);
        assert!(bcrypt::verify("battery staple", &third[1].hash).unwrap());
    }

    #[test]
    fn removed_users_leave_the_cache() {
        let mut cache = HashCache::default();
        let content: BTreeMap<String, String> =
            [("alice".to_string(), "pw-one".to_string())].into();
        users_from_secret(&content, &mut cache).unwrap();
        assert!(cache.entries.contains_key("alice"));
        users_from_secret(&BTreeMap::new(), &mut cache).unwrap();
        assert!(cache.entries.is_empty());
    }

    #[test]
    fn debug_output_never_shows_hashes() {
        let users = parse_users(&format!("alice:{HASH}")).unwrap();
        assert!(!format!("{users:?}").contains("$2y$"));
        let mut cache = HashCache::default();
        cache.hash("alice", "pw").unwrap();
        assert!(!format!("{cache:?}").contains("$2"));
    }
}
