//! A burst: 10,000 requests from 200 source ports with a window of 512 outstanding, at least
//! 99 % answered and counted by the server.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::common::{counter, parse_reply, request};
use crate::server::XdpServer;
use crate::{C4, S4};

const SOCKETS: usize = 200;
const PER_SOCKET: usize = 50;
const WINDOW: usize = 512;

pub fn burst(mode: &str) {
    let pair = setup!();
    let server = XdpServer::must_start(&pair, mode, &["10.203.0.1:123"]);
    let (valid, elapsed) = pair.client.on_thread(|| {
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
