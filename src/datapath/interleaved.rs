//! Interleaved client/server mode (RFC 9769), server side, on the client's record.
//!
//! A reply's transmit field is written before the reply leaves, so it can only be an estimate;
//! the true transmit time (the kernel's, the driver's or the NIC's stamp) is known only after
//! the send. Interleaved mode hands it over in the *next* reply to the same client:
//!
//! * Every reply saves a pair in the client's record: the receive timestamp it carried and its
//!   transmit time — first the estimate the reply carried, then the backend's stamp when one
//!   comes back ([`on_tx_stamp`], matched by the [`TxToken`] the reply's verdict carried).
//! * A request is interleaved when its origin equals the saved receive timestamp and its
//!   receive field differs from its transmit field. Its reply carries origin = the request's
//!   receive field, receive = this request's receive time, transmit = the saved (true)
//!   transmit time of the earlier reply. Any other request is answered in basic mode.
//! * Either way the reply's own pair replaces the saved one, so a pair is matched at most
//!   once: a replayed or duplicated interleaved request finds the newer pair and gets a basic
//!   reply.
//!
//! A basic client echoes our *transmit* timestamp in its origin; it must never be mistaken
//! for our *receive* timestamp. Every receive timestamp we send has its lowest bit set and
//! every transmit timestamp its lowest bit clear (2⁻³² s, 0.23 ns, below any clock's
//! precision), so the two can never be equal. And a saved receive timestamp is never 0, which
//! leaves 0 free to mean "no pair".
//!
//! One pair per record, and a record per client address: clients behind one address (a NAT)
//! that interleave at once replace each other's pair, and each then gets basic replies.

use super::clients::{Record, Slot};
use crate::clock::TimestampQuality;
use crate::proto::{NtpTimestamp, ReplyTimes, Request, UnixNanos};

/// Matches a transmit timestamp reported after the send with the reply it belongs to: the
/// client's record and the low half of the receive timestamp that reply carried (a record
/// given to another client since, or a newer reply to the same client, no longer matches).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxToken {
    slot: u32,
    rx_lo: u32,
}

impl TxToken {
    /// The token as one number, for backends that keep pending sends in plain words.
    pub fn to_u64(self) -> u64 {
        (u64::from(self.slot) << 32) | u64::from(self.rx_lo)
    }

    /// The token [`TxToken::to_u64`] made.
    pub fn from_u64(v: u64) -> TxToken {
        TxToken {
            slot: (v >> 32) as u32,
            rx_lo: v as u32,
        }
    }

    pub(crate) fn slot(self) -> Slot {
        Slot::from_index(self.slot)
    }
}

/// A receive timestamp as it goes on the wire: lowest bit set (see the module notes).
#[inline]
pub const fn receive_field(t: NtpTimestamp) -> NtpTimestamp {
    NtpTimestamp(t.0 | 1)
}

/// A transmit timestamp as it goes on the wire: lowest bit clear.
#[inline]
pub const fn transmit_field(t: NtpTimestamp) -> NtpTimestamp {
    NtpTimestamp(t.0 & !1)
}

/// How a request is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Origin = the request's transmit; transmit read now.
    Basic,
    /// Origin = the request's receive field; transmit = the earlier reply's, of that quality.
    Interleaved {
        transmit: NtpTimestamp,
        quality: TimestampQuality,
    },
}

/// RFC 9769: is `req` the follow-up of the reply whose pair `record` saved?
#[inline]
pub fn mode_for(record: &Record, req: &Request) -> Mode {
    let saved = record.rx_sent;
    if saved != 0 && req.origin_ts.0 == saved && req.receive_ts != req.transmit_ts {
        Mode::Interleaved {
            transmit: NtpTimestamp(record.tx_sent),
            quality: quality_from_index(record.tx_quality),
        }
    } else {
        Mode::Basic
    }
}

/// The origin and receive fields of the reply in `mode`, received at served time `rx`.
#[inline]
pub fn times(req: &Request, mode: Mode, rx: UnixNanos) -> ReplyTimes {
    ReplyTimes {
        rx,
        receive: receive_field(NtpTimestamp::from_unix(rx)),
        origin: match mode {
            Mode::Basic => req.transmit_ts,
            Mode::Interleaved { .. } => req.receive_ts,
        },
    }
}

/// Saves the pair of the reply just written (its receive field and the transmit estimate
/// read while writing it) in the client's record, and returns the token a later transmit
/// stamp is matched with.
#[inline]
pub fn save(
    record: &mut Record,
    slot: Slot,
    times: &ReplyTimes,
    estimate: NtpTimestamp,
) -> TxToken {
    record.rx_sent = times.receive.0;
    record.tx_sent = transmit_field(estimate).0;
    record.tx_quality = TimestampQuality::User as u8;
    TxToken {
        slot: slot.index(),
        rx_lo: times.receive.0 as u32,
    }
}

