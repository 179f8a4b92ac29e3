//! The per-datagram seam: one [`Worker`] per worker thread, created on that (pinned) thread
//! and owned by it, which every backend hands each datagram to. It counts the datagram,
//! validates it, remembers the client, and writes the answer from the clock snapshot; the
//! backend only moves bytes. Sans IO: the transmit time is read through a closure the backend
//! passes in, last, after everything else of the reply is written.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::access::AccessRules;
use super::auth::{self, Outcome, Refusal};
use super::clients::{ClientTable, Record, Seen, Slot, FLAG_INTERLEAVES};
use super::counters::{Counter, Tally};
use super::interleaved::{self, TxToken};
use super::mailbox::Mailbox;
use super::policy::Policy;
use super::ratelimit::{Decision, RateLimit};
use crate::auth::ServerAuth;
use crate::clock::{ClockSnapshot, RawStamp, TimestampQuality};
use crate::proto::{DropReason, KissCode, NtpTimestamp, Request, UnixNanos};

/// The arrival of one datagram: who sent it, to where, on which interface, when. Built the same
/// way by every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The client's address and port.
    pub src: SocketAddr,
    /// The address the datagram was sent to, when the backend knows it (wildcard sockets,
    /// xdp).
    pub dst: Option<IpAddr>,
    /// The interface it arrived on (0: unknown).
    pub ifindex: u32,
    /// When it arrived, and how well that is known.
    pub rx: RawStamp,
}

impl Arrival {
    /// The receive stamp of a datagram: the stamp taken closer to the wire (`early`: the NIC,
    /// the XDP program or the kernel) when the backend has one, else the batch's user-space
    /// reading `user`. The one place every backend chooses it.
    #[inline]
    pub fn stamp(early: Option<(UnixNanos, TimestampQuality)>, user: RawStamp) -> RawStamp {
        match early {
            Some((raw, quality)) => RawStamp { raw, quality },
            None => user,
        }
    }
}

/// What became of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A reply of `len` bytes is in the output buffer: send it to the source. With a `tx`
    /// token, the worker wants the reply's transmit timestamp when the backend has one
    /// ([`Worker::on_tx_stamp`]): the client's next, interleaved reply carries it. A stamp
    /// that costs something to get (the socket backends' error-queue stamps) is worth asking
    /// for only with `kernel_stamp`: the client interleaves. Stamps that come anyway (AF_XDP
    /// completions) are worth handing over for every token.
    Reply {
        len: usize,
        tx: Option<TxToken>,
        kernel_stamp: bool,
    },
    /// A kiss-o'-death of `len` bytes is in the output buffer: send it to the source.
    Kod { len: usize, code: KissCode },
    /// Nothing is sent; counted under `reason`.
    Drop(DropReason),
}

impl Verdict {
    /// What the backend sends: the length of the datagram in the output buffer and the
    /// token its transmit timestamp is wanted under; `None`: nothing.
    #[inline]
    pub fn send(self) -> Option<(usize, Option<TxToken>)> {
        match self {
            Verdict::Reply { len, tx, .. } => Some((len, tx)),
            Verdict::Kod { len, .. } => Some((len, None)),
            Verdict::Drop(_) => None,
        }
    }

    /// [`Verdict::send`] for a backend whose transmit stamps cost a request each (udp and
    /// io-uring: an error-queue message per stamped reply): the token only when the stamp is
    /// worth asking for.
    #[inline]
    pub fn send_asking_stamps(self) -> Option<(usize, Option<TxToken>)> {
        match self {
            Verdict::Reply {
                len,
                tx,
                kernel_stamp,
            } => Some((len, tx.filter(|_| kernel_stamp))),
            other => other.send(),
        }
    }
}

/// Sizes a worker's state.
#[derive(Clone, Copy, Debug)]
pub struct WorkerConfig {
    /// Client records this worker keeps (0: no client table).
    pub clients: usize,
    /// Seed of the client table's hash (random per process).
    pub seed: u64,
    /// Answer interleaved requests in interleaved mode (RFC 9769; needs the client table).
    pub interleaved: bool,
}

