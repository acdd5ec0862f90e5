//! Repository locks that restic honours: restic's lock files in `locks/`,
//! on every backend.
//!
//! A lock file is the JSON restic writes (`time`, `exclusive`, `hostname`,
//! `username`, `pid`, `uid`, `gid`), encrypted with the repository's master
//! key and named by the SHA-256 of its bytes. Backups, restores, checks and
//! copies hold a shared lock, `forget` and `prune` an exclusive one; a
//! shared lock conflicts with an exclusive one, an exclusive one with any.
//! Taking one follows restic: look for conflicting locks, write ours, wait
//! 200 ms, look again, and back off (removing ours) if another appeared.
//! A held lock is refreshed every 5 minutes (a new file, then the old one
//! removed) and removed when dropped. A lock is stale, and ignored, when
//! its time is more than 30 minutes old, or when it was taken on this host
//! by a process that no longer runs (a killed `cairn` or `restic`).
//!
//! Read-only operations on a read-only medium (or with credentials that may
//! not write) go ahead without a lock, with a warning, as `restic --no-lock`.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::AeadInPlace;
use base64::Engine as _;
use rustic_core::repofile::MasterKey;
use sha2::{Digest, Sha256};

use super::RepoError;
use super::store::{Store, StoreError, StoreErrorKind};

/// A lock older than this is stale (restic's `staleTimeout`).
pub(super) const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is refreshed (restic's `refreshInterval`).
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// The pause between writing our lock and looking again.
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LockMode {
    Shared,
    Exclusive,
}

/// restic's lock file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct LockInfo {
    pub time: String,
    pub exclusive: bool,
    pub hostname: String,
    #[serde(default)]
    pub username: String,
    pub pid: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

impl LockInfo {
    fn ours(mode: LockMode) -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self {
            time: jiff::Timestamp::now().to_string(),
            exclusive: mode == LockMode::Exclusive,
            hostname: crate::sys::hostname(),
            username: std::env::var("USER").unwrap_or_default(),
            pid: i64::from(std::process::id()),
            uid: Some(uid),
            gid: Some(gid),
        }
    }

    /// Whether restic (and we) ignore this lock.
    fn is_stale(&self) -> bool {
        let old = self
            .time
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| jiff::Timestamp::now().duration_since(t).try_into().ok())
            .is_some_and(|age: Duration| age > STALE_AFTER);
        if old {
            return true;
        }
        if self.hostname == crate::sys::hostname() {
            let Ok(pid) = libc::pid_t::try_from(self.pid) else {
                return true;
            };
            // SAFETY: signal 0 only asks whether the process exists.
            let gone = unsafe { libc::kill(pid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            return gone;
        }
        false
    }

    fn conflicts_with(&self, mode: LockMode) -> bool {
        self.exclusive || mode == LockMode::Exclusive
    }

    /// `exclusive lock by root@host (pid 42) since …`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} lock by {}@{} (pid {}) since {}",
            if self.exclusive { "an exclusive" } else { "a" },
            if self.username.is_empty() {
                "?"
            } else {
                &self.username
            },
            self.hostname,
            self.pid,
            self.time
        )
    }
}

/// The master key as the 64 bytes restic's AEAD takes (encryption key,
/// then the MAC's k and r).
pub(super) fn aead_key(master: &MasterKey) -> Result<[u8; 64], RepoError> {
    let bad = |why: &str| RepoError::Failed {
        what: "reading the repository key".into(),
        message: why.to_owned(),
    };
    let json = serde_json::to_value(master).map_err(|e| bad(&e.to_string()))?;
    let field = |v: &serde_json::Value| -> Result<Vec<u8>, RepoError> {
        let text = v.as_str().ok_or_else(|| bad("a key part is not text"))?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| bad(&e.to_string()))
    };
    let encrypt = field(&json["encrypt"])?;
    let k = field(&json["mac"]["k"])?;
    let r = field(&json["mac"]["r"])?;
    if encrypt.len() != 32 || k.len() != 16 || r.len() != 16 {
        return Err(bad("a key part has the wrong length"));
    }
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(&encrypt);
    key[32..48].copy_from_slice(&k);
    key[48..].copy_from_slice(&r);
    Ok(key)
}

