//! Frames for the hostile-frame test, built and changed through `meridian::wire` (the views and
//! the frame builder the server itself parses and answers with), and their sending from an
//! AF_PACKET socket.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use meridian::wire::ethernet::{self, ethertype};
use meridian::wire::{ipv4, ipv6, udp};

/// The IPv4 header of an untagged IPv4 frame, to change a field through the view.
pub fn ipv4_header(frame: &mut [u8]) -> ipv4::Packet<&mut [u8]> {
    ipv4::Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..])
}

/// The UDP header of an untagged IPv4 or IPv6 frame, to change a field through the view.
pub fn udp_header(frame: &mut [u8]) -> udp::Packet<&mut [u8]> {
    let ip_len = match ethernet::Frame::new_unchecked(&*frame).ethertype() {
        ethertype::IPV6 => ipv6::HEADER_LEN,
        _ => ipv4::Packet::new_unchecked(&frame[ethernet::HEADER_LEN..]).header_len(),
    };
    udp::Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN + ip_len..])
}

/// `frame` (untagged IPv4 without options) with `options` (a multiple of 4 bytes) after its
/// fixed IP header; header length, total length and header checksum follow.
pub fn with_ipv4_options(mut frame: Vec<u8>, options: &[u8]) -> Vec<u8> {
    let at = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    frame.splice(at..at, options.iter().map(|_| 0));
    let mut ip = ipv4_header(&mut frame);
    ip.set_version_and_header_len(ipv4::HEADER_LEN + options.len());
    ip.set_total_len(ip.total_len() + options.len() as u16);
    ip.options_mut().copy_from_slice(options);
    ip.fill_checksum();
    frame
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
        let dst = ethernet::Frame::new_unchecked(&f[..]).dst_addr();
        sa.sll_addr[..6].copy_from_slice(&dst.0);
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
