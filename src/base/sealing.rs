//! Encryption at rest. With `TOKEN_ENCRYPTION_KEY` set, every record the broker stores is sealed
//! with ChaCha20-Poly1305 under a fresh random nonce, with the record's store key as associated
//! data: a record copied to another key (another connection, another broker) does not open.
//!
//! Sealed layout: `TBX2` | key id (4 bytes) | nonce (12 bytes) | clear length (2 bytes, big
//! endian) | clear part | ciphertext and tag. The key id (the first bytes of the key's SHA-256)
//! says which key sealed a record, so keys can rotate: new writes use the current key, older keys
//! listed in `TOKEN_ENCRYPTION_KEYS` still open. The clear part is what a function without the key
//! may read (a connection's health, for `/verify`); everything before the ciphertext and then the
//! store key are the associated data, so a changed clear part makes the record fail to open.
//! Records of the earlier layout, `TBX1` (no length and no clear part, the store key alone as
//! associated data), still open; every rewrite uses `TBX2`.

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

const MAGIC: &[u8; 4] = b"TBX2";
const MAGIC_V1: &[u8; 4] = b"TBX1";
/// Magic, key id, nonce.
const HEADER: usize = 4 + 4 + 12;
const TAG: usize = 16;

/// A sealed record taken apart, not yet opened.
struct Parts<'a> {
    id: &'a [u8],
    nonce: [u8; 12],
    /// `None` in a `TBX1` record.
    clear: Option<&'a [u8]>,
    /// Everything before the ciphertext.
    head: &'a [u8],
    sealed: &'a [u8],
}

/// `None`: not sealed at all.
fn parts(data: &[u8]) -> Result<Option<Parts<'_>>, DecodeError> {
    let v1 = data.starts_with(MAGIC_V1);
    if !v1 && !data.starts_with(MAGIC) {
        return Ok(None);
    }
    let truncated = || DecodeError::new("the encrypted record is truncated");
    if data.len() < HEADER {
        return Err(truncated());
    }
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&data[8..HEADER]);
    let (clear, head_len) = if v1 {
        (None, HEADER)
    } else {
        let length = data.get(HEADER..HEADER + 2).ok_or_else(truncated)?;
        let end = HEADER + 2 + usize::from(u16::from_be_bytes([length[0], length[1]]));
        (Some(data.get(HEADER + 2..end).ok_or_else(truncated)?), end)
    };
    let sealed = &data[head_len..];
    if sealed.len() < TAG {
        return Err(truncated());
    }
    Ok(Some(Parts {
        id: &data[4..8],
        nonce,
        clear,
        head: &data[..head_len],
        sealed,
    }))
}

/// What a reader without keys can learn of a stored record: `None` if it is not sealed (so all of
/// it can be read), the clear part if it is. A `TBX1` record shows nothing.
pub fn clear_part(data: &[u8]) -> Result<Option<&[u8]>, DecodeError> {
    match parts(data)? {
        None => Ok(None),
        Some(Parts { clear: Some(clear), .. }) => Ok(Some(clear)),
        Some(Parts { clear: None, .. }) => Err(DecodeError::new(
            "the record was encrypted by an earlier version, which kept nothing readable without the key; the next refresh or keep-alive run rewrites it",
        )),
    }
}

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

    /// Seals `plaintext` stored under `store_key`, with `clear` beside it readable without a key
    /// (and bound to it). Without keys, the plaintext is stored as it is, and says all `clear`
    /// would.
    pub fn seal(&self, store_key: &str, clear: &[u8], plaintext: Vec<u8>) -> Result<Vec<u8>, Fault> {
        let Some(key) = self.keys.first() else {
            return Ok(plaintext);
        };
        let clear_len = u16::try_from(clear.len()).map_err(|_| Fault("a record's readable part is too long"))?;
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Fault("the system random number generator failed"))?;
        let mut out = Vec::with_capacity(HEADER + 2 + clear.len() + plaintext.len() + TAG);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&clear_len.to_be_bytes());
        out.extend_from_slice(clear);
        let sealed = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plaintext,
                    aad: &associated_data(&out, store_key),
                },
            )
            .map_err(|_| Fault("a record could not be encrypted"))?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Whether `data` is sealed as a write now would seal it: in the current layout, under the
    /// current key. Keep-alive rewrites records that are not, so that a key rotation or a layout
    /// change completes without waiting for each connection's next refresh.
    pub fn is_current(&self, data: &[u8]) -> bool {
        match (self.keys.first(), parts(data)) {
            (Some(key), Ok(Some(parts))) => parts.clear.is_some() && parts.id == key.id,
            _ => true,
        }
    }

    /// Opens what was stored under `store_key`. With encryption on, a record that is not sealed
    /// is refused: anyone able to write to the store could otherwise plant tokens of their own.
    pub fn open(&self, store_key: &str, data: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
        let parts = parts(&data)?;
        let Some(parts) = parts else {
            if self.is_enabled() {
                return Err(DecodeError::new(
                    "the record is not encrypted, but TOKEN_ENCRYPTION_KEY is set; log in again to replace it",
                ));
            }
            return Ok(data);
        };
        if !self.is_enabled() {
            return Err(DecodeError::new(
                "the record is encrypted, but no TOKEN_ENCRYPTION_KEY is configured",
            ));
        }
        let Some(key) = self.keys.iter().find(|key| key.id == parts.id) else {
            return Err(DecodeError::new(format!(
                "the record was encrypted with key {}, which is not configured (TOKEN_ENCRYPTION_KEYS lists old keys)",
                hex(parts.id)
            )));
        };
        let aad = match parts.clear {
            Some(_) => associated_data(parts.head, store_key),
            None => store_key.as_bytes().to_vec(),
        };
        key.cipher
            .decrypt(
                &Nonce::from(parts.nonce),
                Payload {
                    msg: parts.sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| DecodeError::new("the record does not decrypt: tampered with, or moved from another key"))
    }
}

