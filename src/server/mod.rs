//! The worker runtime: choose cores, open the backend, spawn one pinned worker per core, keep
//! the clock state published, report counters, and stop cleanly on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crossbeam::utils::CachePadded;
use serde::Serialize;

use crate::clock::{ClockSnapshot, SharedClock};
use crate::config::{AccessConfig, AuthConfig, DenyAction, RateLimitConfig};
use crate::config::{BackendKind, ClockConfig, ClockMode, Config, SourceConfig};
use crate::datapath::clients::{ClientTable, Record};
use crate::datapath::counters::{CounterReport, PaddedCounters, Tally, WorkerCounters};
use crate::datapath::{Mailbox, Policy, Worker, WorkerConfig};
use crate::discipline::thread::{DisciplineSettings, DisciplineThread, SourceStatus};
use crate::io::{self, Opened, WorkerContext};
use crate::sys;

/// How often the local reference is republished (so root dispersion stays small).
const LOCAL_REFRESH: Duration = Duration::from_secs(1);

/// The counters report printed on SIGUSR1 and at exit.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub backend: &'static str,
    pub uptime_secs: f64,
    pub total: CounterReport,
    pub workers: Vec<WorkerReport>,
    /// The upstream sources and their states (absent without sources).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkerReport {
    pub worker: usize,
    pub core: Option<usize>,
    #[serde(flatten)]
    pub counters: CounterReport,
}

/// How long a read of the client tables waits for each chunk from a worker.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The order of [`Server::clients`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientSort {
    /// Most requests first.
    #[default]
    Hits,
    /// Most drops (and KoDs) first.
    Drops,
    /// Most recently seen first.
    Last,
}

/// One client as the management plane shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientInfo {
    pub address: std::net::IpAddr,
    /// The worker whose table holds it.
    pub worker: usize,
    pub requests: u32,
    pub drops: u16,
    pub kods: u16,
    /// Seconds since its first and its last request.
    pub first_seen_ago_s: f64,
    pub last_seen_ago_s: f64,
    /// Its typical interval between requests, seconds (after two requests).
    pub interval_s: Option<f64>,
}

impl ClientInfo {
    fn new(r: &Record, worker: usize, now_ns: i64) -> ClientInfo {
        let ago = |t: i64| now_ns.saturating_sub(t).max(0) as f64 / 1e9;
        ClientInfo {
            address: r.addr(),
            worker,
            requests: r.requests,
            drops: r.drops,
            kods: r.kods,
            first_seen_ago_s: ago(r.first_seen()),
            last_seen_ago_s: ago(r.last_seen()),
            interval_s: r.interval_ns().map(|ns| ns / 1e9),
        }
    }

    /// The key of `sort`, smallest first.
    fn order(&self, sort: ClientSort) -> (i64, f64) {
        match sort {
            ClientSort::Hits => (-i64::from(self.requests), self.last_seen_ago_s),
            ClientSort::Drops => (
                -(i64::from(self.drops) + i64::from(self.kods)),
                self.last_seen_ago_s,
            ),
            ClientSort::Last => (0, self.last_seen_ago_s),
        }
    }
}

/// The clients of every worker's table (merged), the first `limit` in `sort` order.
#[derive(Clone, Debug, Serialize)]
pub struct ClientsReport {
    /// Client records in use, all workers.
    pub total: usize,
    /// Records the tables can hold.
    pub capacity: usize,
    pub clients: Vec<ClientInfo>,
}

impl WorkerControl {
    /// Hands `policy` to every worker; each takes it up at its next batch boundary, so no
    /// request is dropped for the change.
    fn post_policy(&self, current: &mut Arc<Policy>, policy: Policy) {
        *current = Arc::new(policy);
        for m in &self.mailboxes {
            m.post_policy(current.clone());
        }
    }

