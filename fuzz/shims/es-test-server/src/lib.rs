//! `cairn-es-test-server` with its modules public (`bulk`, `store`, …), built
//! from `tests/elasticsearch-server/src` unchanged; see `../expose.rs`.
#![allow(dead_code, unused_imports, private_interfaces, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/exposed.rs"));
