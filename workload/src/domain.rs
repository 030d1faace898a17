//! Domain newtypes, each with one `parse` that is the only way to build it: tier names, machine
//! ids, patch versions (ordered numerically), patch filenames (the grammar of api.md), client
//! kernels, patch states, and the opaque tokens handed to machines, administrators and
//! downstream servers. Code past the HTTP handlers trusts these types.

use std::cmp::Ordering;
use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why an identifier was refused: what it is and what is allowed (no echo of huge inputs).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {why}")]
pub struct ParseError {
    /// What was being parsed (`tier name`, `machine id`, …).
    pub what: &'static str,
    /// What is allowed.
    pub why: String,
}

fn err(what: &'static str, why: impl Into<String>) -> ParseError {
    ParseError {
        what,
        why: why.into(),
    }
}

/// A tier name: `[a-z0-9][a-z0-9-]{0,31}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TierName(String);

/// Prints as the quoted name, since error messages for people use `{:?}` (`tier "edge"`, not
/// `tier TierName("edge")`).
impl fmt::Debug for TierName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TierName {
    /// Parses a tier name.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(err(
                "tier name",
                "expected 1 to 32 characters of a-z, 0-9 and '-', not starting with '-'",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TierName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A machine id: `[A-Za-z0-9-]{1,64}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MachineId(String);

impl MachineId {
    /// Parses a machine id.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            Ok(Self(s.to_string()))
        } else {
            Err(err(
                "machine id",
                "expected 1 to 64 characters of A-Z, a-z, 0-9 and '-'",
            ))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A patch version `<major>.<minor>`, ordered numerically (`9.1 < 10.1 < 107.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PatchVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
}

impl PatchVersion {
    /// Parses `\d+\.\d+`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let bad = || err("patch version", "expected <major>.<minor>, e.g. 107.1");
        let (a, b) = s.split_once('.').ok_or_else(bad)?;
        let num = |p: &str| -> Result<u32, ParseError> {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        Ok(Self {
            major: num(a)?,
            minor: num(b)?,
        })
    }
}

impl Ord for PatchVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor).cmp(&(other.major, other.minor))
    }
}

impl PartialOrd for PatchVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PatchVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Architectures of the grammar.
pub const ARCHITECTURES: &[&str] = &["amd64", "arm64", "s390x", "ppc64el", "riscv64"];

/// Checks `\d+\.\d+\.\d+-\d+\.\d+` (an Ubuntu kernel ABI and upload number).
fn is_kernel_version(s: &str) -> bool {
    let Some((base, abi)) = s.split_once('-') else {
        return false;
    };
    let digits = |p: &str| !p.is_empty() && p.len() <= 9 && p.bytes().all(|c| c.is_ascii_digit());
    let base: Vec<&str> = base.split('.').collect();
    let abi: Vec<&str> = abi.split('.').collect();
    base.len() == 3 && abi.len() == 2 && base.iter().chain(abi.iter()).all(|p| digits(p))
}

/// `[a-z0-9]+(-[a-z0-9]+)*`; its length is bounded by the string it is part of (a client's kernel,
/// at most [`KERNEL_MAX`]; a filename, at most 200), so openapi.yaml can state the same grammar
/// as a plain pattern and length.
fn is_flavour(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// The longest kernel string a client may report.
pub const KERNEL_MAX: usize = 128;

/// A kernel as the grammar and the client name it: version `5.15.0-107.117`, flavour `generic`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// `5.15.0-107.117`
    pub version: String,
    /// `generic`, `ibm-gt-tdx`, …
    pub flavour: String,
}

impl Kernel {
    /// Parses what a client reports (`uname -r`): `5.15.0-107.117-generic`.
    pub fn parse_client(s: &str) -> Result<Self, ParseError> {
        let bad = || {
            err(
                "kernel",
                "expected <X.Y.Z-ABI.UPLOAD>-<flavour>, at most 128 characters, e.g. 5.15.0-107.117-generic",
            )
        };
        if s.len() > KERNEL_MAX {
            return Err(bad());
        }
        Self::parse_unbounded(s).ok_or_else(bad)
    }

