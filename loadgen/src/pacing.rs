//! Open-loop pacing: a fixed per-thread schedule of send slots, `start + k × interval`.
//!
//! The schedule never bends to the sender. When the thread wakes late, slots that are later
//! than the tolerance are skipped (counted as missed, with the lag recorded) instead of being
//! sent in a catch-up burst that would hit the server with a rate it was never offered. Slots
//! within the tolerance go out now, at most one batch per call.

/// A per-thread send schedule. Times are nanoseconds on a monotonic clock.
#[derive(Clone, Debug)]
pub struct Pacer {
    start_ns: u64,
    interval_ns: f64,
    tolerance_ns: u64,
    /// Index of the next slot not yet sent or skipped.
    next: u64,
    /// Slots skipped because they were later than the tolerance.
    pub missed: u64,
    /// Largest lateness of a slot that was sent (ns).
    pub max_lag_ns: u64,
    /// Sum of lateness over sent slots (ns), for the mean.
    pub total_lag_ns: u128,
    /// Slots sent.
    pub sent: u64,
}

/// What [`Pacer::poll`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// Slots to send now.
    pub send: usize,
    /// Slots skipped by this call.
    pub skipped: u64,
}

impl Pacer {
    /// A schedule of `rate` slots per second from `start_ns`. A slot later than
    /// `max(max_lag_ns, interval)` is skipped.
    pub fn new(rate: f64, start_ns: u64, max_lag_ns: u64) -> Pacer {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        let interval_ns = 1e9 / rate;
        Pacer {
            start_ns,
            interval_ns,
            tolerance_ns: max_lag_ns.max(interval_ns.ceil() as u64),
            next: 0,
            missed: 0,
            max_lag_ns: 0,
            total_lag_ns: 0,
            sent: 0,
        }
    }

    /// Due time of slot `k`.
    pub fn slot_time(&self, k: u64) -> u64 {
        self.start_ns + (k as f64 * self.interval_ns).round() as u64
    }

    /// Number of slots whose due time is at or before `t` (the index of the first later slot).
    fn slots_by(&self, t: u64) -> u64 {
        if t < self.start_ns {
            return 0;
        }
        let mut k = ((t - self.start_ns) as f64 / self.interval_ns).floor() as u64 + 1;
        // Correct the float estimate against the rounded slot times.
        while k > 0 && self.slot_time(k - 1) > t {
            k -= 1;
        }
        while self.slot_time(k) <= t {
            k += 1;
        }
        k
    }

    /// Due time of the next slot to send.
    pub fn next_due(&self) -> u64 {
        self.slot_time(self.next)
    }

    /// Slots to send at `now` (at most `max`); skips the ones later than the tolerance.
    pub fn poll(&mut self, now: u64, max: usize) -> Due {
        let due_end = self.slots_by(now);
        if due_end <= self.next {
            return Due {
                send: 0,
                skipped: 0,
            };
        }
        // The first slot still within the tolerance: due at or after now - tolerance.
        let oldest_ok = self.slots_by(now.saturating_sub(self.tolerance_ns).saturating_sub(1));
        let oldest_ok = if now < self.tolerance_ns + 1 {
            0
        } else {
            oldest_ok
        };
        let mut skipped = 0;
        if oldest_ok > self.next {
            skipped = oldest_ok - self.next;
            self.next = oldest_ok;
            self.missed += skipped;
        }
        let n = (due_end - self.next).min(max as u64);
        for k in self.next..self.next + n {
            let lag = now - self.slot_time(k);
            self.max_lag_ns = self.max_lag_ns.max(lag);
            self.total_lag_ns += lag as u128;
        }
        self.next += n;
        self.sent += n;
        Due {
            send: n as usize,
            skipped,
        }
    }

