//! Encryption of site credentials at rest, and the store's random identifiers.
//!
//! The key is 32 random bytes in `credentials.key` beside the database, created with mode
//! 0600 on first start. Each value is sealed with XChaCha20-Poly1305 under a fresh random
//! 192-bit nonce (large enough that random nonces never collide in practice), under
//! associated data the caller chooses: a record's id at least, so a sealed value copied
//! onto another record does not decrypt. A site's password is bound to more than its id:
//! to the endpoint it may be sent to (see `sites::credential_aad`).
//!
//! Large values (a job's backup) are sealed into one binary blob instead, the nonce then
//! the ciphertext, so a 16 MiB export is not doubled by hex; their associated data binds
//! them to their record in the same way.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload, rand_core::RngCore};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use super::error::StoreError;

pub const KEY_FILE: &str = "credentials.key";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// A value sealed under the data dir's key, as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sealed {
    nonce: String,
    ciphertext: String,
}

impl Sealed {
    /// Lowercase hex sha256 of the sealed bytes (nonce and ciphertext): it names one
    /// sealing of one value, changes with every new sealing (the nonce is fresh), and
    /// tells nothing of the plaintext.
    pub(crate) fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(self.nonce.as_bytes());
        hash.update(b":");
        hash.update(self.ciphertext.as_bytes());
        hex::encode(hash.finalize())
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(..)")
    }
}

/// The data dir's credential key.
pub(crate) struct Vault {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<key redacted>)")
    }
}

/// Where a store's credential key comes from. Engines that share one database must all
/// be given the same key: the database keeps a value sealed under it and refuses a key
/// that does not open it.
#[derive(Clone)]
pub enum CredentialKey {
    /// A file of 32 random bytes, readable by its owner only; created on first start
    /// when missing (copy it to the other engines, or give them all one path).
    File(std::path::PathBuf),
    /// The key as 64 hex digits, as `YARDMASTER_CREDENTIAL_KEY` gives it.
    Hex(String),
}

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl CredentialKey {
    /// Where the key is, for messages; never the key.
    pub fn describe(&self) -> String {
        match self {
            CredentialKey::File(path) => path.display().to_string(),
            CredentialKey::Hex(_) => "YARDMASTER_CREDENTIAL_KEY".to_owned(),
        }
    }
}

impl Vault {
    /// The key `source` names; a file is created on first start.
    pub(crate) fn from_source(source: &CredentialKey) -> Result<Vault, StoreError> {
        let key_err = |reason: String| StoreError::Key {
            path: source.describe(),
            reason,
        };
        let bytes = match source {
            CredentialKey::File(path) => read_or_create_secret(path, KEY_LEN).map_err(key_err)?,
            CredentialKey::Hex(text) => match hex::decode(text.trim()) {
                Ok(bytes) if bytes.len() == KEY_LEN => bytes,
                _ => {
                    return Err(key_err(format!(
                        "must be {} hex digits (for example from `openssl rand -hex {KEY_LEN}`)",
                        KEY_LEN * 2
                    )));
                }
            },
        };
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&bytes);
        Ok(Vault {
            cipher: XChaCha20Poly1305::new(&key.into()),
        })
    }

    /// Reads the key from `dir`, creating it on first start.
    pub(crate) fn open(dir: &Path) -> Result<Vault, StoreError> {
        Vault::from_source(&CredentialKey::File(dir.join(KEY_FILE)))
    }
}

impl Vault {
    /// What a store keeps to recognise its key: a fixed text sealed under it.
    pub(crate) const CHECK: &'static str = "yardmaster credential key check";

    /// Whether `sealed` is [`Vault::CHECK`] sealed under this key.
    pub(crate) fn opens_check(&self, sealed: &Sealed) -> bool {
        self.open_sealed(Self::CHECK, sealed).as_deref() == Some(Self::CHECK)
    }

    /// Seals `plaintext` under `aad` (associated data): only the same `aad` opens it.
    pub(crate) fn seal(&self, aad: &str, plaintext: &str) -> Sealed {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce only fails past 256 GiB of plaintext;
        // inputs are capped far below that, so an empty ciphertext can never be stored
        // for a real value, and decryption would refuse it anyway.
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_default();
        Sealed {
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        }
    }

    /// The plaintext, or `None` if the value was not sealed by this key under `aad`.
    pub(crate) fn open_sealed(&self, aad: &str, sealed: &Sealed) -> Option<String> {
        let nonce = hex::decode(&sealed.nonce).ok()?;
        if nonce.len() != NONCE_LEN {
            return None;
        }
        let ciphertext = hex::decode(&sealed.ciphertext).ok()?;
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

impl Vault {
    /// Seals `plaintext` bound to `record`: the blob is the nonce followed by the
    /// ciphertext. `None` only past the cipher's limit (256 GiB), far above any input.
    pub(crate) fn seal_bytes(&self, record: &str, plaintext: &[u8]) -> Option<Vec<u8>> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: record.as_bytes(),
                },
            )
            .ok()?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Some(blob)
    }

    /// The plaintext of a blob from [`Vault::seal_bytes`], or `None` if it was not sealed
    /// by this key for this record.
    pub(crate) fn open_bytes(&self, record: &str, blob: &[u8]) -> Option<Vec<u8>> {
        if blob.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: record.as_bytes(),
                },
            )
            .ok()
    }
}

