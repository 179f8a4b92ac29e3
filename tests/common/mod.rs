//! Shared helpers for the integration tests: a guard around a real `meridian serve` process,
//! bounded runs of other programs, raw NTP datagrams over loopback, and the list of backends
//! every test runs against.
//!
//! Every spawned process is owned by a guard that kills it by PID when dropped, so a failing
//! assertion never leaves a server behind. Every wait has a deadline.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The server binary under test.
pub const MERIDIAN: &str = env!("CARGO_BIN_EXE_meridian");

/// How long a server may take to log "meridian serving".
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Prints why a test (or part of one) is skipped and returns from the enclosing function.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {{
        $crate::common::skip_notice(&format!($($arg)*));
        return;
    }};
}

/// Says why a test or part of one does not run here. With `MERIDIAN_REQUIRE_ALL=1` (set by
/// `.ci/run`, where everything is installed) a skip is a failure instead.
pub fn skip_notice(reason: &str) {
    let required = std::env::var_os("MERIDIAN_REQUIRE_ALL").is_some_and(|v| v == "1");
    assert!(
        !required,
        "MERIDIAN_REQUIRE_ALL=1, but this would be skipped: {reason}"
    );
    eprintln!("SKIP: {reason}");
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process killed (SIGKILL, by PID) and reaped when the guard is dropped.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        ChildGuard { child: Some(child) }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) takes plain integers; the PID is our own unreaped child, so it
            // cannot have been recycled for another process.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Waits up to `timeout` for the child to exit; `None` on timeout (the child keeps running).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) => {}
                Err(e) => panic!("waiting for pid {}: {e}", child.id()),
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the child (if still running) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                // SAFETY: as in `signal`: our own child, not yet reaped.
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGKILL);
                }
                let _ = c.wait();
            }
        }
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Collects the lines of a pipe in a thread: all of them in `lines`, each also sent on a channel.
struct LineCollector {
    lines: Arc<Mutex<Vec<String>>>,
    rx: Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

impl LineCollector {
    fn new(pipe: impl Read + Send + 'static) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let l = lines.clone();
        let thread = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        LineCollector {
            lines,
            rx,
            thread: Some(thread),
        }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until the pipe is closed (bounded), then returns everything.
    fn finish(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        self.text()
    }
}

/// The result of a bounded run of a program.
#[derive(Debug)]
pub struct RunOutput {
    /// `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Everything the program printed, for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "status {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with piped output, killing it (by PID) if it is still running after `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> std::io::Result<RunOutput> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut out = LineCollector::new(child.stdout.take().expect("piped stdout"));
    let mut err = LineCollector::new(child.stderr.take().expect("piped stderr"));
    let mut guard = ChildGuard::new(child);
    let status = guard.wait_timeout(timeout);
    let elapsed = started.elapsed();
    guard.kill();
    Ok(RunOutput {
        status,
        stdout: out.finish(Duration::from_secs(2)),
        stderr: err.finish(Duration::from_secs(2)),
        elapsed,
    })
}

/// `meridian ARGS...`, bounded.
pub fn run_meridian(args: &[&str], timeout: Duration) -> RunOutput {
    run_bounded(Command::new(MERIDIAN).args(args), timeout).expect("spawning meridian")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------------------------
// The server under test

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

/// A running `meridian serve`, killed by PID when dropped.
pub struct Server {
    guard: ChildGuard,
    pub port: u16,
    pub v4: Option<SocketAddr>,
    pub v6: Option<SocketAddr>,
    pub backend: String,
    /// The "meridian serving" log line.
    pub ready_line: String,
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

/// A port free on every loopback family asked for (bound, then released).
pub fn free_port(ipv4: bool, ipv6: bool) -> Option<u16> {
    for _ in 0..50 {
        let first = if ipv4 {
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        } else {
            UdpSocket::bind((Ipv6Addr::LOCALHOST, 0))
        };
        let Ok(first) = first else { continue };
        let port = first.local_addr().ok()?.port();
        if ipv4 && ipv6 && UdpSocket::bind((Ipv6Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        return Some(port);
    }
    None
}

/// True when a UDP socket can be bound on [::1].
pub fn ipv6_available() -> bool {
    UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
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
        cmd.args(&opts.extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawning {MERIDIAN}: {e}"))?;
        let stdout = LineCollector::new(child.stdout.take().expect("piped stdout"));
        let mut stderr = LineCollector::new(child.stderr.take().expect("piped stderr"));
        let mut guard = ChildGuard::new(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stderr.rx.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(line) if line.contains("meridian serving") => {
                    return Ok(Server {
                        guard,
                        port,
                        v4,
                        v6,
                        backend: opts.backend.clone(),
                        ready_line: line,
                        stdout,
                        stderr,
                    });
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
                            "not ready within {READY_TIMEOUT:?}: {}",
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
        self.stderr.text()
    }

    /// Sends SIGTERM and returns the exit report.
    pub fn stop(self) -> Stopped {
        self.stop_with(libc::SIGTERM)
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
            match self.stdout.rx.recv_timeout(left) {
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

/// Reads `report[path...]` as u64, panicking with the report when absent.
pub fn counter(report: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = report;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("no counter {path:?} in report {report}"))
}

// ---------------------------------------------------------------------------------------------
// Backends

static BACKENDS: OnceLock<Vec<&'static str>> = OnceLock::new();

/// The backends every test runs against: `udp` always, `io-uring` when this binary serves
/// with it (probed once per test binary; the reason is printed when it is left out). A portable
/// build (`--cfg meridian_portable`, no `linux_io`) has only `udp`.
pub fn backends() -> Vec<&'static str> {
    BACKENDS
        .get_or_init(|| {
            let mut v = vec!["udp"];
            if !cfg!(linux_io) {
                // Not a skip: io-uring does not exist in a portable build.
                return v;
            }
            match Server::start(&ServerOpts::new("io-uring")) {
                Ok(s) => {
                    let stopped = s.stop();
                    if stopped.status.success() {
                        v.push("io-uring");
                    } else {
                        skip_notice(&format!(
                            "backend io-uring: started but did not stop cleanly ({}): {}",
                            stopped.status, stopped.stderr
                        ));
                    }
                }
                Err(e) => skip_notice(&format!("backend io-uring not tested: {e}")),
            }
            v
        })
        .clone()
}

/// The name a server started with `--backend BACKEND` reports (start-up line and JSON report):
/// `--backend udp` is `udp-portable` in a portable build.
pub fn backend_name(backend: &str) -> &str {
    match backend {
        "udp" if !cfg!(linux_io) => "udp-portable",
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Raw NTP over loopback

/// Seconds from 1900 (NTP era 0) to 1970.
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Now as a 64-bit NTP timestamp.
pub fn ntp_now() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// An NTP timestamp as seconds (f64), for offsets.
pub fn ntp_to_f64(ts: u64) -> f64 {
    (ts >> 32) as f64 + (ts & 0xffff_ffff) as f64 / 4_294_967_296.0
}

/// A 48-byte header with the given version and mode, and `transmit` as transmit timestamp.
pub fn request(version: u8, mode: u8, transmit: u64) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = ((version & 7) << 3) | (mode & 7);
    p[2] = 6; // poll
    p[40..48].copy_from_slice(&transmit.to_be_bytes());
    p
}

/// An RFC 7822 extension field header (type, length) followed by `body_len` zero bytes.
pub fn ext_field(field_type: u16, claimed_len: u16, actual_len: usize) -> Vec<u8> {
    let mut v = vec![0u8; actual_len];
    v[..2].copy_from_slice(&field_type.to_be_bytes());
    v[2..4].copy_from_slice(&claimed_len.to_be_bytes());
    v
}

/// A decoded reply header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub leap: u8,
    pub version: u8,
    pub mode: u8,
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    pub root_delay: u32,
    pub root_dispersion: u32,
    pub refid: [u8; 4],
    pub reference: u64,
    pub origin: u64,
    pub receive: u64,
    pub transmit: u64,
}

pub fn parse_reply(b: &[u8]) -> Reply {
    assert!(
        b.len() >= 48,
        "reply shorter than a header: {} bytes",
        b.len()
    );
    let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap());
    Reply {
        leap: b[0] >> 6,
        version: (b[0] >> 3) & 7,
        mode: b[0] & 7,
        stratum: b[1],
        poll: b[2] as i8,
        precision: b[3] as i8,
        root_delay: u32::from_be_bytes(b[4..8].try_into().unwrap()),
        root_dispersion: u32::from_be_bytes(b[8..12].try_into().unwrap()),
        refid: [b[12], b[13], b[14], b[15]],
        reference: u64_at(16),
        origin: u64_at(24),
        receive: u64_at(32),
        transmit: u64_at(40),
    }
}

/// A loopback socket of `target`'s family, connected to it.
pub fn client_socket(target: SocketAddr) -> UdpSocket {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    };
    let s = UdpSocket::bind(local).expect("binding a client socket");
    s.connect(target).expect("connecting a client socket");
    s
}

/// Waits up to `timeout` for one datagram on `sock`.
pub fn recv_timeout(sock: &UdpSocket, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => return Some(buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            // ECONNREFUSED from an earlier ICMP error: nothing is listening.
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// Sends `datagram` to `target` from a fresh socket and waits up to `timeout` for a reply.
pub fn exchange(target: SocketAddr, datagram: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let s = client_socket(target);
    s.send(datagram).expect("send");
    recv_timeout(&s, timeout)
}

/// A valid v4 client request is answered, with our transmit timestamp as origin.
pub fn assert_answers(target: SocketAddr) -> Reply {
    let t = ntp_now();
    let reply = exchange(target, &request(4, 3, t), Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no answer from {target} to a valid request"));
    assert_eq!(reply.len(), 48, "reply length");
    let r = parse_reply(&reply);
    assert_eq!(r.origin, t, "origin must echo our transmit timestamp");
    assert_eq!(r.mode, 4);
    r
}

// ---------------------------------------------------------------------------------------------
// Fake upstream NTP servers (for the discipline tests)

/// How a [`FakeUpstream`] answers.
#[derive(Clone, Copy, Debug)]
pub struct FakeBehaviour {
    /// Seconds added to the system clock in every timestamp it serves.
    pub offset: f64,
    /// Each reply's timestamps are shifted by a uniform random amount in ±jitter seconds.
    pub jitter: f64,
    /// Leap indicator served (0..=2).
    pub leap: u8,
    pub stratum: u8,
    /// Answer every request with this kiss-o'-death code instead of time.
    pub kiss: Option<[u8; 4]>,
}

impl FakeBehaviour {
    pub fn offset(offset: f64) -> Self {
        FakeBehaviour {
            offset,
            jitter: 0.0,
            leap: 0,
            stratum: 1,
            kiss: None,
        }
    }
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }
    pub fn leap(mut self, leap: u8) -> Self {
        self.leap = leap;
        self
    }
    pub fn kiss(mut self, code: &[u8; 4]) -> Self {
        self.kiss = Some(*code);
        self
    }
}

struct FakeState {
    behaviour: FakeBehaviour,
    silent: std::sync::atomic::AtomicBool,
    requests: Mutex<Vec<Instant>>,
}

/// A small NTP server in a thread on `ip`:random-port, answering with the system clock shifted
/// by a known offset. Stopped and joined when dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Binds `ip` (a 127.0.0.0/8 address) on a free port and starts answering.
    pub fn start(ip: Ipv4Addr, behaviour: FakeBehaviour) -> FakeUpstream {
        use std::sync::atomic::{AtomicBool, Ordering};
        let sock = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("binding {ip}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let state = Arc::new(FakeState {
            behaviour,
            silent: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ addr.port() as u64;
            let mut buf = [0u8; 2048];
            while !sp.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if n < 48 || buf[0] & 7 != 3 {
                    continue;
                }
                st.requests.lock().unwrap().push(Instant::now());
                if st.silent.load(Ordering::Relaxed) {
                    continue;
                }
                let b = st.behaviour;
                // xorshift64: a reproducible uniform value in [-1, 1).
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let u = (rng >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
                let shift = b.offset + b.jitter * u;
                let reply = fake_reply(&buf[..48], &b, shift);
                let _ = sock.send_to(&reply, from);
            }
        });
        FakeUpstream {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops (or resumes) answering; requests are still counted.
    pub fn set_silent(&self, silent: bool) {
        self.state
            .silent
            .store(silent, std::sync::atomic::Ordering::Relaxed);
    }

    /// When each request arrived.
    pub fn requests(&self) -> Vec<Instant> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Now plus `shift` seconds as an NTP timestamp.
fn ntp_now_shifted(shift: f64) -> u64 {
    let fixed = (shift * 4_294_967_296.0).round() as i64;
    ntp_now().wrapping_add(fixed as u64)
}

/// The reply of a fake server to `req` (a 48-byte client header).
fn fake_reply(req: &[u8], b: &FakeBehaviour, shift: f64) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    let version = (req[0] >> 3) & 7;
    p[2] = req[2];
    p[24..32].copy_from_slice(&req[40..48]);
    if let Some(code) = b.kiss {
        p[0] = (3 << 6) | (version << 3) | 4;
        p[1] = 0;
        p[12..16].copy_from_slice(&code);
        return p;
    }
    let rx = ntp_now_shifted(shift);
    p[0] = (b.leap << 6) | (version << 3) | 4;
    p[1] = b.stratum;
    p[3] = (-20i8) as u8;
    p[8..12].copy_from_slice(&16u32.to_be_bytes()); // root dispersion ≈ 0.24 ms
    p[12..16].copy_from_slice(b"GPS\0");
    p[16..24].copy_from_slice(&rx.wrapping_sub(1 << 32).to_be_bytes());
    p[32..40].copy_from_slice(&rx.to_be_bytes());
    p[40..48].copy_from_slice(&ntp_now_shifted(shift).to_be_bytes());
    p
}

/// Writes `text` to a fresh file in the temporary directory and returns its path.
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "meridian-itest-{}-{}-{name}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    ));
    std::fs::write(&path, text).expect("writing a temporary file");
    path
}

/// The best offset `meridian query --json -n SAMPLES` measures against `target` (None when
/// no sample was valid, e.g. while the server is unsynchronised).
pub fn query_offset(target: SocketAddr, samples: usize) -> Option<f64> {
    let out = run_meridian(
        &[
            "query",
            &target.to_string(),
            "--json",
            "-n",
            &samples.to_string(),
            "--interval",
            "0.05",
            "--timeout",
            "0.5",
        ],
        Duration::from_secs(10),
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    let r = &v[0];
    let best = r["best"].as_u64()? as usize;
    r["samples"][best]["offset"].as_f64()
}

/// The chronyd binary the tests use as an independent client.
pub const CHRONYD: &str = "/usr/sbin/chronyd";

/// Parses "System clock wrong by -0.000004 seconds (ignored)" from chronyd -Q.
pub fn chrony_offset(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.contains("System clock wrong by "))?;
    let rest = line.split("System clock wrong by ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Runs `chronyd -Q -t 10 'server IP port N iburst'` (one-shot, clock untouched) against
/// `target` with its own pid file; returns its output.
pub fn chronyd_query(target: SocketAddr) -> RunOutput {
    let source = format!(
        "server {} port {} iburst maxsamples 4",
        target.ip(),
        target.port()
    );
    let pid_path = std::env::temp_dir().join(format!(
        "meridian-itest-chronyd-{}-{}.pid",
        std::process::id(),
        target.port()
    ));
    let pidfile = format!("pidfile {}", pid_path.display());
    let out = run_bounded(
        Command::new(CHRONYD).args(["-Q", "-t", "10", &source, &pidfile]),
        Duration::from_secs(20),
    )
    .expect("running chronyd");
    let _ = std::fs::remove_file(&pid_path);
    out
}
