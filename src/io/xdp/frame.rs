//! Ethernet/IP/UDP framing for the AF_XDP backend, without unsafe and without I/O: validate a
//! received frame, decide whether it is for us, and turn it into its reply in place (MACs,
//! addresses and ports swapped, lengths shrunk to the reply, IPv4 header and UDP checksums
//! recomputed). The headers are read and written through the views of [`crate::wire`]; this
//! module is the policy on top of them. The NTP payload itself is parsed and written by `proto`.
//!
//! What is accepted (everything else is dropped and counted, never answered):
//!
//! * Ethernet II to a unicast MAC, optionally with one 802.1Q / 802.1ad tag (kept in the reply);
//! * IPv4 without options (IHL = 5), not a fragment, protocol UDP, total length within the frame
//!   (Ethernet padding after it is ignored), a correct header checksum;
//! * IPv6 with UDP as the next header (no extension headers), payload length within the frame;
//! * UDP whose length is exactly the IP payload, source port not 0, and a correct checksum
//!   (IPv4 may carry 0 = none; IPv6 must carry one). A checksum field that holds only the
//!   pseudo-header sum is also accepted: that is what a virtual sender (veth, tap) with checksum
//!   offload leaves in frames that never crossed a wire (CHECKSUM_PARTIAL), and AF_XDP does not
//!   tell us whether the kernel already trusted the frame;
//! * a source address that can be answered (not multicast, broadcast, unspecified or loopback)
//!   and a destination the [`AddrFilter`] accepts.
//!
//! A frame shorter than a header's fixed part (Ethernet, the VLAN tag, IPv4, IPv6) is
//! `too_short`, every other fault of the headers `malformed`; a group destination MAC, an
//! unanswerable source and a destination that is not ours are `not_ours`.
//!
//! The reverse — putting a UDP datagram into a new frame, with both checksums — is
//! [`crate::wire::build_udp`] (used by the load generator's AF_XDP transport), so there is one
//! implementation of the checksums for both directions.

use std::net::{IpAddr, SocketAddr};

use crate::clock::{ClockSnapshot, RawStamp};
use crate::datapath::{Arrival, TxToken, Worker};
use crate::proto::DropReason;
use crate::sys;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::udp::ChecksumState;
use crate::wire::{ipv4, ipv6, protocol, udp};

/// TTL / hop limit of replies.
const REPLY_TTL: u8 = 64;

/// Which destinations are ours: the listen addresses, where a wildcard (0.0.0.0 / [::]) stands
/// for every local address of its family (refreshed by the worker).
#[derive(Clone, Debug, Default)]
pub struct AddrFilter {
    listen: Vec<SocketAddr>,
    local: Vec<IpAddr>,
}

impl AddrFilter {
    pub fn new(listen: &[SocketAddr]) -> Self {
        AddrFilter {
            listen: listen.to_vec(),
            local: Vec::new(),
        }
    }

    /// Whether some listen address is a wildcard (so the local addresses matter).
    pub fn has_wildcard(&self) -> bool {
        self.listen.iter().any(|a| a.ip().is_unspecified())
    }

    /// Replaces the host's local addresses (used for wildcard listen addresses).
    pub fn set_local(&mut self, local: Vec<IpAddr>) {
        self.local = local;
    }

    /// Whether a datagram to `dst`:`port` is one we answer.
    pub fn accepts(&self, dst: IpAddr, port: u16) -> bool {
        self.listen.iter().any(|l| {
            if l.port() != port {
                return false;
            }
            match (l.ip(), dst) {
                (IpAddr::V4(a), IpAddr::V4(_)) if a.is_unspecified() => self.local.contains(&dst),
                (IpAddr::V6(a), IpAddr::V6(_)) if a.is_unspecified() => self.local.contains(&dst),
                (a, d) => a == d,
            }
        })
    }
}

