//! Frames for the verdict and traffic tests, built through `meridian-wire`'s views (the code
//! meridian's xdp backend parses its requests and writes its replies with): 10.0.0.1 →
//! 10.0.0.2 and fd00::1 → fd00::2, from [`SRC_MAC`] to [`DST_MAC`]. TCP, ICMP and ARP have no
//! view there: their bytes are payloads here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use meridian_wire::ethernet::{self, Address, VlanTag};
use meridian_wire::{build_udp_vec, ipv4, ipv6, udp, UdpFrameSpec};

pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const SRC4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// IP protocol numbers that `meridian_wire::protocol` does not name (no view has them).
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_ICMP: u8 = 1;

/// Header lengths, for the places a frame is cut.
pub const ETH_LEN: usize = ethernet::HEADER_LEN;
pub const VLAN_TAG_LEN: usize = ethernet::VLAN_TAG_LEN;
pub const IPV4_LEN: usize = ipv4::HEADER_LEN;
pub const IPV6_LEN: usize = ipv6::HEADER_LEN;
pub const UDP_LEN: usize = udp::HEADER_LEN;

/// The payload of every UDP datagram built here: NTP-sized.
const UDP_PAYLOAD: [u8; 48] = [0x23; 48];

/// An Ethernet II frame (no tag) carrying `payload` as `ethertype`.
pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0; ETH_LEN + payload.len()];
    let mut frame = ethernet::Frame::new_unchecked(&mut f[..]);
    frame.set_dst_addr(Address(DST_MAC));
    frame.set_src_addr(Address(SRC_MAC));
    frame.set_ethertype(ethertype);
    frame.payload_mut().copy_from_slice(payload);
    f
}

/// A VLAN tag (`tci`, then the EtherType of what follows) and `payload`: what a tagged frame
/// carries after its tag protocol identifier.
pub fn vlan(tci: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0; VLAN_TAG_LEN + payload.len()];
    let mut tag = VlanTag::new_unchecked(&mut t[..]);
    tag.set_tci(tci);
    tag.set_ethertype(ethertype);
    tag.payload_mut().copy_from_slice(payload);
    t
}

/// A frame with one VLAN tag: protocol identifier `tpid` (802.1Q or 802.1ad), `tci`.
pub fn eth_vlan(tpid: u16, tci: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    eth(tpid, &vlan(tci, ethertype, payload))
}

/// IPv4 fragmentation as [`ipv4::Packet::set_frag`] writes it: DF, MF, offset in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Frag {
    pub dont_frag: bool,
    pub more_frags: bool,
    pub offset: u16,
}

impl Frag {
    /// The same flags at `offset` bytes.
    pub const fn at(self, offset: u16) -> Frag {
        Frag { offset, ..self }
    }
}

/// Don't fragment, offset 0: a whole datagram.
pub const DF: Frag = Frag {
    dont_frag: true,
    more_frags: false,
    offset: 0,
};
/// No flag, offset 0: also a whole datagram.
pub const NO_FLAGS: Frag = Frag {
    dont_frag: false,
    more_frags: false,
    offset: 0,
};
/// More fragments, offset 0: a first fragment.
pub const MF: Frag = Frag {
    more_frags: true,
    ..NO_FLAGS
};

/// An IPv4 packet (identification 0x1234, TTL 64, correct header checksum) with `options`
/// (0..=40 bytes, a multiple of 4).
pub fn ipv4_full(proto: u8, frag: Frag, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let header_len = IPV4_LEN + options.len();
    let total = header_len + payload.len();
    let mut b = vec![0; total];
    let mut p = ipv4::Packet::new_unchecked(&mut b[..]);
    p.set_version_and_header_len(header_len);
    p.set_total_len(total as u16);
    p.set_ident(0x1234);
    p.set_frag(frag.dont_frag, frag.more_frags, frag.offset);
    p.set_ttl(64);
    p.set_protocol(proto);
    p.set_src_addr(SRC4);
    p.set_dst_addr(DST4);
    p.options_mut().copy_from_slice(options);
    p.fill_checksum();
    p.payload_mut().copy_from_slice(payload);
    b
}

/// An IPv4 packet with DF set and no options.
pub fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_full(proto, DF, &[], payload)
}

/// An IPv6 packet (hop limit 64) whose fixed header says `next`.
pub fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0; IPV6_LEN + payload.len()];
    let mut p = ipv6::Packet::new_unchecked(&mut b[..]);
    p.set_version_tc_flow(0, 0);
    p.set_payload_len(payload.len() as u16);
    p.set_next_header(next);
    p.set_hop_limit(64);
    p.set_src_addr(SRC6);
    p.set_dst_addr(DST6);
    p.payload_mut().copy_from_slice(payload);
    b
}

/// A UDP datagram with a 48-byte NTP-sized payload (checksum left 0: the program never reads
/// it, and this datagram may sit behind IPv6 extension headers).
pub fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = vec![0; UDP_LEN + UDP_PAYLOAD.len()];
    let mut d = udp::Packet::new_unchecked(&mut u[..]);
    d.set_src_port(sport);
    d.set_dst_port(dport);
    d.set_len((UDP_LEN + UDP_PAYLOAD.len()) as u16);
    d.payload_mut().copy_from_slice(&UDP_PAYLOAD);
    u
}

/// A TCP SYN header (no view for it: bytes).
pub fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

/// A UDP frame from port 40000 to `dport`, as meridian's `build_udp` writes it (DF, both
/// checksums).
fn udp_frame(src: IpAddr, dst: IpAddr, dport: u16) -> Vec<u8> {
    let spec = UdpFrameSpec {
        src_mac: SRC_MAC,
        dst_mac: DST_MAC,
        src: SocketAddr::new(src, 40000),
        dst: SocketAddr::new(dst, dport),
    };
    build_udp_vec(&spec, &UDP_PAYLOAD).expect("a UDP frame")
}

pub fn udp4(dport: u16) -> Vec<u8> {
    udp_frame(SRC4.into(), DST4.into(), dport)
}

pub fn udp6(dport: u16) -> Vec<u8> {
    udp_frame(SRC6.into(), DST6.into(), dport)
}

/// The IPv4 header of an untagged frame, to change a field through the view.
pub fn ipv4_header(frame: &mut [u8]) -> ipv4::Packet<&mut [u8]> {
    ipv4::Packet::new_unchecked(&mut frame[ETH_LEN..])
}

/// The IPv6 header of an untagged frame, to change a field through the view.
pub fn ipv6_header(frame: &mut [u8]) -> ipv6::Packet<&mut [u8]> {
    ipv6::Packet::new_unchecked(&mut frame[ETH_LEN..])
}

/// The UDP header at `offset` in `frame` (a header only, or cut short, is fine), to read it.
pub fn udp_at(frame: &[u8], offset: usize) -> udp::Packet<&[u8]> {
    udp::Packet::new_unchecked(&frame[offset..])
}
