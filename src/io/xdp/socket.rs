//! One AF_XDP socket bound to one RX queue: its UMEM, its four rings, and the bind (zero-copy
//! first, copy mode when the driver refuses; retried on EBUSY while a previous owner of the
//! queue is still being torn down).
//!
//! # Public API (for other crates, e.g. the load generator)
//!
//! [`Xsk::open`] binds a socket; [`super::XskBinding`] also attaches an XDP program that
//! redirects to it. Every UMEM frame is at any moment either in the socket's *pool* (owned by
//! user space, not on any ring) or lent to the kernel (fill, RX, TX or completion ring). The
//! safe methods only ever touch the bytes of pool frames or of frames just taken off the RX
//! ring, so a caller cannot race the kernel:
//!
//! * [`Xsk::queue_tx`] takes up to `max` pool frames, lets a closure write each frame's bytes
//!   (at [`TX_OFFSET`] in the frame) and return its length, and publishes the frames on the TX
//!   ring; [`Xsk::flush_tx`] kicks the kernel (`sendto`, repeated while copy mode leaves
//!   descriptors behind), so several batches can leave with one system call;
//!   [`Xsk::transmit`] does both;
//! * [`Xsk::reap_completions`] moves transmitted frames back to the pool (`transmit` does it
//!   first itself);
//! * [`Xsk::refill`] lends pool frames to the fill ring (keeping some back for transmitting);
//! * [`Xsk::receive`] hands each received frame's bytes and its XDP metadata
//!   ([`meridian_bpf::RxMeta`], when the program wrote one) to a closure, releases the RX
//!   descriptors and puts the frames back in the pool;
//! * [`Xsk::wait`] / [`Xsk::wait_for`] sleep in poll(2) until something is received.
//!
//! The server backend (`super::XdpWorker`) takes the whole pool at start and drives the rings
//! itself (it answers in the received frame), through crate-private fields.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use meridian_bpf::RxMeta;

use super::ring::{Ring, RingLayout};
use super::umem::{Umem, FRAME_SIZE};

/// Entries per ring (fill, completion, RX, TX).
pub const RING_SIZE: u32 = 2048;
/// UMEM frames per socket: a full fill ring plus as many again in flight (RX ring, TX ring,
/// completions not yet reaped).
pub const FRAMES: u32 = 2 * RING_SIZE;
/// How long a queue still held by an exiting owner (EBUSY) is waited for.
pub const BUSY_GRACE: Duration = Duration::from_secs(3);
/// Where [`Xsk::transmit`] puts a frame's first byte inside its UMEM frame: the same headroom
/// the kernel leaves in front of received frames (XDP_PACKET_HEADROOM).
pub const TX_OFFSET: usize = 256;
/// The longest frame [`Xsk::transmit`] can send.
pub const MAX_TX_LEN: usize = FRAME_SIZE as usize - TX_OFFSET;
/// The most `sendto` kicks one [`Xsk::transmit`] makes (copy mode sends 32 frames per call).
const MAX_KICKS: usize = 64;

/// How the socket was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// The driver DMAs into the UMEM (`XDP_ZEROCOPY`).
    ZeroCopy,
    /// The kernel copies frames between its buffers and the UMEM (`XDP_COPY`; veth, generic
    /// XDP).
    Copy,
}

/// What to bind.
#[derive(Clone, Copy, Debug)]
pub struct BindTarget<'a> {
    /// Interface name (for messages).
    pub ifname: &'a str,
    /// Its index (`meridian_bpf::ifindex`).
    pub ifindex: u32,
    /// The RX/TX queue.
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
    /// Base addresses of the frames owned by user space and on no ring (see the module docs).
    pub(super) pool: Vec<u64>,
    /// How the socket was bound.
    pub mode: BindMode,
    /// TX metadata (completion timestamps) is on.
    pub tx_metadata: bool,
    /// The queue it is bound to.
    pub queue: u32,
}

