//! Which cluster a run talks to: its distribution and version, from `GET /`
//! or from param `version`, and what follows from it.

use cairn_guest::Value;

/// Elasticsearch or OpenSearch, and the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub opensearch: bool,
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// From the body of `GET /` (`version.number`, `version.distribution`).
    pub fn from_root(info: &Value) -> Option<Version> {
        let number = info["version"]["number"].as_str()?;
        let opensearch = info["version"]["distribution"].as_str() == Some("opensearch");
        let mut parts = number.split(['.', '-']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some(Version {
            opensearch,
            major,
            minor,
        })
    }

    /// From param `version`: `7`, `8.15`, `7.17.3`, `opensearch-2`,
    /// `opensearch-2.11.0`.
    pub fn parse(text: &str) -> std::result::Result<Version, String> {
        let bad = || {
            format!(
                "`version` must be an Elasticsearch version such as `8` or `7.17.3`, or \
                 `opensearch-2`; got {text:?}"
            )
        };
        let (opensearch, number) = match text.trim().strip_prefix("opensearch-") {
            Some(rest) => (true, rest),
            None => (false, text.trim()),
        };
        let mut parts = number.split('.');
        let major: u32 = parts.next().and_then(|m| m.parse().ok()).ok_or_else(bad)?;
        let minor: u32 = match parts.next() {
            Some(m) => m.parse().map_err(|_| bad())?,
            None => 0,
        };
        if let Some(patch) = parts.next() {
            patch.parse::<u32>().map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Version {
            opensearch,
            major,
            minor,
        })
    }

    /// Whether this module supports it: Elasticsearch 7 and 8, OpenSearch.
    pub fn supported(self) -> bool {
        self.opensearch || (7..=9).contains(&self.major)
    }

    pub fn same_major(self, other: Version) -> bool {
        self.opensearch == other.opensearch && self.major == other.major
    }

    /// Whether `GET /_resolve/index` exists (Elasticsearch 7.9, every
    /// OpenSearch).
    pub fn has_resolve_api(self) -> bool {
        self.opensearch || self.major > 7 || (self.major == 7 && self.minor >= 9)
    }

    /// Whether the cluster has ILM (Elasticsearch only).
    pub fn has_ilm(self) -> bool {
        !self.opensearch
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.opensearch {
            "OpenSearch"
        } else {
            "Elasticsearch"
        };
        write!(f, "{name} {}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::json;

    #[test]
    fn versions_come_from_the_root_or_the_param() {
        let es = Version::from_root(&json!({"version": {"number": "8.15.0"}})).unwrap();
        assert_eq!((es.opensearch, es.major, es.minor), (false, 8, 15));
        let os = Version::from_root(
            &json!({"version": {"number": "2.11.0", "distribution": "opensearch"}}),
        )
        .unwrap();
        assert!(os.opensearch && os.has_resolve_api() && !os.has_ilm());
        assert_eq!(os.to_string(), "OpenSearch 2.11");
        assert_eq!(Version::parse("7").unwrap().major, 7);
        assert!(!Version::parse("7.8").unwrap().has_resolve_api());
        assert!(Version::parse("7.17.3").unwrap().has_resolve_api());
        assert!(Version::parse("opensearch-2").unwrap().opensearch);
        for bad in ["", "seven", "7.x", "opensearch-", "8.1.2.x"] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
        assert!(!Version::parse("6.8").unwrap().supported());
    }
}
