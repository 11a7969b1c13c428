//! The platform key: what seals the secrets the API must read back, so that none of them is
//! in clear in SQL (a token, which is only compared, is hashed instead). TLS private keys are
//! sealed with it: the runner needs them back for its routers. ChaCha20-Poly1305 (ring), a
//! random nonce per value, the value's place (`certificates.private_key <id>`) as associated
//! data, so a sealed value copied into another row does not open there.
//!
//! The key is `OURO_PLATFORM_KEY` (64 hex digits) or else `<data dir>/platform-key`, made at
//! the first start (mode 0600). It sits beside the SQLite file but apart from a PostgreSQL
//! database, and must be kept with the backups of either: without it sealed values are lost.

use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Result};

const PREFIX: &str = "sealed:v1:";

/// The key, ready to seal and open.
pub struct PlatformKey {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlatformKey(..)")
    }
}

impl PlatformKey {
    /// `OURO_PLATFORM_KEY` if given, else the key in `<data_dir>/platform-key`, made if missing.
    pub fn load(given: Option<&str>, data_dir: &Path) -> Result<PlatformKey> {
        let hex_key = match given {
            Some(given) => given.trim().to_string(),
            None => kept_in(&data_dir.join("platform-key"))?,
        };
        let bytes = hex::decode(&hex_key).ok().filter(|b| b.len() == 32).ok_or_else(|| {
            Error::Config("the platform key is not 64 hex digits (OURO_PLATFORM_KEY or <data dir>/platform-key)".into())
        })?;
        PlatformKey::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<PlatformKey> {
        let key =
            UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| Error::Config("unusable platform key".into()))?;
        Ok(PlatformKey { key: LessSafeKey::new(key), random: SystemRandom::new() })
    }

    /// `value` sealed for `place` (which names the column and row it is kept in).
    pub fn seal(&self, place: &str, value: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).expect("the system's random numbers");
        let mut sealed = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(place.as_bytes()), &mut sealed)
            .expect("a value under 256 GiB");
        format!("{PREFIX}{}{}", hex::encode(nonce), hex::encode(sealed))
    }

    /// The value `stored` for `place` was sealed from; a value kept before sealing existed
    /// (no prefix) is returned as it is.
    pub fn open(&self, place: &str, stored: &str) -> Result<String> {
        let Some(sealed) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let unreadable = || Error::Config(format!("{place} does not open with this platform key (was it replaced?)"));
        let bytes = hex::decode(sealed).map_err(|_| unreadable())?;
        if bytes.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable())?;
        let mut rest = rest.to_vec();
        let opened = self.key.open_in_place(nonce, Aad::from(place.as_bytes()), &mut rest).map_err(|_| unreadable())?;
        String::from_utf8(opened.to_vec()).map_err(|_| unreadable())
    }

    /// Whether `stored` is sealed (not a value kept in clear before sealing existed).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

/// The key in `file` (hex), made there with mode 0600 if there is none.
fn kept_in(file: &Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(kept) = std::fs::read_to_string(file) {
        return Ok(kept.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| Error::Config("no random numbers for the platform key".into()))?;
    let made = hex::encode(bytes);
    let temporary = file.with_extension("tmp");
    let mut out = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    std::io::Write::write_all(&mut out, made.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&temporary, file)?;
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_in_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let key = PlatformKey::load(None, dir.path()).unwrap();
        let sealed = key.seal("certificates.private_key a", "-----BEGIN PRIVATE KEY-----");
        assert!(PlatformKey::is_sealed(&sealed) && !sealed.contains("PRIVATE"), "{sealed}");
        assert_ne!(sealed, key.seal("certificates.private_key a", "-----BEGIN PRIVATE KEY-----"), "a fresh nonce");
        assert_eq!(key.open("certificates.private_key a", &sealed).unwrap(), "-----BEGIN PRIVATE KEY-----");
        assert!(key.open("certificates.private_key b", &sealed).is_err(), "another row");
        let again = PlatformKey::load(None, dir.path()).unwrap();
        assert_eq!(again.open("certificates.private_key a", &sealed).unwrap(), "-----BEGIN PRIVATE KEY-----", "kept");
        let other = PlatformKey::load(Some(&"ab".repeat(32)), dir.path()).unwrap();
        assert!(other.open("certificates.private_key a", &sealed).is_err(), "another key");
        assert_eq!(key.open("x", "in clear from before").unwrap(), "in clear from before");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("platform-key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(PlatformKey::load(Some("short"), dir.path()).is_err());
    }
}
