//! Cairn: a backup and restore job runner whose procedures are WebAssembly plug-ins.
//!
//! The host loads Task and Function components (see `wit/`), gives each run
//! only the capabilities its job grants, and records every run.
//!
//! - [`config`]: the TOML configuration, validated as a whole.
//! - [`runtime`]: the wasmtime engine, compile cache, limits and sandbox.
//! - [`capabilities`]: one module per WIT interface the host implements.
//! - [`repository`]: the restic-compatible snapshot repository.
//! - [`state`]: run history and per-job key/value state.
//! - [`runner`]: runs a job end to end and records it.
//! - [`builtins`]: modules embedded in the binary.
//! - [`daemon`]: scheduled runs, HTTP API and metrics (`cairn daemon`).
//! - [`pipeline`]: tasks written in TOML as ordered Function steps.

pub mod builtins;
pub mod capabilities;
pub mod config;
pub mod daemon;
pub mod pipeline;
pub mod repository;
pub mod runner;
pub mod runtime;
pub mod scaffold;
pub mod state;
pub mod units;
