//! Starting and stopping: signals, the exit report, and start-up failures that must be fast and
//! say what is wrong.

// Integration tests and benchmarks run on real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    assert_answers, backend_name, backends, counter, ipv6_available, run_bounded, run_meridian,
    Server, ServerOpts, MERIDIAN,
};

/// Start-up failures must come well before this.
const FAIL_FAST: Duration = Duration::from_secs(3);
/// A held port is retried for a grace period (3 s: a previous run's async teardown may still be
/// releasing it), then refused.
const IN_USE_FAIL: Duration = Duration::from_secs(5);

#[test]
fn sigint_and_sigterm_stop_within_a_second_with_a_report() {
    for backend in backends() {
        for (name, sig) in [("SIGINT", libc::SIGINT), ("SIGTERM", libc::SIGTERM)] {
            let server = Server::must_start(&ServerOpts::new(backend).workers(2));
            assert_answers(server.addr());
            let stopped = server.stop_with(sig);
            assert!(
                stopped.elapsed < Duration::from_secs(1),
                "{backend}: {name} took {:?} to stop",
                stopped.elapsed
            );
            assert_eq!(
                stopped.status.code(),
                Some(0),
                "{backend}: exit status after {name}: {}",
                stopped.stderr
            );
            let r = &stopped.report;
            assert_eq!(r["backend"], backend_name(backend), "{r}");
            assert!(r["uptime_secs"].as_f64().is_some_and(|u| u > 0.0), "{r}");
            assert_eq!(counter(r, &["total", "received"]), 1, "{r}");
            assert_eq!(counter(r, &["total", "answered"]), 1, "{r}");
            assert_eq!(r["workers"].as_array().map(Vec::len), Some(2), "{r}");
            // Exactly one JSON line on stdout.
            let json_lines = stopped
                .stdout
                .lines()
                .filter(|l| l.trim_start().starts_with('{'))
                .count();
            assert_eq!(json_lines, 1, "{backend}: stdout:\n{}", stopped.stdout);
            eprintln!("{backend}: {name} stopped in {:?}", stopped.elapsed);
        }
    }
}

#[test]
fn sigusr1_prints_a_report_and_keeps_serving() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend));
        assert_answers(server.addr());
        let r = server.report_now();
        assert_eq!(counter(&r, &["total", "answered"]), 1, "{r}");
        assert_answers(server.addr());
        let stopped = server.stop();
        assert_eq!(stopped.status.code(), Some(0));
        assert_eq!(counter(&stopped.report, &["total", "answered"]), 2);
    }
}

#[test]
fn port_already_in_use_fails_fast() {
    let mut holders = vec![UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind")];
    if ipv6_available() {
        holders.push(UdpSocket::bind("[::1]:0").expect("bind [::1]"));
    } else {
        common::skip_notice("IPv6 part: [::1] is not available");
    }
    let cases: Vec<(&str, SocketAddr)> = backends()
        .into_iter()
        .flat_map(|b| holders.iter().map(move |h| (b, h.local_addr().unwrap())))
        .collect();
    // Each case waits out the server's grace period: run them side by side.
    std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .map(|&(backend, addr)| {
                scope.spawn(move || {
                    let args = [
                        "serve",
                        "--listen",
                        &addr.to_string(),
                        "--backend",
                        backend,
                        "--workers",
                        "2",
                    ]
                    .map(String::from);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    (backend, addr, run_meridian(&args, Duration::from_secs(10)))
                })
            })
            .collect();
        for run in runs {
            let (backend, addr, out) = run.join().expect("runner thread");
            assert!(
                out.status.is_some() && !out.success(),
                "{backend}: serving on a held port {addr} must fail: {}",
                out.all()
            );
            assert!(
                out.elapsed < IN_USE_FAIL,
                "{backend}: took {:?} to fail",
                out.elapsed
            );
            assert!(
                out.stderr.contains("address already in use"),
                "{backend}: message for a held port: {}",
                out.all()
            );
            assert!(
                out.stderr.contains(&addr.to_string()),
                "{backend}: the message should name {addr}: {}",
                out.stderr
            );
            eprintln!(
                "{backend}: held port {addr} refused after {:?}",
                out.elapsed
            );
        }
    });
}

