//! Encryption at rest. With `TOKEN_ENCRYPTION_KEY` set, every record the broker stores is sealed
//! with ChaCha20-Poly1305 under a fresh random nonce, with the record's store key as associated
//! data: a record copied to another key (another connection, another broker) does not open.
//!
//! Sealed layout: `TBX1` | key id (4 bytes) | nonce (12 bytes) | ciphertext and tag. The key id
//! (the first bytes of the key's SHA-256) says which key sealed a record, so keys can rotate:
//! new writes use the current key, older keys listed in `TOKEN_ENCRYPTION_KEYS` still open.

use std::fmt;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE},
};
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use ring::{
    digest::{SHA256, digest},
    rand::{SecureRandom, SystemRandom},
};

use crate::base::{
    record::DecodeError,
    secret::{Fault, Secret},
};

const MAGIC: &[u8; 4] = b"TBX1";
const HEADER: usize = 4 + 4 + 12;

struct SealingKey {
    id: [u8; 4],
    cipher: ChaCha20Poly1305,
}

/// Seals and opens stored records; without keys it passes them through unchanged.
pub struct Sealer {
    /// The first seals; all open.
    keys: Vec<SealingKey>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| hex(&k.id)).collect();
        write!(f, "Sealer(key ids {ids:?})")
    }
}

/// Why a configured key is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("must be 32 random bytes in base64 (e.g. openssl rand -base64 32)")]
pub struct BadKey;

/// Decodes one key: 32 bytes in standard or URL-safe base64.
pub fn parse_key(text: &str) -> Result<Secret, BadKey> {
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|_| BadKey)?;
    if bytes.len() != 32 {
        return Err(BadKey);
    }
    Ok(Secret::new(STANDARD.encode(bytes)))
}

impl Sealer {
    /// `keys[0]` seals; every key opens. Keys come validated by [`parse_key`].
    pub fn new(keys: &[Secret]) -> Self {
        let keys = keys
            .iter()
            .filter_map(|key| {
                let bytes = STANDARD.decode(key.expose()).ok()?;
                let mut id = [0u8; 4];
                id.copy_from_slice(&digest(&SHA256, &bytes).as_ref()[..4]);
                let cipher = ChaCha20Poly1305::new_from_slice(&bytes).ok()?;
                Some(SealingKey { id, cipher })
            })
            .collect();
        Self { keys }
    }

    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Seals `plaintext` stored under `store_key`.
    pub fn seal(&self, store_key: &str, plaintext: Vec<u8>) -> Result<Vec<u8>, Fault> {
        let Some(key) = self.keys.first() else {
            return Ok(plaintext);
        };
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Fault("the system random number generator failed"))?;
        let sealed = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plaintext,
                    aad: store_key.as_bytes(),
                },
            )
            .map_err(|_| Fault("a record could not be encrypted"))?;
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what was stored under `store_key`. With encryption on, a record that is not sealed
    /// is refused: anyone able to write to the store could otherwise plant tokens of their own.
    pub fn open(&self, store_key: &str, data: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
        let sealed = data.starts_with(MAGIC);
        if !self.is_enabled() {
            if sealed {
                return Err(DecodeError::new(
                    "the record is encrypted, but no TOKEN_ENCRYPTION_KEY is configured",
                ));
            }
            return Ok(data);
        }
        if !sealed {
            return Err(DecodeError::new(
                "the record is not encrypted, but TOKEN_ENCRYPTION_KEY is set; log in again to replace it",
            ));
        }
        if data.len() < HEADER + 16 {
            return Err(DecodeError::new("the encrypted record is truncated"));
        }
        let id = &data[4..8];
        let Some(key) = self.keys.iter().find(|key| key.id == id) else {
            return Err(DecodeError::new(format!(
                "the record was encrypted with key {}, which is not configured (TOKEN_ENCRYPTION_KEYS lists old keys)",
                hex(id)
            )));
        };
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&data[8..20]);
        key.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &data[HEADER..],
                    aad: store_key.as_bytes(),
                },
            )
            .map_err(|_| DecodeError::new("the record does not decrypt: tampered with, or moved from another key"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> Secret {
        parse_key(&STANDARD.encode([fill; 32])).unwrap()
    }

    #[test]
    fn sealed_records_open_under_their_own_store_key_only() {
        let sealer = Sealer::new(&[key(1)]);
        let sealed = sealer.seal("p:conn:a:tokens", b"secret record".to_vec()).unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            sealer.open("p:conn:a:tokens", sealed.clone()).unwrap(),
            b"secret record"
        );
        assert!(sealer.open("p:conn:b:tokens", sealed).is_err());
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let sealer = Sealer::new(&[key(1)]);
        let a = sealer.seal("k", b"same".to_vec()).unwrap();
        let b = sealer.seal("k", b"same".to_vec()).unwrap();
        assert_ne!(a[8..20], b[8..20]);
        assert_ne!(a, b);
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let sealed_before = Sealer::new(&[key(1)]).seal("k", b"old".to_vec()).unwrap();
        let rotated = Sealer::new(&[key(2), key(1)]);
        assert_eq!(rotated.open("k", sealed_before.clone()).unwrap(), b"old");
        let sealed_after = rotated.seal("k", b"new".to_vec()).unwrap();
        assert_eq!(
            sealed_after[4..8],
            Sealer::new(&[key(2)]).seal("k", vec![]).unwrap()[4..8]
        );
        assert!(Sealer::new(&[key(2)]).open("k", sealed_before).is_err());
    }

    #[test]
    fn tampering_truncation_and_plaintext_are_refused() {
        let sealer = Sealer::new(&[key(1)]);
        let mut sealed = sealer.seal("k", b"record".to_vec()).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(sealer.open("k", sealed.clone()).is_err());
        assert!(sealer.open("k", sealed[..HEADER].to_vec()).is_err());
        assert!(sealer.open("k", br#"{"format":1}"#.to_vec()).is_err());
        // Without keys, a sealed record is an error, not garbage handed on.
        assert!(Sealer::new(&[]).open("k", sealed).is_err());
        assert_eq!(Sealer::new(&[]).open("k", b"plain".to_vec()).unwrap(), b"plain");
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(parse_key(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(parse_key(&URL_SAFE.encode([0xfbu8; 32])).is_ok());
        assert_eq!(parse_key(&STANDARD.encode([7u8; 16])), Err(BadKey));
        assert_eq!(parse_key("not base64!"), Err(BadKey));
    }

    #[test]
    fn errors_and_debug_name_key_ids_only() {
        let sealer = Sealer::new(&[key(9)]);
        let printed = format!("{sealer:?}");
        assert!(printed.starts_with("Sealer(key ids [\""), "{printed}");
        assert!(!printed.contains(key(9).expose()));
    }
}
