//! A repository behind restic's REST protocol (rest-server, `rclone serve
//! restic`): `GET/HEAD/POST/DELETE BASE/TYPE/NAME`, listings as version 2
//! JSON (`[{"name": …, "size": …}]`), `POST BASE/?create=true` to make one.
//! Data files are flat (`data/ID`) in the protocol, whatever the server keeps.

use std::fmt;

use bytes::Bytes;
use url::Url;

use super::remote::{self, Attempt, RetryPolicy};
use super::{Store, StoreError, StoreErrorKind};
use crate::model::RestLocation;

/// The media type of version 2 listings.
const LIST_V2: &str = "application/vnd.x.restic.rest.v2";

pub(super) struct RestStore {
    display: String,
    base: Url,
    auth: Option<(String, String)>,
    policy: RetryPolicy,
}

impl fmt::Debug for RestStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestStore")
            .field("location", &self.display)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Listed {
    V2 { name: String, size: u64 },
    V1(String),
}

impl RestStore {
    pub(super) fn new(location: &RestLocation) -> Result<Self, StoreError> {
        let auth = match &location.credentials {
            Some((user, source)) => Some((
                user.clone(),
                source.read().map_err(|e| {
                    StoreError::new(
                        StoreErrorKind::Denied,
                        format!("the REST password for rest:{}: {e}", location.url),
                    )
                })?,
            )),
            None => None,
        };
        Ok(Self {
            display: format!("rest:{}", location.url),
            base: location.url.clone(),
            auth,
            policy: RetryPolicy::default(),
        })
    }

    /// The protocol's URL of repository path `path` (`data/XX/ID` is `data/ID`).
    fn url(&self, path: &str) -> Url {
        let path = match path.strip_prefix("data/") {
            Some(rest) => format!("data/{}", rest.rsplit('/').next().unwrap_or(rest)),
            None => path.to_owned(),
        };
        self.base.join(&path).unwrap_or_else(|_| self.base.clone())
    }

    fn send(
        &self,
        method: reqwest::Method,
        url: Url,
        headers: Vec<(&'static str, String)>,
        body: Option<Bytes>,
        what: String,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Bytes), StoreError> {
        let auth = self.auth.clone();
        let policy = self.policy;
        remote::block_on(async move {
            let client = remote::client();
            remote::retry(policy, &what, || {
                let mut request = client.request(method.clone(), url.clone());
                for (name, value) in &headers {
                    request = request.header(*name, value);
                }
                if let Some((user, password)) = &auth {
                    request = request.basic_auth(user, Some(password));
                }
                if let Some(body) = &body {
                    request = request
                        .header("content-type", "application/octet-stream")
                        .body(body.clone());
                }
                async move {
                    let response = match request.send().await {
                        Ok(r) => r,
                        Err(e) => return Attempt::Transient(remote::describe(&e)),
                    };
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = match response.bytes().await {
                        Ok(b) => b,
                        Err(e) => return Attempt::Transient(remote::describe(&e)),
                    };
                    if remote::is_transient(status) {
                        return Attempt::Transient(format!("HTTP {status}"));
                    }
                    Attempt::Done((status, headers, body))
                }
            })
            .await
        })
    }

    fn failure(
        &self,
        op: &str,
        path: &str,
        status: reqwest::StatusCode,
        body: &[u8],
    ) -> StoreError {
        let kind = match status.as_u16() {
            404 => StoreErrorKind::NotFound,
            401 | 403 => StoreErrorKind::Denied,
            _ => StoreErrorKind::Other,
        };
        let reason = String::from_utf8_lossy(body);
        let reason = reason.trim();
        let mut message = format!("{op} {path} of {}: HTTP {status}", self.display);
        if !reason.is_empty() && reason.len() < 300 {
            message.push_str(": ");
            message.push_str(reason);
        }
        if kind == StoreErrorKind::Denied {
            message.push_str(" (check [repository.rest] username and password)");
        }
        StoreError::new(kind, message)
    }
}

impl Store for RestStore {
    fn location(&self) -> String {
        self.display.clone()
    }

