//! Building a whole Ethernet/IP/UDP frame around a payload (the load generator's AF_XDP
//! transport sends these; the xdp backend's in-place reply is the same headers, rewritten).

use std::net::{IpAddr, SocketAddr};

use super::ethernet::{self, ethertype, Address};
use super::{ipv4, ipv6, protocol, udp};

/// TTL / hop limit of the frames built here.
pub const TTL: u8 = 64;

/// The addresses of a UDP datagram to frame with [`build_udp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpFrameSpec {
    /// Ethernet source (the sending interface's MAC).
    pub src_mac: [u8; 6],
    /// Ethernet destination (the next hop's MAC, from the neighbour table).
    pub dst_mac: [u8; 6],
    /// IP source address and UDP source port.
    pub src: SocketAddr,
    /// IP destination address and UDP destination port (same family as `src`).
    pub dst: SocketAddr,
}

impl UdpFrameSpec {
    /// Length of the Ethernet, IP and UDP headers in front of the payload.
    pub fn header_len(&self) -> usize {
        let ip = if self.src.is_ipv6() {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        };
        ethernet::HEADER_LEN + ip + udp::HEADER_LEN
    }
}

/// Writes an Ethernet II frame (no VLAN tag) carrying `payload` in a UDP datagram as `spec`
/// says into the start of `buf`: IPv4 without options, DF set, identification 0, TTL 64,
/// header checksum; or IPv6 with hop limit 64, traffic class and flow label 0. The UDP
/// checksum is always computed (0 is sent as 0xffff). Returns the frame's length, or `None`
/// (nothing written) when `buf` is too short, the families of `src` and `dst` differ, or the
/// datagram would exceed 65535 bytes.
pub fn build_udp(buf: &mut [u8], spec: &UdpFrameSpec, payload: &[u8]) -> Option<usize> {
    let udp_len = udp::HEADER_LEN + payload.len();
    let len = spec.header_len() + payload.len();
    if udp_len > usize::from(u16::MAX) - ipv4::HEADER_LEN || buf.len() < len {
        return None;
    }
    let ethertype = match (spec.src.ip(), spec.dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => ethertype::IPV4,
        (IpAddr::V6(_), IpAddr::V6(_)) => ethertype::IPV6,
        _ => return None,
    };
    let frame = buf.get_mut(..len)?;
    let mut eth = ethernet::Frame::new_unchecked(&mut *frame);
    eth.set_dst_addr(Address(spec.dst_mac));
    eth.set_src_addr(Address(spec.src_mac));
    eth.set_ethertype(ethertype);
    let net = eth.payload_mut();
    let datagram = match (spec.src.ip(), spec.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = ipv4::Packet::new_unchecked(&mut *net);
            ip.set_version_and_header_len(ipv4::HEADER_LEN);
            ip.set_dscp_ecn(0);
            ip.set_total_len((ipv4::HEADER_LEN + udp_len) as u16);
            ip.set_ident(0); // unused with DF
            ip.set_frag(true, false, 0);
            ip.set_ttl(TTL);
            ip.set_protocol(protocol::UDP);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
            ip.fill_checksum();
            net.get_mut(ipv4::HEADER_LEN..)?
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = ipv6::Packet::new_unchecked(&mut *net);
            ip.set_version_tc_flow(0, 0);
            ip.set_payload_len(udp_len as u16);
            ip.set_next_header(protocol::UDP);
            ip.set_hop_limit(TTL);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
            net.get_mut(ipv6::HEADER_LEN..)?
        }
        _ => return None,
    };
    let mut u = udp::Packet::new_unchecked(datagram);
    u.set_src_port(spec.src.port());
    u.set_dst_port(spec.dst.port());
    u.set_len(udp_len as u16);
    u.payload_mut().copy_from_slice(payload);
    u.fill_checksum(spec.src.ip(), spec.dst.ip());
    Some(len)
}

