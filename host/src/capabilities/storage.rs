//! `cairn:plugin/storage`: artifacts of the current run's snapshot.
//!
//! The contract is defined in `wit/storage.wit`. This host does not have a
//! snapshot repository yet, so every call answers `unsupported` with a message
//! saying so; the repository work plugs in here without changing the WIT.

use wasmtime::component::Resource;

use crate::runtime::bindings::WitError;
use crate::runtime::bindings::task::cairn::plugin::shell::{Command, Output};
use crate::runtime::bindings::task::cairn::plugin::storage::{
    Artifact, Host, HostReader, HostWriter,
};

/// A stream artifact being written (host side of `storage.writer`).
pub struct Writer;

/// A stream artifact being read (host side of `storage.reader`).
pub struct Reader;

/// The `storage` capability of one store.
#[derive(Default)]
pub struct StorageCap;

fn unsupported<T>() -> wasmtime::Result<Result<T, WitError>> {
    Ok(Err(WitError::Unsupported(
        "storage is not available: this Cairn build has no snapshot repository yet".into(),
    )))
}

impl HostWriter for StorageCap {
    async fn write(
        &mut self,
        _: Resource<Writer>,
        _: Vec<u8>,
    ) -> wasmtime::Result<Result<(), WitError>> {
        unsupported()
    }
    async fn finish(
        &mut self,
        _: Resource<Writer>,
    ) -> wasmtime::Result<Result<Artifact, WitError>> {
        unsupported()
    }
    async fn drop(&mut self, _: Resource<Writer>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl HostReader for StorageCap {
    async fn read(
        &mut self,
        _: Resource<Reader>,
        _: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, WitError>> {
        unsupported()
    }
    async fn drop(&mut self, _: Resource<Reader>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl Host for StorageCap {
    async fn create(&mut self, _: String) -> wasmtime::Result<Result<Resource<Writer>, WitError>> {
        unsupported()
    }
    async fn create_from_command(
        &mut self,
        _: String,
        _: Command,
    ) -> wasmtime::Result<Result<Artifact, WitError>> {
        unsupported()
    }
    async fn add_tree(
        &mut self,
        _: String,
        _: String,
    ) -> wasmtime::Result<Result<Artifact, WitError>> {
        unsupported()
    }
    async fn set_note(&mut self, _: String, _: String) -> wasmtime::Result<Result<(), WitError>> {
        unsupported()
    }
    async fn notes(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, WitError>> {
        unsupported()
    }
    async fn list(&mut self) -> wasmtime::Result<Result<Vec<Artifact>, WitError>> {
        unsupported()
    }
    async fn open(&mut self, _: String) -> wasmtime::Result<Result<Resource<Reader>, WitError>> {
        unsupported()
    }
    async fn restore_to_command(
        &mut self,
        _: String,
        _: Command,
    ) -> wasmtime::Result<Result<Output, WitError>> {
        unsupported()
    }
    async fn restore_tree(
        &mut self,
        _: String,
        _: String,
    ) -> wasmtime::Result<Result<Artifact, WitError>> {
        unsupported()
    }
}
