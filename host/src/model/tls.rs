//! How the host speaks TLS to one HTTPS origin of a job: which certificate
//! authority to trust, a pinned certificate, a client certificate, or (for
//! tests against throwaway clusters) no verification at all.
//!
//! Written as `[jobs.NAME.tls."https://host:port"]`; `config` checks the
//! files and `capabilities::tls` builds the client from them. The guest
//! never sees any of it: it only names URLs.

use std::path::PathBuf;

use super::OriginPattern;

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Chains to the certificate authorities in this PEM file (and only
    /// those: the public roots are not trusted for this origin).
    CaFile(PathBuf),
    /// A certificate whose SHA-256 fingerprint is this one: the server's own
    /// certificate, or a CA in the chain it presents (then the chain and the
    /// host name are verified against that CA).
    Fingerprint([u8; 32]),
    /// Not checked at all (`insecure = true`): anyone on the path can read
    /// and change the traffic. Config load warns about it.
    Insecure,
}

/// The TLS settings of one origin (or origin pattern) of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOrigin {
    /// Which origins these settings apply to: an `https` origin the job's
    /// `allow.http` grants, as written there.
    pub origin: OriginPattern,
    /// How the server is verified; `None` keeps the public roots.
    pub trust: Option<ServerTrust>,
    /// A client certificate (PEM, the chain leaf first) and its key (PEM).
    pub client: Option<ClientIdentity>,
}

/// A client certificate and its private key, both PEM files read at the
/// start of each run (so a renewed certificate is picked up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `sha256:AB:CD:…`, `AB:CD:…` or 64 hex digits, as `openssl x509
/// -fingerprint -sha256` and Elasticsearch print them.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let trimmed = text.trim();
    let bare = trimmed
        .strip_prefix("sha256:")
        .or_else(|| trimmed.strip_prefix("SHA256:"))
        .unwrap_or(trimmed);
    let digits: String = bare.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&digits).ok().filter(|b| b.len() == 32);
    bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| {
        format!(
            "`{text}` is not a SHA-256 fingerprint: expected 64 hex digits, optionally \
             colon-separated and prefixed with `sha256:` (e.g. `openssl x509 -noout \
             -fingerprint -sha256 -in ca.crt`)"
        )
    })
}

/// `sha256:ab:cd:…` for messages.
#[must_use]
pub fn format_fingerprint(digest: &[u8]) -> String {
    let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", pairs.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_in_the_forms_tools_print() {
        let hex64 = "ab".repeat(32);
        let colons: Vec<&str> = std::iter::repeat_n("AB", 32).collect();
        for text in [
            hex64.clone(),
            format!("sha256:{hex64}"),
            colons.join(":"),
            format!("SHA256:{}", colons.join(":")),
        ] {
            assert_eq!(parse_fingerprint(&text), Ok([0xab; 32]), "{text}");
        }
        for bad in ["", "sha256:", "abcd", &"ab".repeat(33), &"zz".repeat(32)] {
            let err = parse_fingerprint(bad).unwrap_err();
            assert!(err.contains("64 hex digits"), "{err}");
        }
        assert!(format_fingerprint(&[0xab; 32]).starts_with("sha256:AB:AB:"));
    }
}
