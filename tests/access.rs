//! Access rules and rate limiting against real clients: raw requests from several IPv4 and
//! IPv6 source addresses (a namespace of our own, with more addresses on its loopback), and
//! chronyd, which must take meridian's KoD DENY and RATE for what they are.
//!
//! Every assertion is on what was answered and counted; rate-limit figures come from the
//! token bucket's arithmetic over an interval far longer than any test run, so a slow machine
//! cannot change them.

// Tests are shells: they may read the clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    backends, counter, ntp_now, parse_reply, recv_timeout, request, skip_notice, temp_file,
    ServerProcess, CHRONYD, MERIDIAN, READY_TIMEOUT,
};

// Each test binary runs its tests in parallel: every test has its own namespace, so one
// port does for all.
use meridian_testkit::netns::{self, Netns};

const PORT: u16 = 11123;

/// A namespace with ::2 and ::3 on its loopback beside ::1 (127.0.0.0/8 is there already).
fn namespace() -> Option<Netns> {
    if let Some(why) = netns::unavailable() {
        skip_notice(&format!("access rules: {why}"));
        return None;
    }
    let ns = Netns::create(netns::unique_name("acl")).expect("creating a namespace");
    for a in ["::2/128", "::3/128"] {
        ns.ip(&["addr", "add", a, "dev", "lo", "nodad"]);
    }
    Some(ns)
}

/// `meridian serve --config FILE` in `ns`, one worker.
fn serve(ns: &Netns, backend: &str, config: &Path) -> ServerProcess {
    let mut cmd = ns.command(MERIDIAN);
    cmd.args(["serve", "--backend", backend, "--workers", "1"])
        .args(["--log-level", "info", "--config"])
        .arg(config);
    match ServerProcess::spawn(&mut cmd, READY_TIMEOUT) {
        Ok((p, _)) => p,
        Err(e) => panic!("meridian --backend {backend} did not start: {e}"),
    }
}

/// A client socket in `ns` bound to `src`, connected to `dst`.
fn client(ns: &Netns, src: &str, dst: SocketAddr) -> UdpSocket {
    let src: IpAddr = src.parse().unwrap();
    ns.on_thread(move || {
        let s = UdpSocket::bind((src, 0)).expect("binding the client");
        s.connect(dst).unwrap();
        s
    })
}

/// Sends one request with poll `poll` on `s`; the answer to it (its origin is our transmit
/// timestamp: a late answer to an earlier request is passed over) within `wait`.
fn exchange_on(s: &UdpSocket, poll: i8, wait: Duration) -> Option<Vec<u8>> {
    let t = ntp_now();
    let mut req = request(4, 3, t);
    req[2] = poll as u8;
    s.send(&req).unwrap();
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let b = recv_timeout(s, left)?;
        assert_eq!(b.len(), 48, "never longer than the request");
        if parse_reply(&b).origin == t {
            return Some(b);
        }
    }
}

/// "time", the kiss code ("DENY", "RATE") or "nothing".
fn kind(answer: &Option<Vec<u8>>) -> String {
    match answer {
        None => "nothing".into(),
        Some(b) if b[1] == 0 => String::from_utf8_lossy(&b[12..16]).into_owned(),
        Some(_) => "time".into(),
    }
}

/// What one request from `src` to `dst` gets.
fn outcome(ns: &Netns, src: &str, dst: SocketAddr) -> String {
    kind(&exchange_on(
        &client(ns, src, dst),
        6,
        Duration::from_millis(500),
    ))
}

fn config(name: &str, body: &str) -> PathBuf {
    temp_file(
        name,
        &format!("[server]\nlisten = [\"127.0.0.1:{PORT}\", \"[::1]:{PORT}\"]\n{body}"),
    )
}

