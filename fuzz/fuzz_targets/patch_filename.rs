//! The patch filename grammar (api.md "Patch files") and the client kernel string.
//!
//! Every string either is refused or parses into parts that print back to it, name a safe path
//! component, and re-parse to the same value; and every name built from valid parts parses back
//! into exactly those parts (the parser neither over- nor under-accepts).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use workload::domain::{Kernel, PatchFilename, PatchVersion, ARCHITECTURES, KERNEL_MAX};

/// A name assembled from parts the grammar allows.
#[derive(Arbitrary, Debug)]
struct Built {
    kernel: [u32; 5],
    flavour_words: Vec<Vec<u8>>,
    major: u32,
    minor: u32,
    arch: u8,
}

const FLAVOUR_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn check_raw(s: &str) {
    if let Ok(p) = PatchFilename::parse(s) {
        assert_eq!(p.as_str(), s);
        assert_eq!(p.to_string(), s);
        assert_eq!(PatchFilename::parse(&p.to_string()).as_ref(), Ok(&p));
        // Stored under this name: it must be one safe path component.
        assert!(
            !s.contains(['/', '\\', '\0']) && s != "." && s != "..",
            "{s:?}"
        );
        assert!(s.is_ascii(), "{s:?}");
        let prefix = format!("livepatch-{}-", p.kernel);
        let suffix = format!("-{}.tar.bz2", p.architecture);
        assert!(
            s.starts_with(&prefix) && s.ends_with(&suffix),
            "{s:?} vs {p:?}"
        );
        let middle = &s[prefix.len()..s.len() - suffix.len()];
        assert_eq!(PatchVersion::parse(middle), Ok(p.version), "{s:?}");
        assert_eq!(PatchVersion::parse(&p.version.to_string()), Ok(p.version));
        // A client reports at most KERNEL_MAX characters; a filename bounds its kernel itself.
        let kernel = p.kernel.to_string();
        if kernel.len() <= KERNEL_MAX {
            assert_eq!(Kernel::parse_client(&kernel), Ok(p.kernel.clone()));
        } else {
            assert!(Kernel::parse_client(&kernel).is_err());
        }
        assert!(Kernel::is_version(&p.kernel.version));
        assert!(ARCHITECTURES.contains(&p.architecture));
    }
    if let Ok(k) = Kernel::parse_client(s) {
        assert!(s.len() <= KERNEL_MAX);
        assert_eq!(k.to_string(), s);
        assert!(Kernel::is_version(&k.version));
        assert!(k
            .flavour
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    }
}

// First byte 0: the rest is a name as sent (the seeds); otherwise the rest builds one.
fuzz_target!(|data: &[u8]| match data.split_first() {
    None => {}
    Some((0, rest)) => {
        if let Ok(s) = std::str::from_utf8(rest) {
            check_raw(s);
        }
    }
    Some((_, rest)) => {
        let Ok(Built {
            kernel,
            flavour_words,
            major,
            minor,
            arch,
        }) = arbitrary::Unstructured::new(rest).arbitrary()
        else {
            return;
        };
        // The implementation bounds each number to 9 digits; stay inside it.
        let n = |v: u32| v % 1_000_000_000;
        let version = format!(
            "{}.{}.{}-{}.{}",
            n(kernel[0]),
            n(kernel[1]),
            n(kernel[2]),
            n(kernel[3]),
            n(kernel[4])
        );
        let words: Vec<String> = flavour_words
            .iter()
            .take(4)
            .filter(|w| !w.is_empty())
            .map(|w| {
                w.iter()
                    .take(12)
                    .map(|b| FLAVOUR_CHARS[*b as usize % FLAVOUR_CHARS.len()] as char)
                    .collect()
            })
            .collect();
        if words.is_empty() {
            return;
        }
        let flavour = words.join("-");
        let arch = ARCHITECTURES[arch as usize % ARCHITECTURES.len()];
        let (major, minor) = (n(major), n(minor));
        let name = format!("livepatch-{version}-{flavour}-{major}.{minor}-{arch}.tar.bz2");
        if name.len() > 200 {
            assert!(PatchFilename::parse(&name).is_err());
            return;
        }
        let p = PatchFilename::parse(&name)
            .unwrap_or_else(|e| panic!("{name:?} follows the grammar but was refused: {e}"));
        assert_eq!(p.kernel.version, version);
        assert_eq!(p.kernel.flavour, flavour);
        assert_eq!(p.version, PatchVersion { major, minor });
        assert_eq!(p.architecture, arch);
        check_raw(&name);
    }
});
