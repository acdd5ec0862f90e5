//! The hostile-guest suite: a Task (`tasks/testing/hostile-task`) and a
//! Function (`tasks/testing/hostile-function`), built from source with the
//! tests, try each way out of the sandbox that `SECURITY.md` closes. Every
//! test asserts the specific denial, that nothing outside the grants was
//! read, changed or left running, and that the host and its run history are
//! fine afterwards.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cairn::runner::{RunOptions, RunReport, Runner};
use cairn::state::{RunKind, RunStatus};
use serde_json::{Map, Value, json};

use crate::support::{self, Scratch, TestServer, cairn_with_env, test_cache_dir};

/// The repository password's environment variable for these tests.
const PASSWORD_ENV: &str = "CAIRN_TEST_HOSTILE_PASSWORD";

fn hostile_task() -> PathBuf {
    Path::new(cairn::builtins::test_programs_dir()).join("hostile_task.wasm")
}

fn hostile_function() -> PathBuf {
    Path::new(cairn::builtins::test_programs_dir()).join("hostile_function.wasm")
}

/// A config with a local repository, the hostile function and job `h`
/// running the hostile task with `extra` job keys and `allow` grants.
pub(crate) fn config(extra: &str, allow: &str) -> String {
    // SAFETY: every test sets the same value.
    unsafe { std::env::set_var(PASSWORD_ENV, "hostile") };
    format!(
        "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n\
         [functions.hostile]\nmodule = {:?}\n\n\
         [jobs.h]\ntask = {:?}\n{timeout}{extra}\n\n[jobs.h.allow]\n{allow}\n",
        hostile_function().display().to_string(),
        hostile_task().display().to_string(),
        timeout = if extra.contains("timeout") {
            ""
        } else {
            "timeout = \"60s\"\n"
        },
    )
}

/// One run of `kind` of job `h` with `params`.
async fn run(runner: &Runner, kind: RunKind, params: Value) -> anyhow::Result<RunReport> {
    let overrides: Map<String, Value> = params
        .as_object()
        .cloned()
        .context("params are an object")?;
    runner
        .run(
            "h",
            kind,
            RunOptions {
                overrides,
                ..RunOptions::default()
            },
        )
        .await
}

pub(crate) async fn backup(runner: &Runner, params: Value) -> anyhow::Result<RunReport> {
    run(runner, RunKind::Backup, params).await
}

/// The result of a run that must have succeeded.
#[track_caller]
pub(crate) fn ok(report: &RunReport) -> Value {
    assert!(
        report.succeeded(),
        "expected the run to succeed, it ended {:?}: {:?}",
        report.run.status,
        report.run.error
    );
    report.result.clone().unwrap_or(Value::Null)
}

/// The error of a run that must have failed, with every needle in it.
#[track_caller]
pub(crate) fn denied(report: &RunReport, needles: &[&str]) -> String {
    let error = report.run.error.clone().unwrap_or_else(|| {
        panic!(
            "expected the run to fail, it ended {:?} with {:?}",
            report.run.status, report.result
        )
    });
    for needle in needles {
        assert!(error.contains(needle), "expected {needle:?} in:\n  {error}");
    }
    error
}

/// The host still works and remembers: a plain backup of the job succeeds,
/// and no run of it is left queued or running.
async fn host_is_fine(runner: &Runner) -> anyhow::Result<()> {
    let report = backup(
        runner,
        json!({"attack": "write", "name": "still-fine", "text": "ok"}),
    )
    .await?;
    ok(&report);
    let runs = runner.store().runs(Some("h"), 1000)?;
    assert!(
        runs.iter().all(|r| r.status.is_finished()),
        "a run is left unfinished: {runs:?}"
    );
    Ok(())
}

