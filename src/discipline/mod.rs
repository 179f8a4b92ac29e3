//! The upstream discipline, sans IO: from measured samples to the [`ClockSnapshot`] the workers
//! serve.
//!
//! Nothing here opens a socket or reads a clock. The discipline thread polls the sources, turns
//! each checked reply into a [`Sample`] and feeds it in; time is always passed in, as the raw
//! local clock's [`UnixNanos`]. That makes the whole pipeline testable in virtual time.
//!
//! # Pipeline
//!
//! ```text
//!  on_sample(id, Sample) ─► reach register ─► clock filter (8 samples, min delay, spike guard)
//!                                              │            └─► poll control (minpoll..maxpoll, iburst)
//!  update(now) ──────────────────────────────► per-source: offset projected to now, jitter,
//!                                              root distance = max(MINDISP, Δroot+δ)/2 + Eroot + ε + ψ
//!                                              │
//!                                              ▼
//!                        intersection (Marzullo, majority) ─► truechimers / falsetickers
//!                        clustering (selection jitter)      ─► survivors / outliers
//!                        combining (weights 1/root distance) ─► offset, system peer, jitter, leap
//!                                              │
//!                        frequency regression over the combined offset ─► frequency ± stderr
//!                                              ▼
//!                        SystemEstimate (Synchronized / Holdover / Local / Unsynchronized)
//!                                              │
//!  snapshot(&estimate) ─► steer: slew or step the Correction ─► ClockSnapshot to publish
//! ```
//!
//! # What offsets mean
//!
//! A sample's offset is the source's time minus the **raw** local clock (the exchange's t1 and
//! t4 are stamped with the uncooked clock the workers also read). The discipline estimates the
//! raw clock's error as a line, `offset(t) = offset + frequency × (t − at)`, and the published
//! [`Correction`] serves `raw + offset(raw)`. There is no feedback through the served clock, so
//! the estimate is the correction itself: when three sources say +200 ms the estimate is
//! +200 ms, and the served clock, once steered, is 200 ms ahead of raw.
//!
//! Samples age: the filter's chosen sample may be several polls old, so offsets are projected to
//! the evaluation instant with the current frequency estimate (once the regression is
//! trustworthy: see [`USABLE_FREQ_STDERR`]), and the dispersion grows at PHI plus the frequency
//! uncertainty.
//!
//! # Driving it
//!
//! * [`Discipline::add_source`] for every upstream address (a pool contributes several).
//! * After each poll: [`Discipline::on_sample`] with the measurement, or
//!   [`Discipline::on_unreachable`] when no usable reply came; then wait
//!   [`Discipline::poll_interval`] seconds before polling that source again.
//! * At least once a second: [`Discipline::update`], and when it returns an estimate,
//!   [`Discipline::snapshot`] and publish the result through
//!   [`SharedClock`](crate::clock::SharedClock). Re-steering every second is what ends a slew.
//!
//! # Holdover
//!
//! While no selection is possible the estimate is [`SyncStatus::Holdover`]: served time keeps
//! running on the last frequency and the root dispersion grows from the last update. After
//! `holdover` seconds without a selection it becomes [`SyncStatus::Local`] (when a local
//! stratum is configured) or [`SyncStatus::Unsynchronized`] (LI=3, stratum 16).
#![forbid(unsafe_code)]

pub mod filter;
pub mod freq;
pub mod leap;
pub mod resolver;
pub mod select;
pub mod served;
pub mod sources;
pub mod stats;
pub mod system;
pub mod thread;
pub mod tracking;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::clock::{ClockSnapshot, Correction, DEFAULT_DISPERSION_RATE, LOCAL_REFID};
use crate::proto::{Exchange, Header, Leap, NtpShort, UnixNanos};

pub use filter::{ClockFilter, FilterVerdict, PollControl, Reach, PHI};
pub use freq::{FreqConfig, FreqEstimate, FreqEstimator, SteerAction, SteerConfig, StepPolicy};
pub use select::{SelectError, SelectParams, Verdict};

