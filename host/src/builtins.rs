//! Modules embedded in the `cairn` binary, addressed as `builtin:NAME`.
//!
//! `host/build.rs` compiles every crate under `tasks/` (except `tasks/testing/`)
//! for `wasm32-wasip2` and embeds the components here. A crate's kind comes
//! from `[package.metadata.cairn] kind = "task" | "function"` in its manifest.

/// What a module exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    /// Exports `cairn:plugin` world `task`.
    Task,
    /// Exports `cairn:plugin` world `function`.
    Function,
}

/// One embedded module.
#[derive(Debug)]
pub struct Builtin {
    /// Name after `builtin:`.
    pub name: &'static str,
    /// Task or function.
    pub kind: ModuleKind,
    /// The component bytes.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// Every built-in module, sorted by name.
pub fn all() -> &'static [Builtin] {
    BUILTINS
}

/// The built-in module called `name` (without the `builtin:` prefix).
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Directory holding the compiled test programs of `tasks/testing/` (for the
/// end-to-end tests; not embedded).
pub fn test_programs_dir() -> &'static str {
    TEST_PROGRAMS_DIR
}
