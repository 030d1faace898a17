//! Admin authentication (livepatch-server.md §4.1): HTTP Basic against `auth.basic.users`
//! (bcrypt, with the same bcrypt work for unknown users so timing does not reveal names), and
//! macaroon-style tokens: an HMAC-SHA256 chain over the root key id and the caveats (user,
//! expiry, session), signed with a root key kept in PostgreSQL. A root key mints for at most 24 h
//! and is kept until the last token it signed expires (240 h later).
//!
//! No bcrypt on every admin request: a verified Basic header is remembered (by its SHA-256) for a
//! minute, and root keys are cached in memory.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::config::BasicUser;
use crate::store::{Store, StoreError};

/// How long a token is valid.
pub const TOKEN_LIFETIME: time::Duration = time::Duration::hours(240);

/// How long a verified Basic header is trusted without another bcrypt.
const BASIC_CACHE_TTL: Duration = Duration::from_secs(60);
const BASIC_CACHE_MAX: usize = 1024;

/// A bcrypt hash (cost 10, what operators generate) of a random password nobody knows: unknown
/// users are checked against it so they cost as much as known ones.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut pw = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut pw);
    bcrypt::hash(pw, 10).expect("bcrypt of a random password")
});

/// Why an admin request was not authenticated. Each maps to a §4.4 event name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// A scheme we do not take, or an undecodable value.
    Malformed,
    /// Basic login is switched off.
    BasicDisabled,
    /// No such user.
    UnknownUser,
    /// Wrong password.
    BadPassword,
    /// The token does not verify.
    BadToken,
    /// The token has expired (or its session or root key is gone).
    Expired,
}

impl AuthFailure {
    /// The OWASP-style event name.
    pub fn event(self) -> &'static str {
        match self {
            AuthFailure::Missing => "admin_authn_failed:no_credentials",
            AuthFailure::Malformed => "admin_authn_failed:malformed_credentials",
            AuthFailure::BasicDisabled => "basicauth_authn_failed:disabled",
            AuthFailure::UnknownUser => "basicauth_authn_failed:user_not_found",
            AuthFailure::BadPassword => "basicauth_authn_failed:invalid_password",
            AuthFailure::BadToken => "macaroon_authn_failed:invalid_token",
            AuthFailure::Expired => "macaroon_authn_failed:expired",
        }
    }

    /// The message the client sees (never which of user or password was wrong).
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "authentication required: log in with `livepatch-admin login` or send Basic credentials",
            AuthFailure::Malformed => "unsupported or malformed Authorization header: use Macaroon, Bearer or Basic",
            AuthFailure::BasicDisabled => "Basic authentication is disabled on this server (auth.basic.enabled)",
            AuthFailure::UnknownUser | AuthFailure::BadPassword => "invalid user name or password",
            AuthFailure::BadToken => "invalid token: log in again",
            AuthFailure::Expired => "the token has expired: log in again",
        }
    }
}

/// An authentication outcome: the failure, or a database problem to report as 503.
#[derive(Debug)]
pub enum AuthError {
    /// The credentials were refused.
    Refused(AuthFailure),
    /// The database could not be asked.
    Store(StoreError),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::Store(e)
    }
}

/// The admin authenticator.
pub struct AdminAuth {
    basic_enabled: bool,
    users: HashMap<String, String>,
    store: Store,
    basic_cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    key_cache: Mutex<HashMap<uuid::Uuid, (Vec<u8>, OffsetDateTime)>>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("users", &self.users.len())
            .finish()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    v: u8,
    k: uuid::Uuid,
    c: Vec<String>,
    s: String,
}

type HmacSha256 = Hmac<Sha256>;

fn chain(root: &[u8], key_id: &uuid::Uuid, caveats: &[String]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(root).expect("any key length");
    mac.update(key_id.as_bytes());
    let mut sig: [u8; 32] = mac.finalize().into_bytes().into();
    for c in caveats {
        let mut mac = HmacSha256::new_from_slice(&sig).expect("any key length");
        mac.update(c.as_bytes());
        sig = mac.finalize().into_bytes().into();
    }
    sig
}

