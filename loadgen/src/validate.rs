//! Matching replies to requests and judging them.
//!
//! Every request's transmit timestamp is unique: the current time with its low 24 fraction
//! bits (under 4 ms) replaced by the sending thread's index (4 bits) and a per-thread sequence
//! number (20 bits). A reply's origin timestamp then names the thread's table slot directly:
//! no hashing, and a reply can be classified as the answer, a duplicate, a late answer (after
//! the request was declared lost) or one that answers nothing we sent.
//!
//! The NTP checks themselves are `meridian::proto::client::check_reply`; on top of it a valid
//! reply's server times must lie within `[sent − max_offset, received + max_offset]`.

use meridian::proto::client::{check_reply, ReplyError};
use meridian::proto::{Exchange, Header, NtpTimestamp, PacketView, UnixNanos};

/// Bits of the sequence number in the transmit timestamp (the table size).
pub const SEQ_BITS: u32 = 20;
/// Bits of the thread index.
pub const THREAD_BITS: u32 = 4;
const LOW_BITS: u32 = SEQ_BITS + THREAD_BITS;
const LOW_MASK: u64 = (1 << LOW_BITS) - 1;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// Number of slots in a thread's table.
pub const TABLE_SIZE: usize = 1 << SEQ_BITS;

/// The transmit timestamp of request `seq` from thread `thread` sent at `now`.
pub fn transmit_ts(now: UnixNanos, thread: u32, seq: u64) -> NtpTimestamp {
    let t = NtpTimestamp::from_unix(now).0 & !LOW_MASK;
    let low = ((thread as u64) << SEQ_BITS) | (seq & SEQ_MASK);
    let mut ts = NtpTimestamp(t | low);
    if ts.is_zero() {
        // Never send the reserved zero value (possible only at the era start).
        ts = NtpTimestamp(1 << LOW_BITS | low);
    }
    ts
}

/// The thread index and table slot a transmit timestamp names.
pub fn decode(ts: NtpTimestamp) -> (u32, usize) {
    (
        ((ts.0 >> SEQ_BITS) & ((1 << THREAD_BITS) - 1)) as u32,
        (ts.0 & SEQ_MASK) as usize,
    )
}

/// Why a reply is not valid: the core's reasons plus ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// `check_reply` refused it.
    Reply(ReplyError),
    /// The server's times are not within `--max-offset` of ours.
    Offset,
}

impl Invalid {
    pub fn as_str(&self) -> &'static str {
        match self {
            Invalid::Reply(e) => e.as_str(),
            Invalid::Offset => "offset",
        }
    }

    /// The kiss code, for KoD replies.
    pub fn kiss_code(&self) -> Option<[u8; 4]> {
        match self {
            Invalid::Reply(ReplyError::Kiss(code)) => Some(*code),
            _ => None,
        }
    }
}

/// Judges a reply to the request sent at `sent` with transmit timestamp `sent_ts`, received at
/// `received`. Returns the header and the exchange (with our true send time as t1).
pub fn judge(
    reply: &[u8],
    version: u8,
    sent_ts: NtpTimestamp,
    sent: UnixNanos,
    received: UnixNanos,
    max_offset_ns: i64,
) -> Result<(Header, Exchange), Invalid> {
    let h = check_reply(reply, version, sent_ts).map_err(Invalid::Reply)?;
    let t1 = NtpTimestamp::from_unix(sent);
    let t4 = NtpTimestamp::from_unix(received);
    // The server received after we sent and transmitted before we received, give or take the
    // offset we accept between its clock and ours.
    if h.receive_ts.diff_nanos(t1) < -max_offset_ns || t4.diff_nanos(h.transmit_ts) < -max_offset_ns
    {
        return Err(Invalid::Offset);
    }
    let ex = Exchange {
        t1,
        t2: h.receive_ts,
        t3: h.transmit_ts,
        t4,
    };
    Ok((h, ex))
}

