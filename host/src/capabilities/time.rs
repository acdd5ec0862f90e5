//! `cairn:plugin/time`: wall-clock time and non-blocking sleep.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::runtime::bindings::task::cairn::plugin::time::Host;

/// The `time` capability. Always granted; a sleep still counts against the
/// run's timeout, which cancels it.
#[derive(Default)]
pub struct TimeCap;

impl Host for TimeCap {
    async fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0))
    }

    async fn sleep(&mut self, millis: u64) -> wasmtime::Result<()> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(())
    }
}
