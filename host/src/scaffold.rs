//! `cairn plugin new`: scaffolds a task crate ([`guest`]: a task project in
//! Python or JavaScript).
//!
//! [`scaffold`] writes a ready-to-build Rust crate: a `cdylib` depending on
//! the guest SDK (`cairn-guest`), a small task that uses params and logs,
//! a README with build and run instructions, and a `.gitignore`. The crate
//! has its own empty `[workspace]` table so it builds on its own, even when
//! created inside another Cargo workspace.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

pub mod guest;

/// Where the scaffolded crate gets the guest SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkDep {
    /// A local checkout of `guest-sdk/`: `cairn-guest = { path = "…" }`.
    Path(PathBuf),
    /// A published version: `cairn-guest = "…"`.
    Version(String),
}

/// Create a task crate called `name` in `dir`, which must not exist or be
/// empty. Returns the files written.
///
/// # Errors
///
/// When `name` is not lowercase letters, digits and `-` starting with a
/// letter; when `dir` is a file or a non-empty directory; when a file cannot
/// be written.
pub fn scaffold(name: &str, dir: &Path, sdk: SdkDep) -> anyhow::Result<Vec<PathBuf>> {
    validate_name(name)?;
    check_target_dir(name, dir)?;
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        (
            "src/lib.rs",
            LIB_RS
                .replace("__NAME__", name)
                .replace("__TYPE__", &type_name(name)),
        ),
        ("README.md", readme(name)),
        (".gitignore", "/target\n".to_owned()),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (relative, contents) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create directory {}", parent.display()))?;
        }
        fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Check that `dir` does not exist or is an empty directory.
fn check_target_dir(name: &str, dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!(
                "cannot create task `{name}` in {}: it exists and is not a directory",
                dir.display()
            );
        }
        let mut entries = fs::read_dir(dir)
            .with_context(|| format!("cannot read directory {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "cannot create task `{name}` in {}: the directory is not empty; \
                 choose a new directory",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Check that `name` is a valid module (and crate) name.
fn validate_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "invalid task name `{name}`: use lowercase letters, digits and `-`, \
             starting with a letter (for example `nightly-dump`)"
        );
    }
    Ok(())
}

/// The task's Rust type name: `nightly-dump` becomes `NightlyDump`.
fn type_name(name: &str) -> String {
    let mut camel: String = name
        .split('-')
        .flat_map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
        })
        .collect();
    // Names the template imports or defines.
    if [
        "Context",
        "Description",
        "Param",
        "Params",
        "Result",
        "Task",
        "Value",
    ]
    .contains(&camel.as_str())
    {
        camel.push_str("Task");
    }
    camel
}

/// `s` as a TOML basic string, quotes included.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn cargo_toml(name: &str, sdk: &SdkDep) -> String {
    let sdk = match sdk {
        SdkDep::Path(path) => format!("{{ path = {} }}", toml_string(&path.to_string_lossy())),
        SdkDep::Version(version) => toml_string(version),
    };
    CARGO_TOML
        .replace("__NAME__", name)
        .replace("__SDK__", &sdk)
}

fn readme(name: &str) -> String {
    README_MD
        .replace("__NAME__", name)
        .replace("__WASM__", &name.replace('-', "_"))
}

const CARGO_TOML: &str = r#"[package]
name = "__NAME__"
version = "0.1.0"
edition = "2024"
publish = false

[package.metadata.cairn]
kind = "task"

[lib]
crate-type = ["cdylib"]

[dependencies]
cairn-guest = __SDK__
serde = { version = "1", features = ["derive"] }

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = "debuginfo"

# Not part of any enclosing workspace: this crate builds on its own.
[workspace]
"#;

const LIB_RS: &str = r#"//! `__NAME__`: a Cairn task.
//!
//! Build with `cargo build --release --target wasm32-wasip2`; see README.md.

use cairn_guest::{Context, Description, Param, Result, Task, Value, json, log};
use serde::Deserialize;

/// The job's `params`, checked by serde: a missing or mistyped param fails
/// the run with an `invalid` error naming it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    name: String,
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "hello".to_owned()
}

struct __TYPE__;

impl Task for __TYPE__ {
    fn describe() -> Description {
        Description::new("__NAME__", env!("CARGO_PKG_VERSION"))
            .summary("Greets someone (replace with what your task backs up)")
            .param(Param::required("name", "Who to greet"))
            .param(Param::optional("greeting", "The greeting", json!("hello")))
        // Declare what the task needs so `cairn validate` can check the
        // job's grants, e.g. `.needs_http("{url}")`, `.needs_command("pg_dump")`.
    }

    fn backup(ctx: Context) -> Result<Value> {
        let params: Params = ctx.params()?;
        let message = format!("{}, {}", params.greeting, params.name);
        log::info_with(&message, &[("job", &ctx.job()), ("run", &ctx.run_id())]);
        // Write artifacts with `cairn_guest::storage`, e.g.
        // `storage::create_from_command("db.dump", &Command::new("pg_dump").arg("app"))?`.
        Ok(json!({ "greeting": message }))
    }

