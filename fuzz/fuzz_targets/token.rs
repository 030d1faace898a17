//! Admin token (macaroon-style) and Basic credential decoding (workload `auth`).
//!
//! Decoding any string never panics; a minted token verifies to exactly what was minted until
//! it expires; a holder who appends caveats (extending the HMAC chain, as macaroons allow) can
//! only narrow it, never change its user or session nor extend its life; a token changed in
//! one character is refused unless it decodes to the very same token.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use workload::auth::{
    check_token, decode_basic, decode_token, encode_token, AuthFailure, MAX_CAVEATS,
};

/// The parameters, drawn from the same bytes as the presented token (so a seed that is a real
/// token exercises both).
#[derive(Arbitrary, Debug)]
struct Input {
    root: Vec<u8>,
    key_id: [u8; 16],
    session: [u8; 16],
    user: String,
    expires: i64,
    now: i64,
    appended: Vec<String>,
    flip: Option<(u16, u8)>,
    basic_user: String,
    basic_password: String,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let presented = String::from_utf8_lossy(data);
    // 1. Whatever is presented: no panic, and what decodes re-encodes to the same content.
    if let Ok(d) = decode_token(&presented) {
        assert!(d.caveats.len() <= MAX_CAVEATS);
        let _ = check_token(&d, b"root", 0);
        let again = decode_token(&encode_token(b"root", d.key_id, d.caveats.clone())).unwrap();
        assert_eq!((again.key_id, &again.caveats), (d.key_id, &d.caveats));
    }
    let _ = decode_basic(&presented);
    let Ok(input) = arbitrary::Unstructured::new(data).arbitrary::<Input>() else {
        return;
    };

    // 2. A minted token verifies to what was minted, until it expires.
    let key_id = uuid::Uuid::from_bytes(input.key_id);
    let session = uuid::Uuid::from_bytes(input.session);
    let caveats = vec![
        format!("user={}", input.user),
        format!("expires={}", input.expires),
        format!("session={session}"),
    ];
    let token = encode_token(&input.root, key_id, caveats.clone());
    let decoded = decode_token(&token).expect("a minted token decodes");
    assert_eq!(decoded.caveats, caveats);
    let verified = check_token(&decoded, &input.root, input.now);
    if input.now < input.expires {
        let claims = verified.expect("a fresh token verifies");
        assert_eq!(
            (claims.user.as_str(), claims.expires, claims.session),
            (input.user.as_str(), input.expires, session)
        );
    } else {
        assert_eq!(verified, Err(AuthFailure::Expired));
    }
    // Another root key never verifies it.
    let mut other_root = input.root.clone();
    other_root.push(1);
    assert!(check_token(&decoded, &other_root, input.now).is_err());

    // 3. Caveats appended by a holder only narrow the token.
    let mut sig = unhex(decoded.signature.expose());
    let mut extended = caveats.clone();
    for c in input.appended.iter().take(MAX_CAVEATS - caveats.len()) {
        let mut mac = Hmac::<Sha256>::new_from_slice(&sig).unwrap();
        mac.update(c.as_bytes());
        sig = mac.finalize().into_bytes().to_vec();
        extended.push(c.clone());
    }
    let forged = serde_json_like(key_id, &extended, &sig);
    match decode_token(&forged).and_then(|d| check_token(&d, &input.root, input.now)) {
        Ok(claims) => {
            assert_eq!(
                claims.user, input.user,
                "an appended caveat changed the user"
            );
            assert_eq!(
                claims.session, session,
                "an appended caveat changed the session"
            );
            assert!(
                claims.expires <= input.expires,
                "an appended caveat extended the token"
            );
            assert!(input.now < claims.expires);
        }
        Err(_) => {}
    }

    // 4. One character changed: refused, or the same token after all.
    if let Some((at, to)) = input.flip {
        let mut bytes = token.clone().into_bytes();
        let at = at as usize % bytes.len();
        bytes[at] = to;
        if let Ok(changed) = String::from_utf8(bytes) {
            if let Ok(claims) =
                decode_token(&changed).and_then(|d| check_token(&d, &input.root, input.now))
            {
                let d = decode_token(&changed).unwrap();
                assert_eq!(
                    d, decoded,
                    "a changed token {changed:?} verified as {claims:?}"
                );
            }
        }
    }

    // 5. Basic credentials: user:password round-trips (a user name has no colon).
    if !input.basic_user.contains(':') {
        let value = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", input.basic_user, input.basic_password));
        assert_eq!(
            decode_basic(&value),
            Some((input.basic_user.clone(), input.basic_password.clone()))
        );
    }
});

/// The wire form of a token, written by hand (as a forger would) rather than by the encoder.
fn serde_json_like(key_id: uuid::Uuid, caveats: &[String], sig: &[u8]) -> String {
    let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    let json = format!(
        r#"{{"v":1,"k":"{key_id}","c":{},"s":"{hex}"}}"#,
        serde_json_string_list(caveats)
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn serde_json_string_list(items: &[String]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|s| {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        })
        .collect();
    format!("[{}]", parts.join(","))
}
