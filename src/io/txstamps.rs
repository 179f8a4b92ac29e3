//! Transmit timestamps of the socket backends (udp and io-uring), for interleaved mode.
//!
//! A reply the worker wants stamped (its verdict carried a [`TxToken`]) is sent with two
//! control messages ([`cmsg::write_tx_request`]): SO_TIMESTAMPING asking for this datagram's
//! software transmit stamp, and SCM_TS_OPT_ID (Linux ≥ 6.13) giving the report a key of our
//! own. The key is an index into a small per-worker ring of pending tokens ([`PendingTx`]) plus
//! a generation (the higher bits), so a report names exactly one reply or none: nothing here
//! depends on the kernel's implicit per-socket counter, which silently slips when a send fails
//! after the key was taken. Only replies that ask are stamped, so no report ever carries an
//! implicit key.
//!
//! The kernel queues each report on the socket's error queue (readable with MSG_ERRQUEUE,
//! signalled by POLLERR); [`TxStamps::drain`] reads it in batches with
//! `recvmmsg(MSG_ERRQUEUE | MSG_DONTWAIT)`, which never blocks, and hands each stamp to the
//! worker ([`Worker::on_tx_stamp`]). A report whose key the ring no longer holds is ignored;
//! a reply the ring moved past, or whose send failed, is counted as `tx_stamps_lost`.
//!
//! [`probe`] checks once at start-up, on a loopback socket, that the kernel takes the request
//! and reports the key it was given; if not, the backends run without transmit stamps (the
//! interleaved replies then carry the user-space estimate), and say so once.

use std::mem::zeroed;
use std::os::fd::{AsRawFd, RawFd};

use crate::clock::{ClockSnapshot, RawStamp, TimestampQuality};
use crate::datapath::{TxToken, Worker};
use crate::io::cmsg;
use crate::io::udp::linux::{Batch, Ctrl};

/// SO_TIMESTAMPING flags of a socket whose replies may ask for transmit stamps: reports keyed
/// (OPT_ID, which SCM_TS_OPT_ID needs), without the packet's bytes (OPT_TSONLY), with the
/// software stamp reported (SOFTWARE). No TX_* generation flag: each reply asks for itself.
pub const SOCKET_FLAGS: u32 = libc::SOF_TIMESTAMPING_SOFTWARE
    | libc::SOF_TIMESTAMPING_OPT_ID
    | libc::SOF_TIMESTAMPING_OPT_TSONLY;

/// Replies remembered per worker (a power of two). Reports come back within microseconds of
/// the send and are drained after every batch, so at 1 M replies/s this is 4 ms of slack.
pub const PENDING: usize = 4096;
const INDEX_MASK: u32 = PENDING as u32 - 1;

/// Error-queue messages read per recvmmsg call.
const DRAIN_BATCH: usize = 64;
/// Calls per drain at most (the rest waits for the next loop iteration: never starves
/// the receive path).
const DRAIN_ROUNDS: usize = 8;
/// Control buffer per error-queue message: SCM_TIMESTAMPING (3 timespecs) + the extended
/// error with an IPv6 offender address, with room to spare.
pub const ERRQ_CTRL: usize = 192;

/// The replies of one worker that wait for their transmit stamp: slot `key % PENDING` holds
/// the token sent with `key`, until its report comes or a newer reply takes the slot.
pub struct PendingTx {
    slots: Box<[Option<(u32, TxToken)>]>,
    next: u32,
}

impl Default for PendingTx {
    fn default() -> PendingTx {
        PendingTx {
            slots: vec![None; PENDING].into_boxed_slice(),
            next: 0,
        }
    }
}

impl PendingTx {
    /// A key for a reply carrying `token`, to send with it; and whether a still-pending
    /// reply had to give up its slot (its stamp is lost).
    #[inline]
    pub fn register(&mut self, token: TxToken) -> (u32, bool) {
        let key = self.next;
        self.next = self.next.wrapping_add(1);
        let slot = &mut self.slots[(key & INDEX_MASK) as usize];
        let evicted = slot.is_some();
        *slot = Some((key, token));
        (key, evicted)
    }

    /// The token of the reply sent with `key`, once: `None` for a key never given, already
    /// reported or cancelled, or pushed out of the ring by newer replies.
    #[inline]
    pub fn take(&mut self, key: u32) -> Option<TxToken> {
        let slot = &mut self.slots[(key & INDEX_MASK) as usize];
        match *slot {
            Some((k, token)) if k == key => {
                *slot = None;
                Some(token)
            }
            _ => None,
        }
    }
}

/// A worker's transmit-timestamp state: the pending replies and the error-queue buffers.
pub struct TxStamps {
    pending: PendingTx,
    errq: ErrQueue,
}

