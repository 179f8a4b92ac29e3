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
//!
//! Interleaved mode (RFC 9769, `--interleaved`): a request refers to the last valid reply its
//! client got, origin = that reply's receive timestamp and receive field = our receive time of
//! it (as chronyd's client sends). A server that still has that reply's true transmit time
//! answers *interleaved*: origin = our receive field, receive = this request's receive time,
//! transmit = the earlier reply's true transmit time; otherwise it answers basic (origin = our
//! transmit). The receive field carries the same low 24 bits (thread, sequence) as the
//! transmit field, so either origin names the slot, and the slot tells which of the two it
//! echoes. The two fields of one request always differ (a server takes a request whose
//! receive field equals its transmit field for a basic one). Each reply is referred to by one
//! request only: a server answers one interleaved request per reply (chronyd forgets the
//! timestamps it used, meridian keeps only the pair of its latest reply to an address), and a
//! client whose reply is lost sends basic requests until it gets another.

use meridian::proto::client::{check_reply, ReplyError};
use meridian::proto::packet::field;
use meridian::proto::server::client_request;
use meridian::proto::{Exchange, Header, NtpTimestamp, PacketView, UnixNanos, HEADER_LEN};

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

/// The receive field of an interleaved request whose transmit field is `transmit`: our receive
/// time of the reply it refers to, its low 24 bits those of `transmit` (thread and sequence),
/// and one step (2⁻⁸ s) earlier when that would equal `transmit` (both in one 3.9 ms step).
pub fn receive_field(prev_rx: UnixNanos, transmit: NtpTimestamp) -> NtpTimestamp {
    let low = transmit.0 & LOW_MASK;
    let mut ts = NtpTimestamp((NtpTimestamp::from_unix(prev_rx).0 & !LOW_MASK) | low);
    while ts == transmit || ts.is_zero() {
        ts = NtpTimestamp(ts.0.wrapping_sub(1 << LOW_BITS));
    }
    ts
}

/// The thread index and table slot a transmit timestamp (or receive field) names.
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

/// The last valid reply a client got: what its next request refers to in interleaved mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prev {
    /// The reply's receive timestamp as it came (the server's t2): the request's origin.
    pub server_rx: NtpTimestamp,
    /// Our send time of the request it answered (realtime ns): t1 of the exchange an
    /// interleaved reply completes.
    pub sent_ns: i64,
    /// Our receive time of the reply (realtime ns): t4 of that exchange.
    pub rx_ns: i64,
}

/// What an interleaved request carries besides its transmit timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interleaved {
    /// The reply it refers to; its receive timestamp is the request's origin.
    pub prev: Prev,
    /// The request's receive field ([`receive_field`]): an interleaved reply's origin.
    pub receive: NtpTimestamp,
}

/// A request as its slot records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub slot: Slot,
    /// `Some` for an interleaved request.
    pub interleaved: Option<Interleaved>,
}

impl Sent {
    /// The request on the wire (mode 3): basic with origin and receive zero; interleaved with
    /// origin = the previous reply's receive timestamp and the receive field.
    pub fn payload(&self, version: u8, poll: i8) -> [u8; HEADER_LEN] {
        let mut p = client_request(version, poll, self.slot.ts);
        if let Some(x) = &self.interleaved {
            p[field::ORIGIN_TS].copy_from_slice(&x.prev.server_rx.to_be_bytes());
            p[field::RECEIVE_TS].copy_from_slice(&x.receive.to_be_bytes());
        }
        p
    }
}

/// Which of its request's fields a reply's origin echoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMode {
    /// The transmit timestamp: a basic reply.
    Basic,
    /// The receive field of an interleaved request: an interleaved reply, whose transmit
    /// timestamp is the true transmit time of the reply the request referred to.
    Interleaved,
}

