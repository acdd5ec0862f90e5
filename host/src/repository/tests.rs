//! Tests of the repository module, including compatibility with the `restic` binary.

use std::{
    collections::BTreeMap,
    io::Read,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result, bail, ensure};
use jiff::Timestamp;

use super::*;

const PW: &str = "test password";

/// The local repository at `path`.
fn local(path: impl AsRef<Path>) -> Location {
    Location::Local(path.as_ref().to_path_buf())
}

/// Pseudo-random bytes (xorshift), `len` of them, handed out in uneven short reads
/// like a pipe does.
struct Generator {
    state: u64,
    left: u64,
    calls: u64,
}

impl Generator {
    fn new(seed: u64, len: u64) -> Self {
        Self {
            state: seed | 1,
            left: len,
            calls: 0,
        }
    }

    fn bytes(seed: u64, len: u64) -> Vec<u8> {
        let mut v = Vec::new();
        Self::new(seed, len).read_to_end(&mut v).unwrap();
        v
    }
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        // short reads: between 1 and 64 KiB, never the whole buffer
        let short = 1 + (self.calls * 7919 % 65536) as usize;
        let n = buf.len().min(short).min(self.left as usize);
        for b in &mut buf[..n] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = (self.state >> 24) as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Yields `ok_bytes` bytes, then fails.
struct Failing {
    ok_bytes: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ok_bytes == 0 {
            return Err(std::io::Error::other("simulated pg_dump crash"));
        }
        let n = buf.len().min(self.ok_bytes);
        buf[..n].fill(7);
        self.ok_bytes -= n;
        Ok(n)
    }
}

fn meta(job: &str, run: &str) -> SnapshotMeta {
    SnapshotMeta {
        job: job.into(),
        task: "dump".into(),
        run_id: run.into(),
        hostname: "test-host".into(),
    }
}

fn new_repo() -> Result<(tempfile::TempDir, Repository)> {
    let dir = tempfile::tempdir()?;
    let repo = Repository::init(&local(dir.path().join("repo")), PW)?;
    Ok((dir, repo))
}

fn set_mtime(path: &Path, secs: u64) -> Result<()> {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(123_456_789);
    std::fs::File::open(path)?.set_modified(t)?;
    Ok(())
}

/// A small tree: 0755 file, 0640 file with an old mtime, symlink, empty dir, nested dirs.
fn make_tree(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root.join("a/b"))?;
    std::fs::create_dir(root.join("empty"))?;
    std::fs::write(root.join("run.sh"), "#!/bin/sh\necho hello\n")?;
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(root.join("secret.txt"), "top secret\n")?;
    std::fs::set_permissions(
        root.join("secret.txt"),
        std::fs::Permissions::from_mode(0o640),
    )?;
    set_mtime(&root.join("secret.txt"), 981_173_106)?; // 2001-02-03
    std::os::unix::fs::symlink("secret.txt", root.join("link"))?;
    std::fs::write(root.join("a/b/deep.bin"), Generator::bytes(3, 200_000))?;
    std::fs::write(root.join("a/top.txt"), "")?;
    set_mtime(&root.join("a/b"), 1_000_000_000)?;
    set_mtime(&root.join("empty"), 1_100_000_000)?;
    Ok(())
}

/// Everything below `root` that a restore must reproduce, keyed by relative path.
fn describe(root: &Path) -> Result<BTreeMap<PathBuf, String>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root)?.to_path_buf();
            let m = std::fs::symlink_metadata(&path)?;
            let desc = if m.file_type().is_symlink() {
                format!("symlink -> {}", std::fs::read_link(&path)?.display())
            } else if m.is_dir() {
                walk(root, &path, out)?;
                format!(
                    "dir {:o} mtime {}.{}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    m.mtime_nsec()
                )
            } else {
                let data = std::fs::read(&path)?;
                format!(
                    "file {:o} mtime {}.{} len {} hash {:x}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    m.mtime_nsec(),
                    data.len(),
                    data.iter()
                        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)))
                )
            };
            out.insert(rel, desc);
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            total += if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}