/// The head is self-delimiting (fixed fields, then a length), so appending the store key is
/// unambiguous.
fn associated_data(head: &[u8], store_key: &str) -> Vec<u8> {
    [head, store_key.as_bytes()].concat()
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
        let sealed = sealer.seal("p:conn:a:tokens", b"", b"secret record".to_vec()).unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            sealer.open("p:conn:a:tokens", sealed.clone()).unwrap(),
            b"secret record"
        );
        assert!(sealer.open("p:conn:b:tokens", sealed).is_err());
    }

    #[test]
    fn the_clear_part_is_readable_without_a_key_and_bound_to_the_record() {
        let sealer = Sealer::new(&[key(1)]);
        let sealed = sealer.seal("k", b"expires 1800", b"tokens".to_vec()).unwrap();
        assert!(sealed.starts_with(b"TBX2"));
        assert_eq!(clear_part(&sealed).unwrap(), Some(&b"expires 1800"[..]));
        assert_eq!(sealer.open("k", sealed.clone()).unwrap(), b"tokens");

        // Same length, other content: the record no longer opens.
        let mut changed = sealed.clone();
        let at = HEADER + 2 + 8;
        changed[at] = b'9';
        assert_eq!(clear_part(&changed).unwrap(), Some(&b"expires 9800"[..]));
        assert!(sealer.open("k", changed).is_err());
        // Nor when the length is moved to take in ciphertext or give it some.
        for length in [11u16, 13] {
            let mut moved = sealed.clone();
            moved[HEADER..HEADER + 2].copy_from_slice(&length.to_be_bytes());
            assert!(sealer.open("k", moved).is_err(), "length {length}");
        }
        // A plain record has no clear part: all of it is readable.
        assert_eq!(clear_part(b"{\"format\":1}").unwrap(), None);
        assert!(clear_part(&sealed[..HEADER + 1]).is_err());
    }

    /// A record as the earlier layout sealed it.
    fn sealed_v1(sealer: &Sealer, store_key: &str, plaintext: &[u8]) -> Vec<u8> {
        let key = &sealer.keys[0];
        let nonce = [3u8; 12];
        let payload = Payload {
            msg: plaintext,
            aad: store_key.as_bytes(),
        };
        let sealed = key.cipher.encrypt(&Nonce::from(nonce), payload).unwrap();
        [&MAGIC_V1[..], &key.id, &nonce, &sealed].concat()
    }

    #[test]
    fn earlier_records_open_show_nothing_in_clear_and_are_not_current() {
        let sealer = Sealer::new(&[key(1)]);
        let v1 = sealed_v1(&sealer, "k", b"old layout");
        assert_eq!(sealer.open("k", v1.clone()).unwrap(), b"old layout");
        assert!(sealer.open("other", v1.clone()).is_err());
        let refused = clear_part(&v1).unwrap_err().to_string();
        assert!(refused.contains("earlier version"), "{refused}");
        assert!(!sealer.is_current(&v1));

        let current = sealer.seal("k", b"", b"new".to_vec()).unwrap();
        assert!(sealer.is_current(&current));
        // Sealed under a key that is no longer the first: due for a rewrite.
        assert!(!Sealer::new(&[key(2), key(1)]).is_current(&current));
        // Without keys, or for a plain record, there is nothing to rewrite.
        assert!(Sealer::new(&[]).is_current(&current));
        assert!(sealer.is_current(b"plain"));
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let sealer = Sealer::new(&[key(1)]);
        let a = sealer.seal("k", b"", b"same".to_vec()).unwrap();
        let b = sealer.seal("k", b"", b"same".to_vec()).unwrap();
        assert_ne!(a[8..20], b[8..20]);
        assert_ne!(a, b);
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let sealed_before = Sealer::new(&[key(1)]).seal("k", b"", b"old".to_vec()).unwrap();
        let rotated = Sealer::new(&[key(2), key(1)]);
        assert_eq!(rotated.open("k", sealed_before.clone()).unwrap(), b"old");
        let sealed_after = rotated.seal("k", b"", b"new".to_vec()).unwrap();
        assert_eq!(
            sealed_after[4..8],
            Sealer::new(&[key(2)]).seal("k", b"", vec![]).unwrap()[4..8]
        );
        assert!(Sealer::new(&[key(2)]).open("k", sealed_before).is_err());
    }

    #[test]
    fn tampering_truncation_and_plaintext_are_refused() {
        let sealer = Sealer::new(&[key(1)]);
        let mut sealed = sealer.seal("k", b"clear", b"record".to_vec()).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(sealer.open("k", sealed.clone()).is_err());
        for cut in [HEADER, HEADER + 2, HEADER + 2 + 5, sealed.len() - 1] {
            assert!(sealer.open("k", sealed[..cut].to_vec()).is_err(), "cut at {cut}");
        }
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
