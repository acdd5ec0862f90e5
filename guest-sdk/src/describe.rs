//! [`Description`]: what a module says about itself, built fluently.

use serde_json::Value;

use crate::__private::types;

/// What a module is, the params it takes and the capabilities it needs.
///
/// `cairn validate` checks the needs against the job's grants before anything
/// runs. A needs entry is a literal (`pg_dump`, `http://127.0.0.1:9200`) or a
/// reference to a param: `{url}` stands for the value of param `url` (each
/// string, if it is a list), `{command[0]}` for the first element of list
/// param `command`. For HTTP a URL is reduced to its origin.
///
/// ```
/// use cairn_guest::{json, Description, Param};
///
/// let description = Description::new("es-snapshot", "0.1.0")
///     .summary("Snapshots an Elasticsearch cluster")
///     .param(Param::required("url", "Cluster URL, e.g. http://127.0.0.1:9200"))
///     .param(Param::optional("batch", "Documents per scroll page", json!(100)))
///     .needs_http("{url}");
/// assert_eq!(description.name(), "es-snapshot");
/// ```
#[derive(Clone, Debug)]
pub struct Description {
    name: String,
    version: String,
    summary: String,
    params: Vec<Param>,
    http: Vec<String>,
    commands: Vec<String>,
    paths: Vec<String>,
    secrets: Vec<String>,
    functions: Vec<String>,
}

impl Description {
    /// A module called `name` (its short machine name) at semver `version`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Description {
            name: name.into(),
            version: version.into(),
            summary: String::new(),
            params: Vec::new(),
            http: Vec::new(),
            commands: Vec::new(),
            paths: Vec::new(),
            secrets: Vec::new(),
            functions: Vec::new(),
        }
    }

    /// The one-line summary shown by `cairn plugin list`.
    #[must_use]
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = summary.into();
        self
    }

    /// Declare a param.
    #[must_use]
    pub fn param(mut self, param: Param) -> Self {
        self.params.push(param);
        self
    }

    /// Declare an HTTP origin or URL the module requests (literal or `{param}`).
    #[must_use]
    pub fn needs_http(mut self, entry: impl Into<String>) -> Self {
        self.http.push(entry.into());
        self
    }

    /// Declare a program the module runs (literal or `{param}`).
    #[must_use]
    pub fn needs_command(mut self, entry: impl Into<String>) -> Self {
        self.commands.push(entry.into());
        self
    }

    /// Declare a file-system path the module reads or writes (literal or `{param}`).
    #[must_use]
    pub fn needs_path(mut self, entry: impl Into<String>) -> Self {
        self.paths.push(entry.into());
        self
    }

    /// Declare a secret the module injects or reads (literal or `{param}`).
    #[must_use]
    pub fn needs_secret(mut self, entry: impl Into<String>) -> Self {
        self.secrets.push(entry.into());
        self
    }

    /// Declare a function a task calls (literal or `{param}`).
    #[must_use]
    pub fn needs_function(mut self, entry: impl Into<String>) -> Self {
        self.functions.push(entry.into());
        self
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The module's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The declared params.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub(crate) fn into_wit(self) -> types::Description {
        types::Description {
            name: self.name,
            version: self.version,
            summary: self.summary,
            params: self.params.into_iter().map(Param::into_wit).collect(),
            needs: types::Needs {
                http: self.http,
                commands: self.commands,
                paths: self.paths,
                secrets: self.secrets,
                functions: self.functions,
            },
        }
    }
}

/// One param a module accepts, as declared in its [`Description`].
#[derive(Clone, Debug)]
pub struct Param {
    name: String,
    description: String,
    required: bool,
    default: Option<Value>,
}

impl Param {
    /// A param the job must set.
    pub fn required(name: impl Into<String>, description: impl Into<String>) -> Self {
        Param {
            name: name.into(),
            description: description.into(),
            required: true,
            default: None,
        }
    }

    /// A param the job may leave out; `default` (a JSON value, or `None`)
    /// documents the value used then.
    pub fn optional(
        name: impl Into<String>,
        description: impl Into<String>,
        default: impl Into<Option<Value>>,
    ) -> Self {
        Param {
            name: name.into(),
            description: description.into(),
            required: false,
            default: default.into(),
        }
    }

    /// The param's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the job must set it.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// The default value, if any.
    pub fn default_value(&self) -> Option<&Value> {
        self.default.as_ref()
    }

    fn into_wit(self) -> types::Param {
        types::Param {
            name: self.name,
            description: self.description,
            required: self.required,
            default: self.default.map(|v| v.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn description_converts_to_wit() {
        let d = Description::new("x", "0.1.0")
            .summary("s")
            .param(Param::required("url", "u"))
            .param(Param::optional("batch", "b", json!(100)))
            .param(Param::optional("ping-url", "p", None))
            .needs_http("{url}")
            .needs_command("pg_dump")
            .needs_path("{path}")
            .needs_secret("token")
            .needs_function("http-request")
            .into_wit();
        assert_eq!(d.params.len(), 3);
        assert_eq!(d.params[1].default.as_deref(), Some("100"));
        assert!(d.params[2].default.is_none());
        assert_eq!(d.needs.http, ["{url}"]);
        assert_eq!(d.needs.functions, ["http-request"]);
    }
}
