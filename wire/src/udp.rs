//! UDP datagrams (RFC 768) and their checksum over the IPv4 or IPv6 pseudo-header.

use std::net::IpAddr;

use super::{checksum, get_u16, protocol, set_u16, swap_fields, Error};

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// What a datagram's checksum field says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumState {
    /// 0: the sender computed none (allowed over IPv4 only).
    Absent,
    /// The datagram sums, with its pseudo-header, to 0xffff.
    Valid,
    /// The field holds only the folded pseudo-header sum: what a sender with checksum offload
    /// leaves for the hardware to complete (Linux CHECKSUM_PARTIAL), seen in frames from a
    /// virtual device (veth, tap) that never crossed a wire.
    PseudoHeaderOnly,
    /// Anything else: the datagram was damaged (or forged).
    Invalid,
}

/// A view of a UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without a length check (for a buffer about to be written).
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// A view of a buffer that holds the header and the length it gives.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// [`Error::Truncated`] when the buffer is shorter than the header; [`Error::Malformed`]
    /// when the length field is shorter than the header or longer than the buffer.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field = usize::from(self.len());
        if field < HEADER_LEN || field > len {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header and payload.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram as its length field gives it (header included), as far as the buffer
    /// holds it.
    pub fn datagram(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(..usize::from(self.len())).unwrap_or(b)
    }

    /// The payload, up to the length field; empty when the buffer does not hold it.
    pub fn payload(&self) -> &[u8] {
        let range = HEADER_LEN..usize::from(self.len());
        self.buffer.as_ref().get(range).unwrap_or_default()
    }

    /// Classifies the checksum field of the datagram from `src` to `dst`.
    pub fn checksum_state(&self, src: IpAddr, dst: IpAddr) -> ChecksumState {
        let field = self.checksum();
        if field == 0 {
            return ChecksumState::Absent;
        }
        let pseudo = self.pseudo_header(src, dst);
        if checksum::fold(self.sum_without_checksum(pseudo) + u64::from(field)) == 0xffff {
            ChecksumState::Valid
        } else if field == checksum::fold(pseudo) {
            ChecksumState::PseudoHeaderOnly
        } else {
            ChecksumState::Invalid
        }
    }

    /// The pseudo-header's sum for this datagram's length.
    fn pseudo_header(&self, src: IpAddr, dst: IpAddr) -> u64 {
        checksum::pseudo_header(src, dst, protocol::UDP, self.datagram().len())
    }

    /// `pseudo` plus the datagram's sum without its checksum field (not folded): the header
    /// field by field, each read at the size it is written (a field just set is read back from
    /// the store that set it, rather than stalling a wider load), the payload in bulk.
    fn sum_without_checksum(&self, pseudo: u64) -> u64 {
        let header =
            u64::from(self.src_port()) + u64::from(self.dst_port()) + u64::from(self.len());
        checksum::sum_words(pseudo + header, self.payload())
    }

    /// Whether the checksum is present and right.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.checksum_state(src, dst) == ChecksumState::Valid
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The payload (as [`Packet::payload`]), borrowed from the buffer rather than the view.
    pub fn into_payload(self) -> &'a [u8] {
        let range = HEADER_LEN..usize::from(self.len());
        self.buffer.get(range).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    pub fn set_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Exchanges source and destination ports.
    pub fn swap_ports(&mut self) {
        swap_fields::<2>(self.buffer.as_mut(), field::SRC_PORT, field::DST_PORT);
    }

    /// Computes the checksum of the datagram (as long as its length field) from `src` to `dst`
    /// and writes it; a computed 0 is sent as 0xffff (0 means "none").
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        let pseudo = self.pseudo_header(src, dst);
        let c = match !checksum::fold(self.sum_without_checksum(pseudo)) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }

    /// The payload (as [`Packet::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = HEADER_LEN..usize::from(self.len());
        self.buffer.as_mut().get_mut(range).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const S: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const D: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn datagram(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN + payload.len()];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(40000);
        p.set_dst_port(123);
        p.set_len((HEADER_LEN + payload.len()) as u16);
        p.payload_mut().copy_from_slice(payload);
        p.fill_checksum(S.into(), D.into());
        b
    }

    #[test]
    fn fields_and_checksum() {
        let b = datagram(&[1, 2, 3]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (40000, 123, 11));
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(p.checksum_state(S.into(), D.into()), ChecksumState::Valid);
        assert!(p.verify_checksum(S.into(), D.into()));
        // The pseudo-header is in it: another destination does not verify.
        let other = Ipv4Addr::new(10, 0, 0, 3);
        assert_eq!(
            p.checksum_state(S.into(), other.into()),
            ChecksumState::Invalid
        );
        let v6: Ipv6Addr = "fd00::1".parse().unwrap();
        assert_eq!(
            p.checksum_state(v6.into(), v6.into()),
            ChecksumState::Invalid
        );
    }

    #[test]
    fn absent_and_partial_checksums() {
        let mut b = datagram(&[0; 48]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_checksum(0);
        assert_eq!(p.checksum_state(S.into(), D.into()), ChecksumState::Absent);
        let partial = checksum::fold(checksum::pseudo_header(S.into(), D.into(), 17, 56));
        p.set_checksum(partial);
        assert_eq!(
            p.checksum_state(S.into(), D.into()),
            ChecksumState::PseudoHeaderOnly
        );
        p.set_checksum(partial.wrapping_add(1));
        assert_eq!(p.checksum_state(S.into(), D.into()), ChecksumState::Invalid);
    }

    #[test]
    fn a_zero_checksum_is_sent_as_ffff() {
        // Find a payload word whose datagram sums to 0xffff before the complement.
        let base = datagram(&[0, 0]);
        let sum = checksum::fold(checksum::sum_words(
            checksum::pseudo_header(S.into(), D.into(), 17, 10),
            &[&base[..6], &[0, 0, 0, 0]].concat(),
        ));
        let word = 0xffff - sum;
        let b = datagram(&word.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(S.into(), D.into()));
    }

    #[test]
    fn lengths_are_checked_once() {
        let b = datagram(&[1, 2, 3]);
        for cut in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&b[..cut]), Err(Error::Truncated));
            let p = Packet::new_unchecked(&b[..cut]);
            let _ = (
                p.src_port(),
                p.payload(),
                p.checksum_state(S.into(), D.into()),
            );
        }
        for cut in HEADER_LEN..b.len() {
            assert_eq!(Packet::new_checked(&b[..cut]), Err(Error::Malformed));
        }
        for len in [0u16, 7] {
            let mut bad = b.clone();
            Packet::new_unchecked(&mut bad[..]).set_len(len);
            assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Malformed));
        }
        // A buffer longer than the length field: the rest is not payload.
        let mut long = b.clone();
        long.push(9);
        assert_eq!(
            Packet::new_checked(&long[..]).unwrap().payload(),
            &[1, 2, 3]
        );
        let mut short = [0u8; 5];
        let mut p = Packet::new_unchecked(&mut short[..]);
        p.swap_ports();
        p.fill_checksum(S.into(), D.into());
        assert_eq!(short, [0; 5]);
    }

    #[test]
    fn swap_ports() {
        let mut b = datagram(&[]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.swap_ports();
        assert_eq!((p.src_port(), p.dst_port()), (123, 40000));
    }
}