/// Why a reply that answers none of our outstanding requests is invalid: the reason
/// `check_reply` gives when checked against its own origin (malformed, wrong mode, ...), else
/// a wrong origin.
pub fn unmatched_reason(reply: &[u8], version: u8) -> Invalid {
    let origin = PacketView::new(reply)
        .map(|v| v.origin_ts())
        .unwrap_or(NtpTimestamp::ZERO);
    match check_reply(reply, version, origin) {
        Err(e) => Invalid::Reply(e),
        Ok(_) => Invalid::Reply(ReplyError::WrongOrigin),
    }
}

/// The origin timestamp of a reply, when it is long enough to have one.
pub fn origin_of(reply: &[u8]) -> Option<NtpTimestamp> {
    PacketView::new(reply).ok().map(|v| v.origin_ts())
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    #[default]
    Free,
    Outstanding,
    Answered,
    Expired,
}

/// One request in flight (or recently resolved).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub ts: NtpTimestamp,
    /// Our send time (realtime ns).
    pub sent_ns: i64,
    pub client: u32,
    pub state: SlotState,
    /// Sent after the warm-up (counted in the figures).
    pub measured: bool,
}

/// What a reply's origin timestamp is, relative to our table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// The answer to an outstanding request (the slot is now answered).
    Answer(Slot),
    /// Another reply to a request already answered.
    Duplicate(Slot),
    /// A reply after the request was declared lost.
    Late(Slot),
    /// Answers nothing we sent (or sent too long ago to remember).
    Unknown,
}

/// A thread's requests, indexed by sequence number (the low bits of their transmit
/// timestamps). Slots stay after their request resolves until the sequence wraps, so
/// duplicates and late replies are recognised.
pub struct Table {
    thread: u32,
    slots: Vec<Slot>,
    /// Sequence number of the next request.
    next_seq: u64,
    /// Oldest sequence number that may still be outstanding.
    expire_seq: u64,
    outstanding: u64,
}

impl Table {
    pub fn new(thread: u32) -> Table {
        Table::with_size(thread, TABLE_SIZE)
    }

    /// A smaller table (tests); `size` must be a power of two ≤ [`TABLE_SIZE`].
    pub fn with_size(thread: u32, size: usize) -> Table {
        assert!(size.is_power_of_two() && size <= TABLE_SIZE);
        Table {
            thread,
            slots: vec![Slot::default(); size],
            next_seq: 0,
            expire_seq: 0,
            outstanding: 0,
        }
    }

    pub fn outstanding(&self) -> u64 {
        self.outstanding
    }

    fn index(&self, seq: u64) -> usize {
        (seq as usize) & (self.slots.len() - 1)
    }

    /// Whether the next insert must first retire the oldest slot (table full of outstanding).
    pub fn full(&self) -> bool {
        self.next_seq - self.expire_seq >= self.slots.len() as u64
    }

    /// Records a request sent at `now` to `client` and returns its transmit timestamp. The
    /// caller must have made room ([`Table::full`] / [`Table::retire_oldest`]).
    pub fn insert(&mut self, now: UnixNanos, client: u32, measured: bool) -> NtpTimestamp {
        debug_assert!(!self.full());
        let seq = self.next_seq;
        self.next_seq += 1;
        let ts = transmit_ts(now, self.thread, seq);
        let i = self.index(seq);
        self.slots[i] = Slot {
            ts,
            sent_ns: now.0,
            client,
            state: SlotState::Outstanding,
            measured,
        };
        self.outstanding += 1;
        ts
    }

    /// Forgets the last insert (its send failed).
    pub fn unsend_last(&mut self) {
        self.next_seq -= 1;
        let i = self.index(self.next_seq);
        if self.slots[i].state == SlotState::Outstanding {
            self.outstanding -= 1;
        }
        self.slots[i].state = SlotState::Free;
        self.expire_seq = self.expire_seq.min(self.next_seq);
    }

    /// Looks a reply's origin up; an outstanding match becomes answered.
    pub fn lookup(&mut self, origin: NtpTimestamp) -> Match {
        let (thread, seq) = decode(origin);
        if thread != self.thread {
            return Match::Unknown;
        }
        let i = self.index(seq as u64);
        let slot = &mut self.slots[i];
        if slot.ts != origin {
            return Match::Unknown;
        }
        match slot.state {
            SlotState::Outstanding => {
                slot.state = SlotState::Answered;
                self.outstanding -= 1;
                Match::Answer(*slot)
            }
            SlotState::Answered => Match::Duplicate(*slot),
            SlotState::Expired => Match::Late(*slot),
            SlotState::Free => Match::Unknown,
        }
    }

