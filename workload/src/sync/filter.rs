//! What a downstream syncs: the `patch-sync.architectures`, `patch-sync.flavors` and
//! `patch-sync.minimum-kernel-version` filters (livepatch-server.md §8), applied by the upstream
//! to the snapshot and again by the downstream before any download, so an upstream that ignores
//! them costs bandwidth but never puts unwanted patches in storage.

/// A parsed filter; empty lists mean "all".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncFilter {
    /// Architectures to keep (empty = all).
    pub architectures: Vec<String>,
    /// Flavours to keep (empty = all).
    pub flavors: Vec<String>,
    /// Inclusive lower bound on the kernel's X.Y.Z.
    pub minimum_kernel: Option<(u32, u32, u32)>,
}

/// Parses `X.Y.Z` numerically.
pub fn parse_kernel_triple(s: &str) -> Option<(u32, u32, u32)> {
    let mut parts = s.trim().split('.');
    let x = parts.next()?.parse().ok()?;
    let y = parts.next()?.parse().ok()?;
    let z = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((x, y, z))
}

fn csv(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

impl SyncFilter {
    /// From the downstream's configuration.
    pub fn from_config(c: &crate::config::PatchSyncConfig) -> Self {
        Self {
            architectures: c
                .architectures
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            flavors: c.flavors.iter().map(|f| f.to_ascii_lowercase()).collect(),
            minimum_kernel: c
                .minimum_kernel_version
                .as_deref()
                .and_then(parse_kernel_triple),
        }
    }

    /// From the snapshot's query parameters (comma lists; empty = all). The error names the
    /// parameter.
    pub fn from_query(
        architectures: Option<&str>,
        flavors: Option<&str>,
        minimum_kernel_version: Option<&str>,
    ) -> Result<Self, (&'static str, String)> {
        let minimum_kernel = match minimum_kernel_version
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(v) => Some(parse_kernel_triple(v).ok_or((
                "minimum-kernel-version",
                "expected X.Y.Z, e.g. 5.15.0".to_string(),
            ))?),
        };
        let architectures = csv(architectures.unwrap_or(""));
        if let Some(bad) = architectures
            .iter()
            .find(|a| crate::domain::parse_architecture(a).is_err())
        {
            return Err((
                "architectures",
                format!(
                    "{bad:?} is not one of {}",
                    crate::domain::ARCHITECTURES.join(", ")
                ),
            ));
        }
        Ok(Self {
            architectures,
            flavors: csv(flavors.unwrap_or("")),
            minimum_kernel,
        })
    }

    /// The query string the snapshot request carries.
    pub fn query(&self) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        format!(
            "architectures={}&flavors={}&minimum-kernel-version={}",
            enc(&self.architectures.join(",")),
            enc(&self.flavors.join(",")),
            self.minimum_kernel
                .map(|(x, y, z)| format!("{x}.{y}.{z}"))
                .unwrap_or_default()
        )
    }

    /// Whether a patch for `kernel` (`5.15.0-107.117`), `flavour` and `architecture` passes.
    pub fn matches(&self, kernel: &str, flavour: &str, architecture: &str) -> bool {
        if !self.architectures.is_empty()
            && !self
                .architectures
                .iter()
                .any(|a| a.eq_ignore_ascii_case(architecture))
        {
            return false;
        }
        if !self.flavors.is_empty() && !self.flavors.iter().any(|f| f.eq_ignore_ascii_case(flavour))
        {
            return false;
        }
        if let Some(min) = self.minimum_kernel {
            let base = kernel.split('-').next().unwrap_or("");
            match parse_kernel_triple(base) {
                Some(v) if v >= min => {}
                _ => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(arch: &str, flavors: &str, min: &str) -> SyncFilter {
        SyncFilter::from_query(Some(arch), Some(flavors), Some(min)).unwrap()
    }

    fn check(f: &SyncFilter, kernel: &str, flavour: &str, arch: &str, expected: bool) {
        assert_eq!(
            f.matches(kernel, flavour, arch),
            expected,
            "{f:?} on {kernel} {flavour} {arch}"
        );
    }

    #[test]
    fn each_filter_alone_and_combined_keeps_exactly_what_it_names() {
        let all = filter("", "", "");
        check(&all, "4.15.0-1.1", "oracle", "s390x", true);
        let arch = filter("amd64,arm64", "", "");
        check(&arch, "5.15.0-107.117", "generic", "amd64", true);
        check(&arch, "5.15.0-107.117", "generic", "arm64", true);
        check(&arch, "5.15.0-107.117", "generic", "s390x", false);
        let flavour = filter("", "generic, aws", "");
        check(&flavour, "5.15.0-107.117", "aws", "s390x", true);
        check(&flavour, "5.15.0-107.117", "lowlatency", "amd64", false);
        let min = filter("", "", "5.15.0");
        check(&min, "5.15.0-107.117", "generic", "amd64", true); // inclusive
        check(&min, "5.4.0-200.1", "generic", "amd64", false); // numeric, not text: 4 < 15
        check(&min, "5.19.0-1.1", "generic", "amd64", true);
        check(&min, "6.8.0-1.1", "generic", "amd64", true);
        check(&min, "5.14.99-1.1", "generic", "amd64", false);
        let combined = filter("amd64", "generic", "5.15.0");
        check(&combined, "5.15.0-1.1", "generic", "amd64", true);
        check(&combined, "5.15.0-1.1", "generic", "arm64", false);
        check(&combined, "5.15.0-1.1", "aws", "amd64", false);
        check(&combined, "5.4.0-1.1", "generic", "amd64", false);
    }

    #[test]
    fn bad_query_values_name_the_parameter() {
        assert_eq!(
            SyncFilter::from_query(None, None, Some("5.15"))
                .unwrap_err()
                .0,
            "minimum-kernel-version"
        );
        assert_eq!(
            SyncFilter::from_query(Some("sparc"), None, None)
                .unwrap_err()
                .0,
            "architectures"
        );
    }

    #[test]
    fn the_query_string_round_trips() {
        let f = filter("amd64,arm64", "generic", "5.15.0");
        let q: std::collections::HashMap<String, String> =
            url_pairs(&f.query()).into_iter().collect();
        let back = SyncFilter::from_query(
            q.get("architectures").map(String::as_str),
            q.get("flavors").map(String::as_str),
            q.get("minimum-kernel-version").map(String::as_str),
        )
        .unwrap();
        assert_eq!(back, f);
    }

    fn url_pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned(),
                )
            })
            .collect()
    }
}
