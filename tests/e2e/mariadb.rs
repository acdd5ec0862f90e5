//! End-to-end tests of `builtin:mariadb` against the real MariaDB server on
//! 127.0.0.1:3306 (user `root`, no password): the `cairn` binary dumps a
//! database full of awkward data and objects into a restic-format
//! repository, restores it into a new database, and the two are compared
//! table by table, row by row and object by object.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::Context as _;
use serde_json::Value;

use crate::support::{CliOutput, Scratch, cairn_with_env};

const PASSWORD: &str = "mariadb e2e password";
const PASSWORD_ENV: &str = "CAIRN_TEST_PASSWORD";

/// The repository and state sections, then `jobs`.
fn repo_config(jobs: &str) -> String {
    format!(
        "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n[state]\npath = \"state.db\"\n\n{jobs}"
    )
}

/// A `builtin:mariadb` job dumping `database`, with extra lines.
fn maria_job(name: &str, database: &str, extra: &str) -> String {
    format!(
        "[jobs.{name}]\ntask = \"builtin:mariadb\"\n\
         params = {{ database = {database:?}, host = \"127.0.0.1\", port = 3306, user = \"root\" {extra} }}\n\
         allow.commands = [\"mariadb-dump\", \"mariadb\"]\n\n"
    )
}

