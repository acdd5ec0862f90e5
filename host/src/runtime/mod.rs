//! The plug-in runtime: one wasmtime engine per process, a compile cache on
//! disk, and one sandboxed `Store` per run (or Function call).
//!
//! - Epoch interruption: a ticker thread bumps the engine's epoch every
//!   [`TICK`]; a running guest yields to the async executor on each tick, so a
//!   run's wall-clock timeout fires even inside a tight loop or a host call.
//! - Limits: linear memory and instance count per store ([`limits`]), output
//!   caps on stdout/stderr, HTTP body and command output caps.
//! - Modules are compiled once per (sha256, engine compatibility) pair and
//!   kept in the cache directory; within a process the `InstancePre` is reused.
//! - A trapped store is dropped, never re-entered.

pub mod cache;
pub mod limits;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config as EngineConfig, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::builtins;
use crate::capabilities::bindings::function::{Function, FunctionPre};
use crate::capabilities::bindings::task::{Task, TaskPre};
use crate::capabilities::bindings::{Context, Description, WitError};
use crate::capabilities::functions::{CallError, FunctionHost};
use crate::capabilities::wasi::{self, Capture, OutputLimitExceeded};
use crate::capabilities::{
    Capabilities, HasCapabilities, HostShared, RunContext, describe as describe_wit_error,
};
use crate::model::{Digest, ModuleKind, ModuleRef};
use limits::{MemoryLimitExceeded, RunLimiter};

/// How often the epoch advances (and a running guest yields).
pub const TICK: Duration = Duration::from_millis(10);
/// Timeout for `describe` calls.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// File missing or unreadable.
    #[error("cannot read module {what}: {source}")]
    Read {
        /// Module label.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Unknown `builtin:NAME`.
    #[error("no built-in module `{name}`; built-ins: {available}")]
    UnknownBuiltin {
        /// Requested name.
        name: String,
        /// Names available.
        available: String,
    },
    /// A pipeline task, which the runner runs step by step.
    #[error("{what} is a pipeline, not a WebAssembly module")]
    Pipeline {
        /// Pipeline label.
        what: String,
    },
    /// Not WebAssembly at all.
    #[error("{what} is not a WebAssembly module (it starts with {magic}; expected `\\0asm`)")]
    NotWasm {
        /// Module label.
        what: String,
        /// First bytes, hex.
        magic: String,
    },
    /// A core module instead of a component.
    #[error(
        "{what} is a core WebAssembly module, not a component: build it with `cargo build --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// Module label.
        what: String,
    },
    /// sha256 pin mismatch.
    #[error(
        "{what} does not match its pinned sha256: expected {expected}, found {actual}; refusing to load it"
    )]
    PinMismatch {
        /// Module label.
        what: String,
        /// Pinned digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// Compilation or linking failed.
    #[error("cannot load {what}: {message}")]
    Invalid {
        /// Module label.
        what: String,
        /// Cause, with its chain.
        message: String,
    },
}

/// Why a run (or a call into a module) failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The module returned an error.
    #[error("{}", describe_wit_error(.0))]
    Module(WitError),
    /// The wall-clock timeout expired.
    #[error("run exceeded its timeout of {} and was stopped", crate::units::format_duration(*.0))]
    Timeout(Duration),
    /// Linear memory limit.
    #[error("{0}")]
    Memory(MemoryLimitExceeded),
    /// Output cap.
    #[error("{0}")]
    Output(OutputLimitExceeded),
    /// The guest trapped (panic, unreachable, stack overflow …).
    #[error("module trapped: {message}{}", stderr_note(.stderr))]
    Trap {
        /// Trap description.
        message: String,
        /// Last lines the guest wrote to stderr.
        stderr: Vec<String>,
    },
    /// The module returned something the host cannot use.
    #[error("module returned invalid output: {0}")]
    BadOutput(String),
    /// A host-side problem while setting up the run.
    #[error("{0:#}")]
    Host(anyhow::Error),
}