/// Sends SIGHUP and waits for the reload to be logged done.
fn reload(server: &ServerProcess) {
    let before = server.stderr_text().matches("reload: done").count();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stderr_text().matches("reload: done").count() == before {
        assert!(
            Instant::now() < deadline,
            "no reload: {}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_most_specific_rule_decides_for_ipv4_and_ipv6_and_reloads_live() {
    let Some(ns) = namespace() else { return };
    let v4: SocketAddr = format!("127.0.0.1:{PORT}").parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{PORT}").parse().unwrap();
    for backend in backends() {
        let path = config(
            "acl.toml",
            "[access]\nallow = [\"127.0.0.0/8\", \"::/126\"]\n\
             deny = [\"127.0.0.0/24\", \"127.0.0.2\", \"::3\"]\nallow-x = 1\n",
        );
        // A misspelt key is refused, with its line.
        let mut check = ns.command(MERIDIAN);
        check.args(["validate", "--config"]).arg(&path);
        let out = meridian_testkit::run_bounded(&mut check, Duration::from_secs(10)).unwrap();
        assert!(!out.success());
        assert!(
            out.stderr.contains(":6:1: unknown field `allow-x`"),
            "{}",
            out.all()
        );
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = [\"127.0.0.1:{PORT}\", \"[::1]:{PORT}\"]\n\
                 [access]\nallow = [\"127.0.0.0/8\", \"127.0.0.1\", \"::/126\"]\n\
                 deny = [\"127.0.0.0/24\", \"127.0.0.2\", \"::3\"]\n"
            ),
        )
        .unwrap();
        let server = serve(&ns, backend, &path);
        // 127.0.0.1: its host rule allows it inside the denied /24; 127.0.1.1: the /8;
        // 127.0.0.2 and .5: denied; ::1 and ::2 allowed by the /126, ::3 denied by its own.
        let cases = [
            ("127.0.0.1", v4, "time"),
            ("127.0.1.1", v4, "time"),
            ("127.0.0.2", v4, "DENY"),
            ("127.0.0.5", v4, "DENY"),
            ("::1", v6, "time"),
            ("::2", v6, "time"),
            ("::3", v6, "DENY"),
        ];
        for (src, dst, want) in cases {
            assert_eq!(outcome(&ns, src, dst), want, "{backend}: from {src}");
        }
        let report = server.report_now();
        assert_eq!(counter(&report, &["total", "kod_deny"]), 3, "{report}");
        assert_eq!(counter(&report, &["total", "answered"]), 7, "{report}");
        assert_eq!(counter(&report, &["total", "clients_added"]), 4, "{report}");

        // Live: drop instead of KoD, and ::2 denied too. A client polling through the
        // reload gets every answer.
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = [\"127.0.0.1:{PORT}\", \"[::1]:{PORT}\"]\n\
                 [access]\nallow = [\"127.0.0.0/8\", \"127.0.0.1\", \"::/126\"]\n\
                 deny = [\"127.0.0.0/24\", \"127.0.0.2\", \"::3\", \"::2\"]\n\
                 deny-action = \"drop\"\n"
            ),
        )
        .unwrap();
        let steady = client(&ns, "127.0.1.1", v4);
        let mut answered = 0;
        for i in 0..40 {
            if i == 10 {
                reload(&server);
            }
            if exchange_on(&steady, 6, Duration::from_secs(2)).is_some() {
                answered += 1;
            }
        }
        assert_eq!(answered, 40, "{backend}: no request lost to the reload");
        assert_eq!(outcome(&ns, "127.0.0.2", v4), "nothing", "{backend}");
        assert_eq!(outcome(&ns, "::2", v6), "nothing", "{backend}");
        assert_eq!(outcome(&ns, "::1", v6), "time", "{backend}");
        let report = server.report_now();
        assert_eq!(
            counter(&report, &["total", "dropped", "denied"]),
            2,
            "{report}"
        );
        assert!(
            server
                .stderr_text()
                .contains("access rules and rate limit handed to the workers"),
            "{}",
            server.stderr_text()
        );
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn a_fast_client_gets_its_burst_the_leak_and_one_kod_rate() {
    let Some(ns) = namespace() else { return };
    let v4: SocketAddr = format!("127.0.0.1:{PORT}").parse().unwrap();
    for backend in backends() {
        // One request per 2^6 s = 64 s: no token is earned during the test.
        let path = config(
            "rate.toml",
            "[rate-limit]\nenabled = true\ninterval = 6\nburst = 5\nleak = 2\nkod = true\n",
        );
        let server = serve(&ns, backend, &path);
        let mut got = std::collections::BTreeMap::<String, usize>::new();
        let s = client(&ns, "127.0.0.7", v4);
        let mut polls = Vec::new();
        for _ in 0..45 {
            let answer = exchange_on(&s, 2, Duration::from_millis(300));
            if let Some(b) = &answer {
                polls.push(b[2] as i8);
            }
            *got.entry(kind(&answer)).or_default() += 1;
        }
        // 5 from the bucket; of the 40 limited, 1 in 4 answered (10), one KoD, the rest
        // silence.
        let want: std::collections::BTreeMap<String, usize> =
            [("time", 15), ("RATE", 1), ("nothing", 29)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        assert_eq!(got, want, "{backend}");
        // Within the bucket the client's own poll comes back; the leaked answers and the KoD
        // raise it to the limit's interval.
        assert!(polls[..5].iter().all(|&p| p == 2), "{backend}: {polls:?}");
        assert!(
            polls[5..].iter().all(|&p| p == 6),
            "{backend}: poll raised: {polls:?}"
        );
        let report = server.report_now();
        let t = &report["total"];
        assert_eq!(counter(t, &["kod_rate"]), 1, "{report}");
        assert_eq!(counter(t, &["rate_limit_leaked"]), 10, "{report}");
        assert_eq!(counter(t, &["dropped", "rate_limited"]), 29, "{report}");
        assert_eq!(
            counter(t, &["received"]),
            counter(t, &["answered"]) + counter(t, &["dropped_total"]),
            "every request explained: {report}"
        );
        // Another client is not held back.
        assert_eq!(outcome(&ns, "127.0.0.8", v4), "time", "{backend}");
        let _ = std::fs::remove_file(&path);
    }
}

/// A chronyd client (`-x`: the clock untouched) in `ns`, sending from `bind` to `server`,
/// polling every 2^`poll` s (`iburst`: the first four at once) for `secs` s; returns its
/// debug output and the number of measurements it logged.
fn chronyd(
    ns: &Netns,
    bind: &str,
    server: SocketAddr,
    (poll, iburst): (i8, bool),
    secs: u32,
) -> (String, usize) {
    let dir = common::chronyd_dir(&format!("acl-{bind}")).expect("a _chrony (or chrony) user");
    let conf = dir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "server {} port {} minpoll {poll} maxpoll {poll}{}\nbindacqaddress {bind}\n\
             logdir {d}\nlog measurements\npidfile {d}/chronyd.pid\ncmdport 0\n\
             bindcmdaddress /\n",
            server.ip(),
            server.port(),
            if iburst { " iburst" } else { "" },
            d = dir.display()
        ),
    )
    .unwrap();
    let secs_s = secs.to_string();
    let conf_s = conf.to_string_lossy().into_owned();
    let out = ns.run(
        "timeout",
        &["-s", "TERM", &secs_s, CHRONYD, "-x", "-d", "-f", &conf_s],
        Duration::from_secs(u64::from(secs) + 10),
    );
    let log = std::fs::read_to_string(dir.join("measurements.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let measured = log
        .lines()
        .filter(|l| l.starts_with("20") && l.contains(&server.ip().to_string()))
        .count();
    (out.all(), measured)
}

#[test]
fn chronyd_takes_kod_deny_and_rate_for_what_they_are() {
    if !std::path::Path::new(CHRONYD).is_file() || !meridian_testkit::is_root() {
        return skip_notice("chronyd with KoD: needs root and chronyd (apt-get install chrony)");
    }
    let Some(ns) = namespace() else { return };
    let v4: SocketAddr = format!("127.0.0.1:{PORT}").parse().unwrap();
    let path = config(
        "chronyd.toml",
        "[access]\ndeny = [\"127.0.0.3\"]\n[rate-limit]\nenabled = true\ninterval = 0\n\
         burst = 2\nleak = 2\n",
    );
    let server = serve(&ns, "udp", &path);
    // Denied: chronyd never takes a sample from it, and meridian told it DENY each time.
    let (denied_log, denied_samples) = chronyd(&ns, "127.0.0.3", v4, (-2, true), 4);
    assert_eq!(
        denied_samples, 0,
        "a DENY'd server gives no sample:\n{denied_log}"
    );
    let report = server.report_now();
    let kods = counter(&report, &["total", "kod_deny"]);
    assert!(kods >= 1, "{report}");
    assert_eq!(counter(&report, &["total", "answered"]), kods, "{report}");
    // Polling 4 times a second against a limit of 1 per second: chronyd reads the RATE
    // kisses (and backs off, by its own rules).
    let (rate_log, _) = chronyd(&ns, "127.0.0.4", v4, (-2, true), 6);
    assert!(
        rate_log.contains("Received KoD RATE from 127.0.0.1"),
        "chronyd saw our KoD RATE:\n{rate_log}"
    );
    let report = server.report_now();
    assert!(counter(&report, &["total", "kod_rate"]) >= 1, "{report}");
    // Within the limit (one request per 2 s), a chronyd client gets every answer.
    let (ok_log, ok_samples) = chronyd(&ns, "127.0.0.5", v4, (1, false), 7);
    assert!(ok_samples >= 2, "samples from an allowed client:\n{ok_log}");
    assert!(!ok_log.contains("KoD"), "{ok_log}");
    let _ = std::fs::remove_file(&path);
}
