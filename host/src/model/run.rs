//! Runs: what a run does, where it is in its life, and what started it.

use serde::Serialize;

/// The job name `prune` runs are recorded under: a prune is of the whole
/// repository, not of one job (job names cannot start with `(`).
pub const REPOSITORY_JOB: &str = "(repository)";

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// A backup run.
    Backup,
    /// A restore run.
    Restore,
    /// Retention applied to a job's snapshots (`cairn forget`, or the daemon
    /// after a backup).
    Forget,
    /// Unused data removed from the repository (`--prune`, `[daemon] prune`).
    Prune,
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Recorded, waiting to start.
    Queued,
    /// Running now.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Not run (for example because another run of the job was still going).
    Skipped,
    /// Was running when the process died; found at start-up.
    Interrupted,
    /// Stopped on purpose (shutdown, cancel).
    Cancelled,
}

impl RunKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Backup, Self::Restore, Self::Forget, Self::Prune];

    /// The name stored in the database and shown to users (`backup`, `restore`,
    /// `forget`, `prune`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Restore => "restore",
            Self::Forget => "forget",
            Self::Prune => "prune",
        }
    }

    /// Whether a run of this kind runs the job's task (backup, restore), as
    /// opposed to repository maintenance (forget, prune).
    #[must_use]
    pub const fn runs_task(self) -> bool {
        matches!(self, Self::Backup | Self::Restore)
    }

    /// The kind named `name` (as returned by [`RunKind::as_str`]), if any.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl RunStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [Self; 7] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Skipped,
        Self::Interrupted,
        Self::Cancelled,
    ];

    /// The name stored in the database and shown to users (`running`, `failed` …).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Interrupted => "interrupted",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status named `name` (as returned by [`RunStatus::as_str`]), if any.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the run has ended (anything but `Queued` and `Running`).
    #[must_use]
    pub const fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// A command line (`cairn backup`, `cairn restore`).
    Cli,
    /// The daemon, on the job's schedule.
    Schedule,
    /// The daemon's HTTP API.
    Api,
}

impl Trigger {
    /// The name stored in the database and shown to users.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Schedule => "schedule",
            Self::Api => "api",
        }
    }

    /// The trigger named `name` (as returned by [`Trigger::as_str`]), if any.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Cli, Self::Schedule, Self::Api]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}
