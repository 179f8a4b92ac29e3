//! The UDP backend: the portable fallback and the only backend on non-Linux systems.
//!
//! * Linux (`linux`, behind the `linux_io` cfg): one socket per worker and address with
//!   SO_REUSEPORT, recvmmsg/sendmmsg batches, SO_TIMESTAMPING kernel receive and transmit
//!   stamps, PKTINFO so replies leave from the address the request was sent to.
//! * Elsewhere ([`portable`]): std sockets shared by the workers, one datagram per call,
//!   user-space receive stamps. It is compiled everywhere, and it is the backend of a build
//!   without the `linux_io` cfg (another system, or `--cfg meridian_portable` on Linux, which
//!   is how CI tests it).

#[cfg(linux_io)]
pub mod linux;
pub mod portable;

use std::net::SocketAddr;

use super::{Opened, SetupError};

/// Opens the best UDP implementation for this platform. `tx_stamps`: have the kernel stamp
/// replies as they leave, for interleaved mode (Linux; the portable path has no such stamps).
pub fn open(
    listen: &[SocketAddr],
    workers: usize,
    batch: usize,
    tx_stamps: bool,
) -> Result<Opened, SetupError> {
    #[cfg(linux_io)]
    {
        linux::open(listen, workers, batch, tx_stamps)
    }
    #[cfg(not(linux_io))]
    {
        let _ = (batch, tx_stamps);
        portable::open(listen, workers)
    }
}
