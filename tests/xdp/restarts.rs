//! Restarts right after SIGTERM and after SIGKILL, and misconfigurations that must fail with
//! a reason (or, with `--backend auto`, fall back).

use std::process::Stdio;
use std::time::{Duration, Instant};

use meridian_testkit::{ChildGuard, LineCollector};

use crate::clients::query_ok;
use crate::common::{counter, MERIDIAN};
use crate::server::XdpServer;
use crate::DETACH_WAIT;

pub fn restart_right_after_exit_and_after_kill() {
    let pair = setup!();
    let listen = ["10.203.0.1:123"];
    let first = XdpServer::must_start(&pair, "native", &listen);
    query_ok(&pair, "10.203.0.1", 1);
    let _ = first.stop();
    assert!(
        pair.server.xdp_detached_within("va", DETACH_WAIT),
        "detached at exit"
    );
    // At once: the queue may still be busy for a moment; the bind is retried.
    let t = Instant::now();
    let mut second = XdpServer::must_start(&pair, "native", &listen);
    eprintln!("restart after SIGTERM ready in {:?}", t.elapsed());
    query_ok(&pair, "10.203.0.1", 1);
    // SIGKILL: the kernel detaches the program and closes the socket when the process dies.
    second.kill();
    let t = Instant::now();
    let third = XdpServer::must_start(&pair, "native", &listen);
    eprintln!("restart after SIGKILL ready in {:?}", t.elapsed());
    query_ok(&pair, "10.203.0.1", 2);
    let (report, _) = third.stop();
    assert_eq!(counter(&report, &["total", "answered"]), 2, "{report}");
    assert!(pair.server.xdp_detached_within("va", DETACH_WAIT));
}

/// Misconfigurations fail loudly with a reason instead of serving nothing.
pub fn bad_interface_or_queue_fails_with_a_reason() {
    let pair = setup!();
    let out = pair.server.run(
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
    let mut auto = pair.server.command(MERIDIAN);
    auto.args([
        "serve",
        "--interface",
        "nosuch0",
        "--listen",
        "10.203.0.1:1123",
        "--log-level",
        "info",
    ]);
    auto.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = auto.spawn().expect("spawn");
    let lines = LineCollector::new(child.stderr.take().unwrap());
    let guard = ChildGuard::new(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(l) = lines.recv_timeout(Duration::from_millis(100)) {
            if l.contains("meridian serving") {
                break;
            }
        }
    }
    let text = lines.text();
    assert!(text.contains("backend auto: xdp unavailable"), "{text}");
    assert!(text.contains("meridian serving"), "{text}");
    assert!(!text.contains("backend=\"xdp\""), "{text}");
    drop(guard);
}
