//! Linux: connected UDP sockets, sendmmsg/recvmmsg batches, epoll readiness with a
//! nanosecond timeout (epoll_pwait2), and SO_TIMESTAMPNS kernel receive timestamps.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::Socket;

use super::{Payload, RecvMeta, RecvOutcome, Transport, RECV_BUF};
use crate::sys::realtime;

/// Control buffer per datagram: room for one SCM_TIMESTAMPNS (a timespec) and some slack,
/// aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Ctrl([u8; 128]);

pub struct MmsgTransport {
    socks: Vec<Socket>,
    epfd: OwnedFd,
    events: Vec<libc::epoll_event>,
    batch: usize,
    bufs: Vec<[u8; RECV_BUF]>,
    ctrl: Vec<Ctrl>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// epoll_pwait2 is available (Linux ≥ 5.11); otherwise epoll_wait with millisecond
    /// timeouts rounded up.
    pwait2: bool,
}

// SAFETY: the raw pointers inside `iovs`/`hdrs` are scratch space rebuilt on every call and
// only ever point into this struct's own buffers; nothing is shared between threads.
unsafe impl Send for MmsgTransport {}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct of integers and pointers; all-zero is a valid value
    // (null pointers, zero lengths).
    unsafe { std::mem::zeroed() }
}

impl MmsgTransport {
    pub fn new(socks: Vec<Socket>, batch: usize) -> Result<MmsgTransport> {
        // SAFETY: epoll_create1 takes a flag word and returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("epoll_create1");
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        for (i, s) in socks.iter().enumerate() {
            set_timestampns(s.as_raw_fd()).context("SO_TIMESTAMPNS")?;
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both descriptors are open; `ev` is a valid epoll_event for the call.
            let r = unsafe {
                libc::epoll_ctl(
                    epfd.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    s.as_raw_fd(),
                    &mut ev,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error()).context("epoll_ctl");
            }
        }
        let n = socks.len().clamp(1, 1024);
        Ok(MmsgTransport {
            events: vec![libc::epoll_event { events: 0, u64: 0 }; n],
            socks,
            epfd,
            batch,
            bufs: vec![[0u8; RECV_BUF]; batch],
            ctrl: vec![Ctrl([0; 128]); batch],
            iovs: Vec::with_capacity(batch),
            hdrs: Vec::with_capacity(batch),
            pwait2: true,
        })
    }

    /// Waits for readiness; returns the number of ready events in `self.events`.
    fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        let fd = self.epfd.as_raw_fd();
        let max = self.events.len() as libc::c_int;
        loop {
            let r = if self.pwait2 {
                let ts = libc::timespec {
                    tv_sec: timeout.as_secs() as libc::time_t,
                    tv_nsec: timeout.subsec_nanos() as libc::c_long,
                };
                // SAFETY: epoll_pwait2(epfd, events, maxevents, timeout, sigmask, sigsetsize):
                // `events` has room for `max` entries, `ts` lives across the call, a null
                // sigmask means "do not change the mask".
                unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait2,
                        fd,
                        self.events.as_mut_ptr(),
                        max,
                        &ts as *const libc::timespec,
                        std::ptr::null::<libc::sigset_t>(),
                        0usize,
                    ) as libc::c_int
                }
            } else {
                let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
                // SAFETY: `events` has room for `max` entries.
                unsafe { libc::epoll_wait(fd, self.events.as_mut_ptr(), max, ms) }
            };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => return Ok(0),
                Some(libc::ENOSYS) if self.pwait2 => self.pwait2 = false,
                _ => return Err(e),
            }
        }
    }

    /// One recvmmsg on client `client`'s socket; returns datagrams delivered.
    fn recv_one(
        &mut self,
        client: usize,
        max: usize,
        on_packet: &mut dyn FnMut(RecvMeta, &[u8]),
    ) -> io::Result<usize> {
        let n = max.min(self.batch);
        if n == 0 {
            return Ok(0);
        }
        self.iovs.clear();
        for b in &mut self.bufs[..n] {
            self.iovs.push(libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: RECV_BUF,
            });
        }
        self.hdrs.clear();
        for i in 0..n {
            let mut h = zeroed_mmsghdr();
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.ctrl[i].0.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = std::mem::size_of::<Ctrl>() as _;
            self.hdrs.push(h);
        }
        let fd = self.socks[client].as_raw_fd();
        // SAFETY: `hdrs[..n]` describe `n` valid iovecs and control buffers owned by `self`
        // that outlive the call; MSG_DONTWAIT makes it non-blocking.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let user_now = realtime().0;
        for i in 0..r as usize {
            let h = &self.hdrs[i];
            let len = (h.msg_len as usize).min(RECV_BUF);
            // The kernel's receive stamp, read by the server's own control-message parser.
            let ctrl_len = h.msg_hdr.msg_controllen.min(std::mem::size_of::<Ctrl>());
            let stamp = meridian::io::cmsg::parse(&self.ctrl[i].0[..ctrl_len])
                .software
                .map(|t| t.0);
            let meta = RecvMeta {
                client: client as u32,
                rx_ns: stamp.unwrap_or(user_now),
                kernel_stamp: stamp.is_some(),
            };
            on_packet(meta, &self.bufs[i][..len]);
        }
        Ok(r as usize)
    }
}

fn set_timestampns(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a c_int living across the call, and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Transport for MmsgTransport {
    fn name(&self) -> &'static str {
        "mmsg"
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
            .filter_map(|s| s.local_addr().ok()?.as_socket())
            .map(|a| a.ip())
            .collect()
    }

    fn send(&mut self, client: usize, payloads: &[Payload]) -> io::Result<usize> {
        let n = payloads.len().min(self.batch);
        if n == 0 {
            return Ok(0);
        }
        self.iovs.clear();
        for p in &payloads[..n] {
            self.iovs.push(libc::iovec {
                // sendmmsg only reads through this pointer.
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            });
        }
        self.hdrs.clear();
        for i in 0..n {
            let mut h = zeroed_mmsghdr();
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        let fd = self.socks[client].as_raw_fd();
        // SAFETY: `hdrs[..n]` each describe one iovec pointing into `payloads`, which outlives
        // the call; the socket is connected, so no address is needed.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Ok(r as usize)
    }

    fn recv(
        &mut self,
        timeout: Duration,
        max: usize,
        on_packet: &mut dyn FnMut(RecvMeta, &[u8]),
    ) -> io::Result<RecvOutcome> {
        let mut out = RecvOutcome::default();
        let ready = self.wait(timeout)?;
        for e in 0..ready {
            let client = self.events[e].u64 as usize;
            if out.packets >= max {
                break;
            }
            match self.recv_one(client, max - out.packets, on_packet) {
                Ok(n) => out.packets += n,
                // ICMP errors (port unreachable, ...) surface on the connected socket.
                Err(_) => out.errors += 1,
            }
        }
        Ok(out)
    }
}
