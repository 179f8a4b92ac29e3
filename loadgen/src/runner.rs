//! One measurement: N pinned threads, each owning its clients' transport, its send schedule
//! and its table of outstanding requests (no locks on the packet path), and a main thread
//! printing one progress line per second and a last one at the end.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use meridian::proto::UnixNanos;

use crate::cli::{Settings, Target};
use crate::pacing::Pacer;
use crate::report::{progress_line, Counts, Tick};
use crate::stats::{new_histogram, Sources, Stats};
use crate::sys::{mono_ns, realtime, set_timer_slack_ns};
use crate::transport::{self, Payload, Transport};
use crate::validate::{
    judge, origin_of, unmatched_reason, LastReplies, Match, Prev, ReplyMode, Table,
};

/// Poll exponent written into requests (64 s, what a well-behaved client would send).
const REQUEST_POLL: i8 = 6;
/// Longest sleep of a worker between looks at its deadlines.
const MAX_WAIT: Duration = Duration::from_millis(2);
/// How often a worker hands its progress figures to the main thread.
const FLUSH_EVERY_NS: u64 = 100_000_000;

/// Per-second figures a worker hands to the main thread.
struct Interval {
    sent: u64,
    valid: u64,
    invalid: u64,
    lost: u64,
    missed: u64,
    rtt: Histogram<u64>,
}

impl Default for Interval {
    fn default() -> Self {
        Interval {
            sent: 0,
            valid: 0,
            invalid: 0,
            lost: 0,
            missed: 0,
            rtt: new_histogram(),
        }
    }
}

impl Interval {
    fn drain_into(&mut self, o: &mut Interval) {
        o.sent += self.sent;
        o.valid += self.valid;
        o.invalid += self.invalid;
        o.lost += self.lost;
        o.missed += self.missed;
        o.rtt.add(&self.rtt).expect("same histogram shape");
        self.reset();
    }

    fn counts(&self) -> Counts<'_> {
        Counts {
            sent: self.sent,
            valid: self.valid,
            invalid: self.invalid,
            lost: self.lost,
            missed: self.missed,
            rtt: &self.rtt,
        }
    }

    fn reset(&mut self) {
        self.sent = 0;
        self.valid = 0;
        self.invalid = 0;
        self.lost = 0;
        self.missed = 0;
        self.rtt.reset();
    }
}

/// The plan every worker of a run follows (times are monotonic ns from `base`).
#[derive(Clone)]
struct Plan {
    base: Instant,
    start_ns: u64,
    warm_end_ns: u64,
    send_end_ns: u64,
    /// Total offered rate; 0 = closed loop.
    rate: f64,
    threads: usize,
    window: usize,
    max_lag_ns: u64,
    timeout_ns: u64,
    max_offset_ns: i64,
    version: u8,
    /// Interleaved requests (RFC 9769) once a client has a reply to refer to.
    interleaved: bool,
}

