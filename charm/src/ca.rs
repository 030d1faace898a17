//! CA certificates handed to the charm: `contracts.ca` (base64 of PEM, which
//! the charm installs in the workload's trust store) and the database
//! provider's CA (PEM, used as `sslrootcert`).
//!
//! PEM is read with rustls-pki-types and each certificate is decoded with
//! x509-parser, so "at least one valid CA certificate" means exactly that: a
//! CA (basicConstraints CA:TRUE) inside its validity window. The bundle that
//! reaches the container is re-encoded from the DER, so nothing else that was
//! in the text (comments, stray keys) is ever written out.

use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A validated set of CA certificates, as PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// The certificates, re-encoded as PEM.
    pub pem: String,
    /// Subject of each certificate, for log lines.
    pub subjects: Vec<String>,
}

/// Decodes and checks `contracts.ca`: base64 → PEM → one or more X.509 CA
/// certificates, each valid at `now`.
pub fn parse_contracts_ca(value: &str, now: OffsetDateTime) -> Result<CaBundle, String> {
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| {
            format!("is not base64 ({e}); pass the PEM file through `base64 -w0` or use include-base64://")
        })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        "decodes to binary data, not PEM text; base64-encode the PEM file, not a DER one"
            .to_string()
    })?;
    parse_ca_pem(&text, now, true)
}

/// Checks PEM text holding CA certificates. With `require_ca`, every
/// certificate must carry basicConstraints CA:TRUE.
pub fn parse_ca_pem(text: &str, now: OffsetDateTime, require_ca: bool) -> Result<CaBundle, String> {
    if text.contains("PRIVATE KEY-----") {
        return Err("holds a private key; give only the CA certificate".into());
    }
    let mut pem = String::new();
    let mut subjects = Vec::new();
    for (i, item) in CertificateDer::pem_slice_iter(text.as_bytes()).enumerate() {
        let der = item.map_err(|e| format!("certificate {} is not valid PEM ({e})", i + 1))?;
        let (rest, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| format!("certificate {} is not an X.509 certificate ({e})", i + 1))?;
        // The DER is written out as it is: bytes after the certificate would reach the
        // container's trust store unchecked.
        if !rest.is_empty() {
            return Err(format!(
                "certificate {} has {} stray bytes after it; give the PEM file as the CA issued it",
                i + 1,
                rest.len()
            ));
        }
        // The server loads the bundle with rustls, which is stricter than x509-parser (e.g. the
        // signature algorithm must match inside and outside the signed part): refuse here what
        // it would refuse later, while the operator is still looking at `juju config`.
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| {
                format!(
                    "certificate {} cannot be used as a trust anchor ({e})",
                    i + 1
                )
            })?;
        let subject = cert.subject().to_string();
        if require_ca {
            let is_ca = cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca);
            if !is_ca {
                return Err(format!(
                    "certificate {} ({subject}) is not a CA certificate (basicConstraints CA:TRUE); give the CA that issued the server's certificate",
                    i + 1
                ));
            }
        }
        let validity = cert.validity();
        let not_before = validity.not_before.to_datetime();
        let not_after = validity.not_after.to_datetime();
        if now < not_before {
            return Err(format!(
                "certificate {} ({subject}) is not valid before {}",
                i + 1,
                rfc3339(not_before)
            ));
        }
        if now > not_after {
            return Err(format!(
                "certificate {} ({subject}) expired on {}",
                i + 1,
                rfc3339(not_after)
            ));
        }
        pem.push_str(&to_pem(der.as_ref()));
        subjects.push(subject);
    }
    if subjects.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(CaBundle { pem, subjects })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// PEM encoding of one DER certificate, 64 characters a line.
pub fn to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use time::Duration;

    pub(crate) fn cert(
        ca: bool,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> (String, String) {
        let mut params = CertificateParams::new(vec!["contracts.internal".into()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, if ca { "Test CA" } else { "Leaf" });
        params.is_ca = if ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::NoCa
        };
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn a_valid_ca_is_accepted_and_re_encoded() {
        let (pem, _) = cert(true, now() - Duration::days(1), now() + Duration::days(30));
        let bundle = parse_contracts_ca(&b64(&format!("# comment\n{pem}")), now()).unwrap();
        assert_eq!(bundle.subjects, ["CN=Test CA"]);
        assert!(bundle.pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(!bundle.pem.contains("comment"));
        // Re-encoding keeps the certificate itself byte for byte.
        let original: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
        let again: Vec<_> = CertificateDer::pem_slice_iter(bundle.pem.as_bytes()).collect();
        assert_eq!(original.len(), 1);
        assert_eq!(original[0].as_ref().unwrap(), again[0].as_ref().unwrap());
    }

    #[test]
    fn several_cas_are_kept_in_order() {
        let (a, _) = cert(true, now() - Duration::days(1), now() + Duration::days(30));
        let (b, _) = cert(true, now() - Duration::days(1), now() + Duration::days(60));
        let bundle = parse_contracts_ca(&b64(&format!("{a}{b}")), now()).unwrap();
        assert_eq!(bundle.subjects.len(), 2);
    }

    #[test]
    fn bad_contracts_ca_values_say_what_is_wrong() {
        let (ca, key) = cert(true, now() - Duration::days(1), now() + Duration::days(30));
        let (leaf, _) = cert(false, now() - Duration::days(1), now() + Duration::days(30));
        let (expired, _) = cert(true, now() - Duration::days(30), now() - Duration::days(1));
        let (future, _) = cert(true, now() + Duration::days(1), now() + Duration::days(30));
        // A valid certificate with bytes appended inside the same PEM block (found by the
        // ca_pem fuzz target): the extra bytes would have been written to the trust store.
        let mut der = CertificateDer::pem_slice_iter(ca.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec();
        der.extend_from_slice(b"trailing");
        let padded = to_pem(&der);
        let cases = [
            ("not base64 at all!".to_string(), "is not base64"),
            (
                base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, 0x00]),
                "binary data",
            ),
            (b64("Test CA Cert\n"), "holds no PEM certificate"),
            (b64(&leaf), "is not a CA certificate"),
            (b64(&expired), "expired on"),
            (b64(&future), "is not valid before"),
            (b64(&format!("{ca}{key}")), "holds a private key"),
            (b64(&padded), "8 stray bytes after it"),
            (
                b64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                "not an X.509 certificate",
            ),
        ];
        for (value, fragment) in cases {
            let err = parse_contracts_ca(&value, now()).unwrap_err();
            assert!(err.contains(fragment), "{fragment}: got {err}");
        }
    }

    #[test]
    fn wrapped_base64_is_accepted() {
        let (pem, _) = cert(true, now() - Duration::days(1), now() + Duration::days(30));
        let wrapped: String = b64(&pem)
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert!(parse_contracts_ca(&wrapped, now()).is_ok());
    }
}
