//! The on-disk compile cache: one precompiled artifact per module digest and
//! engine configuration, so a second process start does not recompile.
//!
//! Precompiled code is native code: loading a forged entry would run it.
//! So every entry is authenticated: its file is the precompiled bytes
//! followed by their HMAC-SHA256 (32 bytes), keyed with a random key kept
//! outside the cache directory ([`crate::sys::cache_key_path`], created with
//! mode 0600 on first use). An entry whose tag does not match (tampered,
//! truncated, written with another key), that is not a regular file owned by
//! this user, or that others may write, is discarded and the module
//! recompiled. The configuration refuses any path grant that reaches the
//! cache or its key.
//!
//! Loading an entry opens it once, checks its tag by reading every byte
//! through that open file, then maps that same file (`/proc/self/fd/N`) for
//! wasmtime, so no copy is made and the Python or JavaScript heap snapshot
//! is mapped copy-on-write rather than copied. Replacing the file after the
//! check (a rename) does not reach the open file; changing it in place
//! needs write permission on it, which only this user has (mode 0600) — and
//! this user can read the key anyway.
//!
//! A module file's SHA-256 is remembered too ([`CompileCache::known_digest`]):
//! beside the entries, `digests/`, one small record per module path holding
//! the file's device, inode, size, modification and change times and its
//! digest, authenticated with the same key. A record is used only when the
//! file's metadata is the same; it is written only for a file unchanged
//! during hashing whose change time is over a second old (a later write
//! changes the change time, which a user cannot set back).
//!
//! Files are `<sha256>-<engine hash>.cwasm`, written atomically (temporary
//! file, then rename).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

type Tag = Hmac<Sha256>;

/// The layout of an entry file (precompiled bytes, then the tag).
const ENTRY_FORMAT: &str = "hmac-sha256-trailer-v2";

/// The layout of a remembered digest (see [`DigestRecord`]).
const DIGEST_FORMAT: &str = "cairn-module-digest-v1";