/// restic's encrypted form: nonce ‖ ciphertext ‖ MAC.
fn encrypt(key: &[u8; 64], plain: &[u8]) -> Vec<u8> {
    let cipher = Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(key));
    let mut nonce = aes256ctr_poly1305aes::Nonce::default();
    let _ = getrandom::fill(&mut nonce);
    let mut data = Vec::with_capacity(plain.len() + 32);
    data.extend_from_slice(&nonce);
    data.extend_from_slice(plain);
    let tag = cipher
        .encrypt_in_place_detached(&nonce, &[], &mut data[16..])
        .expect("AES-CTR encrypts any length");
    data.extend_from_slice(&tag);
    data
}

fn decrypt(key: &[u8; 64], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 32 {
        return None;
    }
    let cipher = Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(key));
    let (nonce, rest) = data.split_at(16);
    let (body, tag) = rest.split_at(rest.len() - 16);
    let mut plain = body.to_vec();
    cipher
        .decrypt_in_place_detached(
            aes256ctr_poly1305aes::Nonce::from_slice(nonce),
            &[],
            &mut plain,
            aes256ctr_poly1305aes::Tag::from_slice(tag),
        )
        .ok()?;
    // Repository format 2: a leading 2 means zstd follows; `{` is plain JSON.
    match plain.first() {
        Some(2) => zstd::decode_all(&plain[1..]).ok(),
        _ => Some(plain),
    }
}

/// Write `info` as a lock file; its repository path.
fn write_lock(store: &dyn Store, key: &[u8; 64], info: &LockInfo) -> Result<String, StoreError> {
    let json = serde_json::to_vec(info).expect("a lock serialises");
    let data = encrypt(key, &json);
    let path = format!("locks/{}", hex::encode(Sha256::digest(&data)));
    store.write(&path, &[bytes::Bytes::from(data)])?;
    Ok(path)
}

/// A lock another process holds that keeps us from taking `mode`.
pub(super) enum Conflict {
    /// A lock we could read.
    Held(LockInfo),
    /// A lock file we cannot read (not restic's format, or another key).
    Unreadable(String),
}

