//! How packets leave and arrive, behind one trait, so the data paths (sockets with
//! sendmmsg/recvmmsg, std sockets, AF_XDP — one UMEM, the client "sockets" becoming source
//! address/port pairs written into frames) share the pacing, matching and statistics.
//!
//! A transport owns the clients of one thread. Client `i` of a transport always sends from the
//! same source address and port, and its replies are delivered tagged with `i`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result};
use meridian::proto::HEADER_LEN;
use socket2::{Domain, Protocol, Socket, Type};

#[cfg(target_os = "linux")]
pub mod mmsg;
pub mod std_udp;
#[cfg(target_os = "linux")]
pub mod xdp;

use crate::cli::{SourceRange, TransportKind, XdpSettings};

/// A request on the wire.
pub type Payload = [u8; HEADER_LEN];

/// Receive buffer per datagram: larger than any NTP packet meridian accepts, so an oversized
/// reply is seen as too long rather than silently truncated to look valid.
pub const RECV_BUF: usize = 2048;

/// What is known about a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// The client (index within this transport) it arrived on.
    pub client: u32,
    /// Receive time, realtime nanoseconds.
    pub rx_ns: i64,
    /// `rx_ns` was stamped by the kernel (else read in user space after the receive call).
    pub kernel_stamp: bool,
}

/// Counts from one [`Transport::recv`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvOutcome {
    pub packets: usize,
    /// Receive errors (ICMP port unreachable on a connected socket, ...).
    pub errors: u64,
}

/// The data path of one thread's clients.
pub trait Transport: Send {
    /// Short name for reports.
    fn name(&self) -> &'static str;

    /// Number of clients.
    fn clients(&self) -> usize;

    /// Most datagrams one `send` or `recv` call handles.
    fn batch(&self) -> usize;

    /// The source address of each client, in client order.
    fn source_ips(&self) -> Vec<IpAddr>;

    /// Sends `payloads` from client `client` to the target; returns how many were accepted
    /// (fewer when the kernel's buffer is full). Never blocks.
    fn send(&mut self, client: usize, payloads: &[Payload]) -> io::Result<usize>;

    /// Waits at most `timeout` for a reply on any client (zero: just poll), then delivers up
    /// to `max` datagrams to `on_packet`.
    fn recv(
        &mut self,
        timeout: Duration,
        max: usize,
        on_packet: &mut dyn FnMut(RecvMeta, &[u8]),
    ) -> io::Result<RecvOutcome>;
}

/// Opens `count` UDP sockets connected to `target`, client `i` bound to `sources.nth(first +
/// i)` (or the unspecified address) on an ephemeral port, non-blocking, with large buffers.
pub fn open_sockets(
    target: SocketAddr,
    sources: Option<&SourceRange>,
    first: usize,
    count: usize,
) -> Result<Vec<Socket>> {
    (0..count)
        .map(|i| {
            let sock = Socket::new(
                Domain::for_address(target),
                Type::DGRAM,
                Some(Protocol::UDP),
            )
            .context("socket")?;
            let ip = match sources {
                Some(s) => s.nth(first + i),
                None if target.is_ipv4() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            let local = SocketAddr::new(ip, 0);
            sock.bind(&local.into())
                .with_context(|| format!("bind {local} (does the address exist here?)"))?;
            // Best effort: bigger buffers absorb bursts of replies while the thread sends.
            let _ = sock.set_recv_buffer_size(4 << 20);
            let _ = sock.set_send_buffer_size(1 << 20);
            sock.connect(&target.into())
                .with_context(|| format!("connect {target}"))?;
            sock.set_nonblocking(true).context("O_NONBLOCK")?;
            Ok(sock)
        })
        .collect()
}

/// Builds the transport of one thread (`xdp` is required for [`TransportKind::Xdp`]).
pub fn open(
    kind: TransportKind,
    xdp: Option<&XdpSettings>,
    target: SocketAddr,
    sources: Option<&SourceRange>,
    first: usize,
    count: usize,
    batch: usize,
) -> Result<Box<dyn Transport>> {
    if kind == TransportKind::Xdp {
        #[cfg(target_os = "linux")]
        {
            let xdp = xdp.context("--transport xdp needs --interface")?;
            return Ok(Box::new(xdp::XdpTransport::new(
                xdp, target, sources, first, count, batch,
            )?));
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = xdp;
            anyhow::bail!("the xdp transport needs Linux");
        }
    }
    let socks = open_sockets(target, sources, first, count)?;
    match kind {
        #[cfg(target_os = "linux")]
        TransportKind::Auto | TransportKind::Mmsg => {
            Ok(Box::new(mmsg::MmsgTransport::new(socks, batch)?))
        }
        #[cfg(not(target_os = "linux"))]
        TransportKind::Mmsg => anyhow::bail!("the mmsg transport needs Linux"),
        #[cfg(not(target_os = "linux"))]
        TransportKind::Auto => Ok(Box::new(std_udp::StdTransport::new(
            socks.into_iter().map(UdpSocket::from).collect(),
            batch,
        ))),
        TransportKind::Std => Ok(Box::new(std_udp::StdTransport::new(
            socks.into_iter().map(UdpSocket::from).collect(),
            batch,
        ))),
        TransportKind::Xdp => unreachable!("handled above"),
    }
}

/// Releases what a transport keeps between runs (the AF_XDP socket and its program).
pub fn close_all() {
    #[cfg(target_os = "linux")]
    xdp::close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Every transport echoes through a loopback socket with the client index intact.
    fn roundtrip(kind: TransportKind) {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Bounds for a hang only: the datagrams are already on their way.
        echo.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let target = echo.local_addr().unwrap();
        let mut t = open(kind, None, target, None, 0, 3, 8).unwrap();
        assert_eq!(t.clients(), 3);
        let mut p = [0u8; HEADER_LEN];
        p[0] = 0x23;
        for c in 0..3 {
            p[47] = c as u8;
            assert_eq!(t.send(c, &[p, p]).unwrap(), 2);
        }
        for _ in 0..6 {
            let mut buf = [0u8; 64];
            let (n, from) = echo.recv_from(&mut buf).unwrap();
            echo.send_to(&buf[..n], from).unwrap();
        }
        let mut got = vec![];
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < 6 && Instant::now() < deadline {
            t.recv(Duration::from_millis(50), 16, &mut |m, d| {
                got.push((m.client, d[47], d.len(), m.rx_ns > 0));
            })
            .unwrap();
        }
        got.sort();
        assert_eq!(got.len(), 6, "{got:?}");
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.0 as usize, i / 2);
            assert_eq!(g.1 as usize, i / 2);
            assert_eq!(g.2, HEADER_LEN);
            assert!(g.3);
        }
        // Nothing more: a zero-timeout poll returns with nothing (the bound is for a call that
        // waits, not a speed: a busy machine may take a while to run it).
        let started = Instant::now();
        let out = t
            .recv(Duration::ZERO, 16, &mut |_, _| panic!("no more"))
            .unwrap();
        assert_eq!(out.packets, 0);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn std_transport_roundtrip() {
        roundtrip(TransportKind::Std);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn mmsg_transport_roundtrip() {
        roundtrip(TransportKind::Mmsg);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn mmsg_waits_for_the_timeout() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut t = open(
            TransportKind::Mmsg,
            None,
            echo.local_addr().unwrap(),
            None,
            0,
            1,
            8,
        )
        .unwrap();
        let started = Instant::now();
        let out = t
            .recv(Duration::from_millis(30), 16, &mut |_, _| {})
            .unwrap();
        assert_eq!(out.packets, 0);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(29), "{waited:?}");
    }
}
