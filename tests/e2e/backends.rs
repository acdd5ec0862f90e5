//! The same repository suite on each backend: a local directory, S3 (a
//! real garage server) and restic's REST protocol (`rclone serve restic`),
//! with Debian's restic reading what Cairn wrote on each; restic's locks
//! honoured both ways; repositories on a read-only medium or behind
//! read-only credentials still readable.

use std::io::{Cursor, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use cairn::repository::{RepoError, Repository, SnapshotMeta};

use crate::servers::{Backend, garage, rclone};
use crate::support::Scratch;

const PW: &str = "backend suite password";

/// Pseudo-random bytes (xorshift), reproducible.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn meta(job: &str, run: &str) -> SnapshotMeta {
    SnapshotMeta {
        job: job.into(),
        task: "test".into(),
        run_id: run.into(),
        hostname: cairn::sys::hostname(),
    }
}

/// A tree with nested directories, an empty file, a larger file and a symlink.
fn make_tree(root: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join("a/b"))?;
    std::fs::write(root.join("a/b/small.txt"), b"hello, backends\n")?;
    std::fs::write(root.join("a/empty"), b"")?;
    std::fs::write(root.join("big.bin"), bytes(7, 3 << 20))?;
    std::os::unix::fs::symlink("a/b/small.txt", root.join("link"))?;
    Ok(())
}

