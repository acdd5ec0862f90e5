//! The on-disk compile cache: one precompiled artifact per module digest and
//! engine configuration, so a second process start does not recompile.
//!
//! Precompiled code is native code: loading a forged entry would run it.
//! So every entry is authenticated: its file is the HMAC-SHA256 of the
//! precompiled bytes (32 bytes) followed by the bytes, keyed with a random
//! key kept outside the cache directory ([`crate::sys::cache_key_path`],
//! created with mode 0600 on first use). An entry whose tag does not match
//! (tampered, truncated, written with another key) is discarded and the
//! module recompiled. The configuration refuses any path grant that reaches
//! the cache or its key.
//!
//! Files are `<sha256>-<engine hash>.cwasm`, written atomically (temporary
//! file, then rename).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

type Tag = Hmac<Sha256>;

/// The layout of an entry file (tag, then precompiled bytes).
const ENTRY_FORMAT: &str = "hmac-sha256-v1";

/// Bytes of the tag before an entry's precompiled bytes.
const TAG_LEN: usize = 32;

/// A compile cache in one directory.
pub struct CompileCache {
    dir: PathBuf,
    engine_hash: u64,
    /// The key, or `None` when it cannot be read or made (then nothing is
    /// loaded from or stored in the cache).
    key: Option<[u8; 32]>,
}

impl CompileCache {
    /// Cache in `dir` (created on first write) for `engine`'s configuration,
    /// authenticated with the key beside it.
    pub fn new(dir: &Path, engine: &Engine) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        // The entry format: entries of another format get another name, so
        // they are never mistaken for tampered ones.
        ENTRY_FORMAT.hash(&mut h);
        let key_path = crate::sys::cache_key_path(dir);
        let key = match load_or_create_key(&key_path) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(
                    "compile cache disabled: cannot read or create its key {}: {e}",
                    key_path.display()
                );
                None
            }
        };
        Self {
            dir: dir.to_path_buf(),
            engine_hash: h.finish(),
            key,
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

    /// The component for `bytes`, from the cache (if its entry is
    /// authentic) or compiled (and stored). A bad, corrupt or unreadable
    /// entry is recompiled; a cache that cannot be written only costs the
    /// next start a compile.
    ///
    /// # Errors
    /// When `bytes` does not compile.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &[u8; 32],
    ) -> wasmtime::Result<Component> {
        let Some(key) = &self.key else {
            return Component::new(engine, bytes);
        };
        let path = self.path(digest);
        if let Ok(entry) = std::fs::read(&path) {
            match verified(key, &entry) {
                // SAFETY: the bytes carry our tag, so this host's engine
                // wrote them with `precompile_component` (same compatibility
                // hash, in the file name).
                Some(compiled) => match unsafe { Component::deserialize(engine, compiled) } {
                    Ok(c) => return Ok(c),
                    Err(e) => tracing::warn!(
                        "compile cache entry {} is unusable ({e}); recompiling",
                        path.display()
                    ),
                },
                None => tracing::warn!(
                    "compile cache entry {} is not authentic (tampered or foreign); discarding it",
                    path.display()
                ),
            }
            let _ = std::fs::remove_file(&path);
        }
        let compiled = engine.precompile_component(bytes)?;
        if let Err(e) = self.store(key, &path, &compiled) {
            tracing::warn!("cannot write compile cache {}: {e}", path.display());
        }
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(engine, &compiled) }
    }

    fn store(&self, key: &[u8; 32], path: &Path, compiled: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&tag(key, compiled))?;
        file.write_all(compiled)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    }
}

/// The HMAC-SHA256 of `bytes` under `key`.
fn tag(key: &[u8; 32], bytes: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = Tag::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// The precompiled bytes of `entry`, if its tag is right (constant time).
fn verified<'a>(key: &[u8; 32], entry: &'a [u8]) -> Option<&'a [u8]> {
    if entry.len() < TAG_LEN {
        return None;
    }
    let (given, compiled) = entry.split_at(TAG_LEN);
    let mut mac = Tag::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(compiled);
    mac.verify_slice(given).ok().map(|()| compiled)
}

/// The cache key at `path`, made (32 random bytes, mode 0600) when missing.
fn load_or_create_key(path: &Path) -> std::io::Result<[u8; 32]> {
    let read = |path: &Path| -> std::io::Result<[u8; 32]> {
        let bytes = std::fs::read(path)?;
        bytes.try_into().map_err(|_| {
            std::io::Error::other("it is not 32 bytes long; remove it to make a new one")
        })
    };
    match read(path) {
        Ok(key) => return Ok(key),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!("key.tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&key)?;
    file.sync_all()?;
    drop(file);
    // Another process may have made one meanwhile: the first one wins.
    match std::fs::hard_link(&tmp, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            read(path)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entries_tagged_with_the_key_are_loaded() {
        let key = [7u8; 32];
        let compiled = b"precompiled bytes";
        let mut entry = tag(&key, compiled).to_vec();
        entry.extend_from_slice(compiled);
        assert_eq!(verified(&key, &entry), Some(&compiled[..]));
        let mut tampered = entry.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(verified(&key, &tampered), None);
        assert_eq!(verified(&[8u8; 32], &entry), None);
        assert_eq!(verified(&key, &entry[..10]), None);
    }

    #[test]
    fn the_key_is_made_once_and_private() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cache.key");
        let first = load_or_create_key(&path)?;
        assert_eq!(load_or_create_key(&path)?, first);
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, b"short")?;
        assert!(load_or_create_key(&path).is_err());
        Ok(())
    }
}
