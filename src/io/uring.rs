//! The io_uring backend: one ring per worker over the worker's own SO_REUSEPORT sockets (the same
//! sockets and options as the UDP backend).
//!
//! * Receive: one multishot RecvMsg per socket over a provided buffer ring. Each completion
//!   carries the datagram, its source address and its control messages (SCM_TIMESTAMPING,
//!   PKTINFO) in one buffer, parsed by the same [`cmsg`] code as the UDP backend. When a
//!   multishot ends (ENOBUFS when buffers ran dry, or any other end) it is re-armed after the
//!   buffers of that round are back in the ring.
//! * Send: replies are written into a pool of send slots (msghdr + address + PKTINFO + bytes)
//!   and submitted as SendMsg; a slot is free again when its completion arrives. No free slot or
//!   a failed send is counted, never waited for.
//! * Transmit stamps (interleaved mode, [`crate::io::txstamps`]): a reply the worker asks about
//!   is sent with the stamp request under its key. One RecvMsg with MSG_ERRQUEUE per socket
//!   waits on the error queue (io_uring polls it for POLLERR only); its completion carries one
//!   report, and the rest are read at once with the same batched, non-blocking
//!   `recvmmsg(MSG_ERRQUEUE)` as the UDP backend's before it is re-armed.
//! * At most [`CQ_BATCH`] completions are handled per loop, and the submission queue is flushed
//!   whenever it fills, so it never overflows.
//! * Stop: the multishots are cancelled and every in-flight operation is reaped before the ring
//!   and sockets close, so a restart can bind the port at once.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

use super::cmsg;
use super::txstamps::{TxStamps, ERRQ_CTRL};
use super::udp::linux::{bind_workers, Listener};
use super::{Opened, SetupError, WorkerContext, WorkerIo};
use crate::clock::{RawStamp, TimestampQuality};
use crate::datapath::{Arrival, Worker};
use crate::proto::{DropReason, MAX_REPLY_LEN};
use crate::sys;

/// Submission queue entries per ring (the completion queue is twice this).
const SQ_ENTRIES: u32 = 1024;
/// Provided receive buffers per worker: 16 per datagram of `batch-size` (512 by default),
/// rounded up to a power of two, within these bounds.
const RX_BUFFERS_MIN: usize = 16;
const RX_BUFFERS_MAX: usize = 16384;

/// The buffer ring size for a batch size.
pub fn rx_buffers_for(batch: usize) -> u16 {
    (batch.saturating_mul(16))
        .clamp(RX_BUFFERS_MIN, RX_BUFFERS_MAX)
        .next_power_of_two() as u16
}
/// Size of one receive buffer: recvmsg_out header + name + control + payload.
const RX_BUF_LEN: usize = 2048;
/// Space reserved in each buffer for the source address and the control messages.
const NAME_LEN: usize = size_of::<libc::sockaddr_storage>();
const CTRL_LEN: usize = 128;
/// Send slots per worker.
const TX_SLOTS: usize = 512;
/// Completions handled per loop iteration.
pub const CQ_BATCH: usize = 256;
/// How long one wait for completions lasts before the stop flag is looked at.
const WAIT: Duration = Duration::from_millis(100);
/// The buffer group id of the receive buffers.
const BGID: u16 = 0;

// user_data: the kind in the top byte, an index below.
const KIND_RECV: u64 = 1 << 56;
const KIND_SEND: u64 = 2 << 56;
const KIND_CANCEL: u64 = 3 << 56;
const KIND_ERRQ: u64 = 4 << 56;
const INDEX_MASK: u64 = (1 << 56) - 1;

