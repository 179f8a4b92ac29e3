//! The server under test: a real `meridian serve` process, started on a free loopback port
//! (or from any command line, e.g. inside a namespace), killed by PID when dropped, stopped
//! with a signal and its JSON exit report read back.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use meridian_testkit::{free_port, run_bounded, ChildGuard, LineCollector, RunOutput};

/// The server binary under test.
pub const MERIDIAN: &str = env!("CARGO_BIN_EXE_meridian");

/// How long a server may take to log "meridian serving".
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// `meridian ARGS...`, bounded.
pub fn run_meridian(args: &[&str], timeout: Duration) -> RunOutput {
    run_bounded(Command::new(MERIDIAN).args(args), timeout).expect("spawning meridian")
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    pub backend: String,
    pub ipv4: bool,
    pub ipv6: bool,
    /// Listen on 0.0.0.0 / [::] (same port) instead of the loopback addresses; tests still
    /// send only to 127.0.0.1 / [::1].
    pub wildcard: bool,
    /// `--workers N`; `None` leaves it to the config file.
    pub workers: Option<usize>,
    /// Further arguments after `serve` (e.g. `--config FILE`).
    pub extra: Vec<String>,
    /// `--log-level`; `None` leaves the level to the config file's `log.level`.
    pub log_level: Option<String>,
}

impl ServerOpts {
    pub fn new(backend: &str) -> Self {
        ServerOpts {
            backend: backend.to_owned(),
            ipv4: true,
            ipv6: false,
            wildcard: false,
            workers: Some(1),
            extra: Vec::new(),
            log_level: Some("info".to_owned()),
        }
    }
    pub fn ipv6_only(mut self) -> Self {
        self.ipv4 = false;
        self.ipv6 = true;
        self
    }
    pub fn dual(mut self) -> Self {
        self.ipv4 = true;
        self.ipv6 = true;
        self
    }
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }
}

/// A running `meridian serve`, started from any command line, with its output collected;
/// killed by PID when dropped.
pub struct ServerProcess {
    guard: ChildGuard,
    stdout: LineCollector,
    stderr: LineCollector,
}

/// What `stop` returns.
#[derive(Debug)]
pub struct Stopped {
    pub status: ExitStatus,
    /// From the signal to the process's exit.
    pub elapsed: Duration,
    /// The last JSON line printed on stdout.
    pub report: serde_json::Value,
    pub stdout: String,
    pub stderr: String,
}

impl ServerProcess {
    /// Spawns `cmd` (a `meridian serve` command line, perhaps behind `ip netns exec`) with
    /// piped output and waits up to `ready_timeout` for it to log "meridian serving"; returns
    /// the process and that line, or why it is not serving (it is killed then).
    pub fn spawn(
        cmd: &mut Command,
        ready_timeout: Duration,
    ) -> Result<(ServerProcess, String), String> {
        cmd.env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", cmd.get_program().to_string_lossy()))?;
        let stdout = LineCollector::new(child.stdout.take().expect("piped stdout"));
        let mut stderr = LineCollector::new(child.stderr.take().expect("piped stderr"));
        let mut guard = ChildGuard::new(child);
        let deadline = Instant::now() + ready_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stderr.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(line) if line.contains("meridian serving") => {
                    let process = ServerProcess {
                        guard,
                        stdout,
                        stderr,
                    };
                    return Ok((process, line));
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(st) = guard.wait_timeout(Duration::ZERO) {
                        return Err(format!(
                            "exited ({st}) before it was ready: {}",
                            stderr.finish(Duration::from_secs(2)).trim()
                        ));
                    }
                    if left.is_zero() {
                        guard.kill();
                        return Err(format!(
                            "not ready within {ready_timeout:?}: {}",
                            stderr.text()
                        ));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let st = guard.wait_timeout(Duration::from_secs(2));
                    return Err(format!(
                        "stderr closed before it was ready (status {st:?}): {}",
                        stderr.text().trim()
                    ));
                }
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.guard.pid()
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the server.
    pub fn signal(&self, sig: i32) {
        self.guard.signal(sig);
    }

    /// SIGKILL, at once (the guard reaps it).
    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// The logs so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    /// Sends `sig`, waits (at most 5 s) for the exit and parses the JSON report.
    pub fn stop_with(mut self, sig: i32) -> Stopped {
        let sent = Instant::now();
        self.guard.signal(sig);
        let status = self.guard.wait_timeout(Duration::from_secs(5));
        let elapsed = sent.elapsed();
        let stdout = self.stdout.finish(Duration::from_secs(2));
        let stderr = self.stderr.finish(Duration::from_secs(2));
        let Some(status) = status else {
            panic!(
                "server did not exit within 5 s of signal {sig}\n--- stderr\n{stderr}\n--- stdout\n{stdout}"
            );
        };
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| {
                panic!("no report on stdout (status {status})\n--- stderr\n{stderr}")
            });
        let report: serde_json::Value = serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("report is not JSON ({e}): {last}"));
        Stopped {
            status,
            elapsed,
            report,
            stdout,
            stderr,
        }
    }

