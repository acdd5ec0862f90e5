//! `cairn copy`: snapshots from one repository to another (3-2-1: a local
//! repository and an off-site one), as restic's `copy` does.
//!
//! Only what the destination lacks is written: data and tree blobs it already
//! indexes are skipped (blob ids are content hashes, so this holds across
//! repositories with different keys), and a snapshot it already holds (same
//! time, tree, host, paths and tags) is not written again. Packs are re-encrypted
//! with the destination's key. Snapshot files are written last, after the packs
//! and index they need, so an interrupted copy leaves no snapshot pointing at
//! missing data. The copy keeps the snapshot's tags (job, task, run), so
//! `cairn snapshots` and `cairn restore` work on the destination as on the source;
//! its id there differs (restic's `copy` behaves the same).
//!
//! Locks: shared on both sides (a `prune` on either waits); the source may be
//! read-only (a warning, no lock), the destination may not.

use rustic_core::repofile::SnapshotFile;

use super::{JOB_TAG, RepoError, Repository, SnapshotInfo, failed, lock::LockMode, snapshot_info};

/// What [`Repository::copy_to`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    /// Snapshots written to the destination (as the source lists them).
    pub copied: Vec<SnapshotInfo>,
    /// Snapshots the destination already held: nothing written for them.
    pub present: Vec<SnapshotInfo>,
}

impl Repository {
    /// Copy snapshots to `dest`: those of `job` (every Cairn snapshot
    /// without one), or only `ids` when given (each a full id or a unique
    /// prefix of at least 4 hex digits, or `latest` with a job).
    ///
    /// # Errors
    ///
    /// [`RepoError::Failed`] when `dest` is this repository or a pack cannot
    /// be read or written; [`RepoError::NoSuchSnapshot`] /
    /// [`RepoError::AmbiguousSnapshot`] for an id; [`RepoError::Busy`] when a
    /// prune holds either repository longer than the lock timeout.
    pub fn copy_to(
        &self,
        dest: &Repository,
        job: Option<&str>,
        ids: &[String],
    ) -> Result<CopyReport, RepoError> {
        let what = format!(
            "copying snapshots from {} to {}",
            self.location(),
            dest.location()
        );
        if self.location().to_string() == dest.location().to_string() {
            return Err(RepoError::Failed {
                what,
                message: "the source and the destination are the same repository".into(),
            });
        }
        let _source_lock = self.lock(LockMode::Shared, true)?;
        let _dest_lock = dest.lock(LockMode::Shared, false)?;

        let (source, _) = self.rustic()?;
        let chosen: Vec<SnapshotFile> = if ids.is_empty() {
            self.snapshot_files(&source, job)?
        } else {
            let mut chosen = Vec::new();
            for id in ids {
                let sn = match job {
                    Some(job) => self.find_snapshot_file(&source, job, id)?,
                    None => self.find_any_snapshot_file(&source, id)?,
                };
                if !chosen.iter().any(|c: &SnapshotFile| c.id == sn.id) {
                    chosen.push(sn);
                }
            }
            chosen
        };

        let (target, _) = dest.rustic()?;
        let relevant = target
            .relevant_copy_snapshots(|sn| sn.tags.iter().any(|t| t.starts_with(JOB_TAG)), &chosen)
            .map_err(failed(what.clone()))?;
        let mut report = CopyReport::default();
        let mut to_copy = Vec::new();
        for c in relevant {
            if c.relevant {
                report.copied.push(snapshot_info(&c.sn));
                to_copy.push(c.sn);
            } else {
                report.present.push(snapshot_info(&c.sn));
            }
        }
        if to_copy.is_empty() {
            return Ok(report);
        }
        let source = source.to_indexed().map_err(failed(what.clone()))?;
        let target = target.to_indexed_ids().map_err(failed(what.clone()))?;
        source.copy(&target, to_copy.iter()).map_err(failed(what))?;
        Ok(report)
    }

    /// A Cairn snapshot of any job by id (full or unique prefix).
    fn find_any_snapshot_file(
        &self,
        repo: &super::Rustic,
        id: &str,
    ) -> Result<SnapshotFile, RepoError> {
        let not_found = || RepoError::NoSuchSnapshot {
            job: "any job".into(),
            id: id.to_owned(),
        };
        let id_lc = id.to_ascii_lowercase();
        if id_lc.len() < 4 || id_lc.len() > 64 || !id_lc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let mut matches: Vec<SnapshotFile> = self
            .snapshot_files(repo, None)?
            .into_iter()
            .filter(|s| s.id.to_hex().as_str().starts_with(&id_lc))
            .collect();
        match matches.len() {
            0 => Err(not_found()),
            1 => Ok(matches.remove(0)),
            _ => Err(RepoError::AmbiguousSnapshot {
                job: "any job".into(),
                id: id.to_owned(),
                candidates: matches.iter().map(|s| snapshot_info(s).short_id).collect(),
            }),
        }
    }
}
