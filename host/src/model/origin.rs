//! HTTP origins a job may reach: `scheme://host:port` patterns.

use std::fmt;

use url::Url;

/// One granted origin: `scheme://host:port`, where `host` may be `*.example.com`
/// (any subdomain) or `*` (any host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: String,
    port: u16,
}

impl OriginPattern {
    /// Parse `http://127.0.0.1:9200`, `https://*.example.com` (default port of
    /// the scheme when omitted).
    ///
    /// # Errors
    /// A message saying what is wrong, for config validation.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("`{text}` is not an origin: expected `scheme://host:port`"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            other => return Err(format!("`{text}`: scheme `{other}` is not http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "`{text}` has a path; grant an origin (`scheme://host:port`), not a URL"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("`{text}`: port `{p}` is not a number from 0 to 65535"))?;
                (h, port)
            }
            _ => (rest, default_port),
        };
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        let host = host.to_ascii_lowercase();
        if host != "*" {
            let bare = host.strip_prefix("*.").unwrap_or(&host);
            if bare.contains('*') {
                return Err(format!(
                    "`{text}`: `*` may only stand alone or start the host as `*.`"
                ));
            }
            // Reject hosts url would not accept.
            Url::parse(&format!("{scheme}://{bare}:{port}/"))
                .map_err(|e| format!("`{text}`: invalid host: {e}"))?;
        }
        Ok(Self { scheme, host, port })
    }

    /// The scheme, `http` or `https`.
    #[must_use]
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the host has a wildcard (`*` or `*.example.com`).
    #[must_use]
    pub fn is_wildcard(&self) -> bool {
        self.host.starts_with('*')
    }

    /// Whether `url` is on this origin.
    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
        if url.scheme() != self.scheme || port != self.port {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match self.host.strip_prefix("*.") {
            _ if self.host == "*" => true,
            Some(suffix) => host.len() > suffix.len() && host.ends_with(&format!(".{suffix}")),
            None => host == self.host,
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Why a request header is the host's to set (a module may not), or `None`:
/// `Host` (which server the request is for), and the headers that frame
/// the request on the wire.
#[must_use]
pub fn reserved_header(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "host" => Some("the host sets `Host` from the URL, which the grant checks"),
        "content-length" | "transfer-encoding" | "te" | "trailer" => {
            Some("the host frames the request body itself")
        }
        "connection" | "keep-alive" | "upgrade" | "proxy-connection" => {
            Some("the host manages connections itself")
        }
        _ => None,
    }
}

/// The origin of `url` as `scheme://host:port`, for messages and needs checks.
pub fn origin_of(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns_match_scheme_host_and_port() {
        let p = OriginPattern::parse("http://127.0.0.1:9200").unwrap();
        assert!(p.matches(&Url::parse("http://127.0.0.1:9200/_cat").unwrap()));
        assert!(!p.matches(&Url::parse("http://127.0.0.1:9201/").unwrap()));
        assert!(!p.matches(&Url::parse("https://127.0.0.1:9200/").unwrap()));
        let w = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(w.matches(&Url::parse("https://a.example.com/x").unwrap()));
        assert!(!w.matches(&Url::parse("https://example.com/").unwrap()));
        assert!(!w.matches(&Url::parse("https://evilexample.com/").unwrap()));
        assert!(OriginPattern::parse("ftp://x").is_err());
        assert!(OriginPattern::parse("http://x/path").is_err());
        assert!(OriginPattern::parse("http://a*b.com").is_err());
    }
}
