//! IPv6's fixed header (RFC 8200). Extension headers are not walked: a packet whose next
//! header is one of them is seen with that next header, and its payload starts with it.

use std::net::Ipv6Addr;

use super::{get_bytes, get_u16, get_u8, set_bytes, set_u16, set_u8, swap_fields, Error};

mod field {
    use std::ops::Range;
    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// A view of an IPv6 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without a length check (for a buffer about to be written).
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// A view of a buffer that holds the fixed header and the payload length it gives
    /// (Ethernet padding after it is allowed).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// [`Error::Truncated`] when the buffer is shorter than the fixed header;
    /// [`Error::Malformed`] when the payload length reaches beyond the buffer.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        get_bytes(self.buffer.as_ref(), field::VER_TC_FLOW).map_or(0, u32::from_be_bytes)
    }

    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn next_header(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::NXT_HDR)
    }

    pub fn hop_limit(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_bytes::<16>(self.buffer.as_ref(), field::SRC_ADDR).unwrap_or_default())
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_bytes::<16>(self.buffer.as_ref(), field::DST_ADDR).unwrap_or_default())
    }

    /// What follows the fixed header, up to the payload length (Ethernet padding is not part
    /// of it); empty when the buffer does not hold it.
    pub fn payload(&self) -> &[u8] {
        let range = HEADER_LEN..HEADER_LEN + usize::from(self.payload_len());
        self.buffer.as_ref().get(range).unwrap_or_default()
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The payload (as [`Packet::payload`]), borrowed from the buffer rather than the view.
    pub fn into_payload(self) -> &'a [u8] {
        let range = HEADER_LEN..HEADER_LEN + usize::from(self.payload_len());
        self.buffer.get(range).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes version 6 with a traffic class and a flow label (its low 20 bits).
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        set_bytes(self.buffer.as_mut(), field::VER_TC_FLOW, &v.to_be_bytes());
    }

    /// Writes the version (its low 4 bits) and keeps traffic class and flow label: for a header
    /// that must be wrong (version 4 under IPv6's EtherType).
    pub fn set_version(&mut self, version: u8) {
        let v = (self.ver_tc_flow() & 0x0fff_ffff) | (u32::from(version & 0x0f) << 28);
        set_bytes(self.buffer.as_mut(), field::VER_TC_FLOW, &v.to_be_bytes());
    }

    pub fn set_payload_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    pub fn set_next_header(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), field::NXT_HDR, v);
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), field::HOP_LIMIT, v);
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), field::SRC_ADDR, &a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), field::DST_ADDR, &a.octets());
    }

    /// Exchanges source and destination addresses.
    pub fn swap_addresses(&mut self) {
        swap_fields::<16>(self.buffer.as_mut(), field::SRC_ADDR, field::DST_ADDR);
    }

    /// The payload (as [`Packet::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = HEADER_LEN..HEADER_LEN + usize::from(self.payload_len());
        self.buffer.as_mut().get_mut(range).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> Ipv6Addr {
        "fd00::1".parse().unwrap()
    }
    fn d() -> Ipv6Addr {
        "fd00::2".parse().unwrap()
    }

    fn packet() -> Vec<u8> {
        let mut b = vec![0xaau8; 44];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_tc_flow(0xb8, 0x12345);
        p.set_payload_len(4);
        p.set_next_header(17);
        p.set_hop_limit(9);
        p.set_src_addr(s());
        p.set_dst_addr(d());
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        b
    }

    #[test]
    fn fields() {
        let b = packet();
        assert_eq!(&b[..4], &[0x6b, 0x81, 0x23, 0x45]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0x12345)
        );
        assert_eq!(
            (p.payload_len(), p.next_header(), p.hop_limit()),
            (4, 17, 9)
        );
        assert_eq!((p.src_addr(), p.dst_addr()), (s(), d()));
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn lengths_are_checked_once() {
        let b = packet();
        for cut in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&b[..cut]), Err(Error::Truncated));
            let p = Packet::new_unchecked(&b[..cut]);
            let _ = (p.src_addr(), p.dst_addr(), p.payload(), p.version());
        }
        for cut in HEADER_LEN..b.len() {
            assert_eq!(
                Packet::new_checked(&b[..cut]),
                Err(Error::Malformed),
                "{cut}"
            );
        }
        let mut padded = b.clone();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(
            Packet::new_checked(&padded[..]).unwrap().payload(),
            &[1, 2, 3, 4]
        );
    }

    #[test]
    fn set_version_keeps_class_and_flow() {
        let mut b = packet();
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version(4);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (4, 0xb8, 0x12345)
        );
        assert_eq!(&b[..4], &[0x4b, 0x81, 0x23, 0x45]);
        assert_eq!(&b[4..], &packet()[4..]);
        Packet::new_unchecked(&mut b[..]).set_version(0x36);
        assert_eq!(b[0], 0x6b, "only the low nibble counts");
        let mut short = [0u8; 3];
        Packet::new_unchecked(&mut short[..]).set_version(6);
        assert_eq!(short, [0; 3]);
    }

    #[test]
    fn swap() {
        let mut b = packet();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.swap_addresses();
        assert_eq!((p.src_addr(), p.dst_addr()), (d(), s()));
        let mut short = [0u8; 30];
        Packet::new_unchecked(&mut short[..]).swap_addresses();
        assert_eq!(short, [0; 30]);
    }
}