use filter::{secs_between, FilterSample};
use freq::{steer, FreqPoint};
use select::Candidate;

/// RFC 5905 MINDISP: the root delay plus delay counted in a root distance is at least this,
/// seconds.
pub const MINDISP: f64 = 1e-3;
/// Frequency uncertainty assumed before the regression has a usable estimate (dimensionless).
pub const UNKNOWN_FREQ_TOLERANCE: f64 = 100e-6;
/// The regression's frequency is used (for projection and the correction) only once its
/// standard error is below this (dimensionless)...
pub const USABLE_FREQ_STDERR: f64 = 5e-6;
/// ...its points span at least this many seconds...
pub const USABLE_FREQ_SPAN: f64 = 120.0;
/// ...it rests on at least this many points, and it was not clamped. Before that the
/// frequency is taken as 0 ± [`UNKNOWN_FREQ_TOLERANCE`]: the points of the first minutes are
/// few, short and correlated (the filters reuse their lowest-delay samples), and a confident
/// wrong frequency would do more harm than none.
pub const USABLE_FREQ_POINTS: usize = 8;

/// The frequency tolerance used to age dispersion for a frequency standard error: three
/// standard errors once the frequency is known, [`UNKNOWN_FREQ_TOLERANCE`] before.
fn freq_tolerance(stderr: f64) -> f64 {
    if stderr >= UNKNOWN_FREQ_TOLERANCE {
        UNKNOWN_FREQ_TOLERANCE
    } else {
        3.0 * stderr
    }
}

fn usable(e: &FreqEstimate) -> bool {
    e.freq_stderr < USABLE_FREQ_STDERR
        && e.span >= USABLE_FREQ_SPAN
        && e.used >= USABLE_FREQ_POINTS
        && !e.clamped
}
/// The regression's prediction replaces the combined offset only within this many jitters.
pub const SMOOTHING_GATE: f64 = 4.0;
/// A source whose newest sample is older than this many poll intervals counts as unreachable.
pub const STALE_POLLS: f64 = 8.0;

/// Identifies a source (the discipline thread maps addresses to ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId(pub u32);

/// Per-source configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceParams {
    /// Prefer this source as system peer (and combine only preferred survivors when any).
    pub prefer: bool,
    /// Lowest poll exponent, log2 seconds (−6..=17).
    pub minpoll: i8,
    /// Highest poll exponent, log2 seconds (≥ minpoll).
    pub maxpoll: i8,
    /// Start (and restart after losing reach) with a burst of quick polls.
    pub iburst: bool,
    /// The reference id we publish while this source is the system peer: see
    /// [`refid_for_addr`].
    pub refid: [u8; 4],
}

impl Default for SourceParams {
    fn default() -> Self {
        SourceParams {
            prefer: false,
            minpoll: 6,
            maxpoll: 10,
            iburst: true,
            refid: [0; 4],
        }
    }
}

/// The reference id for an IPv4 source: its address.
pub fn refid_ipv4(addr: Ipv4Addr) -> [u8; 4] {
    addr.octets()
}

/// The reference id for an IPv6 source (RFC 5905 §7.3): the first four bytes of the MD5 digest
/// of its 16 address bytes. meridian has no MD5 dependency in the discipline, so the IO layer
/// computes the digest and passes its first four bytes here.
pub fn refid_ipv6_from_md5_prefix(md5_first_four: [u8; 4]) -> [u8; 4] {
    md5_first_four
}

/// The reference id for `addr`; for IPv6 `md5_first_four` must return the first four bytes of
/// the MD5 digest of the 16 address bytes.
pub fn refid_for_addr(addr: IpAddr, md5_first_four: impl FnOnce(&[u8; 16]) -> [u8; 4]) -> [u8; 4] {
    match addr {
        IpAddr::V4(a) => refid_ipv4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => refid_ipv4(v4),
            None => refid_ipv6_from_md5_prefix(md5_first_four(&a.octets())),
        },
    }
}

