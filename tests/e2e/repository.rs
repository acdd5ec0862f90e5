//! End-to-end tests of the repository: the real `cairn` binary backing up
//! into a restic-format repository, restoring from it, and restic itself
//! reading what Cairn wrote (`restic snapshots`, `check --read-data`,
//! `restore`, `dump`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::support::{self, CliOutput, Scratch, cairn_with_env};

/// The repository password of every test, passed as `CAIRN_TEST_PASSWORD`.
const PASSWORD: &str = "correct horse battery staple";
const PASSWORD_ENV: &str = "CAIRN_TEST_PASSWORD";

/// `[repository]` (in `repo/` of the scratch dir, password from the
/// environment) and `[state]`, followed by `jobs`.
fn repo_config(jobs: &str) -> String {
    format!(
        "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n[state]\npath = \"state.db\"\n\n{jobs}"
    )
}

/// A `builtin:directory` job backing up `src` and restoring into `target`, with extra lines.
fn dir_job(name: &str, src: &Path, target: &Path, extra: &str) -> String {
    let (s, t) = (src.display().to_string(), target.display().to_string());
    format!(
        "[jobs.{name}]\ntask = \"builtin:directory\"\nparams = {{ paths = [{s:?}], target = {t:?} }}\n{extra}\n\
         [jobs.{name}.allow]\npaths = {{ {s:?} = \"read\", {t:?} = \"read-write\" }}\n\n"
    )
}

/// `cairn ARGS` in the scratch dir with the right password.
fn cairn(scratch: &Scratch, args: &[&str]) -> anyhow::Result<CliOutput> {
    cairn_with_env(args, scratch.dir.path(), &[(PASSWORD_ENV, PASSWORD)])
}

/// `cairn ARGS`, which must exit 0.
fn cairn_ok(scratch: &Scratch, args: &[&str]) -> anyhow::Result<CliOutput> {
    let out = cairn(scratch, args)?;
    out.expect_code(0)?;
    Ok(out)
}

/// `cairn --json backup JOB`: must succeed; returns the snapshot id and the report.
fn backup(scratch: &Scratch, job: &str) -> anyhow::Result<(String, Value)> {
    let out = cairn_ok(scratch, &["--json", "backup", job])?;
    let report = out.json()?;
    let id = report["run"]["snapshot_id"]
        .as_str()
        .with_context(|| format!("no snapshot id in the report\n{out}"))?
        .to_owned();
    Ok((id, report))
}

/// The task's result in a run report, as JSON (stored as a JSON value or as text).
fn result_of(report: &Value) -> anyhow::Result<Value> {
    match &report["result"] {
        Value::String(text) => Ok(serde_json::from_str(text)?),
        Value::Null => anyhow::bail!("no result in {report}"),
        other => Ok(other.clone()),
    }
}

/// `cairn --json snapshots [JOB]`.
fn snapshots(scratch: &Scratch, job: Option<&str>) -> anyhow::Result<Vec<Value>> {
    let mut args = vec!["--json", "snapshots"];
    args.extend(job);
    let out = cairn_ok(scratch, &args)?;
    match out.json()? {
        Value::Array(list) => Ok(list),
        other => anyhow::bail!("`snapshots --json` printed {other}, not a list"),
    }
}

