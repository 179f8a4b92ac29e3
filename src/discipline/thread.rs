//! The discipline thread: the IO shell around the sans-IO [`Discipline`]. Its loop lets the
//! [`Sources`] do what is due (lookups, polls, replies: see [`super::sources`]), sleeps until
//! the next of those or a reply, runs [`Discipline::update`] once a second and publishes the
//! resulting snapshot ([`ServedTime`]) to the [`SharedClock`] the workers read; it is the
//! clock's single writer while sources are configured. It also takes up reloaded source lists
//! and, in `system` mode, steers the OS clock and keeps the drift file.

// The IO shell of the discipline: it reads the clock to schedule polls and updates.
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::leap::{self, LeapDays, LeapNote};
use super::resolver::{self, Resolver};
use super::served::ServedTime;
use super::sources::{describe, Sources, Timebase};
use super::system::{read_drift, write_drift, FollowAction, OsClock, RealClock, SystemSteering};
use super::tracking::{Tracking, TrackingLog};
use super::{CoreConfig, Discipline, SteerConfig, SyncStatus};
use crate::clock::{ClockSnapshot, Correction, SharedClock};
use crate::config::{self, ClockMode};
use crate::proto::UnixNanos;
use crate::sys;

pub use super::sources::SourceStatus;

/// How often the core is updated and the clock republished.
const UPDATE_EVERY: Duration = Duration::from_secs(1);
/// Longest sleep of the loop (how quickly a stop is noticed).
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// How often the drift file is written in `system` mode.
const DRIFT_EVERY: Duration = Duration::from_secs(600);

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

/// The running discipline thread.
pub struct DisciplineThread {
    handle: Option<std::thread::JoinHandle<()>>,
    status: Arc<Mutex<Vec<SourceStatus>>>,
    /// The tracking values of the last update with an estimate.
    tracking: Arc<Mutex<Option<Tracking>>>,
    /// Set by `sync-now`, taken up by the thread.
    sync_now: Arc<AtomicBool>,
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
        let tracking = runner.tracking.clone();
        let sync_now = runner.sync_now.clone();
        let stop_thread = stop.clone();
        let handle = std::thread::Builder::new()
            .name("meridian-discipline".into())
            .spawn(move || runner.run(&stop_thread))
            .context("spawning the discipline thread")?;
        Ok(DisciplineThread {
            handle: Some(handle),
            status,
            tracking,
            sync_now,
            pending,
            stop,
        })
    }

    /// The tracking values of the last update that had an estimate (None before the first).
    pub fn tracking(&self) -> Option<Tracking> {
        self.tracking.lock().ok().and_then(|t| t.clone())
    }

    /// Asks the thread to poll every source now, with a burst of quick polls (within
    /// ~100 ms).
    pub fn sync_now(&self) {
        self.sync_now.store(true, Ordering::Relaxed);
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

struct Runner {
    settings: DisciplineSettings,
    core: Discipline,
    shared: Arc<SharedClock>,
    status: Arc<Mutex<Vec<SourceStatus>>>,
    system: Option<SystemSteering<RealClock>>,
    served: ServedTime,
    sources: Sources,
    /// Where a reload leaves a new source list.
    pending: Arc<Mutex<Option<Vec<config::SourceConfig>>>>,
    tracking: Arc<Mutex<Option<Tracking>>>,
    tracking_log: TrackingLog,
    sync_now: Arc<AtomicBool>,
    /// The last estimate's offset (core time = free time + this).
    last_offset: f64,
    last_status: Option<SyncStatus>,
    next_drift: Instant,
}

/// The runner's time scales for the sources.
struct Clocks<'a> {
    system: Option<&'a SystemSteering<RealClock>>,
    served: &'a ServedTime,
    /// Core time = free time + this.
    core_offset: f64,
}

impl Timebase for Clocks<'_> {
    fn free(&self, os: UnixNanos) -> UnixNanos {
        free_time(self.system, os)
    }

    fn leap_fix(&self, at: UnixNanos) -> Option<f64> {
        let core_t = at.as_secs_f64() + self.core_offset;
        let leap = self.served.leap();
        (!leap.near_leap(core_t)).then(|| leap.sample_fix(core_t))
    }
}

/// Free-running raw time for an OS clock reading (the same in virtual mode).
fn free_time(system: Option<&SystemSteering<RealClock>>, os: UnixNanos) -> UnixNanos {
    match system {
        Some(s) => s.to_free(os),
        None => os,
    }
}

