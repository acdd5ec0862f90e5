//! `builtin:elasticsearch-dump` with its modules public (`load`, `manifest`,
//! `client`, `names`, `dump`), built natively from
//! `tasks/elasticsearch-dump/src` unchanged; see `../expose.rs`. Its
//! `export_task!` compiles natively (as in the task's own unit tests); the
//! host imports it would call are never reached by the fuzz target.
#![allow(dead_code, unused_imports, private_interfaces, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/exposed.rs"));