/// Run `restic -r REPO ARGS` with the password; returns (success, stdout, stderr).
fn restic(repo: &Path, args: &[&str]) -> anyhow::Result<(bool, Vec<u8>, String)> {
    let mut command = Command::new("restic");
    command
        .arg("-r")
        .arg(repo)
        .args(args)
        .arg("--no-cache")
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD_FILE");
    let out = support::run_with_timeout(command, Duration::from_secs(300))
        .with_context(|| format!("running restic {args:?}"))?;
    Ok((
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `restic ARGS`, which must succeed; returns its stdout.
fn restic_ok(repo: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let (ok, stdout, stderr) = restic(repo, args)?;
    anyhow::ensure!(
        ok,
        "restic {args:?} failed\n--- stdout ---\n{}\n--- stderr ---\n{stderr}",
        String::from_utf8_lossy(&stdout)
    );
    Ok(stdout)
}

/// Write `size` random (incompressible, never repeating) bytes from
/// `/dev/urandom` to `path` (fast, unlike a generator in this unoptimised test
/// binary).
fn write_random_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut random = File::open("/dev/urandom")?.take(size);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let copied = std::io::copy(&mut random, &mut out)?;
    anyhow::ensure!(copied == size, "wrote {copied} of {size} random bytes");
    out.flush()?;
    Ok(())
}

/// What a tree holds at one relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        size: u64,
        sha256: String,
    },
    Symlink {
        target: PathBuf,
    },
}

