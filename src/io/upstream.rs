//! Sockets to upstream NTP servers, for the discipline thread: one UDP socket per source, bound
//! to a random ephemeral port (port 0) and connected to the source, so the kernel drops
//! datagrams from anyone else and a new source port is used for each source (RFC 9109).
//!
//! * Linux (the `linux_io` cfg): `recvmsg` with a control buffer; the kernel's software receive
//!   timestamp (SO_TIMESTAMPING, parsed by `cmsg::parse`) is the reply's t4.
//! * Elsewhere (and with `--cfg meridian_portable`): std sockets and user-space stamps.
//!
//! Send times are read from the raw clock just before `send` (user space).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::clock::{RawStamp, TimestampQuality};
use crate::sys;

/// One connected upstream socket.
pub struct UpstreamSocket {
    inner: imp::Inner,
    peer: SocketAddr,
    stamping: TimestampQuality,
}

impl UpstreamSocket {
    /// A socket of `peer`'s family bound to an ephemeral port of the wildcard address and
    /// connected to `peer`, with the best receive timestamps available. Non-blocking.
    pub fn connect(peer: SocketAddr) -> std::io::Result<UpstreamSocket> {
        let (inner, stamping) = imp::Inner::connect(peer)?;
        Ok(UpstreamSocket {
            inner,
            peer,
            stamping,
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Where receive timestamps come from.
    pub fn stamping(&self) -> TimestampQuality {
        self.stamping
    }

    /// The local address (ephemeral port) of the socket.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Sends one datagram; returns the raw clock read just before the send.
    pub fn send(&self, datagram: &[u8]) -> std::io::Result<RawStamp> {
        let raw = sys::clock::now();
        self.inner.send(datagram)?;
        Ok(RawStamp {
            raw,
            quality: TimestampQuality::User,
        })
    }

    /// Takes one queued datagram without waiting: its length (a datagram longer than `buf` is
    /// reported with length `buf.len()`) and receive stamp. `Ok(None)` when nothing is queued.
    /// An ICMP error from the peer (port unreachable) comes back as an `Err`.
    pub fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<Option<(usize, RawStamp)>> {
        self.inner.try_recv(buf)
    }

    /// Waits up to `timeout` for one datagram.
    pub fn recv(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> std::io::Result<Option<(usize, RawStamp)>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(got) = self.try_recv(buf)? {
                return Ok(Some(got));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            wait_readable(&[self], left)?;
        }
    }
}

/// Waits until at least one of `sockets` has a datagram (or an error) queued, or `timeout`
/// passes. Returns which are readable (all false on timeout). With no sockets it sleeps.
pub fn wait_readable(sockets: &[&UpstreamSocket], timeout: Duration) -> std::io::Result<Vec<bool>> {
    imp::wait_readable(sockets, timeout)
}

#[cfg(linux_io)]
mod imp {
    use std::mem::{size_of, zeroed};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use socket2::{Domain, Protocol, Socket, Type};

    use super::UpstreamSocket;
    use crate::clock::{RawStamp, TimestampQuality};
    use crate::io::cmsg;
    use crate::io::udp::linux::{setsockopt_int, TIMESTAMPING_RX_SOFTWARE};
    use crate::sys;

    /// Control buffer: one SCM_TIMESTAMPING (3 timespecs) with room to spare.
    const CTRL: usize = 128;

    #[repr(C, align(8))]
    struct Ctrl([u8; CTRL]);

    pub struct Inner {
        sock: Socket,
    }

    impl Inner {
        pub fn connect(peer: SocketAddr) -> std::io::Result<(Inner, TimestampQuality)> {
            let sock = Socket::new(Domain::for_address(peer), Type::DGRAM, Some(Protocol::UDP))?;
            let local: SocketAddr = if peer.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            sock.bind(&local.into())?;
            sock.connect(&peer.into())?;
            sock.set_nonblocking(true)?;
            let stamping = if setsockopt_int(
                &sock,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPING,
                TIMESTAMPING_RX_SOFTWARE as i32,
            )
            .is_ok()
            {
                TimestampQuality::Kernel
            } else {
                TimestampQuality::User
            };
            Ok((Inner { sock }, stamping))
        }

        pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
            self.sock
                .local_addr()?
                .as_socket()
                .ok_or_else(|| std::io::Error::other("not an IP socket"))
        }

        pub fn send(&self, datagram: &[u8]) -> std::io::Result<()> {
            self.sock.send(datagram).map(|_| ())
        }

        pub fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<Option<(usize, RawStamp)>> {
            let mut ctrl = Ctrl([0u8; CTRL]);
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: msghdr is a plain C struct; all-zero is a valid empty value, filled below.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctrl.0.as_mut_ptr().cast();
            msg.msg_controllen = CTRL;
            let n = loop {
                // SAFETY: the fd is our live socket; `msg` points at `iov` (describing `buf`)
                // and at `ctrl`, both alive for the call, with their true lengths. The kernel
                // writes at most that much. MSG_DONTWAIT: never blocks.
                let n =
                    unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
                if n >= 0 {
                    break n as usize;
                }
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::Interrupted => continue,
                    std::io::ErrorKind::WouldBlock => return Ok(None),
                    _ => return Err(e),
                }
            };
            let user = sys::clock::now();
            let len = if msg.msg_flags & libc::MSG_TRUNC != 0 {
                buf.len()
            } else {
                n.min(buf.len())
            };
            let ctrl_len = msg.msg_controllen.min(CTRL);
            let stamp = match cmsg::parse(&ctrl.0[..ctrl_len]).software {
                Some(raw) => RawStamp {
                    raw,
                    quality: TimestampQuality::Kernel,
                },
                None => RawStamp {
                    raw: user,
                    quality: TimestampQuality::User,
                },
            };
            Ok(Some((len, stamp)))
        }
    }

    pub fn wait_readable(
        sockets: &[&UpstreamSocket],
        timeout: Duration,
    ) -> std::io::Result<Vec<bool>> {
        let mut pfds: Vec<libc::pollfd> = sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.inner.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `pfds` is a live array of `pfds.len()` pollfd structs the kernel may write
        // `revents` into; a zero-length array with a null-free pointer is also valid.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(vec![false; sockets.len()]);
            }
            return Err(e);
        }
        Ok(pfds
            .iter()
            .map(|p| p.revents & (libc::POLLIN | libc::POLLERR) != 0)
            .collect())
    }

    const _: () = assert!(size_of::<Ctrl>() == CTRL);
}