    /// Slots that fell due up to `end` but were neither sent nor skipped yet are skipped
    /// (called when the send phase ends, so the schedule's total adds up).
    pub fn finish(&mut self, end: u64) {
        let due_end = self.slots_by(end.saturating_sub(1));
        if due_end > self.next {
            self.missed += due_end - self.next;
            self.next = due_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_time_sends_one_slot_per_interval() {
        // 1000/s: slots at 0, 1 ms, 2 ms, ...
        let mut p = Pacer::new(1000.0, 0, 200_000);
        assert_eq!(p.poll(0, 32).send, 1);
        assert_eq!(p.poll(999_999, 32).send, 0);
        assert_eq!(p.next_due(), 1_000_000);
        assert_eq!(p.poll(1_000_000, 32).send, 1);
        assert_eq!(p.poll(1_000_050, 32).send, 0);
        assert_eq!(p.missed, 0);
        assert_eq!(p.max_lag_ns, 0);
    }

    #[test]
    fn nothing_before_start() {
        let mut p = Pacer::new(1000.0, 5_000_000, 200_000);
        assert_eq!(p.poll(4_999_999, 32).send, 0);
        assert_eq!(p.poll(5_000_000, 32).send, 1);
    }

    #[test]
    fn slots_within_tolerance_are_batched() {
        // 1M/s, 1 µs interval, 200 µs tolerance: waking 10 µs late sends 11 slots at once.
        let mut p = Pacer::new(1e6, 0, 200_000);
        let d = p.poll(10_000, 64);
        assert_eq!(
            d,
            Due {
                send: 11,
                skipped: 0
            }
        );
        assert_eq!(p.max_lag_ns, 10_000);
        assert_eq!(p.next_due(), 11_000);
    }

    #[test]
    fn late_slots_are_skipped_not_burst() {
        // 100k/s (10 µs), tolerance 100 µs. Waking at 1 ms: slots 0..=100 are due; those
        // before 900 µs are skipped, the ~11 within the tolerance are sent.
        let mut p = Pacer::new(100_000.0, 0, 100_000);
        let d = p.poll(1_000_000, 1000);
        assert_eq!(d.skipped, 90);
        assert_eq!(d.send, 11);
        assert_eq!(p.missed, 90);
        assert_eq!(p.max_lag_ns, 100_000);
        // Never more than the tolerance's worth of slots at once, whatever the lateness.
        let d = p.poll(50_000_000, 1000);
        assert!(d.send <= 11, "{d:?}");
        assert_eq!(p.sent + p.missed, 5001);
    }

    #[test]
    fn batch_cap_leaves_the_rest_due() {
        let mut p = Pacer::new(1e6, 0, 200_000);
        assert_eq!(p.poll(50_000, 16).send, 16);
        assert_eq!(p.poll(50_000, 16).send, 16);
        assert_eq!(p.next_due(), 32_000);
    }

    #[test]
    fn low_rates_tolerate_one_interval() {
        // 10/s: 100 ms interval; a 50 ms late wake still sends (tolerance = interval).
        let mut p = Pacer::new(10.0, 0, 200_000);
        assert_eq!(p.poll(0, 8).send, 1);
        assert_eq!(
            p.poll(150_000_000, 8),
            Due {
                send: 1,
                skipped: 0
            }
        );
        assert_eq!(p.max_lag_ns, 50_000_000);
    }

    #[test]
    fn fractional_rates_keep_the_long_run_average() {
        // 3 per second over 10 s: exactly 30 slots in [0, 10 s).
        let mut p = Pacer::new(3.0, 0, 1_000_000_000);
        let mut sent = 0;
        let mut t = 0;
        while t < 10_000_000_000u64 {
            sent += p.poll(t, 8).send;
            t += 1_000_000;
        }
        assert_eq!(sent, 30);
        assert_eq!(p.missed, 0);
    }

    #[test]
    fn finish_counts_unsent_due_slots() {
        let mut p = Pacer::new(1000.0, 0, 200_000);
        p.poll(0, 1);
        p.finish(10_000_000);
        assert_eq!(p.sent + p.missed, 10);
    }
}