/// Bytes of the tag after an entry's precompiled bytes.
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
        match self.lookup(engine, digest) {
            Some(component) => Ok(component),
            None => self.compile_and_store(engine, bytes, digest),
        }
    }

    /// The cached component for `digest`, if there is an authentic entry
    /// that this engine loads. A bad entry is removed (and warned about).
    pub fn lookup(&self, engine: &Engine, digest: &[u8; 32]) -> Option<Component> {
        let key = self.key.as_ref()?;
        let path = self.path(digest);
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(
                    "compile cache entry {} cannot be opened ({e}); recompiling",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                return None;
            }
        };
        match verify_file(key, &file) {
            Ok(()) => match load_verified(engine, key, &file) {
                Ok(component) => return Some(component),
                Err(e) => tracing::warn!(
                    "compile cache entry {} is unusable ({e:#}); recompiling",
                    path.display()
                ),
            },
            Err(why) => tracing::warn!(
                "compile cache entry {} is not authentic ({why}); discarding it",
                path.display()
            ),
        }
        let _ = std::fs::remove_file(&path);
        None
    }

    /// Compile `bytes` and store the result for `digest` (a failure to
    /// store is only warned about).
    ///
    /// # Errors
    /// When `bytes` does not compile.
    pub fn compile_and_store(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &[u8; 32],
    ) -> wasmtime::Result<Component> {
        let Some(key) = &self.key else {
            return Component::new(engine, bytes);
        };
        let path = self.path(digest);
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
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(compiled)?;
        file.write_all(&tag(key, compiled))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    }

    /// The SHA-256 of the module file at `path`, whose metadata is `meta`,
    /// if an authentic record of it for exactly this metadata is kept.
    pub fn known_digest(&self, path: &Path, meta: &std::fs::Metadata) -> Option<[u8; 32]> {
        let key = self.key.as_ref()?;
        let bytes = std::fs::read(self.digest_record_path(path)).ok()?;
        let record = DigestRecord::of(meta, [0; 32]);
        let (body, given) = bytes.split_at_checked(bytes.len().checked_sub(TAG_LEN)?)?;
        let digest: [u8; 32] = body.get(DigestRecord::LEN - 32..)?.try_into().ok()?;
        let expected = DigestRecord { digest, ..record };
        if body != expected.encode() {
            return None;
        }
        let mut mac = Tag::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(&digest_tag_input(path, body));
        mac.verify_slice(given).ok()?;
        Some(digest)
    }

    /// Remember `digest` as the SHA-256 of the file at `path`, read while
    /// its metadata was `before` and then `after`: only when both are the
    /// same and its change time is over a second before `started` (when
    /// the read began). Failing to write only costs the next start a hash.
    pub fn remember_digest(
        &self,
        path: &Path,
        before: &std::fs::Metadata,
        after: &std::fs::Metadata,
        started: std::time::SystemTime,
        digest: &[u8; 32],
    ) {
        let Some(key) = &self.key else { return };
        let record = DigestRecord::of(before, *digest);
        if record != DigestRecord::of(after, *digest) {
            return;
        }
        let changed = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                u64::try_from(before.ctime()).unwrap_or(u64::MAX / 2),
                u32::try_from(before.ctime_nsec()).unwrap_or(0),
            );
        if started
            .duration_since(changed)
            .is_ok_and(|age| age < std::time::Duration::from_secs(1))
            || changed > started
        {
            return;
        }
        let body = record.encode();
        let mut mac = Tag::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(&digest_tag_input(path, &body));
        let mut bytes = body;
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        let target = self.digest_record_path(path);
        let write = || -> std::io::Result<()> {
            let dir = target.parent().expect("a record is in digests/");
            std::fs::create_dir_all(dir)?;
            let tmp = target.with_extension(format!("tmp{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            drop(file);
            std::fs::rename(&tmp, &target)
        };
        if let Err(e) = write() {
            tracing::debug!("cannot remember the digest of {}: {e}", path.display());
        }
    }

    /// `digests/<sha256 of the path>`.
    fn digest_record_path(&self, path: &Path) -> PathBuf {
        use sha2::Digest as _;
        let name = Sha256::digest(path.as_os_str().as_encoded_bytes());
        self.dir.join("digests").join(hex::encode(name))
    }
}

/// The SHA-256 of `bytes` (ring's, with SHA extensions: a Python component
/// is tens of megabytes).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// What a remembered digest is valid for: a file's identity and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DigestRecord {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
    digest: [u8; 32],
}

impl DigestRecord {
    const LEN: usize = 7 * 8 + 32;

    fn of(meta: &std::fs::Metadata, digest: [u8; 32]) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            digest,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        for n in [self.dev, self.ino, self.size] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for n in [self.mtime, self.mtime_nsec, self.ctime, self.ctime_nsec] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&self.digest);
        out
    }
}

/// What a digest record's tag covers: its format, the module's path and
/// the record.
fn digest_tag_input(path: &Path, body: &[u8]) -> Vec<u8> {
    let path = path.as_os_str().as_encoded_bytes();
    let mut input = Vec::with_capacity(DIGEST_FORMAT.len() + 9 + path.len() + body.len());
    input.extend_from_slice(DIGEST_FORMAT.as_bytes());
    input.push(0);
    input.extend_from_slice(&(path.len() as u64).to_le_bytes());
    input.extend_from_slice(path);
    input.extend_from_slice(body);
    input
}

/// The HMAC-SHA256 of `bytes` under `key`.
fn tag(key: &[u8; 32], bytes: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = Tag::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// The precompiled bytes of `entry`, if its tag is right (constant time).
fn verified<'a>(key: &[u8; 32], entry: &'a [u8]) -> Option<&'a [u8]> {
    let (compiled, given) = entry.split_at_checked(entry.len().checked_sub(TAG_LEN)?)?;
    let mut mac = Tag::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(compiled);
    mac.verify_slice(given).ok().map(|()| compiled)
}