/// Every file under `dir`, relative, sorted (symlinks not followed).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Processes whose command line contains `needle`, after waiting up to
/// `grace` for them to go.
async fn survivors(needle: &str, grace: Duration) -> Vec<String> {
    let deadline = Instant::now() + grace;
    loop {
        let found: Vec<String> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                // Zombies have an empty command line.
                text.contains(needle).then(|| text.trim().to_owned())
            })
            .collect();
        if found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Filesystem
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_a_module_plants_are_stored_as_links_and_never_followed() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let data = scratch.path("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("a.txt"), "granted")?;
    let runner = scratch.runner(&config(
        "",
        &format!(
            "paths = {{ {:?} = \"read-write\" }}",
            data.display().to_string()
        ),
    ))?;
    let state_dir = scratch.path(".cairn");
    // Links to /etc and to the state database sit in the granted directory
    // (put there by a granted program, or by whoever owns the data); the
    // module adds one of its own through WASI, which refuses links that
    // leave the preopen, and asks the host to archive the directory.
    std::os::unix::fs::symlink("/etc", data.join("etc"))?;
    std::os::unix::fs::symlink(&state_dir, data.join("state"))?;
    let planted = backup(
        &runner,
        json!({"attack": "symlink", "link": data.join("up").display().to_string(), "target": "/"}),
    )
    .await?;
    denied(&planted, &["Operation not permitted"]);
    let plant = json!({"attack": "steps", "steps": [
        {"attack": "add-tree", "name": "data", "path": data.display().to_string()},
    ]});
    let result = ok(&backup(&runner, plant).await?);
    let stored = result["results"][2]["artifact"]["size"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        stored < 1024,
        "only the granted file's bytes are stored: {result}"
    );

    // The links come back as links: nothing of /etc or the state was read.
    let restored = scratch.path("restored");
    let runner2 = scratch.runner(&config(
        "",
        &format!(
            "paths = {{ {:?} = \"read-write\" }}",
            restored.display().to_string()
        ),
    ))?;
    let back = run(
        &runner2,
        RunKind::Restore,
        json!({"attack": "restore-tree", "name": "data", "target": restored.display().to_string()}),
    )
    .await?;
    ok(&back);
    assert!(restored.join("etc").is_symlink(), "{:?}", tree(&restored));
    assert!(restored.join("state").is_symlink(), "{:?}", tree(&restored));
    assert_eq!(std::fs::read_to_string(restored.join("a.txt"))?, "granted");
    assert_eq!(tree(&restored), ["a.txt", "etc", "state"]);

    // Archiving through a link is refused, naming the link.
    let through = backup(
        &runner,
        json!({"attack": "add-tree", "name": "etc", "path": data.join("etc").display().to_string()}),
    )
    .await?;
    denied(&through, &["denied: ", "is a symlink", "/data/etc"]);
    let through = backup(
        &runner,
        json!({"attack": "add-tree", "name": "db", "path": data.join("state/state.db").display().to_string()}),
    )
    .await?;
    denied(&through, &["denied: ", "symlink"]);
    host_is_fine(&runner).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_never_writes_through_a_symlink_and_keeps_to_its_target() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let source = scratch.path("source");
    std::fs::create_dir_all(source.join("x"))?;
    std::fs::write(source.join("x/evil.txt"), "restored")?;
    let target = scratch.path("target");
    let outside = scratch.path("outside");
    std::fs::create_dir_all(&target)?;
    std::fs::create_dir_all(&outside)?;
    let runner = scratch.runner(&config(
        "",
        &format!(
            "paths = {{ {:?} = \"read\", {:?} = \"read-write\" }}",
            source.display().to_string(),
            target.display().to_string()
        ),
    ))?;
    ok(&backup(
        &runner,
        json!({"attack": "add-tree", "name": "files", "path": source.display().to_string()}),
    )
    .await?);

    // The target holds `x -> outside` (WASI would not let the module make
    // it; a granted program or the target's owner could have), and the
    // module restores over it.
    std::os::unix::fs::symlink(&outside, target.join("x"))?;
    let attack = json!({"attack": "restore-tree", "name": "files",
                        "target": target.display().to_string(), "overwrite": true});
    ok(&run(&runner, RunKind::Restore, attack).await?);
    assert!(
        tree(&outside).is_empty(),
        "written outside: {:?}",
        tree(&outside)
    );
    assert!(!target.join("x").is_symlink());
    assert_eq!(
        std::fs::read_to_string(target.join("x/evil.txt"))?,
        "restored"
    );

    // Without `overwrite`, a target with entries is refused and left alone.
    let again = run(
        &runner,
        RunKind::Restore,
        json!({"attack": "restore-tree", "name": "files", "target": target.display().to_string()}),
    )
    .await?;
    denied(
        &again,
        &["invalid: ", "is not empty", "`x`", "overwrite = true"],
    );

    // `..` leads outside the grant: refused before anything is touched.
    for escape in [
        format!("{}/../outside", target.display()),
        format!("{}/x/../../outside", target.display()),
    ] {
        let out = run(
            &runner,
            RunKind::Restore,
            json!({"attack": "restore-tree", "name": "files", "target": escape}),
        )
        .await?;
        denied(
            &out,
            &[
                "denied: ",
                "read-write access to",
                "is not granted to job `h`",
            ],
        );
    }
    assert!(tree(&outside).is_empty());
    host_is_fine(&runner).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_own_files_are_out_of_reach_and_the_compile_cache_is_verified()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    // A grant that contains the state database (and this config file) is a
    // configuration error, naming both.
    let all = scratch.path("");
    let err = scratch
        .runner(&config(
            "",
            &format!(
                "paths = {{ {:?} = \"read-write\" }}",
                all.display().to_string()
            ),
        ))
        .err()
        .context("granting the scratch directory must be refused")?;
    let text = format!("{err:#}");
    for needle in ["state database", "configuration file", "repository ("] {
        assert!(text.contains(needle), "{needle}: {text}");
    }

    // A compile cache entry changed on disk is discarded, never loaded.
    let cache = scratch.path("cache");
    let body = format!(
        "[runtime]\ncache-dir = {:?}\n\n{}",
        cache.display().to_string(),
        config("", "")
    );
    let file = scratch.path("cached.toml");
    std::fs::write(&file, &body)?;
    let fresh = || -> anyhow::Result<Runner> {
        let config = cairn::config::load(&file)?;
        let store =
            std::sync::Arc::new(cairn::state::sqlite::SqliteStore::open(&config.state_path)?);
        let runtime = cairn::runtime::Runtime::new(Some(&config.cache_dir))?;
        Ok(Runner::new(config, runtime, store))
    };
    let runner = fresh()?;
    ok(&backup(&runner, json!({"attack": "note", "key": "k", "value": "v"})).await?);
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    anyhow::ensure!(!entries.is_empty(), "nothing cached in {}", cache.display());
    for entry in &entries {
        let mut bytes = std::fs::read(entry)?;
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(entry, &bytes)?;
    }
    // A fresh runtime (a new process would be the same) must recompile.
    let runner = fresh()?;
    ok(&backup(&runner, json!({"attack": "note", "key": "k", "value": "v"})).await?);
    for entry in &entries {
        let bytes = std::fs::read(entry)?;
        assert!(
            !bytes.is_empty(),
            "{} was rewritten with an authentic entry",
            entry.display()
        );
    }
    // The key is beside the cache, not in it, and private.
    let key = cairn::sys::cache_key_path(&cache);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    host_is_fine(&runner).await
}

