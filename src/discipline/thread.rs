//! The discipline thread: the IO around the sans-IO [`Discipline`]. It resolves the configured
//! sources (a pool into several addresses), polls each on its own schedule through an
//! [`UpstreamSocket`], checks the replies, feeds the samples in, runs [`Discipline::update`] at
//! least once a second and publishes the resulting snapshot to the [`SharedClock`] the workers
//! read. It is the clock's single writer while sources are configured.
//!
//! Per poll: a random transmit timestamp (RFC 9109) that the reply must echo as its origin; a
//! reply counts only when it is mode 4, stratum 1..=15, LI ≠ 3 and its root distance is within
//! the core's `max_distance`. Timestamps t1 and t4 are raw clock readings (t4 the kernel's
//! receive stamp when there is one), never served time. Kiss-o'-death RATE doubles that
//! source's interval; DENY and RSTR stop using it.

// The IO shell of the discipline: it reads the clock to schedule polls and updates.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::leap::{self, LeapDays, LeapNote};
use super::resolver::{self, Resolver};
use super::served::ServedTime;
use super::system::{read_drift, write_drift, FollowAction, OsClock, RealClock, SystemSteering};
use super::{
    refid_for_addr, CoreConfig, Discipline, Sample, SourceId, SourceParams, SourceState,
    SteerConfig, SyncStatus,
};
use crate::clock::{ClockSnapshot, Correction, SharedClock};
use crate::config::{self, ClockMode, SourceKind};
use crate::io::upstream::{self, UpstreamSocket};
use crate::proto::client::{check_reply, exchange, root_distance_secs, ReplyError};
use crate::proto::server::client_request;
use crate::proto::{NtpTimestamp, UnixNanos, MAX_PACKET_LEN};
use crate::sys;

/// The NTP version we send.
const VERSION: u8 = 4;
/// Longest wait for a reply, seconds (shorter for short poll intervals).
const MAX_REPLY_WAIT: f64 = 1.0;
/// How often the core is updated and the clock republished.
const UPDATE_EVERY: Duration = Duration::from_secs(1);
/// Longest sleep of the loop (how quickly a stop is noticed).
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Consecutive bad polls (unreachable or falseticker) after which a pool member is replaced.
const POOL_REPLACE_POLLS: u32 = 8;
/// How often the drift file is written in `system` mode.
const DRIFT_EVERY: Duration = Duration::from_secs(600);
/// Highest poll exponent a RATE kiss can push a source to.
const MAX_BACKOFF_POLL: i8 = 17;

/// What the thread needs, taken from the configuration.
#[derive(Clone, Debug)]
pub struct DisciplineSettings {
    pub sources: Vec<config::SourceConfig>,
    pub clock: config::ClockConfig,
    /// log2 seconds of the local clock's read precision.
    pub precision: i8,
}

impl DisciplineSettings {
    /// The core's configuration for these settings.
    pub fn core_config(&self) -> CoreConfig {
        let c = &self.clock;
        CoreConfig {
            min_sources: c.min_sources.max(1),
            holdover: c.holdover,
            local_stratum: c.local_fallback.then_some(c.local_stratum),
            precision: self.precision,
            step_updates: Some(c.step_limit),
            steer: SteerConfig {
                step_threshold: c.step_threshold,
                ..SteerConfig::default()
            },
            ..CoreConfig::default()
        }
    }

    /// How many addresses the sources can give at most.
    pub fn max_addresses(&self) -> usize {
        self.sources
            .iter()
            .map(config::SourceConfig::max_sources)
            .sum()
    }
}

/// A source as reported in the counters report (`sources` array).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SourceStatus {
    /// The configured `address`.
    pub source: String,
    /// The address polled.
    pub address: SocketAddr,
    /// selected, candidate, outlier, falseticker, unreachable, denied.
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
}

/// The running discipline thread.
pub struct DisciplineThread {
    handle: Option<std::thread::JoinHandle<()>>,
    status: Arc<Mutex<Vec<SourceStatus>>>,
    /// A new source list for the thread to take up (a reload).
    pending: Arc<Mutex<Option<Vec<config::SourceConfig>>>>,
    stop: Arc<AtomicBool>,
}

