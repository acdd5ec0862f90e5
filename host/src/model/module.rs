//! Modules: what a module exports, and where the module a job or step runs
//! comes from.

use std::fmt;
use std::path::{Path, PathBuf};

/// A sha256 digest of a module's bytes.
pub type Digest = [u8; 32];

/// What a module exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    /// Exports `cairn:plugin` world `task`.
    Task,
    /// Exports `cairn:plugin` world `function`.
    Function,
}

impl ModuleKind {
    /// `task` or `function`, for messages.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Function => "function",
        }
    }
}

impl fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a pipeline task (a task written in TOML) is defined.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PipelineRef {
    /// `[pipelines.NAME]` in the configuration: `task = "pipeline:NAME"`.
    Declared(String),
    /// A pipeline shipped in the binary: `task = "builtin:NAME"`.
    Builtin(String),
    /// A pipeline file of its own: `task = "ops/app.toml"` (absolute here).
    File(PathBuf),
}

impl PipelineRef {
    /// The pipeline's name: the declared or built-in name, or the file's stem.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::Declared(name) | Self::Builtin(name) => name.clone(),
            Self::File(path) => file_stem(path, "pipeline"),
        }
    }
}

impl fmt::Display for PipelineRef {
    /// As a job's `task` key writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Declared(name) => write!(f, "pipeline:{name}"),
            Self::Builtin(name) => write!(f, "builtin:{name}"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The module a job or pipeline step runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModuleRef {
    /// A module embedded in the binary, by its unique id (its directory
    /// under `tasks/`), optionally pinned.
    Builtin {
        /// The built-in's id.
        id: String,
        /// Required sha256 of its bytes, if pinned.
        sha256: Option<Digest>,
    },
    /// A `.wasm` component file (absolute), optionally pinned.
    File {
        /// The file.
        path: PathBuf,
        /// Required sha256 of its bytes, if pinned.
        sha256: Option<Digest>,
    },
    /// A pipeline task, which the host runs itself step by step.
    Pipeline(PipelineRef),
}

impl ModuleRef {
    /// An unpinned built-in.
    #[must_use]
    pub fn builtin(id: &str) -> Self {
        Self::Builtin {
            id: id.to_owned(),
            sha256: None,
        }
    }

    /// An unpinned file.
    #[must_use]
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File {
            path: path.into(),
            sha256: None,
        }
    }

    /// The pin, if any (pipelines have none).
    #[must_use]
    pub fn sha256(&self) -> Option<&Digest> {
        match self {
            Self::Builtin { sha256, .. } | Self::File { sha256, .. } => sha256.as_ref(),
            Self::Pipeline(_) => None,
        }
    }

    /// The pipeline, when this is one.
    #[must_use]
    pub fn pipeline(&self) -> Option<&PipelineRef> {
        match self {
            Self::Pipeline(p) => Some(p),
            _ => None,
        }
    }

    /// The `task:` tag of a job's snapshots: the built-in's id, or the
    /// module's or pipeline's name.
    #[must_use]
    pub fn tag(&self) -> String {
        match self {
            Self::Builtin { id, .. } => id.clone(),
            Self::File { path, .. } => file_stem(path, "module"),
            Self::Pipeline(p) => p.name(),
        }
    }
}

impl fmt::Display for ModuleRef {
    /// How messages, logs and the API name it: `builtin:NAME`, the file's
    /// path, or the pipeline as its job writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin { id, .. } => write!(f, "builtin:{id}"),
            Self::File { path, .. } => write!(f, "{}", path.display()),
            Self::Pipeline(p) => p.fmt(f),
        }
    }
}

fn file_stem(path: &Path, fallback: &str) -> String {
    path.file_stem()
        .map_or_else(|| fallback.to_owned(), |s| s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_tags_name_each_source_once() {
        let builtin = ModuleRef::builtin("directory");
        assert_eq!(builtin.to_string(), "builtin:directory");
        assert_eq!(builtin.tag(), "directory");
        let file = ModuleRef::file("/srv/plugins/es_dump.wasm");
        assert_eq!(file.to_string(), "/srv/plugins/es_dump.wasm");
        assert_eq!(file.tag(), "es_dump");
        let declared = ModuleRef::Pipeline(PipelineRef::Declared("app".into()));
        assert_eq!(declared.to_string(), "pipeline:app");
        assert_eq!(declared.tag(), "app");
        let shipped = ModuleRef::Pipeline(PipelineRef::Builtin("elasticsearch-datadir".into()));
        assert_eq!(shipped.to_string(), "builtin:elasticsearch-datadir");
        assert_eq!(shipped.tag(), "elasticsearch-datadir");
        let own = ModuleRef::Pipeline(PipelineRef::File("/etc/cairn/app.toml".into()));
        assert_eq!(own.to_string(), "/etc/cairn/app.toml");
        assert_eq!(own.tag(), "app");
    }
}