/// Every file below `path` with its size (to prove nothing was written).
fn listing(path: &Path) -> Vec<(PathBuf, u64)> {
    fn walk(p: &Path, out: &mut Vec<(PathBuf, u64)>) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                let m = e.metadata().unwrap();
                out.push((e.path(), if m.is_dir() { 0 } else { m.len() }));
                if m.is_dir() {
                    walk(&e.path(), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(path, &mut out);
    out.sort();
    out
}

/// One session with a stream and a tree artifact, committed.
fn backup_fixture(repo: &Repository, tree: &Path, run: &str) -> Result<(SnapshotInfo, Vec<u8>)> {
    let stream = Generator::bytes(42, 3 << 20);
    let mut s = repo.begin_backup(meta("app", run))?;
    let info = s.add_stream("db.dump", Box::new(Generator::new(42, 3 << 20)))?;
    assert_eq!(info.size, stream.len() as u64);
    let info = s.add_tree("files", tree)?;
    assert_eq!(info.kind, ArtifactKind::Tree);
    s.set_note("es.snapshot", "snap-1");
    s.set_note("order", "db,files");
    Ok((s.commit()?, stream))
}

#[test]
fn init_open_and_their_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("repo");

    let err = Repository::open(&local(&path), PW).unwrap_err();
    assert!(matches!(err, RepoError::NotInitialised { .. }), "{err}");
    assert!(err.to_string().contains("cairn init"), "{err}");
    assert!(!path.exists(), "open must not create the repository");

    let repo = Repository::init(&local(&path), PW)?;
    assert_eq!(repo.local_path().unwrap(), path);
    assert!(path.join("config").is_file());
    let err = Repository::init(&local(&path), PW).unwrap_err();
    assert!(matches!(err, RepoError::AlreadyInitialised { .. }), "{err}");

    let before = listing(dir.path());
    let err = Repository::open(&local(&path), "wrong").unwrap_err();
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err}");
    assert_eq!(
        listing(dir.path()),
        before,
        "a wrong password must write nothing"
    );

    Repository::open(&local(&path), PW)?;
    let (_, created) = Repository::open_or_init(&local(&path), PW)?;
    assert!(!created);

    // an empty existing directory can be initialised; a non-empty one cannot
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty)?;
    let (_, created) = Repository::open_or_init(&local(&empty), PW)?;
    assert!(created);
    let full = dir.path().join("full");
    std::fs::create_dir(&full)?;
    std::fs::write(full.join("x"), "x")?;
    let err = Repository::init(&local(&full), PW).unwrap_err();
    assert!(matches!(err, RepoError::NotEmpty { .. }), "{err}");
    let err = Repository::open_or_init(&local(&full), PW).unwrap_err();
    assert!(matches!(err, RepoError::NotInitialised { .. }), "{err}");
    Ok(())
}

/// `init` leaves one key file in restic's format, with restic's scrypt cost (not
/// rustic's 128 MiB), that opens with the password and only with it.
#[test]
fn init_writes_one_key_file_with_restic_scrypt_cost() -> Result<()> {
    use sha2::Digest as _;
    let (dir, repo) = new_repo()?;
    let keys: Vec<PathBuf> = std::fs::read_dir(repo.local_path().unwrap().join("keys"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    let [key] = keys.as_slice() else {
        bail!("expected one key file, found {keys:?}");
    };
    let bytes = std::fs::read(key)?;
    assert_eq!(
        key.file_name().and_then(|n| n.to_str()),
        Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str()),
        "a key file is named by the SHA-256 of its bytes"
    );
    let file: rustic_core::repofile::KeyFile = serde_json::from_slice(&bytes)?;
    assert_eq!(
        (file.kdf.as_str(), file.n, file.r, file.p),
        ("scrypt", 1 << 15, 8, 1)
    );
    assert_eq!(file.salt.len(), 64);
    assert!(
        file.created.is_some() && file.hostname.is_some(),
        "as restic, a key records where and when it was made"
    );
    assert!(file.key_from_password(&PW).is_ok());
    assert!(file.key_from_password(&"wrong").is_err());
    // the master key is the one the repository's files are encrypted with
    let reopened = Repository::open(&local(repo.local_path().unwrap()), PW)?;
    let tree = dir.path().join("tree");
    make_tree(&tree)?;
    let (info, _) = backup_fixture(&reopened, &tree, "r1")?;
    let listed = Repository::open(&local(repo.local_path().unwrap()), PW)?.snapshots(None)?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, info.id);
    Ok(())
}

