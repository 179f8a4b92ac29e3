//! Linux UDP: per-worker SO_REUSEPORT sockets, recvmmsg/sendmmsg batches, kernel receive
//! timestamps (SO_TIMESTAMPING, else SO_TIMESTAMPNS, else a user-space read per batch),
//! PKTINFO so replies on wildcard sockets leave from the address the request was sent to, and
//! kernel transmit timestamps of the replies the worker asks about (interleaved mode: see
//! [`crate::io::txstamps`]), read from the error queue after every send and on POLLERR.
//!
//! The reuseport group of each address steers by the client's source *address* (a classic BPF
//! program, [`source_hash_program`]), not the kernel's 4-tuple hash: clients randomise their
//! source ports, and a client must always reach the same worker so that per-worker client
//! state needs no locks.

use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::clock::{RawStamp, TimestampQuality};
use crate::datapath::{Arrival, Worker};
use crate::io::cmsg;
use crate::io::txstamps::{self, TxStamps};
use crate::io::{Opened, SetupError, WorkerContext, WorkerIo};
use crate::proto::{DropReason, MAX_REPLY_LEN};
use crate::sys;

/// Receive buffer per datagram: larger than any request we read, so a longer one is seen whole
/// (and dropped as too long) and only datagrams beyond this are cut (MSG_TRUNC).
const RX_BUF: usize = 2048;
/// Control buffer per datagram: timestamping (3 timespecs) + PKTINFO, with room to spare.
const RX_CTRL: usize = 256;
/// Reply slot: the longest reply (a signed one, up to 116 bytes) rounded up to 8.
const TX_BUF: usize = MAX_REPLY_LEN.next_multiple_of(8);
/// Control buffer per reply: one PKTINFO message and the transmit-stamp request.
const TX_CTRL: usize = cmsg::space(20) + cmsg::TX_REQUEST_SPACE;
/// How long poll(2) waits before the stop flag is looked at again.
const POLL_MS: i32 = 100;
/// Batches drained from one socket before the others (and the stop flag) get a turn.
const ROUNDS_PER_WAKE: usize = 16;
/// Kernel socket buffer asked for (the kernel caps it at net.core.rmem_max).
const SOCKET_BUFFER: usize = 4 << 20;

/// SOF_TIMESTAMPING_* flags: software receive stamps, reported in SCM_TIMESTAMPING.
pub(crate) const TIMESTAMPING_RX_SOFTWARE: u32 =
    libc::SOF_TIMESTAMPING_RX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE;

/// One bound socket of a worker.
pub(crate) struct Listener {
    pub fd: OwnedFd,
    /// Bound to a wildcard address: replies need PKTINFO to carry the right source address.
    pub wildcard: bool,
    pub stamping: TimestampQuality,
    /// Replies may ask for their kernel transmit stamp ([`txstamps`]).
    pub tx_stamps: bool,
}

/// The backend state of one worker: its sockets and its preallocated batch buffers.
pub struct UdpWorker {
    listeners: Vec<Listener>,
    rx: Batch<RX_BUF, RX_CTRL>,
    tx: Batch<TX_BUF, TX_CTRL>,
    /// The source address of each datagram of the current batch, read once.
    srcs: Vec<Option<SocketAddr>>,
    /// Per prepared reply: the key its transmit stamp was asked under.
    tx_keys: Vec<Option<u32>>,
    /// Replies waiting for their transmit stamp, and the error-queue buffers.
    stamps: TxStamps,
}