    fn create(&self) -> Result<(), StoreError> {
        let mut url = self.base.clone();
        url.set_query(Some("create=true"));
        let what = format!("creating the repository {}", self.display);
        let (status, _, body) = self.send(
            reqwest::Method::POST,
            url,
            Vec::new(),
            Some(Bytes::new()),
            what,
        )?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.failure("creating", "the repository", status, &body))
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let url = self.url(&format!("{dir}/"));
        let what = format!("listing {dir}/ of {}", self.display);
        let (status, _, body) = self.send(
            reqwest::Method::GET,
            url,
            vec![("accept", LIST_V2.to_owned())],
            None,
            what,
        )?;
        if status.as_u16() == 404 {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(self.failure("listing", &format!("{dir}/"), status, &body));
        }
        let listed: Vec<Listed> = serde_json::from_slice(&body).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "listing {dir}/ of {}: the server's answer is not a restic listing: {e}",
                    self.display
                ),
            )
        })?;
        let mut out = Vec::with_capacity(listed.len());
        for entry in listed {
            match entry {
                Listed::V2 { name, size } => out.push((name, size)),
                // A version 1 server: ask for each size.
                Listed::V1(name) => {
                    let size = self.size(&format!("{dir}/{name}"))?.unwrap_or(0);
                    out.push((name, size));
                }
            }
        }
        Ok(out)
    }

    fn size(&self, path: &str) -> Result<Option<u64>, StoreError> {
        let what = format!("looking up {path} in {}", self.display);
        let (status, headers, body) = self.send(
            reqwest::Method::HEAD,
            self.url(path),
            Vec::new(),
            None,
            what,
        )?;
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.failure("looking up", path, status, &body));
        }
        Ok(headers
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    fn read(&self, path: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError> {
        if range.is_some_and(|(_, length)| length == 0) {
            return Ok(Bytes::new());
        }
        let headers = range
            .map(|(offset, length)| {
                vec![("range", format!("bytes={offset}-{}", offset + length - 1))]
            })
            .unwrap_or_default();
        let what = format!("reading {path} of {}", self.display);
        let (status, _, body) =
            self.send(reqwest::Method::GET, self.url(path), headers, None, what)?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(self.failure("reading", path, status, &body))
        }
    }

    fn write(&self, path: &str, data: &[Bytes]) -> Result<(), StoreError> {
        let body = if data.len() == 1 {
            data[0].clone()
        } else {
            Bytes::from(data.concat())
        };
        let what = format!("writing {path} to {}", self.display);
        let (status, _, reply) = self.send(
            reqwest::Method::POST,
            self.url(path),
            Vec::new(),
            Some(body),
            what,
        )?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.failure("writing", path, status, &reply))
        }
    }

    fn remove(&self, path: &str) -> Result<(), StoreError> {
        let what = format!("removing {path} from {}", self.display);
        let (status, _, body) = self.send(
            reqwest::Method::DELETE,
            self.url(path),
            Vec::new(),
            None,
            what,
        )?;
        if status.is_success() || status.as_u16() == 404 {
            Ok(())
        } else {
            Err(self.failure("removing", path, status, &body))
        }
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        if self.size("config")?.is_some() {
            return Ok(false);
        }
        Ok(self.list("keys")?.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_files_are_flat_in_the_protocol() {
        let store = RestStore {
            display: "rest:http://h:1/r/".into(),
            base: Url::parse("http://h:1/r/").unwrap(),
            auth: None,
            policy: RetryPolicy::default(),
        };
        assert_eq!(
            store.url("data/ab/abcdef").as_str(),
            "http://h:1/r/data/abcdef"
        );
        assert_eq!(store.url("keys/k1").as_str(), "http://h:1/r/keys/k1");
        assert_eq!(store.url("config").as_str(), "http://h:1/r/config");
        assert_eq!(store.url("data/").as_str(), "http://h:1/r/data/");
    }
}
