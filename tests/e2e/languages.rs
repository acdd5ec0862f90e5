//! Tasks and Functions written in Python and JavaScript (issue 18), through
//! the real `cairn` binary of this build:
//!
//! - `guest-sdk/test-languages.sh`: the SDKs' unit tests, the examples and
//!   templates built from source with the pinned tools, inspected, backed up
//!   and restored, checked with restic; an ungranted capability refused with
//!   the Rust task's message; and a hostile Python guest (secrets, paths,
//!   limits);
//! - `cairn plugin new --lang python|js`: the project it writes builds with
//!   its own copy of the SDK and backs up and restores.
//!
//! Both need the pinned tools (`guest-sdk/install-tools.sh`, which `.ci/run`
//! runs), `restic`, `jq`, `python3` and `node`; a missing one fails the test
//! with how to install it. Each component is compiled once (tens of seconds
//! in a debug build): the script takes about 6–10 minutes on 2 cores.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::support::{Scratch, cairn_bin, cairn_with_env, run_with_timeout, workspace_root};

/// Fail, saying how to install it, unless every program is in `PATH`.
fn require_programs() -> anyhow::Result<()> {
    let needed = [
        ("bash", "apt-get install bash"),
        ("jq", "apt-get install jq"),
        ("restic", "apt-get install restic"),
        ("python3", "apt-get install python3"),
        ("node", "install Node.js 22 or newer (https://nodejs.org)"),
    ];
    let missing: Vec<String> = needed
        .iter()
        .filter(|(program, _)| {
            !std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
            })
        })
        .map(|(program, how)| format!("`{program}` ({how})"))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "the language tests need {} in PATH; the pinned componentize-py, \
         componentize-js and jco come from guest-sdk/install-tools.sh",
        missing.join(", ")
    );
    Ok(())
}