/// Opens one SO_REUSEPORT socket per worker and address. With `tx_stamps` (interleaved mode),
/// replies the worker asks about are stamped by the kernel as they leave, when it can
/// ([`bind_workers`]).
pub fn open(
    listen: &[SocketAddr],
    workers: usize,
    batch: usize,
    tx_stamps: bool,
) -> Result<Opened, SetupError> {
    let batch = batch.clamp(1, MAX_BATCH);
    let sockets = bind_workers(listen, workers, tx_stamps)?;
    let rx_stamping = sockets.worst_stamping();
    let out: Vec<Box<dyn WorkerIo>> = sockets
        .per_worker
        .into_iter()
        .map(|listeners| {
            Box::new(UdpWorker {
                listeners,
                rx: Batch::with_capacity(batch),
                tx: Batch::with_capacity(batch),
                srcs: Vec::with_capacity(batch),
                tx_keys: vec![None; batch],
                stamps: TxStamps::default(),
            }) as Box<dyn WorkerIo>
        })
        .collect();
    Ok(Opened {
        name: "udp",
        workers: out,
        bound: sockets.bound,
        rx_stamping,
    })
}

/// The sockets of every worker, as opened by [`bind_workers`].
pub(crate) struct WorkerSockets {
    /// `per_worker[w][a]`: worker w's socket for address a.
    pub per_worker: Vec<Vec<Listener>>,
    /// The addresses bound (a port asked as 0 resolved to the one the kernel gave).
    pub bound: Vec<SocketAddr>,
}

impl WorkerSockets {
    pub fn worst_stamping(&self) -> TimestampQuality {
        self.per_worker
            .iter()
            .flatten()
            .map(|l| l.stamping)
            .max()
            .unwrap_or(TimestampQuality::User)
    }
}

/// How long a port that is still held by our own previous run (sockets of an exited process
/// whose io_uring teardown is asynchronous) is waited for before "in use" is final.
const IN_USE_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens one SO_REUSEPORT socket per worker and address, with the options every socket
/// backend wants (timestamps, PKTINFO on wildcards, large buffers, non-blocking). With
/// `tx_stamps`, and if the kernel passes [`txstamps::probe`], the sockets report the transmit
/// stamps replies ask for; either way the choice is logged once.
pub(crate) fn bind_workers(
    listen: &[SocketAddr],
    workers: usize,
    tx_stamps: bool,
) -> Result<WorkerSockets, SetupError> {
    // Ask for each address once without SO_REUSEPORT: if anyone holds the port, we hear it as
    // EADDRINUSE here instead of silently sharing the port with another reuseport group.
    let mut bound = Vec::with_capacity(listen.len());
    for &addr in listen {
        bound.push(probe_bind(addr)?);
    }
    let tx = tx_stamps
        && match txstamps::probe() {
            Ok(()) => {
                tracing::info!(
                    tx_timestamps = "kernel",
                    "transmit timestamps: the kernel's software stamps, from the error queue, \
                 keyed per reply (SCM_TS_OPT_ID); no NIC stamps (the receive path takes none \
                 either)"
                );
                true
            }
            Err(why) => {
                tracing::warn!(
                    tx_timestamps = "none",
                    "no transmit timestamps: {why}; interleaved replies carry the transmit \
                 estimate read before the send"
                );
                false
            }
        };
    let mut per_worker = Vec::with_capacity(workers);
    for _ in 0..workers {
        let listeners = bound
            .iter()
            .map(|&addr| open_listener(addr, tx).map_err(|e| SetupError::from_io(addr, e)))
            .collect::<Result<Vec<_>, _>>()?;
        per_worker.push(listeners);
    }
    if workers > 1 {
        for (a, addr) in bound.iter().enumerate() {
            let program = source_hash_program(addr.is_ipv6(), workers as u32);
            // The program belongs to the group: attaching it once, to any member, steers all.
            if let Err(e) = attach_reuseport_program(&per_worker[0][a].fd, &program) {
                tracing::warn!(
                    %addr,
                    "cannot steer clients to workers by source address ({e}); the kernel's \
                     4-tuple hash is used instead, so one client may reach several workers"
                );
            }
        }
    }
    Ok(WorkerSockets { per_worker, bound })
}

/// SO_ATTACH_REUSEPORT_CBPF, from asm-generic/socket.h (x86, arm, riscv, ...).
const SO_ATTACH_REUSEPORT_CBPF: i32 = 51;

