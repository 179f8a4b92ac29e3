//! The sources the discipline thread follows, behind one narrow interface. Each configured
//! `[[source]]` is a [`SourceDriver`]; [`Sources`] holds them for the runner, which only calls
//! [`Sources::poll`] (what is due), [`Sources::next_due`] and [`Sources::wait`] (sleep until then
//! or a reply), [`Sources::after_update`] (after each core update), [`Sources::report`] and, on a
//! reload, [`Sources::set`].
//!
//! Servers and pools are [`NetworkSource`]s: polled over UDP, their names looked up on the
//! resolver thread; what sets the kinds apart is answered by
//! [`SourceKind`](crate::config::SourceKind). The decisions are sans IO and take time as an
//! argument: when an address is polled and how long a reply is waited for ([`poll`]), when a
//! name is looked up and which of its addresses are taken ([`lookup`]), what a reply means
//! ([`reply`]); [`network`] is the thin IO layer over them and the
//! [`UpstreamSocket`](crate::io::upstream::UpstreamSocket)s.
//!
//! A new kind (reference clocks, peers) is one more [`SourceDriver`] and one line in
//! [`driver_for`].

pub mod lookup;
pub mod network;
pub mod poll;
pub mod reply;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::resolver::Resolver;
use super::stats::{SampleStats, SourceDetail};
use super::{Discipline, SourceId, SourceState};
use crate::config::{SourceConfig, SourceKind};
use crate::io::upstream::{self, UpstreamSocket};
use crate::proto::UnixNanos;

pub use network::NetworkSource;

/// The runner's time scales, as a source needs them to turn a measurement into a sample.
pub trait Timebase {
    /// Free-running raw time for an OS clock reading (the same in virtual mode).
    fn free(&self, os: UnixNanos) -> UnixNanos;
    /// What to add to the offset of a sample taken at free time `at` for leap seconds past;
    /// None within the guard around a leap (the sample is not used).
    fn leap_fix(&self, at: UnixNanos) -> Option<f64>;
}

/// What a driver may use of the runner's state during one call.
pub struct Cx<'a> {
    /// The sans-IO core: a driver adds its sources here, feeds them and removes them.
    pub core: &'a mut Discipline,
    pub timebase: &'a dyn Timebase,
    /// The driver's key (stable across reloads), for the resolver's answers.
    key: u64,
    resolver: &'a mut Resolver,
    next_id: &'a mut u32,
}

impl Cx<'_> {
    /// A new id for a source in the core.
    pub fn new_id(&mut self) -> SourceId {
        let id = SourceId(*self.next_id);
        *self.next_id += 1;
        id
    }

    /// Asks the resolver for `host`:`port`; never blocks. The answer comes to
    /// [`SourceDriver::on_resolved`].
    pub fn lookup(&mut self, host: &str, port: u16) {
        self.resolver.request(self.key, host, port);
    }
}

/// One configured `[[source]]` as the runner drives it, whatever its kind. Time is passed in;
/// what it may use of the runner comes in a [`Cx`].
pub trait SourceDriver: Send {
    /// The configuration it runs (a reload keeps a driver whose configuration is unchanged).
    fn config(&self) -> &SourceConfig;

    /// The earliest instant at which [`SourceDriver::poll`] has something to do (a request to
    /// send, a reply overdue, a lookup to ask for); None when only a reply or an answer can
    /// bring something.
    fn next_due(&self) -> Option<Instant>;