/// The frame [`build_udp`] writes, in a buffer of its own of just its length (for tests and
/// tools that do not write into a ring); `None` where [`build_udp`] refuses.
pub fn build_udp_vec(spec: &UdpFrameSpec, payload: &[u8]) -> Option<Vec<u8>> {
    let mut frame = vec![0; spec.header_len() + payload.len()];
    build_udp(&mut frame, spec, payload)?;
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn spec(src: IpAddr, dst: IpAddr) -> UdpFrameSpec {
        UdpFrameSpec {
            src_mac: A,
            dst_mac: B,
            src: SocketAddr::new(src, 40000),
            dst: SocketAddr::new(dst, 123),
        }
    }

    #[test]
    fn ipv4_frame_bytes() {
        let s = spec(
            Ipv4Addr::new(10, 0, 0, 1).into(),
            Ipv4Addr::new(10, 0, 0, 2).into(),
        );
        let mut buf = [0xaau8; 64];
        let n = build_udp(&mut buf, &s, &[1, 2, 3]).unwrap();
        assert_eq!(n, 14 + 20 + 8 + 3);
        let f = &buf[..n];
        assert_eq!(&f[..14], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        assert_eq!(
            &f[14..34],
            &[0x45, 0, 0, 31, 0, 0, 0x40, 0, 64, 17, 0x26, 0xcc, 10, 0, 0, 1, 10, 0, 0, 2]
        );
        assert!(checksum::verifies(&f[14..34]));
        assert_eq!(&f[34..40], &[0x9c, 0x40, 0, 123, 0, 11]);
        let u = udp::Packet::new_checked(&f[34..]).unwrap();
        assert!(u.verify_checksum(s.src.ip(), s.dst.ip()));
        assert_eq!(u.payload(), &[1, 2, 3]);
        assert_eq!(buf[n], 0xaa, "nothing written after the frame");
    }

    #[test]
    fn ipv6_frame_bytes() {
        let (a, b): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let s = spec(a.into(), b.into());
        let mut buf = [0xaau8; 128];
        let n = build_udp(&mut buf, &s, &[0; 48]).unwrap();
        assert_eq!(n, s.header_len() + 48);
        assert_eq!(s.header_len(), 14 + 40 + 8);
        let ip = ipv6::Packet::new_checked(&buf[14..n]).unwrap();
        assert_eq!(&buf[14..22], &[0x60, 0, 0, 0, 0, 56, 17, 64]);
        assert_eq!((ip.src_addr(), ip.dst_addr()), (a, b));
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert!(u.verify_checksum(a.into(), b.into()));
    }

    #[test]
    fn a_frame_of_its_own() {
        for s in [
            spec(
                Ipv4Addr::new(10, 0, 0, 1).into(),
                Ipv4Addr::new(10, 0, 0, 2).into(),
            ),
            spec(
                "fd00::1".parse::<Ipv6Addr>().unwrap().into(),
                "fd00::2".parse::<Ipv6Addr>().unwrap().into(),
            ),
        ] {
            let mut buf = [0xaau8; 128];
            let n = build_udp(&mut buf, &s, &[7; 48]).unwrap();
            assert_eq!(build_udp_vec(&s, &[7; 48]).unwrap(), &buf[..n]);
        }
        let mixed = spec(
            Ipv4Addr::new(10, 0, 0, 1).into(),
            "fd00::2".parse::<Ipv6Addr>().unwrap().into(),
        );
        assert_eq!(build_udp_vec(&mixed, &[0; 48]), None);
        assert_eq!(
            build_udp_vec(&spec(mixed.src.ip(), mixed.src.ip()), &[0; 65_510]),
            None
        );
    }

    #[test]
    fn refusals_write_nothing() {
        let s = spec(
            Ipv4Addr::new(10, 0, 0, 1).into(),
            "fd00::2".parse::<Ipv6Addr>().unwrap().into(),
        );
        let mut buf = [0xaau8; 128];
        assert_eq!(build_udp(&mut buf, &s, &[0; 48]), None);
        assert_eq!(buf, [0xaa; 128]);
    }
}
