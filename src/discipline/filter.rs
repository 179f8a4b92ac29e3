//! The per-source clock filter (RFC 5905 §10), the reachability register and poll-interval
//! control.
//!
//! * [`ClockFilter`] keeps a source's last [`FILTER_LEN`] samples and picks the one with the
//!   lowest round-trip delay: queueing only ever adds delay, and the sample that waited least is
//!   the one whose offset is least distorted by asymmetric queueing. A sample's dispersion grows
//!   with its age at [`PHI`] (plus the caller's frequency tolerance). Jitter is the RMS of the
//!   other samples' offsets relative to the selected one. A popcorn-spike guard drops a sample
//!   whose offset jumps away from the previous one by more than [`SPIKE_GATE`] × jitter, once
//!   jitter is established (but never more than [`SPIKE_MAX_CONSECUTIVE`] in a row, so a real
//!   change in the source is followed after a few polls).
//! * [`Reach`] is the 8-bit reachability shift register of RFC 5905 §13.
//! * [`PollControl`] adapts the poll exponent between `minpoll` and `maxpoll` and runs the
//!   `iburst` start schedule.
//!
//! Offsets here are measured against the *raw* local clock, which drifts. Offsets of samples of
//! different ages are therefore compared after projecting them to a common instant with the
//! caller's current frequency estimate (`freq`, dimensionless): `offset + freq × (t − at)`.

use std::collections::VecDeque;

use crate::proto::UnixNanos;

/// RFC 5905's frequency tolerance PHI: the rate (s/s) at which the dispersion of a measurement
/// grows with its age.
pub const PHI: f64 = 15e-6;
/// Number of samples a clock filter keeps (RFC 5905 NSTAGE).
pub const FILTER_LEN: usize = 8;
/// A sample is a popcorn spike when its offset differs from the previous sample's (projected)
/// offset by more than this many times the filter jitter.
pub const SPIKE_GATE: f64 = 3.0;
/// Jitter counts as established (and the spike guard is active) from this many samples on.
pub const SPIKE_MIN_SAMPLES: usize = 4;
/// After this many consecutive spikes the next sample is accepted whatever its offset: the
/// source has really moved (or we have), and refusing it forever would lock the source out.
pub const SPIKE_MAX_CONSECUTIVE: u32 = 3;

/// Seconds from `earlier` to `later` as f64 (negative when `later` is earlier).
pub(crate) fn secs_between(later: UnixNanos, earlier: UnixNanos) -> f64 {
    later.nanos_since(earlier) as f64 * 1e-9
}

/// One measurement kept by the filter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilterSample {
    /// Offset of the source relative to the local raw clock at `at`, seconds (positive when the
    /// source is ahead).
    pub offset: f64,
    /// Round-trip delay, seconds (≥ 0).
    pub delay: f64,
    /// Dispersion of the measurement when it was taken, seconds (≥ 0).
    pub dispersion: f64,
    /// Local raw time the measurement was taken (the client receive time t4).
    pub at: UnixNanos,
}

/// What the filter did with an offered sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterVerdict {
    /// Stored in the filter.
    Accepted,
    /// Dropped by the popcorn-spike guard.
    Spike,
}

/// The filter's view of its source at an instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilterOutput {
    /// The selected (lowest-delay) sample, as stored.
    pub sample: FilterSample,
    /// The selected sample's offset projected to the evaluation instant, seconds.
    pub offset: f64,
    /// The selected sample's dispersion aged to the evaluation instant, seconds.
    pub dispersion: f64,
    /// RMS of the other samples' projected offsets relative to the selected one, seconds
    /// (never below the filter's jitter floor).
    pub jitter: f64,
    /// Age of the selected sample at the evaluation instant, seconds.
    pub age: f64,
    /// Number of samples held.
    pub count: usize,
}

