//! Host capabilities, one module per `cairn:plugin` interface.
//!
//! Every capability is a unit of the same shape ([`Capability`]): what it adds
//! to a linker, and the per-store state it builds from the run's grants and
//! limits ([`RunContext`]). Each one's file owns its grant checks, its
//! limits and its error type; a denial is a WIT `error` the guest receives,
//! a host fault a trap ([`HostError`]). [`wasi`] sets up the WASI side of the
//! sandbox, which is wasmtime-wasi's.
//!
//! [`CAPABILITIES`](capabilities!) lists them all: adding a capability means
//! its WIT file (and its `import` in `wit/worlds.wit`), one file here, and one
//! line in the table below.

pub mod bindings;
mod error;
pub mod fs;
pub mod functions;
pub mod http;
pub mod log;
pub mod process;
pub mod progress;
pub mod redact;
pub mod secrets;
pub mod shell;
pub mod state;
pub mod storage;
pub mod time;
pub mod tls;
pub mod wasi;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};

pub use bindings::WitError;
pub use error::{HostError, HostResult, describe, prefixed};

use crate::model::{Grants, Limits, ModuleRef};
use crate::state::StateStore;

/// One host capability: a `cairn:plugin` interface and its per-store state
/// (Spin's factors, in small).
pub trait Capability: Sized + Send + 'static {
    /// The WIT interface it implements.
    const INTERFACE: &'static str;
    /// Whether only Task modules may import it (Functions may not).
    const TASKS_ONLY: bool = false;

    /// Add its host functions to `linker`; `get` finds its state in a store.
    ///
    /// # Errors
    /// When the linker already defines the interface.
    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()>;

    /// Its state for one store of the run described by `run`.
    ///
    /// # Errors
    /// When the state cannot be set up (a host fault, not a denial).
    fn prepare(run: &RunContext, host: &HostShared) -> anyhow::Result<Self>;

    /// The run's redactor, when the capability's errors may carry what a
    /// secret became (a program's stderr, a server's answer): every error it
    /// returns to the module is cleaned with it.
    fn redactor(&self) -> Option<&redact::Redactor> {
        None
    }
}

/// Store data that holds a [`Capabilities`] table.
pub trait HasCapabilities: Send + 'static {
    /// The capabilities of this store.
    fn capabilities(&mut self) -> &mut Capabilities;
}

/// The table: every capability, its field in a store's [`Capabilities`].
macro_rules! capabilities {
    ($($field:ident: $cap:ty,)*) => {
        /// The capabilities of one store, one field per capability.
        pub struct Capabilities {
            $(
                #[doc = concat!("`", stringify!($field), "`: ", stringify!($cap), ".")]
                pub $field: $cap,
            )*
        }

        impl Capabilities {
            /// The WIT interfaces of every capability.
            pub const INTERFACES: &'static [&'static str] =
                &[$(<$cap as Capability>::INTERFACE,)*];

            /// Every capability's state for one store of `run`.
            ///
            /// # Errors
            /// When one cannot be set up.
            pub fn prepare(run: &RunContext, host: &HostShared) -> anyhow::Result<Self> {
                Ok(Self {
                    $($field: <$cap as Capability>::prepare(run, host)?,)*
                })
            }

            /// Add every capability to `linker`: all of them for a Task's
            /// linker, those not [`Capability::TASKS_ONLY`] for a Function's.
            ///
            /// # Errors
            /// When the linker already defines one.
            pub fn add_to_linker<T: HasCapabilities>(
                linker: &mut Linker<T>,
                for_tasks: bool,
            ) -> wasmtime::Result<()> {
                // `types` has no functions; any capability stands for it.
                bindings::interfaces::types::add_to_linker::<T, HasSelf<time::TimeCap>>(
                    linker,
                    |t: &mut T| &mut t.capabilities().time,
                )?;
                $(
                    if for_tasks || !<$cap as Capability>::TASKS_ONLY {
                        <$cap as Capability>::add_to_linker(linker, |t: &mut T| {
                            &mut t.capabilities().$field
                        })?;
                    }
                )*
                Ok(())
            }
        }

        // The `types` interface has no functions, only how a [`HostError`]
        // becomes what the guest sees: the same for every capability.
        $(
            impl bindings::interfaces::types::Host for $cap {
                fn convert_error(&mut self, err: HostError) -> wasmtime::Result<WitError> {
                    let err = err.into_guest()?;
                    Ok(match <$cap as Capability>::redactor(self) {
                        Some(redactor) => error::redacted(redactor, err),
                        None => err,
                    })
                }
            }
        )*
    };
}

capabilities! {
    log: log::LogCap,
    progress: progress::ProgressCap,
    time: time::TimeCap,
    state: state::StateCap,
    secrets: secrets::SecretsCap,
    http: http::HttpCap,
    shell: shell::ShellCap,
    storage: storage::StorageCap,
    functions: functions::FunctionsCap,
}

/// Everything a run's capabilities are built from: decided per run, cheap
/// to clone (a Function call reuses its task's context).
#[derive(Clone)]
pub struct RunContext {
    /// Job name.
    pub job: String,
    /// Run id.
    pub run_id: String,
    /// The job's grants.
    pub grants: Arc<Grants>,
    /// The job's limits.
    pub limits: Limits,
    /// State store (for `state`).
    pub store: Arc<dyn StateStore>,
    /// Run log.
    pub log: log::RunLog,
    /// Secret values granted to the job.
    pub secrets: Arc<secrets::SecretValues>,
    /// Custom functions declared in the config.
    pub functions: Arc<BTreeMap<String, ModuleRef>>,
    /// Progress reports go here.
    pub progress: progress::ProgressSink,
    /// Last progress report.
    pub last_progress: Arc<Mutex<Option<progress::Progress>>>,
    /// The run's snapshot (backup or restore), if it has one.
    pub storage: storage::RunStorage,
}

/// What the host shares between the stores it makes.
#[derive(Clone)]
pub struct HostShared {
    /// The HTTP client (no redirects, no proxies).
    pub http: reqwest::Client,
    /// How a Task's `functions.call` reaches the runtime.
    pub functions: Arc<dyn functions::FunctionHost>,
}

/// How a denial describes a grant list: `grants none` or `grants only a, b`.
pub fn grants_phrase<S: std::fmt::Display>(granted: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = granted.into_iter().map(|g| g.to_string()).collect();
    if items.is_empty() {
        "grants none".to_string()
    } else {
        format!("grants only {}", items.join(", "))
    }
}
