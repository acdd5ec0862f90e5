//! WASI for plug-ins: stdout/stderr captured into the run log (capped), no
//! arguments or environment, pre-opened directories only for granted paths,
//! no sockets and no name lookup.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::log::RunLog;
use super::redact::StreamRedactor;
use crate::model::Access;

/// A guest wrote more than its output cap to stdout or stderr.
#[derive(Debug, thiserror::Error)]
#[error("module wrote more than {} to {stream} (the job's output-limit); the run was stopped", crate::units::format_size(*.limit))]
pub struct OutputLimitExceeded {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The cap in bytes.
    pub limit: u64,
}

struct CaptureState {
    written: u64,
    /// Secrets are masked in the byte stream before it is cut into lines,
    /// so a value split across writes or lines is still found.
    redacting: StreamRedactor,
    partial: Vec<u8>,
    /// A line longer than [`MAX_PARTIAL`] was logged cut: drop the rest of it.
    skipping: bool,
}

/// The longest line kept whole before it is logged cut (the run log then
/// cuts it further to the job's `log-line-limit`).
const MAX_PARTIAL: usize = 64 * 1024;

/// A guest output stream: lines go to the run log, bytes beyond the cap trap.
#[derive(Clone)]
pub struct Capture {
    stream: &'static str,
    limit: u64,
    log: RunLog,
    state: Arc<Mutex<CaptureState>>,
}

impl Capture {
    /// Capture `stream` (`stdout`/`stderr`) into `log`, at most `limit` bytes.
    pub fn new(stream: &'static str, limit: u64, log: RunLog) -> Self {
        Self {
            stream,
            limit,
            log,
            state: Arc::new(Mutex::new(CaptureState {
                written: 0,
                redacting: StreamRedactor::default(),
                partial: Vec::new(),
                skipping: false,
            })),
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let level = if self.stream == "stderr" {
            "warn"
        } else {
            "info"
        };
        self.log
            .push(level, &format!("{}: {text}", self.stream), &[]);
    }

    /// The run log lines go to.
    pub fn log(&self) -> &RunLog {
        &self.log
    }

    /// Log any unterminated last line.
    pub fn flush_partial(&self) {
        let rest = {
            let mut st = self.state.lock().unwrap();
            let redactor = self.log.redactor_arc();
            let held = st.redacting.finish(&redactor);
            let mut rest = std::mem::take(&mut st.partial);
            if !st.skipping {
                rest.extend_from_slice(&held);
            }
            rest
        };
        for line in rest.split(|b| *b == b'\n') {
            if !line.is_empty() {
                self.emit(line);
            }
        }
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp2 streams are used by Cairn's worlds.
        Box::new(tokio::io::sink())
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let mut lines = Vec::new();
        {
            let mut st = self.state.lock().unwrap();
            st.written += bytes.len() as u64;
            if st.written > self.limit {
                return Err(StreamError::Trap(wasmtime::Error::new(
                    OutputLimitExceeded {
                        stream: self.stream,
                        limit: self.limit,
                    },
                )));
            }
            let redactor = self.log.redactor_arc();
            let clean = st.redacting.push(&redactor, &bytes);
            // Whole lines go to the log. A line longer than MAX_PARTIAL is
            // logged cut once and the rest of it dropped.
            let mut rest: &[u8] = &clean;
            while !rest.is_empty() {
                let newline = rest.iter().position(|b| *b == b'\n');
                let (chunk, ends_line) = match newline {
                    Some(pos) => (&rest[..pos], true),
                    None => (rest, false),
                };
                rest = newline.map_or(&[][..], |pos| &rest[pos + 1..]);
                if !st.skipping {
                    let room = MAX_PARTIAL - st.partial.len();
                    st.partial
                        .extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if chunk.len() > room {
                        lines.push(std::mem::take(&mut st.partial));
                        st.skipping = true;
                    }
                }
                if ends_line {
                    if st.skipping {
                        st.skipping = false;
                    } else {
                        lines.push(std::mem::take(&mut st.partial));
                    }
                }
            }
        }
        for line in lines {
            self.emit(&line);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

/// Build the WASI context of one store.
///
/// # Errors
/// When a granted directory cannot be opened.
pub fn build(
    paths: &BTreeMap<PathBuf, Access>,
    stdout: Capture,
    stderr: Capture,
) -> anyhow::Result<WasiCtx> {
    let mut b = WasiCtxBuilder::new();
    b.stdout(stdout)
        .stderr(stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    for (path, access) in paths {
        if !path.is_dir() {
            // Files and missing paths are reached through host capabilities only.
            continue;
        }
        let perms = match access {
            Access::Read => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        let guest = path.to_string_lossy();
        b.preopened_dir(path, &*guest, perms)
            .map_err(|e| anyhow::anyhow!("cannot open granted path {}: {e}", path.display()))?;
    }
    Ok(b.build())
}
