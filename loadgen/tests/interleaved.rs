//! `--interleaved` (RFC 9769 client/server interleaved mode) on the wire: against a server
//! written here that checks every request's bytes and answers as scripted (interleaved, basic,
//! not at all, or with a wrong origin), and against real interleaved servers on loopback:
//! chronyd (an independent implementation, serving it by default) and `meridian serve`.
//!
//! Assertions compare what both sides counted, never rates or latencies; the limits only bound
//! a hang. The runs against real servers have a warm-up, in which each client gets its first
//! (basic) exchanges done, so what they measure does not depend on how many requests a busy
//! machine let each client send.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::chrony::Chronyd;
use common::{
    answers, count, free_port, loadgen, meridian_binary, now, skip_notice, ChildGuard, NtpServer,
};
use meridian::clock::ClockSnapshot;
use meridian::proto::{NtpTimestamp, ReplyTimes, Request};

/// How the scripted server deviates from a correct interleaved server.
#[derive(Clone, Copy, Default)]
struct Script {
    /// Answer every n-th interleaved request (server-wide) in basic mode anyway.
    basic_every: Option<u64>,
    /// Drop each client's first interleaved request after its second request.
    drop_one: bool,
    /// Give interleaved answers the request's origin (our own receive timestamp) as origin.
    wrong_origin: bool,
}

/// What the scripted server saw and did.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// Origin and receive zero.
    basic_requests: u64,
    /// Origin = the receive timestamp of our last reply to that client, receive ≠ transmit.
    interleaved_requests: u64,
    /// Anything else: an origin that is not our last receive timestamp, a receive field equal
    /// to the transmit field or zero, a first request that is not basic.
    bad_requests: u64,
    answered_basic: u64,
    answered_interleaved: u64,
    dropped: u64,
    /// The request after a dropped one, by kind.
    basic_after_drop: u64,
    interleaved_after_drop: u64,
}

/// Per client socket: the receive timestamp our last reply carried and that reply's "true"
/// transmit time (read after the reply was written, as a daemon stamp would be).
#[derive(Default)]
struct Client {
    requests: u64,
    last_rx: NtpTimestamp,
    last_tx: NtpTimestamp,
    dropped: bool,
    just_dropped: bool,
}

