//! Optional frame authentication: HMAC-SHA256 with a key id, and the key file format.
//!
//! The CRC catches corruption; only the tag catches forgery. A receiver that has keys refuses
//! unsigned frames, frames naming an unknown key, and frames whose tag does not verify.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// One shared secret and the id frames name it by.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub id: u32,
    secret: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets, not even in debug logs.
        f.debug_struct("Key").field("id", &self.id).finish()
    }
}

impl Key {
    pub fn new(id: u32, secret: impl Into<Vec<u8>>) -> Key {
        Key {
            id,
            secret: secret.into(),
        }
    }

    /// The 32-byte HMAC-SHA256 tag over `bytes`.
    pub fn tag(&self, bytes: &[u8]) -> [u8; 32] {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time verification of `tag` over `bytes`.
    pub fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(bytes);
        mac.verify_slice(tag).is_ok()
    }
}

/// The keys a receiver accepts, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    keys: HashMap<u32, Key>,
}

/// A key file line that could not be read, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key file line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for KeyFileError {}

impl Keyring {
    pub fn new() -> Keyring {
        Keyring::default()
    }

    pub fn insert(&mut self, key: Key) {
        self.keys.insert(key.id, key);
    }

    pub fn get(&self, id: u32) -> Option<&Key> {
        self.keys.get(&id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key with the highest id: what a sender signs with when given a whole key file.
    pub fn newest(&self) -> Option<&Key> {
        self.keys.values().max_by_key(|k| k.id)
    }

    /// Parses a key file: one key per line, `<key id> <secret as hex>`, at least 16 bytes of
    /// secret; blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Result<Keyring, KeyFileError> {
        let mut ring = Keyring::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| KeyFileError {
                line: i + 1,
                message,
            };
            let mut parts = line.split_whitespace();
            let (Some(id), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("expected `<key id> <hex secret>`".into()));
            };
            let id: u32 = id.parse().map_err(|_| {
                err(format!(
                    "key id `{id}` is not a number from 0 to 4294967295"
                ))
            })?;
            let secret = decode_hex(hex).ok_or_else(|| err("secret is not valid hex".into()))?;
            if secret.len() < 16 {
                return Err(err(format!(
                    "secret has {} bytes; use at least 16 (32 recommended)",
                    secret.len()
                )));
            }
            if ring.keys.contains_key(&id) {
                return Err(err(format!("key id {id} appears twice")));
            }
            ring.insert(Key::new(id, secret));
        }
        Ok(ring)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_parse_key_file() {
        let ring = Keyring::parse(
            "# keys\n\n1 000102030405060708090a0b0c0d0e0f\n7 00112233445566778899aabbccddeeff0011\n",
        )
        .unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.newest().unwrap().id, 7);
    }

    #[test]
    fn test_parse_key_file_errors_name_the_line() {
        let e = Keyring::parse("1 0001\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("at least 16"));
        let e = Keyring::parse("\n\nx 00\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = Keyring::parse("1 zz\n").unwrap_err();
        assert!(e.message.contains("hex"));
    }

    #[test]
    fn test_tag_verifies_and_detects_change() {
        let k = Key::new(1, vec![9u8; 32]);
        let t = k.tag(b"frame");
        assert!(k.verify(b"frame", &t));
        assert!(!k.verify(b"framf", &t));
        assert!(!Key::new(1, vec![8u8; 32]).verify(b"frame", &t));
    }
}
