//! The repository: where it is, how it is opened, and which snapshots a job keeps.

use std::path::PathBuf;

use super::secret::SecretSource;

/// `[repository]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySettings {
    /// Local directory of the repository (absolute).
    pub path: PathBuf,
    /// Where its password comes from; `None` when the config names none
    /// (opening the repository then fails, saying what to set).
    pub password: Option<SecretSource>,
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
