//! Grants: what a job's modules may reach. Everything not granted is denied.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::origin::OriginPattern;

/// Access granted to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read only.
    Read,
    /// Read and write.
    ReadWrite,
}

impl Access {
    /// Whether this grant covers `need`.
    #[must_use]
    pub fn covers(self, need: Self) -> bool {
        need == Self::Read || self == Self::ReadWrite
    }

    /// `read` or `read-write`, as the config writes it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::ReadWrite => "read-write",
        }
    }
}

/// A program granted to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedProgram {
    /// As written in the grant.
    pub name: String,
    /// Absolute path found at load time, or `None` if it is not installed.
    pub path: Option<PathBuf>,
}

/// A secret granted to a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretGrant {
    /// Whether the module may read the value itself (`secrets.get`); the
    /// host may inject every granted secret.
    pub readable: bool,
}

/// What a job may reach. Everything else is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// HTTP origins.
    pub http: Vec<OriginPattern>,
    /// Programs, by granted name.
    pub programs: BTreeMap<String, GrantedProgram>,
    /// Paths (absolute) and their access.
    pub paths: BTreeMap<PathBuf, Access>,
    /// Secrets, by name.
    pub secrets: BTreeMap<String, SecretGrant>,
    /// Functions a task may call.
    pub functions: BTreeSet<String>,
}

impl Grants {
    /// Whether the module may read secret `name` itself.
    #[must_use]
    pub fn may_read_secret(&self, name: &str) -> bool {
        self.secrets.get(name).is_some_and(|g| g.readable)
    }
}
