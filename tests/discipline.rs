//! The upstream discipline end to end: a real `meridian serve` disciplined by small fake NTP
//! servers (threads in this test, each on its own 127.0.x.y address, serving the system clock
//! shifted by a known offset), checked with `meridian query`, raw requests and chronyd.
//!
//! Polls are fast (minpoll = maxpoll = -2: every 250 ms, iburst) so each scenario takes a few
//! seconds. Everything stays on 127.0.0.0/8; every process is killed by PID on every path (the
//! guards in `common`), every wait has a deadline.

// Integration tests and benchmarks run on real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    chrony_offset, chronyd_query, exchange, ntp_now, parse_reply, query_offset, request, temp_file,
    FakeBehaviour, FakeUpstream, Reply, Server, ServerOpts, CHRONYD,
};

/// What three agreeing fake servers are ahead of the system clock.
const AHEAD: f64 = 0.200;
/// How close meridian's served offset must come.
const TOLERANCE: f64 = 0.002;
/// How long synchronisation may take.
const SYNC_WITHIN: Duration = Duration::from_secs(10);

fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}

/// Starts meridian with one `[[source]]` per fake and `clock` as the `[clock]` table.
fn meridian(fakes: &[&FakeUpstream], clock: &str) -> Server {
    let mut text = format!("[clock]\n{clock}\n");
    for f in fakes {
        text.push_str(&source_table(f));
    }
    let path = temp_file("discipline.toml", &text);
    let mut opts = ServerOpts::new("udp");
    opts.extra = vec!["--config".into(), path.display().to_string()];
    let server = Server::must_start(&opts);
    let _ = std::fs::remove_file(&path);
    assert!(
        server.ready_line.contains("disciplined"),
        "start-up line should say the clock is disciplined: {}",
        server.ready_line
    );
    server
}

/// One raw request; the decoded reply and its root dispersion.
fn ask(server: &Server) -> Option<(Reply, f64)> {
    let raw = exchange(
        server.addr(),
        &request(4, 3, ntp_now()),
        Duration::from_secs(1),
    )?;
    let r = parse_reply(&raw);
    Some((r, r.root_dispersion as f64 / 65536.0))
}

/// Waits until `pred` holds for a raw reply; returns it and when it first held.
fn wait_reply(
    server: &Server,
    within: Duration,
    what: &str,
    pred: impl Fn(&Reply) -> bool,
) -> (Reply, Instant) {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((r, _)) = ask(server) {
            if pred(&r) {
                return (r, Instant::now());
            }
            last = Some(r);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what}: not within {within:?}; last reply {last:?}\n--- stderr\n{}",
        server.stderr_text()
    );
}

/// Waits until meridian serves `expect` ± TOLERANCE (by `meridian query`), then returns a
/// 4-sample measurement.
fn wait_offset(server: &Server, expect: f64, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(o) = query_offset(server.addr(), 1) {
            last = Some(o);
            if (o - expect).abs() < TOLERANCE {
                let o = query_offset(server.addr(), 4).expect("a 4-sample query");
                assert!(
                    (o - expect).abs() < TOLERANCE,
                    "served offset {o:+.6} s, expected {expect:+.6} ± {TOLERANCE}"
                );
                return o;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "served offset not {expect:+.6} ± {TOLERANCE} within {within:?} (last {last:?})\n--- stderr\n{}",
        server.stderr_text()
    );
}

/// Waits until the log contains `needle`.
fn wait_log(server: &Server, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if server.stderr_text().contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "no log line with {needle:?} within {within:?}\n--- stderr\n{}",
        server.stderr_text()
    );
}

fn source_state(report: &serde_json::Value, addr: SocketAddr) -> &str {
    report["sources"]
        .as_array()
        .unwrap_or_else(|| panic!("no sources in the report: {report}"))
        .iter()
        .find(|s| s["address"] == addr.to_string())
        .and_then(|s| s["state"].as_str())
        .unwrap_or_else(|| panic!("{addr} not in the report: {report}"))
}