/// A per-source clock filter holding the last [`FILTER_LEN`] accepted samples.
#[derive(Clone, Debug)]
pub struct ClockFilter {
    /// Oldest first.
    samples: VecDeque<FilterSample>,
    /// Consecutive spikes dropped so far.
    consecutive_spikes: u32,
    /// Total spikes dropped.
    spikes: u64,
    /// Lower bound of reported jitter, seconds (normally the local clock's precision).
    jitter_floor: f64,
}

impl ClockFilter {
    /// An empty filter whose jitter never reads below `jitter_floor` seconds.
    pub fn new(jitter_floor: f64) -> Self {
        ClockFilter {
            samples: VecDeque::with_capacity(FILTER_LEN + 1),
            consecutive_spikes: 0,
            spikes: 0,
            jitter_floor: jitter_floor.max(0.0),
        }
    }

    /// Number of samples held (0..=8).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Total number of samples dropped as popcorn spikes.
    pub fn spikes(&self) -> u64 {
        self.spikes
    }

    /// The samples held, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &FilterSample> {
        self.samples.iter()
    }

    /// The most recently accepted sample.
    pub fn newest(&self) -> Option<&FilterSample> {
        self.samples.back()
    }

    /// Forgets every sample (e.g. after the local clock was stepped).
    pub fn clear(&mut self) {
        self.samples.clear();
        self.consecutive_spikes = 0;
    }

    /// Offers a sample. `freq` is the current estimate of the raw clock's frequency error
    /// (dimensionless), used to compare it with the previous sample taken at another instant.
    pub fn add(&mut self, sample: FilterSample, freq: f64) -> FilterVerdict {
        if self.samples.len() >= SPIKE_MIN_SAMPLES
            && self.consecutive_spikes < SPIKE_MAX_CONSECUTIVE
        {
            if let (Some(last), Some(out)) = (self.newest(), self.evaluate(sample.at, freq, 0.0)) {
                let predicted = last.offset + freq * secs_between(sample.at, last.at);
                if (sample.offset - predicted).abs() > SPIKE_GATE * out.jitter {
                    self.consecutive_spikes += 1;
                    self.spikes += 1;
                    return FilterVerdict::Spike;
                }
            }
        }
        self.consecutive_spikes = 0;
        self.samples.push_back(sample);
        while self.samples.len() > FILTER_LEN {
            self.samples.pop_front();
        }
        FilterVerdict::Accepted
    }

    /// Evaluates the filter at raw time `now`: selects the lowest-delay sample (ties: the lower
    /// aged dispersion, then the newest), ages its dispersion at `PHI + freq_tolerance` per
    /// second, projects offsets with `freq` and computes the jitter.
    pub fn evaluate(&self, now: UnixNanos, freq: f64, freq_tolerance: f64) -> Option<FilterOutput> {
        let rate = PHI + freq_tolerance.max(0.0);
        let aged = |s: &FilterSample| s.dispersion + rate * secs_between(now, s.at).max(0.0);
        let project = |s: &FilterSample| s.offset + freq * secs_between(now, s.at);
        let mut best: Option<&FilterSample> = None;
        for s in self.samples.iter() {
            best = match best {
                None => Some(s),
                Some(b) if s.delay < b.delay || (s.delay == b.delay && aged(s) <= aged(b)) => {
                    Some(s)
                }
                keep => keep,
            };
        }
        let sel = *best?;
        let sel_offset = project(&sel);
        let n = self.samples.len();
        let jitter = if n >= 2 {
            let sum: f64 = self
                .samples
                .iter()
                .map(|s| (project(s) - sel_offset).powi(2))
                .sum();
            (sum / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(FilterOutput {
            sample: sel,
            offset: sel_offset,
            dispersion: aged(&sel),
            jitter: jitter.max(self.jitter_floor),
            age: secs_between(now, sel.at).max(0.0),
            count: n,
        })
    }
}

/// The 8-bit reachability register: one bit per poll, newest in bit 0, set when the poll got a
/// usable reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach(pub u8);

impl Reach {
    /// Records the outcome of one poll.
    pub fn record(&mut self, replied: bool) {
        self.0 = (self.0 << 1) | replied as u8;
    }

    /// True when any of the last 8 polls was answered.
    pub fn is_reachable(self) -> bool {
        self.0 != 0
    }

    /// How many of the last 8 polls were answered.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }
}

/// Lowest poll exponent accepted (1/64 s).
pub const MIN_POLL: i8 = -6;
/// Highest poll exponent accepted (36 h).
pub const MAX_POLL: i8 = 17;
/// Number of quick polls of the `iburst` start schedule (after the first poll).
pub const IBURST_COUNT: u8 = 6;
/// Spacing of the `iburst` polls, seconds (or 2^minpoll when that is shorter).
pub const IBURST_INTERVAL: f64 = 2.0;
/// A residual larger than this many times the jitter counts against the current poll interval.
pub const POLL_GATE: f64 = 4.0;
/// Jitter below this fraction of the poll interval counts for a longer interval; jitter above
/// four times it counts against the current one. (1e-4: 6.4 ms at 64 s, 1.6 µs at 1/64 s.)
pub const POLL_JITTER_RATIO: f64 = 1e-4;
/// Score at which the poll exponent is raised (each good sample adds 1, each bad one takes 2,
/// and the exponent is lowered at minus this).
pub const POLL_LIMIT: i32 = 6;

/// Poll-interval state of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollControl {
    /// Lowest poll exponent, log2 seconds.
    minpoll: i8,
    /// Highest poll exponent, log2 seconds.
    maxpoll: i8,
    /// Current poll exponent, log2 seconds.
    poll: i8,
    /// Quick polls left in the current burst.
    burst_left: u8,
    /// Whether bursts are enabled (on start and when the source becomes unreachable).
    iburst: bool,
    /// Hysteresis score (see [`POLL_LIMIT`]).
    score: i32,
}