/// One classic BPF instruction.
const fn cbpf(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The reuseport program: socket index = hash(client source address) mod `workers`.
///
/// The program sees the datagram with its data past the UDP header; `SKF_NET_OFF` reaches back
/// to the IP header. IPv4: the source address (offset 12). IPv6: the four words of the source
/// address (offsets 8..24) folded with XOR. Then a multiplicative (Fibonacci) hash, whose high
/// bits are well mixed, and the index.
pub(crate) fn source_hash_program(ipv6: bool, workers: u32) -> Vec<libc::sock_filter> {
    use libc::{BPF_A, BPF_ABS, BPF_ALU, BPF_K, BPF_LD, BPF_LDX, BPF_MEM, BPF_MOD, BPF_MUL};
    use libc::{BPF_MISC, BPF_RET, BPF_RSH, BPF_ST, BPF_TAX, BPF_W, BPF_X, BPF_XOR};
    let net = |off: i32| (libc::SKF_NET_OFF + off) as u32;
    let load_word = |off: i32| cbpf(BPF_LD | BPF_W | BPF_ABS, net(off));
    let mut p = Vec::with_capacity(16);
    if ipv6 {
        p.push(load_word(8));
        for off in [12, 16, 20] {
            p.push(cbpf(BPF_ST, 0)); // M[0] = A
            p.push(load_word(off));
            p.push(cbpf(BPF_LDX | BPF_W | BPF_MEM, 0)); // X = M[0]
            p.push(cbpf(BPF_ALU | BPF_XOR | BPF_X, 0)); // A ^= X
        }
    } else {
        p.push(load_word(12));
    }
    // A full avalanche of the 32 bits (xor-shift, multiply, twice), so that consecutive
    // addresses spread evenly over any number of workers (a single multiply left some worker
    // counts with idle workers on consecutive addresses).
    let xorshift16 = |p: &mut Vec<libc::sock_filter>| {
        p.push(cbpf(BPF_ST, 0)); // M[0] = A
        p.push(cbpf(BPF_ALU | BPF_RSH | BPF_K, 16)); // A >>= 16
        p.push(cbpf(BPF_MISC | BPF_TAX, 0)); // X = A
        p.push(cbpf(BPF_LD | BPF_W | BPF_MEM, 0)); // A = M[0]
        p.push(cbpf(BPF_ALU | BPF_XOR | BPF_X, 0)); // A ^= X
    };
    xorshift16(&mut p);
    p.push(cbpf(BPF_ALU | BPF_MUL | BPF_K, 0x045d_9f3b));
    xorshift16(&mut p);
    p.push(cbpf(BPF_ALU | BPF_MUL | BPF_K, 0x045d_9f3b));
    xorshift16(&mut p);
    p.push(cbpf(BPF_ALU | BPF_MOD | BPF_K, workers.max(1)));
    p.push(cbpf(BPF_RET | BPF_A, 0));
    p
}

/// Attaches a classic BPF program to the reuseport group of `fd`.
fn attach_reuseport_program(fd: &OwnedFd, program: &[libc::sock_filter]) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `program.len()` valid instructions that outlive the call; the
    // kernel copies the program and only reads the struct, whose size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Binds `addr` exclusively and releases it, returning the address bound. A port still in use
/// is retried for [`IN_USE_GRACE`] (a previous run's sockets can outlive it briefly).
fn probe_bind(addr: SocketAddr) -> Result<SocketAddr, SetupError> {
    let deadline = std::time::Instant::now() + IN_USE_GRACE;
    let mut warned = false;
    loop {
        let probe = new_socket(addr).map_err(|e| SetupError::from_io(addr, e))?;
        match probe.bind(&addr.into()) {
            Ok(()) => {
                return Ok(probe
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or(addr))
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                if !warned {
                    tracing::info!(%addr, "address in use; waiting up to {}s in case a previous run is still releasing it", IN_USE_GRACE.as_secs());
                    warned = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(SetupError::from_io(addr, e)),
        }
    }
}

fn new_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Let [::]:123 and 0.0.0.0:123 coexist as two listeners.
        s.set_only_v6(true)?;
    }
    Ok(s)
}

fn open_listener(addr: SocketAddr, tx: bool) -> std::io::Result<Listener> {
    let s = new_socket(addr)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    // Best effort: a larger buffer absorbs bursts; the kernel caps it silently.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    // Timestamps first, so no datagram can arrive unstamped between bind and setsockopt.
    let (stamping, tx_stamps) = enable_timestamps(&s, tx);
    s.bind(&SockAddr::from(addr))?;
    let wildcard = addr.ip().is_unspecified();
    if wildcard {
        if addr.is_ipv6() {
            setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        } else {
            setsockopt_int(&s, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        }
    }
    Ok(Listener {
        fd: s.into(),
        wildcard,
        stamping,
        tx_stamps,
    })
}

/// Turns on the best receive timestamps the socket supports and, with `tx`, the reporting of
/// transmit stamps that replies ask for ([`txstamps::SOCKET_FLAGS`]); says which it got.
fn enable_timestamps(s: &Socket, tx: bool) -> (TimestampQuality, bool) {
    if tx && txstamps::set_flags(s, TIMESTAMPING_RX_SOFTWARE | txstamps::SOCKET_FLAGS).is_ok() {
        return (TimestampQuality::Kernel, true);
    }
    if txstamps::set_flags(s, TIMESTAMPING_RX_SOFTWARE).is_ok() {
        return (TimestampQuality::Kernel, false);
    }
    if setsockopt_int(s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).is_ok() {
        return (TimestampQuality::Kernel, false);
    }
    (TimestampQuality::User, false)
}

pub(crate) fn setsockopt_int(s: &Socket, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: the fd is a live socket owned by `s`; the option value points at a local i32 whose
    // size is passed alongside, and the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Aligned control-message storage.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct Ctrl<const N: usize>(pub(crate) [u8; N]);

/// Preallocated message vectors for one recvmmsg/sendmmsg call. The headers point into the
/// boxed buffers, which never move, so the pointers stay valid wherever the `Batch` goes.
pub(crate) struct Batch<const BUF: usize, const CTRL: usize> {
    bufs: Box<[[u8; BUF]]>,
    ctrl: Box<[Ctrl<CTRL>]>,
    names: Box<[libc::sockaddr_storage]>,
    iov: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

// SAFETY: the raw pointers inside `iov` and `hdrs` point only into this Batch's own boxed
// buffers; moving the Batch to another thread moves their sole owner with them.
unsafe impl<const B: usize, const C: usize> Send for Batch<B, C> {}

/// The most datagrams one call handles (batch sizes above are capped).
pub const MAX_BATCH: usize = 1024;

impl<const BUF: usize, const CTRL: usize> Batch<BUF, CTRL> {
    /// The source address the kernel wrote for datagram `i` (its `msg_namelen` bytes).
    fn name_bytes(&self, i: usize) -> &[u8] {
        let len =
            (self.hdrs[i].msg_hdr.msg_namelen as usize).min(size_of::<libc::sockaddr_storage>());
        // SAFETY: `names[i]` is a plain-data sockaddr_storage the kernel filled; viewing its
        // first `len` (at most its size) bytes as a byte slice is always valid.
        unsafe {
            std::slice::from_raw_parts(
                (&self.names[i] as *const libc::sockaddr_storage).cast::<u8>(),
                len,
            )
        }
    }

    /// One non-blocking `recvmmsg` of up to `n` datagrams (at most the capacity) with `flags`
    /// besides MSG_DONTWAIT; the number received.
    pub(crate) fn recv(&mut self, fd: RawFd, n: usize, flags: i32) -> std::io::Result<usize> {
        let n = n.min(self.hdrs.len());
        for h in &mut self.hdrs[..n] {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_controllen = CTRL;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: `hdrs[..n]` are initialised mmsghdrs whose name, iovec and control pointers
        // refer to live buffers of the sizes recorded in them; the kernel writes at most that
        // much into each. MSG_DONTWAIT: never blocks.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as u32,
                flags | libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    /// The control bytes the kernel wrote for datagram `i` of the last [`Batch::recv`].
    pub(crate) fn control(&self, i: usize) -> &[u8] {
        let len = self.hdrs[i].msg_hdr.msg_controllen.min(CTRL);
        &self.ctrl[i].0[..len]
    }

    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut bufs = vec![[0u8; BUF]; n].into_boxed_slice();
        let mut ctrl = vec![Ctrl([0u8; CTRL]); n].into_boxed_slice();
        // SAFETY: sockaddr_storage is plain old data for which all-zero bytes are valid.
        let mut names = vec![unsafe { zeroed::<libc::sockaddr_storage>() }; n].into_boxed_slice();
        let mut iov: Box<[libc::iovec]> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: BUF,
            })
            .collect();
        let hdrs: Box<[libc::mmsghdr]> = (0..n)
            .map(|i| {
                // SAFETY: msghdr/mmsghdr are plain C structs; all-zero is a valid empty value
                // (null pointers, zero lengths) that the fields below then fill in.
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                h.msg_hdr.msg_iov = &mut iov[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = ctrl[i].0.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = CTRL;
                h
            })
            .collect();
        Batch {
            bufs,
            ctrl,
            names,
            iov,
            hdrs,
        }
    }
}

impl UdpWorker {
    /// Receives, answers and sends batches from listener `li` until it has nothing queued (or
    /// `ROUNDS_PER_WAKE` batches were handled).
    fn serve_listener(
        &mut self,
        li: usize,
        ctx: &WorkerContext,
        worker: &mut Worker,
    ) -> std::io::Result<()> {
        let batch = ctx.batch.clamp(1, self.rx.hdrs.len());
        let fd = self.listeners[li].fd.as_raw_fd();
        let l = &self.listeners[li];
        let (wildcard, stamping, tx_stamps) = (l.wildcard, l.stamping, l.tx_stamps);
        for _ in 0..ROUNDS_PER_WAKE {
            let n = match self.rx.recv(fd, batch, 0) {
                Ok(n) => n,
                Err(e) => {
                    return match e.kind() {
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(()),
                        _ => Err(e),
                    }
                }
            };
            // One user-space read per batch: the fallback when the kernel gave no stamp.
            let user = RawStamp {
                raw: sys::clock::now(),
                quality: TimestampQuality::User,
            };
            let snap = ctx.clock.load();
            // Each source address read once; the client records of the whole batch fetched
            // before any is needed: their tags first, then the records the tags point at.
            self.srcs.clear();
            self.srcs
                .extend((0..n).map(|i| cmsg::sockaddr(self.rx.name_bytes(i))));
            for src in self.srcs.iter().flatten() {
                worker.prefetch(src.ip());
            }
            for src in self.srcs.iter().flatten() {
                worker.prefetch_record(src.ip());
            }
            let mut m = 0;
            for i in 0..n {
                let h = &self.rx.hdrs[i];
                let len = (h.msg_len as usize).min(RX_BUF);
                let meta = cmsg::parse(self.rx.control(i));
                let kernel = meta
                    .software
                    .filter(|_| stamping <= TimestampQuality::Kernel)
                    .map(|raw| (raw, TimestampQuality::Kernel));
                let rx = Arrival::stamp(kernel, user);
                let src = self.srcs[i];
                if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || src.is_none() {
                    let reason = if src.is_none() {
                        DropReason::Malformed
                    } else {
                        DropReason::TooLong
                    };
                    worker.on_refused(rx, reason);
                    continue;
                }
                let arrival = meta.arrival(src.expect("checked above"), rx);
                let out = &mut self.tx.bufs[m][..MAX_REPLY_LEN];
                let verdict = worker.on_datagram(
                    &arrival,
                    &self.rx.bufs[i][..len],
                    out,
                    &snap,
                    sys::clock::now,
                );
                let Some((reply_len, tx)) = verdict.send_asking_stamps() else {
                    continue;
                };
                // Address the reply: the request's source, from the request's destination.
                self.tx.names[m] = self.rx.names[i];
                let th = &mut self.tx.hdrs[m];
                th.msg_hdr.msg_namelen = h.msg_hdr.msg_namelen;
                self.tx.iov[m].iov_len = reply_len;
                let ctrl = &mut self.tx.ctrl[m].0;
                let mut ctrl_len = match meta.dst {
                    Some(dst) if wildcard => cmsg::write_pktinfo(&dst, ctrl),
                    _ => 0,
                };
                self.tx_keys[m] = None;
                if let Some(token) = tx.filter(|_| tx_stamps) {
                    if let Some((key, n)) =
                        self.stamps.request(token, &mut ctrl[ctrl_len..], worker)
                    {
                        ctrl_len += n;
                        self.tx_keys[m] = Some(key);
                    }
                }
                th.msg_hdr.msg_controllen = ctrl_len;
                m += 1;
            }
            self.send(fd, m, worker);
            if tx_stamps {
                // On loopback and most drivers the stamps are queued by now.
                self.stamps.drain(fd, worker, &snap);
            }
            ctx.end_batch(worker);
            if n < batch {
                break;
            }
        }
        Ok(())
    }

    /// Sends the first `m` prepared replies; failures are counted, never waited on.
    fn send(&mut self, fd: RawFd, m: usize, worker: &mut Worker) {
        let mut sent = 0;
        while sent < m {
            // SAFETY: `hdrs[sent..m]` were prepared by `drain` with names, iovecs and control
            // buffers inside this batch's live storage; the kernel only reads them (and writes
            // msg_len). MSG_DONTWAIT: a full socket buffer is an error, not a wait.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.tx.hdrs[sent..].as_mut_ptr(),
                    (m - sent) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // The message at `sent` failed (buffer full, unreachable, ...): count it, go on.
            worker.on_send_failed();
            if let Some(key) = self.tx_keys[sent] {
                self.stamps.send_failed(key, worker);
            }
            sent += 1;
        }
        for (iov, h) in self.tx.iov[..m]
            .iter_mut()
            .zip(self.tx.hdrs[..m].iter_mut())
        {
            iov.iov_len = TX_BUF;
            h.msg_hdr.msg_controllen = 0;
        }
    }
}

impl WorkerIo for UdpWorker {
    fn run(&mut self, ctx: &WorkerContext, worker: &mut Worker) -> std::io::Result<()> {
        let mut pfds: Vec<libc::pollfd> = self
            .listeners
            .iter()
            .map(|l| libc::pollfd {
                fd: l.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        while !ctx.stop.load(Ordering::Relaxed) {
            // SAFETY: `pfds` is a live array of `pfds.len()` pollfd structs the kernel may
            // write `revents` into.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, POLL_MS) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for (li, p) in pfds.iter().enumerate() {
                // POLLERR: transmit stamps wait on the error queue (or an error is pending,
                // which the next receive reports and clears).
                let mut serve = p.revents & libc::POLLIN != 0;
                if p.revents & libc::POLLERR != 0 {
                    let read = if self.listeners[li].tx_stamps {
                        let snap = ctx.clock.load();
                        let fd = self.listeners[li].fd.as_raw_fd();
                        let read = self.stamps.drain(fd, worker, &snap);
                        ctx.end_batch(worker);
                        read
                    } else {
                        0
                    };
                    serve |= read == 0;
                }
                if serve {
                    self.serve_listener(li, ctx, worker)?;
                }
            }
            // Also after an idle wake-up: the mailbox is serviced at least every POLL_MS.
            ctx.end_batch(worker);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the steering program on a packet whose network header is `net` (the few cBPF
    /// instructions it uses, as the kernel defines them).
    fn run_cbpf(prog: &[libc::sock_filter], net: &[u8]) -> u32 {
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        for ins in prog {
            let k = ins.k;
            match ins.code as u32 {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let off = (k as i32 - libc::SKF_NET_OFF) as usize;
                    a = u32::from_be_bytes(net[off..off + 4].try_into().unwrap());
                }
                c if c == libc::BPF_ST => mem[k as usize] = a,
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_MEM => a = mem[k as usize],
                c if c == libc::BPF_LDX | libc::BPF_W | libc::BPF_MEM => x = mem[k as usize],
                c if c == libc::BPF_MISC | libc::BPF_TAX => x = a,
                c if c == libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X => a ^= x,
                c if c == libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K => a = a.wrapping_mul(k),
                c if c == libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K => a >>= k,
                c if c == libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K => a %= k,
                c if c == libc::BPF_RET | libc::BPF_A => return a,
                c => panic!("instruction {c:#x} not modelled"),
            }
        }
        panic!("no return")
    }

    /// 1024 consecutive client addresses reach every worker, for every worker count up to 16,
    /// IPv4 and IPv6, within a factor of two of an even share.
    #[test]
    fn consecutive_clients_spread_over_every_worker() {
        for workers in 1..=16u32 {
            for ipv6 in [false, true] {
                let prog = source_hash_program(ipv6, workers);
                let mut got = vec![0u32; workers as usize];
                for n in 0..1024u32 {
                    // The source address: bytes 12..16 of an IPv4 header, 8..24 of IPv6
                    // (fd00::7f00:1 + n).
                    let mut net = [0u8; 40];
                    let last = if ipv6 {
                        net[8] = 0xfd;
                        20
                    } else {
                        12
                    };
                    net[last..last + 4].copy_from_slice(&(0x7f00_0001 + n).to_be_bytes());
                    got[run_cbpf(&prog, &net) as usize] += 1;
                }
                let even = 1024 / workers;
                assert!(
                    got.iter().all(|&c| c * 2 >= even && c <= even * 2 + 2),
                    "{workers} workers, ipv6 {ipv6}: {got:?}"
                );
            }
        }
    }
    use std::net::UdpSocket;

    /// Two sockets in one reuseport group with the source-address program: every datagram from
    /// one client address reaches the same socket, whatever the source port (IPv4 and IPv6).
    #[test]
    fn steering_program_keeps_a_client_on_one_socket() {
        for (server, client) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let server: SocketAddr = server.parse().unwrap();
            let Ok(sockets) = bind_workers(&[server], 2, false) else {
                meridian_testkit::skip_notice(&format!("cannot bind {server} here"));
                continue;
            };
            let target = sockets.bound[0];
            let mut got = [0usize; 2];
            for _ in 0..20 {
                let c = UdpSocket::bind(client).unwrap();
                c.send_to(&[0x23; 48], target).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            for (w, listeners) in sockets.per_worker.iter().enumerate() {
                let s = UdpSocket::from(listeners[0].fd.try_clone().unwrap());
                let mut buf = [0u8; 64];
                while s.recv_from(&mut buf).is_ok() {
                    got[w] += 1;
                }
            }
            assert_eq!(got[0] + got[1], 20, "{server}: {got:?}");
            assert!(
                got[0] == 20 || got[1] == 20,
                "{server}: one client reached both sockets: {got:?}"
            );
            // `bind_workers` only warns when the kernel refuses the program: attach it again
            // here and require success, so a refused program fails the test.
            let program = source_hash_program(target.is_ipv6(), 2);
            attach_reuseport_program(&sockets.per_worker[1][0].fd, &program).unwrap();
        }
    }
}