    fn policy(&self) -> std::sync::MutexGuard<'_, Arc<Policy>> {
        self.policy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes up reloaded `[access]` and `[rate-limit]` sections.
    pub fn set_access(&self, access: &AccessConfig, rate_limit: &RateLimitConfig) {
        let mut current = self.policy();
        let policy = Policy {
            auth: current.auth.clone(),
            ..policy_for(access, rate_limit, current.serving)
        };
        tracing::info!(
            rules = policy.access.len(),
            rules_memory = format!("{} KiB", policy.access.memory_bytes() >> 10),
            rate_limit = policy.rate_limit.is_some(),
            "reload: access rules and rate limit handed to the workers"
        );
        self.post_policy(&mut current, policy);
    }

    /// Takes up a reloaded `[auth]` section: reads the key file again (changed or not). A
    /// file that cannot be used leaves the running keys in place.
    pub fn set_auth(&self, auth: &AuthConfig) {
        let mut current = self.policy();
        // Its warnings came with the configuration's (`Config::load_checked`).
        let (auth, _) = match auth.load() {
            Ok(loaded) => loaded,
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!("reload: {line}");
                }
                tracing::error!("reload: keys not changed");
                return;
            }
        };
        tracing::info!(
            keys = auth.keys.len(),
            require = ?auth.require,
            "reload: keys handed to the workers"
        );
        let policy = Policy {
            auth: Arc::new(auth),
            ..(**current).clone()
        };
        crate::auth::upstream::publish(&policy.auth);
        self.post_policy(&mut current, policy);
    }

    /// Starts or stops answering requests without stopping the process (`serving on|off`);
    /// requests that arrive while off are counted and dropped as `not_serving`.
    pub fn set_serving(&self, serving: bool) {
        let mut current = self.policy();
        if current.serving != serving {
            tracing::info!("serving {}", if serving { "on" } else { "off" });
        }
        let policy = Policy {
            serving,
            ..(**current).clone()
        };
        self.post_policy(&mut current, policy);
    }

    /// Waits until every worker has taken up the policy last posted (each at its next batch
    /// boundary; a worker that does not get there within a few seconds makes it an error).
    pub fn settle(&self) -> anyhow::Result<()> {
        for (w, m) in self.mailboxes.iter().enumerate() {
            m.barrier(CLIENT_READ_TIMEOUT)
                .with_context(|| format!("waiting for worker {w}"))?;
        }
        Ok(())
    }

    /// True unless serving was switched off.
    pub fn serving(&self) -> bool {
        self.policy().serving
    }

    /// The clients of every worker's table, merged: the first `limit` in `sort` order, and
    /// the total. Read from the workers between their batches (they never wait for it); a
    /// worker that does not answer within a few seconds makes it an error.
    pub fn clients(&self, sort: ClientSort, limit: usize) -> anyhow::Result<ClientsReport> {
        let now = sys::clock::now().0;
        let mut total = 0;
        let mut rows: Vec<ClientInfo> = Vec::new();
        let by = |a: &ClientInfo, b: &ClientInfo| a.order(sort).partial_cmp(&b.order(sort));
        for (w, m) in self.mailboxes.iter().enumerate() {
            m.read_clients(CLIENT_READ_TIMEOUT, |chunk| {
                total += chunk.len();
                rows.extend(chunk.iter().map(|r| ClientInfo::new(r, w, now)));
                // Keep memory to about twice what is asked for, however large the tables.
                if rows.len()
                    > limit
                        .saturating_mul(2)
                        .max(crate::datapath::mailbox::READ_CHUNK)
                {
                    rows.sort_by(|a, b| by(a, b).unwrap_or(std::cmp::Ordering::Equal));
                    rows.truncate(limit);
                }
            })
            .with_context(|| format!("reading the client table of worker {w}"))?;
        }
        rows.sort_by(|a, b| by(a, b).unwrap_or(std::cmp::Ordering::Equal));
        rows.truncate(limit);
        Ok(ClientsReport {
            total,
            capacity: self.client_capacity,
            clients: rows,
        })
    }
}

