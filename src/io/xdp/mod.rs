//! The AF_XDP backend: kernel bypass for the served UDP ports.
//!
//! For each configured interface the XDP program from `meridian-bpf` is loaded (with the ports
//! of the listen addresses) and attached; it redirects UDP to those ports to the AF_XDP socket
//! of the receiving queue, with a receive timestamp in the frame's metadata, and passes all
//! other traffic to the kernel. Each RX queue gets one socket ([`socket::Xsk`]: its own UMEM
//! and fill/completion/RX/TX rings) and one pinned worker.
//!
//! A worker's loop (one socket):
//!
//! 1. reap TX completions: hand each reply's TX timestamp (AF_XDP TX metadata) to the worker
//!    state (`Worker::on_tx_stamp`: the client's next, interleaved reply carries it), and put
//!    the frame back on the free list;
//! 2. top up the fill ring from the free list;
//! 3. take a batch of RX descriptors; for each frame read the [`RxMeta`] timestamp (CLOCK_TAI →
//!    system time through the measured TAI offset), validate the frame and answer it in place
//!    ([`frame::answer_in_place`]: MACs, addresses and ports swapped, NTP reply written by
//!    `proto`, lengths shrunk, checksums fixed), and queue it on the TX ring in the same frame;
//!    dropped frames go back to the free list;
//! 4. publish the TX ring and kick the kernel (`sendto`) when it asks for a wakeup;
//! 5. with nothing received, `poll` for up to 100 ms (so the stop flag is seen).
//!
//! Dropping the backend (workers exit) closes the sockets and detaches the program.

pub mod frame;
pub mod netdev;
mod ring;
pub mod socket;
mod umem;

pub use meridian_bpf::{PortMatch, ProgramConfig, RxMeta};
pub use socket::{BindMode, BindTarget, RxFrame, Xsk, XskError, MAX_TX_LEN, TX_OFFSET};
pub use umem::FRAME_SIZE;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_bpf::{ifindex, XdpLink, XdpProgram, XskMap};

use crate::clock::{RawStamp, SharedClock, TimestampQuality};
use crate::config::XdpMode;
use crate::datapath::{Arrival, TxToken, Worker};
use crate::io::{Opened, WorkerContext, WorkerIo};
use crate::proto::UnixNanos;
use crate::sys;
use frame::AddrFilter;
use umem::{TxMetadata, Umem};

/// How long a worker waits in poll(2) before looking at the stop flag again.
const POLL_MS: i32 = 100;
/// How often the TAI offset and the local addresses are re-read.
const REFRESH: Duration = Duration::from_secs(1);
/// The most batches one kick of the TX ring is retried for (copy mode sends 32 per call).
const MAX_KICKS: usize = 64;

/// What the xdp backend serves.
#[derive(Clone, Debug)]
pub struct XdpOptions {
    pub listen: Vec<SocketAddr>,
    pub interfaces: Vec<String>,
    pub mode: XdpMode,
    /// RX queues to serve on each interface; empty = all.
    pub queues: Vec<u32>,
}

/// Why the xdp backend cannot run, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("{0}")]
    Config(String),
    #[error("interface {name:?}: {source}")]
    Interface {
        name: String,
        source: meridian_bpf::Error,
    },
    #[error("cannot use bpf(2) for XDP (needs root or CAP_BPF + CAP_NET_ADMIN): {0}")]
    Bpf(meridian_bpf::Error),
    #[error("interface {name:?}: {source}")]
    Program {
        name: String,
        source: meridian_bpf::Error,
    },
    #[error("interface {name:?} queue {queue}: AF_XDP socket: {source}")]
    Socket {
        name: String,
        queue: u32,
        source: socket::XskError,
    },
}

/// Whether this process can run the xdp backend at all (bpf(2) for XDP usable).
pub fn probe() -> Result<(), String> {
    meridian_bpf::probe().map_err(|e| {
        if e.is_permission_denied() {
            format!("bpf(2) refused ({e}); the xdp backend needs root or CAP_BPF + CAP_NET_ADMIN")
        } else {
            format!("bpf(2) unavailable: {e}")
        }
    })
}

/// An AF_XDP socket with its own XDP program attached: what a user of this module outside the
/// server (the load generator) needs to send and receive raw frames on one queue. Built by
/// [`XskBinding::open`]; dropping it detaches the program (the link closes first) and closes
/// the socket.
pub struct XskBinding {
    /// First field, so it drops first: the program is detached before the socket closes.
    _link: XdpLink,
    /// The bound socket: transmit, receive, refill (see [`socket`]).
    pub xsk: Xsk,
    _map: XskMap,
    _program: XdpProgram,
    /// The mode the program was attached in (auto resolves to native or generic).
    pub attached: meridian_bpf::XdpMode,
}