/// The pinned tools, installed by `guest-sdk/install-tools.sh` (a no-op when
/// they are there): fails with its output when it cannot install them.
fn require_pinned_tools() -> anyhow::Result<()> {
    let script = workspace_root().join("guest-sdk/install-tools.sh");
    let out = run_with_timeout(Command::new(&script), Duration::from_secs(900))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed (it installs componentize-py, componentize-js and jco into \
         ~/.cache/cairn-tools; run it by hand to see why):\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `N` and `M` of the script's last line, "N passed, M failed".
fn tally(output: &str) -> Option<(u32, u32)> {
    let last = output.lines().rev().find(|l| l.ends_with(" failed"))?;
    let (passed, failed) = last.split_once(" passed, ")?;
    Some((
        passed.trim().parse().ok()?,
        failed.trim_end_matches(" failed").parse().ok()?,
    ))
}

#[test]
fn python_and_javascript_guests_build_run_restore_and_are_held_like_rust() -> anyhow::Result<()> {
    require_programs()?;
    let script = workspace_root().join("guest-sdk/test-languages.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .env("CAIRN_BIN", cairn_bin())
        // The binary is this build's: never wait for another.
        .env("CAIRN_WAIT", "0")
        .env_remove("CAIRN_CONFIG")
        .env("CAIRN_LOG", "warn");
    let started = Instant::now();
    let out = run_with_timeout(command, Duration::from_secs(40 * 60))
        .with_context(|| format!("running {}", script.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (passed, failed) = tally(&text)
        .with_context(|| format!("{} stopped before its tally:\n{text}", script.display()))?;
    anyhow::ensure!(
        out.status.success() && failed == 0,
        "{} failed {failed} checks (exit {:?}) after {:?}:\n{text}",
        script.display(),
        out.status.code(),
        started.elapsed()
    );
    // Every section ran: the examples and templates in both languages, the
    // denied capability, the hostile guest.
    for needle in [
        "ok    python: restic dump /file is the file's bytes",
        "ok    js: restic dump /file is the file's bytes",
        "ok    template python: restore reads the greeting back",
        "ok    template js: restore reads the greeting back",
        "ok    js task: the same message as the Rust task's",
        "ok    python task: the same message as the Rust task's",
        "ok    secrets: not in the run history or its recorded log",
        "ok    paths: the snapshot holds only the plain name",
        "ok    limits: a module spinning forever is stopped",
        "ok    limits: a module growing its memory past",
    ] {
        anyhow::ensure!(text.contains(needle), "no `{needle}` in:\n{text}");
    }
    anyhow::ensure!(passed >= 80, "only {passed} checks ran:\n{text}");
    eprintln!(
        "test-languages.sh: {passed} checks passed in {:?}",
        started.elapsed()
    );
    Ok(())
}

/// `cairn plugin new --lang LANG` as a new user runs it: the project, built
/// with its own `cairn-sdk/` copy, backs up and restores.
fn new_project_builds_and_backs_up(lang: &str) -> anyhow::Result<()> {
    require_programs()?;
    require_pinned_tools()?;
    let scratch = Scratch::new()?;
    let dir = scratch.dir.path();
    let name = format!("demo-{lang}");
    let project = scratch.path(&name);
    let out = cairn_with_env(&["plugin", "new", "--lang", lang, &name], dir, &[])?;
    out.expect_code(0)?;
    anyhow::ensure!(
        out.stdout.contains("next: cd ") && out.stdout.contains("./build.sh"),
        "{out}"
    );
    anyhow::ensure!(
        project.join("cairn-sdk/wit").is_dir(),
        "no vendored SDK\n{out}"
    );

    // Build it as its README says, with the tools only from the vendored
    // installer (no checkout of Cairn is needed).
    let started = Instant::now();
    let mut build = Command::new(project.join("build.sh"));
    build
        .current_dir(&project)
        .env_remove("CAIRN_PYTHON_SDK")
        .env_remove("CAIRN_JS_SDK")
        .env_remove("CAIRN_WIT");
    let built = run_with_timeout(build, Duration::from_secs(900))?;
    anyhow::ensure!(
        built.status.success(),
        "./build.sh of a new {lang} project failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let build_time = started.elapsed();
    let wasm = project.join("build/demo_".to_owned() + lang + ".wasm");
    anyhow::ensure!(wasm.is_file(), "{} was not built", wasm.display());

    // The README's config snippet, with the job's param.
    let readme = std::fs::read_to_string(project.join("README.md"))?;
    anyhow::ensure!(readme.contains(&format!("cairn backup {name}")), "{readme}");
    scratch.write_config(&format!(
        "[repository]\npath = {:?}\npassword-env = \"CAIRN_PASSWORD\"\n\n\
         [jobs.{name}]\ntask = {:?}\nparams = {{ name = \"ada\" }}\n",
        scratch.path("repository").display().to_string(),
        wasm.display().to_string()
    ))?;
    let started = Instant::now();
    let env = [("CAIRN_PASSWORD", "new-project")];
    let inspect = cairn_with_env(
        &["plugin", "inspect", &wasm.display().to_string(), "--json"],
        dir,
        &env,
    )?;
    inspect.expect_code(0)?;
    let first_load = started.elapsed();
    assert_eq!(inspect.json()?["kind"], json!("task"), "{inspect}");
    cairn_with_env(&["validate"], dir, &env)?.expect_code(0)?;
    let started = Instant::now();
    let out = cairn_with_env(&["backup", &name, "--json"], dir, &env)?;
    out.expect_code(0)?;
    let backup_time = started.elapsed();
    assert_eq!(out.json()?["run"]["status"], json!("succeeded"), "{out}");
    assert_eq!(
        out.json()?["result"],
        json!({"greeting": "hello, ada"}),
        "{out}"
    );
    let started = Instant::now();
    let out = cairn_with_env(&["restore", &name, "--json"], dir, &env)?;
    out.expect_code(0)?;
    let warm_restore = started.elapsed();
    assert_eq!(
        out.json()?["result"]["greeting"],
        json!("hello, ada"),
        "{out}"
    );
    eprintln!(
        "plugin new --lang {lang}: build {build_time:?}, first load (compiles, \
         `plugin inspect`) {first_load:?}, backup (creates the repository) \
         {backup_time:?}, restore {warm_restore:?}"
    );
    Ok(())
}

#[test]
fn plugin_new_python_project_builds_with_its_own_sdk_and_backs_up() -> anyhow::Result<()> {
    new_project_builds_and_backs_up("python")
}

#[test]
fn plugin_new_js_project_builds_with_its_own_sdk_and_backs_up() -> anyhow::Result<()> {
    new_project_builds_and_backs_up("js")
}

#[test]
fn the_tally_is_read_from_the_last_line() {
    assert_eq!(tally("x\n3 passed, 0 failed\n"), Some((3, 0)));
    assert_eq!(
        tally("1 passed, 2 failed\nmore\n10 passed, 1 failed"),
        Some((10, 1))
    );
    assert_eq!(tally("waiting…"), None);
}
