//! Several workers share one port (SO_REUSEPORT, steered by the client's source address): a
//! burst from many clients is answered almost entirely and both workers take part, and each
//! client address is always served by one worker, whatever its source port.

// Integration tests and benchmarks run on real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{backends, counter, parse_reply, request, Server, ServerOpts};

const SOCKETS: usize = 200;
/// The burst's sockets are spread over this many loopback source addresses (127.0.0.1..=N):
/// workers are chosen by source address, so one address would reach one worker only.
const SOURCE_ADDRESSES: u8 = 8;
const PER_SOCKET: usize = 50;
const TOTAL: usize = SOCKETS * PER_SOCKET;
/// Requests in flight at most (keeps the burst within the kernel's socket buffers).
const WINDOW: u64 = 1024;
/// The whole burst, sending and collecting, must fit in this.
const BURST_DEADLINE: Duration = Duration::from_secs(15);

/// Our transmit timestamp for request `seq` from socket `idx`: the reply's origin names both.
fn tag(idx: usize, seq: usize) -> u64 {
    ((idx as u64 + 1) << 32) | (seq as u64 + 1)
}

fn untag(origin: u64) -> Option<(usize, usize)> {
    let idx = (origin >> 32).checked_sub(1)? as usize;
    let seq = (origin & 0xffff_ffff).checked_sub(1)? as usize;
    (idx < SOCKETS && seq < PER_SOCKET).then_some((idx, seq))
}

struct BurstResult {
    valid: usize,
    invalid: usize,
    duplicates: usize,
    elapsed: Duration,
}