/// Judges a reply (in `mode`, as [`Table::lookup`] found it) to the request `sent`, received at
/// `received`. Returns the header and the exchange it completes, with our true send and
/// receive times as t1 and t4: this one for a basic reply; for an interleaved reply the
/// earlier one, whose transmit time it carries (t2 = our origin, t3 = its transmit).
pub fn judge(
    reply: &[u8],
    version: u8,
    sent: &Sent,
    mode: ReplyMode,
    received: UnixNanos,
    max_offset_ns: i64,
) -> Result<(Header, Exchange), Invalid> {
    let t1 = NtpTimestamp::from_unix(UnixNanos(sent.slot.sent_ns));
    let t4 = NtpTimestamp::from_unix(received);
    // `a` no later than `b`, give or take the offset we accept between the server's clock and
    // ours.
    let in_order = |a: NtpTimestamp, b: NtpTimestamp| b.diff_nanos(a) >= -max_offset_ns;
    match mode {
        ReplyMode::Basic => {
            let h = check_reply(reply, version, sent.slot.ts).map_err(Invalid::Reply)?;
            // The server received after we sent and transmitted before we received.
            if !in_order(t1, h.receive_ts) || !in_order(h.transmit_ts, t4) {
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
        ReplyMode::Interleaved => {
            let Some(x) = sent.interleaved else {
                return Err(Invalid::Reply(ReplyError::WrongOrigin));
            };
            // Its transmit time is the earlier reply's, before this receive time: check_reply's
            // last check (transmit after receive, once every other check passed) does not
            // apply; the order that does is checked below, on the earlier exchange.
            let h = match check_reply(reply, version, x.receive) {
                Ok(h) => h,
                Err(ReplyError::Reversed) => PacketView::new(reply)
                    .map_err(|e| Invalid::Reply(ReplyError::Malformed(e)))?
                    .header(),
                Err(e) => return Err(Invalid::Reply(e)),
            };
            let ex = Exchange {
                t1: NtpTimestamp::from_unix(UnixNanos(x.prev.sent_ns)),
                t2: x.prev.server_rx,
                t3: h.transmit_ts,
                t4: NtpTimestamp::from_unix(UnixNanos(x.prev.rx_ns)),
            };
            if ex.t3.diff_fixed(ex.t2) < 0 {
                return Err(Invalid::Reply(ReplyError::Reversed));
            }
            // This request was received between our send and receive, the earlier reply
            // transmitted before we received it.
            if !in_order(t1, h.receive_ts) || !in_order(h.receive_ts, t4) || !in_order(ex.t3, ex.t4)
            {
                return Err(Invalid::Offset);
            }
            Ok((h, ex))
        }
    }
}

/// The last valid reply of each client of a thread, for its next interleaved request. The
/// request takes it ([`LastReplies::take`]), so each reply is referred to once and a client
/// whose reply is lost sends basic until another reply comes. Empty (every request basic)
/// unless interleaved mode is on.
pub struct LastReplies(Vec<Option<Prev>>);

impl LastReplies {
    pub fn new(clients: usize, interleaved: bool) -> LastReplies {
        LastReplies(if interleaved {
            vec![None; clients]
        } else {
            Vec::new()
        })
    }

    /// The reply `client`'s next request refers to, if there is one (and forgets it).
    pub fn take(&mut self, client: u32) -> Option<Prev> {
        self.0.get_mut(client as usize).and_then(Option::take)
    }

    /// Keeps `prev` for `client` unless it already has a reply to a later request: a valid
    /// reply, or one given back by a request that could not be sent.
    pub fn offer(&mut self, client: u32, prev: Prev) {
        if let Some(cell) = self.0.get_mut(client as usize) {
            if cell.is_none_or(|p| p.sent_ns <= prev.sent_ns) {
                *cell = Some(prev);
            }
        }
    }
}

/// Why a reply that answers none of our outstanding requests is invalid: the reason
/// `check_reply` gives when checked against its own origin (malformed, wrong mode, ...), else
/// a wrong origin (also for reversed timestamps, which an interleaved reply has).
pub fn unmatched_reason(reply: &[u8], version: u8) -> Invalid {
    let origin = PacketView::new(reply)
        .map(|v| v.origin_ts())
        .unwrap_or(NtpTimestamp::ZERO);
    match check_reply(reply, version, origin) {
        Err(ReplyError::Reversed) | Ok(_) => Invalid::Reply(ReplyError::WrongOrigin),
        Err(e) => Invalid::Reply(e),
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
    /// The answer to an outstanding request (the slot is now answered), in the mode its origin
    /// says.
    Answer(Sent, ReplyMode),
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
    /// Beside each slot, what its interleaved request carried (receive field zero: a basic
    /// one). Empty unless [`Table::interleaved`].
    interleaved: Vec<Interleaved>,
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
            interleaved: Vec::new(),
            next_seq: 0,
            expire_seq: 0,
            outstanding: 0,
        }
    }

    /// Makes room for interleaved requests (32 bytes a slot).
    pub fn interleaved(mut self) -> Table {
        self.interleaved = vec![Interleaved::default(); self.slots.len()];
        self
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

    /// Records a request sent at `now` to `client` and returns it: interleaved when `prev`
    /// (the client's last reply) is given and the table has room for interleaved requests,
    /// else basic. The caller must have made room ([`Table::full`] / [`Table::retire_oldest`]).
    pub fn insert(
        &mut self,
        now: UnixNanos,
        client: u32,
        measured: bool,
        prev: Option<Prev>,
    ) -> Sent {
        debug_assert!(!self.full());
        let seq = self.next_seq;
        self.next_seq += 1;
        let ts = transmit_ts(now, self.thread, seq);
        let i = self.index(seq);
        let slot = Slot {
            ts,
            sent_ns: now.0,
            client,
            state: SlotState::Outstanding,
            measured,
        };
        self.slots[i] = slot;
        self.outstanding += 1;
        let interleaved = match (self.interleaved.get_mut(i), prev) {
            (Some(cell), Some(prev)) => {
                *cell = Interleaved {
                    prev,
                    receive: receive_field(UnixNanos(prev.rx_ns), ts),
                };
                Some(*cell)
            }
            (Some(cell), None) => {
                *cell = Interleaved::default();
                None
            }
            (None, _) => None,
        };
        Sent { slot, interleaved }
    }

    /// Forgets the last insert (its send failed); returns the reply it referred to, for the
    /// client's next request.
    pub fn unsend_last(&mut self) -> Option<Prev> {
        self.next_seq -= 1;
        let i = self.index(self.next_seq);
        if self.slots[i].state == SlotState::Outstanding {
            self.outstanding -= 1;
        }
        self.slots[i].state = SlotState::Free;
        self.expire_seq = self.expire_seq.min(self.next_seq);
        let x = self.interleaved.get_mut(i).map(std::mem::take)?;
        (!x.receive.is_zero()).then_some(x.prev)
    }

    /// Looks a reply's origin up: our transmit timestamp (a basic reply) or the receive field of
    /// an interleaved request (an interleaved reply). An outstanding match becomes answered.
    pub fn lookup(&mut self, origin: NtpTimestamp) -> Match {
        let (thread, seq) = decode(origin);
        if thread != self.thread || origin.is_zero() {
            return Match::Unknown;
        }
        let i = self.index(seq as u64);
        let interleaved = self
            .interleaved
            .get(i)
            .copied()
            .filter(|x| !x.receive.is_zero());
        let slot = &mut self.slots[i];
        let mode = if slot.ts == origin {
            ReplyMode::Basic
        } else if interleaved.is_some_and(|x| x.receive == origin) {
            ReplyMode::Interleaved
        } else {
            return Match::Unknown;
        };
        match slot.state {
            SlotState::Outstanding => {
                slot.state = SlotState::Answered;
                self.outstanding -= 1;
                Match::Answer(
                    Sent {
                        slot: *slot,
                        interleaved,
                    },
                    mode,
                )
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
    use meridian::proto::{ReplyTimes, Request};

    const NOW: UnixNanos = UnixNanos(1_700_000_000_123_456_789);
    const SECOND: i64 = 1_000_000_000;

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
        let a = t.insert(NOW, 0, true, None).slot.ts;
        let b = t.insert(NOW.add_nanos(10), 1, true, None).slot.ts;
        assert_eq!(t.outstanding(), 2);
        match t.lookup(a) {
            Match::Answer(s, ReplyMode::Basic) => {
                assert_eq!(s.slot.sent_ns, NOW.0);
                assert_eq!(s.slot.client, 0);
                assert_eq!(s.interleaved, None);
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
        t.insert(NOW, 0, true, None);
        let young = t.insert(NOW.add_nanos(5_000), 0, true, None).slot.ts;
        assert_eq!(t.expire(NOW.0 + 1_000, |_| {}), 1);
        assert!(matches!(t.lookup(young), Match::Answer(..)));
        assert_eq!(t.expire(NOW.0 + 1_000_000, |_| {}), 0);
    }

    #[test]
    fn a_full_table_retires_its_oldest() {
        let mut t = Table::with_size(0, 4);
        let first = t.insert(NOW, 0, true, None).slot.ts;
        for i in 1..4 {
            t.insert(NOW.add_nanos(i), 0, true, None);
        }
        assert!(t.full());
        let mut lost = 0;
        t.retire_oldest(|_| lost += 1);
        assert_eq!(lost, 1);
        assert!(!t.full());
        let fifth = t.insert(NOW.add_nanos(9), 0, true, None).slot.ts;
        assert_eq!(t.lookup(first), Match::Unknown);
        assert!(matches!(t.lookup(fifth), Match::Answer(..)));
    }

    #[test]
    fn unsend_forgets_the_request() {
        let mut t = Table::with_size(0, 8);
        let a = t.insert(NOW, 0, true, None).slot.ts;
        t.unsend_last();
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.lookup(a), Match::Unknown);
    }

    /// A basic request with transmit timestamp `ts`, sent at `at`.
    fn basic(ts: NtpTimestamp, at: UnixNanos) -> Sent {
        Sent {
            slot: Slot {
                ts,
                sent_ns: at.0,
                ..Slot::default()
            },
            interleaved: None,
        }
    }

    #[test]
    fn judges_good_and_bad_replies() {
        let sent_ts = transmit_ts(NOW, 0, 1);
        let sent = basic(sent_ts, NOW);
        let req = sent.payload(4, 0);
        assert_eq!(req, client_request(4, 0, sent_ts));
        let rx = NOW.add_nanos(20_000);
        let tx = NOW.add_nanos(21_000);
        let back = NOW.add_nanos(40_000);
        let good = reply_to(&req, rx, tx);
        let (h, ex) = judge(&good, 4, &sent, ReplyMode::Basic, back, 1_000_000_000).unwrap();
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
            judge(&ahead, 4, &sent, ReplyMode::Basic, back, 1_000_000_000).unwrap_err(),
            Invalid::Offset
        );
        assert!(judge(&ahead, 4, &sent, ReplyMode::Basic, back, 10_000_000_000).is_ok());
        // 5 s behind.
        let behind = reply_to(
            &req,
            rx.add_nanos(-5_000_000_000),
            tx.add_nanos(-5_000_000_000),
        );
        assert_eq!(
            judge(&behind, 4, &sent, ReplyMode::Basic, back, 1_000_000_000).unwrap_err(),
            Invalid::Offset
        );

        let mut wrong_mode = good.clone();
        wrong_mode[0] = (wrong_mode[0] & !7) | 5;
        let e = judge(&wrong_mode, 4, &sent, ReplyMode::Basic, back, 1_000_000_000).unwrap_err();
        assert_eq!(e.as_str(), "wrong_mode");
        let e = judge(&good[..40], 4, &sent, ReplyMode::Basic, back, 1_000_000_000).unwrap_err();
        assert_eq!(e.as_str(), "short");

        let r = Request::parse(&req).unwrap();
        let mut kod = [0u8; 48];
        r.write_kod(meridian::proto::KissCode::Rate, &mut kod);
        let e = judge(&kod, 4, &sent, ReplyMode::Basic, back, 1_000_000_000).unwrap_err();
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

    /// The server's answer in interleaved mode: origin = the request's receive field, receive
    /// = `rx`, transmit = `earlier_tx` (the true transmit time of its earlier reply).
    fn interleaved_reply_to(req: &[u8], rx: UnixNanos, earlier_tx: UnixNanos) -> Vec<u8> {
        let r = Request::parse(req).unwrap();
        let snap = ClockSnapshot::local(1, -20, rx);
        let times = ReplyTimes {
            rx,
            receive: NtpTimestamp::from_unix(rx),
            origin: r.receive_ts,
        };
        let mut out = [0u8; 64];
        let n = r.write_reply_with(&snap, times, &mut out, || {
            NtpTimestamp::from_unix(earlier_tx)
        });
        out[..n].to_vec()
    }

    /// The last reply of a client: sent at NOW, received by the server 20 µs later (a receive
    /// timestamp with its lowest bit set, as servers mark it), back at +40 µs.
    fn earlier() -> Prev {
        Prev {
            server_rx: NtpTimestamp(NtpTimestamp::from_unix(NOW.add_nanos(20_000)).0 | 1),
            sent_ns: NOW.0,
            rx_ns: NOW.add_nanos(40_000).0,
        }
    }

    fn field_of(p: &[u8], f: std::ops::Range<usize>) -> NtpTimestamp {
        NtpTimestamp::from_be_bytes(p[f].try_into().unwrap())
    }

    #[test]
    fn interleaved_requests_carry_the_last_reply() {
        let mut t = Table::with_size(1, 16).interleaved();
        let now = NOW.add_nanos(SECOND);
        let sent = t.insert(now, 3, true, Some(earlier()));
        let x = sent.interleaved.expect("interleaved");
        assert_eq!(x.prev, earlier());
        let p = sent.payload(4, 6);
        assert_eq!(p[0], 0x23, "LI 0, version 4, mode 3");
        assert_eq!(p[2], 6);
        assert_eq!(field_of(&p, field::ORIGIN_TS), earlier().server_rx);
        assert_eq!(field_of(&p, field::RECEIVE_TS), x.receive);
        assert_eq!(field_of(&p, field::TRANSMIT_TS), sent.slot.ts);
        assert_ne!(x.receive, sent.slot.ts);
        // The receive field is our receive time of the earlier reply (to 4 ms) and names the
        // same slot as the transmit timestamp.
        let back = NtpTimestamp::from_unix(UnixNanos(earlier().rx_ns));
        assert!(x.receive.diff_nanos(back).abs() < 4_000_000);
        assert_eq!(decode(x.receive), decode(sent.slot.ts));
        // Without a reply to refer to: basic, origin and receive zero.
        let basic = t.insert(now, 3, true, None);
        assert_eq!(basic.interleaved, None);
        assert_eq!(basic.payload(4, 6), client_request(4, 6, basic.slot.ts));
        // A table without room for interleaved requests sends basic ones.
        let mut plain = Table::with_size(1, 16);
        assert_eq!(
            plain.insert(now, 3, true, Some(earlier())).interleaved,
            None
        );
    }

    #[test]
    fn the_receive_field_never_equals_the_transmit_field() {
        // The earlier reply came back within the same 3.9 ms step as this request leaves.
        for (thread, seq, gap) in [(0, 0, 0), (2, 7, 1_000), (15, (1 << 20) - 1, 3_000_000)] {
            let ts = transmit_ts(NOW, thread, seq);
            let r = receive_field(NOW.add_nanos(-gap), ts);
            assert_ne!(r, ts);
            assert_eq!(decode(r), decode(ts));
            assert!(ts.diff_nanos(r) > 0 && ts.diff_nanos(r) < 8_000_000);
        }
        // A second earlier: just the low bits replaced.
        let ts = transmit_ts(NOW, 1, 9);
        let r = receive_field(NOW.add_nanos(-SECOND), ts);
        assert!((ts.diff_nanos(r) - SECOND).abs() < 4_000_000);
    }

    #[test]
    fn interleaved_reply_is_recognised_and_completes_the_earlier_exchange() {
        let mut t = Table::with_size(0, 16).interleaved();
        let now = NOW.add_nanos(SECOND);
        let sent = t.insert(now, 0, true, Some(earlier()));
        let req = sent.payload(4, 6);
        // The server received this request 20 µs after we sent it; the earlier reply really
        // left 5 µs after the server received the earlier request.
        let true_tx = UnixNanos(NOW.add_nanos(25_000).0);
        let reply = interleaved_reply_to(&req, now.add_nanos(20_000), true_tx);
        let origin = origin_of(&reply).unwrap();
        assert_eq!(origin, sent.interleaved.unwrap().receive);
        let Match::Answer(got, ReplyMode::Interleaved) = t.lookup(origin) else {
            panic!("not an interleaved answer");
        };
        assert_eq!(got.slot.state, SlotState::Answered);
        assert_eq!(got.interleaved, sent.interleaved);
        let back = now.add_nanos(40_000);
        let (h, ex) = judge(&reply, 4, &got, ReplyMode::Interleaved, back, SECOND).unwrap();
        assert_eq!(h.receive_ts, NtpTimestamp::from_unix(now.add_nanos(20_000)));
        // The earlier exchange, with the true transmit time: 5 µs in the server, 40 µs in all.
        assert_eq!(ex.t1, NtpTimestamp::from_unix(NOW));
        assert_eq!(ex.t2, earlier().server_rx);
        assert_eq!(ex.t3, NtpTimestamp::from_unix(true_tx));
        assert_eq!(ex.t4, NtpTimestamp::from_unix(NOW.add_nanos(40_000)));
        assert!((ex.t3.diff_nanos(ex.t2) - 5_000).abs() <= 1);
        assert!((ex.delay_nanos() - 35_000).abs() <= 1);
        // A second copy is a duplicate.
        assert!(matches!(t.lookup(origin), Match::Duplicate(_)));
    }

    #[test]
    fn basic_reply_to_an_interleaved_request_is_basic() {
        let mut t = Table::with_size(0, 16).interleaved();
        let now = NOW.add_nanos(SECOND);
        let sent = t.insert(now, 0, true, Some(earlier()));
        let req = sent.payload(4, 6);
        let reply = reply_to(&req, now.add_nanos(20_000), now.add_nanos(21_000));
        let origin = origin_of(&reply).unwrap();
        assert_eq!(origin, sent.slot.ts);
        let Match::Answer(got, ReplyMode::Basic) = t.lookup(origin) else {
            panic!("not a basic answer");
        };
        assert!(got.interleaved.is_some(), "the request was interleaved");
        let back = now.add_nanos(40_000);
        let (_, ex) = judge(&reply, 4, &got, ReplyMode::Basic, back, SECOND).unwrap();
        assert_eq!(ex.t1, NtpTimestamp::from_unix(now));
        assert_eq!(ex.t3.diff_nanos(ex.t2), 1_000);
    }

    #[test]
    fn interleaved_replies_with_a_wrong_origin_or_times_are_invalid() {
        let mut t = Table::with_size(0, 16).interleaved();
        let now = NOW.add_nanos(SECOND);
        let sent = t.insert(now, 0, true, Some(earlier()));
        let req = sent.payload(4, 6);
        let good = interleaved_reply_to(&req, now.add_nanos(20_000), NOW.add_nanos(25_000));
        // Origin = our origin (the server's own receive timestamp echoed back), or a receive
        // field one bit off: answers nothing we sent.
        for origin in [
            earlier().server_rx,
            NtpTimestamp(sent.interleaved.unwrap().receive.0 ^ (1 << 30)),
        ] {
            let mut bad = good.clone();
            bad[field::ORIGIN_TS].copy_from_slice(&origin.to_be_bytes());
            assert_eq!(t.lookup(origin), Match::Unknown);
            assert_eq!(unmatched_reason(&bad, 4).as_str(), "wrong_origin");
        }
        let back = now.add_nanos(40_000);
        // An interleaved reply to a basic request has no receive field to echo.
        let plain = basic(sent.slot.ts, now);
        let e = judge(&good, 4, &plain, ReplyMode::Interleaved, back, SECOND).unwrap_err();
        assert_eq!(e.as_str(), "wrong_origin");
        // The earlier reply "left" before the server received its request.
        let early = interleaved_reply_to(&req, now.add_nanos(20_000), NOW.add_nanos(10_000));
        let e = judge(&early, 4, &sent, ReplyMode::Interleaved, back, SECOND).unwrap_err();
        assert_eq!(e.as_str(), "reversed_timestamps");
        // ... or 5 s after we received it.
        let late = interleaved_reply_to(&req, now.add_nanos(20_000), NOW.add_nanos(5 * SECOND));
        let e = judge(&late, 4, &sent, ReplyMode::Interleaved, back, SECOND).unwrap_err();
        assert_eq!(e, Invalid::Offset);
        // The usual checks still apply.
        let mut wrong_mode = good.clone();
        wrong_mode[0] = (wrong_mode[0] & !7) | 5;
        let e = judge(&wrong_mode, 4, &sent, ReplyMode::Interleaved, back, SECOND).unwrap_err();
        assert_eq!(e.as_str(), "wrong_mode");
        assert!(judge(&good, 4, &sent, ReplyMode::Interleaved, back, SECOND).is_ok());
    }

    #[test]
    fn each_reply_is_referred_to_once() {
        let mut last = LastReplies::new(2, true);
        assert_eq!(last.take(0), None);
        last.offer(0, earlier());
        // A reply to an older request does not replace it; one to a newer request does.
        let older = Prev {
            sent_ns: NOW.0 - 1,
            ..earlier()
        };
        last.offer(0, older);
        assert_eq!(last.take(0), Some(earlier()));
        assert_eq!(last.take(0), None, "taken by the request that used it");
        assert_eq!(last.take(1), None);
        // A request that could not be sent gives it back.
        let mut t = Table::with_size(0, 8).interleaved();
        t.insert(NOW, 1, true, Some(earlier()));
        assert_eq!(t.unsend_last(), Some(earlier()));
        t.insert(NOW, 1, true, None);
        assert_eq!(t.unsend_last(), None);
        // Basic mode keeps nothing.
        let mut off = LastReplies::new(2, false);
        off.offer(0, earlier());
        assert_eq!(off.take(0), None);
    }
}