impl DisciplineThread {
    /// Checks the settings (system mode needs CAP_SYS_TIME), logs the sources and starts the
    /// thread `meridian-discipline`. It stops when `stop` is set.
    pub fn spawn(
        settings: DisciplineSettings,
        shared: Arc<SharedClock>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<DisciplineThread> {
        if settings.sources.is_empty() {
            bail!("the discipline thread needs at least one [[source]]");
        }
        let system = if settings.clock.mode == ClockMode::System {
            let refusal =
                config::system_mode_refusal(cfg!(linux_io), sys::timex::has_cap_sys_time());
            if let Some(why) = refusal {
                bail!("clock.mode = {why}");
            }
            let base = match settings.clock.drift_file.as_deref().and_then(read_drift) {
                Some(ppm) => ppm,
                None => sys::timex::read().map(|k| k.freq_ppm).unwrap_or(0.0),
            };
            let steer = SteerConfig::default();
            Some(
                SystemSteering::new(RealClock, base, steer.slew_time, steer.max_slew_rate)
                    .context("taking control of the OS clock (clock_adjtime)")?,
            )
        } else {
            if settings.clock.drift_file.is_some() {
                tracing::warn!("clock.drift-file is used only with clock.mode = \"system\"");
            }
            None
        };
        let described: Vec<String> = settings.sources.iter().map(describe).collect();
        tracing::info!(
            mode = ?settings.clock.mode,
            min_sources = settings.clock.min_sources,
            "discipline: {} source(s): {}",
            settings.sources.len(),
            described.join(", ")
        );
        if settings.max_addresses() < 3 {
            tracing::warn!(
                "fewer than 3 upstream sources configured ({}): a falseticker cannot be outvoted",
                settings.max_addresses()
            );
        }
        let status = Arc::new(Mutex::new(Vec::new()));
        let pending = Arc::new(Mutex::new(None));
        let mut runner = Runner::new(settings, shared, status.clone(), system)?;
        runner.pending = pending.clone();
        let stop_thread = stop.clone();
        let handle = std::thread::Builder::new()
            .name("meridian-discipline".into())
            .spawn(move || runner.run(&stop_thread))
            .context("spawning the discipline thread")?;
        Ok(DisciplineThread {
            handle: Some(handle),
            status,
            pending,
            stop,
        })
    }

    /// Replaces the configured sources (a reload): sources no longer listed are dropped,
    /// new ones are resolved and polled, unchanged ones keep their state. Taken up by the
    /// thread within ~100 ms.
    pub fn set_sources(&self, sources: Vec<config::SourceConfig>) {
        if let Ok(mut p) = self.pending.lock() {
            *p = Some(sources);
        }
    }

    /// The sources as of the last update.
    pub fn sources(&self) -> Vec<SourceStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the thread and waits for it.
    pub fn join(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn describe(s: &config::SourceConfig) -> String {
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

fn state_name(s: SourceState) -> &'static str {
    match s {
        SourceState::Selected => "selected",
        SourceState::Candidate => "candidate",
        SourceState::Outlier => "outlier",
        SourceState::Falseticker => "falseticker",
        SourceState::Unreachable => "unreachable",
    }
}

/// The reference id for a source address (IPv6: first four bytes of the MD5 of the address).
pub fn refid_of(addr: SocketAddr) -> [u8; 4] {
    use md5::{Digest, Md5};
    refid_for_addr(addr.ip(), |bytes| {
        let d = Md5::digest(bytes);
        [d[0], d[1], d[2], d[3]]
    })
}

/// One request in flight.
struct Pending {
    nonce: NtpTimestamp,
    /// Raw (OS) clock just before the send.
    t1: UnixNanos,
    sent: Instant,
    deadline: Instant,
}

/// One polled address.
struct Peer {
    id: SourceId,
    /// Index of the `[[source]]` it came from.
    origin: usize,
    sock: UpstreamSocket,
    next_poll: Instant,
    pending: Option<Pending>,
    /// Extra poll exponent from RATE kisses.
    backoff: i8,
    /// State at the last update (None before the first).
    state: Option<SourceState>,
    bad_polls: u32,
    requests: u64,
    replies: u64,
    kod_rate: u64,
}

/// A configured source and what came of it.
struct Origin {
    /// Stable across reloads (indices are not): how resolver answers find their origin.
    key: u64,
    cfg: config::SourceConfig,
    host: String,
    port: u16,
    /// A lookup is with the resolver.
    resolving: bool,
    /// Addresses never to use again (DENY/RSTR, or replaced pool members).
    banned: HashSet<SocketAddr>,
    next_resolve: Instant,
    resolve_backoff: Duration,
    /// Status rows of sources that were dropped (kept for the report).
    dropped: Vec<SourceStatus>,
}

impl Origin {
    fn new(key: u64, cfg: &config::SourceConfig, now: Instant) -> Origin {
        let (host, port) = cfg
            .host_port()
            .unwrap_or((cfg.address.clone(), config::NTP_PORT));
        Origin {
            key,
            cfg: cfg.clone(),
            host,
            port,
            resolving: false,
            banned: HashSet::new(),
            next_resolve: now,
            resolve_backoff: Duration::from_secs(1),
            dropped: Vec::new(),
        }
    }
}

struct Runner {
    settings: DisciplineSettings,
    core: Discipline,
    shared: Arc<SharedClock>,
    status: Arc<Mutex<Vec<SourceStatus>>>,
    system: Option<SystemSteering<RealClock>>,
    served: ServedTime,
    origins: Vec<Origin>,
    peers: Vec<Peer>,
    next_id: u32,
    /// The key the next origin gets.
    next_origin: u64,
    /// Looks names up off this thread.
    resolver: Resolver,
    /// Where a reload leaves a new source list.
    pending: Arc<Mutex<Option<Vec<config::SourceConfig>>>>,
    /// The last estimate's offset (core time = free time + this).
    last_offset: f64,
    last_status: Option<SyncStatus>,
    next_drift: Instant,
}

impl Runner {
    fn new(
        settings: DisciplineSettings,
        shared: Arc<SharedClock>,
        status: Arc<Mutex<Vec<SourceStatus>>>,
        system: Option<SystemSteering<RealClock>>,
    ) -> anyhow::Result<Runner> {
        let now = Instant::now();
        let origins: Vec<Origin> = settings
            .sources
            .iter()
            .zip(0..)
            .map(|(cfg, key)| Origin::new(key, cfg, now))
            .collect();
        let core = Discipline::new(settings.core_config());
        let served = ServedTime::new(
            settings.clock.leap_smear,
            settings.clock.leap_smear_window,
            settings.clock.leap_days,
        );
        Ok(Runner {
            next_origin: origins.len() as u64,
            resolver: Resolver::start(resolver::system_lookup)
                .context("starting the resolver thread")?,
            settings,
            core,
            shared,
            status,
            system,
            served,
            origins,
            peers: Vec::new(),
            next_id: 0,
            pending: Arc::new(Mutex::new(None)),
            last_offset: 0.0,
            last_status: None,
            next_drift: now + DRIFT_EVERY,
        })
    }

    /// Free-running raw time for an OS clock reading (the same in virtual mode).
    fn free(&self, os: UnixNanos) -> UnixNanos {
        match &self.system {
            Some(s) => s.to_free(os),
            None => os,
        }
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut next_update = Instant::now() + UPDATE_EVERY;
        let mut buf = [0u8; MAX_PACKET_LEN + 1];
        while !stop.load(Ordering::Relaxed) {
            let reloaded = self.pending.lock().ok().and_then(|mut p| p.take());
            if let Some(sources) = reloaded {
                self.set_sources(sources);
            }
            let now = Instant::now();
            self.resolve_due(now);
            for i in 0..self.peers.len() {
                if self.peers[i].pending.is_none() && now >= self.peers[i].next_poll {
                    self.send(i);
                }
            }
            self.expire(now);

            // Sleep until the next event, or until a reply comes.
            let mut wake = next_update.min(now + MAX_SLEEP);
            for p in &self.peers {
                wake = wake.min(match &p.pending {
                    Some(pend) => pend.deadline,
                    None => p.next_poll,
                });
            }
            let socks: Vec<&UpstreamSocket> = self.peers.iter().map(|p| &p.sock).collect();
            let timeout = wake.saturating_duration_since(Instant::now());
            let readable = if socks.is_empty() {
                std::thread::sleep(timeout);
                Vec::new()
            } else {
                upstream::wait_readable(&socks, timeout).unwrap_or_else(|e| {
                    tracing::warn!("discipline: waiting for replies: {e}");
                    std::thread::sleep(timeout);
                    vec![false; socks.len()]
                })
            };
            drop(socks);
            // Peers may be removed while handling replies: walk by id.
            let ready: Vec<SourceId> = readable
                .iter()
                .zip(&self.peers)
                .filter(|(r, _)| **r)
                .map(|(_, p)| p.id)
                .collect();
            for id in ready {
                self.receive(id, &mut buf);
            }

            if Instant::now() >= next_update {
                self.update();
                next_update = Instant::now() + UPDATE_EVERY;
            }
        }
        if let Some(sys) = &self.system {
            if let (Some(path), Some((f, _))) =
                (&self.settings.clock.drift_file, self.core.frequency())
            {
                if let Err(e) = write_drift(path, sys.drift_ppm(f)) {
                    tracing::warn!("discipline: writing {}: {e}", path.display());
                }
            }
        }
        tracing::info!("discipline: stopped");
    }

    /// Takes up a reloaded source list: an origin whose configuration is unchanged keeps its
    /// peers and their state; the others are dropped, and the new ones resolved next.
    fn set_sources(&mut self, sources: Vec<config::SourceConfig>) {
        let now = Instant::now();
        let mut old: Vec<Option<Origin>> = std::mem::take(&mut self.origins)
            .into_iter()
            .map(Some)
            .collect();
        let mut remap: Vec<Option<usize>> = vec![None; old.len()];
        for cfg in &sources {
            let kept = old
                .iter()
                .position(|o| o.as_ref().is_some_and(|o| o.cfg == *cfg));
            match kept {
                Some(i) => {
                    remap[i] = Some(self.origins.len());
                    self.origins.push(old[i].take().expect("position found it"));
                }
                None => {
                    tracing::info!("discipline: source {} added by reload", describe(cfg));
                    self.origins.push(Origin::new(self.next_origin, cfg, now));
                    self.next_origin += 1;
                }
            }
        }
        for o in old.into_iter().flatten() {
            tracing::info!("discipline: source {} removed by reload", o.cfg.address);
        }
        let mut peers = std::mem::take(&mut self.peers);
        peers.retain_mut(|p| match remap[p.origin] {
            Some(i) => {
                p.origin = i;
                true
            }
            None => {
                self.core.remove_source(p.id);
                tracing::info!("discipline: source {} no longer polled", p.sock.peer());
                false
            }
        });
        self.peers = peers;
        self.settings.sources = sources;
        self.write_status();
    }

    /// Asks the resolver for the sources whose time has come (a server until it has its
    /// address, a pool whenever it has fewer members than `max-sources`) and takes up the
    /// answers that have arrived. Never blocks: names are looked up on the resolver's thread.
    fn resolve_due(&mut self, now: Instant) {
        for oi in 0..self.origins.len() {
            let members = self.peers.iter().filter(|p| p.origin == oi).count();
            let o = &mut self.origins[oi];
            if o.resolving || members >= o.cfg.max_sources() || now < o.next_resolve {
                continue;
            }
            // A server that was denied is not resolved again (a pool is).
            if !o.cfg.kind.resolves_again_after_a_drop() && !o.banned.is_empty() {
                continue;
            }
            o.resolving = true;
            self.resolver.request(o.key, &o.host, o.port);
        }
        for answer in self.resolver.answers() {
            // An origin removed by a reload meanwhile is simply gone.
            let Some(oi) = self.origins.iter().position(|o| o.key == answer.key) else {
                continue;
            };
            self.origins[oi].resolving = false;
            let resolved = answer.result.unwrap_or_else(|e| {
                let o = &self.origins[oi];
                tracing::warn!("discipline: cannot resolve {}: {e}", o.cfg.address);
                Vec::new()
            });
            let members = self.peers.iter().filter(|p| p.origin == oi).count();
            let in_use: HashSet<SocketAddr> = self.peers.iter().map(|p| p.sock.peer()).collect();
            let o = &mut self.origins[oi];
            let want = o.cfg.max_sources().saturating_sub(members);
            let mut seen = HashSet::new();
            let fresh: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| seen.insert(*a) && !in_use.contains(a) && !o.banned.contains(a))
                .take(want)
                .collect();
            if fresh.is_empty() {
                o.resolve_backoff = (o.resolve_backoff * 2).min(Duration::from_secs(3600));
            } else {
                o.resolve_backoff =
                    Duration::from_secs_f64(2f64.powi(o.cfg.minpoll.into()).clamp(1.0, 3600.0));
            }
            o.next_resolve = now + o.resolve_backoff;
            for addr in fresh {
                self.add_peer(oi, addr, now);
            }
        }
    }

    fn add_peer(&mut self, origin: usize, addr: SocketAddr, now: Instant) {
        let sock = match UpstreamSocket::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("discipline: cannot open a socket to {addr}: {e}");
                return;
            }
        };
        let cfg = &self.origins[origin].cfg;
        let id = SourceId(self.next_id);
        self.next_id += 1;
        self.core.add_source(
            id,
            SourceParams {
                prefer: cfg.prefer,
                minpoll: cfg.minpoll,
                maxpoll: cfg.maxpoll,
                iburst: cfg.iburst,
                refid: refid_of(addr),
            },
        );
        tracing::info!(
            "discipline: source {addr} added (from {}, rx timestamps {})",
            cfg.address,
            sock.stamping().as_str()
        );
        self.peers.push(Peer {
            id,
            origin,
            sock,
            next_poll: now,
            pending: None,
            backoff: 0,
            state: None,
            bad_polls: 0,
            requests: 0,
            replies: 0,
            kod_rate: 0,
        });
    }