/// Check the open entry `file`: a regular file of this user that no one
/// else may write, whose last 32 bytes are the tag of the rest, read
/// through `file` itself; or why the entry is refused.
fn verify_file(key: &[u8; 32], file: &std::fs::File) -> Result<(), String> {
    use std::io::Read as _;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(format!("owned by uid {}, not this user", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "others may write it (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    let len = meta
        .len()
        .checked_sub(TAG_LEN as u64)
        .ok_or("shorter than a tag")?;
    // ring's HMAC-SHA256 (SHA extensions), streamed through the open file.
    let mut mac =
        ring::hmac::Context::with_key(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key));
    let mut reader = file;
    let mut buffer = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(buffer.len() as u64)).unwrap_or(buffer.len());
        let n = reader
            .read(&mut buffer[..want])
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("truncated while read".into());
        }
        mac.update(&buffer[..n]);
        left -= n as u64;
    }
    let mut given = [0u8; TAG_LEN];
    reader
        .read_exact(&mut given)
        .map_err(|_| "truncated while read".to_string())?;
    if reader.read(&mut buffer[..1]).map_err(|e| e.to_string())? != 0 {
        return Err("it grew while read".into());
    }
    // Compared in constant time: no early exit.
    let computed = mac.sign();
    let difference = computed
        .as_ref()
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if computed.as_ref().len() == TAG_LEN && difference == 0 {
        Ok(())
    } else {
        Err("its tag does not match (tampered or foreign)".into())
    }
}