/// One measurement of a source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Source time minus raw local time, seconds (positive: the source is ahead).
    pub offset: f64,
    /// Round-trip delay, seconds (small negative values are taken as 0).
    pub delay: f64,
    /// The source's root delay, seconds.
    pub root_delay: f64,
    /// The source's root dispersion, seconds.
    pub root_dispersion: f64,
    /// The source's stratum (1..=15).
    pub stratum: u8,
    /// The source's leap indicator.
    pub leap: Leap,
    /// The source's own reference id (for reports and loop checks).
    pub refid: [u8; 4],
    /// Raw local time the reply was received (t4).
    pub at: UnixNanos,
}

impl Sample {
    /// A sample from a reply checked by [`crate::proto::client::check_reply`] and the
    /// exchange's timestamps, t1 and t4 taken from the raw local clock; `at` is t4 as raw
    /// [`UnixNanos`].
    pub fn from_reply(reply: &Header, ex: &Exchange, at: UnixNanos) -> Sample {
        Sample {
            offset: ex.offset_nanos() as f64 * 1e-9,
            delay: ex.delay_nanos() as f64 * 1e-9,
            root_delay: reply.root_delay.as_secs_f64(),
            root_dispersion: reply.root_dispersion.as_secs_f64(),
            stratum: reply.stratum,
            leap: reply.leap,
            refid: reply.reference_id,
            at,
        }
    }

    fn is_usable(&self) -> bool {
        self.offset.is_finite()
            && self.delay.is_finite()
            && self.root_delay.is_finite()
            && self.root_dispersion.is_finite()
            && self.root_delay >= 0.0
            && self.root_dispersion >= 0.0
            && (1..16).contains(&self.stratum)
            && self.leap != Leap::Unsynchronized
    }
}

/// What happened to a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleOutcome {
    /// Stored in the source's filter.
    Accepted,
    /// Dropped as a popcorn spike (the source still counts as reachable).
    Spike,
    /// Unusable (not finite, stratum 0 or ≥ 16, LI=3): counted as an unanswered poll.
    Invalid,
    /// No source with that id.
    UnknownSource,
}

/// A source's state, for logs and reports (chrony's `*`, `+`, `-`, `x`, `?`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceState {
    /// The system peer.
    Selected,
    /// A survivor combined into the system offset.
    Candidate,
    /// Agrees with the majority but is not combined (clustered out, or a `prefer` source
    /// exists).
    Outlier,
    /// Outside the majority's intersection, or no majority exists.
    Falseticker,
    /// Not usable: no reply in the last 8 polls, no sample yet, newest sample stale, or root
    /// distance above `max_distance`.
    Unreachable,
}

impl SourceState {
    /// chrony's one-character mark.
    pub fn mark(self) -> char {
        match self {
            SourceState::Selected => '*',
            SourceState::Candidate => '+',
            SourceState::Outlier => '-',
            SourceState::Falseticker => 'x',
            SourceState::Unreachable => '?',
        }
    }
}

/// A source as of the last [`Discipline::update`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SourceReport {
    pub id: SourceId,
    pub state: SourceState,
    /// Reachability register (newest poll in bit 0).
    pub reach: u8,
    /// Current poll exponent, log2 seconds.
    pub poll: i8,
    /// Samples in the filter.
    pub samples: usize,
    /// Popcorn spikes dropped so far.
    pub spikes: u64,
    /// The filter's offset projected to the update instant, seconds (0 without samples).
    pub offset: f64,
    /// Delay of the filter's selected sample, seconds.
    pub delay: f64,
    /// Filter jitter, seconds.
    pub jitter: f64,
    /// Root distance, seconds.
    pub root_distance: f64,
    /// The source's stratum (0 without samples).
    pub stratum: u8,
}

/// The discipline's synchronisation state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncStatus {
    /// A selection succeeded at this update.
    Synchronized,
    /// No selection now, but one within the last `holdover` seconds: serve on the last
    /// estimate with growing dispersion.
    Holdover,
    /// Holdover expired (or no sync within `holdover` of start) and a local stratum is
    /// configured.
    Local,
    /// Holdover expired and no local fallback: LI=3.
    Unsynchronized,
}

