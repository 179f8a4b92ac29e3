//! The worker's symmetric-key steps (keys and MACs in `crate::auth`): check a request's MAC
//! before anything is written (the xdp backend writes the reply over the request), refuse
//! unauthenticated requests when `[auth] require` asks, and sign the reply once it is
//! complete, transmit timestamp included, so the MAC covers the final bytes.

use super::counters::{Counter, Tally};
use super::worker::Verdict;
use crate::auth::{Check, Require, ServerAuth};
use crate::proto::{DropReason, Request};

/// What a request's MAC is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// No MAC.
    Plain,
    /// A valid MAC: the reply is signed with the same key and a digest as long.
    Signed { key_id: u32, digest_len: usize },
    /// A MAC of an unknown key, or a bad one: the reply carries a crypto-NAK.
    Nak,
}

/// Checks the MAC of `req`, whose datagram is `request`, and counts the outcome.
#[inline]
pub(super) fn check(
    auth: Option<&mut ServerAuth>,
    req: &Request,
    request: &[u8],
    tally: &mut Tally,
) -> Outcome {
    let Some(mac) = req.mac else {
        return Outcome::Plain;
    };
    let check = match auth {
        Some(a) => a.keys.check_mut(
            mac.covered(request),
            mac.key_id,
            mac.digest(request),
            req.version,
        ),
        None => Check::UnknownKey,
    };
    match check {
        Check::Valid { digest_len, .. } => {
            tally.count(Counter::Authenticated);
            Outcome::Signed {
                key_id: mac.key_id,
                digest_len,
            }
        }
        Check::UnknownKey => {
            tally.count(Counter::UnknownKey);
            Outcome::Nak
        }
        Check::BadMac => {
            tally.count(Counter::BadMac);
            Outcome::Nak
        }
    }
}

/// What `[auth] require` does with a request of `outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Nothing is sent (counted as `unauthenticated`).
    Drop,
    /// A KoD CRYP (with the crypto-NAK when the request carried a bad MAC).
    Kod,
}

/// Whether the request is refused: only when authentication is required and the request is
/// not authenticated. A bad MAC then gets its crypto-NAK in a KoD CRYP, which carries no
/// time; a request without a MAC gets what `require-action` says.
#[inline]
pub(super) fn refusal(auth: Option<&ServerAuth>, outcome: Outcome) -> Option<Refusal> {
    let require = auth.map_or(Require::Off, |a| a.require);
    match (require, outcome) {
        (Require::Off, _) | (_, Outcome::Signed { .. }) => None,
        (_, Outcome::Nak) | (Require::Kod, Outcome::Plain) => Some(Refusal::Kod),
        (Require::Drop, Outcome::Plain) => Some(Refusal::Drop),
    }
}

/// Signs the reply or KoD in `out` (written for the request without its MAC) when the
/// request was authenticated: appends the key id and digest, computed over the finished
/// packet. The signed reply is no longer than the request (same key, same digest length).
#[inline]
pub(super) fn sign(
    auth: Option<&mut ServerAuth>,
    outcome: Outcome,
    verdict: Verdict,
    out: &mut [u8],
    tally: &mut Tally,
) -> Verdict {
    let Outcome::Signed { key_id, digest_len } = outcome else {
        return verdict;
    };
    let mut key = auth.and_then(|a| a.keys.get_mut(key_id));
    let mut signed = |len: usize| key.as_mut().and_then(|k| k.sign_mut(out, len, digest_len));
    match verdict {
        Verdict::Reply {
            len,
            tx,
            kernel_stamp,
        } => match signed(len) {
            Some(len) => Verdict::Reply {
                len,
                tx,
                kernel_stamp,
            },
            None => unsigned(tally),
        },
        Verdict::Kod { len, code } => match signed(len) {
            Some(len) => Verdict::Kod { len, code },
            None => unsigned(tally),
        },
        Verdict::Drop(_) => verdict,
    }
}

