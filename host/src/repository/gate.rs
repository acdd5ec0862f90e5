//! Commit gate: a write backend that holds snapshot files back until commit.
//!
//! Packs and index files go straight to the repository; snapshot files are kept in
//! memory while holding (and served to readers from there), so nothing becomes
//! visible until [`GateBackend::commit`].

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use rustic_core::{BytesList, FileType, Id, ReadBackend, RusticResult, WriteBackend};

/// A held snapshot file: id, cacheable flag, encrypted bytes.
type Held = (Id, bool, BytesList);

#[derive(Debug)]
pub(super) struct GateBackend {
    inner: Arc<dyn WriteBackend>,
    holding: AtomicBool,
    held: Mutex<Vec<Held>>,
}

impl GateBackend {
    pub(super) fn new(inner: Arc<dyn WriteBackend>) -> Self {
        Self {
            inner,
            holding: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Start holding snapshot writes.
    pub(super) fn hold(&self) {
        self.holding.store(true, Ordering::SeqCst);
    }

    /// Ids of the snapshot files held so far.
    pub(super) fn held_ids(&self) -> Vec<Id> {
        self.held().iter().map(|(id, _, _)| *id).collect()
    }

    /// Forget the held snapshot files (keep holding).
    pub(super) fn discard(&self) {
        self.held().clear();
    }

    /// Write the held snapshot files and stop holding: the commit point.
    pub(super) fn commit(&self) -> RusticResult<()> {
        self.holding.store(false, Ordering::SeqCst);
        let held = std::mem::take(&mut *self.held());
        for (id, cacheable, buf) in held {
            self.inner
                .write_bytes(FileType::Snapshot, &id, cacheable, buf)?;
        }
        Ok(())
    }
}

impl ReadBackend for GateBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let held = (tpe == FileType::Snapshot)
            .then(|| {
                self.held()
                    .iter()
                    .find(|(i, _, _)| i == id)
                    .map(|(_, _, buf)| buf.slice().concat())
            })
            .flatten();
        if let Some(bytes) = held {
            return Ok(Bytes::from(bytes));
        }
        self.inner.read_full(tpe, id)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for GateBackend {
    fn create(&self) -> RusticResult<()> {
        self.inner.create()
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        buf: BytesList,
    ) -> RusticResult<()> {
        if tpe == FileType::Snapshot && self.holding.load(Ordering::SeqCst) {
            self.held().push((*id, cacheable, buf));
            return Ok(());
        }
        self.inner.write_bytes(tpe, id, cacheable, buf)
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, cacheable)
    }
}
