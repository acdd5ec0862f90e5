//! A repository in a bucket of an S3-compatible object store (AWS, garage,
//! MinIO, Ceph RGW, …): path-style requests signed with AWS Signature
//! Version 4, objects named `PREFIX/config`, `PREFIX/data/XX/ID`, … as restic
//! names them, so `restic -r s3:…` reads the same bucket.
//!
//! Every payload is signed with its SHA-256 (no `UNSIGNED-PAYLOAD`), so a
//! body changed in flight is refused by the server even over plain HTTP.

use std::fmt;
use std::fmt::Write as _;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use url::Url;

use super::remote::{self, Attempt, RetryPolicy};
use super::{Store, StoreError, StoreErrorKind};
use crate::model::S3Location;

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 of nothing, for requests without a body.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub(super) struct S3Store {
    display: String,
    endpoint: Url,
    bucket: String,
    prefix: String,
    credentials: Credentials,
    policy: RetryPolicy,
}

/// What signs requests.
#[derive(Clone)]
struct Credentials {
    access_key: String,
    secret_key: String,
    region: String,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.display)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    pub(super) fn new(location: &S3Location) -> Result<Self, StoreError> {
        let read = |what: &str, source: &crate::model::SecretSource| {
            source.read().map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Denied,
                    format!(
                        "the S3 {what} for s3:{}/{}: {e}",
                        location.endpoint, location.bucket
                    ),
                )
            })
        };
        Ok(Self {
            display: crate::model::Location::S3(location.clone()).to_string(),
            endpoint: location.endpoint.clone(),
            bucket: location.bucket.clone(),
            prefix: location.prefix.clone(),
            credentials: Credentials {
                access_key: read("access key id", &location.access_key_id)?,
                secret_key: read("secret access key", &location.secret_access_key)?,
                region: location.region.clone(),
            },
            policy: RetryPolicy::default(),
        })
    }

    /// The object key of repository path `path`.
    fn key(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_owned()
        } else if path.is_empty() {
            format!("{}/", self.prefix)
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    /// Send one signed request (retrying transient failures) and return the
    /// response of the last attempt whose status is not transient.
    fn send(
        &self,
        req: S3Request,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Bytes), StoreError> {
        let endpoint = self.endpoint.clone();
        let bucket = self.bucket.clone();
        let credentials = self.credentials.clone();
        let policy = self.policy;
        let what = format!("{} {} in {}", req.verb(), req.key_or_bucket(), self.display);
        remote::block_on(async move {
            let client = remote::client();
            remote::retry(policy, &what, || {
                let built = req.build(&client, &endpoint, &bucket, &credentials);
                async move {
                    let response = match built.send().await {
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
                        return Attempt::Transient(status_text(status, &body));
                    }
                    Attempt::Done((status, headers, body))
                }
            })
            .await
        })
    }

    /// A failure for `op` of `key` with `status` and the server's reason.
    fn failure(&self, op: &str, key: &str, status: reqwest::StatusCode, body: &[u8]) -> StoreError {
        let kind = match status.as_u16() {
            404 => StoreErrorKind::NotFound,
            401 | 403 => StoreErrorKind::Denied,
            _ => StoreErrorKind::Other,
        };
        let mut message = format!(
            "{op} {key} in bucket `{}` of {}: {}",
            self.bucket,
            self.display,
            status_text(status, body)
        );
        if kind == StoreErrorKind::Denied {
            message.push_str(": check the access key and its permissions on the bucket");
        }
        StoreError::new(kind, message)
    }
}

/// `HTTP 403 AccessDenied: Access Denied` from an S3 error body, or the status alone.
fn status_text(status: reqwest::StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let code = tag_values(&text, "Code").into_iter().next();
    let message = tag_values(&text, "Message").into_iter().next();
    match (code, message) {
        (Some(code), Some(message)) => format!("HTTP {} {code}: {message}", status.as_u16()),
        (Some(code), None) => format!("HTTP {} {code}", status.as_u16()),
        _ => format!("HTTP {}", status),
    }
}

/// One request, before it is signed (it is signed again on each attempt,
/// with the time of that attempt).
#[derive(Clone)]
struct S3Request {
    method: reqwest::Method,
    /// Object key, or `None` for the bucket itself.
    key: Option<String>,
    query: Vec<(String, String)>,
    range: Option<String>,
    body: Bytes,
    body_sha256: String,
}

impl S3Request {
    fn new(method: reqwest::Method, key: Option<String>) -> Self {
        Self {
            method,
            key,
            query: Vec::new(),
            range: None,
            body: Bytes::new(),
            body_sha256: EMPTY_SHA256.to_owned(),
        }
    }