/// The system's view after an update.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemEstimate {
    pub status: SyncStatus,
    /// Raw local time this estimate refers to (the `now` of [`Discipline::update`]).
    pub at: UnixNanos,
    /// Best estimate of true time minus raw time at `at`, seconds: the regression line's
    /// value when it agrees with `measured_offset`, else `measured_offset`; predicted from the
    /// last synchronised update in holdover.
    pub offset: f64,
    /// The combined offset of this update's survivors, seconds (equal to `offset` when not
    /// synchronised).
    pub measured_offset: f64,
    /// Frequency error of the raw clock (dimensionless, d offset / dt); 0 until known.
    pub frequency: f64,
    /// Standard error of `frequency` (dimensionless); [`UNKNOWN_FREQ_TOLERANCE`] until known.
    pub frequency_stderr: f64,
    /// Root delay to the primary reference, seconds.
    pub root_delay: f64,
    /// Root dispersion at `at`, seconds.
    pub root_dispersion: f64,
    /// Growth of root dispersion, seconds per second.
    pub dispersion_rate: f64,
    /// System jitter, seconds.
    pub jitter: f64,
    /// Our stratum (system peer's + 1; local stratum; 16 when unsynchronised).
    pub stratum: u8,
    /// Reference id to publish.
    pub refid: [u8; 4],
    /// Leap indicator to publish.
    pub leap: Leap,
    /// The system peer at this update (None unless synchronised).
    pub system_peer: Option<SourceId>,
    /// Every source, ordered by id.
    pub sources: Vec<SourceReport>,
}

/// Discipline settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoreConfig {
    /// Minimum number of agreeing sources to synchronise (`min-sources`).
    pub min_sources: usize,
    /// Clustering keeps at least this many survivors.
    pub min_survivors: usize,
    /// Sources with a larger root distance are not selectable, seconds (RFC MAXDIST).
    pub max_distance: f64,
    /// Seconds without a selection before holdover ends.
    pub holdover: f64,
    /// Stratum to fall back to when holdover ends (None: become unsynchronised).
    pub local_stratum: Option<u8>,
    /// log2 seconds of the local clock's read precision (published, and the floor of sample
    /// dispersion and jitter).
    pub precision: i8,
    /// Steps are allowed only during the first N synchronised updates (None: always). The
    /// first synchronised update always steps.
    pub step_updates: Option<u32>,
    pub freq: FreqConfig,
    pub steer: SteerConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            min_sources: 1,
            min_survivors: 3,
            max_distance: 1.5,
            holdover: 3600.0,
            local_stratum: None,
            precision: -20,
            step_updates: None,
            freq: FreqConfig::default(),
            steer: SteerConfig::default(),
        }
    }
}

struct Source {
    cfg: SourceParams,
    filter: ClockFilter,
    reach: Reach,
    poll: PollControl,
    /// The last accepted sample (its root delay, dispersion, stratum and leap count).
    last: Option<Sample>,
}

/// System values at the last successful selection (what holdover runs on).
#[derive(Clone, Copy, Debug)]
struct LastSync {
    at: UnixNanos,
    offset: f64,
    root_delay: f64,
    root_dispersion: f64,
    jitter: f64,
    stratum: u8,
    refid: [u8; 4],
    leap: Leap,
}

/// The discipline state machine (see the module documentation).
pub struct Discipline {
    cfg: CoreConfig,
    sources: BTreeMap<SourceId, Source>,
    freq: FreqEstimator,
    /// A sample was accepted since the last regression point.
    new_data: bool,
    started: Option<UnixNanos>,
    last_sync: Option<LastSync>,
    reports: Vec<SourceReport>,
    published: ClockSnapshot,
    synced_updates: u32,
    /// The `now` of the last [`Discipline::update`].
    updated_at: Option<UnixNanos>,
}