/// Why io_uring cannot be used here, for the `auto` fallback message and `--backend io-uring`.
pub fn probe() -> Result<(), String> {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        let v = v.trim();
        if v != "0" {
            return Err(format!(
                "io_uring is disabled (kernel.io_uring_disabled = {v})"
            ));
        }
    }
    let ring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| format!("io_uring probe failed: {e}"))?;
    for (code, name) in [
        (opcode::RecvMsgMulti::CODE, "RECVMSG"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !p.is_supported(code) {
            return Err(format!("io_uring lacks the {name} opcode"));
        }
    }
    // Multishot recvmsg and provided buffer rings: kernel 6.0.
    let release = kernel_release();
    if !release_at_least(&release, 6, 0) {
        return Err(format!(
            "kernel {release} is too old for multishot recvmsg (needs 6.0)"
        ));
    }
    let mut test = BufRing::new(8).map_err(|e| format!("buffer ring allocation: {e}"))?;
    test.register(&ring, 1)
        .map_err(|e| format!("provided buffer rings unsupported: {e}"))?;
    let _ = ring.submitter().unregister_buf_ring(1);
    Ok(())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Opens the worker sockets; each worker builds its ring with a buffer ring sized for `batch`.
/// `tx_stamps`: replies get kernel transmit stamps when the kernel can (interleaved mode).
pub fn open(
    listen: &[SocketAddr],
    workers: usize,
    batch: usize,
    tx_stamps: bool,
) -> Result<Opened, SetupError> {
    let buffers = rx_buffers_for(batch);
    let sockets = bind_workers(listen, workers, tx_stamps)?;
    let rx_stamping = sockets.worst_stamping();
    let first = sockets
        .bound
        .first()
        .copied()
        .unwrap_or(([0, 0, 0, 0], 0).into());
    // Rings are created by each worker on its own (pinned) thread: with SINGLE_ISSUER only the
    // creating thread may submit. One trial ring here reports resource limits at start-up.
    UringLoop::new(&[], buffers).map_err(|e| SetupError::Other {
        addr: first,
        source: e,
    })?;
    let out: Vec<Box<dyn WorkerIo>> = sockets
        .per_worker
        .into_iter()
        .map(|listeners| Box::new(UringWorker { listeners, buffers }) as Box<dyn WorkerIo>)
        .collect();
    Ok(Opened {
        name: "io-uring",
        workers: out,
        bound: sockets.bound,
        rx_stamping,
    })
}

/// A provided-buffer ring: page-aligned ring entries plus the buffers they point to.
struct BufRing {
    entries: *mut BufRingEntry,
    layout: Layout,
    bufs: Box<[u8]>,
    count: u16,
    /// Our copy of the tail (the kernel reads the shared one).
    tail: u16,
}

impl BufRing {
    fn new(count: u16) -> io::Result<BufRing> {
        assert!(count.is_power_of_two());
        let layout = Layout::from_size_align(count as usize * size_of::<BufRingEntry>(), 4096)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the layout has a non-zero size (count ≥ 1) and a valid alignment.
        let entries = unsafe { alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut ring = BufRing {
            entries,
            layout,
            bufs: vec![0u8; count as usize * RX_BUF_LEN].into_boxed_slice(),
            count,
            tail: 0,
        };
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    fn register(&mut self, ring: &IoUring, bgid: u16) -> io::Result<()> {
        // SAFETY: `entries` points to `count` entries of page-aligned memory that lives until
        // this BufRing is dropped, and Drop unregisters it first (or the ring is dropped before).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries as u64,
                self.count,
                bgid,
                0,
            )?;
        }
        Ok(())
    }

    /// Puts buffer `bid` back (visible to the kernel after `publish`).
    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.count - 1)) as usize;
        let addr = self.bufs[bid as usize * RX_BUF_LEN..].as_mut_ptr() as u64;
        // SAFETY: idx < count, so the entry is inside the allocation; only this thread writes.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(addr);
        e.set_len(RX_BUF_LEN as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: `entries` is the ring base; the tail field lives in its first entry, is 2-byte
        // aligned, and is shared with the kernel, so it is written atomically with Release.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * RX_BUF_LEN;
        &self.bufs[start..start + len.min(RX_BUF_LEN)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the kernel no longer uses it (the ring is
        // unregistered or destroyed before, see UringWorker's Drop order).
        unsafe { dealloc(self.entries.cast(), self.layout) };
    }
}

/// One in-flight (or free) reply.
#[repr(C)]
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: libc::sockaddr_storage,
    /// PKTINFO and the transmit-stamp request.
    ctrl: [u64; SLOT_CTRL / 8],
    /// The reply (the longest, a signed one, fits).
    buf: [u8; MAX_REPLY_LEN],
    /// The key the reply's transmit stamp was asked under.
    tx_key: Option<u32>,
}