    /// Does what is due at `now`: asks for lookups, sends the polls whose time has come, gives
    /// up on replies overdue.
    fn poll(&mut self, now: Instant, cx: &mut Cx<'_>);

    /// The answer to a lookup it asked for, at `now`; `in_use` holds every address any source
    /// polls.
    fn on_resolved(
        &mut self,
        _answer: std::io::Result<Vec<SocketAddr>>,
        _in_use: &HashSet<SocketAddr>,
        _now: Instant,
        _cx: &mut Cx<'_>,
    ) {
    }

    /// The sockets to wait on, each with the core source it serves (appended to `out`).
    fn sockets<'a>(&'a self, _out: &mut Vec<(SourceId, &'a UpstreamSocket)>) {}

    /// The socket of `id` is readable: takes what is queued.
    fn on_readable(&mut self, _id: SourceId, _cx: &mut Cx<'_>) {}

    /// After each core update (the core's reports are fresh), at `now`: logs state changes and
    /// drops what is to be replaced.
    fn after_update(&mut self, now: Instant, cx: &mut Cx<'_>);

    /// Polls every address now and starts a burst of quick polls (`sync-now`), at `now`.
    fn sync_now(&mut self, _now: Instant, _core: &mut Discipline) {}

    /// Its rows of the report, appended to `out`.
    fn report(&self, core: &Discipline, out: &mut Vec<SourceStatus>);

    /// Removed by a reload: its sources leave the core.
    fn retire(&mut self, core: &mut Discipline);
}

/// The driver for `cfg`, first due at `now`: the one place a kind is given its driver.
pub fn driver_for(cfg: &SourceConfig, now: Instant) -> Box<dyn SourceDriver> {
    match cfg.kind {
        SourceKind::Server | SourceKind::Pool => Box::new(NetworkSource::new(cfg, now)),
    }
}

/// A source as reported in the counters report (`sources` array).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SourceStatus {
    /// The configured `address`.
    pub source: String,
    /// The address polled.
    pub address: SocketAddr,
    /// selected, candidate, outlier, falseticker, unreachable, denied, replaced.
    pub state: &'static str,
    pub reach: u8,
    pub poll: i8,
    /// Seconds (source minus raw clock, as the core sees it).
    pub offset: f64,
    pub delay: f64,
    pub jitter: f64,
    pub root_distance: f64,
    pub stratum: u8,
    pub requests: u64,
    pub replies: u64,
    pub kod_rate: u64,
    /// `server` or `pool`.
    pub kind: &'static str,
    /// Its last sample and the line through its samples (None before the first sample).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sample: Option<LastSample>,
}

/// A source's last sample and statistics, as [`SourceStatus`] reports them.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LastSample {
    /// Seconds from the sample to the last update.
    pub ago_s: f64,
    /// Source minus the raw local clock, seconds.
    pub measured_s: f64,
    /// Source minus the served clock, seconds.
    pub adjusted_s: f64,
    pub stats: Option<SampleStats>,
}

impl From<SourceDetail> for LastSample {
    fn from(d: SourceDetail) -> Self {
        LastSample {
            ago_s: d.last_rx_ago_s,
            measured_s: d.measured_s,
            adjusted_s: d.adjusted_s,
            stats: d.stats,
        }
    }
}

/// A driver and its key.
struct Entry {
    /// Stable across reloads (indices are not): how resolver answers find their source.
    key: u64,
    driver: Box<dyn SourceDriver>,
}

/// The configured sources (see the module documentation).
pub struct Sources {
    entries: Vec<Entry>,
    /// Looks names up off the discipline thread.
    resolver: Resolver,
    next_id: u32,
    next_key: u64,
}

impl Sources {
    /// Drivers for `configs`, first due at `now`; names go to `resolver`.
    pub fn new(configs: &[SourceConfig], resolver: Resolver, now: Instant) -> Sources {
        let mut sources = Sources {
            entries: Vec::new(),
            resolver,
            next_id: 0,
            next_key: 0,
        };
        for cfg in configs {
            sources.push(cfg, now);
        }
        sources
    }

    fn push(&mut self, cfg: &SourceConfig, now: Instant) {
        self.entries.push(Entry {
            key: self.next_key,
            driver: driver_for(cfg, now),
        });
        self.next_key += 1;
    }

    /// Takes up a reloaded list at `now`: a source whose configuration is unchanged keeps its
    /// state; the others leave the core, and the new ones start.
    pub fn set(&mut self, configs: &[SourceConfig], core: &mut Discipline, now: Instant) {
        let old_configs: Vec<&SourceConfig> =
            self.entries.iter().map(|e| e.driver.config()).collect();
        let kept = reconcile(&old_configs, configs);
        let mut old: Vec<Option<Entry>> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(Some)
            .collect();
        for (cfg, keep) in configs.iter().zip(kept) {
            match keep.and_then(|i| old[i].take()) {
                Some(entry) => self.entries.push(entry),
                None => {
                    tracing::info!("discipline: source {} added by reload", describe(cfg));
                    self.push(cfg, now);
                }
            }
        }
        for mut entry in old.into_iter().flatten() {
            tracing::info!(
                "discipline: source {} removed by reload",
                entry.driver.config().address
            );
            entry.driver.retire(core);
        }
    }

    /// Calls `f` with driver `i` and its [`Cx`].
    fn drive(
        &mut self,
        i: usize,
        core: &mut Discipline,
        timebase: &dyn Timebase,
        f: impl FnOnce(&mut dyn SourceDriver, &mut Cx<'_>),
    ) {
        let e = &mut self.entries[i];
        let mut cx = Cx {
            core,
            timebase,
            key: e.key,
            resolver: &mut self.resolver,
            next_id: &mut self.next_id,
        };
        f(e.driver.as_mut(), &mut cx);
    }

    /// Does what is due at `now` (lookups, polls, overdue replies), then takes up the lookup
    /// answers that have arrived. Never blocks.
    pub fn poll(&mut self, now: Instant, core: &mut Discipline, timebase: &dyn Timebase) {
        for i in 0..self.entries.len() {
            self.drive(i, core, timebase, |d, cx| d.poll(now, cx));
        }
        for answer in self.resolver.answers() {
            // A source removed by a reload meanwhile is simply gone.
            let Some(i) = self.entries.iter().position(|e| e.key == answer.key) else {
                continue;
            };
            let in_use = self.in_use();
            self.drive(i, core, timebase, |d, cx| {
                d.on_resolved(answer.result, &in_use, now, cx)
            });
        }
    }

    /// Every address polled.
    fn in_use(&self) -> HashSet<SocketAddr> {
        let mut sockets = Vec::new();
        for e in &self.entries {
            e.driver.sockets(&mut sockets);
        }
        sockets.iter().map(|(_, s)| s.peer()).collect()
    }

    /// The earliest instant a source has something to do (see [`SourceDriver::next_due`]).
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| e.driver.next_due())
            .min()
    }

    /// Waits up to `timeout` for replies and takes up those that came.
    pub fn wait(&mut self, timeout: Duration, core: &mut Discipline, timebase: &dyn Timebase) {
        let mut sockets = Vec::new();
        let mut owners = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            e.driver.sockets(&mut sockets);
            owners.resize(sockets.len(), i);
        }
        if sockets.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        let socks: Vec<&UpstreamSocket> = sockets.iter().map(|(_, s)| *s).collect();
        let readable = upstream::wait_readable(&socks, timeout).unwrap_or_else(|e| {
            tracing::warn!("discipline: waiting for replies: {e}");
            std::thread::sleep(timeout);
            vec![false; socks.len()]
        });
        // Members may be dropped while replies are taken up: each is found by its id.
        let ready: Vec<(usize, SourceId)> = readable
            .iter()
            .zip(sockets.iter().zip(owners))
            .filter(|(r, _)| **r)
            .map(|(_, ((id, _), i))| (i, *id))
            .collect();
        drop(socks);
        drop(sockets);
        for (i, id) in ready {
            self.drive(i, core, timebase, |d, cx| d.on_readable(id, cx));
        }
    }

