//! Cairn: a backup and restore job runner whose procedures are WebAssembly plug-ins.
//!
//! The host loads Task and Function components (see `wit/`), gives each run
//! only the capabilities its job grants, and records every run. Its modules
//! sit in layers; each imports only from the layers below it (the
//! architecture test in `tests/e2e/architecture.rs` keeps this true, and
//! `ARCHITECTURE.md` is the map):
//!
//! 1. [`model`], [`units`], [`sys`], [`scaffold`]: the vocabulary and leaf helpers.
//! 2. [`builtins`]: modules embedded in the binary.
//! 3. [`state`], [`repository`]: run history and snapshots.
//! 4. [`capabilities`]: the contract's bindings and one host interface per file.
//! 5. [`runtime`]: the wasmtime engine, compile cache, limits and stores.
//! 6. [`pipeline`]: tasks written in TOML as ordered steps.
//! 7. [`config`]: the TOML configuration, resolved into model types.
//! 8. [`runner`]: runs a job end to end and records it.
//! 9. [`daemon`]: scheduled runs, HTTP API and metrics (`cairn daemon`).
//!
//! The command line (`src/main.rs`, `src/cli/`) sits on top.

pub mod builtins;
pub mod capabilities;
pub mod config;
pub mod daemon;
pub mod model;
pub mod pipeline;
pub mod repository;
pub mod runner;
pub mod runtime;
pub mod scaffold;
pub mod state;
pub mod sys;
pub mod units;