#[cfg(not(linux_io))]
mod imp {
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    use super::UpstreamSocket;
    use crate::clock::{RawStamp, TimestampQuality};
    use crate::sys;

    pub struct Inner {
        sock: UdpSocket,
    }

    impl Inner {
        pub fn connect(peer: SocketAddr) -> std::io::Result<(Inner, TimestampQuality)> {
            let local: SocketAddr = if peer.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(local)?;
            sock.connect(peer)?;
            sock.set_nonblocking(true)?;
            Ok((Inner { sock }, TimestampQuality::User))
        }

        pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
            self.sock.local_addr()
        }

        pub fn send(&self, datagram: &[u8]) -> std::io::Result<()> {
            self.sock.send(datagram).map(|_| ())
        }

        pub fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<Option<(usize, RawStamp)>> {
            match self.sock.recv(buf) {
                Ok(n) => Ok(Some((
                    n,
                    RawStamp {
                        raw: sys::clock::now(),
                        quality: TimestampQuality::User,
                    },
                ))),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            }
        }
    }

    /// Without poll(2) here: sleep a millisecond (or the timeout, if shorter) and report every
    /// socket as possibly readable; the caller's `try_recv` sorts it out.
    pub fn wait_readable(
        sockets: &[&UpstreamSocket],
        timeout: Duration,
    ) -> std::io::Result<Vec<bool>> {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
        Ok(vec![true; sockets.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn connected_socket_gets_replies_with_stamps_and_ignores_strangers() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = UpstreamSocket::connect(server.local_addr().unwrap()).unwrap();
        let local = s.local_addr().unwrap();
        assert_ne!(local.port(), 0);
        let sent = s.send(b"hello").unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        // A datagram from someone else never reaches a connected socket.
        stranger.send_to(b"spoof", from).unwrap();
        server.send_to(b"reply", from).unwrap();
        let (n, stamp) = s.recv(&mut buf, Duration::from_secs(2)).unwrap().unwrap();
        assert_eq!(&buf[..n], b"reply");
        assert!(stamp.raw.nanos_since(sent.raw) >= 0);
        assert!(stamp.raw.nanos_since(sent.raw) < 1_000_000_000);
        assert_eq!(s.recv(&mut buf, Duration::from_millis(50)).unwrap(), None);
        #[cfg(linux_io)]
        {
            assert_eq!(s.stamping(), TimestampQuality::Kernel);
            // The kernel switches receive timestamping on from a work queue when a socket asks
            // for it (and off when the last such socket closes, which tests running in
            // parallel do), so the first reply may still be stamped in user space. While this
            // socket lives, the kernel stamps every datagram once the switch is done.
            let mut quality = stamp.quality;
            for _ in 0..50 {
                if quality == TimestampQuality::Kernel {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
                server.send_to(b"again", from).unwrap();
                let (_, st) = s.recv(&mut buf, Duration::from_secs(2)).unwrap().unwrap();
                quality = st.quality;
            }
            assert_eq!(quality, TimestampQuality::Kernel);
        }
    }

    #[test]
    fn oversized_datagrams_are_reported_full_length() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = UpstreamSocket::connect(server.local_addr().unwrap()).unwrap();
        s.send(b"x").unwrap();
        let mut buf = [0u8; 64];
        let (_, from) = server.recv_from(&mut buf).unwrap();
        server.send_to(&[7u8; 100], from).unwrap();
        let mut small = [0u8; 10];
        let (n, _) = s.recv(&mut small, Duration::from_secs(2)).unwrap().unwrap();
        assert_eq!(n, 10);
    }

    #[test]
    fn wait_readable_times_out_and_sees_data() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UpstreamSocket::connect(server.local_addr().unwrap()).unwrap();
        let b = UpstreamSocket::connect(server.local_addr().unwrap()).unwrap();
        let t = Instant::now();
        let r = wait_readable(&[&a, &b], Duration::from_millis(30)).unwrap();
        #[cfg(linux_io)]
        {
            assert_eq!(r, vec![false, false]);
            assert!(t.elapsed() >= Duration::from_millis(25));
        }
        let _ = (r, t);
        b.send(b"x").unwrap();
        let mut buf = [0u8; 8];
        let (_, from) = server.recv_from(&mut buf).unwrap();
        server.send_to(b"y", from).unwrap();
        let r = wait_readable(&[&a, &b], Duration::from_secs(2)).unwrap();
        assert!(r[1]);
    }
}