/// One received frame, as [`Xsk::receive`] shows it.
#[derive(Clone, Copy, Debug)]
pub struct RxFrame<'a> {
    /// The frame, from its Ethernet header on.
    pub data: &'a [u8],
    /// The metadata the XDP program wrote in front of it, when it looks valid.
    pub meta: Option<RxMeta>,
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
    pub(super) fn last(step: &'static str) -> XskError {
        XskError {
            step,
            source: io::Error::last_os_error(),
        }
    }

    /// The errno of the failed step.
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
        let pool = (0..umem.frames())
            .rev()
            .map(|i| u64::from(i) * u64::from(FRAME_SIZE))
            .collect();
        Ok(Xsk {
            fill,
            comp,
            rx,
            tx,
            fd,
            umem,
            pool,
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

impl Xsk {
    /// UMEM frames of this socket.
    pub fn frame_count(&self) -> u32 {
        self.umem.frames()
    }

    /// Frames in the pool (owned by user space, free to transmit or to lend to the fill ring).
    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    /// Waits up to `timeout` (nanosecond resolution, ppoll(2)) for received frames.
    pub fn wait_for(&self, timeout: Duration) -> io::Result<()> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one live pollfd, as the count says; `ts` lives across the call; a null
        // sigmask leaves the signal mask alone.
        let r = unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Moves the frames the kernel has finished transmitting back to the pool; returns how
    /// many.
    pub fn reap_completions(&mut self) -> u32 {
        let n = self.comp.available(RING_SIZE);
        for i in 0..n {
            self.pool.push(Umem::frame_base(self.comp.read(i)));
        }
        self.comp.release(n);
        n
    }

    /// Lends pool frames to the fill ring (where received frames land), leaving at least
    /// `keep` in the pool; returns how many were lent. A socket receives nothing until this
    /// has been called.
    pub fn refill(&mut self, keep: usize) -> u32 {
        let spare = self.pool.len().saturating_sub(keep);
        let n = self.fill.free(spare.min(RING_SIZE as usize) as u32);
        for i in 0..n {
            let addr = self.pool.pop().expect("n <= pool.len()");
            self.fill.write(i, addr);
        }
        self.fill.submit(n);
        n
    }

    /// [`Xsk::queue_tx`], then [`Xsk::flush_tx`]. Returns how many frames were queued, or
    /// the kick's error (the frames stay queued and go with the next kick).
    pub fn transmit(
        &mut self,
        max: usize,
        write: impl FnMut(usize, &mut [u8]) -> Option<usize>,
    ) -> io::Result<usize> {
        let queued = self.queue_tx(max, write);
        self.flush_tx()?;
        Ok(queued)
    }

    /// Queues up to `max` frames for transmission without kicking the kernel: reaps
    /// completions, then for each pool frame (while the TX ring has room) calls `write(i, buf)`
    /// with the frame's `MAX_TX_LEN` writable bytes; `write` returns the frame's length, or
    /// `None` to stop (that frame stays in the pool). The frames are published on the TX ring;
    /// they leave at the next [`Xsk::flush_tx`] (or, with a zero-copy driver that needs no
    /// wakeup, right away). Returns how many were queued (fewer than `max` when frames or ring
    /// slots ran out).
    pub fn queue_tx(
        &mut self,
        max: usize,
        mut write: impl FnMut(usize, &mut [u8]) -> Option<usize>,
    ) -> usize {
        self.reap_completions();
        let want = max.min(self.pool.len()).min(RING_SIZE as usize) as u32;
        let room = self.tx.free(want);
        let mut queued = 0u32;
        while queued < room {
            let base = *self.pool.last().expect("room <= pool.len()");
            let frame = self
                .umem
                .frame_mut(base)
                .expect("pool frames lie inside the UMEM");
            let Some(len) = write(queued as usize, &mut frame[TX_OFFSET..]) else {
                break;
            };
            let len = len.min(MAX_TX_LEN);
            self.pool.pop();
            self.tx.write(
                queued,
                libc::xdp_desc {
                    addr: base + TX_OFFSET as u64,
                    len: len as u32,
                    options: 0,
                },
            );
            queued += 1;
        }
        self.tx.submit(queued);
        queued as usize
    }

    /// Frames published on the TX ring that the kernel has not taken yet.
    pub fn tx_pending(&mut self) -> u32 {
        self.tx.unconsumed()
    }

    /// Kicks the kernel until the TX ring is drained (or it needs no wakeup), reaping
    /// completions when it reports the completion ring full.
    pub fn flush_tx(&mut self) -> io::Result<()> {
        for _ in 0..MAX_KICKS {
            if self.tx.unconsumed() == 0 || !self.tx.needs_wakeup() {
                return Ok(());
            }
            match self.kick_tx() {
                None | Some(libc::EINTR) => {}
                Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                    self.reap_completions();
                }
                Some(e) => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        Ok(())
    }

    /// Hands up to `max` received frames to `on_frame`, then releases their RX descriptors
    /// and returns the frames to the pool (call [`Xsk::refill`] to lend them out again).
    /// Returns how many frames there were.
    pub fn receive(&mut self, max: usize, mut on_frame: impl FnMut(RxFrame<'_>)) -> usize {
        let n = self.rx.available(max.min(RING_SIZE as usize) as u32);
        for i in 0..n {
            let desc = self.rx.read(i);
            let base = Umem::frame_base(desc.addr);
            let offset = (desc.addr - base) as usize;
            if let Some(frame) = self.umem.frame_mut(desc.addr) {
                let len = (desc.len as usize).min(frame.len().saturating_sub(offset));
                let meta = RxMeta::read_before(frame, offset).filter(RxMeta::is_valid);
                on_frame(RxFrame {
                    data: &frame[offset..offset + len],
                    meta,
                });
                self.pool.push(base);
            }
        }
        self.rx.release(n);
        if self.fill.needs_wakeup() {
            // Best effort: a zero-timeout poll services the fill ring's wakeup.
            let _ = self.wait(0);
        }
        n as usize
    }
}

impl AsFd for Xsk {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