/// Control space of a send slot.
const SLOT_CTRL: usize = cmsg::space(20) + cmsg::TX_REQUEST_SPACE;

/// The error-queue receive of one socket: a RecvMsg with MSG_ERRQUEUE into these buffers,
/// which complete when a transmit-stamp report is queued.
#[repr(C)]
struct ErrSlot {
    hdr: libc::msghdr,
    ctrl: [u64; ERRQ_CTRL / 8],
}

/// The receive template of one socket: tells the kernel how much room name and control get.
struct RecvTemplate {
    hdr: libc::msghdr,
}

/// A worker's sockets. The ring is built in [`WorkerIo::run`], on the worker's thread, and is
/// gone before the sockets close.
pub struct UringWorker {
    listeners: Vec<Listener>,
    /// Provided receive buffers of the ring.
    buffers: u16,
}

/// A socket as the ring loop sees it.
#[derive(Clone, Copy)]
struct Socket {
    fd: RawFd,
    /// Bound to a wildcard address: replies carry PKTINFO.
    wildcard: bool,
    /// Replies may ask for their transmit stamp.
    tx_stamps: bool,
}

/// A worker's ring and buffers. Field order is drop order: the ring goes first, so the kernel
/// has released the buffer ring before its memory is freed.
struct UringLoop {
    ring: IoUring,
    listeners: Vec<Socket>,
    templates: Box<[RecvTemplate]>,
    rx: BufRing,
    slots: Box<[SendSlot]>,
    free: Vec<u16>,
    /// Multishot receives currently armed, per listener.
    armed: Vec<bool>,
    /// The error-queue receive of each listener (boxed: the kernel holds their addresses).
    errq: Box<[ErrSlot]>,
    /// Error-queue receives in flight, per listener.
    errq_armed: Vec<bool>,
    /// Replies waiting for their transmit stamp.
    stamps: TxStamps,
}

