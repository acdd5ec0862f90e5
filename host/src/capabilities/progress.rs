//! `cairn:plugin/progress`: progress reports to a terminal bar or plain lines,
//! and the last report into the run record.

use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::progress::{self, Host, Unit};
use super::{Capability, HostShared, RunContext};

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all, if known.
    pub total: Option<u64>,
    /// Whether the units are bytes (else items).
    pub bytes: bool,
}

/// Where progress goes (a terminal bar, plain lines, nowhere). Cheap to clone.
pub type ProgressSink = Arc<dyn Fn(&str, Progress) + Send + Sync>;

/// A sink that drops every report.
pub fn no_progress() -> ProgressSink {
    Arc::new(|_, _| {})
}

/// The `progress` capability of one store. Always granted.
pub struct ProgressCap {
    job: String,
    sink: ProgressSink,
    last: Arc<Mutex<Option<Progress>>>,
}

impl Capability for ProgressCap {
    const INTERFACE: &'static str = "cairn:plugin/progress";

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()> {
        progress::add_to_linker::<T, HasSelf<Self>>(linker, get)
    }

    /// Reports for the run's job go to its sink; the latest is kept.
    fn prepare(run: &RunContext, _host: &HostShared) -> anyhow::Result<Self> {
        Ok(Self {
            job: run.job.clone(),
            sink: run.progress.clone(),
            last: run.last_progress.clone(),
        })
    }
}

impl Host for ProgressCap {
    async fn report(&mut self, done: u64, total: Option<u64>, unit: Unit) -> wasmtime::Result<()> {
        let p = Progress {
            done,
            total,
            bytes: matches!(unit, Unit::Bytes),
        };
        *self.last.lock().unwrap() = Some(p);
        (self.sink)(&self.job, p);
        Ok(())
    }
}