impl Runner {
    fn new(
        settings: DisciplineSettings,
        shared: Arc<SharedClock>,
        status: Arc<Mutex<Vec<SourceStatus>>>,
        system: Option<SystemSteering<RealClock>>,
    ) -> anyhow::Result<Runner> {
        let now = Instant::now();
        let resolver =
            Resolver::start(resolver::system_lookup).context("starting the resolver thread")?;
        let sources = Sources::new(&settings.sources, resolver, now);
        let core = Discipline::new(settings.core_config());
        let served = ServedTime::new(
            settings.clock.leap_smear,
            settings.clock.leap_smear_window,
            settings.clock.leap_days,
        );
        Ok(Runner {
            settings,
            core,
            shared,
            status,
            system,
            served,
            sources,
            pending: Arc::new(Mutex::new(None)),
            tracking: Arc::new(Mutex::new(None)),
            tracking_log: TrackingLog::default(),
            sync_now: Arc::new(AtomicBool::new(false)),
            last_offset: 0.0,
            last_status: None,
            next_drift: now + DRIFT_EVERY,
        })
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut next_update = Instant::now() + UPDATE_EVERY;
        while !stop.load(Ordering::Relaxed) {
            let reloaded = self.pending.lock().ok().and_then(|mut p| p.take());
            if let Some(sources) = reloaded {
                self.set_sources(sources);
            }
            let now = Instant::now();
            if self.sync_now.swap(false, Ordering::Relaxed) {
                tracing::info!("discipline: sync-now: polling every source");
                self.sources.sync_now(now, &mut self.core);
            }
            self.with_sources(|s, core, clocks| s.poll(now, core, clocks));

            // Sleep until the next event, or until a reply comes.
            let mut wake = next_update.min(now + MAX_SLEEP);
            if let Some(due) = self.sources.next_due() {
                wake = wake.min(due);
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            self.with_sources(|s, core, clocks| s.wait(timeout, core, clocks));

            if Instant::now() >= next_update {
                self.update();
                next_update = Instant::now() + UPDATE_EVERY;
            }
        }
        self.save_drift();
        tracing::info!("discipline: stopped");
    }

    /// Writes the drift file (`system` mode, once the frequency is known).
    fn save_drift(&self) {
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

    /// Lends the sources the core and the runner's time scales.
    fn with_sources(&mut self, f: impl FnOnce(&mut Sources, &mut Discipline, &dyn Timebase)) {
        let clocks = Clocks {
            system: self.system.as_ref(),
            served: &self.served,
            core_offset: self.last_offset,
        };
        f(&mut self.sources, &mut self.core, &clocks);
    }

    /// Takes up a reloaded source list: a source whose configuration is unchanged keeps its
    /// addresses and their state; the others are dropped, and the new ones resolved next.
    fn set_sources(&mut self, sources: Vec<config::SourceConfig>) {
        self.sources.set(&sources, &mut self.core, Instant::now());
        self.settings.sources = sources;
        self.write_status();
    }

    fn update(&mut self) {
        let os_now = match &self.system {
            Some(s) => s.clock().now(),
            None => sys::clock::now(),
        };
        let now = free_time(self.system.as_ref(), os_now);
        let est = self.core.update(now);
        self.with_sources(|s, core, clocks| s.after_update(Instant::now(), core, clocks));

        if let Some(est) = est {
            if self.last_status != Some(est.status) {
                match est.status {
                    SyncStatus::Synchronized => tracing::info!(
                        "discipline: synchronised (offset {:+.6} s, stratum {})",
                        est.offset,
                        est.stratum
                    ),
                    SyncStatus::Holdover => tracing::warn!(
                        event = "holdover_entered",
                        "discipline: no selectable source: holdover for {} s",
                        self.settings.clock.holdover
                    ),
                    SyncStatus::Local => tracing::warn!(
                        event = "holdover_expired",
                        "discipline: holdover expired: serving the local clock at stratum {}",
                        est.stratum
                    ),
                    SyncStatus::Unsynchronized => {
                        let was = self.last_status;
                        if was == Some(SyncStatus::Holdover) {
                            tracing::warn!(
                                event = "holdover_expired",
                                "discipline: holdover expired: unsynchronised (LI=3)"
                            );
                        }
                        if matches!(was, Some(SyncStatus::Synchronized | SyncStatus::Holdover)) {
                            tracing::warn!(
                                event = "sync_lost",
                                "discipline: synchronisation lost: unsynchronised (LI=3)"
                            );
                        } else {
                            tracing::warn!("discipline: unsynchronised (LI=3)");
                        }
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
            let tracking = self.tracking_log.update(&est, &snap, &out);
            if let Ok(mut t) = self.tracking.lock() {
                *t = Some(tracking);
            }
        }
        self.write_status();
        if self.system.is_some() && Instant::now() >= self.next_drift {
            self.next_drift = Instant::now() + DRIFT_EVERY;
            self.save_drift();
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
                    tracing::warn!(
                        event = "clock_step",
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

    fn write_status(&self) {
        let rows = self.sources.report(&self.core);
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
        } => tracing::warn!(
            event = "leap_scheduled",
            "discipline: leap second {} announced for {}: stepping then",
            kind(delta),
            utc(at)
        ),
        LeapNote::Scheduled {
            at,
            delta,
            smear: Some(s),
        } => tracing::warn!(
            event = "leap_scheduled",
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
            event = "leap_scheduled",
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
}