/// Where the parts of a valid UDP frame are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Offset of the IP header (14, or 18 with a VLAN tag).
    pub l3: usize,
    pub ipv6: bool,
    /// Offset of the UDP header.
    pub udp: usize,
    /// UDP payload length.
    pub payload_len: usize,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

impl Parsed {
    /// The UDP payload's byte range in the frame.
    pub fn payload(&self) -> std::ops::Range<usize> {
        self.udp + udp::HEADER_LEN..self.udp + udp::HEADER_LEN + self.payload_len
    }
}

/// A header shorter than its fixed part is a short frame; any other fault is malformed.
fn reason(e: crate::wire::Error) -> DropReason {
    match e {
        crate::wire::Error::Truncated => DropReason::TooShort,
        crate::wire::Error::Malformed => DropReason::Malformed,
    }
}

/// Whether a source address can be answered: replying to multicast, broadcast, unspecified or
/// loopback sources is never right (and would make us a reflector for spoofed ones).
fn answerable_source(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_multicast() || a.is_broadcast() || a.is_unspecified() || a.is_loopback())
        }
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified() || a.is_loopback()),
    }
}

/// The IP layer of a valid frame: the family, the IP header's length, the UDP datagram (the
/// whole IP payload) and the addresses.
struct Network<'a> {
    ipv6: bool,
    header_len: usize,
    datagram: &'a [u8],
    src: IpAddr,
    dst: IpAddr,
}

fn parse_ipv4(net: &[u8]) -> Result<Network<'_>, DropReason> {
    let ip = ipv4::Packet::new_checked(net).map_err(reason)?;
    if ip.version() != 4
        || ip.has_options()
        || ip.is_fragment()
        || ip.protocol() != protocol::UDP
        || !ip.verify_checksum()
    {
        return Err(DropReason::Malformed);
    }
    Ok(Network {
        ipv6: false,
        header_len: ipv4::HEADER_LEN,
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        datagram: ip.into_payload(),
    })
}

fn parse_ipv6(net: &[u8]) -> Result<Network<'_>, DropReason> {
    let ip = ipv6::Packet::new_checked(net).map_err(reason)?;
    // Extension headers are not walked: UDP must be the next header.
    if ip.version() != 6 || ip.next_header() != protocol::UDP {
        return Err(DropReason::Malformed);
    }
    Ok(Network {
        ipv6: true,
        header_len: ipv6::HEADER_LEN,
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        datagram: ip.into_payload(),
    })
}

/// Validates the Ethernet, IP and UDP layers of `frame` (see the module docs).
pub fn parse(frame: &[u8]) -> Result<Parsed, DropReason> {
    let eth = ethernet::Frame::new_checked(frame).map_err(reason)?;
    if eth.dst_addr().is_group() {
        // Broadcast or multicast destination MAC: not a unicast request to us.
        return Err(DropReason::NotOurs);
    }
    let link = eth.untag().map_err(reason)?;
    let net = frame.get(link.header_len..).unwrap_or_default();
    let n = match link.ethertype {
        ethertype::IPV4 => parse_ipv4(net)?,
        ethertype::IPV6 => parse_ipv6(net)?,
        _ => return Err(DropReason::Malformed),
    };
    // Inside a complete IP packet, a datagram shorter than its header is malformed too; its
    // length must be exactly the IP payload's.
    let u = udp::Packet::new_checked(n.datagram).map_err(|_| DropReason::Malformed)?;
    if usize::from(u.len()) != n.datagram.len() || u.src_port() == 0 {
        return Err(DropReason::Malformed);
    }
    match u.checksum_state(n.src, n.dst) {
        ChecksumState::Valid | ChecksumState::PseudoHeaderOnly => {}
        // Mandatory over IPv6 (RFC 8200 §8.1).
        ChecksumState::Absent if !n.ipv6 => {}
        ChecksumState::Absent | ChecksumState::Invalid => return Err(DropReason::Malformed),
    }
    if !answerable_source(n.src) {
        return Err(DropReason::NotOurs);
    }
    let l3 = link.header_len;
    Ok(Parsed {
        l3,
        ipv6: n.ipv6,
        udp: l3 + n.header_len,
        payload_len: n.datagram.len() - udp::HEADER_LEN,
        src: SocketAddr::new(n.src, u.src_port()),
        dst: SocketAddr::new(n.dst, u.dst_port()),
    })
}