fn stderr_note(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!(" (its last stderr: {})", lines.join(" | "))
    }
}

/// The data of one store: WASI, limits and every capability.
pub struct RunData {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: RunLimiter,
    stdout: Capture,
    stderr: Capture,
    capabilities: Capabilities,
}

impl HasCapabilities for RunData {
    fn capabilities(&mut self) -> &mut Capabilities {
        &mut self.capabilities
    }
}

impl WasiView for RunData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A loaded module, ready to instantiate.
pub struct LoadedModule {
    /// Label used in messages (`builtin:NAME` or the file path).
    pub label: String,
    /// sha256 of the component bytes.
    pub digest: Digest,
    /// Task or function.
    pub kind: ModuleKind,
    /// The compiled component.
    pub component: Component,
    pre: Pre,
}

enum Pre {
    Task(TaskPre<RunData>),
    Function(FunctionPre<RunData>),
}

/// What to call on a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOp {
    /// `backup`.
    Backup,
    /// `restore`.
    Restore,
    /// `forget`: clean-up before a snapshot is forgotten.
    Forget,
}

/// A module's bytes, or its file when only its (remembered) digest was
/// needed so far.
enum Source {
    Bytes(Vec<u8>),
    File(std::path::PathBuf),
}

/// A module loaded (or being loaded) once per digest.
type LoadedSlot = Arc<OnceCell<Arc<LoadedModule>>>;

struct Inner {
    engine: Engine,
    task_linker: Linker<RunData>,
    function_linker: Linker<RunData>,
    cache: Option<cache::CompileCache>,
    loaded: Mutex<HashMap<Digest, LoadedSlot>>,
    http: reqwest::Client,
    _ticker: Arc<()>,
}