    /// The grammar alone: a filename bounds its kernel by its own length.
    fn parse_unbounded(s: &str) -> Option<Self> {
        // The version has exactly one hyphen; the flavour starts after the second.
        let mut hyphens = s.match_indices('-').map(|(i, _)| i);
        hyphens.next()?;
        let split = hyphens.next()?;
        let (version, flavour) = (&s[..split], &s[split + 1..]);
        if !is_kernel_version(version) || !is_flavour(flavour) {
            return None;
        }
        Some(Self {
            version: version.to_string(),
            flavour: flavour.to_string(),
        })
    }

    /// Parses a bare kernel version `5.15.0-107.117`.
    pub fn is_version(s: &str) -> bool {
        is_kernel_version(s)
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.version, self.flavour)
    }
}

/// Parses an architecture of the grammar.
pub fn parse_architecture(s: &str) -> Result<&'static str, ParseError> {
    ARCHITECTURES
        .iter()
        .copied()
        .find(|a| *a == s)
        .ok_or_else(|| {
            err(
                "architecture",
                format!("expected one of {}", ARCHITECTURES.join(", ")),
            )
        })
}

/// A patch filename: `livepatch-<kernel-version>-<flavour>-<patch-version>-<arch>.tar.bz2`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PatchFilename {
    name: String,
    /// The kernel it patches.
    pub kernel: Kernel,
    /// The patch version.
    pub version: PatchVersion,
    /// The architecture.
    pub architecture: &'static str,
}

impl PatchFilename {
    /// The one parser of the grammar.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let bad = || {
            err(
                "patch filename",
                "expected livepatch-<X.Y.Z-ABI.UPLOAD>-<flavour>-<major.minor>-<arch>.tar.bz2, e.g. livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2",
            )
        };
        if s.len() > 200 {
            return Err(bad());
        }
        let body = s
            .strip_prefix("livepatch-")
            .and_then(|b| b.strip_suffix(".tar.bz2"))
            .ok_or_else(bad)?;
        let (rest, arch) = body.rsplit_once('-').ok_or_else(bad)?;
        let architecture = parse_architecture(arch).map_err(|_| bad())?;
        let (rest, version) = rest.rsplit_once('-').ok_or_else(bad)?;
        let version = PatchVersion::parse(version).map_err(|_| bad())?;
        let kernel = Kernel::parse_unbounded(rest).ok_or_else(bad)?;
        Ok(Self {
            name: s.to_string(),
            kernel,
            version,
            architecture,
        })
    }

    /// The filename.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for PatchFilename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Patch states a client reports (§7), matched case-insensitively, stored in lower case.
pub const PATCH_STATES: &[&str] = &[
    "applied",
    "apply-failed",
    "unapplied",
    "needs-check",
    "nothing-to-apply",
    "unknown",
    "check-failed",
    "applied-with-bug",
    "kernel-upgrade-required",
];

/// Parses a patch state.
pub fn parse_patch_state(s: &str) -> Result<&'static str, ParseError> {
    let lower = s.to_ascii_lowercase();
    PATCH_STATES
        .iter()
        .copied()
        .find(|p| *p == lower)
        .ok_or_else(|| {
            err(
                "patch state",
                format!("expected one of {}", PATCH_STATES.join(", ")),
            )
        })
}

/// A free label (auth-token id, sync-token name): 1–64 printable ASCII without spaces or `/`.
pub fn parse_label(what: &'static str, s: &str) -> Result<String, ParseError> {
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\')
    {
        Ok(s.to_string())
    } else {
        Err(err(
            what,
            "expected 1 to 64 printable ASCII characters, no spaces or slashes",
        ))
    }
}

/// The kinds of token we mint; the prefix tells a person (and a secret scanner) what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Machine enrolment (`lpa_`).
    Auth,
    /// Machine check-in (`lpm_`).
    Machine,
    /// Downstream server (`lps_`).
    Sync,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Auth => "lpa_",
            TokenKind::Machine => "lpm_",
            TokenKind::Sync => "lps_",
        }
    }
}

