//! Cairn's end-to-end tests: real wasmtime, real child processes, a real
//! loopback HTTP server, the real `cairn` binary. One test binary; each module
//! covers one area.

mod cli;
mod repository;
mod sandbox;
mod support;
