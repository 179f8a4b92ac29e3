//! Data-plane backends behind one seam. A backend opens its sockets (or rings) in the main
//! thread, so bind errors surface before any worker starts, and hands one [`WorkerIo`] to each
//! pinned worker, which runs it until the stop flag is set.
//!
//! With `sys/`, this is the only home of `unsafe`; control-message parsing (timestamps,
//! destination addresses) lives in `cmsg` and is shared by every Linux socket backend.
//!
//! Everything Linux-specific sits behind the `linux_io` cfg (set by `build.rs` on Linux unless
//! the build says `--cfg meridian_portable`): `cmsg`, `uring`, `xdp` and `udp::linux`, and the
//! Linux halves of `upstream`. Without it only `udp::portable` and std remain.

#[cfg(linux_io)]
pub mod cmsg;
#[cfg(linux_io)]
pub mod txstamps;
pub mod udp;
pub mod upstream;
#[cfg(linux_io)]
pub mod uring;
#[cfg(linux_io)]
pub mod xdp;

use std::net::SocketAddr;

/// Why a build without `linux_io` has no io-uring or xdp backend, for the operator.
pub const ONLY_PORTABLE_UDP: &str = "this build has only the portable udp backend (io_uring \
    and AF_XDP exist only in Linux builds, and a Linux build made with --cfg meridian_portable \
    leaves them out)";
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::clock::{SharedClock, TimestampQuality};
use crate::datapath::counters::PaddedCounters;
use crate::datapath::{Mailbox, Worker};

/// What a worker's backend loop gets from the runtime.
pub struct WorkerContext {
    /// Worker index (0-based).
    pub id: usize,
    pub clock: Arc<SharedClock>,
    pub counters: Arc<PaddedCounters>,
    /// Set on SIGINT/SIGTERM; loops must notice within ~100 ms.
    pub stop: Arc<AtomicBool>,
    /// Packets per receive/send call.
    pub batch: usize,
    /// What the rest of the process hands this worker (policy, client-table reads).
    pub mailbox: Arc<Mailbox>,
}

impl WorkerContext {
    /// Ends a batch (or an idle wake-up): the counters are flushed and the mailbox serviced.
    #[inline]
    pub fn end_batch(&self, worker: &mut Worker) {
        worker.end_batch(&self.counters, &self.mailbox);
    }
}

/// One worker's share of a backend.
pub trait WorkerIo: Send {
    /// Serves until `ctx.stop` is set. Errors end the worker (and are logged by the runtime).
    /// Every datagram goes through `worker` (the per-worker state, owned by this thread).
    fn run(&mut self, ctx: &WorkerContext, worker: &mut Worker) -> std::io::Result<()>;
}

/// A backend opened for N workers.
pub struct Opened {
    /// The backend's name as logged (`udp`, `udp-portable`, `io-uring`, `xdp`).
    pub name: &'static str,
    pub workers: Vec<Box<dyn WorkerIo>>,
    /// The addresses actually bound (ports resolved when 0 was asked for).
    pub bound: Vec<SocketAddr>,
    /// The receive-timestamp quality every socket achieved (the worst of them).
    pub rx_stamping: TimestampQuality,
}

/// Why a listening socket could not be set up, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "cannot bind {addr}: permission denied. Ports below 1024 need root or the \
         CAP_NET_BIND_SERVICE capability (e.g. `setcap cap_net_bind_service=+ep $(which meridian)`); \
         or listen on a high port, e.g. `--listen 127.0.0.1:1123`"
    )]
    Permission { addr: SocketAddr },
    #[error(
        "cannot bind {addr}: address already in use. Another NTP server (chronyd, ntpd, \
         systemd-timesyncd does not serve) or another meridian may hold the port: stop it, or \
         choose another port with --listen"
    )]
    InUse { addr: SocketAddr },
    #[error("cannot bind {addr}: the address is not configured on this host")]
    NotAvailable { addr: SocketAddr },
    #[error("cannot set up {addr}: {source}")]
    Other {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl SetupError {
    /// Maps a bind/setup error for `addr` to its operator-facing variant.
    pub fn from_io(addr: SocketAddr, e: std::io::Error) -> SetupError {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => SetupError::Permission { addr },
            std::io::ErrorKind::AddrInUse => SetupError::InUse { addr },
            std::io::ErrorKind::AddrNotAvailable => SetupError::NotAvailable { addr },
            _ => SetupError::Other { addr, source: e },
        }
    }
}