/// Reads the secret of `len` random bytes in `path`, creating it (mode 0600, synced) if
/// the file does not exist. A file of another length, or one others can read, is refused
/// with the reason, so a damaged or exposed key is never used silently.
pub(crate) fn read_or_create_secret(path: &Path, len: usize) -> Result<Vec<u8>, String> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_0600()
        .open(path)
    {
        Ok(mut file) => {
            let key = random_secret(len);
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write: {e}"))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_secret(path, len),
        Err(e) => Err(format!("cannot create: {e}")),
    }
}

/// The secret of `len` bytes kept at `path`, or `None` when there is no such file.
pub(crate) fn existing_secret(path: &Path, len: usize) -> Result<Option<Vec<u8>>, String> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => read_secret(path, len).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot stat: {e}")),
    }
}

/// `len` random bytes from the operating system's generator.
pub(crate) fn random_secret(len: usize) -> Vec<u8> {
    let mut key = vec![0u8; len];
    OsRng.fill_bytes(&mut key);
    key
}

fn read_secret(path: &Path, len: usize) -> Result<Vec<u8>, String> {
    check_private(path)?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() != len {
        return Err(format!(
            "holds {} bytes, not {len}; restore the original key file",
            bytes.len()
        ));
    }
    Ok(bytes)
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    #[cfg(unix)]
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }

    #[cfg(not(unix))]
    fn mode_0600(&mut self) -> &mut Self {
        self
    }
}

/// Refuses a key file that others can read: the key is worth as much as every password.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot stat: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "is readable by others (mode {:o}); run `chmod 600` on it",
            mode & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// A new ULID: 48 bits of unix milliseconds then 80 random bits, in Crockford's base32
/// (26 characters), so ids made later sort later.
pub(crate) fn new_ulid() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let millis = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let mut random = [0u8; 10];
    OsRng.fill_bytes(&mut random);
    let mut value: u128 = u128::from(millis & 0xFFFF_FFFF_FFFF) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// A new identifier: a UUID version 7 (time-ordered, so ids created later sort later and
/// index inserts append), with 74 random bits. Within one process the ids are strictly
/// increasing: an id made in the same millisecond as the last one (or after the clock
/// stepped back) is the last one plus one in its random bits (RFC 9562's monotonic
/// random), so "in id order" is "in creation order" in one engine, and to the
/// millisecond across engines.
pub(crate) fn new_id() -> String {
    /// The random part: 74 bits, 12 (`rand_a`) then 62 (`rand_b`).
    const RANDOM_BITS: u32 = 74;
    static LAST: std::sync::Mutex<(u64, u128)> = std::sync::Mutex::new((0, 0));
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let (millis, random) = {
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = if now > last.0 || last.1 + 1 >= 1 << RANDOM_BITS {
            let mut fresh = [0u8; 16];
            OsRng.fill_bytes(&mut fresh[6..]);
            // The top bit is left clear: headroom for the increments that follow.
            (
                now.max(last.0),
                u128::from_be_bytes(fresh) >> (128 - RANDOM_BITS + 1),
            )
        } else {
            (last.0, last.1 + 1)
        };
        *last = next;
        next
    };
    let rand_a = (random >> 62) as u16;
    let rand_b = random & ((1 << 62) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6..8].copy_from_slice(&(0x7000 | rand_a).to_be_bytes());
    bytes[8..].copy_from_slice(&((2u64 << 62) | rand_b as u64).to_be_bytes());
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_the_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = Vault::open(dir.path()).expect("vault");
        let sealed = vault.seal("site-a", "hunter2");
        assert!(!sealed.ciphertext.contains(&hex::encode("hunter2")));
        assert_eq!(
            vault.open_sealed("site-a", &sealed).as_deref(),
            Some("hunter2")
        );
        assert_eq!(vault.open_sealed("site-b", &sealed), None);
        let again = vault.seal("site-a", "hunter2");
        assert_ne!(sealed.nonce, again.nonce);
        // The same key comes back on the next start.
        let reopened = Vault::open(dir.path()).expect("reopen");
        assert_eq!(
            reopened.open_sealed("site-a", &sealed).as_deref(),
            Some("hunter2")
        );
    }

    #[test]
    fn sealed_bytes_round_trip_and_bind_the_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = Vault::open(dir.path()).expect("vault");
        let plain = b"/interface wireless security-profiles set wpa2-pre-shared-key=hunter22";
        let blob = vault.seal_bytes("job-1", plain).expect("seal");
        assert!(!blob.windows(8).any(|w| w == b"hunter22"));
        assert_eq!(
            vault.open_bytes("job-1", &blob).as_deref(),
            Some(&plain[..])
        );
        assert_eq!(vault.open_bytes("job-2", &blob), None);
        assert_eq!(vault.open_bytes("job-1", &blob[..10]), None);
        assert_eq!(
            vault.open_bytes("job-1", plain),
            None,
            "plaintext is not a blob"
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_a_shared_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        Vault::open(dir.path()).expect("vault");
        let path = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Vault::open(dir.path()).expect_err("shared key refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn ids_are_uuid_v7_and_ordered() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!(a < b);
        // Many in one millisecond still come out in order, each a valid version 7 UUID.
        let burst: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        assert!(burst.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        for id in &burst {
            let uuid: Vec<&str> = id.split('-').collect();
            assert_eq!(
                uuid.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(uuid[2].starts_with('7'), "version 7: {id}");
            assert!("89ab".contains(&uuid[3][..1]), "RFC 9562 variant: {id}");
        }
    }
}
