//! `test-guest`: a Task fixture for the host's end-to-end tests. Both
//! `backup` and `restore` do what params `{"action": "...", ...}` say and
//! return JSON; host errors propagate unchanged (their WIT case too).
//!
//! | action | params | result |
//! |---|---|---|
//! | `ok` | anything | `{"echo": <params>}` |
//! | `http` | `url`, `method?`, `headers?`, `body?` (text) | `{"status", "body"}` |
//! | `http-start` | `urls`, `wait?` (default true) | GETs started all at once, then `{"statuses", "elapsed_ms"}` once all are answered; with `wait: false` dropped unanswered |
//! | `run` | `program`, `args?`, `env?`, `stdin?`, `timeout_ms?` | `{"exit_code", "stdout", "stderr"}` |
//! | `secret` | `name`, `expect?` | `{"value"}`, plus `"matches": value == expect` when given |
//! | `loop` | | never returns, makes no host calls |
//! | `alloc` | `mib` | `{"allocated_mib"}` after touching that much memory |
//! | `stdout` | `bytes` | `{"written"}` after writing through WASI stdout |
//! | `print` | `lines` | `{"printed"}`; each line to stdout and `stderr: <line>` to stderr |
//! | `sleep` | `ms` | `{"slept_ms"}` |
//! | `state` | `set?: {k: v}`, `get?: [k]` | `{"values": {k: v or null}}` |
//! | `call` | `function`, `params` | `{"result"}` |
//! | `log` | `message`, `fields?`, `level?` | `{"logged": true}` |
//! | `progress` | `done`, `total?`, `unit?` (`bytes`/`items`) | `{"reported": true}` |
//! | `panic` | | traps |
//! | `error` | `variant?` (default `failed`), `message` | that error |
//! | `storage-write` | `name`, `text` | `{"artifact"}` |
//! | `storage-read` | `name` | `{"text"}` |
//! | `storage-from-command` | `name`, `program`, `args?`, `env?` | `{"artifact"}` |
//! | `storage-to-command` | `name`, `program`, `args?`, `env?` | `{"exit_code", "stdout", "stderr"}` |
//! | `storage-add-tree` | `name`, `path` | `{"artifact"}` |
//! | `storage-restore-tree` | `name`, `target`, `overwrite?` | `{"artifact"}` |
//! | `storage-list` | | `{"artifacts": [{name, kind, size}], "notes": {k: v}}` |
//! | `note` | `key`, `value` | `{"noted": true}` |
//! | `steps` | `steps: [<params>…]` | `{"results": [...]}`, stopping at the first error |
//! | `read-file` | `path` | `{"text"}`, read through WASI (`std::fs`) |
//! | `write-file` | `path`, `text` | `{"written": true}`, written through WASI (`std::fs`) |

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use cairn_guest::http::Request;
use cairn_guest::progress::Unit;
use cairn_guest::shell::{Command, Output};
use cairn_guest::storage::{self, Artifact, ArtifactKind};
use cairn_guest::{
    Context, Description, Error, ErrorKind, Param, Result, Task, Value, from_params, functions,
    json, log, progress, secrets, state, time,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct HttpParams {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct RunParams {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

impl RunParams {
    fn command(self) -> Command {
        let mut command = Command::new(self.program).args(self.args).envs(self.env);
        if let Some(stdin) = self.stdin {
            command = command.stdin(stdin);
        }
        if let Some(ms) = self.timeout_ms {
            command = command.timeout(Duration::from_millis(ms));
        }
        command
    }
}

#[derive(Deserialize)]
struct StateParams {
    #[serde(default)]
    set: BTreeMap<String, Value>,
    #[serde(default)]
    get: Vec<String>,
}

#[derive(Deserialize)]
struct LogParams {
    message: String,
    #[serde(default)]
    fields: BTreeMap<String, Value>,
    #[serde(default)]
    level: Option<String>,
}

#[derive(Deserialize)]
struct ProgressParams {
    done: u64,
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    unit: Option<String>,
}

#[derive(Deserialize)]
struct ErrorParams {
    #[serde(default)]
    variant: Option<String>,
    message: String,
}

#[derive(Deserialize)]
struct StorageCommandParams {
    name: String,
    #[serde(flatten)]
    run: RunParams,
}

/// JSON text for a value: strings as they are, anything else as JSON.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn output_json(output: &Output) -> Value {
    json!({
        "exit_code": output.exit_code,
        "stdout": output.stdout_text(),
        "stderr": output.stderr_text(),
    })
}

fn artifact_json(artifact: &Artifact) -> Value {
    let kind = match artifact.kind {
        ArtifactKind::Stream => "stream",
        ArtifactKind::Tree => "tree",
    };
    json!({ "name": artifact.name, "kind": kind, "size": artifact.size })
}

fn field<T: serde::de::DeserializeOwned>(params: &Value, key: &str) -> Result<T> {
    from_params(params.get(key).cloned().unwrap_or(Value::Null))
        .map_err(|e| e.context(format!("param `{key}`")))
}

fn run(params: Value) -> Result<Value> {
    let action: String = field(&params, "action")?;
    match action.as_str() {
        "ok" => Ok(json!({ "echo": params })),
        "http" => {
            let p: HttpParams = from_params(params)?;
            let method = p.method.as_deref().unwrap_or("GET").parse()?;
            let mut request = Request::new(method, p.url);
            for (name, value) in p.headers {
                request = request.header(name, value);
            }
            if let Some(body) = p.body {
                request = request.body(body);
            }
            let response = request.send()?;
            Ok(json!({ "status": response.status, "body": response.text() }))
        }
        "http-start" => {
            let urls: Vec<String> = field(&params, "urls")?;
            let wait = params.get("wait").and_then(Value::as_bool).unwrap_or(true);
            let started_ms = time::now_ms();
            let pending = urls
                .iter()
                .map(|url| Request::get(url.as_str()).start())
                .collect::<Result<Vec<_>>>()?;
            if !wait {
                drop(pending);
                return Ok(json!({ "statuses": [] }));
            }
            let statuses = pending
                .into_iter()
                .map(|p| p.wait().map(|r| r.status))
                .collect::<Result<Vec<_>>>()?;
            Ok(json!({ "statuses": statuses, "elapsed_ms": time::now_ms() - started_ms }))
        }
        "run" => {
            let p: RunParams = from_params(params)?;
            Ok(output_json(&p.command().run()?))
        }
        "secret" => {
            let value = secrets::get(&field::<String>(&params, "name")?)?;
            let mut out = json!({ "value": value });
            if let Some(expected) = params.get("expect").and_then(Value::as_str) {
                out["matches"] = json!(value == expected);
            }
            Ok(out)
        }
        "loop" => {
            let mut counter = 0u64;
            loop {
                counter = black_box(counter.wrapping_add(1));
            }
        }
        "alloc" => {
            let mib: usize = field(&params, "mib")?;
            let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(mib);
            for i in 0..mib {
                blocks.push(vec![(i % 255) as u8 + 1; 1 << 20]);
                black_box(&blocks);
            }
            Ok(json!({ "allocated_mib": black_box(blocks).len() }))
        }
        "stdout" => {
            let bytes: usize = field(&params, "bytes")?;
            let chunk = vec![b'x'; 64 * 1024];
            let mut stdout = std::io::stdout().lock();
            let mut written = 0;
            while written < bytes {
                let n = chunk.len().min(bytes - written);
                stdout.write_all(&chunk[..n])?;
                written += n;
            }
            stdout.flush()?;
            Ok(json!({ "written": written }))
        }
        "print" => {
            let lines: Vec<String> = field(&params, "lines")?;
            for line in &lines {
                println!("{line}");
                eprintln!("stderr: {line}");
            }
            Ok(json!({ "printed": lines.len() }))
        }
        "sleep" => {
            let ms: u64 = field(&params, "ms")?;
            time::sleep(Duration::from_millis(ms));
            Ok(json!({ "slept_ms": ms }))
        }
        "state" => {
            let p: StateParams = from_params(params)?;
            for (key, value) in &p.set {
                state::set(key, as_text(value))?;
            }
            let mut values = cairn_guest::serde_json::Map::new();
            for key in p.get {
                let value = state::get(&key)?.map_or(Value::Null, Value::String);
                values.insert(key, value);
            }
            Ok(json!({ "values": values }))
        }
        "call" => {
            let name: String = field(&params, "function")?;
            let call_params = params.get("params").cloned().unwrap_or_else(|| json!({}));
            Ok(json!({ "result": functions::call(&name, &call_params)? }))
        }
        "log" => {
            let p: LogParams = from_params(params)?;
            let level = match p.level.as_deref().unwrap_or("info") {
                "trace" => log::Level::Trace,
                "debug" => log::Level::Debug,
                "info" => log::Level::Info,
                "warn" => log::Level::Warn,
                "error" => log::Level::Error,
                other => return Err(Error::invalid(format!("unknown log level `{other}`"))),
            };
            let texts: Vec<(&str, String)> = p
                .fields
                .iter()
                .map(|(k, v)| (k.as_str(), as_text(v)))
                .collect();
            let fields: Vec<(&str, &dyn std::fmt::Display)> = texts
                .iter()
                .map(|(k, v)| (*k, v as &dyn std::fmt::Display))
                .collect();
            log::log(level, &p.message, &fields);
            Ok(json!({ "logged": true }))
        }
        "progress" => {
            let p: ProgressParams = from_params(params)?;
            let unit = match p.unit.as_deref().unwrap_or("items") {
                "bytes" => Unit::Bytes,
                "items" => Unit::Items,
                other => return Err(Error::invalid(format!("unknown progress unit `{other}`"))),
            };
            progress::report(p.done, p.total, unit);
            Ok(json!({ "reported": true }))
        }
        "panic" => panic!("test-guest asked to panic"),
        "error" => {
            let p: ErrorParams = from_params(params)?;
            let kind = match p.variant.as_deref().unwrap_or("failed") {
                "denied" => ErrorKind::Denied,
                "invalid" => ErrorKind::Invalid,
                "not-found" => ErrorKind::NotFound,
                "limit" => ErrorKind::Limit,
                "unsupported" => ErrorKind::Unsupported,
                "failed" => ErrorKind::Failed,
                other => return Err(Error::invalid(format!("unknown error variant `{other}`"))),
            };
            Err(Error::new(kind, p.message))
        }
        "storage-write" => {
            let name: String = field(&params, "name")?;
            let text: String = field(&params, "text")?;
            let mut writer = storage::create(&name)?;
            writer.write_all(text.as_bytes())?;
            Ok(json!({ "artifact": artifact_json(&writer.finish()?) }))
        }
        "storage-read" => {
            let name: String = field(&params, "name")?;
            let mut text = String::new();
            storage::open(&name)?.read_to_string(&mut text)?;
            Ok(json!({ "text": text }))
        }
        "storage-from-command" => {
            let p: StorageCommandParams = from_params(params)?;
            let artifact = storage::create_from_command(&p.name, &p.run.command())?;
            Ok(json!({ "artifact": artifact_json(&artifact) }))
        }
        "storage-to-command" => {
            let p: StorageCommandParams = from_params(params)?;
            let output = storage::restore_to_command(&p.name, &p.run.command())?;
            Ok(output_json(&output))
        }
        "storage-add-tree" => {
            let name: String = field(&params, "name")?;
            let path: String = field(&params, "path")?;
            Ok(json!({ "artifact": artifact_json(&storage::add_tree(&name, &path)?) }))
        }
        "storage-restore-tree" => {
            let name: String = field(&params, "name")?;
            let target: String = field(&params, "target")?;
            let overwrite = params["overwrite"].as_bool().unwrap_or(false);
            Ok(
                json!({ "artifact": artifact_json(&storage::restore_tree(&name, &target, overwrite)?) }),
            )
        }
        "storage-list" => {
            let artifacts: Vec<Value> = storage::list()?.iter().map(artifact_json).collect();
            Ok(json!({ "artifacts": artifacts, "notes": storage::notes()? }))
        }
        "note" => {
            let key: String = field(&params, "key")?;
            let value: String = field(&params, "value")?;
            storage::set_note(&key, &value)?;
            Ok(json!({ "noted": true }))
        }
        "steps" => {
            let steps: Vec<Value> = field(&params, "steps")?;
            let results = steps.into_iter().map(run).collect::<Result<Vec<_>>>()?;
            Ok(json!({ "results": results }))
        }
        "read-file" => {
            let path: String = field(&params, "path")?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::failed(format!("cannot read {path}: {e}")))?;
            Ok(json!({ "text": text }))
        }
        "write-file" => {
            let path: String = field(&params, "path")?;
            let text: String = field(&params, "text")?;
            std::fs::write(&path, text)
                .map_err(|e| Error::failed(format!("cannot write {path}: {e}")))?;
            Ok(json!({ "written": true }))
        }
        other => Err(Error::invalid(format!(
            "test-guest has no action `{other}`"
        ))),
    }
}

struct TestGuest;

impl Task for TestGuest {
    fn describe() -> Description {
        Description::new("test-guest", env!("CARGO_PKG_VERSION"))
            .summary("Fixture for the host's tests: does what params.action says")
            .param(Param::required(
                "action",
                "What to do: ok, http, run, secret, …",
            ))
    }

    fn backup(ctx: Context) -> Result<Value> {
        run(ctx.params_value()?)
    }

    fn restore(ctx: Context) -> Result<Value> {
        run(ctx.params_value()?)
    }
}

cairn_guest::export_task!(TestGuest);
