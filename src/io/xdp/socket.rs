//! One AF_XDP socket bound to one RX queue: its UMEM, its four rings, and the bind (zero-copy
//! first, copy mode when the driver refuses; retried on EBUSY while a previous owner of the
//! queue is still being torn down).

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::ring::{Ring, RingLayout};
use super::umem::Umem;

/// Entries per ring (fill, completion, RX, TX).
pub const RING_SIZE: u32 = 2048;
/// UMEM frames per socket: a full fill ring plus as many again in flight (RX ring, TX ring,
/// completions not yet reaped).
pub const FRAMES: u32 = 2 * RING_SIZE;
/// How long a queue still held by an exiting owner (EBUSY) is waited for.
pub const BUSY_GRACE: Duration = Duration::from_secs(3);

/// How the socket was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    ZeroCopy,
    Copy,
}

/// What to bind.
#[derive(Clone, Copy, Debug)]
pub struct BindTarget<'a> {
    pub ifname: &'a str,
    pub ifindex: u32,
    pub queue: u32,
    /// Try zero-copy first (false: copy mode only, e.g. after the driver refused it once).
    pub try_zero_copy: bool,
}

/// A bound AF_XDP socket. Field order is drop order: the rings are unmapped before the socket
/// closes, and the UMEM (which the kernel may still reference until the close) goes last.
pub struct Xsk {
    pub(super) fill: Ring<u64>,
    pub(super) comp: Ring<u64>,
    pub(super) rx: Ring<libc::xdp_desc>,
    pub(super) tx: Ring<libc::xdp_desc>,
    fd: OwnedFd,
    pub(super) umem: Umem,
    pub mode: BindMode,
    /// TX metadata (completion timestamps) is on.
    pub tx_metadata: bool,
    pub queue: u32,
}

/// Why a socket could not be set up: the step and the errno.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct XskError {
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