impl UringLoop {
    fn new(sockets: &[Listener], buffers: u16) -> io::Result<UringLoop> {
        let listeners: Vec<Socket> = sockets
            .iter()
            .map(|l| Socket {
                fd: l.fd.as_raw_fd(),
                wildcard: l.wildcard,
                tx_stamps: l.tx_stamps,
            })
            .collect();
        let ring = IoUring::builder()
            .setup_cqsize(SQ_ENTRIES * 2)
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(SQ_ENTRIES * 2)
                    .build(SQ_ENTRIES)
            })?;
        let mut rx = BufRing::new(buffers)?;
        rx.register(&ring, BGID)?;
        let templates = listeners
            .iter()
            .map(|_| {
                // SAFETY: msghdr is a plain C struct; zero is a valid empty value.
                let mut hdr: libc::msghdr = unsafe { zeroed() };
                hdr.msg_namelen = NAME_LEN as u32;
                hdr.msg_controllen = CTRL_LEN;
                RecvTemplate { hdr }
            })
            .collect();
        let mut slots: Box<[SendSlot]> = (0..TX_SLOTS)
            // SAFETY: every field of SendSlot is plain old data; all-zero is valid.
            .map(|_| unsafe { zeroed::<SendSlot>() })
            .collect();
        for s in slots.iter_mut() {
            s.iov.iov_base = s.buf.as_mut_ptr().cast();
            s.hdr.msg_name = (&mut s.name as *mut libc::sockaddr_storage).cast();
            s.hdr.msg_iov = &mut s.iov;
            s.hdr.msg_iovlen = 1;
            s.hdr.msg_control = s.ctrl.as_mut_ptr().cast();
        }
        let n = listeners.len();
        let errq = (0..n)
            // SAFETY: every field of ErrSlot is plain old data; all-zero is valid.
            .map(|_| unsafe { zeroed::<ErrSlot>() })
            .collect();
        Ok(UringLoop {
            ring,
            listeners,
            templates,
            rx,
            slots,
            free: (0..TX_SLOTS as u16).rev().collect(),
            armed: vec![false; n],
            errq,
            errq_armed: vec![false; n],
            stamps: TxStamps::default(),
        })
    }

    /// Queues an entry, flushing the submission queue first if it is full.
    fn push(&mut self, e: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry we queue points only at memory owned by this worker (recv
            // templates, the buffer ring, send slots) that outlives the operation: slots are
            // reused only after their completion, templates and buffers live as long as the ring.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm(&mut self, li: usize) -> io::Result<()> {
        let fd = self.listeners[li].fd;
        let e = opcode::RecvMsgMulti::new(Fd(fd), &self.templates[li].hdr, BGID)
            .build()
            .user_data(KIND_RECV | li as u64);
        self.push(&e)?;
        self.armed[li] = true;
        Ok(())
    }

    /// Arms the error-queue receive of listener `li`: it completes when a report is queued.
    fn arm_errq(&mut self, li: usize) -> io::Result<()> {
        let slot = &mut self.errq[li];
        // Zeroed, so the parse stops where the kernel's messages end even if the kernel
        // does not write back msg_controllen.
        slot.ctrl.fill(0);
        slot.hdr.msg_control = slot.ctrl.as_mut_ptr().cast();
        slot.hdr.msg_controllen = ERRQ_CTRL;
        slot.hdr.msg_flags = 0;
        let e = opcode::RecvMsg::new(Fd(self.listeners[li].fd), &mut slot.hdr)
            .flags(libc::MSG_ERRQUEUE as u32)
            .build()
            .user_data(KIND_ERRQ | li as u64);
        self.push(&e)?;
        self.errq_armed[li] = true;
        Ok(())
    }

    /// Handles the completion of listener `li`'s error-queue receive: its report, then the
    /// rest of the queue (batched, non-blocking), for the worker. It is re-armed by the loop.
    fn on_errq(
        &mut self,
        li: usize,
        res: i32,
        snap: &crate::clock::ClockSnapshot,
        worker: &mut Worker,
    ) {
        self.errq_armed[li] = false;
        if res < 0 {
            match -res {
                libc::EAGAIN | libc::EINTR | libc::ECANCELED => {}
                e => {
                    // Not worth a worker: stop asking for stamps on this socket; its replies
                    // keep their estimates.
                    tracing::warn!(
                        listener = li,
                        "reading the error queue failed ({}); no more transmit stamps on \
                         this socket",
                        io::Error::from_raw_os_error(e)
                    );
                    self.listeners[li].tx_stamps = false;
                }
            }
            return;
        }
        let slot = &self.errq[li];
        let len = slot.hdr.msg_controllen.min(ERRQ_CTRL);
        // SAFETY: `ctrl` is u64-aligned storage of ERRQ_CTRL bytes owned by the slot, and its
        // receive has completed; viewing (up to) all of it as bytes is valid.
        let control = unsafe { std::slice::from_raw_parts(slot.ctrl.as_ptr().cast::<u8>(), len) };
        self.stamps.on_report(control, worker, snap);
        self.stamps.drain(self.listeners[li].fd, worker, snap);
    }

    /// Handles one receive completion: answers it and gives its buffer back to the ring.
    fn on_recv(
        &mut self,
        li: usize,
        res: i32,
        flags: u32,
        snap: &crate::clock::ClockSnapshot,
        user: RawStamp,
        worker: &mut Worker,
    ) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.armed[li] = false;
        }
        let bid = cqueue::buffer_select(flags);
        if res < 0 {
            let err = io::Error::from_raw_os_error(-res);
            if -res == libc::ENOBUFS {
                worker.on_rx_buffers_exhausted();
            } else if -res != libc::ECANCELED && -res != libc::EINTR {
                tracing::debug!(listener = li, "multishot receive ended: {err}");
            }
            if let Some(bid) = bid {
                self.rx.push(bid);
            }
            return Ok(());
        }
        let Some(bid) = bid else {
            return Ok(());
        };
        let data = self.rx.buffer(bid, res as usize);
        let Ok(msg) = RecvMsgOut::parse(data, &self.templates[li].hdr) else {
            self.rx.push(bid);
            return Ok(());
        };
        let meta = cmsg::parse(msg.control_data());
        let kernel = meta.software.map(|raw| (raw, TimestampQuality::Kernel));
        let rx = Arrival::stamp(kernel, user);
        let src = cmsg::sockaddr(msg.name_data());
        let refused = if msg.is_payload_truncated() {
            Some(DropReason::TooLong)
        } else if src.is_none() {
            Some(DropReason::Malformed)
        } else if self.free.is_empty() {
            // Every send slot is in flight: count it like a failed send (nothing waits).
            Some(DropReason::SendFailed)
        } else {
            None
        };
        if let Some(reason) = refused {
            worker.on_refused(rx, reason);
            self.rx.push(bid);
            return Ok(());
        }
        let arrival = meta.arrival(src.expect("checked above"), rx);
        let slot_id = *self.free.last().expect("checked above");
        let slot = &mut self.slots[slot_id as usize];
        let verdict = worker.on_datagram(
            &arrival,
            msg.payload_data(),
            &mut slot.buf[..MAX_REPLY_LEN],
            snap,
            sys::clock::now,
        );
        let Some((len, tx)) = verdict.send_asking_stamps() else {
            self.rx.push(bid);
            return Ok(());
        };
        let name = msg.name_data();
        let name_len = name.len().min(NAME_LEN);
        // SAFETY: `name` holds `name_len` bytes of a sockaddr written by the kernel and
        // `slot.name` is a sockaddr_storage of NAME_LEN ≥ name_len bytes; they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                name.as_ptr(),
                (&mut slot.name as *mut libc::sockaddr_storage).cast::<u8>(),
                name_len,
            );
        }
        slot.hdr.msg_namelen = name_len as u32;
        slot.iov.iov_len = len;
        // SAFETY: `ctrl` is SLOT_CTRL bytes of u64-aligned storage owned by the slot, not in
        // flight (the slot is free); viewing it as bytes is always valid.
        let ctrl = unsafe {
            std::slice::from_raw_parts_mut(slot.ctrl.as_mut_ptr().cast::<u8>(), SLOT_CTRL)
        };
        let sock = self.listeners[li];
        let mut ctrl_len = match meta.dst {
            Some(dst) if sock.wildcard => cmsg::write_pktinfo(&dst, ctrl),
            _ => 0,
        };
        slot.tx_key = None;
        if let Some(token) = tx.filter(|_| sock.tx_stamps) {
            if let Some((key, n)) = self.stamps.request(token, &mut ctrl[ctrl_len..], worker) {
                ctrl_len += n;
                slot.tx_key = Some(key);
            }
        }
        slot.hdr.msg_controllen = ctrl_len;
        self.rx.push(bid);
        self.free.pop();
        let fd = self.listeners[li].fd;
        let e = opcode::SendMsg::new(Fd(fd), &self.slots[slot_id as usize].hdr)
            .build()
            .user_data(KIND_SEND | slot_id as u64);
        self.push(&e)
    }

    /// Cancels the multishots and reaps every in-flight operation (bounded), so the sockets and
    /// buffers are released by the kernel before they are closed.
    fn quiesce(&mut self) {
        for li in 0..self.listeners.len() {
            if self.armed[li] {
                let e = opcode::AsyncCancel::new(KIND_RECV | li as u64)
                    .build()
                    .user_data(KIND_CANCEL | li as u64);
                let _ = self.push(&e);
            }
            if self.errq_armed[li] {
                let e = opcode::AsyncCancel::new(KIND_ERRQ | li as u64)
                    .build()
                    .user_data(KIND_CANCEL | li as u64);
                let _ = self.push(&e);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while (self.armed.iter().any(|a| *a)
            || self.errq_armed.iter().any(|a| *a)
            || self.free.len() < TX_SLOTS)
            && Instant::now() < deadline
        {
            let ts = Timespec::from(Duration::from_millis(20));
            let _ = self
                .ring
                .submitter()
                .submit_with_args(1, &SubmitArgs::new().timespec(&ts));
            let done: Vec<(u64, i32, u32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags()))
                .collect();
            for (ud, _res, flags) in done {
                match ud & !INDEX_MASK {
                    KIND_RECV => {
                        if !cqueue::more(flags) {
                            self.armed[(ud & INDEX_MASK) as usize] = false;
                        }
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            self.rx.push(bid);
                        }
                    }
                    KIND_SEND => self.free.push((ud & INDEX_MASK) as u16),
                    KIND_ERRQ => self.errq_armed[(ud & INDEX_MASK) as usize] = false,
                    _ => {}
                }
            }
        }
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}