#[test]
fn one_session_commits_one_snapshot_that_restores_identically() -> Result<()> {
    let (dir, repo) = new_repo()?;
    let tree = dir.path().join("src");
    make_tree(&tree)?;
    let (snap, stream) = backup_fixture(&repo, &tree, "r1")?;

    let all = repo.snapshots(None)?;
    assert_eq!(all.len(), 1);
    let s = &all[0];
    assert_eq!(s.id, snap.id);
    assert_eq!(s.id.len(), 64);
    assert_eq!(
        (s.job.as_str(), s.task.as_str(), s.run_id.as_str()),
        ("app", "dump", "r1")
    );
    assert_eq!(s.tags, vec!["job:app", "run:r1", "task:dump"]);
    assert_eq!(s.paths, vec!["db.dump", "files"]);
    assert_eq!(s.hostname, "test-host");

    let r = repo.open_restore(s)?;
    let arts = r.artifacts()?;
    assert_eq!(arts.len(), 2);
    assert_eq!(
        arts[0],
        ArtifactInfo {
            name: "db.dump".into(),
            kind: ArtifactKind::Stream,
            size: stream.len() as u64
        }
    );
    assert_eq!(arts[1].name, "files");
    assert_eq!(arts[1].size, 200_000 + 11 + 21);
    assert_eq!(
        r.notes()?.get("es.snapshot").map(String::as_str),
        Some("snap-1")
    );

    let mut got = Vec::new();
    r.open_stream("db.dump")?.read_to_end(&mut got)?;
    assert!(
        got == stream,
        "stream differs: {} vs {} bytes",
        got.len(),
        stream.len()
    );

    let target = dir.path().join("restored");
    let info = r.restore_tree("files", &target)?;
    assert_eq!(info.info.name, "files");
    assert!(info.is_dir);
    assert_eq!(describe(&target)?, describe(&tree)?);

    assert!(matches!(
        r.open_stream("files"),
        Err(RepoError::WrongKind { .. })
    ));
    assert!(matches!(
        r.restore_tree("db.dump", &target),
        Err(RepoError::WrongKind { .. })
    ));
    assert!(matches!(
        r.open_stream("nope"),
        Err(RepoError::NoSuchArtifact { .. })
    ));
    assert!(matches!(
        r.open_stream(".cairn"),
        Err(RepoError::NoSuchArtifact { .. })
    ));
    Ok(())
}

#[test]
fn names_are_validated_and_unique() -> Result<()> {
    let (_dir, repo) = new_repo()?;
    let mut s = repo.begin_backup(meta("app", "r1"))?;
    for bad in ["", ".cairn", "a/b", "sp ace", "é"] {
        let err = s.add_stream(bad, Box::new(std::io::empty())).unwrap_err();
        assert!(matches!(err, RepoError::InvalidName { .. }), "{bad}: {err}");
    }
    s.add_stream("x", Box::new(std::io::empty()))?;
    let err = s.add_stream("x", Box::new(std::io::empty())).unwrap_err();
    assert!(matches!(err, RepoError::ArtifactExists { .. }), "{err}");
    let snap = s.commit()?;
    let r = repo.open_restore(&snap)?;
    assert_eq!(
        r.artifacts()?,
        vec![ArtifactInfo {
            name: "x".into(),
            kind: ArtifactKind::Stream,
            size: 0
        }]
    );
    let mut got = Vec::new();
    r.open_stream("x")?.read_to_end(&mut got)?;
    assert!(got.is_empty());
    Ok(())
}

#[test]
fn empty_session_commits_an_empty_snapshot() -> Result<()> {
    let (_dir, repo) = new_repo()?;
    let snap = repo.begin_backup(meta("app", "r1"))?.commit()?;
    assert!(snap.paths.is_empty());
    assert!(repo.open_restore(&snap)?.artifacts()?.is_empty());
    assert!(repo.check(false)?.is_ok());
    Ok(())
}

#[test]
fn failing_reader_fails_the_session_and_leaves_no_snapshot() -> Result<()> {
    let (_dir, repo) = new_repo()?;
    let mut s = repo.begin_backup(meta("app", "r1"))?;
    s.add_stream("ok", Box::new(Generator::new(1, 100_000)))?;
    let err = s
        .add_stream("db.dump", Box::new(Failing { ok_bytes: 1 << 20 }))
        .unwrap_err();
    assert!(err.to_string().contains("simulated pg_dump crash"), "{err}");
    let err = s.commit().unwrap_err();
    assert!(err.to_string().contains("nothing was committed"), "{err}");
    assert!(repo.snapshots(None)?.is_empty());
    let report = repo.check(true)?;
    assert!(report.is_ok(), "{report:?}");
    Ok(())
}

#[test]
fn unreadable_file_in_tree_fails_the_artifact() -> Result<()> {
    let (dir, repo) = new_repo()?;
    let mut s = repo.begin_backup(meta("app", "r1"))?;
    // reading /proc/self/mem at offset 0 fails with EIO, even for root
    let err = s.add_tree("mem", Path::new("/proc/self/mem")).unwrap_err();
    assert!(err.to_string().contains("read error"), "{err}");
    if unsafe { libc::geteuid() } != 0 {
        let tree = dir.path().join("src");
        std::fs::create_dir(&tree)?;
        std::fs::write(tree.join("locked"), "x")?;
        std::fs::set_permissions(tree.join("locked"), std::fs::Permissions::from_mode(0o000))?;
        let err = s.add_tree("files", &tree).unwrap_err();
        assert!(err.to_string().contains("locked"), "{err}");
    }
    assert!(s.commit().is_err());
    assert!(repo.snapshots(None)?.is_empty());
    Ok(())
}