/// Runs `args` as uid/gid 65534 without capabilities; `Err(reason)` when that is impossible.
fn as_nobody(args: &[&str]) -> Result<common::RunOutput, String> {
    if !common::is_root() {
        return Err("needs root to switch to uid 65534".into());
    }
    if !Path::new("/usr/bin/setpriv").exists() && !Path::new("/bin/setpriv").exists() {
        return Err("setpriv is not installed (util-linux)".into());
    }
    // A copy in the temp dir: the build tree may sit below a directory uid 65534 cannot
    // search (a clone under /root, say).
    let copy =
        TempFile(std::env::temp_dir().join(format!("meridian-nobody-{}", std::process::id())));
    std::fs::copy(MERIDIAN, &copy.0).map_err(|e| format!("copying {MERIDIAN}: {e}"))?;
    let run = |extra: &[&str]| {
        run_bounded(
            Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "--inh-caps=-all",
                ])
                .arg(&copy.0)
                .args(extra),
            Duration::from_secs(10),
        )
        .map_err(|e| format!("running setpriv: {e}"))
    };
    let probe = run(&["--version"])?;
    if !probe.success() {
        return Err(format!(
            "uid 65534 cannot run {MERIDIAN} (is every directory on the path readable and \
             searchable by others?): {}",
            probe.stderr.trim()
        ));
    }
    run(args)
}

#[test]
fn privileged_port_without_capability_names_cap_net_bind_service() {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if start.is_some_and(|p| p <= 123) {
        skip!("net.ipv4.ip_unprivileged_port_start = {start:?}: port 123 needs no privilege here");
    }
    for backend in backends() {
        let out = match as_nobody(&[
            "serve",
            "--listen",
            "127.0.0.1:123",
            "--backend",
            backend,
            "--workers",
            "1",
        ]) {
            Ok(o) => o,
            Err(reason) => skip!("{reason}"),
        };
        assert!(
            out.status.is_some() && !out.success(),
            "{backend}: an unprivileged bind of port 123 must fail: {}",
            out.all()
        );
        assert!(out.elapsed < FAIL_FAST, "{backend}: took {:?}", out.elapsed);
        assert!(
            out.stderr.contains("CAP_NET_BIND_SERVICE"),
            "{backend}: message: {}",
            out.all()
        );
        assert!(
            out.stderr.contains("127.0.0.1:123"),
            "{backend}: the message should name the address: {}",
            out.stderr
        );
    }
}

/// A config file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("meridian-itest-{}-{name}", std::process::id()));
        std::fs::write(&p, text).expect("writing a temp file");
        TempFile(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn config_with_unknown_key_names_file_and_line() {
    let port = common::free_port(true, false).expect("free port");
    let cfg = TempFile::new(
        "unknown-key.toml",
        &format!(
            "# test config\n[server]\nlisten = [\"127.0.0.1:{port}\"]\nlistn = [\"127.0.0.1:1\"]\n"
        ),
    );
    let out = run_meridian(&["serve", "--config", cfg.path()], Duration::from_secs(10));
    assert!(
        out.status.is_some() && !out.success(),
        "an unknown key must be refused: {}",
        out.all()
    );
    assert!(out.elapsed < FAIL_FAST, "took {:?}", out.elapsed);
    let want = format!("{}:4", cfg.path());
    assert!(
        out.stderr.contains(&want),
        "the message should locate the key as {want}: {}",
        out.all()
    );
    assert!(
        out.stderr.contains("listn"),
        "the message should name the key: {}",
        out.stderr
    );
}

#[test]
fn config_file_settings_are_used() {
    // Workers and stratum from the file; the listen address from the command line.
    let cfg = TempFile::new(
        "good.toml",
        "[server]\nworkers = 2\n\n[clock]\nlocal-stratum = 7\n",
    );
    let mut opts = ServerOpts::new("udp");
    opts.workers = None; // --workers would override the file
    opts.extra = vec!["--config".into(), cfg.path().into()];
    let server = match Server::start(&opts) {
        Ok(s) => s,
        Err(e) => panic!("server with a config file did not start: {e}"),
    };
    let r = assert_answers(server.addr());
    assert_eq!(r.stratum, 7, "local-stratum from the config file");
    let stopped = server.stop();
    assert_eq!(
        stopped.report["workers"].as_array().map(Vec::len),
        Some(2),
        "{}",
        stopped.report
    );
}

#[test]
fn three_workers_are_reported() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend).workers(3));
        assert!(
            server.ready_line.contains("workers=3"),
            "ready line: {}",
            server.ready_line
        );
        assert_answers(server.addr());
        let stopped = server.stop();
        let r = &stopped.report;
        let workers = r["workers"].as_array().expect("workers");
        assert_eq!(workers.len(), 3, "{r}");
        for (i, w) in workers.iter().enumerate() {
            assert_eq!(w["worker"], i, "{r}");
            assert!(w["answered"].is_u64() && w["dropped"].is_object(), "{r}");
        }
        assert_eq!(counter(r, &["total", "answered"]), 1, "{r}");
    }
}

