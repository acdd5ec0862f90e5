//! Per-store resource limits: linear memory, instances, tables.

use wasmtime::ResourceLimiter;

/// Instances per store: Python and JavaScript guests instantiate many core modules.
pub const MAX_INSTANCES: usize = 1000;
/// Tables and memories per store.
pub const MAX_TABLES_AND_MEMORIES: usize = 1000;
/// Table elements per table.
pub const MAX_TABLE_ELEMENTS: usize = 10_000_000;

/// A module asked for more linear memory than its job allows.
#[derive(Debug, Clone, thiserror::Error)]
#[error("module exceeded its memory limit of {} (it asked for {}); raise the job's `memory` if this is expected", crate::units::format_size(*.limit), crate::units::format_size(*.requested))]
pub struct MemoryLimitExceeded {
    /// The limit, bytes.
    pub limit: u64,
    /// What the module asked for, bytes.
    pub requested: u64,
}

/// Bytes a table element is counted as (a reference).
pub const TABLE_ELEMENT_BYTES: u64 = 8;

/// The limiter of one store. Memory is counted across all the store's
/// memories and tables (each element as [`TABLE_ELEMENT_BYTES`]).
pub struct RunLimiter {
    memory_limit: u64,
    memory_in_use: u64,
    tables_in_use: u64,
}

impl RunLimiter {
    /// At most `memory_limit` bytes of linear memory in all.
    pub fn new(memory_limit: u64) -> Self {
        Self {
            memory_limit,
            memory_in_use: 0,
            tables_in_use: 0,
        }
    }
}

impl ResourceLimiter for RunLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_in_use - (current as u64).min(self.memory_in_use) + desired as u64;
        if total + self.tables_in_use > self.memory_limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.memory_limit,
                requested: total + self.tables_in_use,
            }));
        }
        self.memory_in_use = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let grown = (desired.saturating_sub(current) as u64) * TABLE_ELEMENT_BYTES;
        let total = self.memory_in_use + self.tables_in_use + grown;
        if total > self.memory_limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.memory_limit,
                requested: total,
            }));
        }
        self.tables_in_use += grown;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES_AND_MEMORIES
    }

    fn memories(&self) -> usize {
        MAX_TABLES_AND_MEMORIES
    }
}
