//! Hand-built frames for the hostile-frame test and their sending from an AF_PACKET socket
//! (moved here unchanged from the test file).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{c6, s6, C4};

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn sum16(mut sum: u64, data: &[u8]) -> u64 {
    for c in data.chunks(2) {
        sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    sum
}

/// A UDP datagram from 40001 to 123 with a correct checksum over the pseudo-header.
pub fn udp(src: &[u8], dst: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = vec![0x9c, 0x41, 0, 123];
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut s = 17 + len as u64;
    s = sum16(s, src);
    s = sum16(s, dst);
    let c = !fold(sum16(s, &u));
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    u
}

pub fn ipv4(dst: Ipv4Addr, frag: u16, options: &[u8], l4: &[u8]) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let total = ihl * 4 + l4.len();
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, 17, 0, 0]);
    h.extend_from_slice(&C4.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(options);
    let c = !fold(sum16(0, &h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

pub fn ipv6(l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[17, 64]);
    h.extend_from_slice(&c6().octets());
    h.extend_from_slice(&s6().octets());
    h.extend_from_slice(l4);
    h
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

/// Sends raw frames out of `dev` (AF_PACKET) from the calling thread's namespace.
pub fn send_frames(dev: &str, frames: &[Vec<u8>]) {
    let ifindex = {
        let c = std::ffi::CString::new(dev).unwrap();
        // SAFETY: `c` is a valid NUL-terminated name for the duration of the call.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    };
    assert_ne!(ifindex, 0, "no interface {dev}");
    // SAFETY: plain socket(2); the result is checked and owned below.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(raw >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    for f in frames {
        sa.sll_addr[..6].copy_from_slice(&f[..6]);
        // SAFETY: `f` is readable for its length and `sa` is a valid sockaddr_ll of the size
        // passed.
        let r = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert!(
            r >= 0,
            "sendto AF_PACKET: {}",
            std::io::Error::last_os_error()
        );
    }
}
