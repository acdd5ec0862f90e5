//! Modules embedded in the `cairn` binary, addressed as `builtin:NAME`.
//!
//! `host/build.rs` compiles every crate under `tasks/` (except `tasks/testing/`)
//! for `wasm32-wasip2` and embeds the components here. A crate's kind comes
//! from `[package.metadata.cairn] kind = "task" | "function"` in its manifest.
//!
//! A built-in is named after its directory unless the manifest sets
//! `[package.metadata.cairn] name = "..."`. Names are unique per kind, so a
//! Task and a Function may share one: `builtin:command` in a job's `task` is
//! the Task of `tasks/command`, while the function `command` (in
//! `allow.functions`, `functions::call`, pipeline steps) is the Function of
//! `tasks/command-function`. Look a module up by what the caller expects
//! with [`find_kind`]; [`ModuleRef::Builtin`] holds the unambiguous
//! [`Builtin::id`].

pub use crate::model::ModuleKind;
use crate::model::ModuleRef;

/// One embedded module.
#[derive(Debug)]
pub struct Builtin {
    /// Its directory under `tasks/`: unique among built-ins, and what
    /// [`ModuleRef::Builtin`] holds.
    pub id: &'static str,
    /// The name it is addressed by (after `builtin:` for a task; a
    /// function's name). Unique per kind.
    pub name: &'static str,
    /// Task or function.
    pub kind: ModuleKind,
    /// The component bytes.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

impl Builtin {
    /// A reference to this module (unpinned).
    #[must_use]
    pub fn module(&self) -> ModuleRef {
        ModuleRef::builtin(self.id)
    }
}

/// Every built-in module, sorted by name, a Task before a Function of the
/// same name.
pub fn all() -> &'static [Builtin] {
    BUILTINS
}

/// The built-in module with id `key` (its directory), else one called
/// `key` (without the `builtin:` prefix), a Task before a Function. Use
/// [`find_kind`] when the caller knows which kind it wants.
pub fn find(key: &str) -> Option<&'static Builtin> {
    BUILTINS
        .iter()
        .find(|b| b.id == key)
        .or_else(|| find_kind(key, ModuleKind::Task))
        .or_else(|| find_kind(key, ModuleKind::Function))
}

/// The built-in `kind` module called `name`.
pub fn find_kind(name: &str, kind: ModuleKind) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name && b.kind == kind)
}

/// Directory holding the compiled test programs of `tasks/testing/` (for the
/// end-to-end tests; not embedded).
pub fn test_programs_dir() -> &'static str {
    TEST_PROGRAMS_DIR
}