// ---------------------------------------------------------------------------
// Programs
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_and_shell_variables_and_undeclared_ones_are_refused() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&config("", r#"commands = { sh = { env = ["GREETING"] } }"#))?;
    for (var, why) in [
        ("LD_PRELOAD", "dynamic loader"),
        ("BASH_FUNC_echo%%", "invalid environment variable name"),
        ("SHELLOPTS", "shells behave"),
        ("PS4", "shells evaluate it"),
        ("PERL5OPT", "Perl"),
        ("GCONV_PATH", "load code"),
        ("UNDECLARED", "declares only GREETING"),
    ] {
        let out = backup(
            &runner,
            json!({"attack": "run", "program": "sh", "args": ["-c", "echo hi"],
                   "env": {var: "/tmp/evil.so"}}),
        )
        .await?;
        let error = denied(&out, &[why]);
        assert!(
            error.contains("denied: ") || error.contains("invalid: "),
            "{var}: {error}"
        );
    }
    let fine = ok(&backup(
        &runner,
        json!({"attack": "run", "program": "sh", "args": ["-c", "echo $GREETING"],
               "env": {"GREETING": "hello"}}),
    )
    .await?);
    assert_eq!(fine["stdout"], "hello\n");
    host_is_fine(&runner).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argument_rules_and_the_working_directory_hold() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let granted = scratch.path("granted");
    std::fs::create_dir_all(granted.join("sub"))?;
    std::os::unix::fs::symlink("/", granted.join("root"))?;
    let runner = scratch.runner(&config(
        "",
        &format!(
            "commands = {{ sh = {{ deny-args = [\"*rm *\"] }}, pwd = {{ allow-args = [\"-P\"] }} }}\n\
             paths = {{ {:?} = \"read\" }}",
            granted.display().to_string()
        ),
    ))?;
    let refused = backup(
        &runner,
        json!({"attack": "run", "program": "sh", "args": ["-c", "rm -rf /tmp/nothing"]}),
    )
    .await?;
    denied(
        &refused,
        &[
            "denied: ",
            "argument `rm -rf /tmp/nothing` of `sh` is refused",
            "`*rm *`",
        ],
    );
    let refused = backup(
        &runner,
        json!({"attack": "run", "program": "pwd", "args": ["-L"]}),
    )
    .await?;
    denied(&refused, &["denied: ", "no `allow-args` pattern"]);

    for (cwd, needle) in [
        (format!("{}/../..", granted.display()), "is not granted"),
        (format!("{}/root", granted.display()), "is a symlink"),
        (format!("{}/root/etc", granted.display()), "symlink"),
        ("relative".to_owned(), "must be absolute"),
    ] {
        let out = backup(
            &runner,
            json!({"attack": "run", "program": "pwd", "args": ["-P"], "cwd": cwd}),
        )
        .await?;
        denied(&out, &["working directory", needle]);
    }
    let inside = ok(&backup(
        &runner,
        json!({"attack": "run", "program": "pwd", "args": ["-P"],
               "cwd": granted.join("sub").display().to_string()}),
    )
    .await?);
    let real = std::fs::canonicalize(granted.join("sub"))?;
    assert_eq!(inside["stdout"], format!("{}\n", real.display()));
    host_is_fine(&runner).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_outlives_its_call_even_after_setsid() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&config("", r#"commands = ["sh", "setsid"]"#))?;
    // A child that leaves the session and the process group, then returns.
    let marker = "31341";
    let out = ok(&backup(
        &runner,
        json!({"attack": "run", "program": "sh",
               "args": ["-c", format!("setsid sleep {marker} & echo started")]}),
    )
    .await?);
    assert_eq!(out["stdout"], "started\n");
    let left = survivors(&format!("sleep {marker}"), Duration::from_secs(5)).await;
    assert!(left.is_empty(), "left running: {left:?}");

    // The same through storage, and with a timeout in restore-to-command.
    let marker = "31342";
    ok(&backup(
        &runner,
        json!({"attack": "from-command", "name": "dump", "program": "sh",
               "args": ["-c", format!("setsid sleep {marker} & echo dumped")]}),
    )
    .await?);
    let left = survivors(&format!("sleep {marker}"), Duration::from_secs(5)).await;
    assert!(left.is_empty(), "left running: {left:?}");

    let marker = "31343";
    let started = Instant::now();
    let out = run(
        &runner,
        RunKind::Restore,
        json!({"attack": "to-command", "name": "dump", "program": "sh", "timeout_ms": 1500,
               "args": ["-c", format!("setsid sleep {marker} & cat >/dev/null; sleep {marker}")]}),
    )
    .await?;
    denied(
        &out,
        &[
            "limit: ",
            "did not finish within 1s500ms",
            "killed with every process",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let left = survivors(&format!("sleep {marker}"), Duration::from_secs(5)).await;
    assert!(left.is_empty(), "left running: {left:?}");
    host_is_fine(&runner).await
}

#[test]
fn the_subreaper_fallback_also_kills_escaped_descendants() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(&config("", r#"commands = ["sh", "setsid"]"#))?;
    let marker = "31344";
    let out = cairn_with_env(
        &[
            "--json",
            "backup",
            "h",
            "--set",
            "attack=run",
            "--set",
            "program=sh",
            "--set",
            &format!("args=[\"-c\", \"setsid sleep {marker} & echo started\"]"),
        ],
        scratch.dir.path(),
        &[
            (PASSWORD_ENV, "hostile"),
            ("CAIRN_CONTAINMENT", "subreaper"),
        ],
    )?;
    out.expect_code(0)?;
    let rt = tokio::runtime::Runtime::new()?;
    let left = rt.block_on(survivors(
        &format!("sleep {marker}"),
        Duration::from_secs(5),
    ));
    assert!(left.is_empty(), "left running: {left:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Liveness
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_never_blocks_the_module_or_the_run() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let data = scratch.path("data");
    std::fs::create_dir_all(&data)?;
    let runner = scratch.runner(&config(
        "timeout = \"3s\"",
        &format!("paths = {{ {:?} = \"read\" }}", data.display().to_string()),
    ))?;
    let started = Instant::now();
    let listed = ok(&backup(&runner, json!({"attack": "stream-then-list", "name": "s"})).await?);
    assert_eq!(listed["notes"], json!({"while": "streaming"}));
    assert_eq!(listed["finished"]["name"], "s");
    let tree = ok(&backup(
        &runner,
        json!({"attack": "stream-then-tree", "name": "s", "path": data.display().to_string()}),
    )
    .await?);
    assert!(
        tree["tree"]["Err"]
            .as_str()
            .is_some_and(|e| e.contains("while a stream artifact is being written")),
        "{tree}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // A module that holds a stream open forever is stopped by the run's
    // timeout, recorded failed, and commits nothing.
    let started = Instant::now();
    let held = backup(&runner, json!({"attack": "hold-stream", "name": "held"})).await?;
    denied(&held, &["timeout of 3s"]);
    assert_eq!(held.run.status, RunStatus::Failed);
    assert!(held.run.snapshot_id.is_none());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    host_is_fine(&runner).await
}

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

/// A value no test prints by accident.
fn secret_value() -> String {
    format!("s3cret-{}-v@lue/x", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_come_back_to_the_module_or_the_record() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let secret = secret_value();
    std::fs::write(scratch.path("pw"), format!("{secret}\n"))?;
    let body = format!(
        "[secrets.PW]\nfile = {:?}\n\n{}",
        scratch.path("pw").display().to_string(),
        config(
            "",
            &format!(
                "http = [{url:?}]\ncommands = [\"sh\", \"base64\"]\nfunctions = [\"hostile\"]\n\
                 secrets.PW = {{ header = \"Authorization\", origins = [{url:?}], \
                 env = \"PW\", programs = [\"sh\"], readable = true }}",
                url = server.url
            ),
        )
    );
    let runner = scratch.runner(&body)?;
    let b64 = cairn::capabilities::redact::base64(
        secret.as_bytes(),
        cairn::capabilities::redact::Alphabet::Standard,
    );

    // A program prints the secret it was given, plainly and in base64.
    let out = ok(&backup(
        &runner,
        json!({"attack": "run", "program": "sh", "env": {"PW": "{{secret:PW}}"},
               "args": ["-c", "echo \"$PW\"; echo \"$PW\" >&2; printf %s \"$PW\" | base64 -w0"]}),
    )
    .await?);
    let text = out.to_string();
    assert!(!text.contains(&secret) && !text.contains(&b64), "{text}");
    assert_eq!(out["stdout"], "***\n***", "{out}");

    // A server echoes the header back.
    let out = ok(&backup(
        &runner,
        json!({"attack": "http", "url": format!("{}/echo", server.url),
               "headers": {"authorization": "Bearer {{secret:PW}}"}}),
    )
    .await?);
    assert!(!out.to_string().contains(&secret), "{out}");
    assert!(
        out["body"]
            .as_str()
            .is_some_and(|b| b.contains("Bearer ***")),
        "{out}"
    );
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s.headers.get("authorization") == Some(&format!("Bearer {secret}"))),
        "the server got the real value"
    );

    // A failing dump whose last stderr line is the secret.
    let failed = backup(
        &runner,
        json!({"attack": "from-command", "name": "d", "program": "sh", "env": {"PW": "{{secret:PW}}"},
               "args": ["-c", "echo \"$PW\" >&2; exit 3"]}),
    )
    .await?;
    let error = denied(&failed, &["exited with code 3"]);
    assert!(!error.contains(&secret), "{error}");

    // A Function with the job's secrets returns one, in its result and in an error.
    let out = ok(&backup(
        &runner,
        json!({"attack": "call", "function": "hostile", "params": {"attack": "read-secret", "name": "PW"}}),
    )
    .await?);
    assert!(
        !out.to_string().contains(&secret) && !out.to_string().contains(&b64),
        "{out}"
    );
    let failed = backup(
        &runner,
        json!({"attack": "call", "function": "hostile", "params": {"attack": "secret-in-error", "name": "PW"}}),
    )
    .await?;
    let error = denied(&failed, &["leaking *** through an error"]);
    assert!(!error.contains(&secret), "{error}");

    // The module stores what it read in state and notes, and logs it.
    let out = ok(&backup(
        &runner,
        json!({"attack": "steps", "steps": [
            {"attack": "secret", "name": "PW"},
            {"attack": "note", "key": "pw", "value": secret},
        ]}),
    )
    .await?);
    assert!(out.to_string().contains(&secret) || out.to_string().contains("***"));
    let report_text = serde_json::to_string(&out)?;
    assert!(
        !report_text.contains(&secret),
        "the recorded result: {report_text}"
    );

    // Written to stdout in pieces, over several lines, like a key file.
    let multi = format!("-----BEGIN KEY-----\n{secret}\n-----END KEY-----");
    std::fs::write(scratch.path("pw"), &multi)?;
    let runner = scratch.runner(&body)?;
    ok(&backup(&runner, json!({"attack": "print-secret", "name": "PW"})).await?);

    // Nothing in the run history or the state store holds it.
    for run in runner.store().runs(Some("h"), 100)? {
        let record = serde_json::to_string(&run)?;
        assert!(
            !record.contains(&secret) && !record.contains(&b64),
            "{record}"
        );
        for line in runner.store().logs(&run.id)? {
            let line = serde_json::to_string(&line)?;
            assert!(!line.contains(&secret) && !line.contains(&b64), "{line}");
        }
    }
    host_is_fine(&runner).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_go_only_where_they_are_bound_and_credentials_stay_with_their_origin()
-> anyhow::Result<()> {
    let a = TestServer::start().await?;
    let b = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let secret = secret_value();
    std::fs::write(scratch.path("pw"), &secret)?;
    let body = format!(
        "[secrets.PW]\nfile = {:?}\n\n{}",
        scratch.path("pw").display().to_string(),
        config(
            "",
            &format!(
                "http = [{a:?}, {b:?}]\ncommands = [\"sh\"]\n\
                 secrets.PW = {{ header = \"Authorization\", origins = [{a:?}] }}",
                a = a.url,
                b = b.url
            ),
        )
    );
    let runner = scratch.runner(&body)?;
    for (params, needle) in [
        (
            json!({"attack": "http", "url": format!("{}/echo", b.url),
                   "headers": {"authorization": "{{secret:PW}}"}}),
            "binds it to header authorization of",
        ),
        (
            json!({"attack": "http", "url": format!("{}/echo", a.url),
                   "headers": {"x-leak": "{{secret:PW}}"}}),
            "may not go to header `x-leak`",
        ),
        (
            json!({"attack": "http", "url": format!("{}/echo", a.url),
                   "headers": {"host": "evil.example.com"}}),
            "header `host` cannot be set by a module",
        ),
        (
            json!({"attack": "run", "program": "sh", "args": ["-c", "true"],
                   "env": {"PW": "{{secret:PW}}"}}),
            "declares none for it",
        ),
    ] {
        let out = backup(&runner, params).await?;
        let error = denied(&out, &["denied: ", needle]);
        assert!(!error.contains(&secret), "{error}");
    }
    assert!(b.seen().is_empty(), "b saw {:?}", b.seen());

    // A redirect from a to b (both granted) drops the credentials on the way.
    let to = format!("{}/echo", b.url);
    let out = ok(&backup(
        &runner,
        json!({"attack": "http", "url": format!("{}/redirect?to={to}", a.url),
               "headers": {"authorization": "Bearer {{secret:PW}}", "cookie": "session=1"}}),
    )
    .await?);
    assert_eq!(out["status"], 200, "{out}");
    let seen = b.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!seen[0].headers.contains_key("authorization"), "{seen:?}");
    assert!(!seen[0].headers.contains_key("cookie"), "{seen:?}");
    host_is_fine(&runner).await
}

// ---------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_logs_state_notes_results_and_streams_stop_at_their_limits() -> anyhow::Result<()>
{
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&config(
        "memory = \"512MiB\"\noutput-limit = \"16MiB\"\nstate-keys = 50\nstate-limit = \"64KiB\"\nresult-limit = \"256KiB\"\n\
         open-streams = 4\nlog-limit = \"1MiB\"",
        "",
    ))?;
    let db = scratch.path(".cairn/state.db");
    let before = std::fs::metadata(&db)?.len();

    // Ten 40 MiB log lines: each cut, the log capped, the database small.
    let out = ok(&backup(
        &runner,
        json!({"attack": "log-flood", "lines": 10, "mib": 40}),
    )
    .await?);
    assert_eq!(out["logged"], 10);
    let report = runner.store().runs(Some("h"), 1)?.remove(0);
    let lines = runner.store().logs(&report.id)?;
    let longest = lines.iter().map(|l| l.message.len()).max().unwrap_or(0);
    assert!(longest < 17 << 10, "a kept line is {longest} bytes");
    assert!(
        lines.iter().any(|l| l.message.contains("more bytes cut")),
        "{:?}",
        lines
            .iter()
            .map(|l| &l.message[..l.message.len().min(80)])
            .collect::<Vec<_>>()
    );
    let grown = std::fs::metadata(&db)?.len().saturating_sub(before);
    assert!(grown < 4 << 20, "the state database grew by {grown} bytes");

    // One 8 MiB line on stdout: logged cut.
    ok(&backup(&runner, json!({"attack": "print-flood", "bytes": 8 << 20})).await?);

    let out = ok(&backup(
        &runner,
        json!({"attack": "state-flood", "keys": 100, "bytes": 10}),
    )
    .await?);
    assert_eq!(out["set"], 50, "{out}");
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("state-keys")),
        "{out}"
    );
    let out = ok(&backup(
        &runner,
        json!({"attack": "state-flood", "keys": 40, "bytes": 4000}),
    )
    .await?);
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("state-limit")),
        "{out}"
    );

    let out = ok(&backup(
        &runner,
        json!({"attack": "notes-flood", "count": 100, "bytes": 10000}),
    )
    .await?);
    assert!(out["set"].as_u64().is_some_and(|n| n < 30), "{out}");
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("result-limit")),
        "{out}"
    );

    let big = backup(&runner, json!({"attack": "big-result", "mib": 1})).await?;
    denied(&big, &["result-limit is 256 KiB"]);
    assert!(big.run.snapshot_id.is_none());

    ok(&backup(
        &runner,
        json!({"attack": "write", "name": "s", "text": "stream"}),
    )
    .await?);
    let out = ok(&run(
        &runner,
        RunKind::Restore,
        json!({"attack": "open-readers", "name": "s", "count": 10}),
    )
    .await?);
    assert_eq!(out["opened"], 4, "{out}");
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("open-streams")),
        "{out}"
    );
    host_is_fine(&runner).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_names_that_could_escape_are_refused() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&config("", ""))?;
    let long = "n".repeat(300);
    let names = [
        "../x", "..", "a/b", ".cairn", "a\nb", "-rf", &long, "db.dump",
    ];
    let out = ok(&backup(&runner, json!({"attack": "names", "names": names})).await?);
    for name in &names[..names.len() - 1] {
        let outcome = &out[*name];
        assert!(
            outcome["error"]
                .as_str()
                .is_some_and(|e| e.contains("invalid: ")),
            "{name:?}: {outcome}"
        );
    }
    assert_eq!(out["db.dump"]["stored"]["name"], "db.dump");
    host_is_fine(&runner).await
}