/// The component in the entry `file`, just verified: that same open file
/// mapped by wasmtime, or (without `/proc/self/fd`) its bytes read again and
/// verified again.
fn load_verified(
    engine: &Engine,
    key: &[u8; 32],
    file: &std::fs::File,
) -> wasmtime::Result<Component> {
    use std::os::fd::AsRawFd as _;
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    if by_fd.exists() {
        // SAFETY: the file's bytes carry our tag, checked through this open
        // file, which no one but this user may change; so this host's engine
        // wrote them with `precompile_component` (same compatibility hash,
        // in the file name). The trailing tag follows the artifact's last
        // section, where the ELF reader does not look.
        return unsafe { Component::deserialize_file(engine, &by_fd) };
    }
    use std::io::{Read as _, Seek as _};
    let mut reader = file;
    reader.rewind()?;
    let mut entry = Vec::new();
    reader.read_to_end(&mut entry)?;
    let compiled = verified(key, &entry)
        .ok_or_else(|| wasmtime::format_err!("the entry changed while it was loaded"))?;
    // SAFETY: as above; the bytes carry our tag.
    unsafe { Component::deserialize(engine, compiled) }
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
        let mut entry = compiled.to_vec();
        entry.extend_from_slice(&tag(&key, compiled));
        assert_eq!(verified(&key, &entry), Some(&compiled[..]));
        let mut tampered = entry.clone();
        tampered[0] ^= 1;
        assert_eq!(verified(&key, &tampered), None);
        assert_eq!(verified(&[8u8; 32], &entry), None);
        assert_eq!(verified(&key, &entry[..10]), None);
        assert_eq!(verified(&key, &entry[1..]), None);
    }

    /// A small real component.
    fn component_bytes() -> Vec<u8> {
        // wasmtime takes the text format (its `wat` feature).
        br#"(component
                (core module $m (func (export "f") (result i32) i32.const 42)
                    (memory (export "memory") 1)
                    (data (i32.const 8) "a heap snapshot"))
                (core instance $i (instantiate $m)))"#
            .to_vec()
    }

    fn engine() -> Engine {
        Engine::default()
    }

    #[test]
    fn an_entry_is_loaded_from_its_verified_file_and_a_changed_one_is_discarded()
    -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let cache_dir = dir.path().join("cache");
        let engine = engine();
        let bytes = component_bytes();
        let digest = [3u8; 32];
        let cache = CompileCache::new(&cache_dir, &engine);
        assert!(cache.lookup(&engine, &digest).is_none());
        cache.get_or_compile(&engine, &bytes, &digest)?;
        {
            use sha2::Digest as _;
            assert_eq!(sha256(&bytes), <[u8; 32]>::from(Sha256::digest(&bytes)));
        }
        let path = cache.path(&digest);
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        // Another process: the entry is mapped from its file (with its
        // trailing tag) and usable.
        let cache = CompileCache::new(&cache_dir, &engine);
        let loaded = cache.lookup(&engine, &digest).expect("the entry loads");
        let mut store = wasmtime::Store::new(&engine, ());
        wasmtime::component::Linker::new(&engine).instantiate(&mut store, &loaded)?;

        // One byte changed anywhere: discarded, never loaded.
        let original = std::fs::read(&path)?;
        for at in [0, original.len() / 2, original.len() - 1] {
            let mut changed = original.clone();
            changed[at] ^= 0x55;
            std::fs::write(&path, &changed)?;
            assert!(cache.lookup(&engine, &digest).is_none(), "byte {at}");
            assert!(!path.exists(), "a bad entry is removed");
        }
        // Truncated, or another key's.
        std::fs::write(&path, &original[..original.len() - 1])?;
        assert!(cache.lookup(&engine, &digest).is_none());
        let mut foreign = original[..original.len() - TAG_LEN].to_vec();
        foreign.extend_from_slice(&tag(&[9u8; 32], &foreign.clone()));
        std::fs::write(&path, &foreign)?;
        assert!(cache.lookup(&engine, &digest).is_none());
        // Authentic but writable by others: refused.
        std::fs::write(&path, &original)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        assert!(cache.lookup(&engine, &digest).is_none());
        // A symlink to an authentic entry is not followed.
        let elsewhere = dir.path().join("elsewhere.cwasm");
        std::fs::write(&elsewhere, &original)?;
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600))?;
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(&elsewhere, &path)?;
        assert!(cache.lookup(&engine, &digest).is_none());
        // Authentic again: loaded.
        let _ = std::fs::remove_file(&path);
        std::fs::copy(&elsewhere, &path)?;
        assert!(cache.lookup(&engine, &digest).is_some());
        Ok(())
    }

    #[test]
    fn a_digest_is_remembered_only_for_the_same_unchanged_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let engine = engine();
        let cache = CompileCache::new(&dir.path().join("cache"), &engine);
        let module = dir.path().join("m.wasm");
        std::fs::write(&module, b"module bytes")?;
        let meta = std::fs::metadata(&module)?;
        let digest = [5u8; 32];
        // Changed less than a second ago: not remembered.
        cache.remember_digest(&module, &meta, &meta, std::time::SystemTime::now(), &digest);
        assert_eq!(cache.known_digest(&module, &meta), None);
        // Read a while after its last change: remembered for that metadata.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        cache.remember_digest(&module, &meta, &meta, later, &digest);
        assert_eq!(cache.known_digest(&module, &meta), Some(digest));
        // Another path with the same metadata does not get it.
        assert_eq!(
            cache.known_digest(&dir.path().join("other.wasm"), &meta),
            None
        );
        // The file written again (even with the same size): forgotten.
        std::fs::write(&module, b"module BYTES")?;
        let changed = std::fs::metadata(&module)?;
        assert_eq!(cache.known_digest(&module, &changed), None);
        // Changed while hashed: not remembered.
        cache.remember_digest(&module, &meta, &changed, later, &digest);
        assert_eq!(cache.known_digest(&module, &changed), None);
        // A forged record (another digest, the old tag) is refused.
        cache.remember_digest(&module, &changed, &changed, later, &digest);
        assert_eq!(cache.known_digest(&module, &changed), Some(digest));
        let record = cache.digest_record_path(&module);
        let mut bytes = std::fs::read(&record)?;
        bytes[DigestRecord::LEN - 1] ^= 1;
        std::fs::write(&record, &bytes)?;
        assert_eq!(cache.known_digest(&module, &changed), None);
        Ok(())
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