/// The per-datagram policy a configuration asks for.
pub fn policy_for(access: &AccessConfig, rate_limit: &RateLimitConfig, serving: bool) -> Policy {
    Policy {
        serving,
        access: Arc::new(access.rules()),
        deny_kod: access.deny_action == DenyAction::Kod,
        rate_limit: rate_limit.limit(),
        auth: Arc::default(),
    }
}

/// Which cores the workers run on: the explicit list (checked against what the process may
/// use), or every core available. Read before any thread is pinned.
pub fn choose_cores(explicit: &[usize]) -> anyhow::Result<Vec<core_affinity::CoreId>> {
    let available = core_affinity::get_core_ids().unwrap_or_default();
    if explicit.is_empty() {
        return Ok(available);
    }
    explicit
        .iter()
        .map(|&id| {
            available
                .iter()
                .copied()
                .find(|c| c.id == id)
                .with_context(|| {
                    format!(
                        "core {id} from server.cores is not available to this process (available: {:?})",
                        available.iter().map(|c| c.id).collect::<Vec<_>>()
                    )
                })
        })
        .collect()
}

/// Opens the configured backend, or says why it cannot run. `auto` takes the best backend
/// the machine supports and logs each fallback with its reason.
#[cfg(linux_io)]
fn open_backend(opts: &Config, workers: usize) -> anyhow::Result<Opened> {
    let udp = || -> anyhow::Result<Opened> {
        Ok(io::udp::open(
            &opts.server.listen,
            workers,
            opts.server.batch_size,
            opts.server.interleaved && opts.clients.max > 0,
        )?)
    };
    match opts.server.backend {
        BackendKind::Udp => udp(),
        BackendKind::Auto => {
            if !opts.server.interface.is_empty() {
                match xdp_open(opts, workers) {
                    Ok(opened) => return Ok(opened),
                    Err(why) => tracing::warn!(
                        "backend auto: xdp unavailable on {:?} ({why:#}); falling back to \
                         io-uring, else udp",
                        opts.server.interface
                    ),
                }
            }
            match io::uring::probe() {
                Ok(()) => Ok(uring_open(opts, workers)?),
                Err(why) => {
                    tracing::info!("backend auto: io-uring unavailable ({why}); using udp");
                    udp()
                }
            }
        }
        BackendKind::IoUring => match io::uring::probe() {
            Ok(()) => Ok(uring_open(opts, workers)?),
            Err(why) => bail!("the io-uring backend cannot run here: {why}; use --backend udp"),
        },
        BackendKind::Xdp => xdp_open(opts, workers)
            .context("the xdp backend cannot run (use --backend udp or io-uring instead)"),
    }
}

/// Opens the backend of a build without `linux_io` (another system, or `--cfg
/// meridian_portable`): only the portable UDP backend exists, `auto` takes it, and asking for
/// io-uring or xdp is an error that says so.
#[cfg(not(linux_io))]
fn open_backend(opts: &Config, workers: usize) -> anyhow::Result<Opened> {
    use io::ONLY_PORTABLE_UDP;
    match opts.server.backend {
        BackendKind::Udp | BackendKind::Auto => {
            if opts.server.backend == BackendKind::Auto && !opts.server.interface.is_empty() {
                tracing::warn!(
                    "backend auto: xdp not available for {:?}: {ONLY_PORTABLE_UDP}; using udp",
                    opts.server.interface
                );
            }
            Ok(io::udp::open(
                &opts.server.listen,
                workers,
                opts.server.batch_size,
                false,
            )?)
        }
        BackendKind::IoUring => {
            bail!("the io-uring backend cannot run: {ONLY_PORTABLE_UDP}; use --backend udp")
        }
        BackendKind::Xdp => {
            bail!("the xdp backend cannot run: {ONLY_PORTABLE_UDP}; use --backend udp")
        }
    }
}