    /// After each core update, at `now` (see [`SourceDriver::after_update`]).
    pub fn after_update(&mut self, now: Instant, core: &mut Discipline, timebase: &dyn Timebase) {
        for i in 0..self.entries.len() {
            self.drive(i, core, timebase, |d, cx| d.after_update(now, cx));
        }
    }

    /// Polls every source now with a burst of quick polls (`sync-now`).
    pub fn sync_now(&mut self, now: Instant, core: &mut Discipline) {
        for e in &mut self.entries {
            e.driver.sync_now(now, core);
        }
    }

    /// The report rows, in configuration order.
    pub fn report(&self, core: &Discipline) -> Vec<SourceStatus> {
        let mut rows = Vec::new();
        for e in &self.entries {
            e.driver.report(core, &mut rows);
        }
        rows
    }
}

/// For each of the `new` configurations, the index of the `old` one that carries on (equal,
/// and not taken by an earlier one), or None for a new source.
pub fn reconcile(old: &[&SourceConfig], new: &[SourceConfig]) -> Vec<Option<usize>> {
    let mut taken = vec![false; old.len()];
    new.iter()
        .map(|cfg| {
            let i = (0..old.len()).find(|&i| !taken[i] && old[i] == cfg)?;
            taken[i] = true;
            Some(i)
        })
        .collect()
}

/// A source as the logs name it: its address and options.
pub fn describe(s: &SourceConfig) -> String {
    let mut d = s.address.clone();
    let mut opts = vec![match s.kind {
        SourceKind::Server => "server".to_owned(),
        SourceKind::Pool => format!("pool, max {}", s.max_sources()),
    }];
    if s.iburst {
        opts.push("iburst".into());
    }
    if s.prefer {
        opts.push("prefer".into());
    }
    opts.push(format!("poll {}..{}", s.minpoll, s.maxpoll));
    d.push_str(&format!(" ({})", opts.join(", ")));
    d
}

/// A core state as the logs and the report name it.
pub fn state_name(s: SourceState) -> &'static str {
    match s {
        SourceState::Selected => "selected",
        SourceState::Candidate => "candidate",
        SourceState::Outlier => "outlier",
        SourceState::Falseticker => "falseticker",
        SourceState::Unreachable => "unreachable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions() {
        let mut s = SourceConfig::new("pool.example.net");
        s.kind = SourceKind::Pool;
        s.iburst = true;
        assert_eq!(
            describe(&s),
            "pool.example.net (pool, max 4, iburst, poll 6..10)"
        );
        let mut s = SourceConfig::new("192.0.2.1:1123");
        s.prefer = true;
        s.minpoll = 4;
        assert_eq!(describe(&s), "192.0.2.1:1123 (server, prefer, poll 4..10)");
    }

    #[test]
    fn a_reload_keeps_the_unchanged_sources_in_their_new_order() {
        let cfg = |a: &str| SourceConfig::new(a);
        let (a, b, c) = (cfg("a"), cfg("b"), cfg("c"));
        let mut b_iburst = cfg("b");
        b_iburst.iburst = true;
        let old = [&a, &b, &c];
        // c moves first and is kept; b changed, so it is a new source; d is new; a is gone.
        assert_eq!(
            reconcile(&old, &[c.clone(), b_iburst, cfg("d")]),
            vec![Some(2), None, None]
        );
        assert_eq!(
            reconcile(&old, &[a.clone(), b.clone(), c.clone()]),
            vec![Some(0), Some(1), Some(2)]
        );
        // An old source carries on once only.
        assert_eq!(
            reconcile(&[&a], &[a.clone(), a.clone()]),
            vec![Some(0), None]
        );
        assert_eq!(reconcile(&[], std::slice::from_ref(&a)), vec![None]);
    }
}
