//! Free loopback ports.

use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};

/// A UDP port free on every loopback family asked for (bound, then released: a server started
/// on it may still find it taken, so callers retry on "address already in use").
pub fn free_port(ipv4: bool, ipv6: bool) -> Option<u16> {
    for _ in 0..50 {
        let first = if ipv4 {
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        } else {
            UdpSocket::bind((Ipv6Addr::LOCALHOST, 0))
        };
        let Ok(first) = first else { continue };
        let port = first.local_addr().ok()?.port();
        if ipv4 && ipv6 && UdpSocket::bind((Ipv6Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        return Some(port);
    }
    None
}

/// True when a UDP socket can be bound on [::1].
pub fn ipv6_available() -> bool {
    UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}