    fn verb(&self) -> &'static str {
        match self.method.as_str() {
            "GET" if self.key.is_none() => "listing",
            "GET" => "reading",
            "HEAD" => "looking up",
            "PUT" => "writing",
            "DELETE" => "removing",
            _ => "requesting",
        }
    }

    fn key_or_bucket(&self) -> String {
        self.key.clone().unwrap_or_else(|| "the bucket".to_owned())
    }

    fn build(
        &self,
        client: &reqwest::Client,
        endpoint: &Url,
        bucket: &str,
        credentials: &Credentials,
    ) -> reqwest::RequestBuilder {
        let path = match &self.key {
            Some(key) => format!("/{}/{}", uri_encode(bucket, false), uri_encode(key, false)),
            None => format!("/{}", uri_encode(bucket, false)),
        };
        let mut query = self.query.clone();
        query.sort();
        let query_string = query
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, true), uri_encode(v, true)))
            .collect::<Vec<_>>()
            .join("&");
        let host = match endpoint.port() {
            Some(port) => format!("{}:{port}", endpoint.host_str().unwrap_or_default()),
            None => endpoint.host_str().unwrap_or_default().to_owned(),
        };
        let now = jiff::Timestamp::now();
        let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let mut headers: Vec<(&str, String)> = vec![
            ("host", host.clone()),
            ("x-amz-content-sha256", self.body_sha256.clone()),
            ("x-amz-date", amz_date.clone()),
        ];
        if let Some(range) = &self.range {
            headers.push(("range", range.clone()));
        }
        let authorization = sign(
            credentials,
            self.method.as_str(),
            &path,
            &query_string,
            &mut headers,
            &self.body_sha256,
            &amz_date,
        );
        let mut url = format!("{}://{host}{path}", endpoint.scheme());
        if !query_string.is_empty() {
            url.push('?');
            url.push_str(&query_string);
        }
        let mut request = client.request(self.method.clone(), url);
        for (name, value) in headers.iter().filter(|(n, _)| *n != "host") {
            request = request.header(*name, value);
        }
        request = request.header("authorization", authorization);
        if !self.body.is_empty() || self.method == reqwest::Method::PUT {
            request = request.body(self.body.clone());
        }
        request
    }
}

