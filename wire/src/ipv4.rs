//! IPv4 headers (RFC 791): options (IHL), fragments, the header checksum.

use std::net::Ipv4Addr;

use super::{checksum, get_bytes, get_u16, get_u8, set_bytes, set_u16, set_u8, swap_fields, Error};

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of the header without options (IHL = 5).
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The flags/fragment-offset word's parts.
const FLAG_RESERVED: u16 = 0x8000;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet (header, options, payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without a length check (for a buffer about to be written).
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// A view of a buffer that holds the whole packet its header describes (Ethernet padding
    /// after it is allowed).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// [`Error::Truncated`] when the buffer is shorter than the fixed header;
    /// [`Error::Malformed`] when the IHL is below 5, or the total length is shorter than the
    /// header or longer than the buffer.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header = self.header_len();
        let total = usize::from(self.total_len());
        if header < HEADER_LEN || total < header || total > len {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// The header's length in bytes, options included (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(get_u8(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// Whether the header carries options (or an IHL below 5).
    pub fn has_options(&self) -> bool {
        self.header_len() != HEADER_LEN
    }

    pub fn dscp_ecn(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::DSCP_ECN)
    }

    /// Header and payload length, from the header.
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    fn flags_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// The fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment: more fragments follow, or the offset is not 0.
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// The reserved ("evil") flag bit.
    pub fn reserved_flag(&self) -> bool {
        self.flags_offset() & FLAG_RESERVED != 0
    }

    pub fn ttl(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TTL)
    }

    pub fn protocol(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::PROTOCOL)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_bytes::<4>(self.buffer.as_ref(), field::SRC_ADDR).unwrap_or_default())
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_bytes::<4>(self.buffer.as_ref(), field::DST_ADDR).unwrap_or_default())
    }

    /// The header (options included), as far as the buffer holds it.
    pub fn header(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(..self.header_len()).unwrap_or(b)
    }

    /// The options (empty without).
    pub fn options(&self) -> &[u8] {
        self.header().get(HEADER_LEN..).unwrap_or_default()
    }

    /// Whether the header checksum is right (the header sums to 0xffff).
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(self.header_sum() + u64::from(self.checksum())) == 0xffff
    }

    /// The header's sum without its checksum field (not folded). The fixed part is added field
    /// by field, each read at the size it is written (a field just set is read back from the
    /// store that set it, rather than stalling a wider load); the options in bulk.
    fn header_sum(&self) -> u64 {
        let b = self.buffer.as_ref();
        let word = |hi: usize, lo: usize| u64::from(get_u8(b, hi)) << 8 | u64::from(get_u8(b, lo));
        let addr = |r| u64::from(get_bytes(b, r).map_or(0, u32::from_be_bytes));
        let fixed = word(field::VER_IHL, field::DSCP_ECN)
            + u64::from(self.total_len())
            + u64::from(self.ident())
            + u64::from(self.flags_offset())
            + word(field::TTL, field::PROTOCOL)
            + addr(field::SRC_ADDR)
            + addr(field::DST_ADDR);
        checksum::sum_words(fixed, self.options())
    }

    /// The payload: from the end of the header to the total length (so Ethernet padding is not
    /// part of it); empty when the buffer does not hold it.
    pub fn payload(&self) -> &[u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.as_ref().get(range).unwrap_or_default()
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The payload (as [`Packet::payload`]), borrowed from the buffer rather than the view.
    pub fn into_payload(self) -> &'a [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.get(range).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        debug_assert!(header_len % 4 == 0 && (HEADER_LEN..=60).contains(&header_len));
        self.set_version_and_ihl(4, (header_len / 4) as u8);
    }

    /// Writes the version and IHL nibbles as given (their low 4 bits), whatever they say: for
    /// headers that must be wrong (a test's IHL below 5, version 6 under IPv4's EtherType).
    pub fn set_version_and_ihl(&mut self, version: u8, ihl: u8) {
        set_u8(
            self.buffer.as_mut(),
            field::VER_IHL,
            (version << 4) | (ihl & 0x0f),
        );
    }

    pub fn set_dscp_ecn(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), field::DSCP_ECN, v);
    }

    pub fn set_total_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Writes the whole flags/fragment-offset word: DF and MF as given, the reserved bit clear,
    /// `offset` in bytes (a multiple of 8).
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        set_u16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    pub fn set_ttl(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), field::TTL, v);
    }

    pub fn set_protocol(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), field::PROTOCOL, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::SRC_ADDR, &a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::DST_ADDR, &a.octets());
    }

    /// Exchanges source and destination addresses.
    pub fn swap_addresses(&mut self) {
        swap_fields::<4>(self.buffer.as_mut(), field::SRC_ADDR, field::DST_ADDR);
    }

    /// Computes the header checksum (over the options too) and writes it.
    pub fn fill_checksum(&mut self) {
        let c = !checksum::fold(self.header_sum());
        self.set_checksum(c);
    }

    /// The options (as [`Packet::options`]), to write them once the header length is set.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        let b = self.buffer.as_mut();
        let end = header_len.min(b.len());
        b.get_mut(HEADER_LEN..end).unwrap_or_default()
    }

    /// The payload (as [`Packet::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.as_mut().get_mut(range).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.1 → 10.0.0.2, UDP, DF, 4 payload bytes.
    fn packet() -> Vec<u8> {
        let mut b = vec![0u8; 24];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_and_header_len(HEADER_LEN);
        p.set_total_len(24);
        p.set_ident(0x1234);
        p.set_frag(true, false, 0);
        p.set_ttl(64);
        p.set_protocol(17);
        p.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
        p.fill_checksum();
        b[20..].copy_from_slice(&[1, 2, 3, 4]);
        b
    }

    #[test]
    fn fields() {
        let b = packet();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.version(), p.header_len(), p.has_options()),
            (4, 20, false)
        );
        assert_eq!(
            (p.total_len(), p.ident(), p.ttl(), p.protocol()),
            (24, 0x1234, 64, 17)
        );
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment() && !p.reserved_flag());
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(&b[6..8], &[0x40, 0]);
    }

    #[test]
    fn lengths_are_checked_once() {
        let b = packet();
        for cut in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&b[..cut]), Err(Error::Truncated));
            let p = Packet::new_unchecked(&b[..cut]);
            let _ = (p.src_addr(), p.dst_addr(), p.payload(), p.verify_checksum());
        }
        for cut in HEADER_LEN..b.len() {
            assert_eq!(
                Packet::new_checked(&b[..cut]),
                Err(Error::Malformed),
                "{cut}"
            );
        }
        // Padding after the packet is not payload.
        let mut padded = b.clone();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(
            Packet::new_checked(&padded[..]).unwrap().payload(),
            &[1, 2, 3, 4]
        );
        // IHL below 5; total length shorter than the header.
        let mut bad = b.clone();
        bad[0] = 0x44;
        assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Malformed));
        let mut bad = b.clone();
        bad[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Malformed));
    }

    #[test]
    fn options_and_fragments() {
        let mut b = packet();
        b.splice(20..20, [1, 1, 1, 0]);
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_and_header_len(24);
        p.set_total_len(28);
        p.set_frag(false, true, 8 * 3);
        p.fill_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.has_options());
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum(), "the checksum covers the options");
        assert!(p.is_fragment() && p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 24);
    }

    #[test]
    fn options_written_through_the_view() {
        let mut b = packet();
        b.splice(20..20, [0; 8]);
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_and_header_len(28);
        p.set_total_len(32);
        p.options_mut().copy_from_slice(&[1, 1, 1, 0, 7, 4, 0, 0]);
        p.fill_checksum();
        assert_eq!(&b[20..28], &[1, 1, 1, 0, 7, 4, 0, 0]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.options(), &[1, 1, 1, 0, 7, 4, 0, 0]);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum());
        // Without options, or with a header the buffer does not hold, as far as it goes.
        let mut b = packet();
        assert!(Packet::new_unchecked(&mut b[..]).options_mut().is_empty());
        let mut short = packet();
        short[0] = 0x46; // IHL 6, but only 2 bytes after the fixed header
        short.truncate(22);
        assert_eq!(
            Packet::new_unchecked(&mut short[..]).options_mut(),
            &mut [1, 2]
        );
        short[0] = 0x44; // IHL 4: no options
        assert!(Packet::new_unchecked(&mut short[..])
            .options_mut()
            .is_empty());
    }

    #[test]
    fn any_version_and_ihl_can_be_written() {
        let mut b = packet();
        for (version, ihl, byte) in [(4, 0, 0x40), (4, 4, 0x44), (6, 5, 0x65), (4, 15, 0x4f)] {
            let mut p = Packet::new_unchecked(&mut b[..]);
            p.set_version_and_ihl(version, ihl);
            assert_eq!(
                (p.version(), p.header_len()),
                (version, usize::from(ihl) * 4)
            );
            assert_eq!(b[0], byte);
        }
        // Only the low nibbles count; the rest of the header is untouched.
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_and_ihl(0x14, 0x25);
        assert_eq!((p.version(), p.header_len()), (4, 20));
        p.set_version_and_header_len(24);
        assert_eq!((p.version(), p.header_len()), (4, 24));
        assert_eq!(&b[1..], &packet()[1..]);
        let mut empty = [0u8; 0];
        Packet::new_unchecked(&mut empty[..]).set_version_and_ihl(4, 5);
    }

    #[test]
    fn swap_and_checksum() {
        let mut b = packet();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.swap_addresses();
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 1));
        p.set_ttl(1);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        // Setters on a short buffer do nothing.
        let mut short = [0u8; 9];
        let mut p = Packet::new_unchecked(&mut short[..]);
        p.swap_addresses();
        p.fill_checksum();
        p.set_dst_addr(Ipv4Addr::BROADCAST);
        assert_eq!(p.payload_mut(), &mut [] as &mut [u8]);
    }
}