#[test]
fn aborted_and_dropped_sessions_leave_no_snapshot() -> Result<()> {
    let (_dir, repo) = new_repo()?;
    let mut s = repo.begin_backup(meta("app", "r1"))?;
    s.add_stream("db.dump", Box::new(Generator::new(1, 1 << 20)))?;
    s.abort();
    let mut s = repo.begin_backup(meta("app", "r2"))?;
    s.add_stream("db.dump", Box::new(Generator::new(2, 1 << 20)))?;
    drop(s);
    assert!(repo.snapshots(None)?.is_empty());
    let report = repo.check(true)?;
    assert!(report.is_ok(), "{report:?}");
    // the packs left behind are garbage for prune
    let pruned = repo.prune()?;
    assert!(pruned.packs_removed > 0, "{pruned:?}");
    assert!(repo.check(true)?.is_ok());
    Ok(())
}

#[test]
fn find_snapshot_by_id_prefix_and_latest_within_the_job() -> Result<()> {
    let (_dir, repo) = new_repo()?;
    let mut ids = Vec::new();
    for run in ["r1", "r2"] {
        let mut s = repo.begin_backup(meta("app", run))?;
        s.add_stream("db.dump", Box::new(Generator::new(1, 1000)))?;
        ids.push(s.commit()?);
    }
    let other = repo.begin_backup(meta("other", "r3"))?.commit()?;

    assert_eq!(repo.find_snapshot("app", &ids[0].id)?.id, ids[0].id);
    assert_eq!(repo.find_snapshot("app", &ids[0].id[..8])?.id, ids[0].id);
    assert_eq!(
        repo.find_snapshot("app", &ids[1].short_id.to_uppercase())?
            .id,
        ids[1].id
    );
    assert_eq!(repo.find_snapshot("app", "latest")?.run_id, "r2");
    assert_eq!(repo.find_snapshot("other", "latest")?.id, other.id);
    for (job, id) in [
        ("app", other.id.as_str()),
        ("app", "zzzz"),
        ("app", "ab"),
        ("none", "latest"),
    ] {
        let err = repo.find_snapshot(job, id).unwrap_err();
        assert!(
            matches!(err, RepoError::NoSuchSnapshot { .. }),
            "{job} {id}: {err}"
        );
    }
    assert_eq!(repo.snapshots(Some("app"))?.len(), 2);
    assert_eq!(repo.snapshots(None)?.len(), 3);
    let times: Vec<i64> = repo.snapshots(None)?.iter().map(|s| s.time_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    Ok(())
}

#[test]
fn unchanged_50_mib_stream_adds_little_the_second_time() -> Result<()> {
    let (dir, repo) = new_repo()?;
    let repo_dir = dir.path().join("repo");
    let size = 50 << 20;
    let mut s = repo.begin_backup(meta("app", "r1"))?;
    assert_eq!(
        s.add_stream("big", Box::new(Generator::new(9, size)))?.size,
        size
    );
    s.commit()?;
    let first = dir_size(&repo_dir);
    assert!(
        first > size * 9 / 10,
        "random data does not compress: {first}"
    );
    let mut s = repo.begin_backup(meta("app", "r2"))?;
    s.add_stream("big", Box::new(Generator::new(9, size)))?;
    let snap = s.commit()?;
    let added = dir_size(&repo_dir) - first;
    eprintln!("second backup of 50 MiB added {added} bytes");
    assert!(added < 1 << 20, "second backup added {added} bytes");
    let mut got = Vec::new();
    repo.open_restore(&snap)?
        .open_stream("big")?
        .read_to_end(&mut got)?;
    assert!(got == Generator::bytes(9, size));
    Ok(())
}

#[test]
fn forget_applies_rules_per_job_and_keeps_the_newest() -> Result<()> {
    let (_dir, repo) = new_repo()?;
    for run in ["r1", "r2", "r3"] {
        repo.begin_backup(meta("app", run))?.commit()?;
    }
    repo.begin_backup(meta("other", "o1"))?.commit()?;

    let all = Retention::default();
    assert!(all.is_empty());
    let report = repo.forget("app", &all, false)?;
    assert_eq!((report.kept.len(), report.removed.len()), (3, 0));

    let zero = Retention {
        keep_last: Some(0),
        ..Retention::default()
    };
    let report = repo.forget("app", &zero, true)?;
    assert!(report.dry_run);
    assert_eq!(
        report
            .kept
            .iter()
            .map(|s| s.run_id.as_str())
            .collect::<Vec<_>>(),
        ["r3"]
    );
    assert_eq!(report.removed.len(), 2);
    assert_eq!(
        repo.snapshots(Some("app"))?.len(),
        3,
        "dry run removes nothing"
    );

    let two = Retention {
        keep_last: Some(2),
        ..Retention::default()
    };
    let report = repo.forget("app", &two, false)?;
    assert_eq!(
        report
            .removed
            .iter()
            .map(|s| s.run_id.as_str())
            .collect::<Vec<_>>(),
        ["r1"]
    );
    let left: Vec<String> = repo
        .snapshots(None)?
        .into_iter()
        .map(|s| s.run_id)
        .collect();
    assert_eq!(left, ["r2", "r3", "o1"]);
    Ok(())
}

#[test]
fn retention_table() {
    let t = |s: &str| -> Timestamp { s.parse().unwrap() };
    // newest last; indices refer to this order
    let times = [
        t("2023-06-15T10:00:00Z"), // 0
        t("2024-01-01T00:30:00Z"), // 1
        t("2024-02-10T09:00:00Z"), // 2
        t("2024-03-04T08:00:00Z"), // 3  Monday, ISO week 10
        t("2024-03-06T08:00:00Z"), // 4  Wednesday, week 10
        t("2024-03-11T08:00:00Z"), // 5  Monday, week 11
        t("2024-03-11T09:10:00Z"), // 6
        t("2024-03-11T09:40:00Z"), // 7
        t("2024-03-11T10:05:00Z"), // 8
    ];
    let r = |f: fn(&mut Retention)| {
        let mut k = Retention::default();
        f(&mut k);
        k
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Retention, Vec<usize>)> = vec![
        ("empty keeps all", Retention::default(), (0..9).collect()),
        ("last 3", r(|k| k.keep_last = Some(3)), vec![6, 7, 8]),
        ("last 0", r(|k| k.keep_last = Some(0)), vec![]),
        ("last 100", r(|k| k.keep_last = Some(100)), (0..9).collect()),
        // newest of each of the last 3 hours that have snapshots: 10h, 09h (09:40), 08h
        ("hourly 3", r(|k| k.keep_hourly = Some(3)), vec![5, 7, 8]),
        ("daily 2", r(|k| k.keep_daily = Some(2)), vec![4, 8]),
        ("weekly 2", r(|k| k.keep_weekly = Some(2)), vec![4, 8]),
        ("monthly 3", r(|k| k.keep_monthly = Some(3)), vec![1, 2, 8]),
        ("yearly 5", r(|k| k.keep_yearly = Some(5)), vec![0, 8]),
        ("last 1 + daily 3", r(|k| { k.keep_last = Some(1); k.keep_daily = Some(3) }), vec![3, 4, 8]),
        ("monthly 1 + yearly 2", r(|k| { k.keep_monthly = Some(1); k.keep_yearly = Some(2) }), vec![0, 8]),
    ];
    for (name, keep, want) in cases {
        let got: Vec<usize> = apply_retention(&times, &keep)
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(got, want, "case `{name}`");
        // input order does not matter
        let mut rev = times.to_vec();
        rev.reverse();
        let got_rev: Vec<usize> = apply_retention(&rev, &keep)
            .into_iter()
            .map(|(i, _)| 8 - i)
            .rev()
            .collect();
        assert_eq!(got_rev, want, "case `{name}` reversed");
    }
    let reasons = apply_retention(
        &times,
        &r(|k| {
            k.keep_last = Some(1);
            k.keep_daily = Some(1)
        }),
    );
    assert_eq!(reasons, vec![(8, vec!["last", "daily"])]);
    // rustic's addition to restic: the oldest snapshot opens a period of its own
    let two_same_day = [t("2024-03-11T08:00:00Z"), t("2024-03-11T09:00:00Z")];
    let got: Vec<usize> = apply_retention(&two_same_day, &r(|k| k.keep_daily = Some(5)))
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(got, vec![0, 1]);
}

#[test]
fn prune_after_forget_then_check_is_ok() -> Result<()> {
    let (dir, repo) = new_repo()?;
    for (seed, run) in [(1, "r1"), (2, "r2")] {
        let mut s = repo.begin_backup(meta("app", run))?;
        s.add_stream("db.dump", Box::new(Generator::new(seed, 4 << 20)))?;
        s.commit()?;
    }
    let before = dir_size(&dir.path().join("repo"));
    let report = repo.forget(
        "app",
        &Retention {
            keep_last: Some(1),
            ..Retention::default()
        },
        false,
    )?;
    assert_eq!(report.removed.len(), 1);
    let pruned = repo.prune()?;
    let after = dir_size(&dir.path().join("repo"));
    eprintln!("prune: {pruned:?}, repo {before} -> {after} bytes");
    assert!(
        after < before - (3 << 20),
        "prune freed too little: {before} -> {after}"
    );
    assert!(pruned.packs_removed > 0);
    let report = repo.check(true)?;
    assert!(report.is_ok(), "{report:?}");
    let latest = repo.find_snapshot("app", "latest")?;
    let mut got = Vec::new();
    repo.open_restore(&latest)?
        .open_stream("db.dump")?
        .read_to_end(&mut got)?;
    assert!(got == Generator::bytes(2, 4 << 20));
    Ok(())
}

#[test]
fn prune_waits_for_an_open_backup_session() -> Result<()> {
    let (_dir, repo) = new_repo()?;
    let repo = repo.with_lock_timeout(Duration::from_millis(300));
    let locks = |repo: &Repository| lock::list_locks(repo.inner.store.as_ref(), &repo.inner.key);
    let s = repo.begin_backup(meta("app", "r1"))?;
    assert_eq!(
        locks(&repo)?.len(),
        1,
        "the session holds a lock file in locks/"
    );
    // a second backup and a check share the lock
    let s2 = repo.begin_backup(meta("app", "r2"))?;
    repo.check(false)?;
    let start = std::time::Instant::now();
    let err = repo.prune().unwrap_err();
    assert!(matches!(err, RepoError::Busy { .. }), "{err}");
    assert!(
        err.to_string().contains("busy") && err.to_string().contains(&crate::sys::hostname()),
        "the message names the holder: {err}"
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(matches!(
        repo.forget("app", &Retention::default(), true),
        Err(RepoError::Busy { .. })
    ));
    s.commit()?;
    assert!(matches!(repo.prune(), Err(RepoError::Busy { .. })));
    drop(s2);
    assert!(locks(&repo)?.is_empty(), "released locks are removed");
    repo.prune()?;
    // and a backup waits for prune: the exclusive lock of another process
    let held = lock::RepoLock::acquire(
        &repo.inner.store,
        &repo.inner.key,
        lock::LockMode::Exclusive,
        Duration::ZERO,
        false,
    )?;
    assert!(matches!(
        repo.begin_backup(meta("app", "r3")),
        Err(RepoError::Busy { .. })
    ));
    drop(held);
    repo.begin_backup(meta("app", "r3"))?.commit()?;
    Ok(())
}

#[test]
fn stale_locks_are_ignored_and_live_foreign_ones_honoured() -> Result<()> {
    let (_dir, repo) = new_repo()?;
    let repo = repo.with_lock_timeout(Duration::from_millis(300));
    let store = repo.inner.store.clone();
    let key = repo.inner.key.clone();
    // A lock left by a killed process on this host, and one 31 minutes old
    // from another host: both stale.
    let mut dead = lock::LockInfo {
        time: Timestamp::now().to_string(),
        exclusive: true,
        hostname: crate::sys::hostname(),
        username: "root".into(),
        pid: i64::from(i32::MAX - 11),
        uid: Some(0),
        gid: Some(0),
    };
    lock::write_foreign_lock(store.as_ref(), &key, &dead)?;
    dead.hostname = "elsewhere.example".into();
    dead.time = (Timestamp::now() - jiff::SignedDuration::from_secs(31 * 60)).to_string();
    lock::write_foreign_lock(store.as_ref(), &key, &dead)?;
    repo.prune()?;
    // A fresh exclusive lock of another host keeps a backup out.
    dead.time = Timestamp::now().to_string();
    let live = lock::write_foreign_lock(store.as_ref(), &key, &dead)?;
    let err = repo.begin_backup(meta("app", "r1")).unwrap_err();
    assert!(
        err.to_string()
            .contains("an exclusive lock by root@elsewhere.example"),
        "{err}"
    );
    store
        .remove(&live)
        .map_err(|e| anyhow::anyhow!(e.message))?;
    repo.begin_backup(meta("app", "r1"))?.commit()?;
    Ok(())
}

fn restic(repo: &Path, args: &[&str]) -> Result<Option<std::process::Output>> {
    let out = match Command::new("restic")
        .arg("--no-cache")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", PW)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("`restic` is not on PATH: install Debian's restic (`apt-get install restic`)")
        }
        Err(e) => return Err(e.into()),
    };
    if !out.status.success() {
        bail!(
            "restic {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Some(out))
}

#[test]
fn restic_reads_what_cairn_writes() -> Result<()> {
    let (dir, repo) = new_repo()?;
    let repo_dir = dir.path().join("repo");
    ensure!(
        Command::new("restic").arg("version").output().is_ok(),
        "`restic` is not on PATH: install Debian's restic (`apt-get install restic`; .ci/run does)"
    );
    let tree = dir.path().join("src");
    make_tree(&tree)?;
    let (snap, stream) = backup_fixture(&repo, &tree, "r1")?;

    let out = restic(&repo_dir, &["snapshots", "--json"])?.context("restic")?;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let list = list.as_array().context("array")?;
    ensure!(list.len() == 1, "restic lists {list:?}");
    assert_eq!(list[0]["id"], snap.id.as_str());
    assert_eq!(
        list[0]["tags"],
        serde_json::json!(["job:app", "run:r1", "task:dump"])
    );
    assert_eq!(list[0]["paths"], serde_json::json!(["db.dump", "files"]));
    assert_eq!(list[0]["hostname"], "test-host");

    restic(&repo_dir, &["check", "--read-data"])?;

    let out = restic(&repo_dir, &["dump", &snap.id, "/db.dump"])?.context("restic")?;
    assert!(out.stdout == stream, "restic dump differs");

    let target = dir.path().join("restic-restore");
    restic(
        &repo_dir,
        &[
            "restore",
            &snap.id,
            "--target",
            target.to_str().context("utf8")?,
        ],
    )?;
    assert_eq!(describe(&target.join("files"))?, describe(&tree)?);
    let restored = std::fs::read(target.join("db.dump"))?;
    assert!(
        restored == stream,
        "restic restore of the stream: {} of {} bytes",
        restored.len(),
        stream.len()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join(".cairn/manifest.json"))?)?;
    assert_eq!(manifest["notes"]["order"], "db,files");
    Ok(())
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Repository>();
    send_sync::<BackupSession>();
    send_sync::<RestoreSession>();
    send_sync::<SnapshotInfo>();
    send_sync::<RepoError>();
}

/// Flip one byte of blob `inner_path`'s data (its first blob) in the pack
/// holding it; return the pack's id.
fn damage_first_blob(repo: &Repository, snap: &SnapshotInfo, inner_path: &str) -> Result<String> {
    let r = repo.open_restore(snap)?;
    let node = r
        .repo
        .node_from_snapshot_and_path(&r.snap, inner_path)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = node.content.as_ref().context("file without content")?[0];
    let entry = r
        .repo
        .get_index_entry(&id)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pack = entry.pack.to_hex().as_str().to_owned();
    let root = repo.local_path().context("local repository")?;
    let file = root.join("data").join(&pack[..2]).join(&pack);
    let mut bytes = std::fs::read(&file)?;
    let at = entry.location.offset as usize + 20;
    bytes[at] ^= 0x55;
    // pack files are written read-only, as restic does
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
    std::fs::write(&file, bytes)?;
    Ok(pack)
}

/// Paths of every file below `root` whose name says it is a partial restore.
fn partial_files(root: &Path) -> Vec<PathBuf> {
    listing(root)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.to_string_lossy().contains("cairn-partial"))
        .collect()
}