/// Opens the xdp backend: one worker per RX queue of each interface (not `workers`).
#[cfg(linux_io)]
fn xdp_open(opts: &Config, workers: usize) -> anyhow::Result<Opened> {
    let opened = io::xdp::open(&io::xdp::XdpOptions {
        listen: opts.server.listen.clone(),
        interfaces: opts.server.interface.clone(),
        mode: opts.server.xdp_mode,
        queues: opts.server.queues.clone(),
    })?;
    if opts.server.workers != 0 && opened.workers.len() != workers {
        tracing::info!(
            "xdp: one worker per RX queue: {} worker(s) (server.workers = {} does not apply)",
            opened.workers.len(),
            opts.server.workers
        );
    }
    Ok(opened)
}

#[cfg(linux_io)]
fn uring_open(opts: &Config, workers: usize) -> Result<Opened, io::SetupError> {
    io::uring::open(
        &opts.server.listen,
        workers,
        opts.server.batch_size,
        opts.server.interleaved && opts.clients.max > 0,
    )
}

/// A running server: its workers, clock and counters. Dropping it without `stop` detaches
/// the worker threads; call [`Server::shutdown`] to stop and join them.
pub struct Server {
    backend: &'static str,
    started: Instant,
    stop: Arc<AtomicBool>,
    clock: Arc<SharedClock>,
    counters: Vec<(Option<usize>, Arc<PaddedCounters>)>,
    threads: Vec<std::thread::JoinHandle<()>>,
    local_stratum: u8,
    precision: i8,
    last_refresh: Instant,
    /// The discipline thread, the clock's writer when sources are configured.
    discipline: Option<DisciplineThread>,
    /// What a discipline thread started by a reload is given.
    clock_config: ClockConfig,
    /// What other threads may ask of the workers.
    workers: Arc<WorkerControl>,
    pub bound: Vec<SocketAddr>,
}

/// The workers as the rest of the process reaches them, from any thread (the management
/// plane holds one): their policy (serving on/off, access rules, rate limit) and their client
/// tables. Nothing here makes a worker wait: each takes up a change, or lends its table,
/// between two batches.
pub struct WorkerControl {
    /// Each worker's mailbox, in worker order.
    mailboxes: Vec<Arc<Mailbox>>,
    /// The policy the workers were last given.
    policy: std::sync::Mutex<Arc<Policy>>,
    /// Client records all tables can hold.
    client_capacity: usize,
}