impl PollControl {
    /// Poll control starting at `minpoll` (both bounds clamped to [`MIN_POLL`]..=[`MAX_POLL`],
    /// `maxpoll` at least `minpoll`), with a quick start burst when `iburst`.
    pub fn new(minpoll: i8, maxpoll: i8, iburst: bool) -> Self {
        let minpoll = minpoll.clamp(MIN_POLL, MAX_POLL);
        let maxpoll = maxpoll.clamp(minpoll, MAX_POLL);
        PollControl {
            minpoll,
            maxpoll,
            poll: minpoll,
            burst_left: if iburst { IBURST_COUNT } else { 0 },
            iburst,
            score: 0,
        }
    }

    /// The current poll exponent, log2 seconds.
    pub fn poll(&self) -> i8 {
        self.poll
    }

    /// True while the quick start burst is running.
    pub fn in_burst(&self) -> bool {
        self.burst_left > 0
    }

    /// Seconds to wait from the poll just completed to the next one.
    pub fn interval(&self) -> f64 {
        if self.burst_left > 0 {
            IBURST_INTERVAL.min(2f64.powi(self.minpoll.into()))
        } else {
            2f64.powi(self.poll.into())
        }
    }

    /// Records that a poll completed (answered or not): consumes one burst slot.
    pub fn poll_done(&mut self) {
        self.burst_left = self.burst_left.saturating_sub(1);
    }

    /// The source just became unreachable: restart the burst (when enabled) and poll at
    /// `minpoll`, so it is picked up quickly when it returns.
    pub fn reach_lost(&mut self) {
        if self.iburst {
            self.burst_left = IBURST_COUNT;
        }
        self.poll = self.minpoll;
        self.score = 0;
    }

    /// Starts a burst of quick polls now, whether or not `iburst` is set (`sync-now`).
    pub fn start_burst(&mut self) {
        self.burst_left = IBURST_COUNT;
    }