/// A freshly minted clear token: 256 random bits, shown once, stored only as its hash.
pub struct NewToken {
    /// The clear value to hand out.
    pub clear: crate::secret::Secret<String>,
    /// SHA-256 of the clear value, what the database keeps.
    pub hash: [u8; 32],
}

/// Mints a token of `kind`.
pub fn mint_token(kind: TokenKind) -> NewToken {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let clear = format!(
        "{}{}",
        kind.prefix(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = token_hash(&clear);
    NewToken {
        clear: crate::secret::Secret::new(clear),
        hash,
    }
}

/// SHA-256 of a presented token.
pub fn token_hash(clear: &str) -> [u8; 32] {
    Sha256::digest(clear.as_bytes()).into()
}

/// Compares a presented token with a stored hash in constant time.
pub fn token_matches(clear: &str, stored_hash: &[u8]) -> bool {
    let presented = token_hash(clear);
    stored_hash.len() == 32 && bool::from(presented.ct_eq(stored_hash))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_filename(input: &str, expected: Option<(&str, &str, &str, &str)>) {
        let got = PatchFilename::parse(input).ok().map(|p| {
            (
                p.kernel.version.clone(),
                p.kernel.flavour.clone(),
                p.version.to_string(),
                p.architecture.to_string(),
            )
        });
        let expected = expected
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()));
        assert_eq!(got, expected, "{input:?}");
    }

    #[test]
    fn patch_filenames_follow_the_grammar() {
        check_filename(
            "livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2",
            Some(("5.15.0-107.117", "generic", "107.1", "amd64")),
        );
        check_filename(
            "livepatch-6.8.0-1010.10-ibm-gt-tdx-9.2-s390x.tar.bz2",
            Some(("6.8.0-1010.10", "ibm-gt-tdx", "9.2", "s390x")),
        );
        check_filename(
            "livepatch-5.4.0-1.1-aws-fips-1.0-arm64.tar.bz2",
            Some(("5.4.0-1.1", "aws-fips", "1.0", "arm64")),
        );
        check_filename("livepatch-5.15.0-107.117-generic-107.1-i386.tar.bz2", None);
        check_filename("livepatch-5.15.0-107.117-generic-107-amd64.tar.bz2", None);
        check_filename("livepatch-5.15-107.117-generic-107.1-amd64.tar.bz2", None);
        check_filename("livepatch-5.15.0-107.117--107.1-amd64.tar.bz2", None);
        check_filename("livepatch-5.15.0-107.117-Generic-107.1-amd64.tar.bz2", None);
        check_filename("livepatch-5.15.0-107.117-generic-107.1-amd64.tar.gz", None);
        check_filename(
            "../livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2",
            None,
        );
        check_filename(
            "livepatch-5.15.0-107.117-gen/../eric-107.1-amd64.tar.bz2",
            None,
        );
        check_filename(
            "livepatch-5.15.0-107.117-gene\u{0301}ric-107.1-amd64.tar.bz2",
            None,
        );
        check_filename(
            "livepatch-５.15.0-107.117-generic-107.1-amd64.tar.bz2",
            None,
        );
        check_filename("", None);
    }

    proptest! {
        #[test]
        fn every_well_formed_filename_round_trips(
            a in 0u32..100, b in 0u32..100, c in 0u32..1000, d in 0u32..10000, e in 0u32..1000,
            flavour in "[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,3}",
            major in 0u32..100000, minor in 0u32..100,
            arch in prop::sample::select(ARCHITECTURES),
        ) {
            let name = format!("livepatch-{a}.{b}.{c}-{d}.{e}-{flavour}-{major}.{minor}-{arch}.tar.bz2");
            let p = PatchFilename::parse(&name).unwrap();
            prop_assert_eq!(p.as_str(), name.as_str());
            prop_assert_eq!(p.kernel.version, format!("{a}.{b}.{c}-{d}.{e}"));
            prop_assert_eq!(p.kernel.flavour, flavour);
            prop_assert_eq!(p.version, PatchVersion { major, minor });
            prop_assert_eq!(p.architecture, arch);
        }

        #[test]
        fn the_parser_never_panics_and_accepts_only_safe_names(s in "\\PC{0,80}") {
            if let Ok(p) = PatchFilename::parse(&s) {
                prop_assert!(!p.as_str().contains('/') && !p.as_str().contains(".."));
                prop_assert!(p.as_str().is_ascii());
            }
        }

        #[test]
        fn patch_versions_order_numerically(a in 0u32..1000, b in 0u32..1000, c in 0u32..1000, d in 0u32..1000) {
            let x = PatchVersion::parse(&format!("{a}.{b}")).unwrap();
            let y = PatchVersion::parse(&format!("{c}.{d}")).unwrap();
            prop_assert_eq!(x.cmp(&y), (a, b).cmp(&(c, d)));
        }
    }

    #[test]
    fn patch_versions_compare_as_numbers_not_text() {
        let v = |s| PatchVersion::parse(s).unwrap();
        assert!(v("9.1") < v("10.1"));
        assert!(v("107.1") > v("57.10"));
        assert!(v("57.10") > v("57.9"));
        assert!(
            PatchVersion::parse("1").is_err()
                && PatchVersion::parse("1.x").is_err()
                && PatchVersion::parse("+1.2").is_err()
        );
    }

    fn check_tier(input: &str, ok: bool) {
        assert_eq!(TierName::parse(input).is_ok(), ok, "{input:?}");
    }

    #[test]
    fn tier_names_are_short_lowercase_words() {
        check_tier("edge", true);
        check_tier("stable-2", true);
        check_tier("0day", true);
        check_tier(&"a".repeat(32), true);
        check_tier(&"a".repeat(33), false);
        check_tier("-edge", false);
        check_tier("Edge", false);
        check_tier("ed ge", false);
        check_tier("edgé", false);
        check_tier("", false);
        check_tier("../x", false);
    }

    #[test]
    fn a_tier_name_reads_as_a_quoted_name_in_messages() {
        let t = TierName::parse("edge").unwrap();
        assert_eq!(
            format!("tier {t:?} does not come after {t:?}"),
            r#"tier "edge" does not come after "edge""#
        );
    }

    #[test]
    fn machine_ids_are_limited_to_the_documented_alphabet() {
        assert!(MachineId::parse("2f0c3a4b-aaaa").is_ok());
        assert!(MachineId::parse(&"a".repeat(64)).is_ok());
        assert!(MachineId::parse(&"a".repeat(65)).is_err());
        assert!(MachineId::parse("a/b").is_err());
        assert!(MachineId::parse("a\u{200b}b").is_err());
    }

    #[test]
    fn client_kernels_split_version_and_flavour() {
        let k = Kernel::parse_client("5.15.0-107.117-generic").unwrap();
        assert_eq!(
            (k.version.as_str(), k.flavour.as_str()),
            ("5.15.0-107.117", "generic")
        );
        let k = Kernel::parse_client("6.8.0-1010.10-ibm-gt-tdx").unwrap();
        assert_eq!(k.flavour, "ibm-gt-tdx");
        assert!(Kernel::parse_client("5.15.0-107-generic").is_err());
        assert!(Kernel::parse_client("5.15.0-107.117").is_err());
    }

    #[test]
    fn tokens_are_long_random_prefixed_and_match_only_their_hash() {
        let a = mint_token(TokenKind::Machine);
        let b = mint_token(TokenKind::Machine);
        assert!(a.clear.expose().starts_with("lpm_") && a.clear.expose().len() == 4 + 43);
        assert_ne!(a.clear.expose(), b.clear.expose());
        assert!(token_matches(a.clear.expose(), &a.hash));
        assert!(!token_matches(b.clear.expose(), &a.hash));
        assert!(!token_matches(a.clear.expose(), &a.hash[..31]));
    }

    #[test]
    fn patch_states_match_case_insensitively() {
        assert_eq!(parse_patch_state("Applied").unwrap(), "applied");
        assert_eq!(
            parse_patch_state("KERNEL-UPGRADE-REQUIRED").unwrap(),
            "kernel-upgrade-required"
        );
        assert!(parse_patch_state("exploded").is_err());
    }
}
