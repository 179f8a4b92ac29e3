//! The load generator against a deliberately broken NTP server on 127.0.0.1: every fault the
//! server cycles through must be counted under its own reason, and the run must fail.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meridian::clock::ClockSnapshot;
use meridian::proto::{KissCode, NtpTimestamp, Request, UnixNanos};

const FAULTS: [&str; 7] = [
    "good",
    "wrong_origin",
    "wrong_mode",
    "kod_rate",
    "unsynchronized",
    "reversed",
    "short",
];

fn now() -> UnixNanos {
    UnixNanos(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64,
    )
}

/// Writes the answer to `req` with fault number `fault`; returns its length.
fn answer(req: &Request, fault: usize, out: &mut [u8; 64]) -> usize {
    let rx = now();
    let snap = ClockSnapshot::local(2, -20, rx);
    let n = req.write_reply(&snap, rx, out, now);
    match FAULTS[fault] {
        "good" => n,
        "wrong_origin" => {
            out[31] ^= 0x5a;
            n
        }
        "wrong_mode" => {
            out[0] = (out[0] & !7) | 5; // broadcast
            n
        }
        "kod_rate" => req.write_kod(KissCode::Rate, out),
        "unsynchronized" => {
            out[0] |= 0xc0; // LI = 3
            n
        }
        "reversed" => {
            // Transmit 1 ms before receive.
            let t = NtpTimestamp::from_unix(rx.add_nanos(-1_000_000));
            out[40..48].copy_from_slice(&t.to_be_bytes());
            n
        }
        "short" => 40,
        _ => unreachable!(),
    }
}

/// The broken server: answers every request, cycling through [`FAULTS`].
struct BrokenServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl BrokenServer {
    fn start() -> BrokenServer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut out = [0u8; 64];
            let mut i = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(req) = Request::parse(&buf[..len]) else {
                    continue;
                };
                let n = answer(&req, (i % FAULTS.len() as u64) as usize, &mut out);
                let _ = sock.send_to(&out[..n], from);
                i += 1;
            }
            i
        });
        BrokenServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BrokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn every_fault_is_counted_under_its_own_reason() {
    let server = BrokenServer::start();
    let dir = std::env::temp_dir().join(format!("loadgen-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let started = Instant::now();
    let out = common::run_bounded(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_meridian-loadgen"));
            c.args([
                "--target",
                &format!("broken=127.0.0.1:{}", server.port),
                "--rate",
                "700",
                "--duration",
                "1",
                "--clients",
                "2",
                "--timeout-ms",
                "300",
                "--json",
            ])
            .arg(&json);
            c
        },
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a run with invalid replies must fail\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let run = &v["runs"][0];
    let reasons = &run["invalid_by_reason"];
    for reason in [
        "wrong_origin",
        "wrong_mode",
        "kod",
        "unsynchronized",
        "reversed_timestamps",
        "short",
    ] {
        let n = reasons[reason].as_u64().unwrap_or(0);
        assert!(n > 0, "no {reason} counted: {reasons}\n{stdout}");
    }
    assert!(
        run["kod_by_code"]["RATE"].as_u64().unwrap_or(0) > 0,
        "{run}"
    );
    // 700 slots in 1 s, each sent or (on a busy host) skipped and counted as missed; about one
    // reply in seven of each kind.
    let sent = run["sent"].as_u64().unwrap();
    let missed = run["missed_sends"].as_u64().unwrap();
    assert!(
        (690..=710).contains(&(sent + missed)),
        "sent {sent} missed {missed}"
    );
    assert!(sent > 300, "sent {sent}");
    let valid = run["valid"].as_u64().unwrap();
    assert!(
        valid > sent / 10 && valid < sent / 4,
        "valid {valid} of {sent}"
    );
    // Unmatchable replies (wrong origin, too short) leave their requests lost.
    assert!(run["lost"].as_u64().unwrap() > 0);
    assert_eq!(v["pass"], serde_json::Value::Bool(false));
    assert!(stdout.contains("invalid by reason"), "{stdout}");
    assert!(stderr.contains("FAIL broken"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_server_means_loss_and_failure() {
    // A port nobody listens on: every request is lost (ICMP port unreachable).
    let port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let out = common::run_bounded(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_meridian-loadgen"));
            c.args([
                "--target",
                &format!("127.0.0.1:{port}"),
                "--rate",
                "200",
                "--duration",
                "0.5",
                "--timeout-ms",
                "100",
                "--quiet",
            ]);
            c
        },
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("(100.000%)"), "{stdout}");
    assert!(stdout.contains("valid 0 "), "{stdout}");
}
