//! Symmetric-key authentication of NTP packets: the legacy MAC of RFC 5905 §7.3 (a 4-byte key
//! id and a digest after the header and any extension fields) with the key types chrony reads
//! from its key file (MD5, SHA1, SHA256, SHA384, SHA512: `digest(key || packet)`; AES128 and
//! AES256: AES-CMAC over the packet, RFC 8573).
//!
//! Sans IO apart from [`keyfile::load`], which reads the key file: the workers get a
//! [`ServerAuth`] inside their [`crate::datapath::Policy`] (an `Arc` swapped between two
//! batches, no lock on the path of a request). Keys are zeroised on drop and digests are
//! compared in constant time. Every primitive is a RustCrypto crate; nothing here is a cipher.
#![forbid(unsafe_code)]

pub mod keyfile;
mod mac;
pub mod upstream;

#[cfg(test)]
mod tests;

pub use keyfile::{KeyFile, KeyFileError};
pub use mac::{Check, MAX_DIGEST_LEN, V4_MAX_DIGEST_LEN};

use std::fmt;

use zeroize::Zeroizing;

/// The MAC algorithm of a key (the `TYPE` column of the key file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MacKind {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
    /// AES-128-CMAC (RFC 8573).
    Aes128,
    /// AES-256-CMAC.
    Aes256,
}

impl MacKind {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [MacKind; 7] = [
        MacKind::Md5,
        MacKind::Sha1,
        MacKind::Sha256,
        MacKind::Sha384,
        MacKind::Sha512,
        MacKind::Aes128,
        MacKind::Aes256,
    ];

    /// The type named `name` in a key file (case-insensitive, as chrony's names).
    pub fn from_name(name: &str) -> Option<MacKind> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// The name in key files and logs.
    pub const fn name(self) -> &'static str {
        match self {
            MacKind::Md5 => "MD5",
            MacKind::Sha1 => "SHA1",
            MacKind::Sha256 => "SHA256",
            MacKind::Sha384 => "SHA384",
            MacKind::Sha512 => "SHA512",
            MacKind::Aes128 => "AES128",
            MacKind::Aes256 => "AES256",
        }
    }

    /// Length of the full digest (CMAC: one AES block).
    pub const fn digest_len(self) -> usize {
        match self {
            MacKind::Md5 | MacKind::Aes128 | MacKind::Aes256 => 16,
            MacKind::Sha1 => 20,
            MacKind::Sha256 => 32,
            MacKind::Sha384 => 48,
            MacKind::Sha512 => 64,
        }
    }

    /// The exact key length a cipher needs (`None`: a hash takes any length).
    pub const fn cipher_key_len(self) -> Option<usize> {
        match self {
            MacKind::Aes128 => Some(16),
            MacKind::Aes256 => Some(32),
            _ => None,
        }
    }
}

impl fmt::Display for MacKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One symmetric key. The secret is wiped from memory when the key is dropped (the AES key
/// schedules too: the `aes` and `cmac` crates' `zeroize` features); `Debug` never shows it.
#[derive(Clone)]
pub struct Key {
    id: u32,
    kind: MacKind,
    secret: Zeroizing<Vec<u8>>,
    cmac: Option<mac::CmacKey>,
}

impl Key {
    /// A key of `kind` with `secret`; `None` when a cipher's key has the wrong length.
    pub fn new(id: u32, kind: MacKind, secret: &[u8]) -> Option<Key> {
        let cmac = match kind.cipher_key_len() {
            Some(n) if secret.len() != n => return None,
            Some(_) => Some(mac::CmacKey::new(kind, secret)?),
            None => None,
        };
        Some(Key {
            id,
            kind,
            secret: Zeroizing::new(secret.to_vec()),
            cmac,
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn kind(&self) -> MacKind {
        self.kind
    }

    /// Length of the secret in bytes.
    pub fn secret_len(&self) -> usize {
        self.secret.len()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .finish()
    }
}

/// The keys of a key file, looked up by id.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    /// Sorted by id, ids unique.
    keys: Vec<Key>,
}

impl KeySet {
    /// The set of `keys`; a later key with the id of an earlier one replaces it.
    pub fn new(keys: impl IntoIterator<Item = Key>) -> KeySet {
        let mut keys: Vec<Key> = keys.into_iter().collect();
        // Stable: of equal ids the later one ends up last, and is the one kept.
        keys.sort_by_key(|k| k.id);
        let mut unique: Vec<Key> = Vec::with_capacity(keys.len());
        for k in keys {
            match unique.last_mut() {
                Some(last) if last.id == k.id => *last = k,
                _ => unique.push(k),
            }
        }
        KeySet { keys: unique }
    }

    /// The key with `id`.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&Key> {
        self.keys
            .binary_search_by_key(&id, |k| k.id)
            .ok()
            .map(|i| &self.keys[i])
    }

    /// The key with `id`, for [`Key::sign_mut`] and [`Key::verify_mut`].
    #[inline]
    pub fn get_mut(&mut self, id: u32) -> Option<&mut Key> {
        self.keys
            .binary_search_by_key(&id, |k| k.id)
            .ok()
            .map(|i| &mut self.keys[i])
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }
}

/// What the server does with a request that carries no MAC when authentication is required.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Require {
    /// Unauthenticated requests are answered (the default).
    #[default]
    Off,
    /// They get nothing (counted as the drop `unauthenticated`).
    Drop,
    /// They get a kiss-o'-death CRYP (RFC 5905 §7.4: "cryptographic authentication or
    /// identification failed"), 48 bytes.
    Kod,
}

/// The server's part of authentication, handed to every worker with the policy.
#[derive(Clone, Debug, Default)]
pub struct ServerAuth {
    pub keys: KeySet,
    pub require: Require,
}

impl ServerAuth {
    /// True when it changes nothing: no key and nothing required (every MAC gets a
    /// crypto-NAK, as without it).
    pub fn is_off(&self) -> bool {
        self.keys.is_empty() && self.require == Require::Off
    }
}
