//! The repository: where it is, how it is opened, and which snapshots a job keeps.

use std::fmt;
use std::path::PathBuf;

use url::Url;

use super::secret::SecretSource;

/// `[repository]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySettings {
    /// Where the repository is.
    pub location: Location,
    /// Where its password comes from; `None` when the config names none
    /// (opening the repository then fails, saying what to set).
    pub password: Option<SecretSource>,
}

/// Where a repository lives, in the forms restic users write
/// (`/srv/backups`, `s3:http://host:port/bucket/prefix`,
/// `rest:http://host:port/path/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory (absolute).
    Local(PathBuf),
    /// A bucket (and key prefix) of an S3-compatible object store.
    S3(S3Location),
    /// A server speaking restic's REST protocol (rest-server, `rclone serve restic`).
    Rest(RestLocation),
}

/// An S3 repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `http(s)://host:port` of the service (path-style requests).
    pub endpoint: Url,
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`
    /// (empty: the bucket's root).
    pub prefix: String,
    /// The signing region (`us-east-1` unless set; garage uses `garage`).
    pub region: String,
    /// Access key id.
    pub access_key_id: SecretSource,
    /// Secret access key.
    pub secret_access_key: SecretSource,
}

/// A REST repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestLocation {
    /// Base URL, ending in `/`, without credentials.
    pub url: Url,
    /// HTTP basic auth user and where the password comes from.
    pub credentials: Option<(String, SecretSource)>,
}

impl fmt::Display for Location {
    /// The location as users write it (never with credentials).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::S3(s3) => {
                let endpoint = s3.endpoint.as_str().trim_end_matches('/');
                if s3.prefix.is_empty() {
                    write!(f, "s3:{endpoint}/{}", s3.bucket)
                } else {
                    write!(f, "s3:{endpoint}/{}/{}", s3.bucket, s3.prefix)
                }
            }
            Self::Rest(rest) => write!(f, "rest:{}", rest.url),
        }
    }
}

/// A repository URL as written, before credentials are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedLocation {
    /// A local path (relative paths are the config's to resolve).
    Local(PathBuf),
    /// `s3:…`: endpoint, bucket, prefix.
    S3 {
        /// `http(s)://host:port`.
        endpoint: Url,
        /// The bucket.
        bucket: String,
        /// Key prefix (no leading or trailing `/`).
        prefix: String,
    },
    /// `rest:…`: the base URL (ending in `/`), and a user name if the URL
    /// had one.
    Rest {
        /// Base URL without credentials.
        url: Url,
        /// `user` of `rest:http://user@host/`.
        user: Option<String>,
    },
}

/// Parse a repository URL: a path, `local:PATH`, `s3:http(s)://host[:port]/bucket[/prefix]`,
/// `s3:host[:port]/bucket[/prefix]` (https), or `rest:http(s)://host[:port]/[path/]`.
///
/// # Errors
/// A message saying what is wrong and what is expected.
pub fn parse_location(text: &str) -> Result<ParsedLocation, String> {
    if let Some(rest) = text.strip_prefix("s3:") {
        let with_scheme = if rest.starts_with("http://") || rest.starts_with("https://") {
            rest.to_owned()
        } else {
            format!("https://{rest}")
        };
        let url = Url::parse(&with_scheme).map_err(|e| {
            format!(
                "`{text}` is not an S3 location ({e}); expected `s3:http://host:port/bucket/prefix`"
            )
        })?;
        if url.username() != "" || url.password().is_some() {
            return Err(format!(
                "`{text}` has credentials in it; give them in [repository.s3] (from the environment or files) instead"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{text}`: an S3 location has no query or fragment"));
        }
        let mut parts = url.path().trim_matches('/').splitn(2, '/');
        let bucket = parts.next().unwrap_or_default().to_owned();
        if bucket.is_empty() {
            return Err(format!(
                "`{text}` names no bucket; expected `s3:http://host:port/bucket/prefix`"
            ));
        }
        if bucket.len() < 3
            || bucket.len() > 63
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(format!(
                "`{text}`: bucket `{bucket}` is not a valid bucket name (3 to 63 lower-case letters, digits, `-` and `.`)"
            ));
        }
        let prefix = parts
            .next()
            .unwrap_or_default()
            .trim_matches('/')
            .to_owned();
        let mut endpoint = url.clone();
        endpoint.set_path("/");
        return Ok(ParsedLocation::S3 {
            endpoint,
            bucket,
            prefix,
        });
    }
    if let Some(rest) = text.strip_prefix("rest:") {
        let mut url = Url::parse(rest).map_err(|e| {
            format!("`{text}` is not a REST location ({e}); expected `rest:http://host:port/`")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{text}`: a REST location is http or https"));
        }
        if url.password().is_some() {
            return Err(format!(
                "`{text}` has a password in it; give it in [repository.rest] (from the environment or a file) instead"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{text}`: a REST location has no query or fragment"
            ));
        }
        let user = Some(url.username().to_owned()).filter(|u| !u.is_empty());
        let _ = url.set_username("");
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        return Ok(ParsedLocation::Rest { url, user });
    }
    let path = text.strip_prefix("local:").unwrap_or(text);
    if let Some((scheme, _)) = path.split_once(':')
        && !scheme.contains('/')
        && scheme.len() > 1
    {
        return Err(format!(
            "`{text}`: `{scheme}:` repositories are not supported; use a local path, `s3:` or `rest:`"
        ));
    }
    if path.is_empty() {
        return Err("the repository location is empty".to_owned());
    }
    Ok(ParsedLocation::Local(PathBuf::from(path)))
}