// ---------------------------------------------------------------------------
// Hooks and the daemon
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_hook_gets_only_what_forgetting_needs() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let data = scratch.path("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(scratch.path("pw"), secret_value())?;
    let attacks = json!([
        {"attack": "run", "program": "sh", "args": ["-c", "touch /tmp/forget-ran"]},
        {"attack": "read-file", "path": data.join("f").display().to_string()},
        {"attack": "secret", "name": "PW"},
        {"attack": "call", "function": "hostile", "params": {"attack": "http", "url": format!("{}/json", server.url)}},
        {"attack": "restore-tree", "name": "s", "target": data.display().to_string()},
        {"attack": "to-command", "name": "s", "program": "sh", "args": ["-c", "cat"]},
        {"attack": "http", "url": format!("{}/json", server.url)},
    ]);
    std::fs::write(data.join("f"), "private")?;
    let body = format!(
        "[secrets.PW]\nfile = {:?}\n\n{}",
        scratch.path("pw").display().to_string(),
        config(
            &format!("params = {{ forget-attacks = {} }}", toml_value(&attacks)),
            &format!(
                "http = [{url:?}]\ncommands = [\"sh\"]\nfunctions = [\"hostile\"]\n\
                 paths = {{ {data:?} = \"read-write\" }}\n\
                 secrets.PW = {{ readable = true, env = \"PW\", programs = [\"sh\"] }}",
                url = server.url,
                data = data.display().to_string()
            ),
        )
    );
    let runner = scratch.runner(&body)?;
    ok(&backup(
        &runner,
        json!({"attack": "write", "name": "s", "text": "x"}),
    )
    .await?);
    let repo = runner.repository(false).await?;
    let snapshot = tokio::task::spawn_blocking(move || repo.snapshots(Some("h")))
        .await??
        .pop()
        .context("a snapshot")?;
    let job = runner.config().job("h")?.clone();
    let outcome = runner.forget_hook(&job, &snapshot).await?;
    let attacks = outcome["attacks"].as_array().cloned().unwrap_or_default();
    assert_eq!(attacks.len(), 7, "{outcome}");
    let error = |i: usize| attacks[i]["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error(0).contains("denied: program `sh` is not granted"),
        "{}",
        error(0)
    );
    assert!(!error(1).is_empty(), "a path was readable: {}", attacks[1]);
    assert!(
        error(2).contains("denied: reading secret `PW`"),
        "{}",
        error(2)
    );
    assert!(
        error(3).contains("denied: function `hostile` is not granted"),
        "{}",
        error(3)
    );
    assert!(
        error(4).contains("a forget hook may only read"),
        "{}",
        error(4)
    );
    assert!(
        error(5).contains("a forget hook may only read"),
        "{}",
        error(5)
    );
    assert_eq!(
        attacks[6]["ok"]["status"], 200,
        "HTTP stays: {}",
        attacks[6]
    );
    assert!(!Path::new("/tmp/forget-ran").exists());
    host_is_fine(&runner).await
}

