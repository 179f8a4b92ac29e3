//! Ethernet, 802.1Q, IPv4, IPv6 and UDP on the wire: typed views over a byte buffer, one
//! internet checksum, and a builder for UDP frames. No I/O, no clock, no unsafe.
//!
//! Each header is a view, `Frame<T>` or `Packet<T>` over any `T: AsRef<[u8]>` (`&[u8]` to
//! read, `&mut [u8]` to write in place), with its fields named as byte ranges in a private
//! `mod field`. `new_checked` checks the buffer's length once ([`Error::Truncated`] when it is
//! shorter than the fixed header, [`Error::Malformed`] when a length field contradicts the header
//! or the buffer); `new_unchecked` skips that, for a buffer about to be written. Accessors and
//! setters never panic, whatever the buffer: a field that is not there reads as 0 (a payload as
//! empty) and is not written. What is *accepted* — which versions, options, fragments or
//! checksums a receiver answers — is the caller's policy, not the view's (the xdp backend's is
//! in `meridian::io::xdp::frame`).
//!
//! The views are meridian's own, shaped after smoltcp's `wire` module. This crate has no
//! dependencies and is platform-independent; `meridian` re-exports it as `meridian::wire`, and
//! the tests of `meridian-bpf` (which `meridian` depends on) build their frames with it.
#![forbid(unsafe_code)]

pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod udp;
pub mod udp_frame;

pub use udp_frame::{build_udp, build_udp_vec, UdpFrameSpec};

use std::ops::Range;

/// Why a buffer cannot be viewed as a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Shorter than the header's fixed part.
    Truncated,
    /// A length field disagrees with the header's rules or with the buffer.
    Malformed,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "shorter than the header",
            Error::Malformed => "a length field disagrees with the header or the buffer",
        })
    }
}

impl std::error::Error for Error {}

/// IP protocol numbers (the IPv4 protocol field, IPv6's next header).
pub mod protocol {
    pub const UDP: u8 = 17;
}

// Bounds-checked field access shared by the views: out of range reads 0 and writes nothing.

fn get_u8(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

fn set_u8(buf: &mut [u8], at: usize, v: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = v;
    }
}

fn get_u16(buf: &[u8], r: Range<usize>) -> u16 {
    get_bytes(buf, r).map_or(0, u16::from_be_bytes)
}

fn set_u16(buf: &mut [u8], r: Range<usize>, v: u16) {
    set_bytes(buf, r, &v.to_be_bytes());
}

fn get_bytes<const N: usize>(buf: &[u8], r: Range<usize>) -> Option<[u8; N]> {
    buf.get(r)?.try_into().ok()
}

fn set_bytes(buf: &mut [u8], r: Range<usize>, v: &[u8]) {
    if let Some(b) = buf.get_mut(r) {
        if b.len() == v.len() {
            b.copy_from_slice(v);
        }
    }
}

/// Exchanges two `N`-byte fields of `buf` (addresses, ports); nothing when either is out of
/// range.
fn swap_fields<const N: usize>(buf: &mut [u8], a: Range<usize>, b: Range<usize>) {
    debug_assert!(a.len() == N && b.len() == N);
    if let (Some(x), Some(y)) = (
        get_bytes::<N>(buf, a.clone()),
        get_bytes::<N>(buf, b.clone()),
    ) {
        set_bytes(buf, a, &y);
        set_bytes(buf, b, &x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    proptest! {
        /// Whatever the bytes, checked or not, no accessor or setter panics.
        #[test]
        fn views_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let (v4, v6) = (IpAddr::from(Ipv4Addr::LOCALHOST), IpAddr::from(Ipv6Addr::LOCALHOST));
            let f = ethernet::Frame::new_unchecked(&bytes[..]);
            let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload(), f.untag());
            let _ = ethernet::Frame::new_checked(&bytes[..]);
            let t = ethernet::VlanTag::new_unchecked(&bytes[..]);
            let _ = (t.tci(), t.vlan_id(), t.ethertype(), t.payload());
            let p = ipv4::Packet::new_unchecked(&bytes[..]);
            let _ = (p.version(), p.header_len(), p.total_len(), p.frag_offset(), p.is_fragment());
            let _ = (p.src_addr(), p.dst_addr(), p.options(), p.payload(), p.verify_checksum());
            let _ = (ipv4::Packet::new_checked(&bytes[..]), p.into_payload());
            let p = ipv6::Packet::new_unchecked(&bytes[..]);
            let _ = (p.version(), p.traffic_class(), p.flow_label(), p.payload_len());
            let _ = (p.next_header(), p.src_addr(), p.dst_addr(), p.payload(), p.into_payload());
            let _ = ipv6::Packet::new_checked(&bytes[..]);
            let p = udp::Packet::new_unchecked(&bytes[..]);
            let _ = (p.src_port(), p.len(), p.payload(), p.checksum_state(v4, v6), p.into_payload());
            let _ = udp::Packet::new_checked(&bytes[..]);

            let mut b = bytes.clone();
            let mut f = ethernet::Frame::new_unchecked(&mut b[..]);
            f.swap_addresses();
            f.set_ethertype(1);
            let _ = f.payload_mut();
            let mut t = ethernet::VlanTag::new_unchecked(&mut b[..]);
            t.set_tci(1);
            let _ = t.payload_mut();
            let mut p = ipv4::Packet::new_unchecked(&mut b[..]);
            p.swap_addresses();
            p.set_frag(true, true, 8);
            p.fill_checksum();
            let _ = p.options_mut();
            let _ = p.payload_mut();
            p.set_version_and_ihl(15, 15);
            let _ = p.options_mut();
            let mut p = ipv6::Packet::new_unchecked(&mut b[..]);
            p.swap_addresses();
            p.set_version_tc_flow(1, 2);
            p.set_version(15);
            let _ = p.payload_mut();
            let mut p = udp::Packet::new_unchecked(&mut b[..]);
            p.swap_ports();
            p.fill_checksum(v6, v6);
            let _ = p.payload_mut();
        }
    }

    #[test]
    fn helpers_never_panic_out_of_range() {
        let mut b = [1u8, 2, 3];
        assert_eq!(get_u8(&b, 3), 0);
        assert_eq!(get_u16(&b, 2..4), 0);
        assert_eq!(get_u16(&b, 1..3), 0x0203);
        assert_eq!(get_bytes::<4>(&b, 0..3), None);
        set_u16(&mut b, 2..4, 0xffff);
        set_u8(&mut b, 9, 0xff);
        set_bytes(&mut b, 0..2, &[9]);
        assert_eq!(b, [1, 2, 3]);
        swap_fields::<1>(&mut b, 0..1, 2..3);
        assert_eq!(b, [3, 2, 1]);
        swap_fields::<2>(&mut b, 0..2, 2..4);
        assert_eq!(b, [3, 2, 1]);
    }
}
