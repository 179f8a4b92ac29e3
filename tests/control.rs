//! The control socket and the CLI end to end: a real `meridian serve` disciplined by fake
//! upstreams (three agreeing, one a falseticker) with its control socket in a temporary
//! directory, and every CLI command run against it, as text and as `--json`; serving off and
//! on seen by a raw NTP client; a changing request from another uid refused; a dead socket
//! reported in one line; an explicit socket path that cannot be used stops the start-up.
//!
//! Everything stays on 127.0.0.0/8 and in a private temporary directory; every process is
//! killed by PID on every path (the guards in `common`), every wait has a deadline that only
//! guards against a hang.

// Integration tests run on real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    exchange, is_root, ntp_now, request, run_bounded, run_meridian, temp_file, FakeBehaviour,
    FakeUpstream, RunOutput, Server, ServerOpts, MERIDIAN,
};

/// The Linux build reads the caller's uid (SO_PEERCRED); the portable build cannot, and refuses
/// every changing request on the socket (what is checked there instead).
const CREDS: bool = cfg!(linux_io);

/// What the three agreeing fakes are ahead of the system clock.
const AHEAD: f64 = 0.200;
/// A bound on every CLI run.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}

/// A private temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "meridian-ctl-{}-{nanos}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("control.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts meridian (udp, one worker) with `sources` as its `[[source]]` tables (polled
/// every 2^poll s) and its control socket at `sock`.
fn meridian(sources: &[&FakeUpstream], poll: i8, iburst: bool, sock: &Path) -> (Server, PathBuf) {
    let text = common::source_tables(sources.iter().copied(), poll, iburst);
    let config = temp_file("control.toml", &text);
    let mut opts = ServerOpts::new("udp");
    opts.extra = vec![
        "--config".into(),
        config.display().to_string(),
        "--control".into(),
        sock.display().to_string(),
    ];
    (Server::must_start(&opts), config)
}

/// `meridian ARGS... --control SOCK`.
fn cli(sock: &Path, args: &[&str]) -> RunOutput {
    let mut all: Vec<&str> = args.to_vec();
    let s = sock.display().to_string();
    all.extend(["--control", &s]);
    run_meridian(&all, CLI_TIMEOUT)
}

