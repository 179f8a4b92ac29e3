//! Closed loop, warm-up, several targets and the rate sweep, against small NTP servers
//! written here (127.0.0.1, ephemeral ports, bounded runs).

mod common;

use std::net::UdpSocket;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meridian::clock::ClockSnapshot;
use meridian::proto::{respond, UnixNanos, MAX_REPLY_LEN};

fn now() -> UnixNanos {
    UnixNanos(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64,
    )
}

/// A correct server that answers at most `limit_per_sec` requests per second (token bucket
/// of 20) and silently drops the rest; `None` answers everything.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(limit_per_sec: Option<f64>) -> Server {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let snap = ClockSnapshot::local(2, -20, now());
            let mut buf = [0u8; 2048];
            let mut out = [0u8; MAX_REPLY_LEN];
            let mut tokens = 20.0f64;
            let mut last = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(limit) = limit_per_sec {
                    let t = Instant::now();
                    tokens = (tokens + (t - last).as_secs_f64() * limit).min(20.0);
                    last = t;
                    if tokens < 1.0 {
                        continue;
                    }
                    tokens -= 1.0;
                }
                if let Ok(n) = respond(&buf[..len], &snap, now(), &mut out, now) {
                    let _ = sock.send_to(&out[..n], from);
                }
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn loadgen(args: &[&str]) -> (Output, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!(
        "loadgen-modes-{}-{}",
        std::process::id(),
        args.join("_").replace(['/', ':', '.', ','], "")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let started = Instant::now();
    let out = common::run_bounded(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_meridian-loadgen"));
            c.args(args).arg("--json").arg(&json);
            c
        },
        Duration::from_secs(30),
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    let v = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
        .unwrap_or(serde_json::Value::Null);
    let _ = std::fs::remove_dir_all(&dir);
    (out, v)
}

#[test]
fn closed_loop_with_warmup() {
    let server = Server::start(None);
    let target = format!("127.0.0.1:{}", server.port);
    let (out, v) = loadgen(&[
        "--target",
        &target,
        "--rate",
        "0",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
        "--clients",
        "2",
        "--window",
        "2",
        "--timeout-ms",
        "300",
        "--quiet",
    ]);
    assert!(out.status.success(), "{out:?}");
    let run = &v["runs"][0];
    assert_eq!(run["mode"], "closed");
    assert_eq!(run["invalid"], 0);
    assert!(run["warmup_sent"].as_u64().unwrap() > 0, "{run}");
    let valid = run["valid"].as_u64().unwrap();
    assert!(valid > 100, "{run}");
    // At most clients × window requests can be in flight: everything sent was answered.
    assert_eq!(run["lost"], 0, "{run}");
    assert_eq!(run["sent"].as_u64().unwrap(), valid);
}

#[test]
fn several_targets_run_one_after_another() {
    let a = Server::start(None);
    let b = Server::start(None);
    let (out, v) = loadgen(&[
        "--target",
        &format!("first=127.0.0.1:{}", a.port),
        "--target",
        &format!("second=127.0.0.1:{}", b.port),
        "--rate",
        "300",
        "--duration",
        "0.4",
        "--threads",
        "2",
        "--clients",
        "4",
        "--quiet",
    ]);
    assert!(out.status.success(), "{out:?}");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["target"], "first");
    assert_eq!(runs[1]["target"], "second");
    for r in runs {
        assert_eq!(r["invalid"], 0);
        assert!(r["valid"].as_u64().unwrap() > 50, "{r}");
        assert_eq!(r["threads"], 2);
    }
}

#[test]
fn sweep_finds_the_rate_limit() {
    // The server answers at most 300/s: 200/s passes, 400/s loses a quarter.
    let server = Server::start(Some(300.0));
    let (out, v) = loadgen(&[
        "--target",
        &format!("limited=127.0.0.1:{}", server.port),
        "--sweep",
        "--sweep-rates",
        "100,200,400,800",
        "--duration",
        "0.5",
        "--timeout-ms",
        "200",
        "--quiet",
    ]);
    // Loss ends a sweep; only invalid replies fail it.
    assert!(out.status.success(), "{out:?}");
    let sweep = &v["sweeps"][0];
    assert_eq!(sweep["stop"], "loss", "{sweep}");
    assert_eq!(sweep["max_sustained_rate"], 200.0, "{sweep}");
    assert_eq!(sweep["steps"].as_array().unwrap().len(), 3);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("sweep limited (127.0.0.1:") && stdout.contains("200 req/s offered"),
        "{stdout}"
    );
    // The best step's figures are the run reported.
    assert_eq!(v["runs"][0]["offered_rate"], 200.0);
}

#[test]
fn bad_arguments_are_refused() {
    let out = common::run_bounded(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_meridian-loadgen"));
            c.args(["--target", "127.0.0.1:9", "--threads", "0"]);
            c
        },
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
}
