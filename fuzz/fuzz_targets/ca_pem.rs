//! PEM/CA validation: the charm's `contracts.ca` and database-CA checks (charm `ca`) and the
//! server's `sslrootcert` loading (workload `db::root_store_from_pem`).
//!
//! The input is one flag byte then the text. Nothing panics; a bundle the charm accepts really
//! holds certificates (CA:TRUE and valid now when asked), nothing else (no key, no comments),
//! validates again to itself, and is accepted by the server with one trust root per
//! certificate; `contracts.ca` is exactly base64 of what the PEM check accepts.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use livepatch_charm::ca::{parse_ca_pem, parse_contracts_ca};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::macros::datetime;
use workload::db::root_store_from_pem;
use x509_parser::prelude::{FromDer, X509Certificate};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let require_ca = flags & 1 == 1;
    // The seeds were made in 2026 and last ten years; bit 1 moves "now" past their end.
    let now = if flags & 2 == 0 {
        datetime!(2027-01-01 00:00 UTC)
    } else {
        datetime!(2040-01-01 00:00 UTC)
    };

    // The server's loader: accepted means at least one trust root.
    if let Ok(roots) = root_store_from_pem(body) {
        assert!(!roots.is_empty());
    }

    let text = String::from_utf8_lossy(body);
    let _ = parse_contracts_ca(&text, now);
    let Ok(bundle) = parse_ca_pem(&text, now, require_ca) else {
        return;
    };
    assert!(!bundle.subjects.is_empty());
    assert!(!bundle.pem.contains("PRIVATE KEY"));
    let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(bundle.pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("the bundle is PEM");
    assert_eq!(certs.len(), bundle.subjects.len());
    for (der, subject) in certs.iter().zip(&bundle.subjects) {
        let (rest, cert) = X509Certificate::from_der(der.as_ref()).expect("a certificate");
        assert!(rest.is_empty(), "trailing bytes after a certificate");
        assert_eq!(&cert.subject().to_string(), subject);
        let validity = cert.validity();
        assert!(
            validity.not_before.to_datetime() <= now && now <= validity.not_after.to_datetime()
        );
        if require_ca {
            assert!(cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca));
        }
    }
    // Only certificates reach the container: the bundle is exactly their re-encoding.
    let reencoded: String = certs
        .iter()
        .map(|c| livepatch_charm::ca::to_pem(c.as_ref()))
        .collect();
    assert_eq!(reencoded, bundle.pem);
    // Validating the bundle again gives the same bundle.
    assert_eq!(
        parse_ca_pem(&bundle.pem, now, require_ca).as_ref(),
        Ok(&bundle)
    );
    // The server takes what the charm validated, one root per certificate.
    let roots = root_store_from_pem(bundle.pem.as_bytes())
        .unwrap_or_else(|e| panic!("the charm accepted a CA the server refuses: {e}"));
    assert_eq!(roots.len(), bundle.subjects.len());
    // contracts.ca is base64 of the same PEM, with the CA requirement.
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    assert_eq!(
        parse_contracts_ca(&b64, now).map(|b| b.pem),
        parse_ca_pem(&text, now, true).map(|b| b.pem)
    );
});