/// Every entry below `root` (not `root` itself) by relative path.
fn tree(root: &Path) -> anyhow::Result<BTreeMap<PathBuf, Node>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let rel = path.strip_prefix(root)?.to_path_buf();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    Node::Symlink {
                        target: std::fs::read_link(&path)?,
                    },
                );
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir { mode });
                walk(root, &path, out)?;
            } else {
                let mut hasher = Sha256::new();
                let mut file = File::open(&path)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                out.insert(
                    rel,
                    Node::File {
                        mode,
                        size: meta.len(),
                        sha256: hex::encode(hasher.finalize()),
                    },
                );
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

/// Fail unless the trees under `a` and `b` hold the same entries, bytes, modes and links.
fn assert_same_tree(a: &Path, b: &Path) -> anyhow::Result<()> {
    let (ta, tb) = (tree(a)?, tree(b)?);
    for (path, node) in &ta {
        anyhow::ensure!(
            tb.get(path) == Some(node),
            "{} differs: {node:?} in {}, {:?} in {}",
            path.display(),
            a.display(),
            tb.get(path),
            b.display()
        );
    }
    for path in tb.keys() {
        anyhow::ensure!(
            ta.contains_key(path),
            "{} is in {} but not in {}",
            path.display(),
            b.display(),
            a.display()
        );
    }
    Ok(())
}

/// `diff -r --no-dereference A B` must report no difference.
fn diff_r(a: &Path, b: &Path) -> anyhow::Result<()> {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "diff -r {} {}:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Total size in bytes of the files below `dir`.
fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Every file below `dir` with its size: a fingerprint of a repository's contents.
fn listing(dir: &Path) -> anyhow::Result<BTreeMap<PathBuf, u64>> {
    Ok(tree(dir)?
        .into_iter()
        .filter_map(|(p, n)| match n {
            Node::File { size, .. } => Some((p, size)),
            _ => None,
        })
        .collect())
}

/// A small source tree with a few files, in `dir` (created).
fn small_tree(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("sub"))?;
    std::fs::write(dir.join("a.txt"), "alpha\n")?;
    std::fs::write(dir.join("sub/b.txt"), "beta\n")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Directory round trip, read back by restic
// ---------------------------------------------------------------------------

#[test]
fn directory_backup_restores_bytes_modes_links_and_empty_dirs_and_restic_reads_it()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let src = scratch.path("src");
    std::fs::create_dir_all(src.join("a/b/c"))?;
    std::fs::create_dir_all(src.join("empty"))?;
    std::fs::create_dir_all(src.join("bin"))?;
    std::fs::write(src.join("hello.txt"), "hello, world\n")?;
    std::fs::write(src.join("a/b/c/deep.txt"), "deep ".repeat(1000))?;
    std::fs::write(src.join("a/b/mid.json"), r#"{"k": [1, 2, 3]}"#)?;
    std::fs::write(src.join("bin/run.sh"), "#!/bin/sh\necho hi\n")?;
    std::fs::set_permissions(
        src.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    std::fs::write(src.join("secret.txt"), "private\n")?;
    std::fs::set_permissions(
        src.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    std::os::unix::fs::symlink("hello.txt", src.join("link"))?;
    std::os::unix::fs::symlink("/nonexistent/dangling", src.join("dangling"))?;
    write_random_file(&src.join("big.bin"), 200 << 20)?;

    let target = scratch.path("restored");
    std::fs::create_dir(&target)?;
    scratch.write_config(&repo_config(&dir_job("files", &src, &target, "")))?;

    let out = cairn_ok(&scratch, &["backup", "files"])?;
    let snapshot_line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("snapshot ")?.strip_suffix(" saved"))
        .with_context(|| format!("backup printed no snapshot id\n{out}"))?;
    let snapshot_id = snapshot_line.trim().to_owned();
    anyhow::ensure!(
        snapshot_id.len() == 64 && snapshot_id.chars().all(|c| c.is_ascii_hexdigit()),
        "snapshot id {snapshot_id:?} is not 64 hex digits"
    );

    let list = snapshots(&scratch, Some("files"))?;
    anyhow::ensure!(list.len() == 1, "expected one snapshot, got {list:?}");
    anyhow::ensure!(list[0]["id"] == snapshot_id.as_str(), "{list:?}");
    let tags: Vec<&str> = list[0]["tags"]
        .as_array()
        .context("tags")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    anyhow::ensure!(tags.contains(&"job:files"), "tags {tags:?}");
    anyhow::ensure!(tags.contains(&"task:directory"), "tags {tags:?}");

    cairn_ok(&scratch, &["restore", "files"])?;
    assert_same_tree(&src, &target)?;
    anyhow::ensure!(
        std::fs::read_link(target.join("link"))? == Path::new("hello.txt"),
        "symlink target changed"
    );
    anyhow::ensure!(
        std::fs::read_dir(target.join("empty"))?.next().is_none(),
        "empty dir is not empty"
    );

    // restic reads the same repository.
    let repo = scratch.path("repo");
    let listed: Value = serde_json::from_slice(&restic_ok(&repo, &["snapshots", "--json"])?)?;
    let listed = listed.as_array().context("restic snapshots --json")?;
    anyhow::ensure!(listed.len() == 1, "restic lists {listed:?}");
    anyhow::ensure!(listed[0]["id"] == snapshot_id.as_str(), "{listed:?}");
    anyhow::ensure!(
        listed[0]["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "job:files")),
        "restic shows tags {}",
        listed[0]["tags"]
    );
    restic_ok(&repo, &["check", "--read-data"])?;

    let by_restic = scratch.path("by-restic");
    restic_ok(
        &repo,
        &[
            "restore",
            "latest",
            "--target",
            &by_restic.display().to_string(),
        ],
    )?;
    // One tree artifact: restic restores it as `<target>/<artifact name>`
    // (next to Cairn's `.cairn` metadata).
    let entries: Vec<PathBuf> = std::fs::read_dir(&by_restic)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.file_name() != Some(".cairn".as_ref()))
        .collect();
    anyhow::ensure!(
        entries.len() == 1,
        "restic restored {entries:?}, expected one artifact directory"
    );
    diff_r(&src, &entries[0])?;
    assert_same_tree(&src, &entries[0])?;
    Ok(())
}

// ---------------------------------------------------------------------------
// PostgreSQL round trip
// ---------------------------------------------------------------------------

/// `psql -At -c SQL` against `db` on the local server; its trimmed output.
pub(crate) fn psql(db: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .context("running psql")?;
    anyhow::ensure!(
        out.status.success(),
        "psql -d {db} -c {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Drops its databases when dropped (best effort, also when a test fails).
struct DropDatabases(Vec<String>);

impl Drop for DropDatabases {
    fn drop(&mut self) {
        for db in &self.0 {
            let _ = psql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
            );
        }
    }
}

/// Row count and an md5 over every row, in id order, of each table.
fn table_checksums(db: &str, tables: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    tables
        .iter()
        .map(|t| {
            let sum = psql(
                db,
                &format!(
                    "SELECT count(*) || ' ' || md5(string_agg(x::text, ',' ORDER BY id)) FROM {t} x"
                ),
            )?;
            Ok(((*t).to_owned(), sum))
        })
        .collect()
}

#[test]
fn postgres_backup_is_a_restic_dump_and_restores_into_a_new_database_with_identical_rows()
-> anyhow::Result<()> {
    let unique = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let db = format!("cairn_e2e_src_{unique}");
    let restored = format!("cairn_e2e_dst_{unique}");
    let _cleanup = DropDatabases(vec![db.clone(), restored.clone()]);

    psql("postgres", &format!("CREATE DATABASE \"{db}\""))?;
    psql(
        &db,
        r#"
        CREATE TABLE kinds (id int PRIMARY KEY, t text, n numeric, b bytea, j jsonb);
        INSERT INTO kinds VALUES
          (1, 'plain', 1.5, '\x00ff10'::bytea, '{"a": 1, "b": [true, null]}'),
          (2, E'tab\there, newline\nand ''quotes'' and ünïcödé ✓', -12345678901234567890.000000001,
              decode(repeat('deadbeef', 1000), 'hex'), '[1, "two", {"three": 3.0}]'),
          (3, NULL, NULL, NULL, NULL),
          (4, '', 0, ''::bytea, '{}');
        CREATE TABLE big (id int PRIMARY KEY, v text, n bigint);
        INSERT INTO big SELECT g, md5(g::text), g::bigint * 7919 FROM generate_series(1, 1000000) g;
        "#,
    )?;
    let tables = ["kinds", "big"];
    let before = table_checksums(&db, &tables)?;
    anyhow::ensure!(before["big"].starts_with("1000000 "), "{before:?}");

    let scratch = Scratch::new()?;
    scratch.write_config(&repo_config(&format!(
        "[jobs.pg]\ntask = \"builtin:postgres\"\n\
         params = {{ database = {db:?}, host = \"127.0.0.1\", port = 5432, user = \"postgres\" }}\n\
         allow.commands = [\"pg_dump\", \"pg_restore\", \"psql\"]\n"
    )))?;
    let (snapshot_id, report) = backup(&scratch, "pg")?;
    let result = result_of(&report)?;
    let artifact = result["artifact"]
        .as_str()
        .with_context(|| format!("no artifact in {result}"))?
        .to_owned();
    anyhow::ensure!(artifact == format!("{db}.dump"), "artifact {artifact}");

    // restic reads the dump as a file of the snapshot.
    let repo = scratch.path("repo");
    let dump = restic_ok(&repo, &["dump", &snapshot_id, &format!("/{artifact}")])?;
    anyhow::ensure!(
        dump.starts_with(b"PGDMP"),
        "restic dump is not a pg_dump custom-format archive ({} bytes)",
        dump.len()
    );
    if let Some(bytes) = result["bytes"].as_u64() {
        anyhow::ensure!(
            bytes == dump.len() as u64,
            "result says {bytes} bytes, restic dumped {}",
            dump.len()
        );
    }

    cairn_ok(
        &scratch,
        &[
            "restore",
            "pg",
            "--set",
            &format!("target-database={restored}"),
        ],
    )?;
    let after = table_checksums(&restored, &tables)?;
    anyhow::ensure!(
        before == after,
        "restored tables differ:\nbefore {before:?}\nafter  {after:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn wrong_password_is_refused_naming_the_password_and_leaves_the_repository_unchanged()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let (src, target) = (scratch.path("src"), scratch.path("restored"));
    small_tree(&src)?;
    scratch.write_config(&repo_config(&dir_job("files", &src, &target, "")))?;
    backup(&scratch, "files")?;
    let repo = scratch.path("repo");
    let before = listing(&repo)?;

    let wrong = [(PASSWORD_ENV, "not the password")];
    for args in [
        &["backup", "files"][..],
        &["snapshots"][..],
        &["restore", "files"][..],
        &["check"][..],
    ] {
        let out = cairn_with_env(args, scratch.dir.path(), &wrong)?;
        anyhow::ensure!(
            out.code.is_some_and(|c| c != 0),
            "expected failure with a wrong password\n{out}"
        );
        anyhow::ensure!(
            out.stderr.to_lowercase().contains("password"),
            "the error does not mention the password\n{out}"
        );
    }
    anyhow::ensure!(
        listing(&repo)? == before,
        "the repository changed after runs with a wrong password"
    );
    anyhow::ensure!(!target.exists(), "restore wrote its target");
    anyhow::ensure!(snapshots(&scratch, None)?.len() == 1);
    Ok(())
}

#[test]
fn restore_of_an_unknown_snapshot_says_there_is_no_such_snapshot() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let (src, target) = (scratch.path("src"), scratch.path("restored"));
    small_tree(&src)?;
    scratch.write_config(&repo_config(&dir_job("files", &src, &target, "")))?;
    backup(&scratch, "files")?;
    let out = cairn(&scratch, &["restore", "files", "--snapshot", "deadbeef"])?;
    anyhow::ensure!(out.code.is_some_and(|c| c != 0), "{out}");
    anyhow::ensure!(
        out.stderr.to_lowercase().contains("no snapshot"),
        "expected a `no snapshot` message\n{out}"
    );
    anyhow::ensure!(
        out.stderr.contains("deadbeef"),
        "the message does not name the snapshot\n{out}"
    );
    anyhow::ensure!(!target.exists(), "restore wrote its target");
    Ok(())
}

#[test]
fn restore_into_a_non_empty_target_without_overwrite_is_refused_and_touches_nothing()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let (src, target) = (scratch.path("src"), scratch.path("restored"));
    small_tree(&src)?;
    std::fs::create_dir(&target)?;
    std::fs::write(target.join("keep.txt"), "mine\n")?;
    std::fs::write(target.join("a.txt"), "not alpha\n")?;
    scratch.write_config(&repo_config(&dir_job("files", &src, &target, "")))?;
    backup(&scratch, "files")?;
    let before = tree(&target)?;

    let out = cairn(&scratch, &["restore", "files"])?;
    out.expect_code(1)?;
    anyhow::ensure!(
        out.stderr.contains("overwrite") && out.stderr.contains("keep.txt"),
        "expected a refusal naming the entries and `overwrite`\n{out}"
    );
    anyhow::ensure!(tree(&target)? == before, "the target changed");
    Ok(())
}

#[test]
fn restore_with_snapshot_but_no_repository_section_is_a_usage_error_naming_both()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let (src, target) = (scratch.path("src"), scratch.path("restored"));
    small_tree(&src)?;
    scratch.write_config(&format!(
        "[state]\npath = \"state.db\"\n\n{}",
        dir_job("files", &src, &target, "")
    ))?;
    let out = cairn(&scratch, &["restore", "files", "--snapshot", "deadbeef"])?;
    out.expect_code(2)?;
    anyhow::ensure!(
        out.stderr.contains("[repository]") && out.stderr.contains("--snapshot"),
        "expected an error naming --snapshot and [repository]\n{out}"
    );
    // A usage error: no failed run is recorded.
    let runs = cairn(&scratch, &["--json", "runs"])?;
    runs.expect_code(0)?;
    anyhow::ensure!(
        runs.json()? == serde_json::json!([]),
        "a run was recorded\n{runs}"
    );
    anyhow::ensure!(!target.exists(), "restore wrote its target");
    Ok(())
}

#[test]
fn check_of_a_freshly_initialised_repository_passes() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(&repo_config(""))?;
    cairn_ok(&scratch, &["init"])?;
    anyhow::ensure!(scratch.path("repo/config").is_file(), "no repo/config");
    let out = cairn_ok(&scratch, &["check"])?;
    anyhow::ensure!(out.stdout.contains("repository OK"), "{out}");
    cairn_ok(&scratch, &["check", "--read-data"])?;
    restic_ok(&scratch.path("repo"), &["check"])?;
    Ok(())
}

// ---------------------------------------------------------------------------
// A backup killed midway
// ---------------------------------------------------------------------------

#[test]
fn backup_killed_midway_leaves_a_valid_repository_an_interrupted_run_and_the_next_backup_works()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let (src, target) = (scratch.path("src"), scratch.path("restored"));
    std::fs::create_dir(&src)?;
    write_random_file(&src.join("huge.bin"), 512 << 20)?;
    scratch.write_config(&repo_config(&dir_job("files", &src, &target, "")))?;
    // The repository exists before the killed run (so a half-created one is not what is tested).
    cairn_ok(&scratch, &["init"])?;
    let data = scratch.path("repo/data");
    let data_before = dir_size(&data)?;

    let mut child = Command::new(support::cairn_bin())
        .args(["backup", "files"])
        .current_dir(scratch.dir.path())
        .env_remove("CAIRN_CONFIG")
        .env("CAIRN_LOG", "warn")
        .env("XDG_CACHE_HOME", support::cli_xdg_cache_home())
        .env(PASSWORD_ENV, PASSWORD)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let started = Instant::now();
    let mut grew = false;
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the backup finished ({status}) before it could be killed");
        }
        if dir_size(&data)? > data_before + (8 << 20) {
            grew = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL.
    child.kill()?;
    child.wait()?;
    anyhow::ensure!(
        grew,
        "the repository's data dir did not grow within 20 s of starting the backup"
    );

    // The killed run's lock file is left, as a killed restic's is; restic
    // 0.14 does not skip it by itself (`--no-lock`, or `restic unlock`),
    // Cairn removes it as stale (its process is gone).
    let repo = scratch.path("repo");
    restic_ok(&repo, &["--no-lock", "check"])?;
    cairn_ok(&scratch, &["check"])?;
    restic_ok(&repo, &["check"])?;
    anyhow::ensure!(snapshots(&scratch, Some("files"))?.is_empty());

    let runs = cairn_ok(&scratch, &["--json", "runs", "--job", "files"])?.json()?;
    let runs = runs.as_array().context("runs --json is not a list")?;
    anyhow::ensure!(
        runs.len() == 1 && runs[0]["status"] == "interrupted",
        "expected one interrupted run, got {runs:?}"
    );

    let (id, _) = backup(&scratch, "files")?;
    let list = snapshots(&scratch, Some("files"))?;
    anyhow::ensure!(list.len() == 1 && list[0]["id"] == id.as_str(), "{list:?}");
    restic_ok(&repo, &["check"])?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Retention and deduplication
// ---------------------------------------------------------------------------

#[test]
fn forget_with_keep_last_two_keeps_the_newest_two_and_prune_leaves_a_valid_repository()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let (src, target) = (scratch.path("src"), scratch.path("restored"));
    small_tree(&src)?;
    scratch.write_config(&repo_config(&dir_job(
        "files",
        &src,
        &target,
        "retention = { keep-last = 2 }",
    )))?;
    let mut ids = Vec::new();
    for i in 0..4 {
        // Each backup adds data of its own, so prune has something to remove.
        write_random_file(&src.join(format!("gen-{i}.bin")), 2 << 20)?;
        if i > 0 {
            std::fs::remove_file(src.join(format!("gen-{}.bin", i - 1)))?;
        }
        ids.push(backup(&scratch, "files")?.0);
    }
    anyhow::ensure!(snapshots(&scratch, Some("files"))?.len() == 4);

    let dry = cairn_ok(&scratch, &["--json", "forget", "--dry-run"])?.json()?;
    anyhow::ensure!(
        dry["forget"][0]["removed"].as_array().map(Vec::len) == Some(2),
        "dry run should list two snapshots to remove: {dry}"
    );
    anyhow::ensure!(
        snapshots(&scratch, Some("files"))?.len() == 4,
        "--dry-run removed snapshots"
    );

    cairn_ok(&scratch, &["forget", "--prune"])?;
    let left: Vec<String> = snapshots(&scratch, Some("files"))?
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    let mut expected = ids[2..].to_vec();
    let mut got = left.clone();
    expected.sort();
    got.sort();
    anyhow::ensure!(
        got == expected,
        "expected the newest two {expected:?}, have {left:?}"
    );
    cairn_ok(&scratch, &["check", "--read-data"])?;
    let repo = scratch.path("repo");
    restic_ok(&repo, &["check", "--read-data"])?;

    // The newest snapshot still restores.
    cairn_ok(&scratch, &["restore", "files"])?;
    assert_same_tree(&src, &target)?;
    Ok(())
}

