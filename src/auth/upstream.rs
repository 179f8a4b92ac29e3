//! Keys for upstream sources (`[[source]] key = ID`): the discipline thread signs its requests
//! and accepts only replies signed with the same key.
//!
//! The discipline thread takes the keys from here, per poll: the runtime publishes the set at
//! start-up and on every reload, the same `ServerAuth` the workers get in their policy. A
//! process-wide slot rather than a parameter threaded through the discipline's drivers, so a
//! reload of the key file reaches the sources without touching their configuration (a changed
//! key would otherwise look like a changed source and lose its filter state).

use std::sync::{Arc, RwLock};

use super::mac::KEY_ID_LEN;
use super::{Key, ServerAuth, MAX_DIGEST_LEN};
use crate::proto::{PacketView, HEADER_LEN};

static PUBLISHED: RwLock<Option<Arc<ServerAuth>>> = RwLock::new(None);

/// Makes `auth`'s keys the ones upstream polls use from the next poll on.
pub fn publish(auth: &Arc<ServerAuth>) {
    let mut slot = PUBLISHED.write().unwrap_or_else(|e| e.into_inner());
    *slot = Some(auth.clone());
}

/// The published key `id` (a copy, wiped when dropped).
pub fn key(id: u32) -> Option<Key> {
    let slot = PUBLISHED.read().unwrap_or_else(|e| e.into_inner());
    slot.as_ref()?.keys.get(id).cloned()
}

/// The longest signed request: a header and an NTPv4 MAC.
pub const MAX_SIGNED_REQUEST: usize = HEADER_LEN + KEY_ID_LEN + MAX_DIGEST_LEN;

/// Signs the NTPv4 request in `buf[..48]`: appends `key`'s id and its digest (cut to 20
/// bytes); returns the length to send.
pub fn sign_request(key: &Key, buf: &mut [u8; MAX_SIGNED_REQUEST]) -> usize {
    key.sign(buf, HEADER_LEN, key.digest_len_for(4))
        .unwrap_or(HEADER_LEN)
}

/// True when `reply` ends with a valid MAC of `key` (its id, the length its version calls
/// for) over everything before it. A crypto-NAK or an unsigned reply is false.
pub fn reply_is_signed(key: &Key, reply: &[u8]) -> bool {
    let Ok(view) = PacketView::new(reply) else {
        return false;
    };
    let Ok(trailer) = view.trailer() else {
        return false;
    };
    let Some(mac) = trailer.mac else {
        return false;
    };
    let covered = &reply[..HEADER_LEN + trailer.fields_len()];
    mac.key_id == key.id() && key.verify(covered, mac.digest, view.version())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::MacKind;
    use crate::proto::server::client_request;
    use crate::proto::NtpTimestamp;

    #[test]
    fn a_signed_request_checks_and_replies_must_be_signed() {
        let key = Key::new(5, MacKind::Sha256, b"upstream-sha256-key").unwrap();
        let other = Key::new(6, MacKind::Sha256, b"upstream-sha256-key").unwrap();
        let mut buf = [0u8; MAX_SIGNED_REQUEST];
        buf[..48].copy_from_slice(&client_request(4, 6, NtpTimestamp(42)));
        let len = sign_request(&key, &mut buf);
        assert_eq!(
            len,
            48 + 4 + 20,
            "NTPv4: the SHA-256 digest cut to 20 bytes"
        );
        assert!(reply_is_signed(&key, &buf[..len]));
        assert!(!reply_is_signed(&other, &buf[..len]), "another key id");
        assert!(!reply_is_signed(&key, &buf[..48]), "unsigned");
        let mut nak = buf;
        nak[48..52].fill(0);
        assert!(!reply_is_signed(&key, &nak[..52]), "crypto-NAK");
        let mut forged = buf;
        forged[40] ^= 1;
        assert!(!reply_is_signed(&key, &forged[..len]), "changed transmit");
        assert!(!reply_is_signed(&key, &buf[..20]), "short");
    }

    #[test]
    fn published_keys_are_found_by_id() {
        let auth = Arc::new(ServerAuth {
            keys: crate::auth::KeySet::new([Key::new(77, MacKind::Md5, b"0123456789").unwrap()]),
            require: crate::auth::Require::Off,
        });
        publish(&auth);
        assert_eq!(key(77).map(|k| k.kind()), Some(MacKind::Md5));
        assert!(key(78).is_none());
    }
}