#[test]
fn a_damaged_pack_fails_the_restore_naming_it_and_skip_damaged_restores_the_rest() -> Result<()> {
    let (dir, repo) = new_repo()?;
    let tree = dir.path().join("src");
    std::fs::create_dir_all(tree.join("sub"))?;
    std::fs::write(tree.join("good.txt"), "intact\n")?;
    std::fs::write(tree.join("sub/also-good.txt"), "also intact\n")?;
    std::fs::write(tree.join("bad.bin"), Generator::bytes(9, 300_000))?;
    let mut s = repo.begin_backup(meta("app", "r1"))?;
    s.add_tree("files", &tree)?;
    s.add_stream("dump", Box::new(Generator::new(9, 300_000)))?;
    let snap = s.commit()?;
    let pack = damage_first_blob(&repo, &snap, "files/bad.bin")?;

    // Without --skip-damaged: an error naming the file and the pack, and no
    // partial file left looking complete.
    let target = dir.path().join("restore-1");
    let err = repo
        .open_restore(&snap)?
        .restore_tree("files", &target)
        .expect_err("a damaged pack must fail the restore");
    let message = err.to_string();
    for expected in [
        "bad.bin",
        pack.as_str(),
        "--skip-damaged",
        "cairn check --read-data",
    ] {
        assert!(
            message.contains(expected),
            "`{expected}` missing from: {message}"
        );
    }
    assert!(!target.join("bad.bin").exists());
    assert_eq!(partial_files(&target), Vec::<PathBuf>::new());

    // The same data read as a stream (same content, same blob): the reader's
    // error names the pack too.
    let mut out = Vec::new();
    let err = repo
        .open_restore(&snap)?
        .open_stream("dump")?
        .read_to_end(&mut out)
        .expect_err("the stream shares the damaged blob");
    assert!(err.to_string().contains(&pack), "{err}");

    // With --skip-damaged: what is intact comes back, the damaged file is
    // listed and absent.
    let target = dir.path().join("restore-2");
    let restored = repo
        .open_restore(&snap)?
        .skip_damaged(true)
        .restore_tree("files", &target)?;
    assert_eq!(restored.damaged.len(), 1, "{:?}", restored.damaged);
    assert!(restored.damaged[0].contains("bad.bin"));
    assert_eq!(
        std::fs::read_to_string(target.join("good.txt"))?,
        "intact\n"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("sub/also-good.txt"))?,
        "also intact\n"
    );
    assert!(!target.join("bad.bin").exists());
    assert_eq!(partial_files(&target), Vec::<PathBuf>::new());

    // check: the structure is fine, reading the data is not, and says which pack.
    assert!(repo.check(false)?.is_ok());
    let report = repo.check(true)?;
    assert!(!report.is_ok());
    assert!(
        report.errors.iter().any(|e| e.contains(&pack[..8])),
        "no error names pack {pack}: {:?}",
        report.errors
    );
    let report = repo.check_data(Some("100%"))?;
    assert!(!report.is_ok());
    assert!(matches!(
        repo.check_data(Some("lots")),
        Err(RepoError::Failed { .. })
    ));
    Ok(())
}

