//! The load generator against a deliberately broken NTP server on 127.0.0.1: every fault the
//! server cycles through must be counted under its own reason, as often as the server sent it,
//! and the run must fail. The assertions compare counts on both sides, never rates.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
            // The top byte of the origin's seconds: decades away from any request's timestamp.
            // (A flipped low byte could name another request of the same few milliseconds,
            // and would then be taken, rightly, for that request's answer.)
            out[24] ^= 0x5a;
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

/// The broken server: answers every request, cycling through [`FAULTS`]; counts the answers
/// of each kind.
struct BrokenServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<[u64; FAULTS.len()]>>,
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
            let mut i = 0usize;
            let mut sent = [0u64; FAULTS.len()];
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(req) = Request::parse(&buf[..len]) else {
                    continue;
                };
                let fault = i % FAULTS.len();
                let n = answer(&req, fault, &mut out);
                if sock.send_to(&out[..n], from).is_ok() {
                    sent[fault] += 1;
                }
                i += 1;
            }
            sent
        });
        BrokenServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl BrokenServer {
    /// Stops the server; how many answers of each fault it sent.
    fn stop(mut self) -> [u64; FAULTS.len()] {
        self.shutdown()
    }

    fn shutdown(&mut self) -> [u64; FAULTS.len()] {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("server thread"))
            .unwrap_or_default()
    }
}

impl Drop for BrokenServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[test]
fn every_fault_is_counted_under_its_own_reason() {
    let server = BrokenServer::start();
    let dir = std::env::temp_dir().join(format!("loadgen-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
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
                // Replies in time however busy the machine; the unmatchable ones keep their
                // requests waiting this long.
                "--timeout-ms",
                "2000",
                // Late slots are sent, not skipped: all 700 go out (unless the very end of the
                // second is missed).
                "--max-lag-us",
                "10000000",
                "--json",
            ])
            .arg(&json);
            c
        },
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a run with invalid replies must fail\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let served = server.stop();
    let by_fault = |name: &str| served[FAULTS.iter().position(|f| *f == name).unwrap()];
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let run = &v["runs"][0];
    let count = |key: &str| run[key].as_u64().unwrap_or_else(|| panic!("{key}: {run}"));
    let reasons = &run["invalid_by_reason"];
    let reason = |r: &str| reasons[r].as_u64().unwrap_or(0);
    // Each fault under its own reason: seen at least once, never more often than the server
    // sent it (a reply lost on the way is not seen; one counted under the wrong reason would
    // push another reason past its fault's count).
    let kinds = [
        ("good", None),
        ("wrong_origin", Some("wrong_origin")),
        ("wrong_mode", Some("wrong_mode")),
        ("kod_rate", Some("kod")),
        ("unsynchronized", Some("unsynchronized")),
        ("reversed", Some("reversed_timestamps")),
        ("short", Some("short")),
    ];
    for (fault, r) in kinds {
        let seen = match r {
            Some(r) => reason(r),
            None => count("valid"),
        };
        let sent = by_fault(fault);
        assert!(
            seen > 0 && seen <= sent,
            "{fault}: seen {seen}, server sent {sent}: {reasons}\n{stdout}"
        );
    }
    assert_eq!(
        run["kod_by_code"]["RATE"].as_u64(),
        Some(reason("kod")),
        "{run}"
    );
    assert_eq!(
        count("invalid"),
        reasons
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    );
    // Every request ended valid, invalid with its origin matched, or lost; the unmatchable
    // replies (wrong origin, too short) left their requests lost.
    let matched_invalid = count("invalid") - reason("wrong_origin") - reason("short");
    assert_eq!(
        count("valid") + matched_invalid + count("lost"),
        count("sent"),
        "{run}"
    );
    assert!(
        count("lost") >= reason("wrong_origin") + reason("short"),
        "{run}"
    );
    // 700 slots in 1 s, each sent, skipped or refused.
    let scheduled = count("sent") + count("missed_sends") + count("send_errors");
    assert!((699..=701).contains(&scheduled), "{run}");
    // When nothing was dropped on the way (the usual case), every count is exact.
    let answered: u64 = served.iter().sum();
    if answered == count("sent") && count("received") == answered {
        for (fault, r) in kinds {
            let seen = r.map_or(count("valid"), reason);
            assert_eq!(seen, by_fault(fault), "{fault}: {run}");
        }
        assert_eq!(
            count("lost"),
            by_fault("wrong_origin") + by_fault("short"),
            "{run}"
        );
    }
    assert_eq!(count("duplicate"), 0, "{run}");
    assert_eq!(v["pass"], serde_json::Value::Bool(false));
    assert!(stdout.contains("invalid by reason"), "{stdout}");
    assert!(stderr.contains("FAIL broken"), "{stderr}");
    common::check_progress_adds_up(&stderr, "broken", run);
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
                // Late slots are sent, not skipped, so requests go out however busy the machine.
                "--max-lag-us",
                "10000000",
                "--quiet",
            ]);
            c
        },
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("(100.000%)"), "{stdout}");
    assert!(stdout.contains("valid 0 "), "{stdout}");
}
