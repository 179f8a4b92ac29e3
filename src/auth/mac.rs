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
use cmac::digest::FixedOutputReset;
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

/// A CMAC on a copy of the key's state (the key stays read-only; the copy is wiped on drop).
fn cmac_copy<M: Mac + Clone>(m: &M, data: &[u8], out: &mut [u8; MAX_DIGEST_LEN]) -> usize {
    let mut m = m.clone();
    m.update(data);
    let tag = m.finalize().into_bytes();
    out[..tag.len()].copy_from_slice(&tag);
    tag.len()
}

/// A CMAC on the key's own state, reset to the keyed start afterwards (no copy: ~90 ns less).
fn cmac_reuse<M: Mac + FixedOutputReset>(
    m: &mut M,
    data: &[u8],
    out: &mut [u8; MAX_DIGEST_LEN],
) -> usize {
    Mac::update(m, data);
    let tag = m.finalize_reset().into_bytes();
    out[..tag.len()].copy_from_slice(&tag);
    tag.len()
}

/// Constant-time comparison of a received digest with the first bytes of the computed one.
fn same_digest(computed: &[u8], received: &[u8]) -> bool {
    computed.len() >= received.len() && bool::from(computed[..received.len()].ct_eq(received))
}

/// Appends key `id` and `digest(buf[..len])` cut to `digest_len` at `buf[len..]`.
fn place(
    id: u32,
    buf: &mut [u8],
    len: usize,
    digest_len: usize,
    digest: impl FnOnce(&[u8], &mut [u8; MAX_DIGEST_LEN]) -> usize,
) -> Option<usize> {
    let end = len.checked_add(KEY_ID_LEN)?.checked_add(digest_len)?;
    if end > buf.len() {
        return None;
    }
    let mut full = [0u8; MAX_DIGEST_LEN];
    if digest(&buf[..len], &mut full) < digest_len {
        return None;
    }
    buf[len..len + KEY_ID_LEN].copy_from_slice(&id.to_be_bytes());
    buf[len + KEY_ID_LEN..end].copy_from_slice(&full[..digest_len]);
    Some(end)
}

impl Key {
    /// The full digest of `data` under this key into `out`; returns its length.
    pub fn digest(&self, data: &[u8], out: &mut [u8; MAX_DIGEST_LEN]) -> usize {
        match &self.cmac {
            Some(CmacKey::Aes128(m)) => cmac_copy(m.as_ref(), data, out),
            Some(CmacKey::Aes256(m)) => cmac_copy(m.as_ref(), data, out),
            None => self.hash(data, out),
        }
    }

    /// [`Key::digest`] on a key this thread owns: the CMAC state is used in place.
    pub fn digest_mut(&mut self, data: &[u8], out: &mut [u8; MAX_DIGEST_LEN]) -> usize {
        match &mut self.cmac {
            Some(CmacKey::Aes128(m)) => cmac_reuse(m.as_mut(), data, out),
            Some(CmacKey::Aes256(m)) => cmac_reuse(m.as_mut(), data, out),
            None => self.hash(data, out),
        }
    }

    fn hash(&self, data: &[u8], out: &mut [u8; MAX_DIGEST_LEN]) -> usize {
        match self.kind {
            MacKind::Md5 => hash::<Md5>(&self.secret, data, out),
            MacKind::Sha1 => hash::<Sha1>(&self.secret, data, out),
            MacKind::Sha256 => hash::<Sha256>(&self.secret, data, out),
            MacKind::Sha384 => hash::<Sha384>(&self.secret, data, out),
            MacKind::Sha512 => hash::<Sha512>(&self.secret, data, out),
            // `Key::new` builds the CMAC state of every cipher key.
            MacKind::Aes128 | MacKind::Aes256 => 0,
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
        same_digest(&full[..n], digest)
    }

    /// [`Key::verify`] with [`Key::digest_mut`].
    pub fn verify_mut(&mut self, data: &[u8], digest: &[u8], version: u8) -> bool {
        if digest.len() != self.digest_len_for(version) {
            return false;
        }
        let mut full = [0u8; MAX_DIGEST_LEN];
        let n = self.digest_mut(data, &mut full);
        same_digest(&full[..n], digest)
    }

    /// Appends the MAC of `buf[..len]` (the key id, then the digest cut to `digest_len`
    /// bytes) at `buf[len..]`; returns the new length, or `None` when it does not fit or the
    /// digest is shorter than `digest_len`.
    pub fn sign(&self, buf: &mut [u8], len: usize, digest_len: usize) -> Option<usize> {
        place(self.id, buf, len, digest_len, |d, out| self.digest(d, out))
    }

    /// [`Key::sign`] with [`Key::digest_mut`].
    pub fn sign_mut(&mut self, buf: &mut [u8], len: usize, digest_len: usize) -> Option<usize> {
        let id = self.id;
        place(id, buf, len, digest_len, |d, out| self.digest_mut(d, out))
    }
}

/// What a request's MAC is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Made with the key it names: the reply is signed with it, with a digest of
    /// `digest_len` bytes.
    Valid { digest_len: usize },
    /// No key has its id (a crypto-NAK, key id 0 and no digest, included).
    UnknownKey,
    /// The key is known but the digest is wrong, or of the wrong length.
    BadMac,
}

impl KeySet {
    /// Checks the MAC (`key_id`, `digest`) that follows `data` in a packet of NTP `version`.
    pub fn check(&self, data: &[u8], key_id: u32, digest: &[u8], version: u8) -> Check {
        let valid = self.get(key_id).map(|k| k.verify(data, digest, version));
        Check::of(valid, digest)
    }

    /// [`KeySet::check`] on keys this thread owns ([`Key::verify_mut`]).
    pub fn check_mut(&mut self, data: &[u8], key_id: u32, digest: &[u8], version: u8) -> Check {
        let valid = self
            .get_mut(key_id)
            .map(|k| k.verify_mut(data, digest, version));
        Check::of(valid, digest)
    }
}

impl Check {
    /// `valid`: `None` when no key has the id, else whether `digest` checked.
    fn of(valid: Option<bool>, digest: &[u8]) -> Check {
        match valid {
            None => Check::UnknownKey,
            Some(true) => Check::Valid {
                digest_len: digest.len(),
            },
            Some(false) => Check::BadMac,
        }
    }
}