/// Rewrites the headers of a parsed request frame into those of its reply, whose UDP payload
/// (already written at `p.payload()`) is `reply_len` bytes, no longer than the request's.
/// Returns the reply frame's length.
pub fn finish_reply(frame: &mut [u8], p: &Parsed, reply_len: usize) -> usize {
    debug_assert!(reply_len <= p.payload_len);
    let udp_len = udp::HEADER_LEN + reply_len;
    // Ethernet: back to the sender (a VLAN tag stays as it is).
    ethernet::Frame::new_unchecked(&mut *frame).swap_addresses();
    let net = frame.get_mut(p.l3..).unwrap_or_default();
    if p.ipv6 {
        let mut ip = ipv6::Packet::new_unchecked(net);
        ip.swap_addresses();
        ip.set_payload_len(udp_len as u16);
        ip.set_hop_limit(REPLY_TTL);
    } else {
        let mut ip = ipv4::Packet::new_unchecked(net);
        ip.swap_addresses();
        ip.set_total_len((ipv4::HEADER_LEN + udp_len) as u16);
        ip.set_frag(true, false, 0);
        ip.set_ttl(REPLY_TTL);
        ip.fill_checksum();
    }
    let datagram = frame.get_mut(p.udp..p.udp + udp_len).unwrap_or_default();
    let mut u = udp::Packet::new_unchecked(datagram);
    u.set_src_port(p.dst.port());
    u.set_dst_port(p.src.port());
    u.set_len(udp_len as u16);
    // The reply goes from the request's destination to its source.
    u.fill_checksum(p.dst.ip(), p.src.ip());
    p.udp + udp_len
}

/// What [`answer_in_place`] did with an answered frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// Length of the reply frame.
    pub len: usize,
    /// The worker's token for this reply's transmit timestamp (interleaved mode).
    pub tx: Option<TxToken>,
}