/// One worker's state: its counters for the current batch, its client table and the policy
/// it applies.
pub struct Worker {
    tally: Tally,
    clients: Option<ClientTable>,
    interleaved: bool,
    /// From the [`Policy`]: answer at all.
    serving: bool,
    /// The access rules, when there are any.
    access: Option<Arc<AccessRules>>,
    deny_kod: bool,
    /// The rate limit, when on (and there is a client table).
    rate_limit: Option<RateLimit>,
    /// Limited requests seen (picks the leaked ones).
    limited_seq: u64,
    /// The keys and `[auth] require`, when either is set: this worker's own copy, so a MAC
    /// works on the key's state in place (no copy per packet).
    auth: Option<ServerAuth>,
}

impl Worker {
    /// Allocates (and touches) the whole client table: call it on the worker's own pinned
    /// thread, so the memory is local to its core.
    pub fn new(cfg: WorkerConfig) -> Worker {
        let mut w = Worker {
            tally: Tally::default(),
            clients: (cfg.clients > 0).then(|| ClientTable::new(cfg.clients, cfg.seed)),
            interleaved: cfg.interleaved && cfg.clients > 0,
            serving: true,
            access: None,
            deny_kod: true,
            rate_limit: None,
            limited_seq: 0,
            auth: None,
        };
        w.set_policy(&Policy::default());
        w
    }

    /// Applies `policy` from the next datagram on. Rate limiting needs the client table and
    /// is off without one.
    pub fn set_policy(&mut self, policy: &Policy) {
        self.serving = policy.serving;
        self.access = (!policy.access.is_empty()).then(|| policy.access.clone());
        self.deny_kod = policy.deny_kod;
        self.rate_limit = policy.rate_limit.filter(|_| self.clients.is_some());
        self.auth = (!policy.auth.is_off()).then(|| (*policy.auth).clone());
    }

    /// The end of a batch: flushes this batch's counts into `counters` and takes up what the
    /// `mailbox` holds (a new policy, a read of the client table). Every backend calls it
    /// after each batch and on each idle wake-up.
    #[inline]
    pub fn end_batch(&mut self, counters: &super::counters::WorkerCounters, mailbox: &Mailbox) {
        counters.flush(&mut self.tally);
        let clients = &self.clients;
        let policy = mailbox.service(|chunk| match clients {
            Some(t) => t.copy_chunk(chunk),
            None => chunk.next = None,
        });
        if let Some(p) = policy {
            self.set_policy(&p);
        }
    }

    /// Answers the request in `request` into `out` (at least
    /// [`crate::proto::MAX_REPLY_LEN`] bytes, or the request's length).
    #[inline]
    pub fn on_datagram(
        &mut self,
        meta: &Arrival,
        request: &[u8],
        out: &mut [u8],
        snap: &ClockSnapshot,
        transmit: impl FnOnce() -> UnixNanos,
    ) -> Verdict {
        self.arrived(meta.rx);
        match Request::parse(request) {
            Ok(req) => {
                if let Some(refused) = self.gate(meta, &req, out) {
                    return refused;
                }
                let outcome = auth::check(self.auth.as_mut(), &req, request, &mut self.tally);
                self.answer(meta, &req, outcome, out, snap, transmit)
            }
            Err(reason) => self.dropped(meta, reason),
        }
    }

    /// Answers the request in `buf[..len]` in the same buffer (the xdp backend's frame): the
    /// reply is never longer than the request.
    #[inline]
    pub fn on_datagram_in_place(
        &mut self,
        meta: &Arrival,
        buf: &mut [u8],
        len: usize,
        snap: &ClockSnapshot,
        transmit: impl FnOnce() -> UnixNanos,
    ) -> Verdict {
        self.arrived(meta.rx);
        let Some(request) = buf.get(..len) else {
            return self.dropped(meta, DropReason::TooLong);
        };
        match Request::parse(request) {
            // `req` holds every field of the request the reply needs, and its MAC is checked
            // before the reply overwrites it (a refusal by the gate writes a KoD over it, and
            // needs the MAC no more).
            Ok(req) => {
                if let Some(refused) = self.gate(meta, &req, buf) {
                    return refused;
                }
                let request = &buf[..len];
                let outcome = auth::check(self.auth.as_mut(), &req, request, &mut self.tally);
                self.answer(meta, &req, outcome, buf, snap, transmit)
            }
            Err(reason) => self.dropped(meta, reason),
        }
    }

    /// A datagram the backend drops before it is a request (the kernel cut it short, its frame
    /// is malformed or not for us, no send slot is free): counted as received, with its stamp
    /// quality, and dropped for `reason`.
    #[inline]
    pub fn on_refused(&mut self, rx: RawStamp, reason: DropReason) {
        self.arrived(rx);
        self.tally.drop(reason);
    }

