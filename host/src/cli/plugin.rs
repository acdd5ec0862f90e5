//! `cairn plugin list`, `inspect` and `new`: modules.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{Lang, PluginCommand, UsageError};
use cairn::config;
use cairn::model::ModuleRef;
use cairn::runner;
use cairn::runtime::{self, Runtime};
use cairn::scaffold::guest::{GuestLang, GuestSdk};
use cairn::state::StateStore;
use cairn::state::sqlite::SqliteStore;

/// Runtime for plug-in commands: the config's cache directory if a config
/// file is there, else the default one.
fn plugin_runtime(config_path: &Path) -> anyhow::Result<Runtime> {
    let cache = match config_path.exists().then(|| config::load(config_path)) {
        Some(Ok(config)) => config.cache_dir,
        Some(Err(e)) => {
            // Inspecting a module does not need the config; don't let a broken one block it.
            tracing::warn!("ignoring {} for this command: {e}", config_path.display());
            cairn::sys::default_cache_dir_here()
        }
        None => cairn::sys::default_cache_dir_here(),
    };
    Runtime::new(Some(&cache))
}

pub(super) async fn plugin(
    config_path: &Path,
    command: PluginCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::List => {
            let rt = plugin_runtime(config_path)?;
            let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_memory()?);
            let mut rows = Vec::new();
            for b in cairn::builtins::all() {
                let module = rt.load(&b.module()).await?;
                let d = runner::describe(&rt, &module, store.clone()).await?;
                rows.push(json!({
                    "name": format!("builtin:{}", b.name),
                    "kind": b.kind,
                    "version": d.version,
                    "summary": d.summary,
                }));
            }
            // Pipelines shipped in the binary (tasks/pipelines/).
            for name in cairn::pipeline::builtin_names() {
                let summary = cairn::pipeline::builtin(name)
                    .and_then(|p| p.description)
                    .unwrap_or_default();
                rows.push(json!({
                    "name": format!("builtin:{name}"),
                    "kind": "pipeline",
                    "version": "",
                    "summary": summary,
                }));
            }
            if json {
                println!("{}", Value::Array(rows));
            } else {
                for r in rows {
                    println!(
                        "{:<28} {:<9} {:<8} {}",
                        r["name"].as_str().unwrap_or(""),
                        r["kind"].as_str().unwrap_or(""),
                        r["version"].as_str().unwrap_or(""),
                        r["summary"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Inspect { module } => {
            let source = match module.strip_prefix("builtin:") {
                Some(name) => ModuleRef::builtin(name),
                None => ModuleRef::file(std::path::absolute(&module)?),
            };
            let rt = plugin_runtime(config_path)?;
            let loaded = rt.load(&source).await?;
            let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_memory()?);
            let d = runner::describe(&rt, &loaded, store).await?;
            let imports = runtime::imports(rt.engine(), &loaded.component);
            let params: Vec<Value> = d
                .params
                .iter()
                .map(|p| {
                    json!({"name": p.name, "description": p.description, "required": p.required,
                           "default": p.default.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok())})
                })
                .collect();
            let out = json!({
                "module": loaded.label,
                "kind": loaded.kind,
                "sha256": hex::encode(loaded.digest),
                "name": d.name,
                "version": d.version,
                "summary": d.summary,
                "params": params,
                "needs": {
                    "http": d.needs.http, "commands": d.needs.commands, "paths": d.needs.paths,
                    "secrets": d.needs.secrets, "functions": d.needs.functions,
                },
                "imports": imports,
            });
            if json {
                println!("{out}");
            } else {
                println!("module   {}", loaded.label);
                println!("kind     {}", out["kind"].as_str().unwrap_or(""));
                println!("sha256   {}", hex::encode(loaded.digest));
                println!("name     {} {}", d.name, d.version);
                println!("summary  {}", d.summary);
                println!("params:");
                for p in &d.params {
                    let req = if p.required { "required" } else { "optional" };
                    let def = p
                        .default
                        .as_deref()
                        .map(|v| format!(" (default {v})"))
                        .unwrap_or_default();
                    println!("  {:<20} {req}{def}  {}", p.name, p.description);
                }
                println!("needs:");
                for (what, list) in [
                    ("http", &d.needs.http),
                    ("commands", &d.needs.commands),
                    ("paths", &d.needs.paths),
                    ("secrets", &d.needs.secrets),
                    ("functions", &d.needs.functions),
                ] {
                    if !list.is_empty() {
                        println!("  {what:<10} {}", list.join(", "));
                    }
                }
                println!("imports:");
                for i in &imports {
                    println!("  {i}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::New {
            name,
            lang,
            path,
            sdk_path,
        } => {
            let dir = path.unwrap_or_else(|| PathBuf::from(&name));
            let guest = match lang {
                Lang::Rust => None,
                Lang::Python => Some(GuestLang::Python),
                Lang::Js => Some(GuestLang::Js),
            };
            if let Some(lang) = guest {
                return new_guest_project(lang, &name, &dir, sdk_path, json);
            }
            let sdk = match sdk_path {
                Some(p) => cairn::scaffold::SdkDep::Path(std::path::absolute(p)?),
                None => {
                    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
                    match built_from.canonicalize() {
                        Ok(p) => cairn::scaffold::SdkDep::Path(p),
                        Err(_) => {
                            cairn::scaffold::SdkDep::Version(env!("CARGO_PKG_VERSION").into())
                        }
                    }
                }
            };
            let files = cairn::scaffold::scaffold(&name, &dir, sdk)
                .map_err(|e| UsageError(format!("{e:#}")))?;
            if json {
                println!("{}", json!({"dir": dir, "files": files}));
            } else {
                println!("created task crate `{name}` in {}", dir.display());
                for f in files {
                    println!("  {}", f.display());
                }
                println!(
                    "next: cd {} && cargo build --release --target wasm32-wasip2",
                    dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `cairn plugin new --lang python|js`.
fn new_guest_project(
    lang: GuestLang,
    name: &str,
    dir: &Path,
    sdk_path: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let sdk = match sdk_path {
        Some(p) => GuestSdk::Path(std::path::absolute(p)?),
        None => GuestSdk::Vendored,
    };
    let made = cairn::scaffold::guest::scaffold_guest(lang, name, dir, &sdk)
        .map_err(|e| UsageError(format!("{e:#}")))?;
    if json {
        println!(
            "{}",
            json!({"dir": dir, "lang": lang.display_name(), "files": made.files,
                   "sdk_files": made.sdk_files, "build": made.build_command,
                   "component": made.component})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "created {} task `{name}` in {}",
        lang.display_name(),
        dir.display()
    );
    for f in &made.files {
        println!("  {}", f.display());
    }
    if !made.sdk_files.is_empty() {
        println!(
            "  {} ({} files: the {} SDK, Cairn's WIT and the tool installer)",
            dir.join(cairn::scaffold::guest::VENDORED_DIR).display(),
            made.sdk_files.len(),
            lang.display_name()
        );
    }
    println!(
        "next: cd {} && {}   (writes {}; see README.md)",
        dir.display(),
        made.build_command,
        made.component
    );
    Ok(ExitCode::SUCCESS)
}