    fn send(&mut self, i: usize) {
        let p = &mut self.peers[i];
        let nonce = sys::random::nonce();
        let poll = self
            .core
            .sources()
            .iter()
            .find(|r| r.id == p.id)
            .map_or(0, |r| r.poll);
        let req = client_request(VERSION, poll, nonce);
        let interval = self.core.poll_interval(p.id).unwrap_or(1.0) * 2f64.powi(p.backoff.into());
        let wait = (interval * 0.75).clamp(0.01, MAX_REPLY_WAIT);
        let now = Instant::now();
        match p.sock.send(&req) {
            Ok(stamp) => {
                p.requests += 1;
                p.pending = Some(Pending {
                    nonce,
                    t1: stamp.raw,
                    sent: now,
                    deadline: now + Duration::from_secs_f64(wait),
                });
            }
            Err(e) => {
                tracing::debug!("discipline: send to {}: {e}", p.sock.peer());
                let id = p.id;
                self.core.on_unreachable(id);
                self.schedule(id, now);
            }
        }
    }

    /// Sets the next poll of `id` from `from` (the send time of the poll just completed).
    fn schedule(&mut self, id: SourceId, from: Instant) {
        let Some(interval) = self.core.poll_interval(id) else {
            return;
        };
        if let Some(p) = self.peers.iter_mut().find(|p| p.id == id) {
            let secs = interval * 2f64.powi(p.backoff.into());
            // Up to 5% later, so sources polled together drift apart.
            let secs = secs * (1.0 + 0.05 * sys::random::unit());
            p.next_poll = from + Duration::from_secs_f64(secs);
            p.pending = None;
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<(SourceId, Instant)> = self
            .peers
            .iter()
            .filter_map(|p| {
                p.pending
                    .as_ref()
                    .filter(|pend| now >= pend.deadline)
                    .map(|pend| (p.id, pend.sent))
            })
            .collect();
        for (id, sent) in expired {
            self.poll_failed(id, sent);
        }
    }

    /// A poll that produced no usable sample.
    fn poll_failed(&mut self, id: SourceId, sent: Instant) {
        self.core.on_unreachable(id);
        self.count_poll(id);
        self.schedule(id, sent);
    }

    fn count_poll(&mut self, id: SourceId) {
        if let Some(p) = self.peers.iter_mut().find(|p| p.id == id) {
            let bad = matches!(
                p.state,
                Some(SourceState::Unreachable | SourceState::Falseticker)
            );
            p.bad_polls = if bad { p.bad_polls + 1 } else { 0 };
        }
    }

    fn receive(&mut self, id: SourceId, buf: &mut [u8]) {
        loop {
            let Some(i) = self.peers.iter().position(|p| p.id == id) else {
                return;
            };
            let got = match self.peers[i].sock.try_recv(buf) {
                Ok(Some(got)) => got,
                Ok(None) => return,
                Err(e) => {
                    // ICMP port unreachable and the like: this poll failed.
                    tracing::debug!("discipline: {}: {e}", self.peers[i].sock.peer());
                    if let Some(pend) = self.peers[i].pending.take() {
                        self.poll_failed(id, pend.sent);
                    }
                    continue;
                }
            };
            let (len, stamp) = got;
            let Some(pend) = self.peers[i].pending.as_ref() else {
                continue; // nothing asked: late or unsolicited
            };
            let (nonce, t1, sent) = (pend.nonce, pend.t1, pend.sent);
            let header = match check_reply(&buf[..len], VERSION, nonce) {
                Ok(h) => h,
                Err(ReplyError::WrongOrigin) => continue, // stale or forged: keep waiting
                Err(ReplyError::Kiss(code)) => {
                    self.peers[i].pending = None;
                    self.kiss(id, code, sent);
                    continue;
                }
                Err(e) => {
                    tracing::debug!("discipline: {}: {e}", self.peers[i].sock.peer());
                    self.peers[i].pending = None;
                    self.poll_failed(id, sent);
                    continue;
                }
            };
            self.peers[i].pending = None;
            self.peers[i].replies += 1;
            let (t1f, t4f) = (self.free(t1), self.free(stamp.raw));
            let mut ex = exchange(&header, NtpTimestamp::from_unix(t4f));
            ex.t1 = NtpTimestamp::from_unix(t1f);
            let mut sample = Sample::from_reply(&header, &ex, t4f);
            let distance = root_distance_secs(&header, sample.delay);
            if !(1..=15).contains(&header.stratum) || distance > self.core.config().max_distance {
                tracing::debug!(
                    "discipline: {}: root distance {distance:.3} s is too large",
                    self.peers[i].sock.peer()
                );
                self.poll_failed(id, sent);
                continue;
            }
            let core_t = t4f.as_secs_f64() + self.last_offset;
            if self.served.leap().near_leap(core_t) {
                self.schedule(id, sent);
                continue;
            }
            sample.offset += self.served.leap().sample_fix(core_t);
            self.core.on_sample(id, sample);
            self.count_poll(id);
            self.schedule(id, sent);
        }
    }

    fn kiss(&mut self, id: SourceId, code: [u8; 4], sent: Instant) {
        let Some(p) = self.peers.iter_mut().find(|p| p.id == id) else {
            return;
        };
        let addr = p.sock.peer();
        match &code {
            b"RATE" => {
                p.kod_rate += 1;
                let poll = self
                    .core
                    .sources()
                    .iter()
                    .find(|r| r.id == id)
                    .map_or(self.origins[p.origin].cfg.minpoll, |r| r.poll);
                if poll + p.backoff < MAX_BACKOFF_POLL {
                    p.backoff += 1;
                }
                tracing::info!(
                    "discipline: source {addr} sent kiss-o'-death RATE: polling it every {:.3} s",
                    self.core.poll_interval(id).unwrap_or(1.0) * 2f64.powi(p.backoff.into())
                );
                self.core.on_unreachable(id);
                self.schedule(id, sent);
            }
            b"DENY" | b"RSTR" => {
                tracing::warn!(
                    "discipline: source {addr} sent kiss-o'-death {}: no longer using it",
                    String::from_utf8_lossy(&code)
                );
                self.drop_peer(id, "denied");
            }
            _ => {
                tracing::debug!(
                    "discipline: source {addr} sent kiss-o'-death {}",
                    String::from_utf8_lossy(&code)
                );
                self.poll_failed(id, sent);
            }
        }
    }

    /// Stops using a peer for good (its address is banned for its origin).
    fn drop_peer(&mut self, id: SourceId, why: &'static str) {
        let Some(i) = self.peers.iter().position(|p| p.id == id) else {
            return;
        };
        let mut row = self.status_row(&self.peers[i]);
        row.state = why;
        let p = self.peers.remove(i);
        self.core.remove_source(id);
        let o = &mut self.origins[p.origin];
        o.banned.insert(p.sock.peer());
        o.dropped.push(row);
    }

    fn status_row(&self, p: &Peer) -> SourceStatus {
        let rep = self.core.sources().iter().find(|r| r.id == p.id).copied();
        SourceStatus {
            source: self.origins[p.origin].cfg.address.clone(),
            address: p.sock.peer(),
            state: p.state.map_or("unreachable", state_name),
            reach: rep.map_or(0, |r| r.reach),
            poll: rep.map_or(self.origins[p.origin].cfg.minpoll, |r| r.poll) + p.backoff,
            offset: rep.map_or(0.0, |r| r.offset),
            delay: rep.map_or(0.0, |r| r.delay),
            jitter: rep.map_or(0.0, |r| r.jitter),
            root_distance: rep.map_or(0.0, |r| r.root_distance),
            stratum: rep.map_or(0, |r| r.stratum),
            requests: p.requests,
            replies: p.replies,
            kod_rate: p.kod_rate,
        }
    }

    fn update(&mut self) {
        let os_now = match &self.system {
            Some(s) => s.clock().now(),
            None => sys::clock::now(),
        };
        let now = self.free(os_now);
        let est = self.core.update(now);

        // One log line per source state change.
        let reports = self.core.sources().to_vec();
        for p in &mut self.peers {
            let Some(r) = reports.iter().find(|r| r.id == p.id) else {
                continue;
            };
            let before = p.state.unwrap_or(SourceState::Unreachable);
            if r.state != before {
                tracing::info!(
                    "discipline: source {} {} (offset {:+.6} s, delay {:.6} s, stratum {}, reach {:03o})",
                    p.sock.peer(),
                    state_name(r.state),
                    r.offset,
                    r.delay,
                    r.stratum,
                    r.reach
                );
            }
            p.state = Some(r.state);
        }
        self.replace_bad_pool_members();

        if let Some(est) = est {
            if self.last_status != Some(est.status) {
                match est.status {
                    SyncStatus::Synchronized => tracing::info!(
                        "discipline: synchronised (offset {:+.6} s, stratum {})",
                        est.offset,
                        est.stratum
                    ),
                    SyncStatus::Holdover => tracing::warn!(
                        "discipline: no selectable source: holdover for {} s",
                        self.settings.clock.holdover
                    ),
                    SyncStatus::Local => tracing::warn!(
                        "discipline: holdover expired: serving the local clock at stratum {}",
                        est.stratum
                    ),
                    SyncStatus::Unsynchronized => {
                        tracing::warn!("discipline: holdover expired: unsynchronised (LI=3)")
                    }
                }
                self.last_status = Some(est.status);
            }
            self.last_offset = est.offset;
            let core_t = now.as_secs_f64() + est.offset;
            if est.status == SyncStatus::Synchronized {
                if let Some(note) = self.served.observe(est.leap, core_t) {
                    log_leap(note, self.settings.clock.leap_days);
                }
            }
            let snap = self.core.snapshot(&est);
            let out = self.served(snap, now);
            self.shared.publish(out);
        }
        self.write_status();
        if self.system.is_some() && Instant::now() >= self.next_drift {
            self.next_drift = Instant::now() + DRIFT_EVERY;
            if let (Some(path), Some((f, _)), Some(sys)) = (
                &self.settings.clock.drift_file,
                self.core.frequency(),
                &self.system,
            ) {
                if let Err(e) = write_drift(path, sys.drift_ppm(f)) {
                    tracing::warn!("discipline: writing {}: {e}", path.display());
                }
            }
        }
    }

    /// The snapshot the workers get for the core's `snap` at free time `now` (see
    /// [`ServedTime`]); in system mode the OS clock is steered to it and served as is.
    fn served(&mut self, snap: ClockSnapshot, now: UnixNanos) -> ClockSnapshot {
        let served = self
            .served
            .served(snap, now, self.last_offset, UPDATE_EVERY.as_secs_f64());
        let mut out = served.snapshot;
        let target = out.correction;
        let core_stepped = served.core_stepped;
        if let Some(step) = served.leap_step {
            tracing::info!("discipline: leap second applied ({step:+} s)");
            if let Some(sys) = &mut self.system {
                // The kernel stepped the OS clock itself at midnight (STA_INS/STA_DEL).
                sys.kernel_stepped((step * 1e9).round() as i64);
            }
        }
        if let Some(sys) = &mut self.system {
            if !self.settings.clock.leap_smear {
                if let Err(e) = sys.arm_leap(out.leap) {
                    tracing::warn!("discipline: arming the kernel leap second: {e}");
                }
            }
            match sys.follow(&target, now, core_stepped) {
                Ok(FollowAction::Stepped(ns)) => {
                    tracing::info!(
                        "discipline: stepped the OS clock by {:+.6} s",
                        ns as f64 * 1e-9
                    )
                }
                Ok(FollowAction::Slewed { .. }) => {}
                Err(e) => tracing::warn!("discipline: adjusting the OS clock: {e}"),
            }
            let os = sys.clock().now();
            out.correction = Correction {
                at: os,
                offset_ns: 0,
                freq: 0.0,
            };
            out.reference_time = os;
        }
        out
    }

    /// Pool members that stayed unreachable or falseticking for [`POOL_REPLACE_POLLS`] polls
    /// are dropped; `resolve_due` then looks for replacements.
    fn replace_bad_pool_members(&mut self) {
        let bad: Vec<(SourceId, SocketAddr, Option<SourceState>)> = self
            .peers
            .iter()
            .filter(|p| {
                self.origins[p.origin].cfg.kind.replaces_bad_members()
                    && p.bad_polls >= POOL_REPLACE_POLLS
            })
            .map(|p| (p.id, p.sock.peer(), p.state))
            .collect();
        for (id, addr, state) in bad {
            tracing::info!(
                "discipline: pool member {addr} replaced ({} for {POOL_REPLACE_POLLS} polls)",
                state.map_or("unreachable", state_name)
            );
            if let Some(p) = self.peers.iter().find(|p| p.id == id) {
                let o = p.origin;
                self.origins[o].next_resolve = Instant::now();
            }
            self.drop_peer(id, "replaced");
        }
    }

    fn write_status(&self) {
        let mut rows: Vec<SourceStatus> = Vec::new();
        for (oi, o) in self.origins.iter().enumerate() {
            rows.extend(
                self.peers
                    .iter()
                    .filter(|p| p.origin == oi)
                    .map(|p| self.status_row(p)),
            );
            rows.extend(o.dropped.iter().cloned());
        }
        if let Ok(mut s) = self.status.lock() {
            *s = rows;
        }
    }
}

/// One log line for a leap-second decision of [`LeapState::observe`].
fn log_leap(note: LeapNote, days: LeapDays) {
    let kind = |delta: f64| if delta > 0.0 { "insertion" } else { "deletion" };
    let utc = |t: f64| {
        let day = (t / 86_400.0).floor();
        let secs = t - day * 86_400.0;
        format!(
            "{}T{:02}:{:02}:{:02}Z",
            leap::date_string(day as i64),
            (secs / 3600.0) as u32,
            (secs % 3600.0 / 60.0) as u32,
            (secs % 60.0) as u32
        )
    };
    match note {
        LeapNote::Scheduled {
            at,
            delta,
            smear: None,
        } => tracing::info!(
            "discipline: leap second {} announced for {}: stepping then",
            kind(delta),
            utc(at)
        ),
        LeapNote::Scheduled {
            at,
            delta,
            smear: Some(s),
        } => tracing::info!(
            "discipline: leap second {} announced for {}: smearing from {} to {} ({:.1} ppm)",
            kind(delta),
            utc(at),
            utc(s.start),
            utc(s.end),
            s.rate() * 1e6
        ),
        LeapNote::Late {
            at,
            delta,
            smear,
            planned_end,
        } => tracing::warn!(
            "discipline: leap second {} for {} learned too late to smear by {}: smearing at \
             the {:.0} ppm limit from {} until {}",
            kind(delta),
            utc(at),
            utc(planned_end),
            leap::MAX_SMEAR_RATE * 1e6,
            utc(smear.start),
            utc(smear.end)
        ),
        LeapNote::NotLeapDay { delta, until } => tracing::info!(
            "discipline: sources announce a leap second {}; not acted on before {} (clock.leap-days = \"{}\")",
            kind(delta),
            leap::date_string(until),
            match days {
                LeapDays::JuneDecember => "june-december",
                LeapDays::MonthEnd => "month-end",
                LeapDays::AnyDay => "any-day",
            }
        ),
        LeapNote::Withdrawn { at } => {
            tracing::info!("discipline: leap second for {} withdrawn", utc(at))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(sources: &[&str]) -> DisciplineSettings {
        DisciplineSettings {
            sources: sources
                .iter()
                .map(|a| config::SourceConfig::new(a))
                .collect(),
            clock: config::ClockConfig::default(),
            precision: -20,
        }
    }

    #[test]
    fn core_config_follows_the_clock_settings() {
        let mut s = settings(&["127.0.0.1:1"]);
        s.clock.holdover = 5.0;
        s.clock.min_sources = 2;
        s.clock.step_threshold = 0.25;
        s.clock.step_limit = 7;
        let c = s.core_config();
        assert_eq!(c.holdover, 5.0);
        assert_eq!(c.min_sources, 2);
        assert_eq!(c.steer.step_threshold, 0.25);
        assert_eq!(c.step_updates, Some(7));
        assert_eq!(c.local_stratum, None);
        s.clock.local_fallback = true;
        s.clock.local_stratum = 9;
        assert_eq!(s.core_config().local_stratum, Some(9));
        assert_eq!(s.max_addresses(), 1);
    }

    #[test]
    fn refids() {
        assert_eq!(refid_of("192.0.2.7:123".parse().unwrap()), [192, 0, 2, 7]);
        // RFC 5905: first four bytes of the MD5 of the IPv6 address.
        use md5::{Digest, Md5};
        let a: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d = Md5::digest(a.octets());
        assert_eq!(
            refid_of(SocketAddr::new(a.into(), 123)),
            [d[0], d[1], d[2], d[3]]
        );
        assert_eq!(
            refid_of("[::ffff:10.1.2.3]:123".parse().unwrap()),
            [10, 1, 2, 3]
        );
    }

    #[test]
    fn descriptions() {
        let mut s = config::SourceConfig::new("pool.example.net");
        s.kind = SourceKind::Pool;
        s.iburst = true;
        assert_eq!(
            describe(&s),
            "pool.example.net (pool, max 4, iburst, poll 6..10)"
        );
    }
}