    /// Starts fetching the client table's memory for a datagram from `src`: call it for the
    /// whole batch before answering any of it (a hint; answers are the same without it).
    #[inline]
    pub fn prefetch(&self, src: IpAddr) {
        if let Some(t) = &self.clients {
            t.prefetch(src);
        }
    }

    /// The second pass of [`Worker::prefetch`] over the batch: starts fetching the records
    /// themselves, now that their tags are on the way.
    #[inline]
    pub fn prefetch_record(&self, src: IpAddr) {
        if let Some(t) = &self.clients {
            t.prefetch_record(src);
        }
    }

    /// The transmit timestamp of the reply `token` was handed out with (the error queue's
    /// stamp, the AF_XDP completion's), read from the raw clock: the client's record keeps it
    /// for its next, interleaved reply, cooked with the current snapshot.
    #[inline]
    pub fn on_tx_stamp(&mut self, token: TxToken, stamp: RawStamp, snap: &ClockSnapshot) {
        let tx = NtpTimestamp::from_unix(snap.cook(stamp.raw));
        let taken = self
            .clients
            .as_mut()
            .and_then(|t| t.slot_mut(token.slot()))
            .is_some_and(|r| interleaved::on_tx_stamp(r, token, tx, stamp.quality));
        self.tally.count(if taken {
            Counter::TxStamped
        } else {
            Counter::TxStampsUnused
        });
    }

    /// The transmit timestamp of a reply handed out with a token will never come (its send
    /// failed, or the backend stopped waiting for it): counted, the estimate stays.
    #[inline]
    pub fn on_tx_stamp_lost(&mut self) {
        self.tally.count(Counter::TxStampsLost);
    }

    /// A reply the kernel would not take (buffer full, no route): never waited on.
    #[inline]
    pub fn on_send_failed(&mut self) {
        self.tally.send_failed();
    }

    /// The backend's receive buffers ran dry (and were re-armed).
    #[inline]
    pub fn on_rx_buffers_exhausted(&mut self) {
        self.tally.count(Counter::RxBuffersExhausted);
    }

    /// This batch's counts, for the backend to flush into the shared counters.
    #[inline]
    pub fn tally(&mut self) -> &mut Tally {
        &mut self.tally
    }

    /// The client table (`None` when configured off).
    pub fn clients(&self) -> Option<&ClientTable> {
        self.clients.as_ref()
    }

    #[inline]
    fn arrived(&mut self, rx: RawStamp) {
        self.tally.count(Counter::Received);
        self.tally.stamp(rx.quality);
    }

    #[inline]
    fn dropped(&mut self, meta: &Arrival, reason: DropReason) -> Verdict {
        self.tally.drop(reason);
        // Only known clients are charged a drop: junk from nowhere gets no record (and so
        // cannot push real clients out of the table).
        if let Some(r) = self
            .clients
            .as_mut()
            .and_then(|t| t.find_mut(meta.src.ip()))
        {
            r.drops = r.drops.saturating_add(1);
        }
        Verdict::Drop(reason)
    }

    /// A kiss-o'-death with `code` in answer to `req` (never longer than the request: the
    /// parse refused anything shorter than a header).
    #[inline]
    fn kod(tally: &mut Tally, req: &Request, code: KissCode, out: &mut [u8]) -> Verdict {
        tally.count(Counter::Answered);
        let len = match code {
            KissCode::Rate => {
                tally.count(Counter::KodRate);
                req.write_kod(code, out)
            }
            // RSTR is never sent; it would count with DENY (both mean "stop").
            KissCode::Deny | KissCode::Rstr => {
                tally.count(Counter::KodDeny);
                req.write_kod(code, out)
            }
            KissCode::Cryp => {
                tally.count(Counter::KodCryp);
                req.write_crypto_nak_kod(out)
            }
        };
        Verdict::Kod { len, code }
    }

