//! Per-worker counters: one cache-padded block per worker, written only by its worker with
//! relaxed atomics (added once per batch from a plain local tally), read by anyone.
//!
//! Event counters are indexed by [`Counter`], drops by [`DropReason`] and receive stamps by
//! their quality, so a new counter is one line in [`Counter`] (and its name).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam::utils::CachePadded;
use serde::Serialize;

use crate::clock::TimestampQuality;
use crate::proto::DropReason;

/// Number of timestamp qualities tracked.
pub const QUALITIES: [TimestampQuality; 4] = [
    TimestampQuality::Hardware,
    TimestampQuality::Driver,
    TimestampQuality::Kernel,
    TimestampQuality::User,
];

/// What a worker counts besides drops and stamp qualities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Datagrams taken in (every one exactly once, answered or not).
    Received,
    /// Replies handed to the backend (a failed send moves one to the `send_failed` drops).
    Answered,
    /// Times the backend's receive buffers ran dry (io-uring: a multishot receive ended with
    /// ENOBUFS and was re-armed). A steady count says `batch-size` is too small for the load.
    RxBuffersExhausted,
    /// Client-table records created for a new client address.
    ClientsAdded,
    /// Client-table records given to a new client while still in use (the table is full).
    ClientsEvicted,
    /// Replies sent in interleaved mode (RFC 9769: carrying the true transmit time of the
    /// client's previous reply); the rest of `answered` went in basic mode.
    Interleaved,
    /// Transmit timestamps the backend reported that replaced a reply's estimate.
    TxStamped,
    /// Transmit timestamps that came too late (the client's record holds a newer reply, or
    /// belongs to another client now) or were no better than the estimate.
    TxStampsUnused,
    /// Transmit timestamps asked for that never came back: the send failed, or the backend's
    /// ring of pending replies moved past the reply before the kernel reported it.
    TxStampsLost,
    /// Kiss-o'-death replies sent, by code (counted in `answered` too): DENY to clients the
    /// access rules refuse, RATE to rate-limited clients.
    KodDeny,
    KodRate,
    /// Requests over the rate limit answered anyway (1 in 2^leak of them), poll raised.
    RateLimitLeaked,
    /// Requests with a valid MAC (symmetric key): their replies are signed with the key.
    Authenticated,
    /// Requests whose MAC names a known key but does not match (or has the wrong length):
    /// answered with a crypto-NAK.
    BadMac,
    /// Requests whose MAC names no configured key (a crypto-NAK too).
    UnknownKey,
    /// Kiss-o'-death CRYP sent (counted in `answered` too): `[auth] require` refused an
    /// unauthenticated request, or a bad MAC got a crypto-NAK without time.
    KodCryp,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 16] = [
        Counter::Received,
        Counter::Answered,
        Counter::RxBuffersExhausted,
        Counter::ClientsAdded,
        Counter::ClientsEvicted,
        Counter::Interleaved,
        Counter::TxStamped,
        Counter::TxStampsUnused,
        Counter::TxStampsLost,
        Counter::KodDeny,
        Counter::KodRate,
        Counter::RateLimitLeaked,
        Counter::Authenticated,
        Counter::BadMac,
        Counter::UnknownKey,
        Counter::KodCryp,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The name in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Counter::Received => "received",
            Counter::Answered => "answered",
            Counter::RxBuffersExhausted => "rx_buffers_exhausted",
            Counter::ClientsAdded => "clients_added",
            Counter::ClientsEvicted => "clients_evicted",
            Counter::Interleaved => "interleaved",
            Counter::TxStamped => "tx_stamped",
            Counter::TxStampsUnused => "tx_stamps_unused",
            Counter::TxStampsLost => "tx_stamps_lost",
            Counter::KodDeny => "kod_deny",
            Counter::KodRate => "kod_rate",
            Counter::RateLimitLeaked => "rate_limit_leaked",
            Counter::Authenticated => "authenticated",
            Counter::BadMac => "bad_mac",
            Counter::UnknownKey => "unknown_key",
            Counter::KodCryp => "kod_cryp",
        }
    }
}

/// The shared, atomically updated counters of one worker.
#[derive(Default)]
pub struct WorkerCounters {
    events: [AtomicU64; Counter::COUNT],
    dropped: [AtomicU64; DropReason::COUNT],
    rx_stamps: [AtomicU64; QUALITIES.len()],
    tx_stamps: [AtomicU64; QUALITIES.len()],
}

/// A worker's counters, padded to their own cache lines.
pub type PaddedCounters = CachePadded<WorkerCounters>;

/// A plain tally a worker keeps during one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub events: [u64; Counter::COUNT],
    pub dropped: [u64; DropReason::COUNT],
    pub rx_stamps: [u64; QUALITIES.len()],
    /// Replies by the quality of the transmit time they carried (basic replies: the estimate
    /// read in user space; interleaved: the earlier reply's stamp).
    pub tx_stamps: [u64; QUALITIES.len()],
}