#[test]
fn second_backup_of_unchanged_data_adds_less_than_a_mebibyte() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let (src, target) = (scratch.path("src"), scratch.path("restored"));
    small_tree(&src)?;
    write_random_file(&src.join("data.bin"), 32 << 20)?;
    scratch.write_config(&repo_config(&dir_job("files", &src, &target, "")))?;
    backup(&scratch, "files")?;
    let repo = scratch.path("repo");
    let first = dir_size(&repo)?;
    anyhow::ensure!(
        first > 32 << 20,
        "the first backup stored only {first} bytes"
    );
    backup(&scratch, "files")?;
    let second = dir_size(&repo)?;
    anyhow::ensure!(
        second - first < 1 << 20,
        "the second backup of unchanged data added {} bytes",
        second - first
    );
    anyhow::ensure!(snapshots(&scratch, Some("files"))?.len() == 2);
    Ok(())
}

// ---------------------------------------------------------------------------
// Copies, checks that read data, damage, and a wrong password
// ---------------------------------------------------------------------------

/// Every pack file under `repo/data`, with its size.
fn packs(repo: &Path) -> anyhow::Result<BTreeMap<PathBuf, u64>> {
    let mut out = BTreeMap::new();
    for sub in std::fs::read_dir(repo.join("data"))? {
        for pack in std::fs::read_dir(sub?.path())? {
            let pack = pack?;
            out.insert(pack.path(), pack.metadata()?.len());
        }
    }
    Ok(out)
}