fn field(b: &[u8], at: usize) -> NtpTimestamp {
    NtpTimestamp::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// A server answering interleaved mode as chronyd and meridian do, keyed by client socket,
/// with the deviations of `script`; returns it and what it counted.
fn scripted_server(script: Script) -> (NtpServer, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let counts = seen.clone();
    let mut clients: HashMap<SocketAddr, Client> = HashMap::new();
    let mut interleaved_so_far = 0u64;
    let server = NtpServer::answering(move |bytes, from| {
        let req = Request::parse(bytes).ok()?;
        let mut seen = counts.lock().unwrap();
        let c = clients.entry(from).or_default();
        c.requests += 1;
        let (origin, receive) = (field(bytes, 24), field(bytes, 32));
        let interleaved = !origin.is_zero();
        if !interleaved && receive.is_zero() {
            seen.basic_requests += 1;
        } else if c.requests > 1
            && origin == c.last_rx
            && !receive.is_zero()
            && receive != req.transmit_ts
        {
            seen.interleaved_requests += 1;
        } else {
            seen.bad_requests += 1;
        }
        if std::mem::take(&mut c.just_dropped) {
            if interleaved {
                seen.interleaved_after_drop += 1;
            } else {
                seen.basic_after_drop += 1;
            }
        }
        if script.drop_one && interleaved && c.requests > 2 && !c.dropped {
            c.dropped = true;
            c.just_dropped = true;
            seen.dropped += 1;
            return None;
        }
        let rx = now();
        // Every receive timestamp with its lowest bit set, every transmit one with it clear.
        let rx_field = NtpTimestamp(NtpTimestamp::from_unix(rx).0 | 1);
        let mut answer_interleaved = interleaved && origin == c.last_rx;
        if answer_interleaved {
            interleaved_so_far += 1;
            if script
                .basic_every
                .is_some_and(|n| interleaved_so_far % n == 0)
            {
                answer_interleaved = false;
            }
        }
        let (reply_origin, tx) = if answer_interleaved {
            seen.answered_interleaved += 1;
            let o = if script.wrong_origin {
                origin
            } else {
                req.receive_ts
            };
            (o, c.last_tx)
        } else {
            seen.answered_basic += 1;
            let tx = NtpTimestamp(NtpTimestamp::from_unix(now()).0 & !1);
            (req.transmit_ts, tx)
        };
        let times = ReplyTimes {
            rx,
            receive: rx_field,
            origin: reply_origin,
        };
        let mut out = [0u8; 64];
        let snap = ClockSnapshot::local(2, -20, rx);
        let n = req.write_reply_with(&snap, times, &mut out, || tx);
        c.last_rx = rx_field;
        c.last_tx = NtpTimestamp(NtpTimestamp::from_unix(now()).0 & !1);
        Some(out[..n].to_vec())
    });
    (server, seen)
}

/// 5 clients × about 20 requests each, one in flight per client (50 ms apart), against the
/// scripted server.
fn run_scripted(script: Script, extra: &[&str]) -> (std::process::Output, serde_json::Value, Seen) {
    let (server, seen) = scripted_server(script);
    let target = server.addr();
    let mut args = vec![
        "--target",
        &target,
        "--interleaved",
        "--clients",
        "5",
        "--rate",
        "100",
        "--duration",
        "1",
        "--timeout-ms",
        "200",
        "--no-pin",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let (out, v) = loadgen(&args);
    server.stop();
    let seen = *seen.lock().unwrap();
    eprintln!("server saw {seen:?}");
    (out, v["runs"][0].clone(), seen)
}

#[test]
fn interleaved_requests_are_built_and_replies_classified() {
    // Every third interleaved request answered basic: the client must tell the two apart.
    let script = Script {
        basic_every: Some(3),
        ..Script::default()
    };
    let (out, run, seen) = run_scripted(script, &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(run["interleaved"], true, "{run}");
    assert_eq!(seen.bad_requests, 0, "{seen:?}");
    // Each client's first request is basic, later ones interleaved (two requests leaving one
    // client together on a busy machine: the second is basic, the first took the reply).
    assert!(seen.basic_requests >= 5, "{seen:?}");
    assert!(seen.interleaved_requests > seen.basic_requests, "{seen:?}");
    let sent = count(&run, "sent");
    assert_eq!(sent, seen.basic_requests + seen.interleaved_requests);
    assert_eq!(
        count(&run, "interleaved_requests"),
        seen.interleaved_requests
    );
    // Every reply valid, and classified as the server sent it.
    assert_eq!(count(&run, "invalid"), 0, "{run}");
    assert_eq!(count(&run, "valid"), sent, "{run}");
    assert_eq!(
        count(&run, "interleaved_replies"),
        seen.answered_interleaved
    );
    assert_eq!(count(&run, "basic_replies"), seen.answered_basic);
    assert_eq!(
        count(&run, "interleaved_requests_answered"),
        seen.interleaved_requests
    );
    assert!(seen.answered_interleaved > 0 && seen.answered_basic > seen.basic_requests);
    let share = seen.answered_interleaved as f64 / seen.interleaved_requests as f64;
    assert!((run["interleaved_fraction"].as_f64().unwrap() - share).abs() < 1e-9);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "   interleaved: {} requests, {} answered: {} interleaved",
            seen.interleaved_requests, seen.interleaved_requests, seen.answered_interleaved
        )),
        "{stdout}"
    );
}