impl XskError {
    fn last(step: &'static str) -> XskError {
        XskError {
            step,
            source: io::Error::last_os_error(),
        }
    }

    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

fn setsockopt<T>(fd: RawFd, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised T whose size is passed with it; the kernel only
    // reads it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Xsk {
    /// Creates, maps and binds a socket for `target`. Zero-copy is tried first when asked; a
    /// refusal falls back to copy mode (the caller logs it, once per interface). EBUSY (the
    /// queue still held by a socket being torn down) is retried for [`BUSY_GRACE`].
    pub fn open(target: BindTarget<'_>) -> Result<Xsk, XskError> {
        let deadline = Instant::now() + BUSY_GRACE;
        let mut warned = false;
        let mut zero_copy = target.try_zero_copy;
        loop {
            let mode = if zero_copy {
                BindMode::ZeroCopy
            } else {
                BindMode::Copy
            };
            match Self::open_once(target, mode) {
                Ok(x) => return Ok(x),
                Err(e)
                    if e.step == "bind"
                        && mode == BindMode::ZeroCopy
                        && e.errno() != Some(libc::EBUSY) =>
                {
                    tracing::debug!(
                        interface = target.ifname,
                        queue = target.queue,
                        "zero-copy bind refused ({})",
                        e.source
                    );
                    zero_copy = false;
                }
                Err(e) if e.errno() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    if !warned {
                        tracing::info!(
                            interface = target.ifname,
                            queue = target.queue,
                            "xdp: queue busy (a previous socket is still being released); \
                             retrying for up to {} s",
                            BUSY_GRACE.as_secs()
                        );
                        warned = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn open_once(target: BindTarget<'_>, mode: BindMode) -> Result<Xsk, XskError> {
        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(XskError::last("socket(AF_XDP)"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Umem::new(FRAMES).map_err(|source| XskError {
            step: "mmap UMEM",
            source,
        })?;
        // TX metadata (completion timestamps) when the kernel knows it (6.8+; the flag 6.11+).
        let tx_metadata = match setsockopt(raw, libc::XDP_UMEM_REG, &umem.registration(true)) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                setsockopt(raw, libc::XDP_UMEM_REG, &umem.registration(false)).map_err(
                    |source| XskError {
                        step: "XDP_UMEM_REG",
                        source,
                    },
                )?;
                false
            }
            Err(source) => {
                return Err(XskError {
                    step: "XDP_UMEM_REG",
                    source,
                })
            }
        };
        for (name, step) in [
            (libc::XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"),
            (libc::XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"),
            (libc::XDP_RX_RING, "XDP_RX_RING"),
            (libc::XDP_TX_RING, "XDP_TX_RING"),
        ] {
            setsockopt(raw, name, &RING_SIZE).map_err(|source| XskError { step, source })?;
        }
        // SAFETY: all-zero is a valid xdp_mmap_offsets (plain integers).
        let mut offs: libc::xdp_mmap_offsets = unsafe { zeroed() };
        let mut len = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `offs` is writable for `len` bytes; the kernel writes at most that and
        // updates `len`.
        let r = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut offs as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(XskError::last("XDP_MMAP_OFFSETS"));
        }
        if (len as usize) < size_of::<libc::xdp_mmap_offsets>() {
            return Err(XskError {
                step: "XDP_MMAP_OFFSETS",
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "kernel without ring flags (before 5.4)",
                ),
            });
        }
        let step = |step: &'static str| move |source| XskError { step, source };
        let fill = Ring::map(
            raw,
            RingLayout::from(offs.fr),
            RING_SIZE,
            libc::XDP_UMEM_PGOFF_FILL_RING as i64,
        )
        .map_err(step("mmap fill ring"))?;
        let comp = Ring::map(
            raw,
            RingLayout::from(offs.cr),
            RING_SIZE,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64,
        )
        .map_err(step("mmap completion ring"))?;
        let rx = Ring::map(
            raw,
            RingLayout::from(offs.rx),
            RING_SIZE,
            libc::XDP_PGOFF_RX_RING,
        )
        .map_err(step("mmap RX ring"))?;
        let tx = Ring::map(
            raw,
            RingLayout::from(offs.tx),
            RING_SIZE,
            libc::XDP_PGOFF_TX_RING,
        )
        .map_err(step("mmap TX ring"))?;

        // SAFETY: all-zero is a valid sockaddr_xdp; the fields are set below.
        let mut sa: libc::sockaddr_xdp = unsafe { zeroed() };
        sa.sxdp_family = libc::AF_XDP as u16;
        sa.sxdp_flags = libc::XDP_USE_NEED_WAKEUP
            | match mode {
                BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
                BindMode::Copy => libc::XDP_COPY,
            };
        sa.sxdp_ifindex = target.ifindex;
        sa.sxdp_queue_id = target.queue;
        // SAFETY: `sa` is a valid sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(XskError::last("bind"));
        }
        Ok(Xsk {
            fill,
            comp,
            rx,
            tx,
            fd,
            umem,
            mode,
            tx_metadata,
            queue: target.queue,
        })
    }

    /// Asks the kernel to transmit what the TX ring holds (copy mode transmits only in this
    /// call; zero-copy drivers are kicked by it). Returns the errno when it failed.
    pub fn kick_tx(&self) -> Option<i32> {
        // SAFETY: sendto with no buffer and no address on our own socket; MSG_DONTWAIT makes
        // it return at once.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            io::Error::last_os_error().raw_os_error()
        } else {
            None
        }
    }

    /// Waits up to `timeout_ms` for received frames (poll also services the fill ring's
    /// wakeup and, in copy mode, pending transmits).
    pub fn wait(&self, timeout_ms: i32) -> io::Result<()> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, as the count says.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The kernel's drop statistics for this socket (XDP_STATISTICS), when available.
    pub fn statistics(&self) -> Option<libc::xdp_statistics> {
        // SAFETY: all-zero is a valid xdp_statistics (plain integers).
        let mut st: libc::xdp_statistics = unsafe { zeroed() };
        let mut len = size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes; the kernel writes at most that.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(st)
    }
}

impl AsFd for Xsk {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
