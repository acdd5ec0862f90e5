//! [`Context`]: what a run gives a task, with serde-typed params.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::__private::types;
use crate::{Error, Result};

/// What a run gives a task: the job, the run, the params and, for a
/// restore, the snapshot.
#[derive(Clone, Debug)]
pub struct Context {
    job: String,
    run_id: String,
    params: String,
    snapshot: Option<String>,
}

impl Context {
    /// A context for job `job`, run `run_id`, with `params` (a JSON object).
    /// Runs build it for you; this is for unit tests of task logic.
    pub fn new(job: impl Into<String>, run_id: impl Into<String>, params: &Value) -> Self {
        Context {
            job: job.into(),
            run_id: run_id.into(),
            params: params.to_string(),
            snapshot: None,
        }
    }

    /// The same context restoring `snapshot`.
    #[must_use]
    pub fn with_snapshot(mut self, snapshot: impl Into<String>) -> Self {
        self.snapshot = Some(snapshot.into());
        self
    }

    pub(crate) fn from_wit(context: types::Context) -> Self {
        Context {
            job: context.job,
            run_id: context.run_id,
            params: context.params,
            snapshot: context.snapshot,
        }
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// This run's identifier.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// For a restore, the id of the snapshot being restored.
    pub fn snapshot(&self) -> Option<&str> {
        self.snapshot.as_deref()
    }

    /// The params deserialized into `P`, typically a
    /// `#[derive(Deserialize)]` struct; use `#[serde(default)]` for optional
    /// params and `#[serde(rename_all = "kebab-case")]` for `kebab-case` keys.
    ///
    /// # Errors
    ///
    /// [`Invalid`](crate::ErrorKind::Invalid), naming the problem (for
    /// example "invalid params: missing field `url`"), when the params do not
    /// fit `P`.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P> {
        from_params(self.params_value()?)
    }

    /// The params as a JSON value.
    ///
    /// # Errors
    ///
    /// [`Invalid`](crate::ErrorKind::Invalid) if the host sent text that is
    /// not JSON.
    pub fn params_value(&self) -> Result<Value> {
        serde_json::from_str(&self.params)
            .map_err(|e| Error::invalid(format!("params are not valid JSON: {e}")))
    }

    /// The params exactly as the host sent them: a JSON object as text.
    pub fn params_json(&self) -> &str {
        &self.params
    }
}

/// Deserialize `params` (for example those of
/// [`Function::call`](crate::Function::call)) into `P`.
///
/// # Errors
///
/// [`Invalid`](crate::ErrorKind::Invalid), naming the problem, when the
/// params do not fit `P`.
///
/// ```
/// use cairn_guest::{from_params, json, ErrorKind};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Params {
///     url: String,
/// }
///
/// let err = from_params::<Params>(json!({"uri": "x"})).err().unwrap();
/// assert_eq!(err.kind(), ErrorKind::Invalid);
/// assert_eq!(err.to_string(), "invalid params: missing field `url`");
/// ```
pub fn from_params<P: DeserializeOwned>(params: Value) -> Result<P> {
    serde_json::from_value(params).map_err(|e| Error::invalid(format!("invalid params: {e}")))
}
