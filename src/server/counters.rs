//! Per-worker counters: one cache-padded block per worker, written only by its worker with
//! relaxed atomics (added once per batch from a plain local tally), read by anyone.

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

/// The shared, atomically updated counters of one worker.
#[derive(Default)]
pub struct WorkerCounters {
    received: AtomicU64,
    answered: AtomicU64,
    kod: AtomicU64,
    rx_buffers_exhausted: AtomicU64,
    dropped: [AtomicU64; DropReason::COUNT],
    rx_stamps: [AtomicU64; QUALITIES.len()],
}

/// A worker's counters, padded to their own cache lines.
pub type PaddedCounters = CachePadded<WorkerCounters>;

/// A plain tally a worker keeps during one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub received: u64,
    pub answered: u64,
    pub kod: u64,
    /// Times the backend's receive buffers ran dry (io-uring: a multishot receive ended with
    /// ENOBUFS and was re-armed). A steady count says `batch-size` is too small for the load.
    pub rx_buffers_exhausted: u64,
    pub dropped: [u64; DropReason::COUNT],
    pub rx_stamps: [u64; QUALITIES.len()],
}

impl Tally {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }

    #[inline]
    pub fn stamp(&mut self, q: TimestampQuality) {
        self.rx_stamps[q as usize] += 1;
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Tally) {
        self.received += other.received;
        self.answered += other.answered;
        self.kod += other.kod;
        self.rx_buffers_exhausted += other.rx_buffers_exhausted;
        for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
            *a += b;
        }
        for (a, b) in self.rx_stamps.iter_mut().zip(other.rx_stamps) {
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
        fn add(c: &AtomicU64, v: u64) {
            if v != 0 {
                c.fetch_add(v, Relaxed);
            }
        }
        add(&self.received, t.received);
        add(&self.answered, t.answered);
        add(&self.kod, t.kod);
        add(&self.rx_buffers_exhausted, t.rx_buffers_exhausted);
        for (c, v) in self.dropped.iter().zip(t.dropped) {
            add(c, v);
        }
        for (c, v) in self.rx_stamps.iter().zip(t.rx_stamps) {
            add(c, v);
        }
        *t = Tally::default();
    }

    /// A consistent-enough copy for reporting.
    pub fn read(&self) -> Tally {
        let mut t = Tally {
            received: self.received.load(Relaxed),
            answered: self.answered.load(Relaxed),
            kod: self.kod.load(Relaxed),
            rx_buffers_exhausted: self.rx_buffers_exhausted.load(Relaxed),
            ..Tally::default()
        };
        for (v, c) in t.dropped.iter_mut().zip(&self.dropped) {
            *v = c.load(Relaxed);
        }
        for (v, c) in t.rx_stamps.iter_mut().zip(&self.rx_stamps) {
            *v = c.load(Relaxed);
        }
        t
    }
}

/// The counters of one worker (or of all) as reported: names instead of indices.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CounterReport {
    pub received: u64,
    pub answered: u64,
    pub kod: u64,
    pub rx_buffers_exhausted: u64,
    pub dropped_total: u64,
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
    pub rx_timestamps: std::collections::BTreeMap<&'static str, u64>,
}

impl From<&Tally> for CounterReport {
    fn from(t: &Tally) -> Self {
        CounterReport {
            received: t.received,
            answered: t.answered,
            kod: t.kod,
            rx_buffers_exhausted: t.rx_buffers_exhausted,
            dropped_total: t.dropped_total(),
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), t.dropped[r.index()]))
                .collect(),
            rx_timestamps: QUALITIES
                .iter()
                .map(|q| (q.as_str(), t.rx_stamps[*q as usize]))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_adds_and_clears() {
        let c = WorkerCounters::default();
        let mut t = Tally {
            received: 3,
            answered: 2,
            ..Tally::default()
        };
        t.drop(DropReason::BadMode);
        t.stamp(TimestampQuality::Kernel);
        c.flush(&mut t);
        assert_eq!(t, Tally::default());
        let mut t2 = Tally {
            received: 1,
            ..Tally::default()
        };
        t2.drop(DropReason::BadMode);
        c.flush(&mut t2);
        let r = CounterReport::from(&c.read());
        assert_eq!(r.received, 4);
        assert_eq!(r.answered, 2);
        assert_eq!(r.dropped["bad_mode"], 2);
        assert_eq!(r.dropped_total, 2);
        assert_eq!(r.rx_timestamps["kernel"], 1);
    }
}