/// Runs a command that must succeed; its stdout.
fn ok(sock: &Path, args: &[&str]) -> String {
    let out = cli(sock, args);
    assert!(
        out.success(),
        "meridian {args:?}: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Runs a changing command that the portable build must refuse (one line, `denied`).
fn refused_without_creds(sock: &Path, args: &[&str]) {
    let out = cli(sock, args);
    assert!(!out.success(), "{args:?} accepted without credentials");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("credentials are unknown"),
        "{}",
        out.stderr
    );
}

/// Runs a command with `--json`; its answer, parsed.
fn json(sock: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = ok(sock, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} --json: {e}: {text}"))
}

fn state_of(sources: &serde_json::Value, addr: SocketAddr) -> &str {
    sources
        .as_array()
        .and_then(|a| a.iter().find(|s| s["address"] == addr.to_string()))
        .and_then(|s| s["state"].as_str())
        .unwrap_or("absent")
}

/// Waits until `pred` holds for `sources --json`; returns that answer.
fn wait_sources(
    server: &Server,
    sock: &Path,
    within: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let s = json(sock, &["sources"]);
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "sources not as expected within {within:?}: {s}\n--- stderr\n{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the server has logged `needle` (its log is read by another thread, so a line
/// written just before an answer may come in just after it; the deadline guards a hang).
fn wait_log(server: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr_text().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}\n--- stderr\n{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One raw NTP request with a 1 s timeout: answered or not.
fn answered(server: &Server) -> bool {
    exchange(
        server.addr(),
        &request(4, 3, ntp_now()),
        Duration::from_secs(1),
    )
    .is_some()
}

#[test]
fn every_command_against_a_disciplined_server() {
    let good: Vec<FakeUpstream> = (2..=4)
        .map(|h| FakeUpstream::start(ip(40, h), FakeBehaviour::offset(AHEAD)))
        .collect();
    let liar = FakeUpstream::start(ip(40, 5), FakeBehaviour::offset(-3.0));
    let mut all: Vec<&FakeUpstream> = good.iter().collect();
    all.push(&liar);
    let dir = TempDir::new("all");
    let sock = dir.sock();
    let (server, config) = meridian(&all, -2, true, &sock);
    assert!(
        server
            .stderr_text()
            .contains(&format!("control socket {}", sock.display())),
        "{}",
        server.stderr_text()
    );
    // Mode 0660: its group may connect, nobody else.
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let src = wait_sources(&server, &sock, Duration::from_secs(15), |s| {
        state_of(s, liar.addr) == "falseticker"
            && good.iter().any(|g| state_of(s, g.addr) == "selected")
    });
    let selected = good
        .iter()
        .find(|g| state_of(&src, g.addr) == "selected")
        .unwrap();
    // Later reads may see another of the three selected: take the text's own `^*` row.

    // sources: `^*` on the selected source, `^x` on the liar, every address listed.
    let text = ok(&sock, &["sources"]);
    let line_of = |text: &str, addr: SocketAddr| -> String {
        text.lines()
            .find(|l| l.contains(&format!("{addr} ")))
            .unwrap_or_else(|| panic!("{addr} not in:\n{text}"))
            .to_owned()
    };
    assert!(text.starts_with("MS Name/IP address         Stratum Poll Reach LastRx Last sample"));
    let liar_line = line_of(&text, liar.addr);
    assert!(liar_line.starts_with("^x "), "{liar_line}");
    // It is 3.2 s behind the others: the served clock (0.2 s ahead of raw) sees it -3.2 s off,
    // the raw clock -3.0 s; within 10 ms (a loaded machine, or the portable build's user-space
    // stamps, can move a sample by a millisecond or two).
    let (adjusted, measured) = last_sample_ms(&liar_line);
    assert!(
        (adjusted + 3200.0).abs() <= 10.0 && (measured + 3000.0).abs() <= 10.0,
        "{liar_line}"
    );
    let sel_line = text
        .lines()
        .find(|l| l.starts_with("^* "))
        .unwrap_or_else(|| panic!("no selected source:\n{text}"));
    assert!(
        good.iter()
            .any(|g| sel_line.contains(&format!("{} ", g.addr))),
        "{sel_line}"
    );
    assert!(
        sel_line.contains("  1  -2 "),
        "stratum 1, poll -2: {sel_line}"
    );
    for g in &good {
        let l = line_of(&text, g.addr);
        assert!(["^*", "^+", "^-"].contains(&&l[..2]), "{l}");
    }
    assert!(ok(&sock, &["sources", "-v"]).contains("'x' = may be in error"));
    let row = src
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == selected.addr.to_string())
        .unwrap();
    let measured = row["last_sample"]["measured_s"].as_f64().unwrap();
    assert!((measured - AHEAD).abs() < 0.01, "{row}");

    // sourcestats: every source, with its samples.
    let text = ok(&sock, &["sourcestats"]);
    assert!(text.starts_with("Name/IP Address            NP  NR  Span  Frequency"));
    for f in &all {
        let l = line_of(&text, f.addr);
        let np: usize = l.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(np >= 1, "{l}");
    }
    let stats = json(&sock, &["sourcestats"]);
    assert!(stats[0]["last_sample"]["stats"]["samples"].as_u64() >= Some(1));

    // tracking: a good source's refid and address (the system peer may change between two
    // runs: whichever it is, it is one of the three), stratum 2, synchronised.
    let text = ok(&sock, &["tracking"]);
    let first = text.lines().next().unwrap_or_default();
    let good_refid = good.iter().any(|g| {
        let octets = g
            .addr
            .ip()
            .to_string()
            .parse::<Ipv4Addr>()
            .unwrap()
            .octets();
        let hex: String = octets.iter().map(|b| format!("{b:02X}")).collect();
        first == format!("Reference ID    : {hex} ({})", g.addr.ip())
    });
    assert!(good_refid, "{text}");
    assert!(text.contains("\nStratum         : 2"), "{text}");
    let t = json(&sock, &["tracking"]);
    assert_eq!(t["status"], "synchronised", "{t}");
    let shown = t["reference_name"].as_str().unwrap_or_default().to_owned();
    assert!(good.iter().any(|g| g.addr.ip().to_string() == shown), "{t}");
    assert!(text.contains("Leap status     : Normal"), "{text}");
    assert_eq!(t["stratum"], 2);
    assert!(t["rms_offset_s"].as_f64().is_some_and(|v| v < 0.01), "{t}");

    // clients: the raw client shows up, with the total.
    assert!(answered(&server));
    let c = json(&sock, &["clients", "-n", "5", "--sort", "last"]);
    assert!(c["total"].as_u64() >= Some(1), "{c}");
    assert_eq!(c["clients"][0]["address"], "127.0.0.1", "{c}");
    let text = ok(&sock, &["clients"]);
    assert!(
        text.lines().nth(2).unwrap().starts_with("127.0.0.1 "),
        "{text}"
    );
    assert!(text.contains("tracked (table capacity"), "{text}");

    // serverstats: the counters, per worker with -v.
    let s = json(&sock, &["serverstats"]);
    assert!(s["total"]["received"].as_u64() >= Some(1), "{s}");
    let text = ok(&sock, &["serverstats", "-v"]);
    assert!(text.contains("NTP packets answered       : "), "{text}");
    assert!(text.contains("\nWorker 0 ("), "{text}");

    if !CREDS {
        for args in [&["serving", "off"][..], &["sync-now"], &["reload"]] {
            refused_without_creds(&sock, args);
        }
        assert!(answered(&server), "a refused serving off changed nothing");
        return;
    }
    // serving off: no answers, counted as not_serving; on: answered again.
    assert_eq!(ok(&sock, &["serving", "off"]), "serving off");
    assert_eq!(json(&sock, &["serving", "off"])["serving"], false);
    assert!(!answered(&server), "answered while serving off");
    let s = json(&sock, &["serverstats"]);
    assert!(
        s["total"]["dropped"]["not_serving"].as_u64() >= Some(1),
        "{s}"
    );
    assert_eq!(ok(&sock, &["serving", "on"]), "serving on");
    assert!(answered(&server), "not answered after serving on");

    // reload: the file is read again.
    assert_eq!(json(&sock, &["reload"])["reloaded"], true);
    wait_log(&server, "reload: done");

    let stopped = server.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(!sock.exists(), "the socket file is removed at exit");
    let _ = std::fs::remove_file(config);
}

#[test]
fn sync_now_polls_every_source_at_once() {
    // Polled every 64 s and without iburst: after the first poll only sync-now asks again.
    let fake = FakeUpstream::start(ip(41, 2), FakeBehaviour::offset(AHEAD));
    let dir = TempDir::new("sync");
    let sock = dir.sock();
    let (server, config) = meridian(&[&fake], 6, false, &sock);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.request_count() < 1 {
        assert!(Instant::now() < deadline, "never polled");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = fake.request_count();
    if !CREDS {
        refused_without_creds(&sock, &["sync-now"]);
        return;
    }
    assert_eq!(ok(&sock, &["sync-now"]), "polling every source now");
    // A burst: several polls, seconds apart (the deadline only guards against a hang).
    let deadline = Instant::now() + Duration::from_secs(15);
    while fake.request_count() < before + 3 {
        assert!(
            Instant::now() < deadline,
            "sync-now: {} polls after {before}\n{}",
            fake.request_count(),
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_log(&server, "sync-now: polling every source");
    drop(server);
    let _ = std::fs::remove_file(config);
}

#[test]
fn a_local_server_answers_and_says_what_it_cannot_do() {
    let dir = TempDir::new("local");
    let sock = dir.sock();
    let mut opts = ServerOpts::new("udp");
    opts.extra = vec!["--control".into(), sock.display().to_string()];
    let server = Server::must_start(&opts);
    let t = json(&sock, &["tracking"]);
    assert_eq!(
        (t["status"].as_str(), t["stratum"].as_u64()),
        (Some("local"), Some(10))
    );
    assert!(ok(&sock, &["tracking"]).starts_with("Reference ID    : 7F7F0101 (LOCAL)"));
    assert_eq!(json(&sock, &["sources"]), serde_json::json!([]));
    // The ring of recent lines has the start-up line, with its fields.
    let log = json(&sock, &["log", "-n", "500"]);
    assert_eq!(log["capacity"], 500, "{log}");
    let lines = log["lines"].as_array().unwrap();
    let start = lines
        .iter()
        .find(|l| l["message"] == "meridian serving")
        .unwrap_or_else(|| panic!("no start-up line in {log}"));
    assert_eq!(start["level"], "INFO", "{start}");
    assert!(start["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f[0] == "backend"));
    assert!(ok(&sock, &["log"]).contains("INFO meridian::server: meridian serving backend=udp"));
    assert_eq!(
        json(&sock, &["log", "-n", "1"])["lines"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Nothing to poll, nothing to reload: one line each, non-zero exit.
    let expected = if CREDS {
        [
            (&["sync-now"][..], "no [[source]] configured"),
            (&["reload"][..], "started without --config"),
        ]
    } else {
        [
            (&["sync-now"][..], "credentials are unknown"),
            (&["reload"][..], "credentials are unknown"),
        ]
    };
    for (args, says) in expected {
        let out = cli(&sock, args);
        assert!(!out.success(), "{args:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(says), "{}", out.stderr);
    }

    // Bad requests on the raw socket get an error object, and the server carries on.
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for (line, code) in [
        ("not json", "bad-request"),
        (
            "{\"version\":2,\"command\":\"tracking\"}",
            "unsupported-version",
        ),
        ("{\"version\":1,\"command\":\"halt\"}", "unknown-command"),
        (
            "{\"version\":1,\"command\":\"clients\",\"limit\":\"all\"}",
            "bad-request",
        ),
    ] {
        writeln!(&stream, "{line}").unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            (v["version"].as_u64(), v["ok"].as_bool()),
            (Some(1), Some(false))
        );
        assert_eq!(v["error"]["code"], code, "{line}: {v}");
    }
    writeln!(&stream, "{{\"version\":1,\"command\":\"tracking\"}}").unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(answered(&server));
}

#[test]
fn a_dead_socket_is_one_line() {
    let dir = TempDir::new("dead");
    // No file at all.
    let missing = dir.0.join("none.sock");
    let out = cli(&missing, &["tracking"]);
    assert!(!out.success());
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        format!(
            "meridian: no server at {} (no such socket)",
            missing.display()
        )
    );
    // A socket file nobody listens on (a server that was killed).
    let stale = dir.sock();
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    for args in [
        &["sources"][..],
        &["serving", "off"],
        &["clients", "--json"],
    ] {
        let out = cli(&stale, args);
        assert!(!out.success(), "{args:?}");
        assert_eq!(
            out.stderr,
            format!(
                "meridian: no server at {} (connection refused)",
                stale.display()
            ),
            "{args:?}"
        );
    }
    // The next server takes the stale socket over.
    let mut opts = ServerOpts::new("udp");
    opts.extra = vec!["--control".into(), stale.display().to_string()];
    let server = Server::must_start(&opts);
    assert!(ok(&stale, &["tracking"]).contains("Stratum         : 10"));
    drop(server);
}

#[test]
fn an_explicit_socket_that_cannot_be_used_stops_the_start_up() {
    let dir = TempDir::new("explicit");
    let sock = dir.sock();
    let mut opts = ServerOpts::new("udp");
    opts.extra = vec!["--control".into(), sock.display().to_string()];
    let first = Server::must_start(&opts);
    // Taken by a running server.
    let second = Server::start(&opts)
        .err()
        .expect("a second server on the same socket");
    assert!(
        second.contains("control socket") && second.contains("in use"),
        "{second}"
    );
    // In a directory that does not exist.
    let nowhere = dir.0.join("no/such/dir/c.sock");
    opts.extra = vec!["--control".into(), nowhere.display().to_string()];
    let third = Server::start(&opts).err().expect("no such directory");
    assert!(third.contains("control socket"), "{third}");
    // `--control ""`: no socket, and the server runs.
    opts.extra = vec!["--control".into(), String::new()];
    let fourth = Server::must_start(&opts);
    assert!(!fourth.stderr_text().contains("control socket"));
    assert!(
        ok(&sock, &["tracking"]).contains("Stratum"),
        "the first still answers"
    );
    drop(first);
}

#[test]
fn a_changing_request_from_another_uid_is_refused() {
    if !is_root() {
        skip!("control socket permissions: needs root to run the CLI as another uid");
    }
    let setpriv = Path::new("/usr/bin/setpriv");
    if !setpriv.exists() {
        skip!("control socket permissions: needs setpriv (util-linux)");
    }
    let dir = TempDir::new("perm");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.sock();
    let mut opts = ServerOpts::new("udp");
    opts.extra = vec!["--control".into(), sock.display().to_string()];
    let server = Server::must_start(&opts);
    // The socket's group is nobody's (65534): a member may read, not change.
    std::os::unix::fs::chown(&sock, None, Some(65534)).unwrap();
    let as_nobody = |args: &[&str], gid: u32| {
        let mut cmd = Command::new(setpriv);
        cmd.args([
            "--reuid=65534",
            &format!("--regid={gid}"),
            "--clear-groups",
            MERIDIAN,
        ])
        .args(args)
        .arg("--control")
        .arg(&sock);
        run_bounded(&mut cmd, CLI_TIMEOUT).expect("spawning setpriv")
    };
    let read = as_nobody(&["tracking", "--json"], 65534);
    assert!(read.success(), "{}", read.stderr);
    let v: serde_json::Value = serde_json::from_str(&read.stdout).unwrap();
    assert_eq!(v["stratum"], 10);
    for args in [&["serving", "off"][..], &["sync-now"], &["reload"]] {
        let out = as_nobody(args, 65534);
        assert!(!out.success(), "{args:?} was accepted from uid 65534");
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        let says = if CREDS {
            "only its owner (uid 0) or root may ask (denied)"
        } else {
            "credentials are unknown"
        };
        assert!(out.stderr.contains(says), "{}", out.stderr);
    }
    assert!(
        answered(&server),
        "still serving after the refused serving off"
    );
    if !CREDS {
        return; // refused to everybody, root included: checked above
    }
    wait_log(&server, "control: serving refused to uid 65534");
    // Outside the socket's group: not even a connection.
    let out = as_nobody(&["tracking"], 65533);
    assert!(!out.success());
    assert!(out.stderr.contains("(permission denied)"), "{}", out.stderr);
    // The owner may.
    assert_eq!(ok(&sock, &["serving", "off"]), "serving off");
    assert!(!answered(&server));
    ok(&sock, &["serving", "on"]);
    assert!(answered(&server));
}

/// The `ADJ[MEAS]` millisecond pair of a `sources` line (`-3200ms[-3000ms]`), as numbers.
fn last_sample_ms(line: &str) -> (f64, f64) {
    let field = line
        .split_whitespace()
        .find(|f| f.contains("ms[") && f.ends_with("ms]"))
        .unwrap_or_else(|| panic!("no ms[ms] sample in {line}"));
    let (adj, meas) = field.split_once('[').expect("checked above");
    let num = |t: &str| -> f64 {
        t.trim_end_matches(']')
            .trim_end_matches("ms")
            .parse()
            .unwrap_or_else(|_| panic!("{t:?} in {line}"))
    };
    (num(adj), num(meas))
}