/// The first lock in `locks/` (other than `ours`) that conflicts with `mode`.
fn find_conflict(
    store: &dyn Store,
    key: &[u8; 64],
    mode: LockMode,
    ours: Option<&str>,
) -> Result<Option<Conflict>, StoreError> {
    for (name, _) in store.list("locks")? {
        let path = format!("locks/{name}");
        if Some(path.as_str()) == ours {
            continue;
        }
        let data = match store.read(&path, None) {
            Ok(data) => data,
            // Removed while we looked: its holder is done.
            Err(e) if e.kind == StoreErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let Some(info) =
            decrypt(key, &data).and_then(|plain| serde_json::from_slice::<LockInfo>(&plain).ok())
        else {
            return Ok(Some(Conflict::Unreadable(path)));
        };
        if info.is_stale() {
            // As `restic unlock` does: a stale lock (its process gone, or
            // not refreshed for 30 minutes) is removed, so that restic 0.14,
            // which does not skip stale locks itself, is not held up by it.
            // Where locks cannot be removed (read-only), it is only ignored.
            if store.remove(&path).is_ok() {
                tracing::info!(
                    "removed the stale lock {path} (pid {} on {}, {})",
                    info.pid,
                    info.hostname,
                    info.time
                );
            }
            continue;
        }
        if info.conflicts_with(mode) {
            return Ok(Some(Conflict::Held(info)));
        }
    }
    Ok(None)
}

/// What the refresh thread shares with the lock.
#[derive(Debug)]
struct Shared {
    /// The current lock file, `None` once released.
    path: Mutex<Option<String>>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// What a held lock keeps: the store, the state its refresher shares, the
/// refresher thread.
type Held = (Arc<dyn Store>, Arc<Shared>, std::thread::JoinHandle<()>);

/// A held lock: refreshed in the background, removed when dropped.
#[derive(Debug)]
pub(super) struct RepoLock {
    held: Option<Held>,
}

impl RepoLock {
    /// Take a `mode` lock, waiting up to `timeout` for conflicting ones to go.
    /// With `read_only_ok`, a store that refuses the lock file (read-only
    /// medium, credentials that may not write) gives an unheld lock and a
    /// warning instead of an error.
    pub(super) fn acquire(
        store: &Arc<dyn Store>,
        master: &MasterKey,
        mode: LockMode,
        timeout: Duration,
        read_only_ok: bool,
    ) -> Result<Self, RepoError> {
        let key = aead_key(master)?;
        let location = store.location();
        let failed = |e: StoreError| RepoError::Failed {
            what: format!("locking {location}"),
            message: e.message,
        };
        let start = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let conflict = match find_conflict(store.as_ref(), &key, mode, None).map_err(failed)? {
                Some(conflict) => Some(conflict),
                None => {
                    let info = LockInfo::ours(mode);
                    let path = match write_lock(store.as_ref(), &key, &info) {
                        Ok(path) => path,
                        Err(e)
                            if read_only_ok
                                && matches!(
                                    e.kind,
                                    StoreErrorKind::ReadOnly | StoreErrorKind::Denied
                                ) =>
                        {
                            tracing::warn!(
                                "reading {location} without a lock: the lock file cannot be written ({}); \
                                 a concurrent prune could remove data being read",
                                e.message
                            );
                            return Ok(Self { held: None });
                        }
                        Err(e) => return Err(failed(e)),
                    };
                    std::thread::sleep(SETTLE);
                    match find_conflict(store.as_ref(), &key, mode, Some(&path)) {
                        Ok(None) => return Ok(Self::hold(store.clone(), key, info, path)),
                        Ok(Some(conflict)) => {
                            let _ = store.remove(&path);
                            Some(conflict)
                        }
                        Err(e) => {
                            let _ = store.remove(&path);
                            return Err(failed(e));
                        }
                    }
                }
            };
            let waited = start.elapsed();
            if waited >= timeout {
                let holder = match conflict {
                    Some(Conflict::Held(info)) => info.describe(),
                    Some(Conflict::Unreadable(path)) => format!(
                        "the lock file {path}, which cannot be read (remove it if no restic or cairn \
                         process uses the repository)"
                    ),
                    None => "another process".to_owned(),
                };
                return Err(RepoError::Busy {
                    location: location.clone(),
                    holder,
                    waited,
                });
            }
            let jitter = Duration::from_millis(u64::from(rand_byte()) * 2);
            std::thread::sleep((pause + jitter).min(timeout - waited));
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    fn hold(store: Arc<dyn Store>, key: [u8; 64], info: LockInfo, path: String) -> Self {
        let shared = Arc::new(Shared {
            path: Mutex::new(Some(path)),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let thread_store = store.clone();
        let refresher = std::thread::Builder::new()
            .name("cairn-lock-refresh".into())
            .spawn(move || refresh(&thread_store, &key, info, &thread_shared))
            .expect("a thread starts");
        Self {
            held: Some((store, shared, refresher)),
        }
    }
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    b[0]
}

/// Every [`REFRESH_EVERY`], replace the lock file with one of the current time.
fn refresh(store: &Arc<dyn Store>, key: &[u8; 64], mut info: LockInfo, shared: &Shared) {
    let mut stop = shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        // Checked before every wait: a release that came before this thread
        // first took the mutex must not be slept through (it would hold the
        // releasing process for a whole refresh period).
        if *stop {
            return;
        }
        let (guard, timeout) = shared
            .wake
            .wait_timeout(stop, REFRESH_EVERY)
            .unwrap_or_else(PoisonError::into_inner);
        stop = guard;
        if *stop {
            return;
        }
        if !timeout.timed_out() {
            continue;
        }
        info.time = jiff::Timestamp::now().to_string();
        match write_lock(store.as_ref(), key, &info) {
            Ok(new) => {
                let old = shared
                    .path
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .replace(new);
                if let Some(old) = old {
                    let _ = store.remove(&old);
                }
            }
            Err(e) => tracing::warn!(
                "cannot refresh the lock on {}: {} (it goes stale after 30 minutes)",
                store.location(),
                e.message
            ),
        }
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if let Some((store, shared, refresher)) = self.held.take() {
            *shared.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
            shared.wake.notify_all();
            let _ = refresher.join();
            let path = shared
                .path
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(path) = path
                && let Err(e) = store.remove(&path)
            {
                tracing::warn!(
                    "cannot remove the lock {path} from {}: {}",
                    store.location(),
                    e.message
                );
            }
        }
    }
}

/// Locks in the repository (for tests and `cairn check`): path and content.
pub(super) fn list_locks(
    store: &dyn Store,
    master: &MasterKey,
) -> Result<Vec<(String, Option<LockInfo>)>, RepoError> {
    let key = aead_key(master)?;
    let failed = |e: StoreError| RepoError::Failed {
        what: format!("listing the locks of {}", store.location()),
        message: e.message,
    };
    let mut out = Vec::new();
    for (name, _) in store.list("locks").map_err(failed)? {
        let path = format!("locks/{name}");
        let info = match store.read(&path, None) {
            Ok(data) => {
                decrypt(&key, &data).and_then(|p| serde_json::from_slice::<LockInfo>(&p).ok())
            }
            Err(e) if e.kind == StoreErrorKind::NotFound => continue,
            Err(e) => return Err(failed(e)),
        };
        out.push((path, info));
    }
    Ok(out)
}

/// Write a lock as another process would (tests).
#[cfg(test)]
pub(super) fn write_foreign_lock(
    store: &dyn Store,
    master: &MasterKey,
    info: &LockInfo,
) -> Result<String, RepoError> {
    let key = aead_key(master)?;
    write_lock(store, &key, info).map_err(|e| RepoError::Failed {
        what: "writing a lock".into(),
        message: e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_round_trips_and_reads_zstd_compressed_json() {
        let key = [9u8; 64];
        let info = LockInfo::ours(LockMode::Exclusive);
        let json = serde_json::to_vec(&info).unwrap();
        let plain = decrypt(&key, &encrypt(&key, &json)).unwrap();
        assert_eq!(plain, json);
        // as restic 0.14 writes unpacked files in repository format 2
        let mut compressed = vec![2u8];
        compressed.extend(zstd::encode_all(&json[..], 3).unwrap());
        let plain = decrypt(&key, &encrypt(&key, &compressed)).unwrap();
        assert_eq!(plain, json);
        assert!(
            decrypt(&[8u8; 64], &encrypt(&key, &json)).is_none(),
            "another key"
        );
    }

    #[test]
    fn a_lock_released_before_its_refresher_starts_is_not_slept_through() {
        // The release (stop = true) came before the refresher first took its
        // mutex: it must return at once, not after a refresh period (which
        // held `cairn copy` and `cairn forget` for 300 s on a loaded machine).
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::repository::store::open(&crate::model::Location::Local(dir.path().into()))
                .unwrap();
        let shared = Shared {
            path: Mutex::new(None),
            stop: Mutex::new(true),
            wake: Condvar::new(),
        };
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            refresh(
                &store,
                &[1u8; 64],
                LockInfo::ours(LockMode::Shared),
                &shared,
            );
            let _ = done.send(());
        });
        assert!(
            finished
                .recv_timeout(std::time::Duration::from_secs(20))
                .is_ok(),
            "the refresher slept through its release"
        );
    }

    #[test]
    fn stale_locks_are_old_or_of_a_dead_process_here() {
        let mut info = LockInfo::ours(LockMode::Shared);
        assert!(!info.is_stale(), "ours, now");
        info.time = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(31 * 60)).to_string();
        assert!(info.is_stale(), "31 minutes old");
        let mut dead = LockInfo::ours(LockMode::Shared);
        dead.pid = i64::from(i32::MAX - 7);
        assert!(dead.is_stale(), "a process that does not exist");
        let mut elsewhere = dead.clone();
        elsewhere.hostname = "another-host.example".into();
        assert!(
            !elsewhere.is_stale(),
            "another host's process cannot be checked"
        );
        assert!(LockInfo::ours(LockMode::Shared).conflicts_with(LockMode::Exclusive));
        assert!(!LockInfo::ours(LockMode::Shared).conflicts_with(LockMode::Shared));
        assert!(LockInfo::ours(LockMode::Exclusive).conflicts_with(LockMode::Shared));
    }
}