impl AdminAuth {
    /// Builds the authenticator. Computes the dummy hash now so the first unknown user is not faster.
    pub fn new(basic_enabled: bool, users: &[BasicUser], store: Store) -> Self {
        LazyLock::force(&DUMMY_HASH);
        Self {
            basic_enabled,
            users: users
                .iter()
                .map(|u| (u.name.clone(), u.hash.expose().clone()))
                .collect(),
            store,
            basic_cache: Mutex::new(HashMap::new()),
            key_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Authenticates an `Authorization` header value; returns the user name and the token type
    /// (`basic` or `macaroon`).
    pub async fn authenticate(
        &self,
        header: Option<&str>,
    ) -> Result<(String, &'static str), AuthError> {
        let header = header
            .ok_or(AuthError::Refused(AuthFailure::Missing))?
            .trim();
        let (scheme, value) = header
            .split_once(' ')
            .ok_or(AuthError::Refused(AuthFailure::Malformed))?;
        let value = value.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => self.verify_basic(value).await.map(|u| (u, "basic")),
            "macaroon" | "bearer" => self.verify_token(value).await.map(|u| (u, "macaroon")),
            _ => Err(AuthError::Refused(AuthFailure::Malformed)),
        }
    }

    /// Verifies a Basic credential (base64 `user:password`).
    pub async fn verify_basic(&self, value: &str) -> Result<String, AuthError> {
        if !self.basic_enabled {
            return Err(AuthError::Refused(AuthFailure::BasicDisabled));
        }
        let cache_key: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        {
            let cache = self.basic_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((user, at)) = cache.get(&cache_key) {
                if at.elapsed() < BASIC_CACHE_TTL {
                    return Ok(user.clone());
                }
            }
        }
        let (user, password) =
            decode_basic(value).ok_or(AuthError::Refused(AuthFailure::Malformed))?;
        let user = user.as_str();
        let (known, hash) = match self.users.get(user) {
            Some(h) => (true, h.clone()),
            None => (false, DUMMY_HASH.clone()),
        };
        // bcrypt is deliberately slow: keep it off the async workers.
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        match (known, ok) {
            (true, true) => {
                let mut cache = self.basic_cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= BASIC_CACHE_MAX {
                    cache.retain(|_, (_, at)| at.elapsed() < BASIC_CACHE_TTL);
                    if cache.len() >= BASIC_CACHE_MAX {
                        cache.clear();
                    }
                }
                cache.insert(cache_key, (user.to_string(), Instant::now()));
                Ok(user.to_string())
            }
            (false, _) => Err(AuthError::Refused(AuthFailure::UnknownUser)),
            (true, false) => Err(AuthError::Refused(AuthFailure::BadPassword)),
        }
    }

    /// Mints a token for `user`: (token, expiry).
    pub async fn mint(&self, user: &str) -> Result<(String, OffsetDateTime), StoreError> {
        let (key_id, root) = self.store.minting_root_key(TOKEN_LIFETIME).await?;
        let session = uuid::Uuid::new_v4();
        let expires = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc())
            + TOKEN_LIFETIME;
        self.store
            .create_session(&session, user, &key_id, expires)
            .await?;
        let caveats = vec![
            format!("user={user}"),
            format!("expires={}", expires.unix_timestamp()),
            format!("session={session}"),
        ];
        Ok((encode_token(&root, key_id, caveats), expires))
    }

