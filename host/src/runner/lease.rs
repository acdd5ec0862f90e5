//! A run's heartbeat while it goes: its log lines reach the state store in
//! batches (so a killed run keeps what it logged), its lease is renewed (so
//! other nodes know it is alive), and a cancel request from another node, or
//! the loss of the lease, cancels it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::capabilities::log::RunLog;
use crate::state::{LeaseState, LogLine, RENEW_EVERY, StateStore};

/// How often new log lines are written to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The heartbeat task of one run; [`Heartbeat::stop`] ends it.
pub struct Heartbeat {
    stop: CancellationToken,
    /// Returns the lines it could not store.
    task: tokio::task::JoinHandle<Vec<LogLine>>,
}

impl Heartbeat {
    /// Start beating for run `id`: store `log`'s new lines every
    /// [`FLUSH_EVERY`], renew the lease every [`RENEW_EVERY`], and cancel
    /// `cancel` when the lease is lost or someone asks for the run to stop.
    pub fn start(
        store: Arc<dyn StateStore>,
        id: &str,
        log: Option<RunLog>,
        cancel: CancellationToken,
    ) -> Self {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let id = id.to_owned();
        let task = tokio::spawn(async move {
            let mut renewed = Instant::now();
            // Lines a failed write left, tried again at the next beat.
            let mut pending: Vec<LogLine> = Vec::new();
            loop {
                tokio::select! {
                    () = tokio::time::sleep(FLUSH_EVERY) => {}
                    () = stopped.cancelled() => return pending,
                }
                let renew = renewed.elapsed() >= RENEW_EVERY;
                if renew {
                    renewed = Instant::now();
                }
                let mut lines = std::mem::take(&mut pending);
                if let Some(log) = &log {
                    lines.extend(log.take_unstored(false));
                }
                let (store, run) = (store.clone(), id.clone());
                let beat = tokio::task::spawn_blocking(move || {
                    let id = run;
                    let unstored = if !lines.is_empty()
                        && let Err(e) = store.append_logs(&id, &lines)
                    {
                        tracing::warn!(
                            "run {id}: cannot store {} log line(s) yet: {e}",
                            lines.len()
                        );
                        lines
                    } else {
                        Vec::new()
                    };
                    if !renew {
                        return (unstored, None);
                    }
                    match store.renew_lease(&id) {
                        Ok(state) => (unstored, Some(state)),
                        Err(e) => {
                            tracing::warn!("run {id}: cannot renew its lease: {e}");
                            (unstored, None)
                        }
                    }
                })
                .await;
                let beat = beat.map(|(unstored, state)| {
                    pending = unstored;
                    state
                });
                match beat {
                    Ok(Some(LeaseState::CancelRequested)) => {
                        tracing::info!("run {id}: cancel requested through the state store");
                        cancel.cancel();
                    }
                    Ok(Some(LeaseState::Lost)) => {
                        tracing::warn!(
                            "run {id}: lost its lease (another node marked it interrupted); \
                             stopping it"
                        );
                        cancel.cancel();
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("run {id}: heartbeat failed: {e}"),
                }
            }
        });
        Self { stop, task }
    }

    /// Stop beating. Returns the log lines it took but could not store yet
    /// (the store failed): the caller stores them first, then the rest of
    /// the log and the outcome.
    pub async fn stop(mut self) -> Vec<LogLine> {
        self.stop.cancel();
        (&mut self.task).await.unwrap_or_default()
    }
}

impl Drop for Heartbeat {
    /// A run that ends early (its store failed) stops renewing its lease,
    /// so that it is found `interrupted` rather than running forever.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