    /// Adapts the poll exponent after an accepted sample. `residual` is how far (seconds) the
    /// sample's offset fell from what the source's filter predicted, `jitter` the source's
    /// jitter (seconds). Small jitter relative to the interval and residuals within
    /// [`POLL_GATE`] × jitter lengthen the interval; large residuals or jitter shorten it.
    pub fn adapt(&mut self, residual: f64, jitter: f64) {
        let interval = 2f64.powi(self.poll.into());
        let jitter = jitter.max(1e-9);
        if residual.abs() > POLL_GATE * jitter || jitter > 4.0 * POLL_JITTER_RATIO * interval {
            self.score -= 2;
        } else if jitter < POLL_JITTER_RATIO * interval {
            self.score += 1;
        }
        if self.score >= POLL_LIMIT {
            self.poll = (self.poll + 1).min(self.maxpoll);
            self.score = 0;
        } else if self.score <= -POLL_LIMIT {
            self.poll = (self.poll - 1).max(self.minpoll);
            self.score = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> UnixNanos {
        UnixNanos((1_700_000_000.0e9 + secs * 1e9) as i64)
    }

    fn s(offset: f64, delay: f64, t: f64) -> FilterSample {
        FilterSample {
            offset,
            delay,
            dispersion: 1e-6,
            at: at(t),
        }
    }

    #[test]
    fn selects_the_lowest_delay_sample() {
        let mut f = ClockFilter::new(1e-9);
        for (i, (off, d)) in [
            (0.010, 0.050),
            (0.002, 0.010),
            (0.007, 0.030),
            (0.004, 0.020),
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(f.add(s(*off, *d, i as f64), 0.0), FilterVerdict::Accepted);
        }
        let out = f.evaluate(at(4.0), 0.0, 0.0).unwrap();
        assert_eq!(out.sample.delay, 0.010);
        assert_eq!(out.offset, 0.002);
        assert_eq!(out.count, 4);
        // Jitter: RMS of (8, 5, 2) ms over n - 1 = 3.
        let expect = ((0.008f64.powi(2) + 0.005f64.powi(2) + 0.002f64.powi(2)) / 3.0).sqrt();
        assert!((out.jitter - expect).abs() < 1e-12, "{}", out.jitter);
    }

    #[test]
    fn keeps_only_the_last_eight() {
        let mut f = ClockFilter::new(1e-9);
        // The lowest delay comes first and must fall out after 8 newer samples.
        f.add(s(0.0, 0.001, 0.0), 0.0);
        for i in 1..=8 {
            f.add(s(0.0, 0.010 + i as f64 * 1e-3, i as f64), 0.0);
        }
        assert_eq!(f.len(), 8);
        let out = f.evaluate(at(9.0), 0.0, 0.0).unwrap();
        assert_eq!(out.sample.delay, 0.011);
    }

    #[test]
    fn dispersion_grows_with_age_at_phi() {
        let mut f = ClockFilter::new(1e-9);
        f.add(s(0.0, 0.01, 0.0), 0.0);
        let fresh = f.evaluate(at(0.0), 0.0, 0.0).unwrap();
        let old = f.evaluate(at(1000.0), 0.0, 0.0).unwrap();
        assert!((fresh.dispersion - 1e-6).abs() < 1e-12);
        assert!((old.dispersion - (1e-6 + 1000.0 * PHI)).abs() < 1e-9);
        assert!((old.age - 1000.0).abs() < 1e-9);
        // A frequency tolerance adds to the growth rate.
        let tol = f.evaluate(at(1000.0), 0.0, 10e-6).unwrap();
        assert!((tol.dispersion - (1e-6 + 1000.0 * 25e-6)).abs() < 1e-9);
    }

    #[test]
    fn offsets_are_projected_with_the_frequency() {
        let mut f = ClockFilter::new(1e-9);
        // A raw clock 20 ppm slow: the offset grows 20 µs per second.
        for i in 0..8 {
            let t = i as f64 * 64.0;
            f.add(s(0.1 + 20e-6 * t, 0.01, t), 20e-6);
        }
        let out = f.evaluate(at(600.0), 20e-6, 0.0).unwrap();
        assert!((out.offset - (0.1 + 20e-6 * 600.0)).abs() < 1e-9);
        assert!(out.jitter < 1e-8);
    }

    #[test]
    fn popcorn_spike_is_dropped_then_a_persistent_change_is_followed() {
        let mut f = ClockFilter::new(1e-9);
        let noise = [0.0, 1e-3, -1e-3, 0.5e-3, -0.5e-3, 0.8e-3];
        for (i, n) in noise.iter().enumerate() {
            assert_eq!(
                f.add(s(0.1 + n, 0.02, i as f64), 0.0),
                FilterVerdict::Accepted
            );
        }
        // 50 ms away with ~1 ms jitter: a spike.
        assert_eq!(f.add(s(0.15, 0.02, 6.0), 0.0), FilterVerdict::Spike);
        assert_eq!(f.spikes(), 1);
        // An ordinary sample is still accepted.
        assert_eq!(f.add(s(0.1002, 0.02, 7.0), 0.0), FilterVerdict::Accepted);
        // A real step of the source: dropped SPIKE_MAX_CONSECUTIVE times, then accepted.
        for i in 0..SPIKE_MAX_CONSECUTIVE {
            assert_eq!(
                f.add(s(0.3, 0.02, 8.0 + i as f64), 0.0),
                FilterVerdict::Spike
            );
        }
        assert_eq!(f.add(s(0.3, 0.02, 12.0), 0.0), FilterVerdict::Accepted);
    }

    #[test]
    fn no_spike_guard_before_jitter_is_established() {
        let mut f = ClockFilter::new(1e-9);
        f.add(s(0.1, 0.02, 0.0), 0.0);
        f.add(s(0.1, 0.02, 1.0), 0.0);
        assert_eq!(f.add(s(0.5, 0.02, 2.0), 0.0), FilterVerdict::Accepted);
    }

    #[test]
    fn reach_register_shifts() {
        let mut r = Reach::default();
        assert!(!r.is_reachable());
        r.record(true);
        r.record(false);
        r.record(true);
        assert_eq!(r.0, 0b101);
        assert_eq!(r.count(), 2);
        for _ in 0..7 {
            r.record(false);
        }
        assert!(r.is_reachable());
        r.record(false);
        assert!(!r.is_reachable());
    }

    #[test]
    fn iburst_then_adaptive_poll() {
        let mut p = PollControl::new(6, 10, true);
        for _ in 0..IBURST_COUNT {
            assert_eq!(p.interval(), 2.0);
            p.poll_done();
        }
        assert_eq!(p.interval(), 64.0);
        // Quiet source (0.1 ms jitter): the interval grows to maxpoll and stays there.
        for _ in 0..200 {
            p.adapt(0.0, 1e-4);
        }
        assert_eq!(p.poll(), 10);
        // Large residuals bring it down again, to minpoll at most.
        for _ in 0..200 {
            p.adapt(0.05, 1e-4);
        }
        assert_eq!(p.poll(), 6);
    }

    #[test]
    fn sub_second_polls_and_short_bursts() {
        let mut p = PollControl::new(-6, -2, true);
        assert_eq!(p.interval(), 1.0 / 64.0);
        for _ in 0..IBURST_COUNT {
            p.poll_done();
        }
        // 1.6 µs jitter limit at 1/64 s: 1 µs jitter lets it grow, 1 ms does not.
        for _ in 0..100 {
            p.adapt(0.0, 1e-6);
        }
        assert_eq!(p.poll(), -2);
        for _ in 0..100 {
            p.adapt(0.0, 1e-3);
        }
        assert_eq!(p.poll(), -6);
        assert_eq!(PollControl::new(-10, 99, false).poll(), MIN_POLL);
    }

    #[test]
    fn burst_restarts_when_reach_is_lost() {
        let mut p = PollControl::new(6, 10, true);
        for _ in 0..IBURST_COUNT {
            p.poll_done();
        }
        for _ in 0..20 {
            p.adapt(0.0, 1e-5);
        }
        assert!(p.poll() > 6);
        p.reach_lost();
        assert!(p.in_burst());
        assert_eq!(p.poll(), 6);
        assert!(!PollControl::new(6, 10, false).in_burst());
    }
}