impl XskBinding {
    /// Loads the program for `cfg`, attaches it to `ifname` in `mode`, binds an AF_XDP socket
    /// to `queue` (zero-copy first, copy mode when refused; EBUSY retried for
    /// [`socket::BUSY_GRACE`]) and puts it into the program's XSKMAP. The program redirects
    /// only what `cfg` selects, and only on `queue`; everything else reaches the kernel.
    pub fn open(
        ifname: &str,
        queue: u32,
        cfg: &ProgramConfig,
        mode: XdpMode,
    ) -> Result<XskBinding, XdpError> {
        probe().map_err(XdpError::Config)?;
        let ifx = ifindex(ifname).map_err(|source| XdpError::Interface {
            name: ifname.to_string(),
            source,
        })?;
        let queues = netdev::rx_queue_count(ifname).max(queue + 1);
        let program_err = |source| XdpError::Program {
            name: ifname.to_string(),
            source,
        };
        let map = XskMap::create(queues).map_err(XdpError::Bpf)?;
        let program = XdpProgram::load(cfg, &map).map_err(program_err)?;
        let link = program.attach(ifx, bpf_mode(mode)).map_err(program_err)?;
        let xsk = Xsk::open(BindTarget {
            ifname,
            ifindex: ifx,
            queue,
            try_zero_copy: true,
        })
        .map_err(|source| XdpError::Socket {
            name: ifname.to_string(),
            queue,
            source,
        })?;
        map.insert(queue, xsk.as_fd()).map_err(program_err)?;
        Ok(XskBinding {
            attached: link.mode(),
            _link: link,
            xsk,
            _map: map,
            _program: program,
        })
    }

    /// Detaches the program, then closes the socket (what dropping does).
    pub fn close(self) {
        drop(self);
    }
}

fn bpf_mode(mode: XdpMode) -> meridian_bpf::XdpMode {
    match mode {
        XdpMode::Auto => meridian_bpf::XdpMode::Auto,
        XdpMode::Native => meridian_bpf::XdpMode::Native,
        XdpMode::Generic => meridian_bpf::XdpMode::Generic,
    }
}

/// The program attached to one interface. Dropping the last reference detaches it.
struct Attachment {
    name: String,
    _link: XdpLink,
    map: XskMap,
    _program: XdpProgram,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        tracing::info!(interface = %self.name, "xdp: program detached");
    }
}

/// What a frame in flight on the TX ring needs at completion.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    /// The worker's token for the reply's transmit timestamp (interleaved mode).
    tx: Option<TxToken>,
    rx: UnixNanos,
}

/// One worker: one socket on one queue.
pub struct XdpWorker {
    xsk: Xsk,
    ifname: String,
    filter: AddrFilter,
    /// Frame base addresses owned by us and not on any ring.
    free: Vec<u64>,
    /// Per frame index: what was sent from it (for the TX timestamp).
    in_flight: Vec<Option<InFlight>>,
    /// Frames on the TX ring or awaiting completion.
    tx_outstanding: u32,
    tai_offset_ns: i64,
    last_refresh: Instant,
    /// Transmit timestamps read from completions since start.
    tx_stamps: u64,
    first_tx_logged: bool,
    /// Keeps the program attached while any worker of the interface runs.
    _attachment: Arc<Attachment>,
}