    async fn root_key(&self, id: &uuid::Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        let now = OffsetDateTime::now_utc();
        if let Some((key, expires)) = self
            .key_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            if *expires > now {
                return Ok(Some(key.clone()));
            }
        }
        let Some((key, expires)) = self.store.root_key(id).await? else {
            return Ok(None);
        };
        self.key_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id, (key.clone(), expires));
        Ok(Some(key))
    }

    /// Verifies a token: signature, every caveat, and the session.
    pub async fn verify_token(&self, token: &str) -> Result<String, AuthError> {
        let decoded = decode_token(token).map_err(AuthError::Refused)?;
        let Some(root) = self.root_key(&decoded.key_id).await? else {
            // Unknown or expired root key: every token it signed has expired too.
            return Err(AuthError::Refused(AuthFailure::Expired));
        };
        let claims = check_token(&decoded, &root, OffsetDateTime::now_utc().unix_timestamp())
            .map_err(AuthError::Refused)?;
        if !self.store.session_valid(&claims.session).await? {
            return Err(AuthError::Refused(AuthFailure::Expired));
        }
        Ok(claims.user)
    }
}

/// Decodes a Basic credential (base64 of `user:password`); `None` when it is not one.
pub fn decode_basic(value: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The most caveats a token may carry: ours carry three, and a bound keeps a hostile token from
/// costing more than a few HMACs.
pub const MAX_CAVEATS: usize = 16;

/// A token taken apart but not yet verified: anything in it may be forged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedToken {
    /// The root key that signed it.
    pub key_id: uuid::Uuid,
    /// Its first-party caveats, in signing order.
    pub caveats: Vec<String>,
    /// The hex HMAC chain (a bearer secret: never printed).
    pub signature: crate::secret::Secret<String>,
}

/// What a verified token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// The administrator.
    pub user: String,
    /// Unix time after which it is refused.
    pub expires: i64,
    /// The login session it belongs to.
    pub session: uuid::Uuid,
}

/// Encodes a token: the caveats and their HMAC chain under `root`, as URL-safe base64 of JSON.
pub fn encode_token(root: &[u8], key_id: uuid::Uuid, caveats: Vec<String>) -> String {
    let sig = chain(root, &key_id, &caveats);
    let wire = Wire {
        v: 1,
        k: key_id,
        c: caveats,
        s: crate::domain::hex(&sig),
    };
    let json = serde_json::to_vec(&wire).expect("serialisable");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// Takes a presented token apart; refuses anything that is not one of ours (wrong encoding,
/// version, or more than [`MAX_CAVEATS`] caveats).
pub fn decode_token(token: &str) -> Result<DecodedToken, AuthFailure> {
    let wire: Wire = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthFailure::BadToken)?;
    if wire.v != 1 || wire.c.len() > MAX_CAVEATS {
        return Err(AuthFailure::BadToken);
    }
    Ok(DecodedToken {
        key_id: wire.k,
        caveats: wire.c,
        signature: crate::secret::Secret::new(wire.s),
    })
}