#[test]
fn a_missing_index_file_fails_check() -> Result<()> {
    let (dir, repo) = new_repo()?;
    let tree = dir.path().join("src");
    make_tree(&tree)?;
    backup_fixture(&repo, &tree, "r1")?;
    assert!(repo.check(false)?.is_ok());
    let index = repo.local_path().context("local")?.join("index");
    let files: Vec<_> = std::fs::read_dir(&index)?.collect::<Result<_, _>>()?;
    ensure!(!files.is_empty(), "no index file written");
    for f in files {
        std::fs::remove_file(f.path())?;
    }
    let report = repo.check(false)?;
    assert!(!report.is_ok(), "check passed without an index: {report:?}");
    Ok(())
}

#[test]
fn copy_writes_only_what_the_destination_lacks_and_keeps_job_tags() -> Result<()> {
    let (dir, source) = new_repo()?;
    let dest = Repository::init(&local(dir.path().join("offsite")), PW)?;
    let tree = dir.path().join("src");
    make_tree(&tree)?;
    let (first, stream) = backup_fixture(&source, &tree, "r1")?;
    let mut s = source.begin_backup(meta("other", "r2"))?;
    s.add_stream("x", Box::new(Generator::new(5, 1000)))?;
    let other = s.commit()?;

    // By job: only that job's snapshot.
    let report = source.copy_to(&dest, Some("app"), &[])?;
    assert_eq!(report.copied.len(), 1);
    assert_eq!(report.copied[0].id, first.id);
    let copied = dest.snapshots(None)?;
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0].job, "app");
    assert_eq!(copied[0].tags, first.tags);
    let mut got = Vec::new();
    dest.open_restore(&copied[0])?
        .open_stream("db.dump")?
        .read_to_end(&mut got)?;
    assert!(got == stream, "copied stream differs");
    let restored = dir.path().join("restored");
    dest.open_restore(&copied[0])?
        .restore_tree("files", &restored)?;
    assert_eq!(describe(&restored)?, describe(&tree)?);

    // Again, plus a new backup sharing all its data: nothing but the new
    // snapshot (and its small tree) is written.
    let size_before = dir_size(&dir.path().join("offsite/data"));
    let (second, _) = backup_fixture(&source, &tree, "r3")?;
    let report = source.copy_to(&dest, None, &[])?;
    let copied_ids: Vec<&str> = report.copied.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(copied_ids, vec![other.id.as_str(), second.id.as_str()]);
    assert_eq!(report.present.len(), 1);
    let added = dir_size(&dir.path().join("offsite/data")) - size_before;
    assert!(added < 64 << 10, "a copy of known data added {added} bytes");
    let report = source.copy_to(&dest, None, &[])?;
    assert!(report.copied.is_empty());
    assert_eq!(report.present.len(), 3);

    // By id; errors.
    assert!(matches!(
        source.copy_to(&dest, None, &["ffffffff".into()]),
        Err(RepoError::NoSuchSnapshot { .. })
    ));
    assert!(matches!(
        source.copy_to(&source, None, &[]),
        Err(RepoError::Failed { .. })
    ));
    assert!(dest.check(true)?.is_ok());
    if let Some(out) = restic(&dir.path().join("offsite"), &["snapshots", "--json"])? {
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(listed.as_array().map(Vec::len), Some(3));
    }
    Ok(())
}