fn cairn(scratch: &Scratch, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<CliOutput> {
    let mut all = vec![(PASSWORD_ENV, PASSWORD)];
    all.extend_from_slice(env);
    cairn_with_env(args, scratch.dir.path(), &all)
}

fn cairn_ok(scratch: &Scratch, args: &[&str]) -> anyhow::Result<CliOutput> {
    let out = cairn(scratch, args, &[])?;
    out.expect_code(0)?;
    Ok(out)
}

/// The task's result in a run report.
fn result_of(report: &Value) -> anyhow::Result<Value> {
    match &report["result"] {
        Value::String(text) => Ok(serde_json::from_str(text)?),
        Value::Null => anyhow::bail!("no result in {report}"),
        other => Ok(other.clone()),
    }
}

/// How many snapshots the repository holds.
fn snapshot_count(scratch: &Scratch) -> anyhow::Result<usize> {
    match cairn_ok(scratch, &["--json", "snapshots"])?.json()? {
        Value::Array(list) => Ok(list.len()),
        other => anyhow::bail!("`snapshots --json` printed {other}, not a list"),
    }
}

/// Run `sql` (several statements; `DELIMITER` works) with the `mariadb`
/// client as root, in `database` if given; its tab-separated output.
fn mariadb(database: Option<&str>, sql: &str) -> anyhow::Result<String> {
    let mut command = Command::new("mariadb");
    command.args([
        "--host=127.0.0.1",
        "--port=3306",
        "--user=root",
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
    ]);
    if let Some(db) = database {
        command.arg(format!("--database={db}"));
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running mariadb")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(sql.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "mariadb {database:?} failed on\n{sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim_end().to_owned())
}

/// Drops its databases when dropped (also when a test fails).
struct DropDatabases(Vec<String>);

impl Drop for DropDatabases {
    fn drop(&mut self) {
        for db in &self.0 {
            let _ = mariadb(None, &format!("DROP DATABASE IF EXISTS `{db}`"));
        }
    }
}

const TABLES: [&str; 3] = ["kinds", "big", "audit"];

/// `CHECKSUM TABLE` and the row count of each table.
fn table_checksums(db: &str) -> anyhow::Result<BTreeMap<String, String>> {
    TABLES
        .iter()
        .map(|t| {
            let line = mariadb(Some(db), &format!("CHECKSUM TABLE `{t}`"))?;
            let sum = line.rsplit('\t').next().unwrap_or_default().to_owned();
            let count = mariadb(Some(db), &format!("SELECT COUNT(*) FROM `{t}`"))?;
            Ok(((*t).to_owned(), format!("{count} rows, checksum {sum}")))
        })
        .collect()
}

/// Every row of `kinds`, every column in a form that shows each byte.
fn kinds_rows(db: &str) -> anyhow::Result<String> {
    mariadb(
        Some(db),
        "SELECT id, HEX(t), d, dt, HEX(b), HEX(vb), LENGTH(b), j FROM kinds ORDER BY id",
    )
}

const SCHEMA: &str = r#"
CREATE TABLE kinds (
  id INT PRIMARY KEY,
  t TEXT CHARACTER SET utf8mb4,
  d DECIMAL(38, 9),
  dt DATETIME(6),
  b BLOB,
  vb VARBINARY(64),
  j JSON
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE audit (
  id INT AUTO_INCREMENT PRIMARY KEY,
  kind_id INT NOT NULL,
  note VARCHAR(100) NOT NULL
) ENGINE=InnoDB;
CREATE TRIGGER kinds_audit AFTER INSERT ON kinds
  FOR EACH ROW INSERT INTO audit (kind_id, note) VALUES (NEW.id, 'inserted');
INSERT INTO kinds VALUES
  (1, 'plain', 1.5, '2024-02-29 23:59:59.123456', X'00ff10', X'000000', '{"a": 1, "b": [true, null]}'),
  (2, 'tab\there, newline\nand ''quotes'', a backslash \\ and ünïcödé ✓ 🦀 𝄞',
      -12345678901234567890.123456789, '1000-01-01 00:00:00', REPEAT(X'deadbeef00', 2000),
      X'00', '[1, "two", {"three": 3.0}]'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, '', 0, '9999-12-31 23:59:59.999999', X'', X'', '{}'),
  (5, 'NUL in text? no: \0 is a byte in blobs', 0.000000001, '1970-01-01 00:00:01', X'5c0027225c30', X'0d0a1a', '"just a string"');
CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(64), n BIGINT) ENGINE=InnoDB;
SET SESSION max_recursive_iterations = 1000000;
INSERT INTO big
  WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 100000)
  SELECT n, MD5(n), n * 7919 FROM seq;
CREATE VIEW kinds_text AS SELECT id, t FROM kinds WHERE t IS NOT NULL AND t <> '';
DELIMITER //
CREATE PROCEDURE add_kind(IN p_id INT, IN p_t TEXT)
BEGIN
  INSERT INTO kinds (id, t) VALUES (p_id, p_t);
END//
CREATE FUNCTION double_it(x INT) RETURNS INT DETERMINISTIC
BEGIN
  RETURN x * 2;
END//
DELIMITER ;
CREATE EVENT prune_audit ON SCHEDULE EVERY 1 DAY DO DELETE FROM audit WHERE id < 0;
"#;

#[test]
fn mariadb_backup_restores_into_a_new_database_with_identical_rows_and_objects()
-> anyhow::Result<()> {
    let unique = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let src = format!("cairn_e2e_src_{unique}");
    let dst = format!("cairn_e2e_dst_{unique}");
    let _cleanup = DropDatabases(vec![src.clone(), dst.clone()]);

    mariadb(
        None,
        &format!("CREATE DATABASE `{src}` CHARACTER SET utf8mb4"),
    )?;
    mariadb(Some(&src), SCHEMA)?;
    let before = table_checksums(&src)?;
    anyhow::ensure!(before["big"].starts_with("100000 rows"), "{before:?}");
    anyhow::ensure!(before["audit"].starts_with("5 rows"), "{before:?}");
    let rows_before = kinds_rows(&src)?;

    let scratch = Scratch::new()?;
    scratch.write_config(&repo_config(&maria_job("maria", &src, "")))?;
    let out = cairn_ok(&scratch, &["--json", "backup", "maria"])?;
    let report = out.json()?;
    let snapshot_id = report["run"]["snapshot_id"]
        .as_str()
        .with_context(|| format!("no snapshot id\n{out}"))?
        .to_owned();
    let result = result_of(&report)?;
    let artifact = format!("{src}.sql");
    anyhow::ensure!(
        result["databases"][0]["artifact"] == artifact.as_str(),
        "result {result}"
    );

    // The dump is plain SQL text in the restic snapshot: no database name in
    // it (so it restores anywhere), binary data as hex, every object kind.
    let dump = restic_dump(&scratch, &snapshot_id, &artifact)?;
    let text = String::from_utf8(dump.clone()).context("the dump is not UTF-8 text")?;
    anyhow::ensure!(
        result["bytes"].as_u64() == Some(dump.len() as u64),
        "result says {} bytes, restic dumped {}",
        result["bytes"],
        dump.len()
    );
    for needle in [
        "CREATE TABLE `kinds`",
        "0x00FF10",
        "CREATE DEFINER=",
        "PROCEDURE `add_kind`",
        "FUNCTION `double_it`",
        "TRIGGER kinds_audit AFTER INSERT ON kinds",
        "EVENT `prune_audit`",
        "VIEW `kinds_text`",
        "ünïcödé ✓ 🦀 𝄞",
    ] {
        anyhow::ensure!(text.contains(needle), "the dump lacks {needle:?}");
    }
    // (Only `-- ` comments may name it.)
    let naming: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("--") && l.contains(&src))
        .collect();
    anyhow::ensure!(
        naming.is_empty(),
        "the dump names the source database, so it would not restore elsewhere: {naming:?}"
    );

    cairn_ok(
        &scratch,
        &[
            "restore",
            "maria",
            "--set",
            &format!("target-database={dst}"),
        ],
    )?;
    // The source goes away: the copy must stand on its own.
    mariadb(None, &format!("DROP DATABASE `{src}`"))?;

    let after = table_checksums(&dst)?;
    anyhow::ensure!(
        before == after,
        "restored tables differ:\nbefore {before:?}\nafter  {after:?}"
    );
    let rows_after = kinds_rows(&dst)?;
    anyhow::ensure!(
        rows_before == rows_after,
        "restored rows differ:\nbefore\n{rows_before}\nafter\n{rows_after}"
    );
    anyhow::ensure!(
        rows_after.contains("\t10000\t"),
        "the 10000-byte blob: {rows_after}"
    );

    // The view, the routines, the trigger and the event are there and work.
    anyhow::ensure!(
        mariadb(
            Some(&dst),
            "SELECT GROUP_CONCAT(id ORDER BY id) FROM kinds_text"
        )? == "1,2,5"
    );
    anyhow::ensure!(mariadb(Some(&dst), "SELECT double_it(21)")? == "42");
    mariadb(Some(&dst), "CALL add_kind(100, 'via the procedure')")?;
    anyhow::ensure!(
        mariadb(
            Some(&dst),
            "SELECT note FROM audit WHERE kind_id = 100 AND id > 5"
        )? == "inserted",
        "the trigger did not fire in the restored database"
    );
    anyhow::ensure!(
        mariadb(
            None,
            &format!(
                "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{dst}'"
            ),
        )? == "prune_audit"
    );

    // A restore into the now non-empty database is refused and changes nothing.
    let audit_rows = mariadb(Some(&dst), "SELECT COUNT(*) FROM audit")?;
    let out = cairn(
        &scratch,
        &[
            "restore",
            "maria",
            "--set",
            &format!("target-database={dst}"),
        ],
        &[],
    )?;
    anyhow::ensure!(
        out.code != Some(0),
        "restore into a non-empty target succeeded\n{out}"
    );
    anyhow::ensure!(
        out.stderr
            .contains(&format!("target database `{dst}` is not empty"))
            && out.stderr.contains("overwrite = true"),
        "the refusal does not say why and what to do\n{out}"
    );
    anyhow::ensure!(mariadb(Some(&dst), "SELECT COUNT(*) FROM audit")? == audit_rows);
    anyhow::ensure!(mariadb(Some(&dst), "SELECT COUNT(*) FROM kinds")? == "6");

    // With `overwrite` it goes through, back to the snapshot's rows.
    cairn_ok(
        &scratch,
        &[
            "restore",
            "maria",
            "--set",
            &format!("target-database={dst}"),
            "--set",
            "overwrite=true",
        ],
    )?;
    anyhow::ensure!(kinds_rows(&dst)? == rows_before);
    Ok(())
}

