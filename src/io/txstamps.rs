//! Replies waiting for their transmit timestamp on a socket backend: each reply the worker
//! wants stamped gets a key of our own (sent with it as SCM_TS_OPT_ID), and the kernel's
//! error-queue report names that key. A fixed ring of the most recent keys, so nothing grows
//! on the hot path; a report for a key the ring no longer holds is ignored (the reply is
//! long gone and its client has been answered since).

use crate::datapath::TxToken;

/// Keys remembered per worker (a power of two): at 1 M replies/s, 4 ms of replies.
const PENDING: usize = 4096;

/// The pending replies of one worker.
pub struct PendingTx {
    /// Per ring slot: the key and the token, or `None` once stamped.
    slots: Box<[Option<(u32, TxToken)>]>,
    next: u32,
}

impl Default for PendingTx {
    fn default() -> PendingTx {
        PendingTx {
            slots: vec![None; PENDING].into_boxed_slice(),
            next: 0,
        }
    }
}

impl PendingTx {
    /// A key for a reply carrying `token`: send it with the reply.
    #[inline]
    pub fn register(&mut self, token: TxToken) -> u32 {
        let key = self.next;
        self.next = self.next.wrapping_add(1);
        self.slots[key as usize % PENDING] = Some((key, token));
        key
    }

    /// The token of the reply sent with `key`, once: `None` for a key never given, already
    /// stamped, or pushed out of the ring by newer replies.
    #[inline]
    pub fn take(&mut self, key: u32) -> Option<TxToken> {
        let slot = &mut self.slots[key as usize % PENDING];
        match *slot {
            Some((k, token)) if k == key => {
                *slot = None;
                Some(token)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_finds_its_token_once_and_old_keys_find_nothing() {
        let mut p = PendingTx::default();
        let t = |n: u64| TxToken::from_u64(n);
        let k1 = p.register(t(1));
        let k2 = p.register(t(2));
        assert_ne!(k1, k2);
        assert_eq!(p.take(k2), Some(t(2)));
        assert_eq!(p.take(k2), None, "once");
        assert_eq!(p.take(k1), Some(t(1)));
        assert_eq!(p.take(12345), None, "never given");
        // A full ring later, the slot of k3 holds a newer reply: k3's late report is ignored.
        let k3 = p.register(t(3));
        for n in 0..PENDING as u64 {
            p.register(t(100 + n));
        }
        assert_eq!(p.take(k3), None);
        assert_eq!(
            p.take(k3 + PENDING as u32),
            Some(t(100 + PENDING as u64 - 1))
        );
    }
}