/// Runs one measurement of `target` at `rate` (0 = closed loop) and returns the merged
/// figures of every thread.
pub fn run(settings: &Settings, target: &Target, rate: f64) -> Result<Stats> {
    // Core ids first: once a thread is pinned, get_core_ids only sees that thread's mask.
    let cores = if settings.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        vec![]
    };
    let threads = settings.threads;
    let mut transports = Vec::with_capacity(threads);
    let mut first = 0;
    for t in 0..threads {
        let count = settings.clients / threads + usize::from(t < settings.clients % threads);
        let tr = transport::open(
            settings.transport,
            settings.xdp.as_ref(),
            target.addr,
            settings.sources.as_ref(),
            first,
            count,
            settings.batch,
        )
        .with_context(|| format!("opening {count} client socket(s) for {}", target.addr))?;
        transports.push(tr);
        first += count;
    }

    let source_ips: Vec<_> = transports.iter().flat_map(|t| t.source_ips()).collect();

    let base = Instant::now();
    // A short lead so every thread is ready before the first slot.
    let start_ns = 20_000_000;
    let warm_end_ns = start_ns + settings.warmup.as_nanos() as u64;
    let send_end_ns = warm_end_ns + settings.duration.as_nanos() as u64;
    let plan = Plan {
        base,
        start_ns,
        warm_end_ns,
        send_end_ns,
        rate,
        threads,
        window: settings.window,
        max_lag_ns: settings.max_lag.as_nanos() as u64,
        timeout_ns: settings.timeout.as_nanos() as u64,
        max_offset_ns: settings.max_offset_ns,
        version: settings.version,
        interleaved: settings.interleaved,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut shared = Vec::new();
    let mut handles = Vec::new();
    for (t, tr) in transports.into_iter().enumerate() {
        let cell = Arc::new(Mutex::new(Interval::default()));
        shared.push(cell.clone());
        let plan = plan.clone();
        let core = (!cores.is_empty()).then(|| cores[t % cores.len()]);
        let stop = stop.clone();
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                set_timer_slack_ns(1_000);
                worker(t as u32, tr, &plan, &cell, &stop)
            })
            .context("spawning a worker thread")?;
        handles.push(h);
    }

    // Progress: one line per second of the run with the counts since the previous line, and
    // a last one with the rest once every worker is done, so that the lines add up to the
    // run's totals however late this thread wakes.
    let mut acc = Interval::default();
    let mut next = start_ns + 1_000_000_000;
    let mut line_start = 0;
    let drain = |acc: &mut Interval| -> Result<()> {
        for cell in &shared {
            let mut g = cell.lock().map_err(|_| anyhow!("a worker panicked"))?;
            g.drain_into(acc);
        }
        Ok(())
    };
    while !handles.iter().all(|h| h.is_finished()) {
        let now = mono_ns(base);
        if now < next {
            std::thread::sleep(Duration::from_nanos((next - now).min(50_000_000)));
            continue;
        }
        let second = (now - start_ns) / 1_000_000_000;
        next = start_ns + (second + 1) * 1_000_000_000;
        drain(&mut acc)?;
        if settings.progress {
            // Marked when it covers warm-up time (its counts are the measured requests only).
            let tick = Tick::Second {
                n: second,
                warmup: warm_end_ns > start_ns && line_start < warm_end_ns,
            };
            eprintln!("{}", progress_line(&target.name, tick, &acc.counts()));
        }
        line_start = now;
        acc.reset();
    }
    drain(&mut acc)?;
    if settings.progress {
        eprintln!("{}", progress_line(&target.name, Tick::End, &acc.counts()));
    }
    let mut total = Stats::default();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => total.merge(&s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(anyhow!("a worker thread panicked"));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    total.sources = Sources::of(&source_ips);
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// The send/receive loop of one thread.
fn worker(
    thread: u32,
    mut tr: Box<dyn Transport>,
    plan: &Plan,
    shared: &Mutex<Interval>,
    stop: &AtomicBool,
) -> Result<Stats> {
    let nclients = tr.clients();
    let batch = tr.batch().max(1);
    let mut table = Table::new(thread);
    if plan.interleaved {
        table = table.interleaved();
    }
    // Each client's last valid reply, which its next request refers to in interleaved mode.
    let mut last = LastReplies::new(nclients, plan.interleaved);
    let mut stats = Stats {
        transport: tr.name(),
        interleaved: plan.interleaved,
        ..Stats::default()
    };
    let mut iv = Interval::default();
    let mut pacer = (plan.rate > 0.0).then(|| {
        let per_thread = plan.rate / plan.threads as f64;
        // Threads interleave their slots evenly.
        let stagger = (1e9 / plan.rate * thread as f64) as u64;
        Pacer::new(per_thread, plan.start_ns + stagger, plan.max_lag_ns)
    });
    // Closed loop: one credit per request a client may have outstanding.
    let mut credits: VecDeque<u32> = VecDeque::new();
    if pacer.is_none() {
        for _ in 0..plan.window {
            credits.extend(0..nclients as u32);
        }
    }
    let mut payloads: Vec<Payload> = Vec::with_capacity(batch);
    let mut rr = 0usize;
    let mut measuring = false;
    let mut sending_done = false;
    let mut last_flush = 0u64;
    let version = plan.version;
    let closed = pacer.is_none();
    let mut todo: Vec<(u32, usize)> = Vec::new();
    let max_offset = plan.max_offset_ns;

    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = mono_ns(plan.base);
        if !measuring && now >= plan.warm_end_ns {
            measuring = true;
            if let Some(p) = pacer.as_mut() {
                // Lateness figures cover the measured part only.
                p.max_lag_ns = 0;
                p.total_lag_ns = 0;
                p.sent = 0;
            }
        }
        let sending = now < plan.send_end_ns;
        if sending {
            // Which clients send now, and how many requests each.
            todo.clear();
            match pacer.as_mut() {
                Some(p) => {
                    if now >= plan.start_ns {
                        let due = p.poll(now, batch);
                        if measuring {
                            stats.missed_sends += due.skipped;
                            iv.missed += due.skipped;
                        }
                        // The slots due together go out from one client in one batch;
                        // clients take turns batch by batch. Interleaved clients take one
                        // slot each: a client's second request in a burst would have no
                        // reply to refer to yet, and would go out basic.
                        if due.send > 0 && plan.interleaved {
                            for _ in 0..due.send {
                                todo.push((rr as u32, 1));
                                rr = (rr + 1) % nclients;
                            }
                        } else if due.send > 0 {
                            todo.push((rr as u32, due.send));
                            rr = (rr + 1) % nclients;
                        }
                    }
                }
                None => {
                    if now >= plan.start_ns {
                        for _ in 0..batch.min(credits.len()) {
                            let c = credits.pop_front().expect("checked length");
                            match todo.last_mut() {
                                Some(last) if last.0 == c => last.1 += 1,
                                _ => todo.push((c, 1)),
                            }
                        }
                    }
                }
            }
            let real = realtime();
            for &(client, k) in &todo {
                payloads.clear();
                let mut interleaved = 0;
                for _ in 0..k {
                    if table.full() {
                        table.retire_oldest(|s| {
                            if s.measured {
                                stats.lost += 1;
                                iv.lost += 1;
                            }
                        });
                    }
                    let req = table.insert(real, client, measuring, last.take(client));
                    interleaved += u64::from(req.interleaved.is_some());
                    payloads.push(req.payload(version, REQUEST_POLL));
                }
                let sent = tr.send(client as usize, &payloads).unwrap_or(0);
                for _ in sent..k {
                    if let Some(prev) = table.unsend_last() {
                        interleaved -= 1;
                        last.offer(client, prev);
                    }
                    if closed {
                        credits.push_back(client);
                    }
                }
                if measuring {
                    stats.modes.interleaved_requests += interleaved;
                    stats.sent += sent as u64;
                    stats.send_errors += (k - sent) as u64;
                    iv.sent += sent as u64;
                } else {
                    stats.warmup_sent += sent as u64;
                }
            }
        } else if !sending_done {
            sending_done = true;
            if let Some(p) = pacer.as_mut() {
                let before = p.missed;
                p.finish(plan.send_end_ns);
                stats.missed_sends += p.missed - before;
                iv.missed += p.missed - before;
                stats.max_lag_ns = p.max_lag_ns;
                stats.lag_sum_ns = p.total_lag_ns;
                stats.lag_count = p.sent;
            }
        }

        // Wait for replies until the next send is due (or a short while).
        let now = mono_ns(plan.base);
        let wait = if sending {
            match pacer.as_ref() {
                Some(p) => Duration::from_nanos(p.next_due().saturating_sub(now)),
                None if credits.is_empty() => MAX_WAIT,
                None => Duration::ZERO,
            }
        } else {
            MAX_WAIT
        }
        .min(MAX_WAIT);
        let in_measure = now >= plan.warm_end_ns;
        let outcome = tr.recv(wait, batch * 4, &mut |meta, data| {
            let rx = UnixNanos(meta.rx_ns);
            match origin_of(data).map(|o| table.lookup(o)) {
                Some(Match::Answer(req, mode)) => {
                    let slot = req.slot;
                    if closed {
                        credits.push_back(slot.client);
                    }
                    let verdict = judge(data, version, &req, mode, rx, max_offset);
                    if let Ok((h, _)) = &verdict {
                        // Warm-up replies too: the first measured requests can be interleaved.
                        let prev = Prev {
                            server_rx: h.receive_ts,
                            sent_ns: slot.sent_ns,
                            rx_ns: rx.0,
                        };
                        last.offer(slot.client, prev);
                    }
                    if !slot.measured {
                        return;
                    }
                    stats.received += 1;
                    if meta.kernel_stamp {
                        stats.kernel_rx_stamps += 1;
                    }
                    match verdict {
                        Ok((_, ex)) => {
                            let rtt = rx.nanos_since(UnixNanos(slot.sent_ns));
                            stats.record_valid(rtt, ex.t3.diff_nanos(ex.t2), ex.offset_nanos());
                            stats.modes.count_reply(
                                req.interleaved.is_some(),
                                mode == ReplyMode::Interleaved,
                            );
                            iv.valid += 1;
                            iv.rtt.saturating_record(rtt.max(0) as u64);
                        }
                        Err(inv) => {
                            stats.count_invalid(inv.as_str(), inv.kiss_code());
                            iv.invalid += 1;
                        }
                    }
                }
                Some(Match::Duplicate(slot)) => {
                    if slot.measured {
                        stats.received += 1;
                        stats.duplicate += 1;
                    }
                }
                Some(Match::Late(slot)) => {
                    if slot.measured {
                        stats.received += 1;
                        stats.late += 1;
                    }
                }
                Some(Match::Unknown) | None => {
                    if in_measure {
                        stats.received += 1;
                        let inv = unmatched_reason(data, version);
                        stats.count_invalid(inv.as_str(), inv.kiss_code());
                        iv.invalid += 1;
                    }
                }
            }
        });
        match outcome {
            Ok(o) => {
                if in_measure {
                    stats.recv_errors += o.errors;
                }
            }
            Err(e) => return Err(e).context("waiting for replies"),
        }

        // Requests without a reply within the timeout are lost.
        let deadline = realtime().0 - plan.timeout_ns as i64;
        table.expire(deadline, |s| {
            if s.measured {
                stats.lost += 1;
                iv.lost += 1;
            }
            if closed {
                credits.push_back(s.client);
            }
        });

        let now = mono_ns(plan.base);
        if now - last_flush >= FLUSH_EVERY_NS {
            last_flush = now;
            if let Ok(mut g) = shared.lock() {
                iv.drain_into(&mut g);
            }
        }
        if sending_done
            && (table.outstanding() == 0
                || now >= plan.send_end_ns + plan.timeout_ns + MAX_WAIT.as_nanos() as u64)
        {
            break;
        }
    }
    // Whatever is still outstanding has had its full timeout.
    table.expire(i64::MAX, |s| {
        if s.measured {
            stats.lost += 1;
            iv.lost += 1;
        }
    });
    if let Ok(mut g) = shared.lock() {
        iv.drain_into(&mut g);
    }
    Ok(stats)
}