/// `value` as a TOML value (inline tables and arrays).
fn toml_value(value: &Value) -> String {
    match value {
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{k:?} = {}", toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_have_their_own_allowlist() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    // A webhook whose origin only the job's grants list is refused.
    let err = scratch
        .runner(&config(
            "notify = { url = \"http://127.0.0.1:9/hook\" }",
            "http = [\"http://127.0.0.1:9\"]",
        ))
        .err()
        .context("a webhook outside webhook-origins must be refused")?;
    assert!(format!("{err:#}").contains("webhook-origins"), "{err:#}");
    // Listed in `[daemon] webhook-origins`, it loads, and the module still
    // cannot reach that origin.
    let body = format!(
        "[daemon]\nwebhook-origins = [\"http://127.0.0.1:9\"]\n\n{}",
        config("notify = { url = \"http://127.0.0.1:9/hook\" }", "")
    );
    let runner = scratch.runner(&body)?;
    let out = backup(
        &runner,
        json!({"attack": "http", "url": "http://127.0.0.1:9/hook"}),
    )
    .await?;
    denied(
        &out,
        &["denied: http to http://127.0.0.1:9 is not granted to job `h`"],
    );
    host_is_fine(&runner).await
}

#[test]
fn the_daemon_api_refuses_other_sites_and_other_names() -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Read as _, Write as _};
    let scratch = Scratch::new()?;
    scratch.write_config(&config("", ""))?;
    let mut daemon = std::process::Command::new(support::cairn_bin())
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .current_dir(scratch.dir.path())
        .env("CAIRN_LOG", "info")
        .env(PASSWORD_ENV, "hostile")
        .env("XDG_CACHE_HOME", test_cache_dir())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = daemon.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().context("the daemon exited")??;
        if let Some(rest) = line.split("HTTP API listening on ").nth(1) {
            break rest.trim().to_owned();
        }
    };
    let request = |method: &str, path: &str, headers: &[(&str, &str)]| -> anyhow::Result<String> {
        let mut stream = std::net::TcpStream::connect(&addr)?;
        let mut text =
            format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            text.push_str(&format!("Host: {addr}\r\n"));
        }
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        stream.write_all(text.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.lines().next().unwrap_or_default().to_owned())
    };
    let result = (|| -> anyhow::Result<()> {
        assert!(request("GET", "/api/jobs", &[])?.contains("200"));
        // DNS rebinding: a page on evil.example.com whose name now resolves here.
        let status = request("GET", "/api/jobs", &[("Host", "evil.example.com")])?;
        assert!(status.contains("421"), "{status}");
        // A cross-site form or fetch.
        let status = request(
            "POST",
            "/api/jobs/h/pause",
            &[("Origin", "http://evil.example.com")],
        )?;
        assert!(status.contains("403"), "{status}");
        let status = request(
            "POST",
            "/api/jobs/h/pause",
            &[("Sec-Fetch-Site", "cross-site")],
        )?;
        assert!(status.contains("403"), "{status}");
        // The API's own origin and non-browser clients still work.
        let status = request(
            "POST",
            "/api/jobs/h/pause",
            &[("Origin", &format!("http://{addr}"))],
        )?;
        assert!(status.contains("200") || status.contains("204"), "{status}");
        let status = request("POST", "/api/jobs/h/resume", &[])?;
        assert!(status.contains("200") || status.contains("204"), "{status}");
        Ok(())
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    result
}

/// Peak resident memory of process `pid` so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn a_log_flood_keeps_the_hosts_memory_bounded() -> anyhow::Result<()> {
    // Twenty 50 MiB log lines once took the host past 2 GiB of RSS.
    let scratch = Scratch::new()?;
    scratch.write_config(&config("memory = \"256MiB\"", ""))?;
    let mut child = std::process::Command::new(support::cairn_bin())
        .args([
            "backup",
            "h",
            "--set",
            "attack=log-flood",
            "--set",
            "lines=20",
            "--set",
            "mib=50",
        ])
        .current_dir(scratch.dir.path())
        .env(PASSWORD_ENV, "hostile")
        .env("CAIRN_LOG", "warn")
        .env("XDG_CACHE_HOME", support::cli_xdg_cache_home())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(rss) = peak_rss(pid) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        anyhow::ensure!(Instant::now() < deadline, "the backup did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    eprintln!("peak RSS of the log flood: {} MiB", peak >> 20);
    assert!(peak > 0, "no reading of the process's memory");
    assert!(peak < 512 << 20, "peak RSS {} MiB", peak >> 20);
    let db = scratch.path(".cairn/state.db");
    let size = std::fs::metadata(&db)?.len();
    assert!(size < 8 << 20, "the state database is {size} bytes");
    Ok(())
}
