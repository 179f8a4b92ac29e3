//! Helpers shared by the integration tests: bounded runs of the load generator, the server
//! binary, a small correct NTP server on 127.0.0.1 that counts what it answers (or answers as
//! a test tells it), and chronyd as a server (`chrony`). Child processes that are always
//! stopped (by PID), the skip notice, free ports and namespaces come from `meridian-testkit`.
#![allow(dead_code, unused_imports)]

pub mod chrony;
pub mod netns;

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meridian::clock::ClockSnapshot;
use meridian::proto::client::check_reply;
use meridian::proto::server::client_request;
use meridian::proto::{respond, NtpTimestamp, UnixNanos, MAX_REPLY_LEN};
pub use meridian_testkit::{free_port, skip_notice, ChildGuard};

/// `target/<profile>/meridian`, next to the `deps/` directory this test runs from.
pub fn meridian_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let bin = profile_dir.join(format!("meridian{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the meridian server binary is missing at {}: build it first \
         (`cargo build -p meridian`, or run `cargo test --workspace`, which builds it)",
        bin.display()
    );
    bin
}

/// Runs `cmd` to completion within `limit` (killed by PID otherwise, failing the test) and
/// returns its output. stdout/stderr go through files, so a chatty child never blocks on a
/// full pipe.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let dir = std::env::temp_dir().join(format!(
        "loadgen-run-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn");
    let mut guard = ChildGuard::terminating(child, "child process");
    let started = Instant::now();
    let status = guard.wait_timeout(limit);
    let output = Output {
        status: status
            .unwrap_or_else(|| panic!("still running after {:?}; killed", started.elapsed())),
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    output
}

/// Runs the load generator with `args` and `--json` (bounded: 120 s); prints its output and
/// returns it with the JSON report (`Null` when none was written).
pub fn loadgen(args: &[&str]) -> (Output, serde_json::Value) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "loadgen-json-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let out = run_bounded(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_meridian-loadgen"));
            c.args(args).arg("--json").arg(&json);
            c
        },
        Duration::from_secs(120),
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let v = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
        .unwrap_or(serde_json::Value::Null);
    let _ = std::fs::remove_dir_all(&dir);
    (out, v)
}

/// A count from a JSON run.
pub fn count(run: &serde_json::Value, key: &str) -> u64 {
    run[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {run}"))
}

pub fn now() -> UnixNanos {
    UnixNanos(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64,
    )
}

/// True once the server at 127.0.0.1:`port` answers one request with a valid reply.
pub fn answers(port: u16) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let ts = NtpTimestamp::from_unix(now());
    if sock
        .send_to(&client_request(4, 6, ts), ("127.0.0.1", port))
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 512];
    match sock.recv(&mut buf) {
        Ok(n) => check_reply(&buf[..n], 4, ts).is_ok(),
        Err(_) => false,
    }
}

/// What an [`NtpServer`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub received: u64,
    pub answered: u64,
}

/// A correct NTP server on 127.0.0.1 (ephemeral port, one thread). With a budget it answers
/// only the first `budget` requests and silently drops every later one: a capacity that runs
/// out after a known number of requests, whatever the timing.
pub struct NtpServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Served>>,
}

impl NtpServer {
    pub fn start() -> NtpServer {
        NtpServer::with_budget(u64::MAX)
    }

    pub fn with_budget(budget: u64) -> NtpServer {
        let snap = ClockSnapshot::local(2, -20, now());
        let mut out = [0u8; MAX_REPLY_LEN];
        NtpServer::spawn(budget, move |req, _| {
            let n = respond(req, &snap, now(), &mut out, now).ok()?;
            Some(out[..n].to_vec())
        })
    }

    /// A server that sends whatever `answer` makes of each request and its sender (nothing
    /// for `None`): a test's own protocol behaviour, written as bytes.
    pub fn answering(
        answer: impl FnMut(&[u8], SocketAddr) -> Option<Vec<u8>> + Send + 'static,
    ) -> NtpServer {
        NtpServer::spawn(u64::MAX, answer)
    }

    fn spawn(
        budget: u64,
        mut answer: impl FnMut(&[u8], SocketAddr) -> Option<Vec<u8>> + Send + 'static,
    ) -> NtpServer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut served = Served::default();
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                served.received += 1;
                if served.answered >= budget {
                    continue;
                }
                if let Some(reply) = answer(&buf[..len], from) {
                    if sock.send_to(&reply, from).is_ok() {
                        served.answered += 1;
                    }
                }
            }
            served
        });
        NtpServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server and returns its counts.
    pub fn stop(mut self) -> Served {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Served {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("server thread"))
            .unwrap_or_default()
    }
}

impl Drop for NtpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One progress line of the load generator (stderr), its counts since the previous line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// `3s`, `1s warm-up`, or `end`.
    pub when: String,
    pub sent: u64,
    pub valid: u64,
    pub invalid: u64,
    pub lost: u64,
    pub missed: u64,
}

/// The progress lines of target `name` in `stderr`; panics on one that does not parse.
pub fn progress_lines(stderr: &str, name: &str) -> Vec<Progress> {
    let prefix = format!("[{name} ");
    stderr
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| {
            let (when, rest) = l[prefix.len()..]
                .split_once("] ")
                .unwrap_or_else(|| panic!("progress line {l:?}"));
            let f: Vec<&str> = rest.split_whitespace().collect();
            let field = |key: &str| -> u64 {
                let i = f
                    .iter()
                    .position(|w| *w == key)
                    .unwrap_or_else(|| panic!("no {key} in {l:?}"));
                f[i + 1]
                    .parse()
                    .unwrap_or_else(|e| panic!("{key} in {l:?}: {e}"))
            };
            Progress {
                when: when.trim().to_string(),
                sent: field("sent"),
                valid: field("valid"),
                invalid: field("invalid"),
                lost: field("lost"),
                missed: field("missed"),
            }
        })
        .collect()
}

/// Checks that the progress lines of one run end with one `end` line and add up to the run's
/// JSON totals, and that only a run with a warm-up has lines marked `warm-up`; returns how
/// many lines there were.
pub fn check_progress_adds_up(stderr: &str, name: &str, run: &serde_json::Value) -> usize {
    let lines = progress_lines(stderr, name);
    assert!(!lines.is_empty(), "no progress line for {name}:\n{stderr}");
    if run["warmup_s"].as_f64() == Some(0.0) {
        assert!(
            lines.iter().all(|p| !p.when.contains("warm-up")),
            "{lines:?}"
        );
    }
    let ends = lines.iter().filter(|p| p.when == "end").count();
    assert_eq!(ends, 1, "{lines:?}");
    assert_eq!(lines.last().unwrap().when, "end", "{lines:?}");
    let sum = |f: fn(&Progress) -> u64| lines.iter().map(f).sum::<u64>();
    let total = |key: &str| {
        run[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {run}"))
    };
    assert_eq!(sum(|p| p.sent), total("sent"), "{lines:?}\n{run}");
    assert_eq!(sum(|p| p.valid), total("valid"), "{lines:?}\n{run}");
    assert_eq!(sum(|p| p.invalid), total("invalid"), "{lines:?}\n{run}");
    assert_eq!(sum(|p| p.lost), total("lost"), "{lines:?}\n{run}");
    assert_eq!(sum(|p| p.missed), total("missed_sends"), "{lines:?}\n{run}");
    lines.len()
}