/// The plug-in runtime. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl Runtime {
    /// A runtime whose compiled modules are cached in `cache_dir` (no disk
    /// cache when `None`). Starts the epoch ticker thread.
    ///
    /// # Errors
    /// When the engine cannot be created.
    pub fn new(cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut cfg = EngineConfig::new();
        cfg.epoch_interruption(true);
        cfg.wasm_component_model(true);
        let engine = Engine::new(&cfg)?;

        let mut task_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut task_linker)?;
        Capabilities::add_to_linker(&mut task_linker, true)?;
        let mut function_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut function_linker)?;
        Capabilities::add_to_linker(&mut function_linker, false)?;

        let cache = cache_dir.map(|d| cache::CompileCache::new(d, &engine));
        let ticker = start_ticker(&engine);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                task_linker,
                function_linker,
                cache,
                loaded: Mutex::new(HashMap::new()),
                http: crate::capabilities::http::client(),
                _ticker: ticker,
            }),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Load (compile or fetch from cache) the module `module` refers to,
    /// checking its pin.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub async fn load(&self, module: &ModuleRef) -> Result<Arc<LoadedModule>, LoadError> {
        let (label, source, digest) = self.identify(module)?;
        if let Some(&expected) = module.sha256()
            && expected != digest
        {
            return Err(LoadError::PinMismatch {
                what: label,
                expected: hex::encode(expected),
                actual: hex::encode(digest),
            });
        }
        let cell = self
            .inner
            .loaded
            .lock()
            .unwrap()
            .entry(digest)
            .or_default()
            .clone();
        let this = self.clone();
        cell.get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || this.compile(label, source, digest))
                .await
                .map_err(|e| LoadError::Invalid {
                    what: "module".into(),
                    message: e.to_string(),
                })?
        })
        .await
        .cloned()
    }

    /// The label and digest of `module`, with its bytes, or only its file
    /// when the compile cache remembers the file's digest (then the bytes
    /// are read only if the module must be compiled).
    fn identify(&self, module: &ModuleRef) -> Result<(String, Source, Digest), LoadError> {
        if let (ModuleRef::File { path, .. }, Some(cache)) = (module, &self.inner.cache) {
            let label = path.display().to_string();
            let before = match std::fs::metadata(path) {
                Ok(meta) => meta,
                Err(source) => {
                    return Err(LoadError::Read {
                        what: label,
                        source,
                    });
                }
            };
            if let Some(digest) = cache.known_digest(path, &before) {
                return Ok((label, Source::File(path.clone()), digest));
            }
            let started = std::time::SystemTime::now();
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(source) => {
                    return Err(LoadError::Read {
                        what: label,
                        source,
                    });
                }
            };
            let digest: Digest = cache::sha256(&bytes);
            if let Ok(after) = std::fs::metadata(path) {
                cache.remember_digest(path, &before, &after, started, &digest);
            }
            return Ok((label, Source::Bytes(bytes), digest));
        }
        let (label, bytes) = read_module(module)?;
        let digest: Digest = cache::sha256(&bytes);
        Ok((label, Source::Bytes(bytes), digest))
    }

    fn compile(
        &self,
        label: String,
        source: Source,
        digest: Digest,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            what: label.clone(),
            message: format!("{e:#}"),
        };
        // The bytes, when the module must be compiled.
        let bytes = |source: Source| -> Result<Vec<u8>, LoadError> {
            let bytes = match source {
                Source::Bytes(bytes) => bytes,
                Source::File(path) => {
                    let bytes = std::fs::read(&path).map_err(|source| LoadError::Read {
                        what: label.clone(),
                        source,
                    })?;
                    if cache::sha256(&bytes) != digest {
                        return Err(LoadError::Invalid {
                            what: label.clone(),
                            message: "it changed while it was being loaded; try again".into(),
                        });
                    }
                    bytes
                }
            };
            check_magic(&label, &bytes)?;
            Ok(bytes)
        };
        let component = match &self.inner.cache {
            Some(cache) => match cache.lookup(&self.inner.engine, &digest) {
                Some(component) => component,
                None => cache
                    .compile_and_store(&self.inner.engine, &bytes(source)?, &digest)
                    .map_err(invalid)?,
            },
            None => Component::new(&self.inner.engine, bytes(source)?).map_err(invalid)?,
        };
        let kind = module_kind(&self.inner.engine, &component).ok_or_else(|| LoadError::Invalid {
            what: label.clone(),
            message: "it exports neither the cairn:plugin `task` world (describe, backup, restore, forget) nor the `function` world (describe, call)".into(),
        })?;
        if kind == ModuleKind::Task
            && !exports(&self.inner.engine, &component)
                .iter()
                .any(|e| e == "forget")
        {
            return Err(LoadError::Invalid {
                what: label.clone(),
                message: "it exports describe, backup and restore but not `forget`, which the cairn:plugin `task` world now requires: rebuild it with the current cairn-guest (whose `Task::forget` has a default)".into(),
            });
        }
        let link_err = |e: wasmtime::Error| {
            let detail = format!("{e:#}");
            // A `cairn:plugin` function whose signature changed since the
            // module was built: say so, rather than only the type mismatch.
            let hint = if detail.contains("cairn:plugin/") && detail.contains("wrong type") {
                " (the module was built against an older cairn:plugin WIT: rebuild it with \
                 the current guest SDK; wit/README.md lists the changes)"
            } else {
                ""
            };
            LoadError::Invalid {
                what: label.clone(),
                message: format!("it imports something Cairn does not provide: {detail}{hint}"),
            }
        };
        let pre = match kind {
            ModuleKind::Task => {
                let pre = self
                    .inner
                    .task_linker
                    .instantiate_pre(&component)
                    .map_err(link_err)?;
                Pre::Task(TaskPre::new(pre).map_err(link_err)?)
            }
            ModuleKind::Function => {
                let pre = self
                    .inner
                    .function_linker
                    .instantiate_pre(&component)
                    .map_err(link_err)?;
                Pre::Function(FunctionPre::new(pre).map_err(link_err)?)
            }
        };
        Ok(Arc::new(LoadedModule {
            label,
            digest,
            kind,
            component,
            pre,
        }))
    }

    /// A store for one call of `run`: WASI, limits and every capability.
    fn new_store(&self, run: &RunContext) -> anyhow::Result<Store<RunData>> {
        let lim = &run.limits;
        let stdout = Capture::new("stdout", lim.output, run.log.clone());
        let stderr = Capture::new("stderr", lim.output, run.log.clone());
        let wasi = wasi::build(&run.grants.paths, stdout.clone(), stderr.clone())?;
        let host = HostShared {
            http: self.inner.http.clone(),
            functions: Arc::new(self.clone()),
        };
        let data = RunData {
            wasi,
            table: ResourceTable::new(),
            limiter: RunLimiter::new(lim.memory),
            stdout,
            stderr,
            capabilities: Capabilities::prepare(run, &host)?,
        };
        let mut store = Store::new(&self.inner.engine, data);
        store.limiter(|d| &mut d.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        Ok(store)
    }

    /// Call `describe` on a module in a fresh store with no grants.
    ///
    /// # Errors
    /// When instantiation or the call fails.
    pub async fn describe(
        &self,
        module: &LoadedModule,
        run: RunContext,
    ) -> Result<Description, RunError> {
        let mut store = self.new_store(&run).map_err(RunError::Host)?;
        let work = async {
            match &module.pre {
                Pre::Task(pre) => {
                    let t = pre.instantiate_async(&mut store).await?;
                    t.call_describe(&mut store).await
                }
                Pre::Function(pre) => {
                    let f = pre.instantiate_async(&mut store).await?;
                    f.call_describe(&mut store).await
                }
            }
        };
        let out = tokio::time::timeout(DESCRIBE_TIMEOUT, work).await;
        finish(&mut store, DESCRIBE_TIMEOUT, out)
    }

    /// Run `op` of a task module with `context` under the limits of `run`.
    /// Returns the task's JSON result.
    ///
    /// # Errors
    /// See [`RunError`].
    pub async fn run_task(
        &self,
        module: &LoadedModule,
        op: TaskOp,
        context: Context,
        run: RunContext,
    ) -> Result<String, RunError> {
        let Pre::Task(pre) = &module.pre else {
            return Err(RunError::Host(anyhow::anyhow!(
                "{} is a function module, not a task",
                module.label
            )));
        };
        let timeout = run.limits.timeout;
        let mut store = self.new_store(&run).map_err(RunError::Host)?;
        let work = async {
            let t: Task = pre.instantiate_async(&mut store).await?;
            match op {
                TaskOp::Backup => t.call_backup(&mut store, &context).await,
                TaskOp::Restore => t.call_restore(&mut store, &context).await,
                TaskOp::Forget => t.call_forget(&mut store, &context).await,
            }
        };
        let out = tokio::time::timeout(timeout, work).await;
        let result = finish(&mut store, timeout, out)?;
        result
            .map_err(RunError::Module)
            .and_then(|s| check_json(s, run.limits.result))
    }

    /// Call a function module with JSON `params` in its own store.
    ///
    /// # Errors
    /// See [`RunError`].
    pub async fn call_function(
        &self,
        module: &LoadedModule,
        params: &str,
        run: RunContext,
    ) -> Result<String, RunError> {
        let Pre::Function(pre) = &module.pre else {
            return Err(RunError::Host(anyhow::anyhow!(
                "{} is a task module, not a function",
                module.label
            )));
        };
        let timeout = run.limits.timeout;
        let mut store = self.new_store(&run).map_err(RunError::Host)?;
        let work = async {
            let f: Function = pre.instantiate_async(&mut store).await?;
            f.call_call(&mut store, &params.to_string()).await
        };
        let out = tokio::time::timeout(timeout, work).await;
        let result = finish(&mut store, timeout, out)?;
        result
            .map_err(RunError::Module)
            .and_then(|s| check_json(s, run.limits.result))
    }
}

