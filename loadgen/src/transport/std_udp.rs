//! Portable transport: std::net sockets, one datagram per call, user-space receive stamps.
//! The fallback off Linux and a reference for the batched path.

use std::io;
use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{Payload, RecvMeta, RecvOutcome, Transport, RECV_BUF};
use crate::sys::realtime;

pub struct StdTransport {
    socks: Vec<UdpSocket>,
    batch: usize,
    /// Where the next receive scan starts (fairness across clients).
    cursor: usize,
    buf: Box<[u8; RECV_BUF]>,
}

impl StdTransport {
    pub fn new(socks: Vec<UdpSocket>, batch: usize) -> StdTransport {
        StdTransport {
            socks,
            batch,
            cursor: 0,
            buf: Box::new([0u8; RECV_BUF]),
        }
    }

    fn scan(
        &mut self,
        max: usize,
        on_packet: &mut dyn FnMut(RecvMeta, &[u8]),
        out: &mut RecvOutcome,
    ) {
        let n = self.socks.len();
        for k in 0..n {
            let c = (self.cursor + k) % n;
            while out.packets < max {
                match self.socks[c].recv(&mut self.buf[..]) {
                    Ok(len) => {
                        out.packets += 1;
                        let meta = RecvMeta {
                            client: c as u32,
                            rx_ns: realtime().0,
                            kernel_stamp: false,
                        };
                        on_packet(meta, &self.buf[..len]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        out.errors += 1;
                        break;
                    }
                }
            }
        }
        self.cursor = (self.cursor + 1) % n.max(1);
    }
}

impl Transport for StdTransport {
    fn name(&self) -> &'static str {
        "std"
    }

    fn clients(&self) -> usize {
        self.socks.len()
    }

    fn batch(&self) -> usize {
        self.batch
    }

    fn source_ips(&self) -> Vec<IpAddr> {
        self.socks
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .map(|a| a.ip())
            .collect()
    }

    fn send(&mut self, client: usize, payloads: &[Payload]) -> io::Result<usize> {
        let mut sent = 0;
        for p in payloads.iter().take(self.batch) {
            match self.socks[client].send(p) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    fn recv(
        &mut self,
        timeout: Duration,
        max: usize,
        on_packet: &mut dyn FnMut(RecvMeta, &[u8]),
    ) -> io::Result<RecvOutcome> {
        let mut out = RecvOutcome::default();
        let deadline = Instant::now() + timeout;
        loop {
            self.scan(max, on_packet, &mut out);
            let now = Instant::now();
            if out.packets > 0 || out.errors > 0 || now >= deadline {
                return Ok(out);
            }
            // No readiness API in std: nap briefly and look again.
            std::thread::sleep((deadline - now).min(Duration::from_micros(50)));
        }
    }
}
