//! The UDP backend: the portable fallback and the only backend on non-Linux systems.
//!
//! * Linux ([`linux`]): one socket per worker and address with SO_REUSEPORT, recvmmsg/sendmmsg
//!   batches, SO_TIMESTAMPING kernel receive stamps, PKTINFO so replies leave from the address
//!   the request was sent to.
//! * Elsewhere ([`portable`]): std sockets shared by the workers, one datagram per call,
//!   user-space receive stamps. It is compiled everywhere (and tested on Linux).

#[cfg(target_os = "linux")]
pub mod linux;
pub mod portable;

use std::net::SocketAddr;

use super::{Opened, SetupError};

/// Opens the best UDP implementation for this platform.
pub fn open(listen: &[SocketAddr], workers: usize, batch: usize) -> Result<Opened, SetupError> {
    #[cfg(target_os = "linux")]
    {
        linux::open(listen, workers, batch)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = batch;
        portable::open(listen, workers)
    }
}