/// `s` if it is JSON of at most `limit` bytes.
fn check_json(s: String, limit: u64) -> Result<String, RunError> {
    if s.len() as u64 > limit {
        return Err(RunError::BadOutput(format!(
            "the result is {} long: the job's result-limit is {}",
            crate::units::format_size(s.len() as u64),
            crate::units::format_size(limit)
        )));
    }
    serde_json::from_str::<serde_json::Value>(&s)
        .map(|_| s)
        .map_err(|e| RunError::BadOutput(format!("result is not JSON: {e}")))
}

/// Turn the outcome of a store's work into a result, classifying traps.
fn finish<T>(
    store: &mut Store<RunData>,
    timeout: Duration,
    out: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
) -> Result<T, RunError> {
    let data = store.data();
    data.stdout.flush_partial();
    data.stderr.flush_partial();
    match out {
        Err(_) => Err(RunError::Timeout(timeout)),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
                return Err(RunError::Memory(m.clone()));
            }
            if let Some(o) = e.downcast_ref::<OutputLimitExceeded>() {
                return Err(RunError::Output(OutputLimitExceeded {
                    stream: o.stream,
                    limit: o.limit,
                }));
            }
            let message = match e.downcast_ref::<wasmtime::Trap>() {
                Some(trap) => trap.to_string(),
                None => format!("{e:#}"),
            };
            let stderr = data.log_tail("stderr: ", 3);
            Err(RunError::Trap { message, stderr })
        }
    }
}