impl Default for TxStamps {
    fn default() -> TxStamps {
        TxStamps {
            pending: PendingTx::default(),
            errq: ErrQueue::with_capacity(DRAIN_BATCH),
        }
    }
}

impl TxStamps {
    /// Registers the reply carrying `token` and writes its control messages (the stamp
    /// request under its key) into `ctrl`; returns the key and the bytes written, or `None`
    /// (nothing written, nothing pending) when `ctrl` is too small.
    #[inline]
    pub fn request(
        &mut self,
        token: TxToken,
        ctrl: &mut [u8],
        worker: &mut Worker,
    ) -> Option<(u32, usize)> {
        if ctrl.len() < cmsg::TX_REQUEST_SPACE {
            return None;
        }
        let (key, evicted) = self.pending.register(token);
        if evicted {
            worker.on_tx_stamp_lost();
        }
        Some((key, cmsg::write_tx_request(key, ctrl)))
    }

    /// The reply sent with `key` did not leave (its send failed): its stamp will not come.
    #[inline]
    pub fn send_failed(&mut self, key: u32, worker: &mut Worker) {
        if self.pending.take(key).is_some() {
            worker.on_tx_stamp_lost();
        }
    }

    /// Hands the stamp of one error-queue message (its control bytes) to the worker, if it is
    /// the report of a reply still pending. Returns whether it was.
    #[inline]
    pub fn on_report(&mut self, control: &[u8], worker: &mut Worker, snap: &ClockSnapshot) -> bool {
        report_to(&mut self.pending, control, worker, snap)
    }

    /// Reads `fd`'s error queue without blocking (a bounded number of batches) and hands each
    /// report to the worker. Returns the messages read (reports or not).
    pub fn drain(&mut self, fd: RawFd, worker: &mut Worker, snap: &ClockSnapshot) -> usize {
        let mut read = 0;
        for _ in 0..DRAIN_ROUNDS {
            let n = recv_errq(&mut self.errq, fd);
            for i in 0..n {
                report_to(&mut self.pending, self.errq.control(i), worker, snap);
            }
            read += n;
            if n < DRAIN_BATCH {
                break;
            }
        }
        read
    }
}

/// The one place a report becomes a stamp: the software stamp of a report whose key is still
/// pending goes to the worker. Only the software stamp is asked for; a hardware one (ts[2])
/// would be in the NIC's clock, which nothing here maps to the system clock.
fn report_to(
    pending: &mut PendingTx,
    control: &[u8],
    worker: &mut Worker,
    snap: &ClockSnapshot,
) -> bool {
    let Some((key, raw)) = cmsg::tx_report(control).and_then(|r| Some((r.id, r.software?))) else {
        return false;
    };
    let Some(token) = pending.take(key) else {
        return false;
    };
    let quality = TimestampQuality::Kernel;
    worker.on_tx_stamp(token, RawStamp { raw, quality }, snap);
    true
}

/// Message vectors for `recvmmsg(MSG_ERRQUEUE)`: with OPT_TSONLY a report has no payload
/// (the small buffer only catches one that would), and its control messages are all we read.
type ErrQueue = Batch<16, ERRQ_CTRL>;

/// One non-blocking `recvmmsg(MSG_ERRQUEUE)` into `q`: the number of messages read (0 when
/// the queue is empty or on any error: the error queue is never worth failing a worker for).
fn recv_errq(q: &mut ErrQueue, fd: RawFd) -> usize {
    q.recv(fd, usize::MAX, libc::MSG_ERRQUEUE).unwrap_or(0)
}