#[test]
fn bad_command_lines_fail_fast() {
    for args in [
        &["serve", "--listen", "not-an-address"][..],
        &["serve", "--listen", "127.0.0.1:1123", "--backend", "dpdk"][..],
        &["serve", "--config", "/nonexistent/meridian.toml"][..],
    ] {
        let out = run_meridian(args, Duration::from_secs(10));
        assert!(
            out.status.is_some() && !out.success(),
            "{args:?} must fail: {}",
            out.all()
        );
        assert!(out.elapsed < FAIL_FAST, "{args:?} took {:?}", out.elapsed);
        assert!(!out.stderr.trim().is_empty(), "{args:?} printed no reason");
    }
}

#[test]
fn error_messages_say_what_is_expected_once() {
    let fail = |args: &[&str]| {
        let out = run_meridian(args, Duration::from_secs(10));
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(1),
            "{args:?}: {}",
            out.all()
        );
        out.stderr
    };
    // A missing file: the OS error once.
    let e = fail(&["serve", "--config", "/nonexistent/meridian.toml"]);
    assert!(e.contains("cannot read /nonexistent/meridian.toml"), "{e}");
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
    // An address without a port, and no address at all.
    let out = run_meridian(&["serve", "--listen", "127.0.0.1"], Duration::from_secs(10));
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("127.0.0.1 has no port: write 127.0.0.1:123"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("invalid socket address syntax"),
        "{}",
        out.stderr
    );
    let out = run_meridian(
        &["serve", "--listen", "ntp.example"],
        Duration::from_secs(10),
    );
    assert!(
        out.stderr.contains("expected IP:PORT, like 127.0.0.1:1123"),
        "{}",
        out.stderr
    );
    // Rust type names are not shown to operators.
    let cfg = TempFile::new("types.toml", "[server]\nworkers = \"two\"\n");
    let e = fail(&["serve", "--config", cfg.path()]);
    assert!(e.contains("expected a whole number"), "{e}");
    assert!(!e.contains("usize"), "{e}");
}

