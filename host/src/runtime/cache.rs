//! The on-disk compile cache: one precompiled artifact per module digest and
//! engine configuration, so a second process start does not recompile.
//!
//! Files are `<sha256>-<engine hash>.cwasm`, written atomically (temporary
//! file, then rename). The directory must be writable only by the user
//! running Cairn: precompiled code is trusted when loaded.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// A compile cache in one directory.
pub struct CompileCache {
    dir: PathBuf,
    engine_hash: u64,
}

impl CompileCache {
    /// Cache in `dir` (created on first write) for `engine`'s configuration.
    pub fn new(dir: &Path, engine: &Engine) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        Self {
            dir: dir.to_path_buf(),
            engine_hash: h.finish(),
        }
    }

    /// Path of the artifact for `digest`.
    pub fn path(&self, digest: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}-{:016x}.cwasm",
            hex::encode(digest),
            self.engine_hash
        ))
    }

    /// The component for `bytes`, from the cache or compiled (and stored).
    /// A corrupt or unreadable cache entry is recompiled; a cache directory
    /// that cannot be written only costs the next start a compile.
    ///
    /// # Errors
    /// When `bytes` does not compile.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &[u8; 32],
    ) -> wasmtime::Result<Component> {
        let path = self.path(digest);
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an engine
            // with the same compatibility hash, into a directory owned by this user.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(
                        "compile cache entry {} is unusable ({e}); recompiling",
                        path.display()
                    );
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        if let Err(e) = self.store(&path, &compiled) {
            tracing::warn!("cannot write compile cache {}: {e}", path.display());
        }
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(engine, &compiled) }
    }

    fn store(&self, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, compiled)?;
        std::fs::rename(&tmp, path)
    }
}
