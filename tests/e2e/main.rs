//! Cairn's end-to-end tests: real wasmtime, real child processes, a real
//! loopback HTTP server, the real `cairn` binary. One test binary; each module
//! covers one area.

mod architecture;
mod backends;
mod cli;
mod daemon;
mod dashboard;
mod elasticsearch;
mod es_cluster;
mod es_snapshot;
mod examples;
mod functions;
mod hostile;
mod languages;
mod mariadb;
mod multinode;
mod pipeline;
mod repository;
mod sandbox;
mod servers;
mod support;
mod tls;