#[test]
fn validate_lists_every_problem_with_its_location() {
    let cfg = TempFile::new(
        "invalid.toml",
        "[server]\nlisten = [\"192.0.2.10:123\", \"127.0.0.1:1123\"]\ncores = [4095]\n\
         backend = \"udp\"\ninterface = \"eth0\"\nbatch-size = 0\nworkers = \"two\"\n\
         listn = 3\n[clock]\nleap-days = \"never\"\nholdover = -1\n",
    );
    let p = cfg.path();
    let want = [
        format!("{p}:7:11: server.workers: invalid type: string \"two\", expected a whole number"),
        format!("{p}:8:1: unknown field `listn` in [server]"),
        format!("{p}:10:13: clock.leap-days: unknown variant `never`"),
        format!("{p}:6:14: server.batch-size: must be in 1..=1024, got 0"),
        format!("{p}:11:12: clock.holdover: must be 0 or more seconds, got -1"),
        format!("{p}:2:10: server.listen: 192.0.2.10 is not an address of this host"),
        format!("{p}:3:9: server.cores: core 4095 is not available to this process"),
        format!("warning: {p}:5:13: server.interface: has no effect with backend = \"udp\""),
        format!("{p}: 7 problems, 1 warning"),
    ];
    let out = run_meridian(&["validate", "--config", p], Duration::from_secs(10));
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{}", out.all());
    for w in &want {
        assert!(
            out.stderr.contains(w.as_str()),
            "missing {w:?} in:\n{}",
            out.stderr
        );
    }
    // `serve` runs the same checks before it opens anything, and says all of it too.
    let out = run_meridian(&["serve", "--config", p], Duration::from_secs(10));
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{}", out.all());
    assert!(out.elapsed < FAIL_FAST, "took {:?}", out.elapsed);
    for w in &want[..7] {
        assert!(
            out.stderr.contains(w.as_str()),
            "missing {w:?} in:\n{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("meridian serving"), "{}", out.stderr);

    // A good file passes, with its warnings.
    let cfg = TempFile::new("warned.toml", "[server]\nbackend = \"udp\"\nqueues = [0]\n");
    let out = run_meridian(
        &["validate", "--config", cfg.path()],
        Duration::from_secs(10),
    );
    assert!(out.success(), "{}", out.all());
    assert!(out.stdout.contains(": valid, 1 warning"), "{}", out.all());
    assert!(
        out.stderr.contains("server.queues: has no effect"),
        "{}",
        out.all()
    );
}

/// The shipped example starts as it is, unprivileged-safe: loopback only, virtual clock,
/// placeholder sources on loopback (so it serves "unsynchronised" until they are replaced).
#[test]
fn the_example_configuration_runs_as_shipped() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/meridian.example.toml");
    let out = run_meridian(
        &["validate", "--config", &example.display().to_string()],
        Duration::from_secs(10),
    );
    assert!(out.success(), "{}", out.all());
    assert!(out.stdout.contains("valid"), "{}", out.all());
    assert!(
        !out.stderr.contains("warning"),
        "no warning as shipped: {}",
        out.all()
    );

    // As shipped it listens on 127.0.0.1:1123; if that port is busy here, the same file is
    // served on another port (everything else as shipped).
    let text = std::fs::read_to_string(&example).unwrap();
    let shipped = UdpSocket::bind((Ipv4Addr::LOCALHOST, 1123)).is_ok();
    let (path, port, _copy) = if shipped {
        (example.display().to_string(), 1123, None)
    } else {
        let port = common::free_port(true, false).expect("a free port");
        eprintln!("127.0.0.1:1123 is busy here: serving the example on port {port}");
        let copy = TempFile::new(
            "example.toml",
            &text.replace("127.0.0.1:1123", &format!("127.0.0.1:{port}")),
        );
        (copy.path().to_owned(), port, Some(copy))
    };
    let mut child = common::ChildGuard::new(
        Command::new(MERIDIAN)
            .args(["serve", "--config", &path])
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawning meridian"),
    );
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let reply = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        common::exchange(
            addr,
            &common::request(4, 3, common::ntp_now()),
            Duration::from_millis(200),
        )
    });
    let reply = common::parse_reply(&reply.expect("the example answers"));
    assert_eq!(
        (reply.leap, reply.stratum),
        (3, 0),
        "unsynchronised: {reply:?}"
    );
    let out = run_meridian(
        &["query", &addr.to_string(), "--timeout", "1"],
        Duration::from_secs(10),
    );
    assert!(
        out.stdout.contains("server is not synchronised"),
        "{}",
        out.all()
    );
    child.signal(libc::SIGTERM);
    let status = child
        .wait_timeout(Duration::from_secs(5))
        .expect("stops on SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn sighup_without_a_config_file_keeps_serving() {
    let server = Server::must_start(&ServerOpts::new("udp"));
    assert_answers(server.addr());
    server.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !server
        .stderr_text()
        .contains("started without --config: nothing to reload")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_answers(server.addr());
    let stopped = server.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
}

/// A stop signal in the middle of a flood still ends the server within a second, with a
/// report that counts the flood.
#[test]
fn sigterm_under_load_stops_within_a_second() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend).workers(2));
        let target = server.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let flooders: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let s = common::client_socket(target);
                    s.set_nonblocking(true).unwrap();
                    let mut buf = [0u8; 128];
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                        // Errors (ECONNREFUSED once the server is gone) are expected.
                        let _ = s.send(&common::request(4, 3, common::ntp_now()));
                        sent += 1;
                        while s.recv(&mut buf).is_ok() {}
                        if sent % 64 == 0 {
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }
                    sent
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let stopped = server.stop();
        stop.store(true, Ordering::Relaxed);
        let sent: u64 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
        assert!(
            stopped.elapsed < Duration::from_secs(1),
            "{backend}: SIGTERM under load took {:?}",
            stopped.elapsed
        );
        assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
        let r = &stopped.report;
        let answered = counter(r, &["total", "answered"]);
        assert!(answered > 0, "{backend}: nothing answered under load: {r}");
        eprintln!(
            "{backend}: stopped under load in {:?} ({answered} answered, {sent} sent; total {})",
            stopped.elapsed, r["total"]
        );
    }
}