#[test]
fn copy_to_checks_damage_and_a_wrong_password_through_the_cli() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let (src, target) = (scratch.path("src"), scratch.path("restored"));
    std::fs::create_dir(&src)?;
    std::fs::write(src.join("good.txt"), "intact\n")?;
    let offsite = format!(
        "[repositories.offsite]\npath = \"offsite\"\npassword-env = \"{PASSWORD_ENV}\"\n\n"
    );
    scratch.write_config(&format!(
        "{offsite}{}",
        repo_config(&dir_job("files", &src, &target, "copy-to = [\"offsite\"]"))
    ))?;

    // A backup is copied to `offsite` after it is committed.
    let (first, report) = backup(&scratch, "files")?;
    let run_id = report["run_id"].as_str().context("a run id")?.to_owned();
    let log = cairn_ok(&scratch, &["runs", "show", &run_id])?;
    anyhow::ensure!(
        log.stdout.contains("copied to repository `offsite`"),
        "{log}"
    );
    let listed: Value = serde_json::from_slice(&restic_ok(
        &scratch.path("offsite"),
        &["snapshots", "--json"],
    )?)?;
    anyhow::ensure!(listed.as_array().map(Vec::len) == Some(1), "{listed}");
    let out = cairn_ok(&scratch, &["copy", "--to", "offsite"])?;
    anyhow::ensure!(
        out.stdout
            .contains("0 snapshot(s) copied to `offsite`, 1 already there"),
        "{out}"
    );
    let out = cairn(&scratch, &["copy", "--to", "elsewhere"])?;
    anyhow::ensure!(
        out.code != Some(0) && out.stderr.contains("[repositories.elsewhere]"),
        "{out}"
    );

    // check: structure, a subset, all; the two data flags exclude each other.
    cairn_ok(&scratch, &["check"])?;
    let out = cairn_ok(&scratch, &["check", "--read-data-subset", "50%"])?;
    anyhow::ensure!(out.stdout.contains("data subset 50% read"), "{out}");
    let out = cairn(
        &scratch,
        &["check", "--read-data", "--read-data-subset", "1/2"],
    )?;
    out.expect_code(2)?;
    let out = cairn(&scratch, &["check", "--read-data-subset", "lots"])?;
    anyhow::ensure!(
        out.code != Some(0) && out.stderr.contains("not a data subset"),
        "{out}"
    );

    // A second backup adds a big file: its data lands in new packs (the
    // small file's is already stored). Damage them.
    let before = packs(&scratch.path("repo"))?;
    write_random_file(&src.join("bad.bin"), 2 << 20)?;
    backup(&scratch, "files")?;
    let mut damaged = Vec::new();
    for (pack, size) in packs(&scratch.path("repo"))? {
        if before.contains_key(&pack) || size < 1 << 20 {
            continue;
        }
        let mut bytes = std::fs::read(&pack)?;
        bytes[(size / 2) as usize] ^= 0x01;
        std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o644))?;
        std::fs::write(&pack, bytes)?;
        damaged.push(
            pack.file_name()
                .context("a name")?
                .to_string_lossy()
                .into_owned(),
        );
    }
    anyhow::ensure!(
        damaged.len() == 1,
        "expected one new data pack, damaged {damaged:?}"
    );
    let pack = &damaged[0];

    let out = cairn(&scratch, &["check", "--read-data"])?;
    out.expect_code(1)?;
    // restic and rustic name a pack by its first 8 hex digits.
    anyhow::ensure!(
        out.stderr.contains(&pack[..8]),
        "check does not name {pack}\n{out}"
    );

    // A restore fails naming the pack; --skip-damaged brings back the rest.
    let out = cairn(&scratch, &["restore", "files"])?;
    out.expect_code(1)?;
    anyhow::ensure!(
        out.stderr.contains(pack.as_str()) && out.stderr.contains("--skip-damaged"),
        "the restore's error names the pack and what to do\n{out}"
    );
    anyhow::ensure!(
        !target.join("bad.bin").exists(),
        "a damaged file was restored"
    );
    if target.exists() {
        std::fs::remove_dir_all(&target)?;
    }
    let out = cairn(&scratch, &["--json", "restore", "files", "--skip-damaged"])?;
    out.expect_code(0)?;
    anyhow::ensure!(std::fs::read_to_string(target.join("good.txt"))? == "intact\n");
    anyhow::ensure!(
        !target.join("bad.bin").exists(),
        "a damaged file was restored"
    );
    let run_id = out.json()?["run_id"]
        .as_str()
        .context("a run id")?
        .to_owned();
    let log = cairn_ok(&scratch, &["runs", "show", &run_id])?;
    anyhow::ensure!(
        log.stdout.contains("left out") && log.stdout.contains("bad.bin"),
        "the run log lists what was left out\n{log}"
    );

    // The first snapshot, in the copy, is untouched by the damage.
    let out = cairn(
        &scratch,
        &["copy", "--to", "offsite", "--job", "files", &first],
    )?;
    out.expect_code(0)?;

    // A wrong password: exit 12, as restic, for a command and for a run.
    let wrong = [(PASSWORD_ENV, "not the password")];
    for args in [&["snapshots"][..], &["backup", "files"], &["check"]] {
        let out = cairn_with_env(args, scratch.dir.path(), &wrong)?;
        out.expect_code(12)?;
        anyhow::ensure!(out.stderr.contains("password"), "{out}");
    }
    Ok(())
}
