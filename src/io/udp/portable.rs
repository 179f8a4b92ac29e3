//! Portable UDP path: std sockets, one datagram per call, user-space receive timestamps. Every
//! worker serves every address through clones of the same sockets (no SO_REUSEPORT needed).
//!
//! Only std and `socket2`'s cross-platform options (IPV6_V6ONLY, buffer sizes: they exist on
//! Linux, the BSDs, macOS and Windows) are used: this is the path built without `linux_io`.
//! Without PKTINFO a reply on a wildcard socket leaves from the address the routing table
//! picks, which is the request's destination on single-address hosts and on loopback.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::{RawStamp, TimestampQuality};
use crate::datapath::{Arrival, Worker};
use crate::io::{Opened, SetupError, WorkerContext, WorkerIo};
use crate::proto::{DropReason, MAX_REPLY_LEN};
use crate::sys;

/// How long a worker blocks in one receive before looking at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Socket buffer size asked for (best effort; the OS may cap it), as on the Linux path: one
/// datagram per system call needs room to absorb bursts.
const SOCKET_BUFFER: usize = 4 << 20;

struct PortableWorker {
    sockets: Vec<UdpSocket>,
}

/// Binds each address once and gives every worker a clone of each socket.
pub fn open(listen: &[SocketAddr], workers: usize) -> Result<Opened, SetupError> {
    let mut sockets = Vec::with_capacity(listen.len());
    let mut bound = Vec::with_capacity(listen.len());
    for &addr in listen {
        let s = bind(addr).map_err(|e| SetupError::from_io(addr, e))?;
        let local = s.local_addr().map_err(|e| SetupError::from_io(addr, e))?;
        // With several addresses a worker visits each in turn, so each wait is shorter.
        let wait = POLL / listen.len().max(1) as u32;
        s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| SetupError::from_io(addr, e))?;
        sockets.push(s);
        bound.push(local);
    }
    let mut out: Vec<Box<dyn WorkerIo>> = Vec::with_capacity(workers);
    for _ in 0..workers {
        let clones = sockets
            .iter()
            .zip(&bound)
            .map(|(s, a)| s.try_clone().map_err(|e| SetupError::from_io(*a, e)))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Box::new(PortableWorker { sockets: clones }));
    }
    Ok(Opened {
        name: "udp-portable",
        workers: out,
        bound,
        rx_stamping: TimestampQuality::User,
    })
}

/// A UDP socket bound to `addr`. An IPv6 socket is IPv6-only (the default differs between
/// systems), so `[::]:P` and `0.0.0.0:P` can be two listeners on every system.
fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&addr.into())?;
    Ok(s.into())
}

impl WorkerIo for PortableWorker {
    fn run(&mut self, ctx: &WorkerContext, worker: &mut Worker) -> std::io::Result<()> {
        let mut buf = [0u8; 2048];
        let mut reply = [0u8; MAX_REPLY_LEN];
        while !ctx.stop.load(Ordering::Relaxed) {
            for s in &self.sockets {
                // Timeouts (the stop-flag poll), interruptions and ICMP errors reported on the
                // socket (Windows does this) all mean: nothing to answer now.
                let Ok((len, peer)) = s.recv_from(&mut buf) else {
                    ctx.end_batch(worker);
                    continue;
                };
                let rx = RawStamp {
                    raw: sys::clock::now(),
                    quality: TimestampQuality::User,
                };
                // A datagram that filled the buffer may have been cut: never answer it.
                if len >= buf.len() {
                    worker.on_refused(rx, DropReason::TooLong);
                } else {
                    let snap = ctx.clock.load();
                    let meta = Arrival {
                        src: peer,
                        dst: None,
                        ifindex: 0,
                        rx,
                    };
                    let verdict =
                        worker.on_datagram(&meta, &buf[..len], &mut reply, &snap, sys::clock::now);
                    if let Some((n, _)) = verdict.send() {
                        if s.send_to(&reply[..n], peer).is_err() {
                            worker.on_send_failed();
                        }
                    }
                }
                ctx.end_batch(worker);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ClockSnapshot, SharedClock};
    use crate::datapath::counters::WorkerCounters;
    use crate::proto::client::check_reply;
    use crate::proto::server::client_request;
    use crate::proto::NtpTimestamp;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn portable_path_answers_and_counts() {
        let mut opened = open(&["127.0.0.1:0".parse().unwrap()], 1).unwrap();
        assert_eq!(opened.rx_stamping, TimestampQuality::User);
        let target = opened.bound[0];
        let mut worker = opened.workers.pop().unwrap();
        let ctx = WorkerContext {
            id: 0,
            clock: Arc::new(SharedClock::new(ClockSnapshot::local(
                7,
                -20,
                sys::clock::now(),
            ))),
            counters: Arc::new(crossbeam::utils::CachePadded::new(WorkerCounters::default())),
            stop: Arc::new(AtomicBool::new(false)),
            batch: 1,
            mailbox: Default::default(),
        };
        let (stop, counters) = (ctx.stop.clone(), ctx.counters.clone());
        let t = std::thread::spawn(move || {
            let mut state = crate::datapath::Worker::new(crate::datapath::WorkerConfig {
                clients: 16,
                seed: 1,
                interleaved: true,
            });
            worker.run(&ctx, &mut state)
        });

        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        client.send_to(&[0x23; 10], target).unwrap(); // too short: dropped
        let nonce = NtpTimestamp(0x1234_5678_9abc_def0);
        client
            .send_to(&client_request(4, 0, nonce), target)
            .unwrap();
        let mut buf = [0u8; 128];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        let h = check_reply(&buf[..n], 4, nonce).unwrap();
        assert_eq!(h.stratum, 7);

        stop.store(true, Ordering::Relaxed);
        t.join().unwrap().unwrap();
        let c = counters.read();
        use crate::datapath::counters::Counter;
        assert_eq!((c.get(Counter::Received), c.get(Counter::Answered)), (2, 1));
        assert_eq!(c.dropped[crate::proto::DropReason::TooShort.index()], 1);
    }
}
