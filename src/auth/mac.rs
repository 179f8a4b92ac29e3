//! Computing and checking the MAC of a packet.
//!
//! The MAC follows the packet it covers (the header and any extension fields): the key id, big
//! endian, then the digest. For the hash types the digest is `H(key || packet)` (RFC 5905
//! §7.3, as ntpd and chrony compute it); for AES it is the CMAC of the packet under the key
//! (RFC 8573), one 16-byte block.
//!
//! Lengths, as chrony reads and writes them: an NTPv4 packet carries at most 20 digest bytes
//! (RFC 7822 §7.5: a longer MAC could not be told from an extension field), so the SHA-2
//! digests are cut to their first 20 bytes there; NTPv1–3 packets have no extension fields and
//! carry the whole digest (chronyd sends NTPv3 requests with such keys for that reason). A
//! digest of any other length is a bad MAC. A reply carries a digest as long as the
//! request's, so it is never longer than the request.

use aes::{Aes128, Aes256};
use cmac::{Cmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

use super::{Key, KeySet, MacKind};

/// The longest digest (SHA512).
pub const MAX_DIGEST_LEN: usize = 64;
/// The longest digest an NTPv4 packet carries.
pub const V4_MAX_DIGEST_LEN: usize = 20;
/// Length of the key id before the digest.
pub const KEY_ID_LEN: usize = 4;

/// An AES-CMAC key with its key schedule expanded once, at load time.
#[derive(Clone)]
pub(super) enum CmacKey {
    Aes128(Box<Cmac<Aes128>>),
    Aes256(Box<Cmac<Aes256>>),
}

impl CmacKey {
    pub(super) fn new(kind: MacKind, secret: &[u8]) -> Option<CmacKey> {
        match kind {
            MacKind::Aes128 => <Cmac<Aes128> as Mac>::new_from_slice(secret)
                .ok()
                .map(|m| CmacKey::Aes128(Box::new(m))),
            MacKind::Aes256 => <Cmac<Aes256> as Mac>::new_from_slice(secret)
                .ok()
                .map(|m| CmacKey::Aes256(Box::new(m))),
            _ => None,
        }
    }
}

fn hash<D: Digest>(key: &[u8], data: &[u8], out: &mut [u8; MAX_DIGEST_LEN]) -> usize {
    let mut h = D::new();
    h.update(key);
    h.update(data);
    let d = h.finalize();
    out[..d.len()].copy_from_slice(&d);
    d.len()
}

fn cmac<M: Mac + Clone>(m: &M, data: &[u8], out: &mut [u8; MAX_DIGEST_LEN]) -> usize {
    let mut m = m.clone();
    m.update(data);
    let tag = m.finalize().into_bytes();
    out[..tag.len()].copy_from_slice(&tag);
    tag.len()
}

impl Key {
    /// The full digest of `data` under this key into `out`; returns its length.
    pub fn digest(&self, data: &[u8], out: &mut [u8; MAX_DIGEST_LEN]) -> usize {
        match (&self.cmac, self.kind) {
            (Some(CmacKey::Aes128(m)), _) => cmac(m.as_ref(), data, out),
            (Some(CmacKey::Aes256(m)), _) => cmac(m.as_ref(), data, out),
            (None, MacKind::Md5) => hash::<Md5>(&self.secret, data, out),
            (None, MacKind::Sha1) => hash::<Sha1>(&self.secret, data, out),
            (None, MacKind::Sha256) => hash::<Sha256>(&self.secret, data, out),
            (None, MacKind::Sha384) => hash::<Sha384>(&self.secret, data, out),
            (None, MacKind::Sha512) => hash::<Sha512>(&self.secret, data, out),
            // `Key::new` builds the schedule of every cipher key.
            (None, MacKind::Aes128 | MacKind::Aes256) => 0,
        }
    }

    /// The digest length a packet of NTP `version` carries with this key.
    pub fn digest_len_for(&self, version: u8) -> usize {
        let full = self.kind.digest_len();
        if version >= 4 {
            full.min(V4_MAX_DIGEST_LEN)
        } else {
            full
        }
    }

    /// True when `digest` is this key's MAC of `data` in a packet of `version`: of the
    /// expected length, compared in constant time.
    pub fn verify(&self, data: &[u8], digest: &[u8], version: u8) -> bool {
        if digest.len() != self.digest_len_for(version) {
            return false;
        }
        let mut full = [0u8; MAX_DIGEST_LEN];
        let n = self.digest(data, &mut full);
        n >= digest.len() && bool::from(full[..digest.len()].ct_eq(digest))
    }

    /// Appends the MAC of `buf[..len]` (the key id, then the digest cut to `digest_len`
    /// bytes) at `buf[len..]`; returns the new length, or `None` when it does not fit or the
    /// digest is shorter than `digest_len`.
    pub fn sign(&self, buf: &mut [u8], len: usize, digest_len: usize) -> Option<usize> {
        let end = len.checked_add(KEY_ID_LEN)?.checked_add(digest_len)?;
        if end > buf.len() {
            return None;
        }
        let mut full = [0u8; MAX_DIGEST_LEN];
        let n = self.digest(&buf[..len], &mut full);
        if n < digest_len {
            return None;
        }
        buf[len..len + KEY_ID_LEN].copy_from_slice(&self.id.to_be_bytes());
        buf[len + KEY_ID_LEN..end].copy_from_slice(&full[..digest_len]);
        Some(end)
    }
}

/// What a request's MAC is worth.
#[derive(Clone, Copy, Debug)]
pub enum Check<'k> {
    /// Made with `key`: the reply is signed with it, with a digest of `digest_len` bytes.
    Valid { key: &'k Key, digest_len: usize },
    /// No key has its id (a crypto-NAK, key id 0 and no digest, included).
    UnknownKey,
    /// The key is known but the digest is wrong, or of the wrong length.
    BadMac,
}

impl KeySet {
    /// Checks the MAC (`key_id`, `digest`) that follows `data` in a packet of NTP `version`.
    pub fn check(&self, data: &[u8], key_id: u32, digest: &[u8], version: u8) -> Check<'_> {
        match self.get(key_id) {
            None => Check::UnknownKey,
            Some(key) if key.verify(data, digest, version) => Check::Valid {
                key,
                digest_len: digest.len(),
            },
            Some(_) => Check::BadMac,
        }
    }
}
