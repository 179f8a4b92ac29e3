//! `--interleaved` against real interleaved servers on loopback: chronyd (an independent
//! implementation of RFC 9769, serving it by default) and `meridian serve`. Each simulated
//! client sends its first request in basic mode and the rest interleaved; both servers must
//! answer nearly all of those interleaved, and without the flag every reply is basic.
//!
//! Assertions are on counts (requests sent, replies classified), never on rates or latencies;
//! the rate is low (200 requests/s) so nothing is lost to a busy machine, and the limits only
//! bound a hang.

mod common;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::chrony::Chronyd;
use common::{answers, count, free_port, loadgen, meridian_binary, skip_notice, ChildGuard};

/// A bounded run: 20 clients (over 20 loopback addresses, so a server keeping state per
/// address keeps one per client), 200 requests/s for 2 s.
fn run(target: &str, interleaved: bool) -> serde_json::Value {
    let mut args = vec![
        "--target",
        target,
        "--rate",
        "200",
        "--duration",
        "2",
        "--clients",
        "20",
        "--timeout-ms",
        "2000",
        "--max-loss",
        "0.5",
    ];
    if interleaved {
        args.push("--interleaved");
    }
    let (out, v) = loadgen(&args);
    assert!(out.status.success(), "{out:?}");
    v["runs"][0].clone()
}

/// Interleaved replies make up at least 90 % of the replies to interleaved requests, and
/// without `--interleaved` there are none.
fn check(name: &str, target: &str) {
    let r = run(target, true);
    assert_eq!(count(&r, "invalid"), 0, "{name}: {r}");
    let (asked, answered, interleaved) = (
        count(&r, "interleaved_requests"),
        count(&r, "interleaved_requests_answered"),
        count(&r, "interleaved_replies"),
    );
    // Each of the 20 clients' first request is basic; about 400 requests in all.
    assert!(asked >= 200, "{name}: {r}");
    assert!(
        interleaved * 10 >= answered * 9 && answered * 10 >= asked * 9,
        "{name}: {interleaved} of {answered} answered interleaved requests ({asked} sent): {r}"
    );
    let b = run(target, false);
    assert_eq!(count(&b, "invalid"), 0, "{name}: {b}");
    assert_eq!(count(&b, "interleaved_replies"), 0, "{name}: {b}");
    assert!(count(&b, "valid") > 0, "{name}: {b}");
}

#[test]
fn chronyd_answers_interleaved_requests_interleaved() {
    let server = match Chronyd::start() {
        Ok(s) => s,
        Err(why) => return skip_notice(&format!("interleaved against chronyd: {why}")),
    };
    check("chronyd", &server.addr());
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
    check("meridian", &format!("127.0.0.1:{port}"));
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