/// Which snapshots of a job to keep. `None` means the rule is not used; an empty
/// retention keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Retention {
    /// Keep the N newest snapshots.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one.
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one.
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one.
    pub keep_yearly: Option<u32>,
}

impl Retention {
    /// True when no rule is set (everything is kept).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_in_the_forms_restic_users_write() {
        assert_eq!(
            parse_location("/srv/backups"),
            Ok(ParsedLocation::Local("/srv/backups".into()))
        );
        assert_eq!(
            parse_location("local:repo"),
            Ok(ParsedLocation::Local("repo".into()))
        );
        let Ok(ParsedLocation::S3 {
            endpoint,
            bucket,
            prefix,
        }) = parse_location("s3:http://127.0.0.1:3900/cairn-backups/hosts/a/")
        else {
            panic!("not S3");
        };
        assert_eq!(endpoint.as_str(), "http://127.0.0.1:3900/");
        assert_eq!(bucket, "cairn-backups");
        assert_eq!(prefix, "hosts/a");
        let Ok(ParsedLocation::S3 {
            endpoint, prefix, ..
        }) = parse_location("s3:s3.amazonaws.com/bucket")
        else {
            panic!("not S3");
        };
        assert_eq!(endpoint.as_str(), "https://s3.amazonaws.com/");
        assert_eq!(prefix, "");
        assert_eq!(
            parse_location("rest:http://cairn@127.0.0.1:8000/repo"),
            Ok(ParsedLocation::Rest {
                url: Url::parse("http://127.0.0.1:8000/repo/").unwrap(),
                user: Some("cairn".into())
            })
        );
        for (bad, needle) in [
            ("s3:http://127.0.0.1:3900/", "names no bucket"),
            ("s3:http://key:secret@127.0.0.1:3900/b", "credentials"),
            (
                "s3:http://127.0.0.1:3900/Bad_Bucket",
                "not a valid bucket name",
            ),
            ("rest:http://u:p@h/", "password"),
            ("rest:ftp://h/", "http or https"),
            ("sftp:host:/srv", "not supported"),
            ("", "empty"),
        ] {
            let err = parse_location(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn a_location_displays_without_secrets() {
        let s3 = Location::S3(S3Location {
            endpoint: Url::parse("http://127.0.0.1:3900/").unwrap(),
            bucket: "b".into(),
            prefix: "p/q".into(),
            region: "garage".into(),
            access_key_id: SecretSource::Env("K".into()),
            secret_access_key: SecretSource::Env("S".into()),
        });
        assert_eq!(s3.to_string(), "s3:http://127.0.0.1:3900/b/p/q");
    }
}