/// Checks that this kernel stamps a datagram sent with [`cmsg::write_tx_request`] and reports
/// the key it was given: sends one datagram to itself on 127.0.0.1 and reads the report
/// (within 200 ms). `Err` says why transmit stamps are off.
pub fn probe() -> Result<(), String> {
    const KEY: u32 = 0x6d65_7269; // any value the socket's own counter (0) is not
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
        .map_err(|e| format!("a probe socket: {e}"))?;
    s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .map_err(|e| format!("binding a probe socket on 127.0.0.1: {e}"))?;
    set_flags(&s, SOCKET_FLAGS).map_err(|e| format!("SO_TIMESTAMPING: {e}"))?;
    let to = s.local_addr().map_err(|e| e.to_string())?;
    let mut ctrl = Ctrl([0u8; ERRQ_CTRL]);
    let n = cmsg::write_tx_request(KEY, &mut ctrl.0);
    send_with_control(s.as_raw_fd(), &[0u8; 48], &to, &ctrl.0[..n]).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            format!("the kernel refuses a per-datagram key (SCM_TS_OPT_ID needs Linux 6.13): {e}")
        } else {
            format!("sending the probe datagram: {e}")
        }
    })?;
    let mut q = ErrQueue::with_capacity(4);
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    loop {
        if recv_errq(&mut q, s.as_raw_fd()) > 0 {
            return match cmsg::tx_report(q.control(0)) {
                Some(r) if r.id == KEY && r.software.is_some() => Ok(()),
                Some(r) => Err(format!(
                    "the kernel reported key {} for a datagram sent with key {KEY}",
                    r.id
                )),
                None => Err("the error queue held no transmit timestamp report".into()),
            };
        }
        if std::time::Instant::now() >= deadline {
            return Err("no transmit timestamp was reported within 200 ms".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Sets the socket's SO_TIMESTAMPING flags.
pub fn set_flags(s: &socket2::Socket, flags: u32) -> std::io::Result<()> {
    crate::io::udp::linux::setsockopt_int(s, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, flags as i32)
}

/// One `sendmsg` of `data` to `to` with the control messages `control` (the probe's, and
/// tests').
fn send_with_control(
    fd: RawFd,
    data: &[u8],
    to: &socket2::SockAddr,
    control: &[u8],
) -> std::io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // Aligned copy of the control bytes.
    let mut ctrl = Ctrl([0u8; ERRQ_CTRL]);
    let len = control.len().min(ERRQ_CTRL);
    ctrl.0[..len].copy_from_slice(&control[..len]);
    // SAFETY: msghdr is a plain C struct; all-zero is a valid empty value, filled in below.
    let mut hdr: libc::msghdr = unsafe { zeroed() };
    hdr.msg_name = to.as_ptr().cast_mut().cast();
    hdr.msg_namelen = to.len();
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = ctrl.0.as_mut_ptr().cast();
    hdr.msg_controllen = len;
    // SAFETY: every pointer in `hdr` refers to live memory of the recorded size for the whole
    // call (`to`, `iov` over `data`, `ctrl`); the kernel only reads it.
    let r = unsafe { libc::sendmsg(fd, &hdr, libc::MSG_DONTWAIT) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::counters::Counter;
    use crate::datapath::{Arrival, Verdict, WorkerConfig};
    use crate::proto::server::client_request;
    use crate::proto::{NtpTimestamp, UnixNanos, MAX_REPLY_LEN};

    fn token(n: u64) -> TxToken {
        TxToken::from_u64(n)
    }

    #[test]
    fn keys_name_one_pending_reply_once() {
        let mut p = PendingTx::default();
        let (a, ea) = p.register(token(1));
        let (b, eb) = p.register(token(2));
        assert!(!ea && !eb);
        assert_ne!(a, b);
        assert_eq!(p.take(b), Some(token(2)));
        assert_eq!(p.take(b), None, "a report is used once");
        assert_eq!(p.take(a), Some(token(1)));
        assert_eq!(p.take(12345), None, "a key never given");
    }

    #[test]
    fn the_ring_is_bounded_and_an_old_key_never_names_a_newer_reply() {
        let mut p = PendingTx::default();
        let (first, _) = p.register(token(7));
        let mut evicted = 0;
        let mut last = first;
        for i in 0..PENDING as u64 {
            let (k, e) = p.register(token(100 + i));
            evicted += usize::from(e);
            last = k;
        }
        // The PENDING-th registration took the first one's slot: it is lost, and its key
        // (same slot, older generation) does not name the reply that holds the slot now.
        assert_eq!(evicted, 1);
        assert_eq!(last & INDEX_MASK, first & INDEX_MASK);
        assert_eq!(p.take(first), None);
        assert_eq!(p.take(last), Some(token(100 + PENDING as u64 - 1)));
    }

    /// A worker whose client table has answered one interleaved-capable request, and the
    /// token of that reply.
    fn worker_with_reply() -> (Worker, TxToken, ClockSnapshot) {
        let mut w = Worker::new(WorkerConfig {
            clients: 64,
            seed: 1,
            interleaved: true,
        });
        let t = UnixNanos(1_700_000_000_000_000_000);
        let snap = ClockSnapshot::local(2, -20, t);
        let meta = Arrival {
            src: "192.0.2.1:40000".parse().unwrap(),
            dst: None,
            ifindex: 0,
            rx: RawStamp {
                raw: t,
                quality: TimestampQuality::Kernel,
            },
        };
        let req = client_request(4, 6, NtpTimestamp(0x1234_5678_9abc_def0));
        let mut out = [0u8; MAX_REPLY_LEN];
        let v = w.on_datagram(&meta, &req, &mut out, &snap, || t);
        let Verdict::Reply { tx: Some(tok), .. } = v else {
            panic!("{v:?}")
        };
        *w.tally() = Default::default();
        (w, tok, snap)
    }

    /// The control bytes of a report for `key`, as the kernel writes them; of another
    /// origin than timestamping when `origin` is not 4.
    fn report(key: u32, origin: u8) -> Vec<u8> {
        let err = cmsg::tests::extended_err(origin, 0, key);
        let ts = (1_700_000_000, 25_000);
        cmsg::tests::report(ts, (0, 0), libc::SOL_IP, libc::IP_RECVERR, &err)
    }

    #[test]
    fn a_report_reaches_the_worker_by_key_and_an_unknown_key_is_ignored() {
        let (mut w, tok, snap) = worker_with_reply();
        let (mut s, mut ctrl) = (TxStamps::default(), [0u8; 128]);
        let (key, n) = s.request(tok, &mut ctrl, &mut w).unwrap();
        assert_eq!(n, cmsg::TX_REQUEST_SPACE);
        // Not ours: another key, or not a timestamp report.
        assert!(!s.on_report(&report(key.wrapping_add(1), 4), &mut w, &snap));
        assert!(!s.on_report(&report(key, 2), &mut w, &snap));
        assert_eq!(w.tally().get(Counter::TxStamped), 0);
        assert!(s.on_report(&report(key, 4), &mut w, &snap));
        assert_eq!(w.tally().get(Counter::TxStamped), 1);
        // The same report again (a duplicate) is no longer pending.
        assert!(!s.on_report(&report(key, 4), &mut w, &snap));
        assert_eq!(w.tally().get(Counter::TxStamped), 1);
        assert_eq!(w.tally().get(Counter::TxStampsUnused), 0);
    }

    #[test]
    fn failed_sends_and_evicted_replies_are_counted_lost() {
        let (mut w, tok, _) = worker_with_reply();
        let (mut s, mut ctrl) = (TxStamps::default(), [0u8; 128]);
        let (key, _) = s.request(tok, &mut ctrl, &mut w).unwrap();
        s.send_failed(key, &mut w);
        s.send_failed(key, &mut w);
        assert_eq!(w.tally().get(Counter::TxStampsLost), 1, "counted once");
        for _ in 0..PENDING + 3 {
            s.request(tok, &mut ctrl, &mut w).unwrap();
        }
        assert_eq!(w.tally().get(Counter::TxStampsLost), 4);
        assert!(s.request(tok, &mut ctrl[..8], &mut w).is_none(), "no room");
    }

    #[test]
    fn the_kernel_reports_the_key_each_datagram_was_sent_with() {
        if let Err(why) = probe() {
            meridian_testkit::skip_notice(&format!("transmit timestamps unavailable: {why}"));
            return;
        }
        let (mut w, tok, snap) = worker_with_reply();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to: socket2::SockAddr = rx.local_addr().unwrap().into();
        let tx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        tx.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        set_flags(&tx, SOCKET_FLAGS).unwrap();
        let mut s = TxStamps::default();
        let mut ctrl = [0u8; 128];
        // Skip a few keys, so the keys differ from the socket's own counter (0, 1, ...).
        for _ in 0..5 {
            let (k, _) = s.pending.register(tok);
            s.pending.take(k);
        }
        // A send without a request (a basic reply) is not stamped at all; the stamped ones
        // get our keys, and their stamps lie between the clock reads around the sends.
        send_with_control(tx.as_raw_fd(), &[0x24; 48], &to, &[]).unwrap();
        let before = crate::sys::clock::now();
        let mut keys = Vec::new();
        for _ in 0..2 {
            let (key, n) = s.request(tok, &mut ctrl, &mut w).unwrap();
            send_with_control(tx.as_raw_fd(), &[0x24; 48], &to, &ctrl[..n]).unwrap();
            keys.push(key);
        }
        let after = crate::sys::clock::now();
        assert_eq!(keys, [5, 6]);
        let mut got = Vec::new();
        for _ in 0..200 {
            for i in 0..recv_errq(&mut s.errq, tx.as_raw_fd()) {
                got.push(cmsg::tx_report(s.errq.control(i)).expect("a report"));
            }
            if got.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            got.iter().map(|r| r.id).collect::<Vec<_>>(),
            keys,
            "{got:?}"
        );
        for r in &got {
            let t = r.software.expect("a software stamp");
            assert!(
                t >= before && t <= after,
                "{r:?} not in [{before:?}, {after:?}]"
            );
        }
        // Through the drain, to the worker.
        let (key, n) = s.request(tok, &mut ctrl, &mut w).unwrap();
        send_with_control(tx.as_raw_fd(), &[0x24; 48], &to, &ctrl[..n]).unwrap();
        let mut read = 0;
        for _ in 0..200 {
            read += s.drain(tx.as_raw_fd(), &mut w, &snap);
            if read > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!((read, key), (1, 7));
        assert_eq!(w.tally().get(Counter::TxStamped), 1);
        assert_eq!(s.drain(tx.as_raw_fd(), &mut w, &snap), 0, "drained");
    }
}
