//! The key file `cairn init` leaves behind, written with restic's scrypt cost.
//!
//! A restic key file holds the repository's master key, encrypted with a key
//! derived from the password by scrypt; the file records scrypt's parameters, and
//! every open of the repository pays them. rustic_core 0.13 writes key files
//! with scrypt's "recommended" parameters, N = 2^17 and r = 8, which allocate
//! 128 MiB for the moment of every open: alone, more than Cairn's memory budget
//! for a whole backup. restic itself calibrates N under a 60 MiB limit, which
//! gives N = 2^15 on current machines.
//!
//! So [`Repository::init`](super::Repository::init) replaces the key file rustic
//! made with one for the same password and master key, derived with N = 2^15,
//! r = 8, p = 1 (32 MiB, about 0.1 s). The file is restic's format (kdf
//! `scrypt`, AES-256-CTR with a Poly1305-AES MAC over the master key's JSON),
//! named by the SHA-256 of its bytes; restic and rustic open it as any other.
//! Repositories made by `restic init` keep their own key files.

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::AeadInPlace;
use rustic_core::repofile::{KeyFile, MasterKey};
use sha2::{Digest, Sha256};

use super::store::Store;

/// scrypt's cost parameters for the key files Cairn writes: 128 · N · r bytes = 32 MiB.
pub(super) const SCRYPT_LOG_N: u8 = 15;
pub(super) const SCRYPT_R: u32 = 8;
pub(super) const SCRYPT_P: u32 = 1;

/// Replace the one key file in the new repository in `store` with one that
/// holds `master` under `password`, derived with [`SCRYPT_LOG_N`],
/// [`SCRYPT_R`] and [`SCRYPT_P`]. The new file is in place before the old
/// one is removed.
pub(super) fn rewrite_with_restic_cost(
    store: &dyn Store,
    password: &str,
    master: &MasterKey,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listed = store
        .list("keys")
        .map_err(|e| anyhow::anyhow!("listing keys: {}", e.message))?;
    let [(old, _)] = listed.as_slice() else {
        anyhow::bail!(
            "keys/ of {} holds {} key files; a new repository has exactly one",
            store.location(),
            listed.len()
        );
    };
    let old = format!("keys/{old}");
    let text = store
        .read(&old, None)
        .map_err(|e| anyhow::anyhow!("reading {old}: {}", e.message))?;
    let mut file: KeyFile =
        serde_json::from_slice(&text).with_context(|| format!("reading key file {old}"))?;

    let mut salt = vec![0u8; 64];
    getrandom::fill(&mut salt).context("getting random bytes for the key's salt")?;
    let params = scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
        .context("scrypt parameters for the key file")?;
    let mut derived = aes256ctr_poly1305aes::Key::default();
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut derived)
        .context("deriving the key file's key")?;

    // restic's format of encrypted data: nonce (16 bytes) ‖ ciphertext ‖ MAC (16 bytes)
    let plain = serde_json::to_vec(master).context("encoding the master key")?;
    let mut nonce = aes256ctr_poly1305aes::Nonce::default();
    getrandom::fill(&mut nonce).context("getting random bytes for the key's nonce")?;
    let mut data = Vec::with_capacity(plain.len() + 32);
    data.extend_from_slice(&nonce);
    data.extend_from_slice(&plain);
    let tag = Aes256CtrPoly1305Aes::new(&derived)
        .encrypt_in_place_detached(&nonce, &[], &mut data[16..])
        .map_err(|e| anyhow::anyhow!("encrypting the master key: {e}"))?;
    data.extend_from_slice(&tag);

    // what `restic key list` shows, as restic fills it in
    file.hostname = file
        .hostname
        .take()
        .or_else(|| Some(crate::sys::hostname()));
    file.username = file
        .username
        .take()
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()));
    file.created = file
        .created
        .take()
        .or_else(|| Some(rustic_core::jiff::Zoned::now()));
    file.kdf = "scrypt".into();
    file.n = 1 << SCRYPT_LOG_N;
    file.r = SCRYPT_R;
    file.p = SCRYPT_P;
    file.salt = salt;
    file.data = data;
    let bytes = serde_json::to_vec(&file).context("encoding the key file")?;
    let new = format!("keys/{}", hex::encode(Sha256::digest(&bytes)));
    store
        .write(&new, &[bytes::Bytes::from(bytes)])
        .map_err(|e| anyhow::anyhow!("writing {new}: {}", e.message))?;
    store
        .remove(&old)
        .map_err(|e| anyhow::anyhow!("removing {old}: {}", e.message))?;
    Ok(())
}