/// `restic dump SNAPSHOT /ARTIFACT` of the scratch repository.
fn restic_dump(scratch: &Scratch, snapshot: &str, artifact: &str) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("restic")
        .arg("-r")
        .arg(scratch.path("repo"))
        .args(["--no-cache", "dump", snapshot, &format!("/{artifact}")])
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD_FILE")
        .output()
        .context("running restic")?;
    anyhow::ensure!(
        out.status.success(),
        "restic dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

#[test]
fn mariadb_backup_with_a_wrong_password_fails_naming_the_denial_and_commits_nothing()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(&repo_config(
        "[secrets.MARIA_PW]\nenv = \"CAIRN_TEST_MARIA_PW\"\n\n\
         [jobs.maria]\ntask = \"builtin:mariadb\"\n\
         params = { database = \"test\", user = \"root\", password-secret = \"MARIA_PW\" }\n\n\
         [jobs.maria.allow]\ncommands = [\"mariadb-dump\", \"mariadb\"]\n\
         secrets.MARIA_PW = { env = \"MYSQL_PWD\", programs = [\"mariadb-dump\", \"mariadb\"] }\n",
    ))?;
    cairn_ok(&scratch, &["init"])?;
    let before = snapshot_count(&scratch)?;

    let wrong = [("CAIRN_TEST_MARIA_PW", "certainly not the password")];
    let out = cairn(&scratch, &["backup", "maria"], &wrong)?;
    anyhow::ensure!(
        out.code != Some(0),
        "backup with a wrong password succeeded\n{out}"
    );
    anyhow::ensure!(
        out.stderr.contains("Access denied") && out.stderr.contains("mariadb-dump"),
        "the error does not name the denial\n{out}"
    );
    anyhow::ensure!(
        !out.stderr.contains("certainly not the password"),
        "the password leaked into the error\n{out}"
    );
    anyhow::ensure!(
        snapshot_count(&scratch)? == before,
        "a snapshot was committed"
    );
    Ok(())
}
