//! `hostile-task`: a Task that tries to get out of its sandbox, for the
//! hostile-guest suite (`tests/e2e/hostile.rs`). `backup`, `restore` and
//! `forget` each run the attack their params name and return what they saw;
//! a host error comes back unchanged (its WIT case too), so a test can
//! assert the exact denial.
//!
//! Params: `{"attack": NAME, …}` for backup and restore; `forget` runs
//! `forget-attacks` (a list of such objects) and reports each outcome.
//!
//! | attack | params | what it does |
//! |---|---|---|
//! | `symlink` | `link`, `target` | plants a symlink through WASI |
//! | `write-file` / `read-file` | `path`, `text?` | through WASI |
//! | `add-tree` | `name`, `path` | `storage.add-tree` |
//! | `restore-tree` | `name`, `target`, `overwrite?` | `storage.restore-tree` |
//! | `stream-then-list` | `name` | opens a writer, then lists artifacts and notes before finishing it |
//! | `stream-then-tree` | `name`, `path` | opens a writer, then asks for a tree |
//! | `hold-stream` | `name` | opens a writer and never finishes it |
//! | `log-flood` | `lines`, `mib` | logs `lines` lines of `mib` MiB |
//! | `print-flood` | `bytes` | writes a line of `bytes` bytes to stdout |
//! | `print-secret` | `name` | reads a secret and writes it to stdout three bytes at a time |
//! | `state-flood` | `keys`, `bytes` | sets keys of `bytes` bytes until refused |
//! | `open-readers` | `name`, `count` | opens `count` readers of one artifact |
//! | `big-result` | `mib` | returns a result of `mib` MiB |
//! | `notes-flood` | `count`, `bytes` | sets notes until refused |
//! | `names` | `names` | tries `storage.create` with each name |
//! | `run` | `program`, `args?`, `env?`, `cwd?`, `timeout_ms?` | `shell.run` |
//! | `from-command` / `to-command` | `name`, `program`, `args?`, `env?`, `timeout_ms?` | storage with a command |
//! | `http` | `url`, `headers?` | `http.send` |
//! | `secret` | `name` | `secrets.get` |
//! | `call` | `function`, `params` | `functions.call` |
//! | `write` | `name`, `text` | a stream artifact |
//! | `note` | `key`, `value` | `storage.set-note` |
//! | `steps` | `steps` | each in turn, stopping at the first error |

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use cairn_guest::http::Request;
use cairn_guest::shell::Command;
use cairn_guest::storage::{self, Artifact, ArtifactKind};
use cairn_guest::{
    Context, Description, Error, Result, Task, Value, from_params, functions, json, log, secrets,
    state, time,
};
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct CommandParams {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

impl CommandParams {
    fn command(self) -> Command {
        let mut command = Command::new(self.program).args(self.args).envs(self.env);
        if let Some(cwd) = self.cwd {
            command = command.cwd(cwd);
        }
        if let Some(ms) = self.timeout_ms {
            command = command.timeout(Duration::from_millis(ms));
        }
        command
    }
}

fn field<T: serde::de::DeserializeOwned>(params: &Value, key: &str) -> Result<T> {
    from_params(params.get(key).cloned().unwrap_or(Value::Null))
        .map_err(|e| e.context(format!("param `{key}`")))
}

fn artifact(a: &Artifact) -> Value {
    let kind = match a.kind {
        ArtifactKind::Stream => "stream",
        ArtifactKind::Tree => "tree",
    };
    json!({ "name": a.name, "kind": kind, "size": a.size })
}

/// `kind: message`, as the host writes a WIT error.
fn described(e: &Error) -> String {
    format!("{}: {}", e.kind(), e.message())
}

fn io(e: std::io::Error) -> Error {
    Error::failed(e.to_string())
}

fn attack(params: &Value) -> Result<Value> {
    let name: String = field(params, "attack")?;
    match name.as_str() {
        "symlink" => {
            let link: String = field(params, "link")?;
            let target: String = field(params, "target")?;
            #[allow(deprecated)]
            std::fs::soft_link(&target, &link).map_err(io)?;
            Ok(json!({ "created": link }))
        }
        "write-file" => {
            let path: String = field(params, "path")?;
            let text: String = field(params, "text")?;
            std::fs::write(&path, text).map_err(io)?;
            Ok(json!({ "written": path }))
        }
        "read-file" => {
            let path: String = field(params, "path")?;
            Ok(json!({ "text": std::fs::read_to_string(&path).map_err(io)? }))
        }
        "add-tree" => {
            let name: String = field(params, "name")?;
            let path: String = field(params, "path")?;
            Ok(json!({ "artifact": artifact(&storage::add_tree(&name, &path)?) }))
        }
        "restore-tree" => {
            let name: String = field(params, "name")?;
            let target: String = field(params, "target")?;
            let overwrite = params["overwrite"].as_bool().unwrap_or(false);
            Ok(json!({ "artifact": artifact(&storage::restore_tree(&name, &target, overwrite)?) }))
        }
        "stream-then-list" => {
            let name: String = field(params, "name")?;
            let mut writer = storage::create(&name)?;
            writer.write_all(b"first bytes").map_err(io)?;
            writer.flush().map_err(io)?;
            storage::set_note("while", "streaming")?;
            let listed: Vec<Value> = storage::list()?.iter().map(artifact).collect();
            let notes = storage::notes()?;
            let done = writer.finish()?;
            Ok(json!({ "listed": listed, "notes": notes, "finished": artifact(&done) }))
        }
        "stream-then-tree" => {
            let name: String = field(params, "name")?;
            let path: String = field(params, "path")?;
            let mut writer = storage::create(&name)?;
            writer.write_all(b"bytes").map_err(io)?;
            writer.flush().map_err(io)?;
            let tree = storage::add_tree("tree", &path);
            let done = writer.finish()?;
            Ok(json!({
                "tree": tree.map(|a| artifact(&a)).map_err(|e| described(&e)),
                "finished": artifact(&done),
            }))
        }
        "hold-stream" => {
            let name: String = field(params, "name")?;
            let mut writer = storage::create(&name)?;
            writer.write_all(b"held").map_err(io)?;
            writer.flush().map_err(io)?;
            loop {
                time::sleep(Duration::from_secs(1));
            }
        }
        "log-flood" => {
            let lines: usize = field(params, "lines")?;
            let mib: usize = field(params, "mib")?;
            let line = "x".repeat(mib << 20);
            for _ in 0..lines {
                log::info(&line);
            }
            Ok(json!({ "logged": lines }))
        }
        "print-flood" => {
            let bytes: usize = field(params, "bytes")?;
            let mut out = std::io::stdout();
            out.write_all("y".repeat(bytes).as_bytes()).map_err(io)?;
            out.write_all(b"\n").map_err(io)?;
            out.flush().map_err(io)?;
            Ok(json!({ "printed": bytes }))
        }
        "print-secret" => {
            // Write a readable secret to stdout in small pieces.
            let name: String = field(params, "name")?;
            let value = secrets::get(&name)?;
            let mut out = std::io::stdout();
            for chunk in value.as_bytes().chunks(3) {
                out.write_all(chunk).map_err(io)?;
                out.flush().map_err(io)?;
            }
            out.write_all(b"\n").map_err(io)?;
            Ok(json!({ "printed": value.len() }))
        }
        "state-flood" => {
            let keys: usize = field(params, "keys")?;
            let bytes: usize = field(params, "bytes")?;
            let value = "v".repeat(bytes);
            for i in 0..keys {
                if let Err(e) = state::set(&format!("k{i:06}"), &value) {
                    return Ok(json!({ "set": i, "error": described(&e) }));
                }
            }
            Ok(json!({ "set": keys }))
        }
        "open-readers" => {
            let name: String = field(params, "name")?;
            let count: usize = field(params, "count")?;
            let mut readers = Vec::new();
            for i in 0..count {
                match storage::open(&name) {
                    Ok(reader) => readers.push(reader),
                    Err(e) => return Ok(json!({ "opened": i, "error": described(&e) })),
                }
            }
            let mut text = String::new();
            if let Some(first) = readers.first_mut() {
                first.read_to_string(&mut text).map_err(io)?;
            }
            Ok(json!({ "opened": count, "text": text }))
        }
        "big-result" => {
            let mib: usize = field(params, "mib")?;
            Ok(json!({ "blob": "z".repeat(mib << 20) }))
        }
        "notes-flood" => {
            let count: usize = field(params, "count")?;
            let bytes: usize = field(params, "bytes")?;
            let value = "n".repeat(bytes);
            for i in 0..count {
                if let Err(e) = storage::set_note(&format!("note{i}"), &value) {
                    return Ok(json!({ "set": i, "error": described(&e) }));
                }
            }
            Ok(json!({ "set": count }))
        }
        "names" => {
            let names: Vec<String> = field(params, "names")?;
            let mut outcome = cairn_guest::serde_json::Map::new();
            for name in names {
                let result = storage::create(&name).and_then(|mut w| {
                    w.write_all(b"x").map_err(io)?;
                    w.finish()
                });
                outcome.insert(
                    name,
                    match result {
                        Ok(a) => json!({ "stored": artifact(&a) }),
                        Err(e) => json!({ "error": described(&e) }),
                    },
                );
            }
            Ok(Value::Object(outcome))
        }
        "run" => {
            let p: CommandParams = from_params(params.clone())?;
            let out = p.command().run()?;
            Ok(json!({
                "exit_code": out.exit_code,
                "stdout": out.stdout_text(),
                "stderr": out.stderr_text(),
            }))
        }
        "from-command" => {
            let name: String = field(params, "name")?;
            let p: CommandParams = from_params(params.clone())?;
            Ok(json!({ "artifact": artifact(&storage::create_from_command(&name, &p.command())?) }))
        }
        "to-command" => {
            let name: String = field(params, "name")?;
            let p: CommandParams = from_params(params.clone())?;
            let out = storage::restore_to_command(&name, &p.command())?;
            Ok(json!({
                "exit_code": out.exit_code,
                "stdout": out.stdout_text(),
                "stderr": out.stderr_text(),
            }))
        }
        "http" => {
            let url: String = field(params, "url")?;
            let headers: BTreeMap<String, String> =
                from_params(params.get("headers").cloned().unwrap_or(json!({})))?;
            let mut request = Request::get(url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.send()?;
            let headers: BTreeMap<String, String> = response
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok(json!({
                "status": response.status,
                "headers": headers,
                "body": response.text(),
            }))
        }
        "secret" => {
            let name: String = field(params, "name")?;
            Ok(json!({ "value": secrets::get(&name)? }))
        }
        "call" => {
            let function: String = field(params, "function")?;
            let args = params.get("params").cloned().unwrap_or(json!({}));
            Ok(json!({ "result": functions::call(&function, &args)? }))
        }
        "write" => {
            let name: String = field(params, "name")?;
            let text: String = field(params, "text")?;
            let mut writer = storage::create(&name)?;
            writer.write_all(text.as_bytes()).map_err(io)?;
            Ok(json!({ "artifact": artifact(&writer.finish()?) }))
        }
        "note" => {
            let key: String = field(params, "key")?;
            let value: String = field(params, "value")?;
            storage::set_note(&key, &value)?;
            Ok(json!({ "noted": key }))
        }
        "steps" => {
            let steps: Vec<Value> = field(params, "steps")?;
            let mut results = Vec::new();
            for step in &steps {
                results.push(attack(step)?);
            }
            Ok(json!({ "results": results }))
        }
        other => Err(Error::invalid(format!("no attack `{other}`"))),
    }
}

struct Hostile;

impl Task for Hostile {
    fn describe() -> Description {
        Description::new("hostile-task", "0.1.0")
            .summary("Tries to get out of its sandbox (test fixture)")
    }

    fn backup(ctx: Context) -> Result<Value> {
        attack(&ctx.params_value()?)
    }

    fn restore(ctx: Context) -> Result<Value> {
        attack(&ctx.params_value()?)
    }

    fn forget(ctx: Context) -> Result<Value> {
        let params = ctx.params_value()?;
        let attacks: Vec<Value> = field(&params, "forget-attacks").unwrap_or_default();
        let outcomes: Vec<Value> = attacks
            .iter()
            .map(|a| match attack(a) {
                Ok(v) => json!({ "ok": v }),
                Err(e) => json!({ "error": described(&e) }),
            })
            .collect();
        // Report what the hook could and could not do; then let the host forget.
        log::info(format!(
            "forget attacks: {}",
            Value::Array(outcomes.clone())
        ));
        Ok(json!({ "attacks": outcomes }))
    }
}

cairn_guest::export_task!(Hostile);
