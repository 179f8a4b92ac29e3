//! io_uring-specific behaviour: a burst larger than the provided buffer ring exhausts it, the
//! multishot receive is re-armed, and every later request is still answered. Linux builds
//! only: a portable build has no io-uring backend.

#![cfg(linux_io)]
// Integration tests and benchmarks run on real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn buffer_ring_exhaustion_does_not_stall() {
    if !backends().contains(&"io-uring") {
        skip_notice("io_uring backend unavailable on this machine");
        return;
    }
    // batch-size 1 gives the smallest buffer ring (16 buffers), so a burst must exhaust it.
    let dir = std::env::temp_dir().join(format!("meridian-uring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("meridian.toml");
    std::fs::write(&cfg, "[server]\nbatch-size = 1\n").unwrap();
    let mut opts = ServerOpts::new("io-uring");
    opts.extra = vec!["--config".into(), cfg.display().to_string()];
    let server = Server::must_start(&opts);
    let target = server.addr4();

    // The burst: 20 sockets × 200 requests sent as fast as the loop goes, replies not read yet.
    let socks: Vec<_> = (0..20).map(|_| client_socket(target)).collect();
    let burst = 4000;
    let t0 = Instant::now();
    for i in 0..burst {
        let s = &socks[i % socks.len()];
        let _ = s.send(&request(4, 3, ntp_now()));
    }
    let burst_time = t0.elapsed();
    std::thread::sleep(Duration::from_millis(300));

    // After the burst: 200 requests one at a time, each must be answered.
    let probe = client_socket(target);
    let mut answered = 0;
    for _ in 0..200 {
        let tx = ntp_now() | 1;
        probe.send(&request(4, 3, tx)).unwrap();
        // Skip any stale datagram; wait for the reply to this request.
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match recv_timeout(&probe, Duration::from_millis(100)) {
                Some(b) if b.len() >= 48 && parse_reply(&b).origin == tx => {
                    answered += 1;
                    break;
                }
                _ => {}
            }
        }
    }
    let stopped = server.stop();
    let exhausted = counter(&stopped.report, &["total", "rx_buffers_exhausted"]);
    let received = counter(&stopped.report, &["total", "received"]);
    eprintln!(
        "burst of {burst} sent in {burst_time:?}; server received {received}; buffer ring ran dry {exhausted} times; {answered}/200 later requests answered"
    );
    assert!(
        exhausted > 0,
        "the burst should have exhausted a 16-buffer ring (received {received})"
    );
    assert_eq!(
        answered, 200,
        "every request after the burst must be answered"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