/// A transmit stamp for the reply `token` names, as served time (`tx`) of `quality`: it
/// replaces the saved estimate if the record still holds that reply's pair and the stamp is
/// no worse than what it holds. Returns whether it was taken.
#[inline]
pub fn on_tx_stamp(
    record: &mut Record,
    token: TxToken,
    tx: NtpTimestamp,
    quality: TimestampQuality,
) -> bool {
    let current = quality_from_index(record.tx_quality);
    if record.rx_sent == 0 || record.rx_sent as u32 != token.rx_lo || quality > current {
        return false;
    }
    record.tx_sent = transmit_field(tx).0;
    record.tx_quality = quality as u8;
    true
}

/// The quality a record stores as an index (an unknown index reads as the worst).
#[inline]
fn quality_from_index(i: u8) -> TimestampQuality {
    match i {
        0 => TimestampQuality::Hardware,
        1 => TimestampQuality::Driver,
        2 => TimestampQuality::Kernel,
        _ => TimestampQuality::User,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TimestampQuality::{Kernel, User};

    fn request(origin: u64, receive: u64, transmit: u64) -> Request {
        let mut b = [0u8; 48];
        b[0] = 0x23; // v4, client
        b[24..32].copy_from_slice(&origin.to_be_bytes());
        b[32..40].copy_from_slice(&receive.to_be_bytes());
        b[40..48].copy_from_slice(&transmit.to_be_bytes());
        Request::parse(&b).unwrap()
    }

    #[test]
    fn qualities_survive_the_round_trip_through_the_record() {
        for q in crate::datapath::counters::QUALITIES {
            assert_eq!(quality_from_index(q as u8), q);
        }
        assert_eq!(quality_from_index(200), User);
    }

    #[test]
    fn tokens_survive_being_a_number() {
        let t = TxToken {
            slot: 0xdead_beef,
            rx_lo: 0x1234_5679,
        };
        assert_eq!(TxToken::from_u64(t.to_u64()), t);
    }

    #[test]
    fn receive_and_transmit_fields_never_collide() {
        for v in [0u64, 1, 2, 0xffff_ffff_ffff_ffff, 0x1234_5678_9abc_def0] {
            let t = NtpTimestamp(v);
            assert_ne!(receive_field(t), transmit_field(t));
            assert_ne!(receive_field(t).0, 0, "a saved receive stamp is never 0");
            // Off by at most one unit (0.23 ns).
            assert!(receive_field(t).0.abs_diff(v) <= 1 && transmit_field(t).0.abs_diff(v) <= 1);
        }
    }

    #[test]
    fn the_times_of_each_mode() {
        let req = request(0x10, 0x20, 0x30);
        let rx = UnixNanos(1_700_000_000_000_000_000);
        let b = times(&req, Mode::Basic, rx);
        assert_eq!(
            b.origin,
            NtpTimestamp(0x30),
            "basic: origin = request transmit"
        );
        assert_eq!(b.receive, receive_field(NtpTimestamp::from_unix(rx)));
        let i = times(
            &req,
            Mode::Interleaved {
                transmit: NtpTimestamp(0),
                quality: Kernel,
            },
            rx,
        );
        assert_eq!(
            i.origin,
            NtpTimestamp(0x20),
            "interleaved: origin = request receive"
        );
        assert_eq!(i.receive, b.receive);
    }

    #[test]
    fn a_stamp_for_an_older_reply_or_a_worse_one_is_refused() {
        let mut r = Record::default();
        let slot = Slot::from_index(3);
        let t1 = times(&request(0, 0, 5), Mode::Basic, UnixNanos(1_000));
        let tok1 = save(&mut r, slot, &t1, NtpTimestamp(0x100));
        assert_eq!((r.tx_sent, r.tx_quality), (0x100, User as u8));
        // A newer reply replaces the pair: the first reply's stamp no longer applies.
        let t2 = times(&request(0, 0, 6), Mode::Basic, UnixNanos(2_000_000));
        let tok2 = save(&mut r, slot, &t2, NtpTimestamp(0x201));
        assert_eq!(r.tx_sent, 0x200, "transmit fields have the low bit clear");
        assert!(!on_tx_stamp(&mut r, tok1, NtpTimestamp(0x111), Kernel));
        assert!(on_tx_stamp(&mut r, tok2, NtpTimestamp(0x223), Kernel));
        assert_eq!((r.tx_sent, r.tx_quality), (0x222, Kernel as u8));
        // A user-space stamp after a kernel one is worse: refused.
        assert!(!on_tx_stamp(&mut r, tok2, NtpTimestamp(0x300), User));
        assert_eq!(r.tx_sent, 0x222);
        // No pair: nothing to stamp.
        let mut empty = Record::default();
        assert!(!on_tx_stamp(&mut empty, tok2, NtpTimestamp(1), Kernel));
    }
}
