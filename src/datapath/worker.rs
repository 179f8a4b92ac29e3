//! The per-datagram seam: one [`Worker`] per worker thread, created on that (pinned) thread
//! and owned by it, which every backend hands each datagram to. It counts the datagram,
//! validates it, remembers the client, and writes the answer from the clock snapshot; the
//! backend only moves bytes. Sans IO: the transmit time is read through a closure the backend
//! passes in, last, after everything else of the reply is written.

use std::net::{IpAddr, SocketAddr};

use super::clients::ClientTable;
use super::counters::{Counter, Tally};
use crate::clock::{ClockSnapshot, RawStamp, TimestampQuality};
use crate::proto::{DropReason, Request, UnixNanos};

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
    /// A reply of `len` bytes is in the output buffer: send it to the source.
    Reply { len: usize },
    /// Nothing is sent; counted under `reason`.
    Drop(DropReason),
}

/// Sizes a worker's state.
#[derive(Clone, Copy, Debug)]
pub struct WorkerConfig {
    /// Client records this worker keeps (0: no client table).
    pub clients: usize,
    /// Seed of the client table's hash (random per process).
    pub seed: u64,
}

/// One worker's state: its counters for the current batch and its client table.
pub struct Worker {
    tally: Tally,
    clients: Option<ClientTable>,
}

impl Worker {
    /// Allocates (and touches) the whole client table: call it on the worker's own pinned
    /// thread, so the memory is local to its core.
    pub fn new(cfg: WorkerConfig) -> Worker {
        Worker {
            tally: Tally::default(),
            clients: (cfg.clients > 0).then(|| ClientTable::new(cfg.clients, cfg.seed)),
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
            Ok(req) => self.reply(meta, &req, out, snap, transmit),
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
            // `req` holds every field of the request the reply needs.
            Ok(req) => self.reply(meta, &req, buf, snap, transmit),
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

    #[inline]
    fn reply(
        &mut self,
        meta: &Arrival,
        req: &Request,
        out: &mut [u8],
        snap: &ClockSnapshot,
        transmit: impl FnOnce() -> UnixNanos,
    ) -> Verdict {
        if let Some(t) = &mut self.clients {
            let (evicted, len) = (t.evictions(), t.len());
            t.touch(meta.src.ip(), meta.rx.raw.0);
            if t.len() != len {
                self.tally.count(Counter::ClientsAdded);
            } else if t.evictions() != evicted {
                self.tally.count(Counter::ClientsEvicted);
            }
        }
        let len = req.write_reply(snap, snap.cook(meta.rx.raw), out, || snap.cook(transmit()));
        self.tally.count(Counter::Answered);
        Verdict::Reply { len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::server::client_request;
    use crate::proto::{NtpTimestamp, MAX_REPLY_LEN};

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
        })
    }

    #[test]
    fn answers_counts_and_remembers_the_client() {
        let mut w = worker();
        let snap = ClockSnapshot::local(2, -20, T);
        let req = client_request(4, 6, NtpTimestamp(0x1234_5678_9abc_def0));
        let mut out = [0u8; MAX_REPLY_LEN];
        let v = w.on_datagram(&meta("192.0.2.1:40000"), &req, &mut out, &snap, || T);
        assert_eq!(v, Verdict::Reply { len: 48 });
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
        assert_eq!(v, Verdict::Reply { len: 48 });
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
        });
        assert!(w.clients().is_none());
        let snap = ClockSnapshot::local(2, -20, T);
        let req = client_request(4, 6, NtpTimestamp(9));
        let mut out = [0u8; MAX_REPLY_LEN];
        let v = w.on_datagram(&meta("192.0.2.1:1"), &req, &mut out, &snap, || T);
        assert_eq!(v, Verdict::Reply { len: 48 });
        assert_eq!(w.tally().get(Counter::ClientsAdded), 0);
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