fn burst(server: &Server) -> BurstResult {
    let target = server.addr();
    let socks: Arc<Vec<UdpSocket>> = Arc::new(
        (0..SOCKETS)
            .map(|i| {
                let src = Ipv4Addr::new(127, 0, 0, 1 + (i % SOURCE_ADDRESSES as usize) as u8);
                let s = UdpSocket::bind((src, 0)).expect("bind");
                s.connect(target).expect("connect");
                s.set_nonblocking(true).expect("nonblocking");
                s
            })
            .collect(),
    );
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + BURST_DEADLINE;

    let sender = {
        let (socks, received, done) = (socks.clone(), received.clone(), done.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            for seq in 0..PER_SOCKET {
                for (idx, s) in socks.iter().enumerate() {
                    while sent.saturating_sub(received.load(Ordering::Relaxed)) >= WINDOW {
                        if done.load(Ordering::Relaxed) || Instant::now() >= deadline {
                            return sent;
                        }
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    let req = request(4, 3, tag(idx, seq));
                    // A full send buffer is the test's problem, not the server's: retry once.
                    if s.send(&req).is_err() {
                        std::thread::sleep(Duration::from_micros(200));
                        let _ = s.send(&req);
                    }
                    sent += 1;
                }
            }
            sent
        })
    };

    let mut seen = vec![false; TOTAL];
    let (mut valid, mut invalid, mut duplicates) = (0usize, 0usize, 0usize);
    let mut last_reply = start;
    let mut pfds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = [0u8; 2048];
    let mut sender_done_at: Option<Instant> = None;
    while valid < TOTAL && Instant::now() < deadline {
        if sender_done_at.is_none() && sender.is_finished() {
            sender_done_at = Some(Instant::now());
        }
        // Once everything is sent, wait at most 2 s for stragglers.
        if sender_done_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        // SAFETY: `pfds` is a live array of pollfd structs for sockets kept open by `socks`.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 10) };
        if r <= 0 {
            continue;
        }
        for (idx, p) in pfds.iter_mut().enumerate() {
            if p.revents == 0 {
                continue;
            }
            p.revents = 0;
            loop {
                match socks[idx].recv(&mut buf) {
                    Ok(n) => {
                        let ok = n == 48 && {
                            let r = parse_reply(&buf[..n]);
                            r.mode == 4
                                && r.stratum == 10
                                && untag(r.origin).map(|(i, _)| i) == Some(idx)
                        };
                        if !ok {
                            invalid += 1;
                            continue;
                        }
                        let (i, seq) = untag(parse_reply(&buf[..n]).origin).unwrap();
                        let slot = &mut seen[i * PER_SOCKET + seq];
                        if *slot {
                            duplicates += 1;
                        } else {
                            *slot = true;
                            valid += 1;
                            received.fetch_add(1, Ordering::Relaxed);
                            last_reply = Instant::now();
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("recv on client socket {idx}: {e}"),
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender thread");
    assert_eq!(
        sent, TOTAL as u64,
        "the sender did not finish within the deadline"
    );
    BurstResult {
        valid,
        invalid,
        duplicates,
        elapsed: last_reply - start,
    }
}

#[test]
fn burst_from_many_ports_is_answered_by_both_workers() {
    let test_start = Instant::now();
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend).workers(2));
        let res = burst(&server);
        let rate = res.valid as f64 / res.elapsed.as_secs_f64().max(1e-6);
        eprintln!(
            "{backend}: {} of {TOTAL} answered ({} invalid, {} duplicates) in {:.3} s: \
             rough rate {rate:.0} replies/s (debug build, client in the same process, \
             at most {WINDOW} in flight)",
            res.valid,
            res.invalid,
            res.duplicates,
            res.elapsed.as_secs_f64()
        );
        let stopped = server.stop();
        let r = &stopped.report;
        assert!(
            res.valid * 100 >= TOTAL * 99,
            "{backend}: only {} of {TOTAL} valid answers; report {r}",
            res.valid
        );
        assert_eq!(res.invalid, 0, "{backend}: invalid replies");
        assert_eq!(res.duplicates, 0, "{backend}: duplicate replies");
        let workers = r["workers"].as_array().expect("workers array");
        assert_eq!(workers.len(), 2, "{r}");
        let mut sum = 0;
        for w in workers {
            let answered = counter(w, &["answered"]);
            assert!(answered > 0, "{backend}: a worker answered nothing: {r}");
            sum += answered;
            eprintln!("{backend}: worker {} answered {answered}", w["worker"]);
        }
        assert_eq!(sum, counter(r, &["total", "answered"]), "{r}");
        assert!(sum as usize >= res.valid, "{r}");
        assert_eq!(counter(r, &["total", "dropped_total"]), 0, "{r}");
    }
    assert!(
        test_start.elapsed() < Duration::from_secs(20 * backends().len() as u64),
        "took {:?}",
        test_start.elapsed()
    );
}

/// Linux builds only: a portable build has no reuseport steering (its workers share each
/// socket, so any of them may answer a client).
#[cfg(linux_io)]
#[test]
fn each_client_address_is_served_by_one_worker() {
    const PORTS: usize = 20;
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend).workers(2));
        let target = server.addr4();
        let answered = |r: &serde_json::Value| -> Vec<u64> {
            let workers = r["workers"].as_array().expect("workers array");
            workers.iter().map(|w| counter(w, &["answered"])).collect()
        };
        let mut before = answered(&server.report_now());
        let mut used = [false; 2];
        for last in 1..=SOURCE_ADDRESSES {
            let src = Ipv4Addr::new(127, 0, 0, last);
            // One request from each of PORTS source ports of this address.
            for _ in 0..PORTS {
                let s = UdpSocket::bind((src, 0)).expect("bind");
                s.connect(target).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                s.send(&request(4, 3, 1)).unwrap();
                let mut buf = [0u8; 128];
                let n = s.recv(&mut buf).expect("an answer");
                assert_eq!(parse_reply(&buf[..n]).mode, 4);
            }
            let after = answered(&server.report_now());
            let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
            eprintln!("{backend}: {src} from {PORTS} ports -> per-worker answers {delta:?}");
            let serving: Vec<usize> = (0..delta.len()).filter(|&w| delta[w] > 0).collect();
            assert_eq!(
                serving.len(),
                1,
                "{backend}: {src} was answered by several workers: {delta:?}"
            );
            assert_eq!(delta[serving[0]], PORTS as u64, "{backend}: {delta:?}");
            used[serving[0]] = true;
            before = after;
        }
        assert!(
            used.iter().all(|u| *u),
            "{backend}: {SOURCE_ADDRESSES} addresses all went to one worker"
        );
        server.stop();
    }
}