    /// The checks that need neither the client's record nor its MAC, before either costs
    /// anything: serving, then the access rules. `Some`: the request is refused (a KoD DENY
    /// written into `out`, or a drop); a denied client's MAC is never computed, and it gets no
    /// record, so it cannot push served clients out.
    #[inline]
    fn gate(&mut self, meta: &Arrival, req: &Request, out: &mut [u8]) -> Option<Verdict> {
        if !self.serving {
            self.tally.drop(DropReason::NotServing);
            return Some(Verdict::Drop(DropReason::NotServing));
        }
        if let Some(rules) = &self.access {
            if !rules.allows(meta.src.ip()) {
                if self.deny_kod {
                    return Some(Self::kod(&mut self.tally, req, KissCode::Deny, out));
                }
                self.tally.drop(DropReason::Denied);
                return Some(Verdict::Drop(DropReason::Denied));
            }
        }
        None
    }

    /// The answer to a request whose MAC was checked (`outcome`): signed when it was valid.
    #[inline]
    fn answer(
        &mut self,
        meta: &Arrival,
        req: &Request,
        outcome: Outcome,
        out: &mut [u8],
        snap: &ClockSnapshot,
        transmit: impl FnOnce() -> UnixNanos,
    ) -> Verdict {
        let v = self.checked(meta, req, outcome, out, snap, transmit);
        auth::sign(self.auth.as_mut(), outcome, v, out, &mut self.tally)
    }

    /// After the gate: the authentication's refusal, then the reply (to the request without
    /// its MAC when the MAC was valid: [`auth::sign`] adds ours).
    #[inline]
    fn checked(
        &mut self,
        meta: &Arrival,
        req: &Request,
        outcome: Outcome,
        out: &mut [u8],
        snap: &ClockSnapshot,
        transmit: impl FnOnce() -> UnixNanos,
    ) -> Verdict {
        let req = &match outcome {
            Outcome::Signed { .. } => req.without_mac(),
            Outcome::Plain | Outcome::Nak => *req,
        };
        match auth::refusal(self.auth.as_ref(), outcome) {
            None => {}
            Some(Refusal::Kod) => return Self::kod(&mut self.tally, req, KissCode::Cryp, out),
            Some(Refusal::Drop) => {
                self.tally.drop(DropReason::Unauthenticated);
                return Verdict::Drop(DropReason::Unauthenticated);
            }
        }
        self.reply(meta, req, out, snap, transmit)
    }

    /// The client's record (and its rate limit), then the reply.
    #[inline]
    fn reply(
        &mut self,
        meta: &Arrival,
        req: &Request,
        out: &mut [u8],
        snap: &ClockSnapshot,
        transmit: impl FnOnce() -> UnixNanos,
    ) -> Verdict {
        let rx = snap.cook(meta.rx.raw);
        let Some(t) = &mut self.clients else {
            self.tally.count(Counter::Answered);
            self.tally.tx_stamp(TimestampQuality::User);
            let len = req.write_reply(snap, rx, out, || snap.cook(transmit()));
            return Verdict::Reply {
                len,
                tx: None,
                kernel_stamp: false,
            };
        };
        let (slot, record, seen) = t.touch_since(meta.src.ip(), meta.rx.raw.0);
        match seen {
            Seen::Before(_) => {}
            Seen::New => self.tally.count(Counter::ClientsAdded),
            Seen::Replaced => self.tally.count(Counter::ClientsEvicted),
        }
        let mut req = *req;
        if let Some(limit) = &self.rate_limit {
            match limit.check(record, seen.since(), &mut self.limited_seq) {
                Decision::Pass => {}
                Decision::Leak => {
                    self.tally.count(Counter::RateLimitLeaked);
                    req = req.with_min_poll(limit.interval);
                }
                Decision::Kod => {
                    record.kods = record.kods.saturating_add(1);
                    let req = req.with_min_poll(limit.interval);
                    return Self::kod(&mut self.tally, &req, KissCode::Rate, out);
                }
                Decision::Drop => {
                    record.drops = record.drops.saturating_add(1);
                    self.tally.drop(DropReason::RateLimited);
                    return Verdict::Drop(DropReason::RateLimited);
                }
            }
        }
        self.tally.count(Counter::Answered);
        if self.interleaved {
            Self::reply_interleaved(&mut self.tally, record, slot, &req, rx, out, snap, transmit)
        } else {
            self.tally.tx_stamp(TimestampQuality::User);
            let len = req.write_reply(snap, rx, out, || snap.cook(transmit()));
            Verdict::Reply {
                len,
                tx: None,
                kernel_stamp: false,
            }
        }
    }