impl Server {
    /// Opens sockets, publishes the initial clock state and starts the pinned workers.
    pub fn start(opts: &Config, stop: Arc<AtomicBool>) -> anyhow::Result<Server> {
        if opts.server.listen.is_empty() {
            bail!("no listen address: give --listen ADDR:PORT or server.listen in the config");
        }
        // Refused before anything is bound, with or without sources.
        if opts.clock.mode == ClockMode::System && !cfg!(linux_io) {
            let why = crate::config::system_mode_refusal(false, true).unwrap_or_default();
            bail!("clock.mode = {why}");
        }
        let cores = choose_cores(&opts.server.cores)?;
        let workers = if opts.server.workers > 0 {
            opts.server.workers
        } else {
            cores.len().max(1)
        };
        let opened = open_backend(opts, workers)?;
        let precision = sys::clock::measure_precision();
        // With sources, replies say "unsynchronised" until the discipline first synchronises.
        let initial = if opts.sources.is_empty() {
            ClockSnapshot::local(opts.clock.local_stratum, precision, sys::clock::now())
        } else {
            ClockSnapshot::unsynchronized(precision)
        };
        let clock = Arc::new(SharedClock::new(initial));
        let discipline = if opts.sources.is_empty() {
            None
        } else {
            let settings = DisciplineSettings {
                sources: opts.sources.clone(),
                clock: opts.clock.clone(),
                precision,
            };
            // Its own stop flag: a reload may stop it alone; shutdown() stops it after the
            // workers.
            Some(DisciplineThread::spawn(
                settings,
                clock.clone(),
                Arc::new(AtomicBool::new(false)),
            )?)
        };

        let (auth, _) = opts
            .auth
            .load()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("auth.keys")?;
        let policy = Arc::new(Policy {
            auth: Arc::new(auth),
            ..policy_for(&opts.access, &opts.rate_limit, true)
        });
        crate::auth::upstream::publish(&policy.auth);
        let mut counters = Vec::with_capacity(workers);
        let mut mailboxes = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        let n_workers = opened.workers.len();
        let state = WorkerConfig {
            clients: opts.clients.per_worker(n_workers),
            seed: sys::random::seed(),
            interleaved: opts.server.interleaved,
        };
        let (client_records, client_bytes) = if state.clients == 0 {
            (0, 0)
        } else {
            (
                n_workers * ClientTable::records_for(state.clients),
                n_workers * ClientTable::memory_for(state.clients),
            )
        };
        // Each worker says when its state is allocated: "serving" is logged only then.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        for (id, mut worker_io) in opened.workers.into_iter().enumerate() {
            let ready = ready_tx.clone();
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let c = Arc::new(CachePadded::new(WorkerCounters::default()));
            counters.push((core.map(|c| c.id), c.clone()));
            let mailbox = Arc::new(Mailbox::default());
            mailboxes.push(mailbox.clone());
            let ctx = WorkerContext {
                id,
                clock: clock.clone(),
                counters: c,
                stop: stop.clone(),
                batch: opts.server.batch_size,
                mailbox,
            };
            let policy = policy.clone();
            let stop_all = stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("meridian-w{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core) {
                            tracing::warn!(
                                worker = id,
                                core = core.id,
                                "could not pin worker to its core; running unpinned"
                            );
                        }
                    }
                    // Allocated here, after pinning: the table's memory is local to the core.
                    let mut worker = Worker::new(state);
                    worker.set_policy(&policy);
                    let _ = ready.send(());
                    drop(ready);
                    if let Err(e) = worker_io.run(&ctx, &mut worker) {
                        tracing::error!(worker = id, "worker stopped: {e}");
                        stop_all.store(true, Ordering::Relaxed);
                    }
                })
                .context("spawning a worker thread")?;
            threads.push(t);
        }
        drop(ready_tx);
        for _ in 0..threads.len() {
            // A worker that died before allocating closes its sender: stop waiting then.
            if ready_rx.recv().is_err() {
                break;
            }
        }
        let core_ids: Vec<usize> = counters.iter().filter_map(|(c, _)| *c).collect();
        tracing::info!(
            backend = opened.name,
            workers = counters.len(),
            cores = ?core_ids,
            listen = ?opened.bound,
            rx_timestamps = opened.rx_stamping.as_str(),
            precision,
            clock = if discipline.is_some() {
                "disciplined"
            } else {
                "local"
            },
            clients = client_records,
            client_memory = format!("{} MiB", client_bytes >> 20),
            access_rules = policy.access.len(),
            rules_memory = format!("{} KiB", policy.access.memory_bytes() >> 10),
            keys = policy.auth.keys.len(),
            rate_limit = %opts.rate_limit.limit().map_or("off".to_owned(), |l| format!(
                "1 per 2^{} s, burst {}, leak 1/2^{}{}",
                l.interval,
                l.burst,
                l.leak,
                if l.kod { ", KoD" } else { "" }
            )),
            stratum = opts.clock.local_stratum,
            "meridian serving"
        );
        Ok(Server {
            backend: opened.name,
            started: Instant::now(),
            stop,
            clock,
            counters,
            threads,
            local_stratum: opts.clock.local_stratum,
            precision,
            last_refresh: Instant::now(),
            discipline,
            clock_config: opts.clock.clone(),
            workers: Arc::new(WorkerControl {
                mailboxes,
                policy: std::sync::Mutex::new(policy),
                client_capacity: client_records,
            }),
            bound: opened.bound,
        })
    }

    /// What other threads may ask of the workers (policy, client tables).
    pub fn workers(&self) -> &Arc<WorkerControl> {
        &self.workers
    }

    /// The published clock (for the discipline thread and tests).
    pub fn clock(&self) -> &Arc<SharedClock> {
        &self.clock
    }

    /// Keeps the local reference fresh when no sources are configured (otherwise the
    /// discipline thread is the clock's only writer); call periodically from the main thread.
    pub fn tick(&mut self) {
        if self.discipline.is_none() && self.last_refresh.elapsed() >= LOCAL_REFRESH {
            self.clock.publish(ClockSnapshot::local(
                self.local_stratum,
                self.precision,
                sys::clock::now(),
            ));
            self.last_refresh = Instant::now();
        }
    }

    /// Takes up a reloaded `[[source]]` list: the discipline thread adjusts its sources, is
    /// started when the first sources appear, and stopped (the local clock served again)
    /// when the last go.
    pub fn set_sources(&mut self, sources: Vec<SourceConfig>) -> anyhow::Result<()> {
        match (&self.discipline, sources.is_empty()) {
            (Some(d), false) => d.set_sources(sources),
            (Some(_), true) => {
                if let Some(d) = self.discipline.take() {
                    d.join();
                }
                tracing::info!(
                    "reload: no sources left: serving the local clock at stratum {}",
                    self.local_stratum
                );
                self.last_refresh = Instant::now() - LOCAL_REFRESH;
                self.tick();
            }
            (None, false) => {
                let settings = DisciplineSettings {
                    sources,
                    clock: self.clock_config.clone(),
                    precision: self.precision,
                };
                self.discipline = Some(DisciplineThread::spawn(
                    settings,
                    self.clock.clone(),
                    Arc::new(AtomicBool::new(false)),
                )?);
            }
            (None, true) => {}
        }
        Ok(())
    }

    /// Current counters, per worker and in total.
    pub fn report(&self) -> Report {
        let mut total = Tally::default();
        let workers = self
            .counters
            .iter()
            .enumerate()
            .map(|(i, (core, c))| {
                let t = c.read();
                total.add(&t);
                WorkerReport {
                    worker: i,
                    core: *core,
                    counters: CounterReport::from(&t),
                }
            })
            .collect();
        Report {
            backend: self.backend,
            uptime_secs: self.started.elapsed().as_secs_f64(),
            total: CounterReport::from(&total),
            workers,
            sources: self
                .discipline
                .as_ref()
                .map(DisciplineThread::sources)
                .unwrap_or_default(),
        }
    }

    /// The tracking values (`meridian tracking`): the discipline's last estimate, or what
    /// the published clock says (the local clock, or before the first estimate).
    pub fn tracking(&self) -> crate::discipline::tracking::Tracking {
        use crate::discipline::tracking::Tracking;
        let published = || {
            let snap = self.clock.load();
            let status = match (&self.discipline, snap.synchronized) {
                (None, _) => "local",
                (Some(_), true) => "holdover",
                (Some(_), false) => "unsynchronised",
            };
            Tracking::from_snapshot(&snap, status)
        };
        self.discipline
            .as_ref()
            .and_then(DisciplineThread::tracking)
            .unwrap_or_else(published)
    }

    /// Polls every source now with a burst of quick polls (`sync-now`); false without
    /// sources.
    pub fn sync_now(&self) -> bool {
        self.discipline
            .as_ref()
            .map(DisciplineThread::sync_now)
            .is_some()
    }

    /// True once a stop was asked for (signal or a failed worker).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Stops the workers, waits for them, and returns the final report.
    pub fn shutdown(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        let report = self.report();
        if let Some(d) = self.discipline.take() {
            d.join();
        }
        report
    }
}