/// Opens the backend: per interface, attach the program and bind one socket per queue.
pub fn open(opts: &XdpOptions) -> Result<Opened, XdpError> {
    if opts.interfaces.is_empty() {
        return Err(XdpError::Config(
            "the xdp backend needs an interface: give --interface IFACE or server.interface".into(),
        ));
    }
    let mut ports: Vec<u16> = opts.listen.iter().map(|a| a.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.contains(&0) {
        return Err(XdpError::Config(
            "the xdp backend needs explicit ports (port 0 cannot be chosen by the kernel: no \
             socket is bound)"
                .into(),
        ));
    }
    if ports.len() > meridian_bpf::MAX_PORTS {
        return Err(XdpError::Config(format!(
            "the xdp backend serves at most {} distinct ports, got {}",
            meridian_bpf::MAX_PORTS,
            ports.len()
        )));
    }
    probe().map_err(XdpError::Config)?;
    let mut cfg = ProgramConfig::new(&ports);
    cfg.ipv4 = opts.listen.iter().any(|a| a.is_ipv4());
    cfg.ipv6 = opts.listen.iter().any(|a| a.is_ipv6());
    let mode = bpf_mode(opts.mode);
    let mut filter = AddrFilter::new(&opts.listen);
    if filter.has_wildcard() {
        filter.set_local(netdev::local_addresses().unwrap_or_default());
    }
    let tai_offset_ns = sys::clock::tai_offset_ns();

    let mut workers: Vec<Box<dyn WorkerIo>> = Vec::new();
    for name in &opts.interfaces {
        let ifx = ifindex(name).map_err(|source| XdpError::Interface {
            name: name.clone(),
            source,
        })?;
        let queue_count = netdev::rx_queue_count(name);
        let queues: Vec<u32> = if opts.queues.is_empty() {
            (0..queue_count).collect()
        } else {
            opts.queues.clone()
        };
        if let Some(q) = queues.iter().find(|&&q| q >= queue_count) {
            return Err(XdpError::Config(format!(
                "interface {name:?} has {queue_count} RX queue(s) (0..{queue_count}); queue {q} \
                 does not exist"
            )));
        }
        netdev::log_udp_steering(name, queue_count);
        let map = XskMap::create(queue_count).map_err(XdpError::Bpf)?;
        let program = XdpProgram::load(&cfg, &map).map_err(|source| XdpError::Program {
            name: name.clone(),
            source,
        })?;
        let link = program
            .attach(ifx, mode)
            .map_err(|source| XdpError::Program {
                name: name.clone(),
                source,
            })?;
        let attached = match link.mode() {
            meridian_bpf::XdpMode::Generic => "generic",
            _ => "native",
        };
        let attachment = Arc::new(Attachment {
            name: name.clone(),
            _link: link,
            map,
            _program: program,
        });
        let mut try_zero_copy = true;
        let mut modes = Vec::new();
        let mut tx_metadata_all = true;
        for &queue in &queues {
            let xsk = Xsk::open(BindTarget {
                ifname: name,
                ifindex: ifx,
                queue,
                try_zero_copy,
            })
            .map_err(|source| XdpError::Socket {
                name: name.clone(),
                queue,
                source,
            })?;
            if xsk.mode == BindMode::Copy && try_zero_copy {
                tracing::info!(
                    interface = %name,
                    "xdp: zero-copy refused by the driver; AF_XDP sockets run in copy mode"
                );
                try_zero_copy = false;
            }
            modes.push(xsk.mode);
            tx_metadata_all &= xsk.tx_metadata;
            attachment
                .map
                .insert(queue, xsk.as_fd())
                .map_err(|source| XdpError::Program {
                    name: name.clone(),
                    source,
                })?;
            workers.push(Box::new(XdpWorker::new(
                xsk,
                name.clone(),
                filter.clone(),
                tai_offset_ns,
                attachment.clone(),
            )));
        }
        tracing::info!(
            interface = %name,
            ifindex = ifx,
            xdp_mode = attached,
            queues = ?queues,
            zero_copy = modes.iter().all(|m| *m == BindMode::ZeroCopy),
            tx_timestamps = tx_metadata_all,
            ports = ?ports,
            tai_offset_s = tai_offset_ns / 1_000_000_000,
            "xdp: program attached, {} AF_XDP socket(s) bound",
            queues.len()
        );
    }
    Ok(Opened {
        name: "xdp",
        workers,
        bound: opts.listen.clone(),
        rx_stamping: TimestampQuality::Driver,
    })
}

impl XdpWorker {
    fn new(
        xsk: Xsk,
        ifname: String,
        filter: AddrFilter,
        tai_offset_ns: i64,
        attachment: Arc<Attachment>,
    ) -> XdpWorker {
        let mut xsk = xsk;
        let frames = xsk.umem.frames();
        let mut w = XdpWorker {
            // The worker drives the rings itself: it owns every frame from the start.
            free: std::mem::take(&mut xsk.pool),
            in_flight: vec![None; frames as usize],
            xsk,
            ifname,
            filter,
            tx_outstanding: 0,
            tai_offset_ns,
            last_refresh: Instant::now(),
            tx_stamps: 0,
            first_tx_logged: false,
            _attachment: attachment,
        };
        // Fill the fill ring now, before the socket goes into the XSKMAP: frames redirected
        // before the worker thread runs then have somewhere to land.
        w.refill();
        w
    }

    /// A kernel timestamp in CLOCK_TAI → system time.
    fn tai_to_system(&self, tai_ns: u64) -> UnixNanos {
        UnixNanos((tai_ns as i64).saturating_sub(self.tai_offset_ns))
    }

    fn refresh(&mut self) {
        self.tai_offset_ns = sys::clock::tai_offset_ns();
        if self.filter.has_wildcard() {
            match netdev::local_addresses() {
                Ok(a) => self.filter.set_local(a),
                Err(e) => tracing::debug!("getifaddrs: {e}"),
            }
        }
        self.last_refresh = Instant::now();
    }

    /// Moves completed TX frames to the free list, handing each reply's transmit timestamp
    /// (AF_XDP TX metadata) to the worker for the client's next, interleaved reply.
    fn reap_completions(&mut self, worker: &mut Worker, clock: &SharedClock) {
        let n = self.xsk.comp.available(socket::RING_SIZE);
        let mut snap = None;
        for i in 0..n {
            let addr = self.xsk.comp.read(i);
            let base = Umem::frame_base(addr);
            let idx = (base / u64::from(FRAME_SIZE)) as usize;
            let sent = self.in_flight.get_mut(idx).and_then(Option::take);
            if let (Some(sent), true) = (sent, self.xsk.tx_metadata) {
                let offset = (addr - base) as usize;
                let stamp = self
                    .xsk
                    .umem
                    .frame_mut(addr)
                    .and_then(|f| TxMetadata::read(f, offset))
                    .map(|m| m.tx_timestamp())
                    .unwrap_or(0);
                if stamp != 0 {
                    let s = RawStamp {
                        raw: self.tai_to_system(stamp),
                        quality: match self.xsk.mode {
                            // TODO(phc): zero-copy drivers report the NIC's clock; map it with
                            // the per-interface PHC→system mapping once the discipline thread
                            // publishes one.
                            BindMode::ZeroCopy => TimestampQuality::Hardware,
                            BindMode::Copy => TimestampQuality::Kernel,
                        },
                    };
                    self.tx_stamps += 1;
                    if !self.first_tx_logged {
                        self.first_tx_logged = true;
                        tracing::info!(
                            interface = %self.ifname,
                            queue = self.xsk.queue,
                            quality = s.quality.as_str(),
                            rx_to_tx_us = s.raw.nanos_since(sent.rx) as f64 / 1e3,
                            "xdp: first TX completion timestamp"
                        );
                    }
                    if let Some(token) = sent.tx {
                        let snap = snap.get_or_insert_with(|| clock.load());
                        worker.on_tx_stamp(token, s, snap);
                    }
                }
            }
            self.free.push(base);
        }
        self.xsk.comp.release(n);
        self.tx_outstanding = self.tx_outstanding.saturating_sub(n);
    }

    /// Gives free frames to the kernel's fill ring.
    fn refill(&mut self) {
        let n = self.xsk.fill.free(self.free.len() as u32);
        for i in 0..n {
            let addr = self.free.pop().expect("n <= free.len()");
            self.xsk.fill.write(i, addr);
        }
        self.xsk.fill.submit(n);
    }

    /// Makes the kernel transmit what is on the TX ring (copy mode: 32 frames per call).
    fn kick(&mut self, worker: &mut Worker, clock: &SharedClock) {
        for _ in 0..MAX_KICKS {
            if self.xsk.tx.unconsumed() == 0 {
                return;
            }
            if !self.xsk.tx.needs_wakeup() {
                return;
            }
            match self.xsk.kick_tx() {
                None => {}
                Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                    // Completion ring full or the device busy: make room and go on.
                    self.reap_completions(worker, clock);
                }
                Some(libc::EINTR) => {}
                Some(e) => {
                    tracing::debug!(
                        interface = %self.ifname,
                        "xdp: TX kick failed: {}",
                        std::io::Error::from_raw_os_error(e)
                    );
                    return;
                }
            }
        }
    }

    /// Handles one batch of received frames; returns how many there were.
    fn rx_batch(&mut self, ctx: &WorkerContext, worker: &mut Worker) -> u32 {
        let batch = (ctx.batch.clamp(1, 1024)) as u32;
        let n = self.xsk.rx.available(batch);
        if n == 0 {
            return 0;
        }
        let snap = ctx.clock.load();
        let user = RawStamp {
            raw: sys::clock::now(),
            quality: TimestampQuality::User,
        };
        let tx_room = self.xsk.tx.free(n);
        let mut queued = 0u32;
        for i in 0..n {
            let desc = self.xsk.rx.read(i);
            let base = Umem::frame_base(desc.addr);
            let offset = (desc.addr - base) as usize;
            let tai_offset = self.tai_offset_ns;
            let tx_metadata = self.xsk.tx_metadata;
            let Some(frame) = self.xsk.umem.frame_mut(desc.addr) else {
                // An address outside the UMEM: never produced by a sane kernel; skip it.
                continue;
            };
            let len = (desc.len as usize).min(frame.len().saturating_sub(offset));
            let early = RxMeta::read_before(frame, offset)
                .filter(RxMeta::is_valid)
                .map(|m| {
                    (
                        UnixNanos((m.timestamp_ns as i64).saturating_sub(tai_offset)),
                        // TODO(phc): a KIND_HARDWARE stamp is in the NIC's clock; it is read as
                        // TAI until the discipline thread publishes a PHC→system mapping.
                        if m.kind == RxMeta::KIND_HARDWARE {
                            TimestampQuality::Hardware
                        } else {
                            TimestampQuality::Driver
                        },
                    )
                });
            let rx = Arrival::stamp(early, user);
            let pkt = &mut frame[offset..offset + len];
            let answered = frame::answer_in_place(pkt, &self.filter, &snap, rx, worker);
            match answered {
                Some(a) if queued < tx_room => {
                    let mut options = 0;
                    if tx_metadata {
                        let meta = TxMetadata {
                            flags: u64::from(libc::XDP_TXMD_FLAGS_TIMESTAMP),
                            ..TxMetadata::default()
                        };
                        if meta.write(frame, offset) {
                            options = libc::XDP_TX_METADATA;
                        }
                    }
                    self.xsk.tx.write(
                        queued,
                        libc::xdp_desc {
                            addr: desc.addr,
                            len: a.len as u32,
                            options,
                        },
                    );
                    let idx = (base / u64::from(FRAME_SIZE)) as usize;
                    if let Some(slot) = self.in_flight.get_mut(idx) {
                        *slot = Some(InFlight {
                            tx: a.tx,
                            rx: rx.raw,
                        });
                    }
                    queued += 1;
                }
                Some(_) => {
                    // No room on the TX ring: count it like a failed send.
                    worker.on_send_failed();
                    self.free.push(base);
                }
                None => self.free.push(base),
            }
        }
        self.xsk.rx.release(n);
        self.xsk.tx.submit(queued);
        self.tx_outstanding += queued;
        n
    }

    /// Waits (bounded) for the replies still in flight, so they leave before the socket
    /// closes.
    fn finish_in_flight(&mut self, worker: &mut Worker, clock: &SharedClock) {
        let deadline = Instant::now() + Duration::from_millis(200);
        while self.tx_outstanding > 0 && Instant::now() < deadline {
            self.kick(worker, clock);
            self.reap_completions(worker, clock);
            if self.tx_outstanding > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

impl WorkerIo for XdpWorker {
    fn run(&mut self, ctx: &WorkerContext, worker: &mut Worker) -> std::io::Result<()> {
        while !ctx.stop.load(Ordering::Relaxed) {
            if self.last_refresh.elapsed() >= REFRESH {
                self.refresh();
            }
            self.reap_completions(worker, &ctx.clock);
            self.refill();
            let n = self.rx_batch(ctx, worker);
            if self.tx_outstanding > 0 {
                self.kick(worker, &ctx.clock);
            }
            ctx.end_batch(worker);
            if n == 0 {
                // Nothing received: sleep in poll (short while replies are still in flight).
                let wait = if self.tx_outstanding > 0 { 1 } else { POLL_MS };
                self.xsk.wait(wait)?;
            }
        }
        self.finish_in_flight(worker, &ctx.clock);
        ctx.end_batch(worker);
        if let Some(st) = self.xsk.statistics() {
            tracing::debug!(
                interface = %self.ifname,
                queue = self.xsk.queue,
                rx_dropped = st.rx_dropped,
                rx_ring_full = st.rx_ring_full,
                rx_fill_ring_empty = st.rx_fill_ring_empty_descs,
                tx_invalid = st.tx_invalid_descs,
                tx_stamps = self.tx_stamps,
                "xdp: socket statistics at exit"
            );
        }
        Ok(())
    }
}