/// S3's URI encoding: everything but `A-Za-z0-9-_.~` as `%XX`, and `/`
/// kept unless `slash` (query values encode it).
fn uri_encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !slash)
        {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The `Authorization` header of AWS Signature Version 4 for a request
/// with `headers` (lower-case names; sorted here).
fn sign(
    credentials: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    headers: &mut [(&str, String)],
    payload_sha256: &str,
    amz_date: &str,
) -> String {
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_sha256}"
    );
    let date = &amz_date[..8];
    let scope = format!("{date}/{}/s3/aws4_request", credentials.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = hmac(
        format!("AWS4{}", credentials.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let key = hmac(&key, credentials.region.as_bytes());
    let key = hmac(&key, b"s3");
    let key = hmac(&key, b"aws4_request");
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key
    )
}

/// The texts of every `<tag>…</tag>` in `xml` (not nested), unescaped.
fn tag_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    out
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

impl Store for S3Store {
    fn location(&self) -> String {
        self.display.clone()
    }

    fn create(&self) -> Result<(), StoreError> {
        let (status, _, body) = self.send(S3Request::new(reqwest::Method::HEAD, None))?;
        if status.is_success() {
            return Ok(());
        }
        if status.as_u16() != 404 {
            return Err(self.failure("looking up", "the bucket", status, &body));
        }
        let mut request = S3Request::new(reqwest::Method::PUT, None);
        if self.credentials.region != "us-east-1" {
            let xml = format!(
                "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.credentials.region
            );
            request.body_sha256 = hex::encode(Sha256::digest(xml.as_bytes()));
            request.body = Bytes::from(xml);
        }
        let (status, _, body) = self.send(request)?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.failure("creating (it does not exist)", "the bucket", status, &body))
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = self.key(&format!("{dir}/"));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = S3Request::new(reqwest::Method::GET, None);
            request.query = vec![
                ("list-type".into(), "2".into()),
                ("prefix".into(), prefix.clone()),
            ];
            if let Some(token) = &token {
                request
                    .query
                    .push(("continuation-token".into(), token.clone()));
            }
            let (status, _, body) = self.send(request)?;
            if !status.is_success() {
                return Err(self.failure("listing", &prefix, status, &body));
            }
            let text = String::from_utf8_lossy(&body);
            for contents in tag_values(&text, "Contents") {
                let key = tag_values(&contents, "Key").into_iter().next();
                let size = tag_values(&contents, "Size")
                    .into_iter()
                    .next()
                    .and_then(|s| s.parse::<u64>().ok());
                if let (Some(key), Some(size)) = (key, size) {
                    let name = key.rsplit('/').next().unwrap_or_default().to_owned();
                    if !name.is_empty() {
                        out.push((name, size));
                    }
                }
            }
            let truncated =
                tag_values(&text, "IsTruncated").first().map(String::as_str) == Some("true");
            token = tag_values(&text, "NextContinuationToken")
                .into_iter()
                .next();
            if !truncated || token.is_none() {
                return Ok(out);
            }
        }
    }

    fn size(&self, path: &str) -> Result<Option<u64>, StoreError> {
        let key = self.key(path);
        let (status, headers, body) =
            self.send(S3Request::new(reqwest::Method::HEAD, Some(key.clone())))?;
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.failure("looking up", &key, status, &body));
        }
        Ok(headers
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    fn read(&self, path: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError> {
        let key = self.key(path);
        if range.is_some_and(|(_, length)| length == 0) {
            return Ok(Bytes::new());
        }
        let mut request = S3Request::new(reqwest::Method::GET, Some(key.clone()));
        request.range =
            range.map(|(offset, length)| format!("bytes={offset}-{}", offset + length - 1));
        let (status, _, body) = self.send(request)?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(self.failure("reading", &key, status, &body))
        }
    }

    fn write(&self, path: &str, data: &[Bytes]) -> Result<(), StoreError> {
        let key = self.key(path);
        let body = if data.len() == 1 {
            data[0].clone()
        } else {
            Bytes::from(data.concat())
        };
        let mut request = S3Request::new(reqwest::Method::PUT, Some(key.clone()));
        request.body_sha256 = hex::encode(Sha256::digest(&body));
        request.body = body;
        let (status, _, body) = self.send(request)?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.failure("writing", &key, status, &body))
        }
    }

    fn remove(&self, path: &str) -> Result<(), StoreError> {
        let key = self.key(path);
        let (status, _, body) =
            self.send(S3Request::new(reqwest::Method::DELETE, Some(key.clone())))?;
        if status.is_success() || status.as_u16() == 404 {
            Ok(())
        } else {
            Err(self.failure("removing", &key, status, &body))
        }
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        let prefix = self.key("");
        let mut request = S3Request::new(reqwest::Method::GET, None);
        request.query = vec![
            ("list-type".into(), "2".into()),
            ("max-keys".into(), "1".into()),
            ("prefix".into(), prefix.clone()),
        ];
        let (status, _, body) = self.send(request)?;
        if status.as_u16() == 404 {
            // No bucket yet: `create` makes it.
            return Ok(true);
        }
        if !status.is_success() {
            return Err(self.failure("listing", &prefix, status, &body));
        }
        Ok(tag_values(&String::from_utf8_lossy(&body), "Contents").is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "GET Object" example of AWS's Signature Version 4 documentation.
    #[test]
    fn signs_the_documented_example() {
        let credentials = Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        };
        let mut headers = vec![
            ("host", "examplebucket.s3.amazonaws.com".to_owned()),
            ("range", "bytes=0-9".to_owned()),
            ("x-amz-content-sha256", EMPTY_SHA256.to_owned()),
            ("x-amz-date", "20130524T000000Z".to_owned()),
        ];
        let authorization = sign(
            &credentials,
            "GET",
            "/test.txt",
            "",
            &mut headers,
            EMPTY_SHA256,
            "20130524T000000Z",
        );
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn keys_and_queries_are_encoded_as_s3_expects() {
        assert_eq!(uri_encode("p/data/ab/x y", false), "p/data/ab/x%20y");
        assert_eq!(uri_encode("p/data/", true), "p%2Fdata%2F");
        let xml = "<ListBucketResult><IsTruncated>false</IsTruncated>\
                   <Contents><Key>p/data/ab/abc</Key><Size>12</Size></Contents>\
                   <Contents><Key>p/data/cd/c&amp;d</Key><Size>3</Size></Contents></ListBucketResult>";
        let contents = tag_values(xml, "Contents");
        assert_eq!(contents.len(), 2);
        assert_eq!(tag_values(&contents[1], "Key"), vec!["p/data/cd/c&d"]);
        let error =
            b"<Error><Code>NoSuchBucket</Code><Message>The bucket does not exist</Message></Error>";
        assert_eq!(
            status_text(reqwest::StatusCode::NOT_FOUND, error),
            "HTTP 404 NoSuchBucket: The bucket does not exist"
        );
    }
}