impl WorkerIo for UringWorker {
    fn run(&mut self, ctx: &WorkerContext, worker: &mut Worker) -> io::Result<()> {
        UringLoop::new(&self.listeners, self.buffers)?.run(ctx, worker)
    }
}

impl UringLoop {
    fn run(&mut self, ctx: &WorkerContext, worker: &mut Worker) -> io::Result<()> {
        for li in 0..self.listeners.len() {
            self.arm(li)?;
            if self.listeners[li].tx_stamps {
                self.arm_errq(li)?;
            }
        }
        let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(CQ_BATCH);
        let ts = Timespec::from(WAIT);
        let args = SubmitArgs::new().timespec(&ts);
        while !ctx.stop.load(Ordering::Relaxed) {
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                    ) => {}
                Err(e) => {
                    self.quiesce();
                    return Err(e);
                }
            }
            done.clear();
            done.extend(
                self.ring
                    .completion()
                    .take(CQ_BATCH)
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            if done.is_empty() {
                // An idle wake-up: the mailbox is serviced at least every WAIT.
                ctx.end_batch(worker);
                continue;
            }
            let user = RawStamp {
                raw: sys::clock::now(),
                quality: TimestampQuality::User,
            };
            let snap = ctx.clock.load();
            for &(ud, res, flags) in &done {
                let idx = (ud & INDEX_MASK) as usize;
                match ud & !INDEX_MASK {
                    KIND_RECV => self.on_recv(idx, res, flags, &snap, user, worker)?,
                    KIND_SEND => {
                        self.free.push(idx as u16);
                        if res < 0 {
                            worker.on_send_failed();
                            if let Some(key) = self.slots[idx].tx_key {
                                self.stamps.send_failed(key, worker);
                            }
                        }
                    }
                    KIND_ERRQ => self.on_errq(idx, res, &snap, worker),
                    _ => {}
                }
            }
            // Buffers go back before any re-arm, so a re-armed receive finds them.
            self.rx.publish();
            for li in 0..self.listeners.len() {
                if !self.armed[li] {
                    self.arm(li)?;
                }
                if self.listeners[li].tx_stamps && !self.errq_armed[li] {
                    self.arm_errq(li)?;
                }
            }
            ctx.end_batch(worker);
        }
        self.quiesce();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_ring_sizes() {
        assert_eq!(rx_buffers_for(32), 512);
        assert_eq!(rx_buffers_for(1), 16);
        assert_eq!(rx_buffers_for(33), 1024);
        assert_eq!(rx_buffers_for(1024), 16384);
    }

    #[test]
    fn release_parsing() {
        assert!(release_at_least("6.18.0-foo", 6, 0));
        assert!(release_at_least("6.0.1", 6, 0));
        assert!(!release_at_least("5.19.17", 6, 0));
        assert!(!release_at_least("", 6, 0));
    }
}