/// Every entry under `root`: relative path, kind and content (files),
/// target (symlinks).
fn listing(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let rel = entry.path().strip_prefix(root)?.display().to_string();
            let meta = std::fs::symlink_metadata(entry.path())?;
            if meta.file_type().is_symlink() {
                out.push((
                    rel,
                    format!("-> {}", std::fs::read_link(entry.path())?.display()),
                ));
            } else if meta.is_dir() {
                out.push((rel, "dir".into()));
                stack.push(entry.path());
            } else {
                let content = std::fs::read(entry.path())?;
                out.push((
                    rel,
                    format!(
                        "{} bytes {}",
                        content.len(),
                        hex::encode(&content[..content.len().min(16)])
                    ),
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `restic ARGS` on `url`, which must succeed; its stdout.
fn restic(backend: Backend, url: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = backend
        .restic(url, PW)
        .args(args)
        .output()
        .context("`restic` is not installed: `apt-get install restic` (.ci/run does)")?;
    if !out.status.success() {
        bail!(
            "restic {args:?} on {url} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn suite(backend: Backend) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let url = backend.fresh_url(scratch.dir.path());
    let location = backend.location(&url);
    assert_eq!(
        location.to_string(),
        url,
        "the location displays as written"
    );

    let err = Repository::open(&location, PW).unwrap_err();
    assert!(matches!(err, RepoError::NotInitialised { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    let repo = Repository::init(&location, PW)?;
    let err = Repository::init(&location, PW).unwrap_err();
    assert!(matches!(err, RepoError::AlreadyInitialised { .. }), "{err}");
    let err = Repository::open(&location, "not the password").unwrap_err();
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err}");

    // A backup: a 6 MiB stream and a tree.
    let tree = scratch.path("tree");
    make_tree(&tree)?;
    let stream = bytes(1, 6 << 20);
    let mut session = repo.begin_backup(meta("app", "r1"))?;
    session.add_stream("db.dump", Box::new(Cursor::new(stream.clone())))?;
    session.add_tree("files", &tree)?;
    session.set_note("dumped-by", "suite");
    let first = session.commit()?;
    assert!(
        repo.locks()?.is_empty(),
        "the backup's lock is gone: {:?}",
        repo.locks()?
    );

    // Reopened from scratch, it lists and restores.
    let repo = Repository::open(&location, PW)?;
    let snaps = repo.snapshots(Some("app"))?;
    assert_eq!(snaps.len(), 1);
    let session = repo.open_restore(&snaps[0])?;
    let mut got = Vec::new();
    session.open_stream("db.dump")?.read_to_end(&mut got)?;
    assert!(got == stream, "the stream comes back byte for byte");
    let target = scratch.path("restored");
    std::fs::create_dir_all(&target)?;
    session.restore_tree("files", &target)?;
    assert_eq!(listing(&target)?, listing(&tree)?);
    assert_eq!(
        session.notes()?.get("dumped-by").map(String::as_str),
        Some("suite")
    );
    drop(session);

    // The unchanged tree again adds (almost) nothing.
    let mut session = repo.begin_backup(meta("app", "r2"))?;
    session.add_tree("files", &tree)?;
    let second = session.commit()?;
    let added = second
        .summary
        .map(|s| s.data_added_packed)
        .context("a summary")?;
    assert!(
        added < 1 << 20,
        "an unchanged re-backup added {added} bytes"
    );

    assert!(repo.check_data(Some("all"))?.is_ok());

    // restic reads it all.
    let listed: serde_json::Value =
        serde_json::from_str(&restic(backend, &url, &["snapshots", "--json"])?)?;
    let ids: Vec<&str> = listed
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        ids.contains(&first.id.as_str()) && ids.contains(&second.id.as_str()),
        "{ids:?}"
    );
    restic(backend, &url, &["check", "--read-data"])?;
    let restic_target = scratch.path("restic-restore");
    restic(
        backend,
        &url,
        &[
            "restore",
            &first.id,
            "--target",
            &restic_target.display().to_string(),
        ],
    )?;
    assert!(std::fs::read(restic_target.join("db.dump"))? == stream);
    assert_eq!(listing(&restic_target.join("files"))?, listing(&tree)?);

    // Forget and prune; what is left still checks, for both.
    let report = repo.forget(
        "app",
        &cairn::model::Retention {
            keep_last: Some(1),
            ..Default::default()
        },
        false,
    )?;
    assert_eq!(report.removed.len(), 1);
    let pruned = repo.prune()?;
    assert!(pruned.packs_removed > 0, "{pruned:?}");
    assert!(repo.check(true)?.is_ok());
    restic(backend, &url, &["check", "--read-data"])?;
    assert!(repo.locks()?.is_empty(), "no lock is left behind");
    Ok(())
}

#[test]
fn the_repository_suite_on_a_local_directory() -> anyhow::Result<()> {
    suite(Backend::Local)
}

#[test]
fn the_repository_suite_on_s3() -> anyhow::Result<()> {
    suite(Backend::S3)
}

#[test]
fn the_repository_suite_on_rest() -> anyhow::Result<()> {
    suite(Backend::Rest)
}

/// restic refuses to prune while Cairn backs up, and Cairn waits for a
/// restic backup before it prunes, naming restic's lock.
fn locks_both_ways(backend: Backend) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let url = backend.fresh_url(scratch.dir.path());
    let location = backend.location(&url);
    let repo = Repository::init(&location, PW)?.with_lock_timeout(Duration::from_millis(500));

    let session = repo.begin_backup(meta("app", "r1"))?;
    let out = backend.restic(&url, PW).arg("prune").output()?;
    ensure!(!out.status.success(), "restic pruned while Cairn backed up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(stderr.contains("locked"), "restic says why: {stderr}");
    session.commit()?;
    restic(backend, &url, &["prune"])?;

    // restic holds a shared lock while it waits for its stdin.
    let mut child = backend
        .restic(&url, PW)
        .args(["backup", "--stdin", "--stdin-filename", "slow.txt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while repo.locks()?.is_empty() {
        ensure!(Instant::now() < deadline, "restic took no lock within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = repo.prune().unwrap_err();
    assert!(matches!(err, RepoError::Busy { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("(pid {})", child.id())),
        "the message names restic's lock: {err}"
    );
    // A backup shares restic's lock.
    repo.begin_backup(meta("app", "r2"))?.commit()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(b"slow but done\n")?;
    drop(stdin);
    let status = child.wait()?;
    ensure!(status.success(), "restic backup failed");
    repo.prune()?;
    assert!(repo.check(true)?.is_ok());
    Ok(())
}

#[test]
fn restic_and_cairn_honour_each_others_locks_locally() -> anyhow::Result<()> {
    locks_both_ways(Backend::Local)
}

#[test]
fn restic_and_cairn_honour_each_others_locks_on_s3() -> anyhow::Result<()> {
    locks_both_ways(Backend::S3)
}

#[test]
fn restic_and_cairn_honour_each_others_locks_on_rest() -> anyhow::Result<()> {
    locks_both_ways(Backend::Rest)
}

#[test]
fn bad_credentials_and_unreachable_servers_are_named() -> anyhow::Result<()> {
    use cairn::model::{Location, S3Location, SecretSource};
    let g = garage();
    let scratch = Scratch::new()?;
    let url = Backend::S3.fresh_url(scratch.dir.path());
    let Location::S3(good) = Backend::S3.location(&url) else {
        bail!("not S3");
    };
    // SAFETY: variables only this test uses.
    unsafe { std::env::set_var("CAIRN_TEST_WRONG_SECRET", "wrong-secret") };
    let wrong = Location::S3(S3Location {
        secret_access_key: SecretSource::Env("CAIRN_TEST_WRONG_SECRET".into()),
        ..good.clone()
    });
    let err = Repository::init(&wrong, PW).unwrap_err().to_string();
    assert!(
        err.contains("HTTP 403") && err.contains("cairn-tests") && err.contains(&g.endpoint),
        "names the status, bucket and endpoint: {err}"
    );
    let unset = Location::S3(S3Location {
        access_key_id: SecretSource::Env("CAIRN_TEST_SURELY_UNSET_KEY".into()),
        ..good.clone()
    });
    let err = Repository::init(&unset, PW).unwrap_err().to_string();
    assert!(err.contains("CAIRN_TEST_SURELY_UNSET_KEY"), "{err}");

    // A server that is not there: retried, then named.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let gone = Backend::Rest.location(&format!("rest:http://127.0.0.1:{closed}/nothing/"));
    let started = Instant::now();
    let err = Repository::open(&gone, PW).unwrap_err().to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{closed}")) && err.contains("gave up after 6 attempts"),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "it backed off between attempts"
    );
    let _ = rclone();
    Ok(())
}

/// Reading a repository that cannot take a lock file: a local one on a
/// read-only mount (needs root, as CI has) and an S3 one with a read-only key.
#[test]
fn a_read_only_repository_can_be_listed_checked_and_restored() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let src = scratch.path("src");
    let ro = scratch.path("ro");
    std::fs::create_dir_all(&ro)?;
    let location = Backend::Local.location(&src.display().to_string());
    let repo = Repository::init(&location, PW)?;
    let mut session = repo.begin_backup(meta("app", "r1"))?;
    session.add_stream("data", Box::new(Cursor::new(bytes(3, 1 << 20))))?;
    session.commit()?;
    drop(repo);

    let mount = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("mount").args(args).output()?;
        ensure!(
            out.status.success(),
            "this test makes a read-only bind mount and needs root: mount {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let (src_s, ro_s) = (src.display().to_string(), ro.display().to_string());
    mount(&["--bind", &src_s, &ro_s])?;
    let result = (|| -> anyhow::Result<()> {
        mount(&["-o", "remount,ro,bind", &ro_s])?;
        let location = Backend::Local.location(&ro_s);
        let repo = Repository::open(&location, PW)?;
        let snaps = repo.snapshots(None)?;
        assert_eq!(snaps.len(), 1);
        assert!(repo.check(true)?.is_ok());
        let mut got = Vec::new();
        repo.open_restore(&snaps[0])?
            .open_stream("data")?
            .read_to_end(&mut got)?;
        assert!(got == bytes(3, 1 << 20));
        // Writing is still refused, with the reason.
        let err = repo
            .begin_backup(meta("app", "r2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Read-only file system"), "{err}");
        Ok(())
    })();
    let _ = Command::new("umount").arg(&ro_s).status();
    result?;

    // S3 with a key that may only read.
    let g = garage();
    let url = Backend::S3.fresh_url(scratch.dir.path());
    let location = Backend::S3.location(&url);
    let repo = Repository::init(&location, PW)?;
    let mut session = repo.begin_backup(meta("app", "r1"))?;
    session.add_stream("data", Box::new(Cursor::new(bytes(4, 1 << 20))))?;
    session.commit()?;
    let reader = crate::servers::read_only_key()?;
    // SAFETY: variables only this test uses.
    unsafe {
        std::env::set_var("CAIRN_TEST_RO_KEY", &reader.0);
        std::env::set_var("CAIRN_TEST_RO_SECRET", &reader.1);
    }
    let cairn::model::Location::S3(s3) = location else {
        bail!("not S3");
    };
    let read_only = cairn::model::Location::S3(cairn::model::S3Location {
        access_key_id: cairn::model::SecretSource::Env("CAIRN_TEST_RO_KEY".into()),
        secret_access_key: cairn::model::SecretSource::Env("CAIRN_TEST_RO_SECRET".into()),
        ..s3
    });
    let repo = Repository::open(&read_only, PW)?;
    let snaps = repo.snapshots(None)?;
    assert!(repo.check(true)?.is_ok());
    let mut got = Vec::new();
    repo.open_restore(&snaps[0])?
        .open_stream("data")?
        .read_to_end(&mut got)?;
    assert!(got == bytes(4, 1 << 20));
    let err = repo
        .begin_backup(meta("app", "r2"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("403"), "{err}");
    let _ = g;
    Ok(())
}

// ---------------------------------------------------------------------------
// Copies between backends
// ---------------------------------------------------------------------------

/// Local → S3 and local → REST: only what the destination lacks is written,
/// restic reads the copies, and a second copy writes nothing.
#[test]
fn copy_from_local_to_s3_and_rest_writes_only_what_is_missing() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let source = Repository::init(
        &Backend::Local.location(&Backend::Local.fresh_url(scratch.dir.path())),
        PW,
    )?;
    let tree = scratch.path("tree");
    make_tree(&tree)?;
    let stream = bytes(7, 5 << 20);
    let mut ids = Vec::new();
    for run in ["r1", "r2"] {
        let mut s = source.begin_backup(meta("app", run))?;
        s.add_stream("db.dump", Box::new(Cursor::new(stream.clone())))?;
        s.add_tree("files", &tree)?;
        ids.push(s.commit()?.id);
    }
    for backend in [Backend::S3, Backend::Rest] {
        let url = backend.fresh_url(scratch.dir.path());
        let dest = Repository::init(&backend.location(&url), PW)?;
        let report = source.copy_to(&dest, Some("app"), &[ids[0].clone()])?;
        assert_eq!(report.copied.len(), 1, "{backend:?}");
        let report = source.copy_to(&dest, None, &[])?;
        assert_eq!(
            (report.copied.len(), report.present.len()),
            (1, 1),
            "{backend:?}"
        );
        let report = source.copy_to(&dest, None, &[])?;
        assert!(report.copied.is_empty(), "{backend:?}: copied twice");

        let copies = dest.snapshots(Some("app"))?;
        assert_eq!(copies.len(), 2, "{backend:?}");
        let mut got = Vec::new();
        dest.open_restore(&copies[1])?
            .open_stream("db.dump")?
            .read_to_end(&mut got)?;
        assert!(got == stream, "{backend:?}: the copied stream differs");
        restic(backend, &url, &["check", "--read-data"])?;
        let listed: serde_json::Value =
            serde_json::from_str(&restic(backend, &url, &["snapshots", "--json"])?)?;
        assert_eq!(listed.as_array().map(Vec::len), Some(2), "{backend:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// `cairn backup` killed in the middle of a large stream
// ---------------------------------------------------------------------------

const PW_ENV: &str = "CAIRN_TEST_BACKEND_PASSWORD";

/// A config for `backend` at `url` with a directory job `files` over `src`.
fn cli_config(backend: Backend, url: &str, src: &Path, extra: &str) -> String {
    let (s, t) = (
        src.display().to_string(),
        src.with_extension("restored").display().to_string(),
    );
    format!(
        "{}\n[state]\npath = \"state.db\"\n\n[jobs.files]\ntask = \"builtin:directory\"\n\
         params = {{ paths = [{s:?}], target = {t:?} }}\n{extra}\n\
         [jobs.files.allow]\npaths = {{ {s:?} = \"read\", {t:?} = \"read-write\" }}\n",
        backend.config(url, PW_ENV),
    )
}

fn crash_midway(backend: Backend) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let url = backend.fresh_url(scratch.dir.path());
    let location = backend.location(&url);
    let src = scratch.path("src");
    std::fs::create_dir(&src)?;
    std::fs::write(src.join("huge.bin"), bytes(11, 256 << 20))?;
    scratch.write_config(&cli_config(backend, &url, &src, ""))?;
    let env = [(PW_ENV, PW)];
    crate::support::cairn_with_env(&["init"], scratch.dir.path(), &env)?.expect_code(0)?;
    let store = cairn::repository::store::open(&location).map_err(|e| anyhow::anyhow!("{e}"))?;
    let packs = || -> anyhow::Result<usize> {
        Ok(store
            .list("data")
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .len())
    };
    ensure!(packs()? == 0, "a fresh repository has packs");

    let mut child = Command::new(crate::support::cairn_bin())
        .args(["backup", "files"])
        .current_dir(scratch.dir.path())
        .env_remove("CAIRN_CONFIG")
        .env("CAIRN_LOG", "warn")
        .env("XDG_CACHE_HOME", crate::support::cli_xdg_cache_home())
        .env(PW_ENV, PW)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{backend:?}: the backup finished ({status}) before it could be killed");
        }
        if packs()? >= 2 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{backend:?}: no pack written within 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?; // SIGKILL
    child.wait()?;

    // restic accepts what is left (its own rule for a killed process's lock,
    // as for a killed restic: `--no-lock` or `unlock`); there is no
    // snapshot; the run is interrupted.
    restic(backend, &url, &["--no-lock", "check", "--read-data"])?;
    let locks = restic(backend, &url, &["--no-lock", "list", "locks"])?;
    ensure!(
        locks.lines().count() == 1,
        "{backend:?}: the killed run's lock: {locks:?}"
    );
    let cli = |args: &[&str]| crate::support::cairn_with_env(args, scratch.dir.path(), &env);
    let snaps = cli(&["--json", "snapshots"])?;
    snaps.expect_code(0)?;
    ensure!(
        snaps.json()? == serde_json::json!([]),
        "{backend:?}: {snaps}"
    );
    let runs = cli(&["--json", "runs", "--job", "files"])?;
    runs.expect_code(0)?;
    let runs = runs.json()?;
    ensure!(
        runs.as_array()
            .is_some_and(|r| r.len() == 1 && r[0]["status"] == "interrupted"),
        "{backend:?}: expected one interrupted run, got {runs}"
    );
    // The killed run's lock is stale (its process is gone): the next backup
    // goes ahead and removes it, and restic (which locks now) reads the result.
    cli(&["backup", "files"])?.expect_code(0)?;
    let locks = restic(backend, &url, &["--no-lock", "list", "locks"])?;
    ensure!(
        locks.trim().is_empty(),
        "{backend:?}: a lock is left: {locks:?}"
    );
    restic(backend, &url, &["check", "--read-data"])?;
    let listed: serde_json::Value =
        serde_json::from_str(&restic(backend, &url, &["snapshots", "--json"])?)?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{backend:?}");
    Ok(())
}

#[test]
fn a_backup_killed_midway_leaves_a_repository_restic_accepts_locally() -> anyhow::Result<()> {
    crash_midway(Backend::Local)
}

#[test]
fn a_backup_killed_midway_leaves_a_repository_restic_accepts_on_s3() -> anyhow::Result<()> {
    crash_midway(Backend::S3)
}

#[test]
fn a_backup_killed_midway_leaves_a_repository_restic_accepts_on_rest() -> anyhow::Result<()> {
    crash_midway(Backend::Rest)
}

// ---------------------------------------------------------------------------
// Two hosts and restic on one bucket
// ---------------------------------------------------------------------------

/// Two `cairn` processes with their own configs and state ("two hosts") back
/// up into one S3 repository again and again while `restic prune` runs over
/// and over: no snapshot is lost and restic's `check --read-data` passes.
#[test]
fn two_cairn_hosts_and_restic_prune_on_one_bucket_lose_nothing() -> anyhow::Result<()> {
    let backend = Backend::S3;
    let scratch = Scratch::new()?;
    let url = backend.fresh_url(scratch.dir.path());
    Repository::init(&backend.location(&url), PW)?;
    let hosts: Vec<std::path::PathBuf> = ["host-a", "host-b"]
        .iter()
        .map(|h| scratch.path(h))
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        let src = host.join("src");
        std::fs::create_dir_all(&src)?;
        std::fs::write(src.join("data.bin"), bytes(100 + i as u64, 3 << 20))?;
        std::fs::write(
            host.join("cairn.toml"),
            cli_config(backend, &url, &src, "").replace("[jobs.files", &format!("[jobs.files-{i}")),
        )?;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let (stop, url) = (stop.clone(), url.clone());
        std::thread::spawn(move || -> anyhow::Result<(u32, u32)> {
            let (mut ok, mut refused) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = backend.restic(&url, PW).arg("prune").output()?;
                if out.status.success() {
                    ok += 1;
                } else {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    ensure!(stderr.contains("locked"), "restic prune failed: {stderr}");
                    refused += 1;
                }
            }
            Ok((ok, refused))
        })
    };
    let workers: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = host.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<String>> {
                let mut ids = Vec::new();
                for round in 0..3 {
                    // New data each round, so prune has work and packs move.
                    std::fs::write(
                        host.join("src/round.bin"),
                        bytes(1000 * i as u64 + round, 1 << 20),
                    )?;
                    let job = format!("files-{i}");
                    let out = crate::support::cairn_with_env(
                        &["--json", "backup", &job],
                        &host,
                        &[(PW_ENV, PW)],
                    )?;
                    out.expect_code(0)?;
                    let id = out.json()?["run"]["snapshot_id"]
                        .as_str()
                        .context("a snapshot id")?
                        .to_owned();
                    ids.push(id);
                }
                Ok(ids)
            })
        })
        .collect();
    let mut committed = Vec::new();
    for w in workers {
        committed.extend(w.join().expect("a worker panicked")?);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (pruned, refused) = pruner.join().expect("the pruner panicked")?;
    eprintln!("restic prune: {pruned} ran, {refused} refused (locked)");
    ensure!(pruned + refused > 0, "restic prune never ran alongside");

    restic(backend, &url, &["prune"])?;
    restic(backend, &url, &["check", "--read-data"])?;
    let listed: serde_json::Value =
        serde_json::from_str(&restic(backend, &url, &["snapshots", "--json"])?)?;
    let present: Vec<&str> = listed
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    for id in &committed {
        ensure!(present.contains(&id.as_str()), "snapshot {id} was lost");
    }
    assert_eq!(committed.len(), 6);
    Ok(())
}