    /// SIGUSR1: the current report, without stopping.
    pub fn report_now(&self) -> serde_json::Value {
        self.guard.signal(libc::SIGUSR1);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if line.trim_start().starts_with('{') => {
                    return serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {line}"));
                }
                Ok(_) => {}
                Err(e) => panic!("no report within 3 s of SIGUSR1: {e}"),
            }
        }
    }
}

/// A running `meridian serve` on loopback, killed by PID when dropped.
pub struct Server {
    process: ServerProcess,
    pub port: u16,
    pub v4: Option<SocketAddr>,
    pub v6: Option<SocketAddr>,
    pub backend: String,
    /// The "meridian serving" log line.
    pub ready_line: String,
}

impl Server {
    /// Starts a server on a free loopback port and waits for it to be ready. Retries with
    /// another port if the chosen one was taken in the meantime.
    pub fn start(opts: &ServerOpts) -> Result<Server, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port(opts.ipv4, opts.ipv6).ok_or("no free loopback port")?;
            match Self::start_on(opts, port) {
                Ok(s) => return Ok(s),
                Err(e) if e.contains("address already in use") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(format!("no port could be bound after 5 tries: {last}"))
    }

    /// Like [`Server::start`] but panics with the reason.
    pub fn must_start(opts: &ServerOpts) -> Server {
        Self::start(opts).unwrap_or_else(|e| panic!("server ({}) did not start: {e}", opts.backend))
    }

    fn start_on(opts: &ServerOpts, port: u16) -> Result<Server, String> {
        let v4 = opts
            .ipv4
            .then(|| SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        let v6 = opts
            .ipv6
            .then(|| SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
        let mut cmd = Command::new(MERIDIAN);
        cmd.arg("serve");
        for a in v4.iter().chain(v6.iter()) {
            let mut listen = *a;
            if opts.wildcard {
                listen.set_ip(match a {
                    SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                    SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
                });
            }
            cmd.arg("--listen").arg(listen.to_string());
        }
        if let Some(n) = opts.workers {
            cmd.args(["--workers", &n.to_string()]);
        }
        cmd.args(["--backend", &opts.backend]);
        if let Some(level) = &opts.log_level {
            cmd.args(["--log-level", level]);
        }
        cmd.args(&opts.extra);
        let (process, ready_line) = ServerProcess::spawn(&mut cmd, READY_TIMEOUT)?;
        Ok(Server {
            process,
            port,
            v4,
            v6,
            backend: opts.backend.clone(),
            ready_line,
        })
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the server.
    pub fn signal(&self, sig: i32) {
        self.process.signal(sig);
    }

    /// The IPv4 address (panics if the server was started without one).
    pub fn addr4(&self) -> SocketAddr {
        self.v4.expect("server has no IPv4 listener")
    }

    pub fn addr6(&self) -> SocketAddr {
        self.v6.expect("server has no IPv6 listener")
    }

    /// The first address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.v4.or(self.v6).expect("server has no listener")
    }

    /// The logs so far.
    pub fn stderr_text(&self) -> String {
        self.process.stderr_text()
    }

    /// Sends SIGTERM and returns the exit report.
    pub fn stop(self) -> Stopped {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `sig`, waits (at most 5 s) for the exit and parses the JSON report.
    pub fn stop_with(self, sig: i32) -> Stopped {
        self.process.stop_with(sig)
    }

    /// SIGUSR1: the current report, without stopping.
    pub fn report_now(&self) -> serde_json::Value {
        self.process.report_now()
    }
}

/// Reads `report[path...]` as u64, panicking with the report when absent.
pub fn counter(report: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = report;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("no counter {path:?} in report {report}"))
}