    fn restore(ctx: Context) -> Result<Value> {
        let params: Params = ctx.params()?;
        let snapshot = ctx.snapshot().unwrap_or("(none)");
        log::info(format!("restoring snapshot {snapshot} for {}", params.name));
        Ok(json!({ "restored": snapshot }))
    }
}

cairn_guest::export_task!(__TYPE__);
"#;

const README_MD: &str = r#"# __NAME__

A Cairn backup task, written in Rust with the `cairn-guest` SDK and run as
a WebAssembly component.

## Build

```sh
rustup target add wasm32-wasip2   # once
cargo build --release --target wasm32-wasip2
```

The component is `target/wasm32-wasip2/release/__WASM__.wasm`.

## Run

Point a job at it in `cairn.toml` (a relative path is resolved against the
config file's directory):

```toml
[jobs.__NAME__]
task = "target/wasm32-wasip2/release/__WASM__.wasm"
params = { name = "world" }

# Everything is denied unless granted, for example:
# [jobs.__NAME__.allow]
# http = ["http://127.0.0.1:9200"]
# commands = ["pg_dump"]
```

Then check the job's grants against what the task declares, and run it:

```sh
cairn plugin inspect target/wasm32-wasip2/release/__WASM__.wasm
cairn validate
cairn backup __NAME__
cairn restore __NAME__
```

## Develop

- `src/lib.rs` implements `cairn_guest::Task`: `describe` declares params and
  needs, `backup` and `restore` do the work and return a JSON result.
- Host capabilities are modules of `cairn_guest`: `log`, `progress`, `time`,
  `state`, `secrets`, `http`, `shell`, `storage` and `functions`.
- Errors from `?` keep the host's error kind (`denied`, `not-found`, …); make
  your own with `cairn_guest::Error::invalid(…)` or `cairn_guest::bail!`.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh path under the system temp dir (not created).
    fn temp_path(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        std::env::temp_dir().join(format!(
            "cairn-scaffold-{tag}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    #[test]
    fn scaffold_writes_a_buildable_crate_layout() -> anyhow::Result<()> {
        let dir = temp_path("ok");
        let files = scaffold(
            "nightly-dump",
            &dir,
            SdkDep::Path(PathBuf::from("/src/cairn/guest-sdk")),
        )?;
        let names: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix(&dir).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"].map(PathBuf::from)
        );
        for file in &files {
            assert!(file.is_file(), "{} missing", file.display());
        }
        let cargo = fs::read_to_string(dir.join("Cargo.toml"))?;
        assert!(cargo.contains("name = \"nightly-dump\""));
        assert!(cargo.contains("cairn-guest = { path = \"/src/cairn/guest-sdk\" }"));
        assert!(cargo.contains("crate-type = [\"cdylib\"]"));
        assert!(cargo.contains("\n[workspace]\n"));
        let lib = fs::read_to_string(dir.join("src/lib.rs"))?;
        assert!(lib.contains("Description::new(\"nightly-dump\""));
        assert!(lib.contains("cairn_guest::export_task!"));
        let readme = fs::read_to_string(dir.join("README.md"))?;
        assert!(readme.contains("cargo build --release --target wasm32-wasip2"));
        assert!(readme.contains("task = \"target/wasm32-wasip2/release/nightly_dump.wasm\""));
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn scaffold_uses_a_version_and_an_existing_empty_dir() -> anyhow::Result<()> {
        let dir = temp_path("empty");
        fs::create_dir_all(&dir)?;
        scaffold("t1", &dir, SdkDep::Version("0.1.0".into()))?;
        let cargo = fs::read_to_string(dir.join("Cargo.toml"))?;
        assert!(cargo.contains("cairn-guest = \"0.1.0\""));
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn scaffold_refuses_a_non_empty_dir() -> anyhow::Result<()> {
        let dir = temp_path("busy");
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("keep.txt"), "mine")?;
        let err = scaffold("t", &dir, SdkDep::Version("0.1.0".into())).unwrap_err();
        assert!(err.to_string().contains("is not empty"), "{err}");
        assert_eq!(fs::read_to_string(dir.join("keep.txt"))?, "mine");
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn scaffold_rejects_bad_names() {
        for bad in [
            "",
            "Upper",
            "1st",
            "-dash",
            "under_score",
            "dot.name",
            "spa ce",
        ] {
            let dir = temp_path("bad");
            let err = scaffold(bad, &dir, SdkDep::Version("0.1.0".into())).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid task name `{bad}`")),
                "{bad}: {err}"
            );
            assert!(!dir.exists(), "{bad}: created {}", dir.display());
        }
        for good in ["a", "pg-dump", "es7-snapshot"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn type_names_are_camel_case_and_avoid_the_template_names() {
        assert_eq!(type_name("nightly-dump"), "NightlyDump");
        assert_eq!(type_name("es7-snapshot"), "Es7Snapshot");
        assert_eq!(type_name("a--b"), "AB");
        assert_eq!(type_name("task"), "TaskTask");
        assert_eq!(type_name("params"), "ParamsTask");
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\x "y""#), r#""C:\\x \"y\"""#);
    }
}