impl Discipline {
    /// A discipline with no sources, publishing nothing yet.
    pub fn new(cfg: CoreConfig) -> Self {
        Discipline {
            cfg,
            sources: BTreeMap::new(),
            freq: FreqEstimator::new(cfg.freq),
            new_data: false,
            started: None,
            last_sync: None,
            reports: Vec::new(),
            published: ClockSnapshot::unsynchronized(cfg.precision),
            synced_updates: 0,
            updated_at: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    fn precision_secs(&self) -> f64 {
        2f64.powi(self.cfg.precision.into())
    }

    /// Adds a source, or resets it (filter, reach, poll) when `id` exists.
    pub fn add_source(&mut self, id: SourceId, cfg: SourceParams) {
        let src = Source {
            cfg,
            filter: ClockFilter::new(self.precision_secs()),
            reach: Reach::default(),
            poll: PollControl::new(cfg.minpoll, cfg.maxpoll, cfg.iburst),
            last: None,
        };
        self.sources.insert(id, src);
    }

    /// Removes a source; false when unknown.
    pub fn remove_source(&mut self, id: SourceId) -> bool {
        self.sources.remove(&id).is_some()
    }

    /// The ids of all sources, ascending.
    pub fn source_ids(&self) -> Vec<SourceId> {
        self.sources.keys().copied().collect()
    }

    /// (frequency to use, its tolerance).
    fn freq_now(&self) -> (f64, f64) {
        let (freq, stderr) = self.freq_stderr_now();
        (freq, freq_tolerance(stderr))
    }

    /// (frequency to use, its standard error).
    fn freq_stderr_now(&self) -> (f64, f64) {
        match self.freq.estimate() {
            Some(e) if usable(&e) => (e.freq, e.freq_stderr),
            _ => (0.0, UNKNOWN_FREQ_TOLERANCE),
        }
    }

    /// The current frequency estimate of the raw clock and its standard error (None until
    /// usable).
    pub fn frequency(&self) -> Option<(f64, f64)> {
        self.freq
            .estimate()
            .filter(usable)
            .map(|e| (e.freq, e.freq_stderr))
    }

    /// Feeds the result of one poll that produced a reply.
    pub fn on_sample(&mut self, id: SourceId, sample: Sample) -> SampleOutcome {
        let (freq, _) = self.freq_now();
        let precision = self.precision_secs();
        let Some(src) = self.sources.get_mut(&id) else {
            return SampleOutcome::UnknownSource;
        };
        src.poll.poll_done();
        if !sample.is_usable() {
            let was = src.reach.is_reachable();
            src.reach.record(false);
            if was && !src.reach.is_reachable() {
                src.poll.reach_lost();
            }
            return SampleOutcome::Invalid;
        }
        src.reach.record(true);
        let delay = sample.delay.max(0.0);
        let before = src.filter.evaluate(sample.at, freq, 0.0);
        let verdict = src.filter.add(
            FilterSample {
                offset: sample.offset,
                delay,
                dispersion: precision + PHI * delay,
                at: sample.at,
            },
            freq,
        );
        match verdict {
            FilterVerdict::Spike => SampleOutcome::Spike,
            FilterVerdict::Accepted => {
                if let (Some(b), Some(after)) = (before, src.filter.evaluate(sample.at, freq, 0.0))
                {
                    if b.count >= 2 {
                        src.poll.adapt(sample.offset - b.offset, after.jitter);
                    }
                }
                src.last = Some(sample);
                self.new_data = true;
                SampleOutcome::Accepted
            }
        }
    }

    /// Feeds the result of one poll that produced no usable reply (timeout, error). Returns
    /// false for an unknown id.
    pub fn on_unreachable(&mut self, id: SourceId) -> bool {
        let Some(src) = self.sources.get_mut(&id) else {
            return false;
        };
        src.poll.poll_done();
        let was = src.reach.is_reachable();
        src.reach.record(false);
        if was && !src.reach.is_reachable() {
            src.poll.reach_lost();
        }
        true
    }

    /// Seconds to wait after the poll just reported before polling `id` again.
    pub fn poll_interval(&self, id: SourceId) -> Option<f64> {
        self.sources.get(&id).map(|s| s.poll.interval())
    }

    /// Starts a burst of quick polls of `id` (`sync-now`); false for an unknown id.
    pub fn start_burst(&mut self, id: SourceId) -> bool {
        self.sources
            .get_mut(&id)
            .map(|s| s.poll.start_burst())
            .is_some()
    }

    /// The same in nanoseconds.
    pub fn poll_interval_nanos(&self, id: SourceId) -> Option<i64> {
        self.poll_interval(id).map(|s| (s * 1e9).round() as i64)
    }

    /// The per-source reports of the last update.
    pub fn sources(&self) -> &[SourceReport] {
        &self.reports
    }

    /// The last snapshot produced by [`Discipline::snapshot`] (initially unsynchronised).
    pub fn published(&self) -> &ClockSnapshot {
        &self.published
    }

    /// Runs selection at raw time `now` and returns the system estimate, or None while nothing
    /// can be published yet (never synchronised, and no local fallback due).
    pub fn update(&mut self, now: UnixNanos) -> Option<SystemEstimate> {
        let started = *self.started.get_or_insert(now);
        self.updated_at = Some(now);
        let (freq, tol) = self.freq_now();

        let mut reports = Vec::with_capacity(self.sources.len());
        // Per candidate: (index into reports, candidate, filter output, last sample).
        let mut cands: Vec<Candidate> = Vec::new();
        let mut meta = Vec::new();
        for (&id, src) in self.sources.iter() {
            let mut rep = SourceReport {
                id,
                state: SourceState::Unreachable,
                reach: src.reach.0,
                poll: src.poll.poll(),
                samples: src.filter.len(),
                spikes: src.filter.spikes(),
                offset: 0.0,
                delay: 0.0,
                jitter: 0.0,
                root_distance: 0.0,
                stratum: 0,
            };
            if let (Some(last), Some(out)) = (src.last, src.filter.evaluate(now, freq, tol)) {
                let distance = (last.root_delay + out.sample.delay).max(MINDISP) / 2.0
                    + last.root_dispersion
                    + out.dispersion
                    + out.jitter;
                rep.offset = out.offset;
                rep.delay = out.sample.delay;
                rep.jitter = out.jitter;
                rep.root_distance = distance;
                rep.stratum = last.stratum;
                let newest_age = src
                    .filter
                    .newest()
                    .map_or(f64::INFINITY, |s| secs_between(now, s.at));
                let stale = newest_age > STALE_POLLS * 2f64.powi(src.poll.poll().into());
                if src.reach.is_reachable() && !stale && distance <= self.cfg.max_distance {
                    cands.push(Candidate {
                        offset: out.offset,
                        root_distance: distance,
                        jitter: out.jitter,
                        stratum: last.stratum,
                        leap: last.leap,
                        prefer: src.cfg.prefer,
                    });
                    meta.push((reports.len(), id, out, last));
                }
            }
            reports.push(rep);
        }

        let params = SelectParams {
            min_sources: self.cfg.min_sources,
            min_survivors: self.cfg.min_survivors,
        };
        let result = select::select(&cands, &params);
        let estimate = match result {
            Ok(sel) => {
                for (k, v) in sel.verdicts.iter().enumerate() {
                    reports[meta[k].0].state = match v {
                        Verdict::SystemPeer => SourceState::Selected,
                        Verdict::Combined => SourceState::Candidate,
                        Verdict::Survivor | Verdict::Outlier => SourceState::Outlier,
                        Verdict::Falseticker => SourceState::Falseticker,
                    };
                }
                // A regression point: the weighted mean of the combined sources' selected
                // samples at their weighted mean time. For a clock drifting linearly this lies
                // on the line whatever frequency was used for projection.
                if self.new_data {
                    self.new_data = false;
                    let (mut sw, mut st, mut so) = (0.0, 0.0, 0.0);
                    for &k in &sel.combined.combined {
                        let w = select::weight(&cands[k]);
                        let s = meta[k].2.sample;
                        sw += w;
                        st += w * secs_between(s.at, now);
                        so += w * s.offset;
                    }
                    let point = FreqPoint {
                        at: now.add_nanos((st / sw * 1e9).round() as i64),
                        offset: so / sw,
                        weight: 1.0,
                    };
                    let repeat = self
                        .freq
                        .last()
                        .is_some_and(|p| p.at == point.at && p.offset == point.offset);
                    if !repeat {
                        self.freq.add(point);
                    }
                }
                let (freq, tol) = self.freq_now();
                let offset = self.smoothed_offset(now, sel.combined.offset, sel.combined.jitter);
                let (_, peer_id, peer_out, peer_last) = meta[sel.combined.system_peer];
                let last = LastSync {
                    at: now,
                    offset,
                    root_delay: peer_last.root_delay + peer_out.sample.delay,
                    root_dispersion: peer_last.root_dispersion
                        + peer_out.dispersion
                        + sel.combined.jitter,
                    jitter: sel.combined.jitter,
                    stratum: peer_last.stratum.saturating_add(1).min(15),
                    refid: self.sources[&peer_id].cfg.refid,
                    leap: sel.combined.leap,
                };
                self.last_sync = Some(last);
                Some(SystemEstimate {
                    status: SyncStatus::Synchronized,
                    at: now,
                    offset: last.offset,
                    measured_offset: sel.combined.offset,
                    frequency: freq,
                    frequency_stderr: self.freq_stderr_now().1,
                    root_delay: last.root_delay,
                    root_dispersion: last.root_dispersion,
                    dispersion_rate: PHI + tol,
                    jitter: last.jitter,
                    stratum: last.stratum,
                    refid: last.refid,
                    leap: last.leap,
                    system_peer: Some(peer_id),
                    sources: Vec::new(),
                })
            }
            Err(_) => {
                for &(r, ..) in &meta {
                    reports[r].state = SourceState::Falseticker;
                }
                self.unsynced_estimate(now, started, freq, tol)
            }
        };
        self.reports = reports;
        estimate.map(|mut e| {
            e.sources = self.reports.clone();
            e
        })
    }

    /// The offset to steer to: the regression line's prediction at `now` when the frequency is
    /// usable and the combined offset agrees with it within [`SMOOTHING_GATE`] × the larger of
    /// the system jitter and the fit's residual RMS (the line averages dozens of points, the
    /// combined offset only the filters' current picks); otherwise the combined offset.
    fn smoothed_offset(&self, now: UnixNanos, combined: f64, jitter: f64) -> f64 {
        match self.freq.estimate() {
            Some(e) if usable(&e) => {
                let predicted = e.predict(now);
                if (combined - predicted).abs() <= SMOOTHING_GATE * jitter.max(e.residual_rms) {
                    predicted
                } else {
                    combined
                }
            }
            _ => combined,
        }
    }

    /// The estimate when no selection is possible at `now`.
    fn unsynced_estimate(
        &self,
        now: UnixNanos,
        started: UnixNanos,
        freq: f64,
        tol: f64,
    ) -> Option<SystemEstimate> {
        let stderr = self.freq_stderr_now().1;
        let base = |status, offset, stratum, refid, leap| SystemEstimate {
            status,
            at: now,
            offset,
            measured_offset: offset,
            frequency: freq,
            frequency_stderr: stderr,
            root_delay: 0.0,
            root_dispersion: 0.0,
            dispersion_rate: DEFAULT_DISPERSION_RATE,
            jitter: 0.0,
            stratum,
            refid,
            leap,
            system_peer: None,
            sources: Vec::new(),
        };
        let local = |offset| {
            self.cfg
                .local_stratum
                .map(|s| base(SyncStatus::Local, offset, s, LOCAL_REFID, Leap::NoWarning))
        };
        match self.last_sync {
            None => {
                if secs_between(now, started) >= self.cfg.holdover {
                    local(0.0)
                } else {
                    None
                }
            }
            Some(ls) => {
                let elapsed = secs_between(now, ls.at).max(0.0);
                let offset = ls.offset + freq * elapsed;
                if elapsed < self.cfg.holdover {
                    Some(SystemEstimate {
                        root_delay: ls.root_delay,
                        root_dispersion: ls.root_dispersion + (PHI + tol) * elapsed,
                        dispersion_rate: PHI + tol,
                        jitter: ls.jitter,
                        ..base(SyncStatus::Holdover, offset, ls.stratum, ls.refid, ls.leap)
                    })
                } else {
                    local(offset).or(Some(base(
                        SyncStatus::Unsynchronized,
                        offset,
                        16,
                        [0; 4],
                        Leap::Unsynchronized,
                    )))
                }
            }
        }
    }

    /// The snapshot to publish for `est` (call once per estimate: it advances the steering and
    /// remembers the result as the published state).
    ///
    /// * Synchronised: the correction is slewed toward the estimate, or stepped (always at the
    ///   first synchronisation, otherwise above the step threshold while steps are allowed);
    ///   a step bumps the epoch. Reference time is now, root dispersion includes the error
    ///   still being slewed.
    /// * Holdover: served time continues on the estimated frequency (any slew in progress
    ///   stops); reference time and root dispersion stay those of the last update, so the
    ///   dispersion keeps growing at the published rate.
    /// * Local: synchronised at the local stratum with refid 127.127.1.1, served time
    ///   continuing.
    /// * Unsynchronised: LI=3, stratum 16, served time continuing.
    pub fn snapshot(&mut self, est: &SystemEstimate) -> ClockSnapshot {
        let prev = self.published;
        let mut snap = prev;
        snap.precision = self.cfg.precision;
        let now = est.at;
        // Served time continuing at the estimated frequency, without slew.
        let hold = |c: &Correction| {
            let served = c.cook(now).nanos_since(now) as f64 * 1e-9;
            steer(
                c,
                served,
                est.frequency,
                now,
                StepPolicy::Never,
                &self.cfg.steer,
            )
            .correction
        };
        match est.status {
            SyncStatus::Synchronized => {
                let policy = if self.synced_updates == 0 {
                    StepPolicy::Always
                } else if self
                    .cfg
                    .step_updates
                    .is_some_and(|n| self.synced_updates >= n)
                {
                    StepPolicy::Never
                } else {
                    StepPolicy::AboveThreshold
                };
                let s = steer(
                    &prev.correction,
                    est.offset,
                    est.frequency,
                    now,
                    policy,
                    &self.cfg.steer,
                );
                if s.action == SteerAction::Step {
                    snap.epoch = snap.epoch.wrapping_add(1);
                }
                snap.correction = s.correction;
                snap.synchronized = true;
                snap.leap = est.leap;
                snap.stratum = est.stratum;
                snap.root_delay = NtpShort::from_secs_f64(est.root_delay);
                snap.root_dispersion_ns =
                    ((est.root_dispersion + s.remaining.abs()) * 1e9).round() as i64;
                snap.dispersion_rate = est.dispersion_rate;
                snap.reference_id = est.refid;
                snap.reference_time = s.correction.cook(now);
                self.synced_updates = self.synced_updates.saturating_add(1);
            }
            SyncStatus::Holdover => {
                snap.correction = hold(&prev.correction);
                snap.synchronized = true;
                snap.leap = est.leap;
            }
            SyncStatus::Local => {
                snap.correction = hold(&prev.correction);
                snap.synchronized = true;
                snap.leap = Leap::NoWarning;
                snap.stratum = est.stratum;
                snap.reference_id = LOCAL_REFID;
                snap.root_delay = NtpShort(0);
                snap.root_dispersion_ns = 0;
                snap.dispersion_rate = DEFAULT_DISPERSION_RATE;
                snap.reference_time = snap.correction.cook(now);
            }
            SyncStatus::Unsynchronized => {
                snap.correction = hold(&prev.correction);
                snap.synchronized = false;
                snap.leap = Leap::Unsynchronized;
                snap.stratum = 16;
                snap.reference_id = [0; 4];
            }
        }
        self.published = snap;
        snap
    }
}