    /// Declares lost every outstanding request sent before `deadline_ns` and calls `lost` for
    /// each. Returns how many.
    pub fn expire(&mut self, deadline_ns: i64, mut lost: impl FnMut(&Slot)) -> u64 {
        let mut n = 0;
        while self.expire_seq < self.next_seq {
            let i = self.index(self.expire_seq);
            let slot = &mut self.slots[i];
            if slot.state == SlotState::Outstanding {
                if slot.sent_ns >= deadline_ns {
                    break;
                }
                slot.state = SlotState::Expired;
                self.outstanding -= 1;
                n += 1;
                lost(slot);
            }
            self.expire_seq += 1;
        }
        n
    }

    /// Declares the oldest request lost if it is still outstanding (to make room).
    pub fn retire_oldest(&mut self, lost: impl FnMut(&Slot)) {
        let i = self.index(self.expire_seq);
        let deadline = self.slots[i].sent_ns.saturating_add(1);
        self.expire(deadline, lost);
        if self.full() {
            self.expire_seq += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian::clock::ClockSnapshot;
    use meridian::proto::server::client_request;
    use meridian::proto::Request;

    const NOW: UnixNanos = UnixNanos(1_700_000_000_123_456_789);

    fn reply_to(req: &[u8], rx: UnixNanos, tx: UnixNanos) -> Vec<u8> {
        let r = Request::parse(req).unwrap();
        let snap = ClockSnapshot::local(1, -20, rx);
        let mut out = [0u8; 64];
        let n = r.write_reply(&snap, rx, &mut out, || tx);
        out[..n].to_vec()
    }

    #[test]
    fn transmit_timestamps_are_unique_and_decodable() {
        let a = transmit_ts(NOW, 3, 7);
        let b = transmit_ts(NOW, 3, 8);
        let c = transmit_ts(NOW, 4, 7);
        assert!(a != b && a != c && b != c);
        assert_eq!(decode(a), (3, 7));
        assert_eq!(decode(c), (4, 7));
        // Within 4 ms of the real time.
        assert!(a.diff_nanos(NtpTimestamp::from_unix(NOW)).abs() < 4_000_000);
        assert_eq!(decode(transmit_ts(NOW, 15, (1 << SEQ_BITS) + 5)), (15, 5));
    }

    #[test]
    fn answers_duplicates_late_and_unknown() {
        let mut t = Table::with_size(2, 16);
        let a = t.insert(NOW, 0, true);
        let b = t.insert(NOW.add_nanos(10), 1, true);
        assert_eq!(t.outstanding(), 2);
        match t.lookup(a) {
            Match::Answer(s) => {
                assert_eq!(s.sent_ns, NOW.0);
                assert_eq!(s.client, 0);
            }
            m => panic!("{m:?}"),
        }
        assert!(matches!(t.lookup(a), Match::Duplicate(_)));
        // b times out, then its reply arrives.
        let mut lost = vec![];
        assert_eq!(t.expire(NOW.0 + 1_000, |s| lost.push(s.client)), 1);
        assert_eq!(lost, vec![1]);
        assert!(matches!(t.lookup(b), Match::Late(_)));
        assert_eq!(t.outstanding(), 0);
        // Another thread's timestamp, or one never sent.
        assert_eq!(t.lookup(transmit_ts(NOW, 3, 0)), Match::Unknown);
        assert_eq!(t.lookup(transmit_ts(NOW, 2, 9)), Match::Unknown);
        assert_eq!(t.lookup(NtpTimestamp(a.0 ^ (1 << 40))), Match::Unknown);
    }

    #[test]
    fn expiry_stops_at_the_first_young_request() {
        let mut t = Table::with_size(0, 16);
        t.insert(NOW, 0, true);
        let young = t.insert(NOW.add_nanos(5_000), 0, true);
        assert_eq!(t.expire(NOW.0 + 1_000, |_| {}), 1);
        assert!(matches!(t.lookup(young), Match::Answer(_)));
        assert_eq!(t.expire(NOW.0 + 1_000_000, |_| {}), 0);
    }

    #[test]
    fn a_full_table_retires_its_oldest() {
        let mut t = Table::with_size(0, 4);
        let first = t.insert(NOW, 0, true);
        for i in 1..4 {
            t.insert(NOW.add_nanos(i), 0, true);
        }
        assert!(t.full());
        let mut lost = 0;
        t.retire_oldest(|_| lost += 1);
        assert_eq!(lost, 1);
        assert!(!t.full());
        let fifth = t.insert(NOW.add_nanos(9), 0, true);
        assert_eq!(t.lookup(first), Match::Unknown);
        assert!(matches!(t.lookup(fifth), Match::Answer(_)));
    }

    #[test]
    fn unsend_forgets_the_request() {
        let mut t = Table::with_size(0, 8);
        let a = t.insert(NOW, 0, true);
        t.unsend_last();
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.lookup(a), Match::Unknown);
    }

    #[test]
    fn judges_good_and_bad_replies() {
        let sent_ts = transmit_ts(NOW, 0, 1);
        let req = client_request(4, 0, sent_ts);
        let rx = NOW.add_nanos(20_000);
        let tx = NOW.add_nanos(21_000);
        let back = NOW.add_nanos(40_000);
        let good = reply_to(&req, rx, tx);
        let (h, ex) = judge(&good, 4, sent_ts, NOW, back, 1_000_000_000).unwrap();
        assert_eq!(h.origin_ts, sent_ts);
        assert_eq!(ex.delay_nanos(), 39_000);
        assert_eq!(ex.t3.diff_nanos(ex.t2), 1_000);

        // Server 5 s ahead: refused with a 1 s bound, accepted with 10 s.
        let ahead = reply_to(
            &req,
            rx.add_nanos(5_000_000_000),
            tx.add_nanos(5_000_000_000),
        );
        assert_eq!(
            judge(&ahead, 4, sent_ts, NOW, back, 1_000_000_000).unwrap_err(),
            Invalid::Offset
        );
        assert!(judge(&ahead, 4, sent_ts, NOW, back, 10_000_000_000).is_ok());
        // 5 s behind.
        let behind = reply_to(
            &req,
            rx.add_nanos(-5_000_000_000),
            tx.add_nanos(-5_000_000_000),
        );
        assert_eq!(
            judge(&behind, 4, sent_ts, NOW, back, 1_000_000_000).unwrap_err(),
            Invalid::Offset
        );

        let mut wrong_mode = good.clone();
        wrong_mode[0] = (wrong_mode[0] & !7) | 5;
        let e = judge(&wrong_mode, 4, sent_ts, NOW, back, 1_000_000_000).unwrap_err();
        assert_eq!(e.as_str(), "wrong_mode");
        let e = judge(&good[..40], 4, sent_ts, NOW, back, 1_000_000_000).unwrap_err();
        assert_eq!(e.as_str(), "short");

        let r = Request::parse(&req).unwrap();
        let mut kod = [0u8; 48];
        r.write_kod(meridian::proto::KissCode::Rate, &mut kod);
        let e = judge(&kod, 4, sent_ts, NOW, back, 1_000_000_000).unwrap_err();
        assert_eq!(e.as_str(), "kod");
        assert_eq!(e.kiss_code(), Some(*b"RATE"));
    }

    #[test]
    fn unmatched_replies_get_the_core_reason() {
        let sent_ts = transmit_ts(NOW, 0, 1);
        let req = client_request(4, 0, sent_ts);
        let good = reply_to(&req, NOW, NOW);
        assert_eq!(unmatched_reason(&good, 4).as_str(), "wrong_origin");
        assert_eq!(unmatched_reason(&good[..40], 4).as_str(), "short");
        let mut unsync = good.clone();
        unsync[0] |= 0xc0;
        assert_eq!(unmatched_reason(&unsync, 4).as_str(), "unsynchronized");
        assert_eq!(origin_of(&good), Some(sent_ts));
        assert_eq!(origin_of(&good[..40]), None);
    }
}