impl RunData {
    fn log_tail(&self, prefix: &str, n: usize) -> Vec<String> {
        self.stdout
            .log()
            .tail(prefix, n)
            .into_iter()
            .map(|l| l.trim_start_matches(prefix).to_string())
            .collect()
    }
}

#[async_trait::async_trait]
impl FunctionHost for Runtime {
    async fn call_function(
        &self,
        module: &ModuleRef,
        params: &str,
        run: RunContext,
    ) -> Result<String, CallError> {
        let loaded = self
            .load(module)
            .await
            .map_err(|e| CallError::Host(format!("{e:#}")))?;
        match Runtime::call_function(self, &loaded, params, run).await {
            Ok(out) => Ok(out),
            Err(RunError::Module(e)) => Err(CallError::Module(e)),
            Err(other) => Err(CallError::Host(other.to_string())),
        }
    }
}

fn read_module(module: &ModuleRef) -> Result<(String, Vec<u8>), LoadError> {
    match module {
        ModuleRef::Builtin { id: name, .. } => {
            let b = builtins::find(name).ok_or_else(|| LoadError::UnknownBuiltin {
                name: name.clone(),
                available: builtins::all()
                    .iter()
                    .map(|b| b.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            Ok((format!("builtin:{name}"), b.wasm.to_vec()))
        }
        ModuleRef::File { path, .. } => {
            let label = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
                what: label.clone(),
                source,
            })?;
            Ok((label, bytes))
        }
        ModuleRef::Pipeline(p) => Err(LoadError::Pipeline {
            what: p.to_string(),
        }),
    }
}

fn check_magic(label: &str, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm {
            what: label.to_string(),
            magic: format!("`{}`", hex::encode(&bytes[..bytes.len().min(4)])),
        });
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule {
            what: label.to_string(),
        });
    }
    Ok(())
}

/// Names of a component's exports.
fn exports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

fn module_kind(engine: &Engine, component: &Component) -> Option<ModuleKind> {
    let exports = exports(engine, component);
    let has = |n: &str| exports.iter().any(|e| e == n);
    if has("backup") && has("restore") && has("describe") {
        Some(ModuleKind::Task)
    } else if has("call") && has("describe") {
        Some(ModuleKind::Function)
    } else {
        None
    }
}

/// Names of a component's imports (for `cairn plugin inspect`).
pub fn imports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Bump the engine's epoch every [`TICK`] until the returned token is dropped.
fn start_ticker(engine: &Engine) -> Arc<()> {
    let token = Arc::new(());
    let weak: Weak<()> = Arc::downgrade(&token);
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("cairn-epoch".into())
        .spawn(move || {
            while weak.strong_count() > 0 {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawn epoch ticker");
    token
}