/// Not reached: the key was found when the request was checked, and the output buffer holds
/// a reply as long as the request. An authenticated request never gets an unsigned reply.
#[cold]
fn unsigned(tally: &mut Tally) -> Verdict {
    tally.drop(DropReason::Malformed);
    Verdict::Drop(DropReason::Malformed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::auth::{Key, KeySet, MacKind, Require, ServerAuth};
    use crate::clock::{ClockSnapshot, RawStamp, TimestampQuality};
    use crate::datapath::counters::Counter;
    use crate::datapath::{Arrival, Policy, Verdict, Worker, WorkerConfig};
    use crate::proto::server::client_request;
    use crate::proto::{DropReason, KissCode, NtpTimestamp, UnixNanos, MAX_REPLY_LEN};

    const T: UnixNanos = UnixNanos(1_700_000_000_000_000_000);

    fn keys() -> KeySet {
        KeySet::new([
            Key::new(1, MacKind::Md5, b"md5-key-md5-key").unwrap(),
            Key::new(2, MacKind::Sha256, b"sha256-key-sha256").unwrap(),
            Key::new(3, MacKind::Aes128, &[7; 16]).unwrap(),
            Key::new(4, MacKind::Sha512, b"sha512-key-sha512").unwrap(),
        ])
    }

    fn worker(require: Require) -> Worker {
        let mut w = Worker::new(WorkerConfig {
            clients: 64,
            seed: 1,
            interleaved: true,
        });
        w.set_policy(&Policy {
            auth: Arc::new(ServerAuth {
                keys: keys(),
                require,
            }),
            ..Policy::default()
        });
        w
    }

    fn meta() -> Arrival {
        Arrival {
            src: "192.0.2.1:40000".parse().unwrap(),
            dst: None,
            ifindex: 0,
            rx: RawStamp {
                raw: T,
                quality: TimestampQuality::Kernel,
            },
        }
    }

    /// A request of `version` signed with key `id` of `keys()` (as a client would).
    fn signed(version: u8, id: u32) -> Vec<u8> {
        let set = keys();
        let key = set.get(id).unwrap();
        let mut buf = vec![0u8; MAX_REPLY_LEN];
        buf[..48].copy_from_slice(&client_request(version, 6, NtpTimestamp(0x1234)));
        let len = key.sign(&mut buf, 48, key.digest_len_for(version)).unwrap();
        buf.truncate(len);
        buf
    }

    fn ask(w: &mut Worker, request: &[u8]) -> (Verdict, Vec<u8>) {
        let snap = ClockSnapshot::local(2, -20, T);
        let mut out = [0u8; MAX_REPLY_LEN];
        let v = w.on_datagram(&meta(), request, &mut out, &snap, || T);
        let len = v.send().map_or(0, |(len, _)| len);
        (v, out[..len].to_vec())
    }

    /// The reply's MAC checks with the key it names, over the reply as sent.
    fn assert_signed(reply: &[u8], id: u32, version: u8) {
        let set = keys();
        let d = set.get(id).unwrap().digest_len_for(version);
        assert_eq!(reply.len(), 48 + 4 + d);
        assert_eq!(&reply[48..52], &id.to_be_bytes());
        let ok = set.check(&reply[..48], id, &reply[52..], version);
        assert!(matches!(ok, crate::auth::Check::Valid { .. }), "{ok:?}");
    }

    #[test]
    fn a_valid_mac_gets_a_reply_signed_with_the_same_key_no_longer_than_the_request() {
        let mut w = worker(Require::Off);
        for (version, id) in [(4, 1), (4, 2), (4, 3), (4, 4), (3, 2), (3, 4), (2, 1)] {
            let req = signed(version, id);
            let (v, reply) = ask(&mut w, &req);
            assert!(
                matches!(v, Verdict::Reply { .. }),
                "v{version} key {id}: {v:?}"
            );
            assert_eq!(reply.len(), req.len(), "v{version} key {id}");
            assert_eq!(reply[0] & 7, 4);
            assert_eq!(&reply[24..32], &req[40..48], "origin");
            assert_signed(&reply, id, version);
        }
        assert_eq!(w.tally().get(Counter::Authenticated), 7);
        assert_eq!(w.tally().get(Counter::Answered), 7);
    }

    #[test]
    fn the_interleaved_reply_is_signed_after_its_transmit_field_is_written() {
        let mut w = worker(Require::Off);
        let (_, r1) = ask(&mut w, &signed(4, 3));
        // Follow up in interleaved mode: origin = our receive field, own receive ≠ transmit.
        let set = keys();
        let key = set.get(3).unwrap();
        let mut req = vec![0u8; MAX_REPLY_LEN];
        req[..48].copy_from_slice(&client_request(4, 6, NtpTimestamp(0x9999)));
        req[24..32].copy_from_slice(&r1[32..40]);
        req[32..40].copy_from_slice(&0x5555u64.to_be_bytes());
        let len = key.sign(&mut req, 48, 16).unwrap();
        let snap = ClockSnapshot::local(2, -20, T);
        let mut out = [0u8; MAX_REPLY_LEN];
        let v = w.on_datagram(&meta(), &req[..len], &mut out, &snap, || {
            UnixNanos(T.0 + 77)
        });
        assert!(matches!(v, Verdict::Reply { len: 68, .. }), "{v:?}");
        assert_eq!(&out[24..32], &0x5555u64.to_be_bytes(), "interleaved origin");
        assert_eq!(w.tally().get(Counter::Interleaved), 1);
        assert_signed(&out[..68], 3, 4);
    }

    #[test]
    fn in_place_the_mac_is_checked_before_the_reply_overwrites_it() {
        let mut w = worker(Require::Off);
        let snap = ClockSnapshot::local(2, -20, T);
        for id in [1, 2, 3] {
            let req = signed(4, id);
            let mut buf = req.clone();
            let v = w.on_datagram_in_place(&meta(), &mut buf, req.len(), &snap, || T);
            assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
            assert_eq!(v.send().unwrap().0, req.len());
            assert_signed(&buf, id, 4);
        }
    }

    #[test]
    fn bad_macs_and_unknown_keys_get_a_crypto_nak_and_are_counted() {
        let mut w = worker(Require::Off);
        let mut bad = signed(4, 2);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let (v, reply) = ask(&mut w, &bad);
        assert!(matches!(v, Verdict::Reply { len: 52, .. }), "{v:?}");
        assert_eq!(&reply[48..52], &[0; 4], "crypto-NAK");
        // A key id nobody has.
        let mut unknown = signed(4, 1);
        unknown[48..52].copy_from_slice(&77u32.to_be_bytes());
        let (_, reply) = ask(&mut w, &unknown);
        assert_eq!((reply.len(), &reply[48..52]), (52, &[0u8; 4][..]));
        // An MD5 key's id with a SHA-1-length digest: the wrong length is a bad MAC.
        let mut wrong_len = signed(4, 1);
        wrong_len.extend_from_slice(&[0; 4]);
        let (_, reply) = ask(&mut w, &wrong_len);
        assert_eq!(reply.len(), 52);
        // A client's own crypto-NAK.
        let mut nak = client_request(4, 6, NtpTimestamp(1)).to_vec();
        nak.extend_from_slice(&[0; 4]);
        let (_, reply) = ask(&mut w, &nak);
        assert_eq!(reply.len(), 52);
        // Truncated mid-MAC: not a MAC length at all, so not a request.
        let cut = &signed(4, 3)[..60];
        assert_eq!(ask(&mut w, cut).0, Verdict::Drop(DropReason::Malformed));
        let t = *w.tally();
        assert_eq!(t.get(Counter::BadMac), 2);
        assert_eq!(t.get(Counter::UnknownKey), 2);
        assert_eq!(t.get(Counter::Authenticated), 0);
        assert_eq!(t.get(Counter::Received), 5);
        assert_eq!(t.get(Counter::Answered) + t.dropped_total(), 5);
    }

    #[test]
    fn without_keys_a_mac_is_an_unknown_key() {
        let mut w = Worker::new(WorkerConfig {
            clients: 0,
            seed: 1,
            interleaved: false,
        });
        let (_, reply) = ask(&mut w, &signed(4, 1));
        assert_eq!(&reply[48..], &[0; 4]);
        assert_eq!(w.tally().get(Counter::UnknownKey), 1);
    }

    #[test]
    fn required_authentication_drops_or_kods_the_unauthenticated() {
        let plain = client_request(4, 6, NtpTimestamp(5));
        let mut w = worker(Require::Drop);
        assert_eq!(
            ask(&mut w, &plain).0,
            Verdict::Drop(DropReason::Unauthenticated)
        );
        assert_eq!(w.tally().dropped[DropReason::Unauthenticated.index()], 1);
        // Authenticated requests are still answered, and signed.
        let (v, reply) = ask(&mut w, &signed(4, 2));
        assert!(matches!(v, Verdict::Reply { .. }));
        assert_signed(&reply, 2, 4);

        let mut w = worker(Require::Kod);
        let (v, reply) = ask(&mut w, &plain);
        assert_eq!(
            v,
            Verdict::Kod {
                len: 48,
                code: KissCode::Cryp
            }
        );
        assert_eq!((reply[1], &reply[12..16]), (0, &b"CRYP"[..]));
        // A bad MAC gets the crypto-NAK, but no time: KoD CRYP + zero key id.
        let mut bad = signed(4, 1);
        bad[60] ^= 0xFF;
        let (v, reply) = ask(&mut w, &bad);
        assert!(matches!(v, Verdict::Kod { len: 52, .. }), "{v:?}");
        assert_eq!(&reply[12..16], b"CRYP");
        assert_eq!(&reply[40..48], &reply[24..32], "transmit = origin: no time");
        assert_eq!(&reply[48..52], &[0; 4]);
        let t = *w.tally();
        assert_eq!(t.get(Counter::KodCryp), 2);
        assert_eq!(t.get(Counter::BadMac), 1);
    }

    proptest::proptest! {
        /// Signed requests of any version and key, then damaged anywhere (a byte flipped, cut
        /// short, bytes added, the key id changed): never a panic, never a reply longer than
        /// the request, every datagram answered or dropped and counted; an answer either signed
        /// with the request's key or a crypto-NAK.
        #[test]
        fn damaged_signed_requests_never_get_more_bytes_than_they_carry(
            version in 1u8..=4,
            id in 1u32..=5,
            flip in proptest::option::of((0usize..120, 1u8..=255)),
            cut in proptest::option::of(0usize..120),
            extra in 0usize..12,
            other_id in proptest::option::of(proptest::num::u32::ANY),
            require in proptest::sample::select(vec![Require::Off, Require::Drop, Require::Kod]),
        ) {
            let mut w = worker(require);
            let mut req = if id == 5 { client_request(version, 6, NtpTimestamp(3)).to_vec() } else {
                signed(version, id)
            };
            if let Some(k) = other_id {
                if req.len() > 52 {
                    req[48..52].copy_from_slice(&k.to_be_bytes());
                }
            }
            if let Some((at, x)) = flip {
                let n = req.len();
                req[at % n] ^= x;
            }
            req.extend(std::iter::repeat_n(0u8, extra));
            if let Some(c) = cut {
                req.truncate(c.min(req.len()));
            }
            let snap = ClockSnapshot::local(2, -20, T);
            // In place, as the xdp backend: the reply must fit the request's own bytes.
            let mut buf = req.clone();
            let v = w.on_datagram_in_place(&meta(), &mut buf, req.len(), &snap, || T);
            let mut out = [0u8; MAX_REPLY_LEN];
            let v2 = w.on_datagram(&meta(), &req, &mut out, &snap, || T);
            for (v, reply) in [(v, &buf[..]), (v2, &out[..])] {
                if let Some((len, _)) = v.send() {
                    proptest::prop_assert!(len <= req.len(), "{len} > {}", req.len());
                    let signed = len > 52;
                    if signed {
                        let key_id = u32::from_be_bytes(reply[48..52].try_into().unwrap());
                        let version = reply[0] >> 3 & 7;
                        let set = keys();
                        let ok = set.check(&reply[..48], key_id, &reply[52..len], version);
                        let valid = matches!(ok, crate::auth::Check::Valid { .. });
                        proptest::prop_assert!(valid, "{:?}", ok);
                    } else if len == 52 {
                        proptest::prop_assert_eq!(&reply[48..52], &[0u8; 4]);
                    }
                }
            }
            let t = *w.tally();
            proptest::prop_assert_eq!(t.get(Counter::Received), 2);
            proptest::prop_assert_eq!(t.get(Counter::Answered) + t.dropped_total(), 2);
        }
    }

    #[test]
    fn a_denied_client_gets_an_unsigned_kod_and_costs_no_mac() {
        // The access rules come before the MAC: a flood of signed requests from a denied
        // prefix costs no digest, and its KoD DENY is the plain header (a client holding a
        // key then ignores it, which for a denied client is as good as silence).
        let mut w = worker(Require::Off);
        let d = vec!["192.0.2.0/24".parse().unwrap()];
        w.set_policy(&Policy {
            access: Arc::new(crate::datapath::access::AccessRules::new(&[], &d)),
            auth: Arc::new(ServerAuth {
                keys: keys(),
                require: Require::Off,
            }),
            ..Policy::default()
        });
        let (v, reply) = ask(&mut w, &signed(4, 1));
        assert!(
            matches!(
                v,
                Verdict::Kod {
                    code: KissCode::Deny,
                    ..
                }
            ),
            "{v:?}"
        );
        assert_eq!(&reply[12..16], b"DENY");
        assert_eq!(reply.len(), 48, "no MAC on the KoD");
        let t = *w.tally();
        assert_eq!(
            t.get(Counter::Authenticated),
            0,
            "the MAC was never checked"
        );
        assert_eq!(t.get(Counter::KodDeny), 1);
    }
}