/// Handles one received frame: validates it, has `worker` answer the NTP request in the same
/// buffer and rewrites the headers; counted by the worker either way. `None` = dropped.
pub fn answer_in_place(
    frame: &mut [u8],
    filter: &AddrFilter,
    snap: &ClockSnapshot,
    rx: RawStamp,
    worker: &mut Worker,
) -> Option<Answered> {
    let parsed = match parse(frame) {
        Ok(p) if filter.accepts(p.dst.ip(), p.dst.port()) => p,
        Ok(_) => {
            worker.on_refused(rx, DropReason::NotOurs);
            return None;
        }
        Err(reason) => {
            worker.on_refused(rx, reason);
            return None;
        }
    };
    let arrival = Arrival {
        src: parsed.src,
        dst: Some(parsed.dst.ip()),
        ifindex: 0,
        rx,
    };
    let Some(payload) = frame.get_mut(parsed.payload()) else {
        worker.on_refused(rx, DropReason::Malformed); // not reached: `parse` checked the lengths
        return None;
    };
    let len = payload.len();
    // In place: the reply is never longer than the request, so it fits the payload.
    let (reply_len, tx) = worker
        .on_datagram_in_place(&arrival, payload, len, snap, sys::clock::now)
        .send()?;
    let len = finish_reply(frame, &parsed, reply_len);
    Some(Answered { len, tx })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TimestampQuality;
    use crate::datapath::counters::Counter;
    use crate::proto::UnixNanos;
    use crate::wire::checksum::{self, fold, sum_words};
    use crate::wire::{build_udp, UdpFrameSpec};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ETH_HLEN: usize = ethernet::HEADER_LEN;
    const IPV4_HLEN: usize = ipv4::HEADER_LEN;
    const IPV6_HLEN: usize = ipv6::HEADER_LEN;
    const UDP_HLEN: usize = udp::HEADER_LEN;
    const ETH_P_IP: u16 = ethertype::IPV4;
    const ETH_P_IPV6: u16 = ethertype::IPV6;
    const ETH_P_8021Q: u16 = ethertype::VLAN;
    const IPPROTO_UDP: u8 = protocol::UDP;

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn put16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// The UDP pseudo-header's sum (not folded).
    fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> u64 {
        checksum::pseudo_header(src, dst, protocol::UDP, len)
    }

    const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc1];
    const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x51];

    fn ntp_request(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = (4 << 3) | 3;
        p[40..48].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        p
    }

    /// A UDP datagram with a correct checksum.
    fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = vec![0u8; UDP_HLEN + payload.len()];
        let mut d = udp::Packet::new_unchecked(&mut u[..]);
        d.set_src_port(sport);
        d.set_dst_port(dport);
        d.set_len((UDP_HLEN + payload.len()) as u16);
        d.payload_mut().copy_from_slice(payload);
        d.fill_checksum(src, dst);
        u
    }

    fn eth(ethertype: u16, vlan: bool, l3: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&SERVER_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        if vlan {
            f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            f.extend_from_slice(&42u16.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, frag: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let ihl = 5 + options.len() / 4;
        let total = ihl * 4 + payload.len();
        let mut h = vec![0x40 | ihl as u8, 0xb8];
        h.extend_from_slice(&(total as u16).to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34]);
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[7, IPPROTO_UDP, 0, 0]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        h.extend_from_slice(options);
        ipv4::Packet::new_unchecked(&mut h[..]).fill_checksum();
        h.extend_from_slice(payload);
        h
    }

    fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.push(next);
        h.push(9);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        h.extend_from_slice(payload);
        h
    }

    const C4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
    const S4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);

    fn c6() -> Ipv6Addr {
        "fd00:203::2".parse().unwrap()
    }
    fn s6() -> Ipv6Addr {
        "fd00:203::1".parse().unwrap()
    }

    fn frame4(payload: &[u8], vlan: bool) -> Vec<u8> {
        let u = udp(C4.into(), S4.into(), 40000, 123, payload);
        eth(ETH_P_IP, vlan, &ipv4(C4, S4, 0x4000, &[], &u))
    }

    fn frame6(payload: &[u8], vlan: bool) -> Vec<u8> {
        let u = udp(c6().into(), s6().into(), 40000, 123, payload);
        eth(ETH_P_IPV6, vlan, &ipv6(c6(), s6(), IPPROTO_UDP, &u))
    }

    fn filter() -> AddrFilter {
        AddrFilter::new(&[
            SocketAddr::new(S4.into(), 123),
            SocketAddr::new(s6().into(), 123),
        ])
    }

    fn answer(frame: &mut [u8]) -> (Option<Answered>, crate::datapath::counters::Tally) {
        let snap = ClockSnapshot::local(3, -20, UnixNanos::from_parts(1_700_000_000, 0));
        let rx = RawStamp {
            raw: UnixNanos::from_parts(1_700_000_001, 0),
            quality: TimestampQuality::Driver,
        };
        let mut w = crate::datapath::Worker::new(crate::datapath::WorkerConfig {
            clients: 8,
            seed: 1,
            interleaved: true,
        });
        let a = answer_in_place(frame, &filter(), &snap, rx, &mut w);
        (a, *w.tally())
    }

    /// Checks a reply frame the way a receiving kernel would, and returns its parse.
    fn check_reply(frame: &[u8], vlan: bool) -> Parsed {
        assert_eq!(&frame[0..6], &CLIENT_MAC);
        assert_eq!(&frame[6..12], &SERVER_MAC);
        if vlan {
            assert_eq!(be16(frame, 12), ETH_P_8021Q);
            assert_eq!(be16(frame, 14), 42);
        }
        let p = parse(frame).expect("the reply is itself a valid frame");
        assert_eq!(p.src.port(), 123);
        assert_eq!(p.dst.port(), 40000);
        let u = &frame[p.udp..p.udp + UDP_HLEN + p.payload_len];
        assert_ne!(be16(u, 6), 0, "checksum present");
        let full = fold(sum_words(
            pseudo_header_sum(p.src.ip(), p.dst.ip(), u.len()),
            u,
        ));
        assert_eq!(full, 0xffff, "UDP checksum verifies");
        p
    }

    #[test]
    fn ipv4_request_becomes_its_reply() {
        for vlan in [false, true] {
            let mut f = frame4(&ntp_request(48), vlan);
            let (a, t) = answer(&mut f);
            let a = a.expect("answered");
            assert_eq!(a.len, f.len());
            assert_eq!(t.get(Counter::Answered), 1);
            let p = check_reply(&f[..a.len], vlan);
            assert_eq!(p.src.ip(), IpAddr::V4(S4));
            assert_eq!(p.dst.ip(), IpAddr::V4(C4));
            let payload = &f[p.payload()];
            assert_eq!(payload.len(), 48);
            assert_eq!(payload[0] & 7, 4, "mode 4");
            assert_eq!(&payload[24..32], &0x1122_3344_5566_7788u64.to_be_bytes());
            // The worker wants this reply's transmit stamp (interleaved mode), and the
            // receive field carries the mark that tells it from a transmit field.
            assert!(a.tx.is_some());
            assert_eq!(payload[39] & 1, 1);
            assert_eq!(f[p.l3 + 8], REPLY_TTL);
        }
    }

    #[test]
    fn ipv6_request_becomes_its_reply() {
        for vlan in [false, true] {
            let mut f = frame6(&ntp_request(48), vlan);
            let (a, t) = answer(&mut f);
            let a = a.expect("answered");
            assert_eq!(t.get(Counter::Answered), 1);
            let p = check_reply(&f[..a.len], vlan);
            assert_eq!(p.src.ip(), IpAddr::V6(s6()));
            assert_eq!(p.dst.ip(), IpAddr::V6(c6()));
        }
    }

    #[test]
    fn longer_request_gets_a_shorter_reply_and_lengths_shrink() {
        // 48 + an extension field of 16 bytes: the reply is a bare 48-byte header.
        let mut req = ntp_request(48);
        req.extend_from_slice(&[0x01, 0x04, 0, 16]);
        req.extend_from_slice(&[0u8; 12]);
        for six in [false, true] {
            let mut f = if six {
                frame6(&req, false)
            } else {
                frame4(&req, false)
            };
            let before = f.len();
            let (a, _) = answer(&mut f);
            let a = a.expect("answered");
            assert_eq!(a.len, before - 16);
            let p = check_reply(&f[..a.len], false);
            assert_eq!(p.payload_len, 48);
        }
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        // A frame padded beyond the IP total length still parses with the IP lengths.
        let mut f = frame4(&ntp_request(48), false);
        f.extend_from_slice(&[0u8; 20]);
        let (a, _) = answer(&mut f);
        assert_eq!(a.expect("answered").len, f.len() - 20);
    }

    #[test]
    fn partial_checksum_from_virtual_senders_is_accepted() {
        let mut f = frame4(&ntp_request(48), false);
        let u = ETH_HLEN + IPV4_HLEN;
        let partial = fold(pseudo_header_sum(C4.into(), S4.into(), 56));
        put16(&mut f, u + 6, partial);
        assert!(answer(&mut f).0.is_some());
        let mut f = frame6(&ntp_request(48), false);
        let u = ETH_HLEN + IPV6_HLEN;
        let partial = fold(pseudo_header_sum(c6().into(), s6().into(), 56));
        put16(&mut f, u + 6, partial);
        assert!(answer(&mut f).0.is_some());
    }

    fn dropped(mut f: Vec<u8>) -> DropReason {
        let (a, t) = answer(&mut f);
        assert!(a.is_none(), "must not be answered");
        assert_eq!(t.get(Counter::Received), 1);
        assert_eq!(t.get(Counter::Answered), 0);
        assert_eq!(t.dropped_total(), 1);
        *DropReason::ALL
            .iter()
            .find(|r| t.dropped[r.index()] == 1)
            .unwrap()
    }

    #[test]
    fn hostile_frames_are_dropped_with_a_reason() {
        let good4 = frame4(&ntp_request(48), false);
        let good6 = frame6(&ntp_request(48), false);
        let u4 = ETH_HLEN + IPV4_HLEN;
        let u6 = ETH_HLEN + IPV6_HLEN;

        // Every truncation of a valid frame.
        for cut in 0..good4.len() {
            let r = dropped(good4[..cut].to_vec());
            assert!(
                matches!(r, DropReason::TooShort | DropReason::Malformed),
                "{cut}: {r:?}"
            );
        }
        for cut in 0..good6.len() {
            let r = dropped(good6[..cut].to_vec());
            assert!(
                matches!(r, DropReason::TooShort | DropReason::Malformed),
                "{cut}: {r:?}"
            );
        }
        // A short NTP payload (valid UDP): proto says too short.
        assert_eq!(
            dropped(frame4(&ntp_request(48)[..20], false)),
            DropReason::TooShort
        );
        // IP options.
        let u = udp(C4.into(), S4.into(), 40000, 123, &ntp_request(48));
        let f = eth(ETH_P_IP, false, &ipv4(C4, S4, 0x4000, &[1, 1, 1, 0], &u));
        assert_eq!(dropped(f), DropReason::Malformed);
        // Fragments: MF set, or a non-zero offset.
        for frag in [0x2000u16, 0x0001, 0x2010] {
            let f = eth(ETH_P_IP, false, &ipv4(C4, S4, frag, &[], &u));
            assert_eq!(dropped(f), DropReason::Malformed, "{frag:#x}");
        }
        // Bad IPv4 header checksum.
        let mut f = good4.clone();
        f[ETH_HLEN + 10] ^= 0x55;
        assert_eq!(dropped(f), DropReason::Malformed);
        // IP total length beyond the frame.
        let mut f = good4.clone();
        put16(&mut f, ETH_HLEN + 2, 200);
        ipv4::Packet::new_unchecked(&mut f[ETH_HLEN..]).fill_checksum();
        assert_eq!(dropped(f), DropReason::Malformed);
        // UDP length disagreeing with the IP length, both ways, both families.
        for (good, u) in [(&good4, u4), (&good6, u6)] {
            for ulen in [0u16, 7, 8, 55, 57, 1000] {
                let mut f = good.clone();
                put16(&mut f, u + 4, ulen);
                assert_eq!(dropped(f), DropReason::Malformed, "ulen {ulen}");
            }
            // Wrong checksum (not the pseudo-header-only value).
            let mut f = good.clone();
            let c = be16(&f, u + 6);
            put16(&mut f, u + 6, c.wrapping_add(1));
            assert_eq!(dropped(f), DropReason::Malformed);
            // Corrupted payload with the old checksum.
            let mut f = good.clone();
            f[u + 8 + 20] ^= 0xff;
            assert_eq!(dropped(f), DropReason::Malformed);
            // Source port 0.
            let mut f = good.clone();
            put16(&mut f, u, 0);
            assert_eq!(dropped(f), DropReason::Malformed);
        }
        // IPv4 without a checksum is fine; IPv6 without one is not.
        let mut f = good4.clone();
        put16(&mut f, u4 + 6, 0);
        assert!(answer(&mut f).0.is_some());
        let mut f = good6.clone();
        put16(&mut f, u6 + 6, 0);
        assert_eq!(dropped(f), DropReason::Malformed);
        // IPv6 extension header (hop-by-hop) in front of UDP.
        let u = udp(c6().into(), s6().into(), 40000, 123, &ntp_request(48));
        assert_eq!(
            dropped(eth(ETH_P_IPV6, false, &ipv6(c6(), s6(), 0, &u))),
            DropReason::Malformed
        );
        // Not IP at all; not UDP.
        assert_eq!(
            dropped(eth(0x0806, false, &[0u8; 28])),
            DropReason::Malformed
        );
        let mut f = good4.clone();
        f[ETH_HLEN + 9] = 6;
        assert_eq!(dropped(f), DropReason::Malformed);
        // Broadcast destination MAC.
        let mut f = good4.clone();
        f[0..6].fill(0xff);
        assert_eq!(dropped(f), DropReason::NotOurs);
        // Version 7 NTP (proto's reason).
        let mut req = ntp_request(48);
        req[0] = (7 << 3) | 3;
        assert_eq!(dropped(frame4(&req, false)), DropReason::BadVersion);
        // Mode 6 (control): never answered.
        let mut req = ntp_request(48);
        req[0] = (2 << 3) | 6;
        assert_eq!(dropped(frame4(&req, false)), DropReason::BadMode);
    }

    #[test]
    fn only_our_addresses_and_ports_are_answered() {
        // Another destination address, same port.
        let other = Ipv4Addr::new(10, 203, 0, 9);
        let u = udp(C4.into(), other.into(), 40000, 123, &ntp_request(48));
        assert_eq!(
            dropped(eth(ETH_P_IP, false, &ipv4(C4, other, 0, &[], &u))),
            DropReason::NotOurs
        );
        // Our address, another port.
        let u = udp(C4.into(), S4.into(), 40000, 124, &ntp_request(48));
        assert_eq!(
            dropped(eth(ETH_P_IP, false, &ipv4(C4, S4, 0, &[], &u))),
            DropReason::NotOurs
        );
        // Spoofed loopback / broadcast / multicast sources.
        for src in [
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 1),
            Ipv4Addr::UNSPECIFIED,
        ] {
            let u = udp(src.into(), S4.into(), 40000, 123, &ntp_request(48));
            assert_eq!(
                dropped(eth(ETH_P_IP, false, &ipv4(src, S4, 0, &[], &u))),
                DropReason::NotOurs,
                "{src}"
            );
        }
    }

    #[test]
    fn wildcard_filter_uses_local_addresses() {
        let mut f = AddrFilter::new(&[
            "0.0.0.0:123".parse().unwrap(),
            "[::1]:1123".parse().unwrap(),
        ]);
        assert!(f.has_wildcard());
        assert!(!f.accepts(S4.into(), 123), "no local addresses known yet");
        f.set_local(vec![S4.into(), s6().into()]);
        assert!(f.accepts(S4.into(), 123));
        assert!(!f.accepts(S4.into(), 1123));
        assert!(!f.accepts(s6().into(), 123), "no IPv6 wildcard");
        assert!(f.accepts("::1".parse().unwrap(), 1123));
        assert!(!f.accepts(Ipv4Addr::new(10, 203, 0, 9).into(), 123));
        assert!(!AddrFilter::new(&["10.0.0.1:123".parse().unwrap()]).has_wildcard());
    }

    fn full_checksum_ok(frame: &[u8], p: &Parsed) -> bool {
        let u = &frame[p.udp..p.udp + UDP_HLEN + p.payload_len];
        let pseudo = pseudo_header_sum(p.src.ip(), p.dst.ip(), u.len());
        be16(u, 6) != 0 && fold(sum_words(pseudo, u)) == 0xffff
    }

    #[test]
    fn built_frames_parse_with_full_checksums() {
        let specs = [
            UdpFrameSpec {
                src_mac: CLIENT_MAC,
                dst_mac: SERVER_MAC,
                src: SocketAddr::new(C4.into(), 40000),
                dst: SocketAddr::new(S4.into(), 123),
            },
            UdpFrameSpec {
                src_mac: CLIENT_MAC,
                dst_mac: SERVER_MAC,
                src: SocketAddr::new(c6().into(), 1024),
                dst: SocketAddr::new(s6().into(), 123),
            },
        ];
        for spec in specs {
            for len in [0usize, 1, 47, 48, 68, 1000] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut buf = vec![0xaau8; 2048];
                let n = build_udp(&mut buf, &spec, &payload).expect("fits");
                assert_eq!(n, spec.header_len() + len);
                let f = &buf[..n];
                assert_eq!(&f[0..6], &SERVER_MAC);
                assert_eq!(&f[6..12], &CLIENT_MAC);
                let p = parse(f).unwrap_or_else(|r| panic!("{spec:?} len {len}: {r:?}"));
                assert_eq!(
                    (p.src, p.dst, p.ipv6),
                    (spec.src, spec.dst, spec.src.is_ipv6())
                );
                assert_eq!(&f[p.payload()], &payload[..]);
                assert!(
                    full_checksum_ok(f, &p),
                    "full UDP checksum, not a partial one"
                );
                if !p.ipv6 {
                    assert_eq!(fold(sum_words(0, &f[14..34])), 0xffff, "IPv4 header sum");
                    assert_eq!(be16(f, 14 + 6), 0x4000, "DF");
                }
                // One flipped payload bit breaks the checksum the parser verifies.
                if len > 0 {
                    let mut bad = f.to_vec();
                    bad[n - 1] ^= 0x10;
                    assert_eq!(parse(&bad), Err(DropReason::Malformed));
                }
            }
        }
    }

    #[test]
    fn built_requests_are_answered_by_the_server_path() {
        for (src, dst) in [
            (IpAddr::from(C4), IpAddr::from(S4)),
            (c6().into(), s6().into()),
        ] {
            let spec = UdpFrameSpec {
                src_mac: CLIENT_MAC,
                dst_mac: SERVER_MAC,
                src: SocketAddr::new(src, 5555),
                dst: SocketAddr::new(dst, 123),
            };
            let mut buf = vec![0u8; 2048];
            let n = build_udp(&mut buf, &spec, &ntp_request(48)).unwrap();
            let (a, t) = answer(&mut buf[..n]);
            let a = a.expect("answered");
            assert_eq!(t.get(Counter::Answered), 1);
            let p = parse(&buf[..a.len]).unwrap();
            assert_eq!((p.src, p.dst), (spec.dst, spec.src));
            assert!(full_checksum_ok(&buf[..a.len], &p));
        }
    }

    #[test]
    fn build_refuses_what_does_not_fit() {
        let spec = UdpFrameSpec {
            src_mac: CLIENT_MAC,
            dst_mac: SERVER_MAC,
            src: SocketAddr::new(C4.into(), 1),
            dst: SocketAddr::new(s6().into(), 123),
        };
        let mut buf = vec![0u8; 2048];
        assert_eq!(build_udp(&mut buf, &spec, &[0; 48]), None, "mixed families");
        let spec = UdpFrameSpec {
            dst: SocketAddr::new(S4.into(), 123),
            ..spec
        };
        assert_eq!(
            build_udp(&mut buf[..14 + 20 + 8 + 47], &spec, &[0; 48]),
            None
        );
        assert_eq!(
            build_udp(&mut buf[..14 + 20 + 8 + 48], &spec, &[0; 48]),
            Some(90)
        );
        let mut big = vec![0u8; 70_000];
        assert_eq!(build_udp(&mut big, &spec, &[0; 65_510]), None);
    }

    #[test]
    fn checksum_helpers() {
        // RFC 1071's example words: 0001 f203 f4f5 f6f7 → sum ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(0, &data)), 0xddf2);
        // Odd length: the last byte is padded with zero.
        assert_eq!(fold(sum_words(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(fold(0x1_ffff), 0x0001);
    }
}
