//! `cairn:plugin/time`: wall-clock time and non-blocking sleep.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::time::{self, Host};
use super::{Capability, HostShared, RunContext};

/// The `time` capability. Always granted; a sleep still counts against the
/// run's timeout, which cancels it.
#[derive(Default)]
pub struct TimeCap;

impl Capability for TimeCap {
    const INTERFACE: &'static str = "cairn:plugin/time";

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()> {
        time::add_to_linker::<T, HasSelf<Self>>(linker, get)
    }

    fn prepare(_run: &RunContext, _host: &HostShared) -> anyhow::Result<Self> {
        Ok(Self)
    }
}

impl Host for TimeCap {
    async fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0))
    }

    async fn sleep(&mut self, millis: u64) -> wasmtime::Result<()> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(())
    }
}