#[test]
fn three_agree_and_the_fourth_is_a_falseticker() {
    let good: Vec<FakeUpstream> = (2..=4)
        .map(|h| {
            let jitter = if h == 3 { 0.0005 } else { 0.0 };
            FakeUpstream::start(ip(1, h), FakeBehaviour::offset(AHEAD).jitter(jitter))
        })
        .collect();
    let liar = FakeUpstream::start(ip(1, 5), FakeBehaviour::offset(-3.0));
    let mut all: Vec<&FakeUpstream> = good.iter().collect();
    all.push(&liar);
    let started = Instant::now();
    let server = meridian(&all, "");
    let offset = wait_offset(&server, AHEAD, SYNC_WITHIN);
    eprintln!("served {offset:+.6} s after {:?}", started.elapsed());
    wait_log(
        &server,
        &format!("source {} falseticker", liar.addr),
        Duration::from_secs(5),
    );
    let (r, _) = ask(&server).unwrap();
    assert_eq!((r.leap, r.stratum), (0, 2), "{r:?}");
    // Our refid is the system peer's address: one of the three.
    assert!(
        good.iter().any(|g| r.refid
            == g.addr
                .ip()
                .to_string()
                .parse::<Ipv4Addr>()
                .unwrap()
                .octets()),
        "refid {:?}",
        r.refid
    );
    let report = server.report_now();
    assert_eq!(source_state(&report, liar.addr), "falseticker", "{report}");
    for g in &good {
        let s = source_state(&report, g.addr);
        assert!(
            ["selected", "candidate", "outlier"].contains(&s),
            "{}: {s}: {report}",
            g.addr
        );
    }
    let stopped = server.stop();
    assert_eq!(stopped.report["sources"].as_array().map(Vec::len), Some(4));
    assert!(
        stopped.stderr.contains("discipline: 4 source(s)"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn lost_sources_then_holdover_then_unsynchronised() {
    let fakes: Vec<FakeUpstream> = (2..=4)
        .map(|h| FakeUpstream::start(ip(2, h), FakeBehaviour::offset(AHEAD)))
        .collect();
    let refs: Vec<&FakeUpstream> = fakes.iter().collect();
    let server = meridian(&refs, "holdover = 5");
    wait_offset(&server, AHEAD, SYNC_WITHIN);

    // One source stops answering: the other two carry on.
    fakes[0].set_silent(true);
    wait_log(
        &server,
        &format!("source {} unreachable", fakes[0].addr),
        Duration::from_secs(8),
    );
    let offset = wait_offset(&server, AHEAD, Duration::from_secs(3));
    eprintln!("one source lost: still {offset:+.6} s");
    assert_eq!(ask(&server).unwrap().0.leap, 0);

    // All stop: holdover (dispersion grows), then LI=3 once the holdover is over.
    for f in &fakes {
        f.set_silent(true);
    }
    wait_log(&server, "holdover for 5 s", Duration::from_secs(8));
    let entered = Instant::now();
    let (r1, d1) = ask(&server).unwrap();
    assert_eq!(r1.leap, 0, "still synchronised in holdover: {r1:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let (r2, d2) = ask(&server).unwrap();
    eprintln!("holdover: root dispersion {d1:.6} s -> {d2:.6} s");
    if r2.leap == 0 {
        assert!(
            d2 > d1,
            "root dispersion must grow in holdover: {d1} -> {d2}"
        );
    }
    let (r, at) = wait_reply(
        &server,
        Duration::from_secs(8),
        "LI=3 after holdover",
        |r| r.leap == 3,
    );
    let held = at.duration_since(entered);
    eprintln!("unsynchronised {held:?} after holdover began: {r:?}");
    assert!(
        held >= Duration::from_millis(1400),
        "LI=3 came only {held:?} after holdover began"
    );
    assert_eq!(r.stratum, 0, "{r:?}");
    server.stop();
}

#[test]
fn local_fallback_after_holdover() {
    let fakes: Vec<FakeUpstream> = (2..=4)
        .map(|h| FakeUpstream::start(ip(3, h), FakeBehaviour::offset(AHEAD)))
        .collect();
    let refs: Vec<&FakeUpstream> = fakes.iter().collect();
    let server = meridian(
        &refs,
        "holdover = 2\nlocal-fallback = true\nlocal-stratum = 7",
    );
    wait_offset(&server, AHEAD, SYNC_WITHIN);
    for f in &fakes {
        f.set_silent(true);
    }
    let (r, _) = wait_reply(
        &server,
        Duration::from_secs(10),
        "local stratum 7 after holdover",
        |r| r.stratum == 7,
    );
    assert_eq!(r.leap, 0, "{r:?}");
    assert_eq!(r.refid, [127, 127, 1, 1], "{r:?}");
    // Served time continues where the discipline left it (no jump back to the raw clock).
    let offset = query_offset(server.addr(), 2).expect("a valid answer in local mode");
    assert!((offset - AHEAD).abs() < 0.005, "offset {offset}");
    wait_log(
        &server,
        "serving the local clock at stratum 7",
        Duration::from_secs(1),
    );
    server.stop();
}

/// 2016-12-31T00:00:00Z, the day of the last leap second so far.
const DEC31_2016: f64 = 1_483_142_400.0;

/// The offset that makes a fake upstream serve `utc` (Unix seconds) now: leap tests inject the
/// date and time of day through the sources, so they give the same verdict at any hour.
fn serving(utc: f64) -> f64 {
    utc - std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Three agreeing fakes serving `utc` and announcing `leap` (shifted by `net` for addresses).
fn leap_fakes(net: u8, utc: f64, leap: u8) -> (Vec<FakeUpstream>, f64) {
    let offset = serving(utc);
    let fakes = (2..=4)
        .map(|h| FakeUpstream::start(ip(net, h), FakeBehaviour::offset(offset).leap(leap)))
        .collect();
    (fakes, offset)
}

#[test]
fn announced_leap_second_is_passed_on_only_on_the_leap_day() {
    // 2016-12-31, 12:01 UTC: the announcement is believed and passed on.
    let (fakes, offset) = leap_fakes(4, DEC31_2016 + 12.0 * 3600.0 + 60.0, 1);
    let refs: Vec<&FakeUpstream> = fakes.iter().collect();
    let server = meridian(&refs, "");
    let (r, _) = wait_reply(&server, SYNC_WITHIN, "LI=1 passed on", |r| r.leap == 1);
    assert_eq!(r.stratum, 2, "{r:?}");
    wait_offset(&server, offset, SYNC_WITHIN);
    wait_log(
        &server,
        "leap second insertion announced for 2017-01-01T00:00:00Z",
        Duration::from_secs(2),
    );
    server.stop();
    drop(fakes);

    // 2016-12-01: no leap second can end that day; not acted on, said once.
    let (fakes, offset) = leap_fakes(4, DEC31_2016 - 30.0 * 86400.0 + 43_200.0, 1);
    let refs: Vec<&FakeUpstream> = fakes.iter().collect();
    let server = meridian(&refs, "");
    wait_offset(&server, offset, SYNC_WITHIN);
    let note = "not acted on before 2016-12-31 (clock.leap-days = \"june-december\")";
    wait_log(&server, note, Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(2)); // several more updates announcing it
    let (r, _) = ask(&server).unwrap();
    assert_eq!((r.leap, r.stratum), (0, 2), "{r:?}");
    assert_eq!(server.stderr_text().matches(note).count(), 1, "logged once");
    server.stop();

    // The same day with `leap-days = "any-day"`: passed on.
    let server = meridian(&refs, "leap-days = \"any-day\"");
    wait_reply(&server, SYNC_WITHIN, "LI=1 with any-day", |r| r.leap == 1);
    server.stop();
}

#[test]
fn a_leap_second_learned_late_is_smeared_without_a_jump() {
    // 23:59:00 on the leap day, one minute before the leap and half-way through the default
    // noon-to-noon smear window: served time must not jump by the half second a smear would
    // have done by now, and clients must not see the warning (they would apply it twice).
    let (fakes, offset) = leap_fakes(6, DEC31_2016 + 86_400.0 - 60.0, 1);
    let refs: Vec<&FakeUpstream> = fakes.iter().collect();
    let server = meridian(&refs, "leap-smear = true");
    wait_offset(&server, offset, SYNC_WITHIN);
    wait_log(
        &server,
        "smearing from 2016-12-31T23:5",
        Duration::from_secs(2),
    );
    let (r, _) = wait_reply(&server, SYNC_WITHIN, "smear refid", |r| {
        r.refid == [127, 127, 1, 255]
    });
    assert_eq!((r.leap, r.stratum), (0, 2), "{r:?}");
    // Still within the tolerance of the sources after a few seconds of ramp (≤ 400 ppm).
    std::thread::sleep(Duration::from_secs(2));
    wait_offset(&server, offset, Duration::from_secs(2));
    server.stop();
}

#[test]
fn kiss_rate_backs_off_and_deny_drops_the_source() {
    let good: Vec<FakeUpstream> = (2..=3)
        .map(|h| FakeUpstream::start(ip(5, h), FakeBehaviour::offset(AHEAD)))
        .collect();
    let rate = FakeUpstream::start(ip(5, 4), FakeBehaviour::offset(AHEAD).kiss(b"RATE"));
    let deny = FakeUpstream::start(ip(5, 5), FakeBehaviour::offset(AHEAD).kiss(b"DENY"));
    let refs = [&good[0], &good[1], &rate, &deny];
    let server = meridian(&refs, "");
    wait_log(
        &server,
        &format!(
            "source {} sent kiss-o'-death DENY: no longer using it",
            deny.addr
        ),
        Duration::from_secs(5),
    );
    wait_log(
        &server,
        &format!("source {} sent kiss-o'-death RATE", rate.addr),
        Duration::from_secs(5),
    );
    let denied_at = deny.request_count();
    std::thread::sleep(Duration::from_secs(7));
    let normal = good[0].request_count();
    let rated = rate.requests();
    let gaps: Vec<f64> = rated
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    eprintln!(
        "requests: normal {normal}, RATE {} (gaps {gaps:.3?}), DENY {}",
        rated.len(),
        deny.request_count()
    );
    assert!(
        normal >= 20,
        "a normal source is polled every 250 ms: {normal}"
    );
    assert!(
        rated.len() * 3 < normal,
        "RATE must back off: {} requests vs {normal}",
        rated.len()
    );
    assert!(gaps.len() >= 2, "{gaps:?}");
    assert!(
        gaps[gaps.len() - 1] >= 3.0 * gaps[0],
        "intervals must grow: {gaps:?}"
    );
    assert!(denied_at <= 2, "DENY after the first reply: {denied_at}");
    assert_eq!(deny.request_count(), denied_at, "no request after DENY");
    let report = server.report_now();
    assert_eq!(source_state(&report, deny.addr), "denied", "{report}");
    // The two good sources still synchronise the server.
    wait_offset(&server, AHEAD, Duration::from_secs(5));
    server.stop();
}

#[test]
fn chronyd_sees_the_disciplined_offset() {
    if !Path::new(CHRONYD).exists() {
        skip!("{CHRONYD} is missing (apt-get install chrony)");
    }
    if !common::is_root() {
        skip!("chronyd -Q needs root");
    }
    let fakes: Vec<FakeUpstream> = (2..=4)
        .map(|h| FakeUpstream::start(ip(6, h), FakeBehaviour::offset(AHEAD)))
        .collect();
    let refs: Vec<&FakeUpstream> = fakes.iter().collect();
    let server = meridian(&refs, "");
    wait_offset(&server, AHEAD, SYNC_WITHIN);
    let out = chronyd_query(server.addr());
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let offset =
        chrony_offset(&text).unwrap_or_else(|| panic!("chronyd printed no offset: {}", out.all()));
    eprintln!("chronyd: system clock wrong by {offset:+.6} s");
    assert!(
        (offset - AHEAD).abs() < 0.005,
        "chronyd measured {offset:+.6} s, expected {AHEAD:+.3} ± 0.005: {}",
        out.all()
    );
    server.stop();
}

#[test]
fn a_pool_entry_resolves_and_synchronises() {
    let fakes: Vec<FakeUpstream> = (2..=4)
        .map(|h| FakeUpstream::start(ip(7, h), FakeBehaviour::offset(AHEAD)))
        .collect();
    // An IP literal resolves to one address: the pool uses it (one of up to max-sources).
    let mut text = String::from("[clock]\n");
    for (i, f) in fakes.iter().enumerate() {
        let kind = if i == 0 {
            "kind = \"pool\"\nmax-sources = 2\n"
        } else {
            ""
        };
        text.push_str(&format!(
            "\n[[source]]\naddress = \"{}\"\n{kind}iburst = true\nminpoll = -2\nmaxpoll = -2\n",
            f.addr
        ));
    }
    let path = temp_file("pool.toml", &text);
    let mut opts = ServerOpts::new("udp");
    opts.extra = vec!["--config".into(), path.display().to_string()];
    let server = Server::must_start(&opts);
    let _ = std::fs::remove_file(&path);
    wait_offset(&server, AHEAD, SYNC_WITHIN);
    let log = server.stderr_text();
    assert!(log.contains("(pool, max 2, iburst"), "{log}");
    assert!(
        log.contains(&format!("source {} added", fakes[0].addr)),
        "{log}"
    );
    server.stop();
}

/// `clock.mode = "system"` without CAP_SYS_TIME must refuse to start. The capability is
/// dropped from the bounding set with setpriv, and its absence is checked first, so the test
/// can never adjust the machine's clock. (A portable build refuses system mode whatever the
/// capabilities: `tests/portable.rs`.)
#[cfg(linux_io)]
#[test]
fn system_mode_without_cap_sys_time_refuses_to_start() {
    if !common::is_root() {
        skip!("needs root to drop a capability with setpriv");
    }
    if !Path::new("/usr/bin/setpriv").exists() && !Path::new("/bin/setpriv").exists() {
        skip!("setpriv is not installed (util-linux)");
    }
    let drop = ["--bounding-set=-sys_time", "--inh-caps=-sys_time"];
    let probe = common::run_bounded(
        std::process::Command::new("setpriv")
            .args(drop)
            .args(["cat", "/proc/self/status"]),
        Duration::from_secs(5),
    )
    .expect("running setpriv");
    let cap_eff = probe
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    match cap_eff {
        Some(c) if c & (1 << 25) == 0 => {}
        other => {
            skip!("setpriv did not drop CAP_SYS_TIME (CapEff {other:x?}): not risking the clock")
        }
    }
    let fake = FakeUpstream::start(ip(8, 2), FakeBehaviour::offset(AHEAD));
    let path = temp_file(
        "system.toml",
        &format!(
            "[clock]\nmode = \"system\"\n\n[[source]]\naddress = \"{}\"\n",
            fake.addr
        ),
    );
    let port = common::free_port(true, false).unwrap();
    let out = common::run_bounded(
        std::process::Command::new("setpriv").args(drop).args([
            common::MERIDIAN,
            "serve",
            "--config",
            &path.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--backend",
            "udp",
            "--workers",
            "1",
        ]),
        Duration::from_secs(10),
    )
    .expect("running meridian");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.is_some() && !out.success(),
        "must fail: {}",
        out.all()
    );
    assert!(out.stderr.contains("CAP_SYS_TIME"), "{}", out.all());
    assert_eq!(fake.request_count(), 0, "no source was polled");
}

#[test]
fn query_tells_an_unsynchronised_server_from_a_kiss_of_death() {
    // A server whose only source never answers serves LI=3, stratum 0, a zero refid.
    let silent = FakeUpstream::start(ip(7, 2), FakeBehaviour::offset(AHEAD));
    silent.set_silent(true);
    let server = meridian(&[&silent], "");
    let addr = server.addr().to_string();
    let out = common::run_meridian(&["query", &addr, "--timeout", "2"], Duration::from_secs(10));
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "no valid answer must fail: {text}"
    );
    assert!(text.contains("server is not synchronised"), "{text}");
    assert!(!text.contains("kiss"), "{text}");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control bytes printed: {text:?}"
    );
    server.stop();

    // A real kiss-o'-death is still called one, by its code.
    let rate = FakeUpstream::start(ip(7, 3), FakeBehaviour::offset(AHEAD).kiss(b"RATE"));
    let out = common::run_meridian(
        &["query", &rate.addr.to_string(), "--timeout", "2"],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(1));
    assert!(out.stdout.contains("kiss-o'-death RATE"), "{}", out.stdout);
}

/// A `[[source]]` table polling `f` every 250 ms.
fn source_table(f: &FakeUpstream) -> String {
    format!(
        "\n[[source]]\naddress = \"{}\"\niburst = true\nminpoll = -2\nmaxpoll = -2\n",
        f.addr
    )
}

/// Starts meridian on `path`, with the log level left to the file (so a reload can change it).
fn meridian_on_file(path: &Path) -> Server {
    let mut opts = ServerOpts::new("udp");
    opts.log_level = None;
    opts.extra = vec!["--config".into(), path.display().to_string()];
    Server::must_start(&opts)
}

/// Waits until `f` has been polled `more` more times (the deadline is only a hang guard).
fn wait_polled(f: &FakeUpstream, more: usize, within: Duration) {
    let start = f.request_count();
    let deadline = Instant::now() + within;
    while f.request_count() < start + more {
        assert!(
            Instant::now() < deadline,
            "{} polled {} times in {within:?}, expected {more}",
            f.addr,
            f.request_count() - start
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_sources_and_log_level_and_keeps_the_rest() {
    let a = FakeUpstream::start(ip(8, 2), FakeBehaviour::offset(AHEAD));
    let b = FakeUpstream::start(ip(8, 3), FakeBehaviour::offset(AHEAD));
    // Its odd kiss code is logged at debug level only: a witness of the log level.
    let odd = FakeUpstream::start(ip(8, 4), FakeBehaviour::offset(AHEAD).kiss(b"ABCD"));
    let path = temp_file(
        "reload.toml",
        &format!(
            "[clock]\nholdover = 600\n{}{}",
            source_table(&a),
            source_table(&odd)
        ),
    );
    let server = meridian_on_file(&path);
    wait_offset(&server, AHEAD, SYNC_WITHIN);
    assert!(!server.stderr_text().contains("kiss-o'-death ABCD"));

    // Source a out, b in, the log level up, and a key that needs a restart.
    std::fs::write(
        &path,
        format!(
            "[clock]\nholdover = 30\n[log]\nlevel = \"debug\"\n{}{}",
            source_table(&b),
            source_table(&odd)
        ),
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    let quick = Duration::from_secs(5);
    wait_log(
        &server,
        &format!("source {} removed by reload", a.addr),
        quick,
    );
    wait_log(&server, &format!("source {} (server", b.addr), quick);
    wait_log(&server, "added by reload", quick);
    wait_log(
        &server,
        "reload: changed but kept until a restart: clock.holdover",
        quick,
    );
    wait_log(&server, "kiss-o'-death ABCD", quick);
    let polled_a = a.request_count();
    // Counted, not timed: while b gets three more polls, a (removed) gets none.
    wait_polled(&b, 3, SYNC_WITHIN);
    assert_eq!(
        a.request_count(),
        polled_a,
        "a removed source is no longer polled"
    );
    wait_offset(&server, AHEAD, SYNC_WITHIN);

    // An invalid file: reported with its location; the running configuration stays.
    std::fs::write(&path, "[clock]\nholdover = \"long\"\n").unwrap();
    server.signal(libc::SIGHUP);
    let located = format!(
        "reload: {}:2:12: clock.holdover: invalid type",
        path.display()
    );
    wait_log(&server, &located, quick);
    wait_log(
        &server,
        "reload: not applied; the running configuration stays",
        quick,
    );
    // Still polling the running sources.
    wait_polled(&b, 2, SYNC_WITHIN);
    let (r, _) = ask(&server).expect("still answering");
    assert_eq!(r.stratum, 2, "{r:?}");
    let stopped = server.stop();
    assert!(stopped.status.success(), "{:?}", stopped.status);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn sighup_starts_and_stops_following_sources() {
    let a = FakeUpstream::start(ip(9, 2), FakeBehaviour::offset(AHEAD));
    let path = temp_file("reload-local.toml", "[clock]\nlocal-stratum = 9\n");
    let server = meridian_on_file(&path);
    assert_eq!(ask(&server).unwrap().0.stratum, 9, "local clock first");

    std::fs::write(
        &path,
        format!("[clock]\nlocal-stratum = 9\n{}", source_table(&a)),
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    wait_offset(&server, AHEAD, SYNC_WITHIN);
    assert_eq!(ask(&server).unwrap().0.stratum, 2);

    std::fs::write(&path, "[clock]\nlocal-stratum = 9\n").unwrap();
    server.signal(libc::SIGHUP);
    wait_log(&server, "reload: no sources left", Duration::from_secs(5));
    wait_reply(&server, Duration::from_secs(5), "local clock again", |r| {
        r.stratum == 9 && r.refid == [127, 127, 1, 1]
    });
    let stopped = server.stop();
    assert!(stopped.status.success(), "{:?}", stopped.status);
    let _ = std::fs::remove_file(&path);
}