    /// The reply to a client with a record: interleaved if the request follows up the
    /// record's saved pair, else basic; either way its own pair is saved.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn reply_interleaved(
        tally: &mut Tally,
        record: &mut Record,
        slot: Slot,
        req: &Request,
        rx: UnixNanos,
        out: &mut [u8],
        snap: &ClockSnapshot,
        transmit: impl FnOnce() -> UnixNanos,
    ) -> Verdict {
        let mode = interleaved::mode_for(record, req);
        let times = interleaved::times(req, mode, rx);
        // The transmit time is read last either way: it is this reply's estimate, sent in
        // basic mode and saved for the client's next request.
        let mut estimate = NtpTimestamp::ZERO;
        let len = req.write_reply_with(snap, times, out, || {
            estimate = interleaved::transmit_field(NtpTimestamp::from_unix(snap.cook(transmit())));
            match mode {
                interleaved::Mode::Basic => estimate,
                interleaved::Mode::Interleaved { transmit, .. } => transmit,
            }
        });
        match mode {
            interleaved::Mode::Basic => tally.tx_stamp(TimestampQuality::User),
            interleaved::Mode::Interleaved { quality, .. } => {
                tally.count(Counter::Interleaved);
                tally.tx_stamp(quality);
                record.flags |= FLAG_INTERLEAVES;
            }
        }
        let token = interleaved::save(record, slot, &times, estimate);
        // A kernel transmit stamp costs the socket backends an error-queue message per reply
        // (0.7× the closed-loop rate on udp when every reply asked for one:
        // docs/benchmarks.md), so it is asked for only once the client has shown that it
        // interleaves; its first interleaved reply carries the estimate.
        Verdict::Reply {
            len,
            tx: Some(token),
            kernel_stamp: record.flags & FLAG_INTERLEAVES != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::clients::WAYS;
    use crate::proto::server::client_request;
    use crate::proto::MAX_REPLY_LEN;

    const T: UnixNanos = UnixNanos(1_700_000_000_000_000_000);

    fn meta(src: &str) -> Arrival {
        Arrival {
            src: src.parse().unwrap(),
            dst: None,
            ifindex: 0,
            rx: RawStamp {
                raw: T,
                quality: TimestampQuality::Kernel,
            },
        }
    }

    fn worker() -> Worker {
        Worker::new(WorkerConfig {
            clients: 64,
            seed: 1,
            interleaved: true,
        })
    }

    #[test]
    fn answers_counts_and_remembers_the_client() {
        let mut w = worker();
        let snap = ClockSnapshot::local(2, -20, T);
        let req = client_request(4, 6, NtpTimestamp(0x1234_5678_9abc_def0));
        let mut out = [0u8; MAX_REPLY_LEN];
        let v = w.on_datagram(&meta("192.0.2.1:40000"), &req, &mut out, &snap, || T);
        assert!(matches!(v, Verdict::Reply { len: 48, .. }), "{v:?}");
        assert_eq!(out[0] & 7, 4, "mode 4");
        assert_eq!(&out[24..32], &req[40..48], "origin = request transmit");
        // The same host from another port is the same client.
        w.on_datagram(&meta("192.0.2.1:40001"), &req, &mut out, &snap, || T);
        let t = *w.tally();
        assert_eq!(t.get(Counter::Received), 2);
        assert_eq!(t.get(Counter::Answered), 2);
        assert_eq!(t.get(Counter::ClientsAdded), 1);
        assert_eq!(t.rx_stamps[TimestampQuality::Kernel as usize], 2);
        let ip = "192.0.2.1".parse().unwrap();
        assert_eq!(w.clients().unwrap().find(ip).unwrap().1.requests, 2);
    }

    #[test]
    fn junk_is_counted_and_makes_no_record() {
        let mut w = worker();
        let snap = ClockSnapshot::local(2, -20, T);
        let mut out = [0u8; MAX_REPLY_LEN];
        let v = w.on_datagram(&meta("192.0.2.9:1"), &[0u8; 20], &mut out, &snap, || T);
        assert_eq!(v, Verdict::Drop(DropReason::TooShort));
        assert!(w.clients().unwrap().is_empty());
        w.on_refused(meta("192.0.2.9:1").rx, DropReason::TooLong);
        let t = *w.tally();
        assert_eq!(t.get(Counter::Received), 2);
        assert_eq!(t.get(Counter::Answered), 0);
        assert_eq!(t.dropped_total(), 2);
        // A known client's drops are charged to it.
        let req = client_request(4, 6, NtpTimestamp(1));
        w.on_datagram(&meta("192.0.2.9:1"), &req, &mut out, &snap, || T);
        let mut bad = req;
        bad[0] = 0x26; // mode 6: never answered
        w.on_datagram(&meta("192.0.2.9:2"), &bad, &mut out, &snap, || T);
        let ip = "192.0.2.9".parse().unwrap();
        assert_eq!(w.clients().unwrap().find(ip).unwrap().1.drops, 1);
    }

    #[test]
    fn in_place_answers_in_the_request_buffer() {
        let mut w = worker();
        let snap = ClockSnapshot::local(2, -20, T);
        let mut buf = [0u8; 64];
        let req = client_request(3, 6, NtpTimestamp(7));
        buf[..48].copy_from_slice(&req);
        let v = w.on_datagram_in_place(&meta("[2001:db8::1]:123"), &mut buf, 48, &snap, || T);
        assert!(matches!(v, Verdict::Reply { len: 48, .. }), "{v:?}");
        assert_eq!(buf[0] & 7, 4);
        assert_eq!(&buf[24..32], &req[40..48]);
        let v = w.on_datagram_in_place(&meta("[2001:db8::1]:123"), &mut buf, 65, &snap, || T);
        assert_eq!(v, Verdict::Drop(DropReason::TooLong));
    }

    #[test]
    fn without_a_table_it_answers_the_same() {
        let mut w = Worker::new(WorkerConfig {
            clients: 0,
            seed: 1,
            interleaved: true,
        });
        assert!(w.clients().is_none());
        let snap = ClockSnapshot::local(2, -20, T);
        let req = client_request(4, 6, NtpTimestamp(9));
        let mut out = [0u8; MAX_REPLY_LEN];
        let v = w.on_datagram(&meta("192.0.2.1:1"), &req, &mut out, &snap, || T);
        assert!(matches!(v, Verdict::Reply { len: 48, .. }), "{v:?}");
        assert_eq!(w.tally().get(Counter::ClientsAdded), 0);
    }

    /// The reply's (origin, receive, transmit) fields.
    fn fields(out: &[u8]) -> (u64, u64, u64) {
        let at = |i: usize| u64::from_be_bytes(out[i..i + 8].try_into().unwrap());
        (at(24), at(32), at(40))
    }

    /// A client request with the given origin, receive and transmit fields.
    fn request(origin: u64, receive: u64, transmit: u64) -> [u8; 48] {
        let mut r = client_request(4, 6, NtpTimestamp(transmit));
        r[24..32].copy_from_slice(&origin.to_be_bytes());
        r[32..40].copy_from_slice(&receive.to_be_bytes());
        r
    }

    /// One exchange at raw receive time `rx` with transmit reading `tx` (the snapshot serves
    /// raw time unchanged).
    fn exchange(w: &mut Worker, src: &str, req: &[u8], rx: i64, tx: i64) -> (Verdict, [u8; 48]) {
        let snap = ClockSnapshot::local(2, -20, T);
        let mut m = meta(src);
        m.rx.raw = UnixNanos(rx);
        let mut out = [0u8; MAX_REPLY_LEN];
        let v = w.on_datagram(&m, req, &mut out, &snap, || UnixNanos(tx));
        (v, out[..48].try_into().unwrap())
    }

    fn ntp(ns: i64) -> u64 {
        NtpTimestamp::from_unix(UnixNanos(ns)).0
    }

    fn kernel(ns: i64) -> RawStamp {
        RawStamp {
            raw: UnixNanos(ns),
            quality: TimestampQuality::Kernel,
        }
    }

    const A: &str = "192.0.2.7:40000";
    const MS: i64 = 1_000_000;

    #[test]
    fn an_interleaved_request_gets_the_true_transmit_time_of_the_previous_reply() {
        let mut w = worker();
        let snap = ClockSnapshot::local(2, -20, T);
        let t0 = T.0;
        // 1: a basic request. Receive field has its low bit set, transmit its low bit clear.
        let (v1, r1) = exchange(&mut w, A, &request(0, 0, 0xaaaa), t0, t0 + 10_000);
        let Verdict::Reply {
            tx: Some(tok1),
            kernel_stamp: false,
            ..
        } = v1
        else {
            panic!("a token, but no kernel stamp asked for a client not yet interleaving: {v1:?}")
        };
        assert_eq!(v1.send_asking_stamps(), Some((48, None)));
        let (o1, rx1, tx1) = fields(&r1);
        assert_eq!(o1, 0xaaaa, "basic: origin = request transmit");
        assert_eq!(rx1, ntp(t0) | 1);
        assert_eq!(tx1, ntp(t0 + 10_000) & !1);
        // The kernel says the first reply left at +25 µs.
        w.on_tx_stamp(tok1, kernel(t0 + 25_000), &snap);
        assert_eq!(w.tally().get(Counter::TxStamped), 1);
        // 2: the client follows up: origin = our receive stamp, receive = its own (≠ its
        // transmit).
        let req2 = request(rx1, 0x5555, 0xbbbb);
        let (v2, r2) = exchange(&mut w, A, &req2, t0 + 64 * MS, t0 + 64 * MS + 10_000);
        let (o2, rx2, tx2) = fields(&r2);
        assert_eq!(o2, 0x5555, "interleaved: origin = request receive");
        assert_eq!(rx2, ntp(t0 + 64 * MS) | 1, "receive = this request's");
        assert_eq!(
            tx2,
            ntp(t0 + 25_000) & !1,
            "transmit = the first reply's true one"
        );
        // From now on the client interleaves: its replies' kernel stamps are worth asking for.
        assert!(
            matches!(
                v2,
                Verdict::Reply {
                    tx: Some(_),
                    kernel_stamp: true,
                    ..
                }
            ),
            "{v2:?}"
        );
        assert!(matches!(v2.send_asking_stamps(), Some((48, Some(_)))));
        let t = *w.tally();
        assert_eq!(
            (t.get(Counter::Answered), t.get(Counter::Interleaved)),
            (2, 1)
        );
        assert_eq!(t.tx_stamps[TimestampQuality::Kernel as usize], 1);
        assert_eq!(t.tx_stamps[TimestampQuality::User as usize], 1);
    }

    #[test]
    fn without_a_stamp_the_interleaved_reply_carries_the_estimate() {
        let mut w = worker();
        let t0 = T.0;
        let (_, r1) = exchange(&mut w, A, &request(0, 0, 1), t0, t0 + 7_000);
        let (_, rx1, tx1) = fields(&r1);
        let (_, r2) = exchange(&mut w, A, &request(rx1, 2, 3), t0 + MS, t0 + MS + 7_000);
        assert_eq!(fields(&r2), (2, ntp(t0 + MS) | 1, tx1));
        assert_eq!(w.tally().tx_stamps[TimestampQuality::User as usize], 2);
    }

    #[test]
    fn misses_are_answered_in_basic_mode() {
        let mut w = worker();
        let t0 = T.0;
        let (_, r1) = exchange(&mut w, A, &request(0, 0, 0x11), t0, t0 + 1);
        let (_, rx1, tx1) = fields(&r1);
        // Origin matches nothing saved.
        let (_, r) = exchange(&mut w, A, &request(rx1 ^ 0x100, 5, 6), t0 + MS, t0 + MS);
        assert_eq!(fields(&r).0, 6, "unknown origin: basic");
        let (_, rx2, _) = fields(&r);
        // Receive field equal to transmit field: not an interleaved request.
        let (_, r) = exchange(&mut w, A, &request(rx2, 9, 9), t0 + 2 * MS, t0 + 2 * MS);
        assert_eq!(fields(&r).0, 9, "receive = transmit: basic");
        // A basic client echoing our transmit stamp as its origin never matches a saved
        // receive stamp.
        let (_, r) = exchange(&mut w, A, &request(tx1, 1, 2), t0 + 3 * MS, t0 + 3 * MS);
        assert_eq!(fields(&r).0, 2);
        // Another client presenting this client's receive stamp is not this client.
        let (_, r3) = exchange(&mut w, A, &request(0, 0, 0x21), t0 + 4 * MS, t0 + 4 * MS);
        let rx3 = fields(&r3).1;
        let (_, r) = exchange(&mut w, "192.0.2.8:1", &request(rx3, 1, 2), t0 + 5 * MS, 0);
        assert_eq!(fields(&r).0, 2);
        assert_eq!(w.tally().get(Counter::Interleaved), 0);
    }

    #[test]
    fn a_saved_pair_is_matched_once_and_a_replay_gets_basic() {
        let mut w = worker();
        let t0 = T.0;
        let (_, r1) = exchange(&mut w, A, &request(0, 0, 1), t0, t0 + 1_000);
        let rx1 = fields(&r1).1;
        let req2 = request(rx1, 2, 3);
        let (_, r2) = exchange(&mut w, A, &req2, t0 + MS, t0 + MS + 1_000);
        assert_eq!(fields(&r2).0, 2, "interleaved");
        // The same request again (a duplicate or a replay): the pair is spent.
        let (_, r) = exchange(&mut w, A, &req2, t0 + 2 * MS, t0 + 2 * MS);
        assert_eq!(fields(&r).0, 3, "replayed origin: basic");
        assert_eq!(w.tally().get(Counter::Interleaved), 1);
    }

    #[test]
    fn a_basic_request_after_interleaved_ones_is_answered_basic_and_starts_over() {
        let mut w = worker();
        let t0 = T.0;
        let (_, r1) = exchange(&mut w, A, &request(0, 0, 1), t0, t0 + 1_000);
        let (_, r2) = exchange(&mut w, A, &request(fields(&r1).1, 2, 3), t0 + MS, t0 + MS);
        assert_eq!(fields(&r2).0, 2);
        // The client restarts in basic mode.
        let (_, r3) = exchange(
            &mut w,
            A,
            &request(0, 0, 0x77),
            t0 + 2 * MS,
            t0 + 2 * MS + 5,
        );
        assert_eq!(
            fields(&r3),
            (0x77, ntp(t0 + 2 * MS) | 1, ntp(t0 + 2 * MS + 5) & !1)
        );
        // ... and can interleave on from that reply.
        let (_, r4) = exchange(&mut w, A, &request(fields(&r3).1, 4, 5), t0 + 3 * MS, 0);
        assert_eq!(fields(&r4), (4, ntp(t0 + 3 * MS) | 1, fields(&r3).2));
    }

    #[test]
    fn a_stamp_for_an_evicted_client_is_not_given_to_the_newcomer() {
        // One bucket: the ninth client evicts the least recently seen.
        let mut w = Worker::new(WorkerConfig {
            clients: WAYS,
            seed: 3,
            interleaved: true,
        });
        let snap = ClockSnapshot::local(2, -20, T);
        let t0 = T.0;
        let (v, r1) = exchange(&mut w, "10.0.0.0:1", &request(0, 0, 1), t0, t0 + 1_000);
        let Verdict::Reply { tx: Some(tok), .. } = v else {
            panic!()
        };
        for n in 1..=WAYS {
            let src = format!("10.0.0.{n}:1");
            exchange(&mut w, &src, &request(0, 0, 1), t0 + n as i64 * MS, t0);
        }
        assert_eq!(w.tally().get(Counter::ClientsEvicted), 1);
        // The first client's stamp arrives late: its slot belongs to another client now.
        w.on_tx_stamp(tok, kernel(t0 + 5_000), &snap);
        assert_eq!(w.tally().get(Counter::TxStampsUnused), 1);
        // The evicted client comes back interleaved: it has no pair any more, so basic.
        let (_, r) = exchange(
            &mut w,
            "10.0.0.0:1",
            &request(fields(&r1).1, 2, 3),
            t0 + 99 * MS,
            0,
        );
        assert_eq!(fields(&r).0, 3);
        assert_eq!(w.tally().get(Counter::Interleaved), 0);
    }

    #[test]
    fn interleaved_off_answers_everything_basic_without_tokens() {
        let mut w = Worker::new(WorkerConfig {
            clients: 64,
            seed: 1,
            interleaved: false,
        });
        let t0 = T.0;
        let (v, r1) = exchange(&mut w, A, &request(0, 0, 1), t0, t0 + 1_000);
        assert!(matches!(v, Verdict::Reply { tx: None, .. }));
        assert_eq!(fields(&r1).1, ntp(t0), "no marking in basic-only service");
        let (_, r2) = exchange(&mut w, A, &request(fields(&r1).1, 2, 3), t0 + MS, 0);
        assert_eq!(fields(&r2).0, 3);
    }

    #[test]
    fn the_stamp_closest_to_the_wire_wins() {
        let user = RawStamp {
            raw: T,
            quality: TimestampQuality::User,
        };
        assert_eq!(Arrival::stamp(None, user), user);
        let k = Arrival::stamp(Some((UnixNanos(5), TimestampQuality::Kernel)), user);
        assert_eq!((k.raw, k.quality), (UnixNanos(5), TimestampQuality::Kernel));
    }
}
