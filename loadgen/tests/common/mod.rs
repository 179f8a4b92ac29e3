//! Helpers shared by the integration tests: child processes that are always stopped, bounded
//! runs of the load generator, and a small correct NTP server on 127.0.0.1 that counts what
//! it answers.
#![allow(dead_code)]

use std::fs::File;
use std::net::UdpSocket;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meridian::clock::ClockSnapshot;
use meridian::proto::{respond, UnixNanos, MAX_REPLY_LEN};

/// A child process stopped on every path: SIGTERM by PID, then SIGKILL after a grace period.
pub struct ProcessGuard {
    child: Option<Child>,
    name: &'static str,
}

impl ProcessGuard {
    pub fn new(child: Child, name: &'static str) -> Self {
        ProcessGuard {
            child: Some(child),
            name,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for the process to exit by itself; kills it after that.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                self.child = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Returns the exit status if it exited on its own.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.stop_within(Duration::from_secs(5))
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status if it exited on its
    /// own.
    pub fn stop_within(&mut self, grace: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(s)) = child.try_wait() {
            self.child = None;
            return Some(s);
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) with the PID of a child we spawned and have not reaped (so the PID
        // cannot have been reused); it only sends a signal.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        if let Some(s) = self.wait_for(grace) {
            return Some(s);
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        None
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop();
    }
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
    let mut guard = ProcessGuard::new(child, "child process");
    let started = Instant::now();
    let status = guard.wait_for(limit);
    let output = Output {
        status: status
            .unwrap_or_else(|| panic!("still running after {:?}; killed", started.elapsed())),
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    output
}

pub fn now() -> UnixNanos {
    UnixNanos(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64,
    )
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
            let mut served = Served::default();
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                served.received += 1;
                if served.answered >= budget {
                    continue;
                }
                if let Ok(n) = respond(&buf[..len], &snap, now(), &mut out, now) {
                    if sock.send_to(&out[..n], from).is_ok() {
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