#[test]
fn the_std_transport_interleaves_too() {
    // The default transport on Linux is mmsg (above); xdp is checked in tests/xdp.rs.
    let (out, run, seen) = run_scripted(Script::default(), &["--transport", "std"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(run["transport"], "std", "{run}");
    assert_eq!(seen.bad_requests, 0, "{seen:?}");
    assert_eq!(
        count(&run, "interleaved_requests"),
        seen.interleaved_requests
    );
    assert_eq!(
        count(&run, "interleaved_replies"),
        seen.answered_interleaved
    );
    assert_eq!(
        seen.answered_interleaved, seen.interleaved_requests,
        "{seen:?}"
    );
    assert!(seen.answered_interleaved > 0, "{seen:?}");
}

#[test]
fn a_lost_reply_makes_the_next_request_basic() {
    let script = Script {
        drop_one: true,
        ..Script::default()
    };
    let (out, run, seen) = run_scripted(script, &["--max-loss", "0.5"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(seen.bad_requests, 0, "{seen:?}");
    assert_eq!(seen.dropped, 5, "{seen:?}");
    assert_eq!(count(&run, "lost"), 5, "{run}");
    // The request after each lost one is basic; the one after that interleaved again.
    assert_eq!(seen.basic_after_drop, 5, "{seen:?}");
    assert_eq!(seen.interleaved_after_drop, 0, "{seen:?}");
    assert_eq!(
        count(&run, "interleaved_replies"),
        seen.answered_interleaved
    );
    assert_eq!(count(&run, "invalid"), 0, "{run}");
}

#[test]
fn an_interleaved_reply_with_a_wrong_origin_is_invalid() {
    let script = Script {
        wrong_origin: true,
        ..Script::default()
    };
    let (out, run, seen) = run_scripted(script, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(seen.bad_requests, 0, "{seen:?}");
    assert!(seen.answered_interleaved > 0, "{seen:?}");
    assert_eq!(count(&run, "invalid"), seen.answered_interleaved, "{run}");
    assert_eq!(
        run["invalid_by_reason"]["wrong_origin"].as_u64(),
        Some(seen.answered_interleaved),
        "{run}"
    );
    assert_eq!(count(&run, "interleaved_replies"), 0, "{run}");
    assert_eq!(count(&run, "basic_replies"), seen.answered_basic, "{run}");
}

/// A bounded run against a real server: 20 clients (over 20 loopback addresses, so a server
/// keeping state per address keeps one per client), 200 requests/s, 1 s of warm-up and 2 s
/// measured: each client sends every 100 ms, one request in flight.
fn run(target: &str, interleaved: bool) -> serde_json::Value {
    let mut args = vec![
        "--target",
        target,
        "--rate",
        "200",
        "--warmup",
        "1",
        "--duration",
        "2",
        "--clients",
        "20",
        "--timeout-ms",
        "2000",
        "--max-loss",
        "0.5",
        "--no-pin",
        "--quiet",
    ];
    if interleaved {
        args.push("--interleaved");
    }
    let (out, v) = loadgen(&args);
    assert!(out.status.success(), "{out:?}");
    v["runs"][0].clone()
}

/// At least 90 % of the replies to interleaved requests are interleaved, at most
/// `late_start` + lost of them basic; without `--interleaved` every reply is basic.
fn check(name: &str, target: &str, late_start: u64) {
    let r = run(target, true);
    assert_eq!(count(&r, "invalid"), 0, "{name}: {r}");
    let (asked, answered, interleaved) = (
        count(&r, "interleaved_requests"),
        count(&r, "interleaved_requests_answered"),
        count(&r, "interleaved_replies"),
    );
    assert!(asked > 0 && answered > 0, "{name}: {r}");
    assert!(
        interleaved * 10 >= answered * 9,
        "{name}: only {interleaved} of {answered} replies to interleaved requests \
         ({asked} sent) were interleaved: {r}"
    );
    assert!(
        answered - interleaved <= late_start + count(&r, "lost"),
        "{name}: {r}"
    );
    eprintln!(
        "{name}: {interleaved} of {answered} replies to interleaved requests interleaved \
         ({:.1} %)",
        100.0 * interleaved as f64 / answered as f64
    );
    let b = run(target, false);
    assert_eq!(b["interleaved"], false, "{name}: {b}");
    assert_eq!(count(&b, "invalid"), 0, "{name}: {b}");
    assert!(count(&b, "valid") > 0, "{name}: {b}");
    assert_eq!(count(&b, "interleaved_requests"), 0, "{name}: {b}");
    assert_eq!(count(&b, "interleaved_replies"), 0, "{name}: {b}");
    assert_eq!(
        count(&b, "basic_replies"),
        count(&b, "valid"),
        "{name}: {b}"
    );
}

#[test]
fn chronyd_answers_interleaved_requests_interleaved() {
    let server = match Chronyd::start() {
        Ok(s) => s,
        Err(why) => return skip_notice(&format!("interleaved against chronyd: {why}")),
    };
    // chronyd keeps a reply's transmit time only when the request it answered was itself
    // interleaved: a client's first interleaved request (and the first after a loss) gets a
    // basic reply. With the warm-up that is before the measurement, unless a client sent
    // fewer than two requests in it: at most one such reply per client.
    check("chronyd", &server.addr(), 20);
    drop(server);
}

#[test]
fn meridian_answers_interleaved_requests_interleaved() {
    let dir = std::env::temp_dir().join(format!("loadgen-xleave-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port(true, false).expect("a free loopback port");
    let err = dir.join("server.stderr");
    let mut server = ChildGuard::terminating(
        Command::new(meridian_binary())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--workers",
                "2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("start meridian serve"),
        "meridian serve",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(port) {
        assert!(server.try_wait().is_none(), "meridian exited early");
        assert!(
            Instant::now() < deadline,
            "meridian did not answer within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // meridian saves the pair of every reply, so even a client's first interleaved request is
    // answered interleaved; the bound allows what chronyd does (its server side is young).
    check("meridian", &format!("127.0.0.1:{port}"), 20);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
