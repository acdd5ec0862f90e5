//! Elasticsearch's error bodies: `{"error":{"root_cause":[…],"type":…,"reason":…},"status":N}`.

use serde_json::{Map, Value, json};

/// One Elasticsearch exception, rendered the way the REST layer renders it.
#[derive(Debug, Clone)]
pub struct EsError {
    /// HTTP status of the response.
    pub status: u16,
    /// The exception's snake_case type (`index_not_found_exception`).
    pub kind: String,
    /// The human-readable reason.
    pub reason: String,
    /// Extra fields ES puts beside `type`/`reason` (`index`, `index_uuid`, `resource.id`, …).
    pub extra: Map<String, Value>,
    /// The nested cause, rendered as `caused_by`.
    pub caused_by: Option<Box<EsError>>,
    /// Explicit `root_cause` entries; by default the exception itself (without its cause).
    pub root_cause: Option<Vec<Value>>,
}

impl EsError {
    pub fn new(status: u16, kind: &str, reason: impl Into<String>) -> EsError {
        EsError {
            status,
            kind: kind.to_string(),
            reason: reason.into(),
            extra: Map::new(),
            caused_by: None,
            root_cause: None,
        }
    }

    /// Adds a field beside `type` and `reason`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> EsError {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn caused_by(mut self, cause: EsError) -> EsError {
        self.caused_by = Some(Box::new(cause));
        self
    }

    /// The exception as ES renders it inside `error` (and inside bulk items).
    pub fn object(&self) -> Value {
        let mut map = Map::new();
        map.insert("type".into(), Value::String(self.kind.clone()));
        map.insert("reason".into(), Value::String(self.reason.clone()));
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        if let Some(cause) = &self.caused_by {
            map.insert("caused_by".into(), cause.object());
        }
        Value::Object(map)
    }

    fn shallow(&self) -> Value {
        let mut map = Map::new();
        map.insert("type".into(), Value::String(self.kind.clone()));
        map.insert("reason".into(), Value::String(self.reason.clone()));
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        Value::Object(map)
    }

    /// The whole response body.
    pub fn body(&self) -> Value {
        let mut error = self.object();
        let roots = self
            .root_cause
            .clone()
            .unwrap_or_else(|| vec![self.shallow()]);
        error
            .as_object_mut()
            .expect("object")
            .insert("root_cause".into(), Value::Array(roots));
        json!({ "error": error, "status": self.status })
    }

    // ---- the exceptions the server raises -------------------------------------------

    pub fn index_not_found(index: &str) -> EsError {
        EsError::new(
            404,
            "index_not_found_exception",
            format!("no such index [{index}]"),
        )
        .with("resource.type", "index_or_alias")
        .with("resource.id", index)
        .with("index_uuid", "_na_")
        .with("index", index)
    }

    pub fn index_closed(index: &str, uuid: &str) -> EsError {
        EsError::new(400, "index_closed_exception", "closed")
            .with("index_uuid", uuid)
            .with("index", index)
    }

    pub fn already_exists(index: &str, uuid: &str) -> EsError {
        EsError::new(
            400,
            "resource_already_exists_exception",
            format!("index [{index}/{uuid}] already exists"),
        )
        .with("index_uuid", uuid)
        .with("index", index)
    }

    pub fn invalid_index_name(index: &str, why: &str) -> EsError {
        EsError::new(
            400,
            "invalid_index_name_exception",
            format!("Invalid index name [{index}], {why}"),
        )
        .with("index_uuid", "_na_")
        .with("index", index)
    }

    pub fn illegal_argument(reason: impl Into<String>) -> EsError {
        EsError::new(400, "illegal_argument_exception", reason)
    }

    pub fn parsing(reason: impl Into<String>) -> EsError {
        EsError::new(400, "parsing_exception", reason)
    }

    pub fn mapper_parsing(reason: impl Into<String>) -> EsError {
        EsError::new(400, "mapper_parsing_exception", reason)
    }

    /// A request body that is not valid JSON.
    pub fn bad_json(err: &serde_json::Error) -> EsError {
        EsError::new(
            400,
            "x_content_parse_exception",
            format!("[{}:{}] {err}", err.line(), err.column()),
        )
    }

    pub fn rejected(what: &str) -> EsError {
        EsError::new(
            429,
            "es_rejected_execution_exception",
            format!(
                "rejected execution of {what} on EsThreadPoolExecutor[name = cairn-test/write, queue capacity = 10000, \
                 task cancellation = injected by the cairn test server]"
            ),
        )
    }

    /// What a scroll id that is unknown or has expired gets.
    pub fn search_context_missing(id: &str) -> EsError {
        let cause = EsError::new(
            404,
            "search_context_missing_exception",
            format!("No search context found for id [{id}]"),
        );
        let mut err = EsError::new(404, "search_phase_execution_exception", "all shards failed")
            .with("phase", "query")
            .with("grouped", true)
            .with(
                "failed_shards",
                json!([{ "shard": -1, "index": null, "reason": cause.object() }]),
            );
        err.root_cause = Some(vec![cause.shallow()]);
        err.caused_by(cause)
    }

    /// Wraps a per-shard failure the way a search reports it.
    pub fn search_phase(cause: EsError, index: &str) -> EsError {
        let mut err = EsError::new(cause.status, "search_phase_execution_exception", "all shards failed")
            .with("phase", "query")
            .with("grouped", true)
            .with(
                "failed_shards",
                json!([{ "shard": 0, "index": index, "node": "cairn-test-node", "reason": cause.object() }]),
            );
        err.root_cause = Some(vec![cause.shallow()]);
        err.caused_by(cause)
    }

    pub fn security(status: u16, reason: String) -> EsError {
        EsError::new(status, "security_exception", reason).with(
            "header",
            json!({ "WWW-Authenticate": [super::http::WWW_AUTHENTICATE, "ApiKey"] }),
        )
    }

    pub fn repository_missing(repo: &str) -> EsError {
        EsError::new(
            404,
            "repository_missing_exception",
            format!("[{repo}] missing"),
        )
    }

    pub fn snapshot_missing(repo: &str, snap: &str) -> EsError {
        EsError::new(
            404,
            "snapshot_missing_exception",
            format!("[{repo}:{snap}] is missing"),
        )
    }

    /// The generic body used by injected faults, chosen by status.
    pub fn injected(status: u16, method: &str, path: &str) -> EsError {
        let kind = match status {
            400 => "illegal_argument_exception",
            401 | 403 => "security_exception",
            404 => "resource_not_found_exception",
            409 => "version_conflict_engine_exception",
            429 => "es_rejected_execution_exception",
            503 => "cluster_block_exception",
            _ => "exception",
        };
        EsError::new(
            status,
            kind,
            format!("fault injected by the cairn test server for [{method} {path}]"),
        )
    }
}