impl Tally {
    #[inline]
    pub fn count(&mut self, c: Counter) {
        self.events[c as usize] += 1;
    }

    #[inline]
    pub fn get(&self, c: Counter) -> u64 {
        self.events[c as usize]
    }

    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }

    #[inline]
    pub fn stamp(&mut self, q: TimestampQuality) {
        self.rx_stamps[q as usize] += 1;
    }

    /// A reply went out carrying a transmit time of quality `q`.
    #[inline]
    pub fn tx_stamp(&mut self, q: TimestampQuality) {
        self.tx_stamps[q as usize] += 1;
    }

    /// A reply counted as answered that the kernel would not take: it moves to the
    /// `send_failed` drops.
    #[inline]
    pub fn send_failed(&mut self) {
        self.events[Counter::Answered as usize] -= 1;
        self.drop(DropReason::SendFailed);
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Tally) {
        let pairs = self
            .events
            .iter_mut()
            .zip(other.events)
            .chain(self.dropped.iter_mut().zip(other.dropped))
            .chain(self.rx_stamps.iter_mut().zip(other.rx_stamps))
            .chain(self.tx_stamps.iter_mut().zip(other.tx_stamps));
        for (a, b) in pairs {
            *a += b;
        }
    }

    /// Total dropped, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

impl WorkerCounters {
    /// Adds a batch's tally (single writer: the owning worker) and clears it.
    #[inline]
    pub fn flush(&self, t: &mut Tally) {
        let pairs = self
            .events
            .iter()
            .zip(t.events)
            .chain(self.dropped.iter().zip(t.dropped))
            .chain(self.rx_stamps.iter().zip(t.rx_stamps))
            .chain(self.tx_stamps.iter().zip(t.tx_stamps));
        for (c, v) in pairs {
            if v != 0 {
                c.fetch_add(v, Relaxed);
            }
        }
        *t = Tally::default();
    }

    /// A consistent-enough copy for reporting.
    pub fn read(&self) -> Tally {
        let load = |c: &AtomicU64| c.load(Relaxed);
        Tally {
            events: self.events.each_ref().map(load),
            dropped: self.dropped.each_ref().map(load),
            rx_stamps: self.rx_stamps.each_ref().map(load),
            tx_stamps: self.tx_stamps.each_ref().map(load),
        }
    }
}

/// The counters of one worker (or of all) as reported: names instead of indices.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CounterReport {
    /// The [`Counter`]s by name (`received`, `answered`, ...), at the top level.
    #[serde(flatten)]
    pub events: BTreeMap<&'static str, u64>,
    pub dropped_total: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    pub rx_timestamps: BTreeMap<&'static str, u64>,
    /// Replies by the quality of the transmit time they carried.
    pub tx_timestamps: BTreeMap<&'static str, u64>,
}

impl CounterReport {
    /// One counter by its enum.
    pub fn get(&self, c: Counter) -> u64 {
        self.events.get(c.as_str()).copied().unwrap_or(0)
    }
}

impl From<&Tally> for CounterReport {
    fn from(t: &Tally) -> Self {
        CounterReport {
            events: Counter::ALL
                .iter()
                .map(|c| (c.as_str(), t.get(*c)))
                .collect(),
            dropped_total: t.dropped_total(),
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), t.dropped[r.index()]))
                .collect(),
            rx_timestamps: by_quality(&t.rx_stamps),
            tx_timestamps: by_quality(&t.tx_stamps),
        }
    }
}

fn by_quality(counts: &[u64; QUALITIES.len()]) -> BTreeMap<&'static str, u64> {
    QUALITIES
        .iter()
        .map(|q| (q.as_str(), counts[*q as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_adds_and_clears() {
        let c = WorkerCounters::default();
        let mut t = Tally::default();
        for _ in 0..3 {
            t.count(Counter::Received);
        }
        t.count(Counter::Answered);
        t.count(Counter::Answered);
        t.drop(DropReason::BadMode);
        t.stamp(TimestampQuality::Kernel);
        t.tx_stamp(TimestampQuality::Driver);
        c.flush(&mut t);
        assert_eq!(t, Tally::default());
        let mut t2 = Tally::default();
        t2.count(Counter::Received);
        t2.drop(DropReason::BadMode);
        t2.count(Counter::Answered);
        t2.send_failed();
        c.flush(&mut t2);
        let r = CounterReport::from(&c.read());
        assert_eq!(r.get(Counter::Received), 4);
        assert_eq!(r.get(Counter::Answered), 2);
        assert_eq!(r.dropped["bad_mode"], 2);
        assert_eq!(r.dropped["send_failed"], 1);
        assert_eq!(r.dropped_total, 3);
        assert_eq!(r.rx_timestamps["kernel"], 1);
        assert_eq!(r.tx_timestamps["driver"], 1);
        assert_eq!(r.tx_timestamps["kernel"], 0);
        // Every counter is reported by name at the top level.
        let json = serde_json::to_value(&r).unwrap();
        for c in Counter::ALL {
            assert!(json[c.as_str()].is_u64(), "{json}");
        }
    }
}