/// Checks a decoded token's signature under `root` and every caveat at `now` (Unix seconds).
///
/// Anyone holding a token can append caveats and extend the HMAC chain (that is what makes it a
/// macaroon), so appended caveats may only narrow it: every caveat must hold, a second `user=`
/// or `session=` must name the same one, and the earliest `expires=` wins.
pub fn check_token(
    token: &DecodedToken,
    root: &[u8],
    now: i64,
) -> Result<TokenClaims, AuthFailure> {
    let expected = crate::domain::hex(&chain(root, &token.key_id, &token.caveats));
    if !bool::from(
        expected
            .as_bytes()
            .ct_eq(token.signature.expose().as_bytes()),
    ) {
        return Err(AuthFailure::BadToken);
    }
    fn agree<T: PartialEq>(slot: &mut Option<T>, value: T) -> Result<(), AuthFailure> {
        match slot {
            Some(prev) if *prev != value => Err(AuthFailure::BadToken),
            _ => {
                *slot = Some(value);
                Ok(())
            }
        }
    }
    let (mut user, mut expires, mut session) = (None, None::<i64>, None);
    for c in &token.caveats {
        match c.split_once('=') {
            Some(("user", v)) => agree(&mut user, v.to_string())?,
            Some(("expires", v)) => {
                let v = v.parse::<i64>().map_err(|_| AuthFailure::BadToken)?;
                expires = Some(expires.map_or(v, |e| e.min(v)));
            }
            Some(("session", v)) => agree(
                &mut session,
                uuid::Uuid::parse_str(v).map_err(|_| AuthFailure::BadToken)?,
            )?,
            _ => return Err(AuthFailure::BadToken),
        }
    }
    let (Some(user), Some(expires), Some(session)) = (user, expires, session) else {
        return Err(AuthFailure::BadToken);
    };
    if expires <= now {
        return Err(AuthFailure::Expired);
    }
    Ok(TokenClaims {
        user,
        expires,
        session,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_chain_depends_on_every_caveat_and_the_key() {
        let id = uuid::Uuid::new_v4();
        let c = vec!["user=a".to_string(), "expires=1".to_string()];
        let base = chain(b"k1", &id, &c);
        assert_ne!(base, chain(b"k2", &id, &c));
        assert_ne!(
            base,
            chain(b"k1", &id, &["user=b".to_string(), "expires=1".to_string()])
        );
        assert_ne!(base, chain(b"k1", &id, &c[..1]));
        assert_eq!(base, chain(b"k1", &id, &c));
    }

    /// Extends a token's HMAC chain with one more caveat, as any holder of the token can.
    fn attenuate(token: &str, caveat: &str) -> String {
        let mut d = decode_token(token).unwrap();
        let sig: Vec<u8> = (0..d.signature.expose().len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&d.signature.expose()[i..i + 2], 16).unwrap())
            .collect();
        let mut mac = HmacSha256::new_from_slice(&sig).unwrap();
        mac.update(caveat.as_bytes());
        d.caveats.push(caveat.to_string());
        let wire = Wire {
            v: 1,
            k: d.key_id,
            c: d.caveats,
            s: crate::domain::hex(&mac.finalize().into_bytes()),
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap())
    }

    #[test]
    fn appended_caveats_can_narrow_a_token_but_never_widen_it() {
        let (root, id, session) = (
            b"root".as_slice(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        );
        let token = encode_token(
            root,
            id,
            vec![
                "user=alice".into(),
                "expires=2000".into(),
                format!("session={session}"),
            ],
        );
        let check =
            |token: &str, now: i64| decode_token(token).and_then(|d| check_token(&d, root, now));
        assert_eq!(check(&token, 1000).unwrap().user, "alice");
        // Another user, a later expiry or another session appended by the holder: refused.
        let as_admin = attenuate(&token, "user=admin");
        assert_eq!(check(&as_admin, 1000), Err(AuthFailure::BadToken));
        let later = attenuate(&token, "expires=999999");
        assert_eq!(check(&later, 3000), Err(AuthFailure::Expired));
        assert_eq!(check(&later, 1000).unwrap().expires, 2000);
        let other = attenuate(&token, &format!("session={}", uuid::Uuid::new_v4()));
        assert_eq!(check(&other, 1000), Err(AuthFailure::BadToken));
        // An earlier expiry appended: honoured.
        let sooner = attenuate(&token, "expires=1500");
        assert_eq!(check(&sooner, 1600), Err(AuthFailure::Expired));
        assert_eq!(check(&sooner, 1000).unwrap().expires, 1500);
        // A tampered caveat breaks the chain.
        let tampered = token.replace('a', "b");
        assert!(check(&tampered, 1000).is_err());
    }

    #[test]
    fn failures_map_to_security_event_names_and_do_not_tell_user_from_password() {
        assert_eq!(
            AuthFailure::UnknownUser.event(),
            "basicauth_authn_failed:user_not_found"
        );
        assert_eq!(
            AuthFailure::UnknownUser.message(),
            AuthFailure::BadPassword.message()
        );
    }
}
