//! The xdp backend end to end: two network namespaces joined by a veth pair, `meridian serve
//! --backend xdp` on the server side, real clients (meridian query, Python ntplib, chronyd),
//! kernel traffic that must still get through, hostile frames from a packet socket, a burst,
//! and restarts. Generic and native XDP.
//!
//! Needs root (namespaces, bpf(2), AF_XDP) and `ip`; skips with the reason otherwise. Every
//! namespace is deleted by a guard and every process killed by PID, also when an assertion
//! fails.
//!
//! AF_XDP is Linux-only: a portable build (`--cfg meridian_portable`) has no xdp backend, and
//! `tests/portable.rs` checks that it refuses `--backend xdp`.

#![cfg(linux_io)]
// Integration tests and benchmarks run on real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    counter, is_root, parse_reply, request, run_bounded, ChildGuard, RunOutput, MERIDIAN,
};

const S4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
const C4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
const S6: &str = "fd00:203::1";
const C6: &str = "fd00:203::2";
const CHRONYD: &str = "/usr/sbin/chronyd";
const MAX_OFFSET: f64 = 0.05;

fn s6() -> Ipv6Addr {
    S6.parse().unwrap()
}
fn c6() -> Ipv6Addr {
    C6.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Namespaces

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("needs root (network namespaces, bpf(2), AF_XDP)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2) is missing".into()),
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A server namespace and a client namespace joined by a veth pair (`va` in the server, `vb`
/// in the client) with 10.203.0.{1,2}/24 and fd00:203::{1,2}/64. Deleted on drop.
struct NetPair {
    server: String,
    client: String,
}

impl NetPair {
    fn create() -> Result<NetPair, String> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("mxdp-{}-{n}", std::process::id());
        let pair = NetPair {
            server: format!("{base}-s"),
            client: format!("{base}-c"),
        };
        for ns in [&pair.server, &pair.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns])?;
        }
        let (s, c) = (pair.server.as_str(), pair.client.as_str());
        ip(&[
            "-n", s, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", c,
        ])?;
        ip(&["-n", s, "addr", "add", "10.203.0.1/24", "dev", "va"])?;
        ip(&[
            "-n",
            s,
            "addr",
            "add",
            "fd00:203::1/64",
            "dev",
            "va",
            "nodad",
        ])?;
        ip(&["-n", c, "addr", "add", "10.203.0.2/24", "dev", "vb"])?;
        ip(&[
            "-n",
            c,
            "addr",
            "add",
            "fd00:203::2/64",
            "dev",
            "vb",
            "nodad",
        ])?;
        for (ns, dev) in [(s, "va"), (c, "vb"), (s, "lo"), (c, "lo")] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(pair)
    }

    /// `ip netns exec NS program args...`.
    fn exec(ns: &str, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]).args(args);
        c
    }

    fn in_client(&self, program: &str, args: &[&str], timeout: Duration) -> RunOutput {
        run_bounded(&mut Self::exec(&self.client, program, args), timeout)
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    fn in_server(&self, program: &str, args: &[&str], timeout: Duration) -> RunOutput {
        run_bounded(&mut Self::exec(&self.server, program, args), timeout)
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    /// Runs `f` on a thread that has entered namespace `ns` (so the switch never leaks).
    fn on_thread<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        let h = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace file");
            // SAFETY: `file` is an open network-namespace file; setns changes only the calling
            // thread's network namespace, and this thread is ours alone.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        });
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    fn mac(&self, ns: &str, dev: &str) -> [u8; 6] {
        let path = format!("/sys/class/net/{dev}/address");
        let out = self.run_in(ns, "cat", &[&path]);
        let mut mac = [0u8; 6];
        for (m, part) in mac.iter_mut().zip(out.trim().split(':')) {
            *m = u8::from_str_radix(part, 16).expect("hex MAC");
        }
        mac
    }

    fn run_in(&self, ns: &str, program: &str, args: &[&str]) -> String {
        let o = run_bounded(&mut Self::exec(ns, program, args), Duration::from_secs(10))
            .expect("running a command in a namespace");
        assert!(o.success(), "{program} {args:?}: {}", o.all());
        o.stdout
    }

    /// Waits (up to 3 s: the kernel releases a closed BPF link from a work queue) for `va` to
    /// have no XDP program; returns whether it has none.
    fn xdp_detached_soon(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.xdp_attached() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Whether an XDP program is attached to `va` (per `ip link`).
    fn xdp_attached(&self) -> bool {
        let o = run_bounded(
            Command::new("ip").args(["-n", &self.server, "link", "show", "va"]),
            Duration::from_secs(5),
        )
        .expect("ip link show");
        o.stdout.contains("prog/xdp")
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

macro_rules! setup {
    () => {{
        if let Some(why) = unavailable() {
            skip!("{why}");
        }
        match NetPair::create() {
            Ok(p) => p,
            Err(e) => skip!("cannot build the namespaces: {e}"),
        }
    }};
}

// ---------------------------------------------------------------------------------------------
// The server in its namespace

/// `meridian serve --backend xdp` inside the server namespace, killed by PID on drop.
struct XdpServer {
    guard: ChildGuard,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_rx: Receiver<String>,
}

fn collect(
    pipe: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, Receiver<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            l.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    (lines, rx)
}

impl XdpServer {
    fn start(pair: &NetPair, mode: &str, listen: &[&str]) -> Result<XdpServer, String> {
        let mut args = vec![
            "serve",
            "--backend",
            "xdp",
            "--interface",
            "va",
            "--xdp-mode",
            mode,
            "--log-level",
            "info",
        ];
        for l in listen {
            args.extend(["--listen", l]);
        }
        let mut child = NetPair::exec(&pair.server, MERIDIAN, &args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning the server: {e}"))?;
        let (stdout, _) = collect(child.stdout.take().unwrap());
        let (stderr, stderr_rx) = collect(child.stderr.take().unwrap());
        let mut server = XdpServer {
            guard: ChildGuard::new(child),
            stdout,
            stderr,
            stderr_rx,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match server.stderr_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(l) if l.contains("meridian serving") => return Ok(server),
                Ok(_) => {}
                Err(_) => {
                    if let Some(st) = server.guard.wait_timeout(Duration::ZERO) {
                        std::thread::sleep(Duration::from_millis(100));
                        return Err(format!("server exited ({st}): {}", server.stderr_text()));
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "server not ready in 15 s: {}",
                            server.stderr_text()
                        ));
                    }
                }
            }
        }
    }

    fn must_start(pair: &NetPair, mode: &str, listen: &[&str]) -> XdpServer {
        Self::start(pair, mode, listen).unwrap_or_else(|e| panic!("xdp server ({mode}): {e}"))
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGTERM, wait (5 s at most), and the JSON report from stdout.
    fn stop(mut self) -> (serde_json::Value, String) {
        self.guard.signal(libc::SIGTERM);
        let st = self.guard.wait_timeout(Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(100));
        let err = self.stderr_text();
        let st = st.unwrap_or_else(|| panic!("server did not exit within 5 s of SIGTERM: {err}"));
        assert!(st.success(), "server exit status {st}: {err}");
        let out = self.stdout.lock().unwrap().clone();
        let last = out
            .iter()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or_else(|| panic!("no report on stdout: {err}"));
        let report = serde_json::from_str(last).expect("report is JSON");
        (report, err)
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

fn query_ok(pair: &NetPair, addr: &str, samples: usize) {
    let n = samples.to_string();
    let out = pair.in_client(
        MERIDIAN,
        &[
            "query",
            addr,
            "--json",
            "-n",
            &n,
            "--interval",
            "0.05",
            "--timeout",
            "1",
        ],
        Duration::from_secs(20),
    );
    assert!(out.success(), "meridian query {addr}: {}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("query JSON");
    let list = v[0]["samples"].as_array().expect("samples");
    assert_eq!(list.len(), samples, "{v}");
    for s in list {
        assert_eq!(s["status"], "ok", "{s}");
        assert_eq!(s["stratum"], 10, "{s}");
        assert_eq!(s["refid"], "127.127.1.1", "{s}");
        let offset = s["offset"].as_f64().unwrap();
        assert!(offset.abs() < MAX_OFFSET, "offset {offset}: {s}");
    }
}

fn python_with_ntplib() -> Option<String> {
    ["python3", "/usr/bin/python3"].into_iter().find_map(|py| {
        let ok = Command::new(py)
            .args(["-c", "import ntplib"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| py.to_owned())
    })
}

const NTPLIB_SCRIPT: &str = r#"
import json, sys, ntplib
r = ntplib.NTPClient().request(sys.argv[1], port=int(sys.argv[2]), version=4, timeout=2)
print(json.dumps({"stratum": r.stratum, "mode": r.mode, "offset": r.offset}))
"#;

fn ntplib_ok(pair: &NetPair, py: &str, host: &str, port: u16) {
    let out = pair.in_client(
        py,
        &["-c", NTPLIB_SCRIPT, host, &port.to_string()],
        Duration::from_secs(20),
    );
    assert!(out.success(), "ntplib {host}: {}", out.all());
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("ntplib JSON");
    assert_eq!(v["stratum"], 10, "{v}");
    assert_eq!(v["mode"], 4, "{v}");
    assert!(v["offset"].as_f64().unwrap().abs() < MAX_OFFSET, "{v}");
}

fn chronyd_ok(pair: &NetPair, host: &str, port: u16) -> f64 {
    let source = format!("server {host} port {port} iburst maxsamples 4");
    let pidfile = format!(
        "pidfile {}/meridian-xdp-chronyd-{}.pid",
        std::env::temp_dir().display(),
        pair.client
    );
    let out = pair.in_client(
        CHRONYD,
        &["-Q", "-t", "10", &source, &pidfile],
        Duration::from_secs(25),
    );
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let offset = text
        .lines()
        .find_map(|l| l.split("System clock wrong by ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("chronyd printed no offset: {}", out.all()));
    assert!(
        offset.abs() < MAX_OFFSET,
        "chronyd offset {offset}: {}",
        out.all()
    );
    offset
}

fn clients(mode: &str) {
    let pair = setup!();
    let server = XdpServer::must_start(&pair, mode, &["10.203.0.1:123", "[fd00:203::1]:123"]);
    let mut expected = 0;
    for addr in ["10.203.0.1", "[fd00:203::1]"] {
        query_ok(&pair, addr, 4);
        expected += 4;
    }
    match python_with_ntplib() {
        Some(py) => {
            for host in ["10.203.0.1", S6] {
                ntplib_ok(&pair, &py, host, 123);
                expected += 1;
            }
        }
        None => common::skip_notice("part: no python with ntplib"),
    }
    if Path::new(CHRONYD).exists() {
        for host in ["10.203.0.1", S6] {
            let off = chronyd_ok(&pair, host, 123);
            eprintln!("{mode}: chronyd via {host}: offset {off:+.6} s");
            expected += 1;
        }
    } else {
        common::skip_notice(&format!("part: {CHRONYD} missing"));
    }
    assert!(pair.xdp_attached(), "program attached while serving");
    let (report, log) = server.stop();
    assert_eq!(report["backend"], "xdp", "{report}");
    let answered = counter(&report, &["total", "answered"]);
    assert!(
        answered >= expected,
        "answered {answered} < {expected}: {report}"
    );
    assert_eq!(counter(&report, &["total", "dropped_total"]), 0, "{report}");
    assert_eq!(
        counter(&report, &["total", "rx_timestamps", "driver"]),
        counter(&report, &["total", "received"]),
        "every request stamped by the XDP program: {report}"
    );
    assert!(
        log.contains(&format!("xdp_mode=\"{mode}\"")),
        "attached in {mode} mode: {log}"
    );
    // A transmit timestamp was read back from the AF_XDP TX metadata.
    let tx_line = log
        .lines()
        .find(|l| l.contains("first TX completion timestamp"))
        .unwrap_or_else(|| panic!("no TX completion timestamp logged: {log}"));
    eprintln!("{mode}: {tx_line}");
    // Both stamps are CLOCK_TAI converted with the same offset: the reply left after the
    // request arrived, and not long after.
    let rx_to_tx_us: f64 = tx_line
        .split("rx_to_tx_us=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rx_to_tx_us in {tx_line}"));
    assert!(
        (0.0..100_000.0).contains(&rx_to_tx_us),
        "TX stamp {rx_to_tx_us} µs after RX: {tx_line}"
    );
    assert!(log.contains("program detached"), "{log}");
    assert!(pair.xdp_detached_soon(), "program detached after exit");
}

#[test]
fn clients_generic() {
    clients("generic");
}

#[test]
fn clients_native() {
    clients("native");
}

// ---------------------------------------------------------------------------------------------
// Kernel traffic still flows

const ECHO_SCRIPT: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
u = socket.socket(fam, socket.SOCK_DGRAM)
u.bind((sys.argv[1], 7777))
t = socket.socket(fam, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((sys.argv[1], 123))
t.listen(4)
u.settimeout(10)
print("ready", flush=True)
for _ in range(2):
    data, peer = u.recvfrom(100)
    u.sendto(b"echo:" + data, peer)
c, _ = t.accept()
c.sendall(b"tcp-ok")
c.close()
"#;

#[test]
fn kernel_traffic_passes_while_attached() {
    let pair = setup!();
    let server = XdpServer::must_start(&pair, "native", &["10.203.0.1:123", "[fd00:203::1]:123"]);
    for (local, remote, srv) in [
        (
            SocketAddr::from((C4, 0)),
            SocketAddr::from((S4, 7777)),
            "10.203.0.1",
        ),
        (
            SocketAddr::from((c6(), 0)),
            SocketAddr::from((s6(), 7777)),
            S6,
        ),
    ] {
        let mut echo = NetPair::exec(&pair.server, "python3", &["-c", ECHO_SCRIPT, srv]);
        echo.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = echo.spawn().expect("python3 echo server");
        let (_, ready) = collect(child.stdout.take().unwrap());
        let mut guard = ChildGuard::new(child);
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("echo server ready");
        let got = NetPair::on_thread(&pair.client, move || {
            let s = UdpSocket::bind(local).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut buf = [0u8; 100];
            let mut udp = None;
            for _ in 0..10 {
                s.send_to(b"hello", remote).unwrap();
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    udp = Some(buf[..n].to_vec());
                    break;
                }
            }
            s.send_to(b"hello", remote).unwrap();
            // TCP to the NTP port goes to the kernel too.
            let tcp = std::net::TcpStream::connect_timeout(
                &SocketAddr::new(remote.ip(), 123),
                Duration::from_secs(3),
            )
            .and_then(|mut c| {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut c, &mut v).map(|_| v)
            });
            (udp, tcp.ok())
        });
        assert_eq!(
            got.0.as_deref(),
            Some(&b"echo:hello"[..]),
            "UDP echo on 7777 via {srv}"
        );
        assert_eq!(
            got.1.as_deref(),
            Some(&b"tcp-ok"[..]),
            "TCP to port 123 via {srv}"
        );
        let _ = guard.wait_timeout(Duration::from_secs(5));
        guard.kill();
    }
    // Neighbour resolution (ARP, NDP) went through the kernel: both neighbours are known.
    let neigh = pair.run_in(&pair.client, "ip", &["neigh", "show", "dev", "vb"]);
    assert!(neigh.contains("10.203.0.1 lladdr"), "{neigh}");
    assert!(neigh.contains("fd00:203::1 lladdr"), "{neigh}");
    // NTP still answered by XDP after all that.
    query_ok(&pair, "10.203.0.1", 1);
    let (report, _) = server.stop();
    assert_eq!(
        counter(&report, &["total", "answered"]),
        1,
        "only NTP reached AF_XDP: {report}"
    );
    assert_eq!(counter(&report, &["total", "dropped_total"]), 0, "{report}");
}

// ---------------------------------------------------------------------------------------------
// Hostile frames from a packet socket

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn sum16(mut sum: u64, data: &[u8]) -> u64 {
    for c in data.chunks(2) {
        sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    sum
}

/// A UDP datagram from 40001 to 123 with a correct checksum over the pseudo-header.
fn udp(src: &[u8], dst: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = vec![0x9c, 0x41, 0, 123];
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut s = 17 + len as u64;
    s = sum16(s, src);
    s = sum16(s, dst);
    let c = !fold(sum16(s, &u));
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    u
}

fn ipv4(dst: Ipv4Addr, frag: u16, options: &[u8], l4: &[u8]) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let total = ihl * 4 + l4.len();
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, 17, 0, 0]);
    h.extend_from_slice(&C4.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(options);
    let c = !fold(sum16(0, &h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

fn ipv6(l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[17, 64]);
    h.extend_from_slice(&c6().octets());
    h.extend_from_slice(&s6().octets());
    h.extend_from_slice(l4);
    h
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

/// Sends raw frames out of `dev` (AF_PACKET) from the calling thread's namespace.
fn send_frames(dev: &str, frames: &[Vec<u8>]) {
    let ifindex = {
        let c = std::ffi::CString::new(dev).unwrap();
        // SAFETY: `c` is a valid NUL-terminated name for the duration of the call.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    };
    assert_ne!(ifindex, 0, "no interface {dev}");
    // SAFETY: plain socket(2); the result is checked and owned below.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(raw >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    for f in frames {
        sa.sll_addr[..6].copy_from_slice(&f[..6]);
        // SAFETY: `f` is readable for its length and `sa` is a valid sockaddr_ll of the size
        // passed.
        let r = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert!(
            r >= 0,
            "sendto AF_PACKET: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn hostile_frames_native() {
    hostile_frames_are_dropped_and_counted("native");
}

#[test]
fn hostile_frames_generic() {
    hostile_frames_are_dropped_and_counted("generic");
}

fn hostile_frames_are_dropped_and_counted(mode: &str) {
    let pair = setup!();
    let server = XdpServer::must_start(&pair, mode, &["10.203.0.1:123", "[fd00:203::1]:123"]);
    let smac = pair.mac(&pair.server, "va");
    let cmac = pair.mac(&pair.client, "vb");
    let req = |tag: u64| request(4, 3, tag);
    let (s4, c4) = (S4.octets(), C4.octets());
    let (s6o, c6o) = (s6().octets(), c6().octets());
    let good4 = |tag: u64| ipv4(S4, 0x4000, &[], &udp(&c4, &s4, &req(tag)));
    let e4 = |l3: Vec<u8>| eth(smac, cmac, 0x0800, &l3);
    let e6 = |l3: Vec<u8>| eth(smac, cmac, 0x86dd, &l3);

    let mut malformed = Vec::new();
    // IP total length beyond the frame (a truncated frame).
    let mut f = good4(1);
    f.truncate(f.len() - 10);
    malformed.push(e4(f));
    // UDP length too large, too small.
    for ulen in [200u16, 7] {
        let mut f = good4(2);
        f[24..26].copy_from_slice(&ulen.to_be_bytes());
        malformed.push(e4(f));
    }
    // IP options (a no-op option word).
    malformed.push(e4(ipv4(S4, 0x4000, &[1, 1, 1, 0], &udp(&c4, &s4, &req(3)))));
    // Wrong UDP checksum (IPv4 and IPv6), zero checksum over IPv6.
    let mut f = good4(4);
    f[26] ^= 0x5a;
    malformed.push(e4(f));
    let mut u = udp(&c6o, &s6o, &req(5));
    u[6] ^= 0x5a;
    malformed.push(e6(ipv6(&u)));
    let mut u = udp(&c6o, &s6o, &req(6));
    u[6..8].copy_from_slice(&[0, 0]);
    malformed.push(e6(ipv6(&u)));
    // Bad IPv4 header checksum.
    let mut f = good4(7);
    f[10] ^= 0x33;
    malformed.push(e4(f));

    let mut others = Vec::new();
    // A too-short NTP payload (valid UDP).
    others.push(e4(ipv4(S4, 0x4000, &[], &udp(&c4, &s4, &req(8)[..20]))));
    // Mode 6 (control) request.
    let mut ctl = req(9);
    ctl[0] = (2 << 3) | 6;
    others.push(e4(ipv4(S4, 0x4000, &[], &udp(&c4, &s4, &ctl))));
    // Another destination address on the same wire.
    let other = Ipv4Addr::new(10, 203, 0, 77);
    others.push(e4(ipv4(
        other,
        0x4000,
        &[],
        &udp(&c4, &other.octets(), &req(10)),
    )));
    // Fragments: the program passes them to the kernel (no socket there): no answer either.
    let mut frag = vec![e4(ipv4(S4, 0x2000, &[], &udp(&c4, &s4, &req(11))))];
    frag.push(e4(ipv4(S4, 0x0004, &[], &udp(&c4, &s4, &req(12)))));
    // Runt frames (shorter than any header).
    let runts = vec![
        eth(smac, cmac, 0x0800, &[0x45, 0]),
        eth(smac, cmac, 0x86dd, &[]),
    ];
    // Finally one valid crafted request: answered (full checksum verified).
    let valid = e4(good4(100));

    let all: Vec<Vec<u8>> = malformed
        .iter()
        .chain(&others)
        .chain(&frag)
        .chain(&runts)
        .cloned()
        .chain(std::iter::once(valid))
        .collect();
    let answered_tags = NetPair::on_thread(&pair.client, move || {
        let s4 = UdpSocket::bind((C4, 40001)).unwrap();
        let s6 = UdpSocket::bind((c6(), 40001)).unwrap();
        send_frames("vb", &all);
        let mut tags = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut buf = [0u8; 200];
        while Instant::now() < deadline {
            for s in [&s4, &s6] {
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                if let Ok(n) = s.recv(&mut buf) {
                    if n >= 48 {
                        tags.push(parse_reply(&buf[..n]).origin);
                    }
                }
            }
        }
        tags
    });
    assert_eq!(
        answered_tags,
        vec![100],
        "only the valid crafted request is answered"
    );
    // The worker is alive and still answers.
    query_ok(&pair, "10.203.0.1", 1);
    query_ok(&pair, "[fd00:203::1]", 1);
    let (report, _) = server.stop();
    eprintln!("{mode}: report after hostile frames: {}", report["total"]);
    let d = |r: &str| counter(&report, &["total", "dropped", r]);
    assert_eq!(d("malformed"), malformed.len() as u64, "{report}");
    assert_eq!(d("too_short"), 1, "{report}");
    assert_eq!(d("bad_mode"), 1, "{report}");
    assert_eq!(d("not_ours"), 1, "{report}");
    assert_eq!(counter(&report, &["total", "answered"]), 3, "{report}");
}

// ---------------------------------------------------------------------------------------------
// Burst

const SOCKETS: usize = 200;
const PER_SOCKET: usize = 50;
const WINDOW: usize = 512;

fn burst(mode: &str) {
    let pair = setup!();
    let server = XdpServer::must_start(&pair, mode, &["10.203.0.1:123"]);
    let (valid, elapsed) = NetPair::on_thread(&pair.client, || {
        let socks: Vec<UdpSocket> = (0..SOCKETS)
            .map(|_| {
                let s = UdpSocket::bind((C4, 0)).unwrap();
                s.connect((S4, 123)).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let total = SOCKETS * PER_SOCKET;
        let mut seen = vec![false; total];
        // `written_off`: requests given up on after a stall, so a lost reply cannot block the
        // window forever.
        let (mut sent, mut valid, mut written_off) = (0usize, 0usize, 0usize);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(20);
        let mut buf = [0u8; 128];
        let mut last_progress = Instant::now();
        while Instant::now() < deadline {
            while sent < total && sent - valid.min(sent) - written_off.min(sent) < WINDOW {
                let (idx, seq) = (sent % SOCKETS, sent / SOCKETS);
                let tag = ((idx as u64 + 1) << 32) | (seq as u64 + 1);
                let _ = socks[idx].send(&request(4, 3, tag));
                sent += 1;
            }
            let mut got = false;
            for s in &socks {
                while let Ok(n) = s.recv(&mut buf) {
                    got = true;
                    let r = parse_reply(&buf[..n]);
                    let idx = (r.origin >> 32) as usize;
                    let seq = (r.origin & 0xffff_ffff) as usize;
                    if r.mode == 4
                        && (1..=SOCKETS).contains(&idx)
                        && (1..=PER_SOCKET).contains(&seq)
                    {
                        let k = (seq - 1) * SOCKETS + idx - 1;
                        if !seen[k] {
                            seen[k] = true;
                            valid += 1;
                        }
                    }
                }
            }
            if got {
                last_progress = Instant::now();
                continue;
            }
            if last_progress.elapsed() > Duration::from_millis(500) {
                if sent == total {
                    break;
                }
                written_off = sent - valid;
                last_progress = Instant::now();
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let valid = seen.iter().filter(|&&s| s).count();
        (valid, start.elapsed())
    });
    let (report, _) = server.stop();
    let total = SOCKETS * PER_SOCKET;
    eprintln!(
        "{mode}: burst {valid}/{total} answered in {elapsed:?} ({:.0}/s); report {}",
        valid as f64 / elapsed.as_secs_f64(),
        report["total"]
    );
    assert!(
        valid * 100 >= total * 99,
        "only {valid} of {total} answered"
    );
    assert!(
        counter(&report, &["total", "answered"]) >= valid as u64,
        "{report}"
    );
}

#[test]
fn burst_native() {
    burst("native");
}

#[test]
fn burst_generic() {
    burst("generic");
}

// ---------------------------------------------------------------------------------------------
// Restarts

#[test]
fn restart_right_after_exit_and_after_kill() {
    let pair = setup!();
    let listen = ["10.203.0.1:123"];
    let first = XdpServer::must_start(&pair, "native", &listen);
    query_ok(&pair, "10.203.0.1", 1);
    let _ = first.stop();
    assert!(pair.xdp_detached_soon(), "detached at exit");
    // At once: the queue may still be busy for a moment; the bind is retried.
    let t = Instant::now();
    let mut second = XdpServer::must_start(&pair, "native", &listen);
    eprintln!("restart after SIGTERM ready in {:?}", t.elapsed());
    query_ok(&pair, "10.203.0.1", 1);
    // SIGKILL: the kernel detaches the program and closes the socket when the process dies.
    second.guard.kill();
    let t = Instant::now();
    let third = XdpServer::must_start(&pair, "native", &listen);
    eprintln!("restart after SIGKILL ready in {:?}", t.elapsed());
    query_ok(&pair, "10.203.0.1", 2);
    let (report, _) = third.stop();
    assert_eq!(counter(&report, &["total", "answered"]), 2, "{report}");
    assert!(pair.xdp_detached_soon());
}

/// Misconfigurations fail loudly with a reason instead of serving nothing.
#[test]
fn bad_interface_or_queue_fails_with_a_reason() {
    let pair = setup!();
    let out = pair.in_server(
        MERIDIAN,
        &[
            "serve",
            "--backend",
            "xdp",
            "--interface",
            "nosuch0",
            "--listen",
            "10.203.0.1:123",
        ],
        Duration::from_secs(15),
    );
    assert!(out.status.is_some() && !out.success(), "{}", out.all());
    assert!(out.stderr.contains("nosuch0"), "{}", out.all());
    // --backend auto with an unusable interface falls back with one clear line.
    let mut auto = NetPair::exec(
        &pair.server,
        MERIDIAN,
        &[
            "serve",
            "--interface",
            "nosuch0",
            "--listen",
            "10.203.0.1:1123",
            "--log-level",
            "info",
        ],
    );
    auto.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = auto.spawn().expect("spawn");
    let (lines, rx) = collect(child.stderr.take().unwrap());
    let guard = ChildGuard::new(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            if l.contains("meridian serving") {
                break;
            }
        }
    }
    let text = lines.lock().unwrap().join("\n");
    assert!(text.contains("backend auto: xdp unavailable"), "{text}");
    assert!(text.contains("meridian serving"), "{text}");
    assert!(!text.contains("backend=\"xdp\""), "{text}");
    drop(guard);
}

#[test]
fn answered_source_and_checksums_seen_by_the_client_kernel() {
    // The client's kernel validated our checksums (a wrong one would be dropped silently), and
    // the reply came from the address and port the request went to.
    let pair = setup!();
    let server = XdpServer::must_start(&pair, "generic", &["0.0.0.0:123", "[::]:123"]);
    let froms = NetPair::on_thread(&pair.client, || {
        let mut froms = Vec::new();
        for (local, remote) in [
            (SocketAddr::from((C4, 0)), SocketAddr::from((S4, 123))),
            (SocketAddr::from((c6(), 0)), SocketAddr::from((s6(), 123))),
        ] {
            let s = UdpSocket::bind(local).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 100];
            for _ in 0..6 {
                s.send_to(&request(4, 3, 7), remote).unwrap();
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    assert_eq!(n, 48);
                    assert_eq!(parse_reply(&buf[..n]).origin, 7);
                    froms.push(from);
                    break;
                }
            }
        }
        froms
    });
    assert_eq!(
        froms,
        vec![SocketAddr::from((S4, 123)), SocketAddr::from((s6(), 123))],
        "wildcard listen answers from the address used"
    );
    let (report, _) = server.stop();
    assert_eq!(counter(&report, &["total", "answered"]), 2, "{report}");
}
