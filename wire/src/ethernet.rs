//! Ethernet II frames and one 802.1Q / 802.1ad VLAN tag.
//!
//! A tag is seen the way the kernel's `vlan_hdr` sees it: the outer EtherType field holds the
//! tag protocol identifier (0x8100 or 0x88a8), and the four bytes after it — [`VlanTag`] — hold
//! the tag control information and the EtherType of what follows.

use super::{get_bytes, get_u16, set_bytes, set_u16, swap_fields, Error};

/// EtherType values.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad (QinQ) service tag.
    pub const QINQ: u16 = 0x88a8;
}

mod field {
    use std::ops::Range;
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;

    /// In a [`super::VlanTag`] (the four bytes after the outer EtherType).
    pub const TCI: Range<usize> = 0..2;
    pub const INNER_ETHERTYPE: Range<usize> = 2..4;
    pub const TAG_PAYLOAD: usize = 4;
}

/// Length of the Ethernet II header (no tag).
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Length a VLAN tag adds to it.
pub const VLAN_TAG_LEN: usize = field::TAG_PAYLOAD;

/// A MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Address(pub [u8; 6]);

impl Address {
    pub const BROADCAST: Address = Address([0xff; 6]);

    /// A group (multicast or broadcast) address: the I/G bit of the first octet.
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 != 0
    }

    pub fn is_unicast(&self) -> bool {
        !self.is_group()
    }
}

/// A view of an Ethernet II frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

/// Where a frame's payload starts once at most one VLAN tag is stepped over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Untagged {
    /// The payload's EtherType (the tag's inner one when tagged).
    pub ethertype: u16,
    /// The offset of the payload: [`HEADER_LEN`], or that plus [`VLAN_TAG_LEN`].
    pub header_len: usize,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// A view without a length check (for a buffer about to be written).
    pub fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// A view of a buffer that holds at least the Ethernet header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let f = Frame::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// [`Error::Truncated`] when the buffer is shorter than the header.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> Address {
        Address(get_bytes(self.buffer.as_ref(), field::DESTINATION).unwrap_or_default())
    }

    pub fn src_addr(&self) -> Address {
        Address(get_bytes(self.buffer.as_ref(), field::SOURCE).unwrap_or_default())
    }

    /// The outer EtherType (a tag protocol identifier when the frame is tagged).
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Whether the outer EtherType announces a VLAN tag (802.1Q or 802.1ad).
    pub fn is_tagged(&self) -> bool {
        matches!(self.ethertype(), ethertype::VLAN | ethertype::QINQ)
    }

    /// What follows the Ethernet header (a tag, when tagged).
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::PAYLOAD..)
            .unwrap_or_default()
    }

    /// Steps over at most one VLAN tag: the EtherType of what follows and where it starts.
    /// [`Error::Truncated`] when a tag is announced but not all there. A second tag is not
    /// stepped over: its protocol identifier is the returned EtherType.
    pub fn untag(&self) -> Result<Untagged, Error> {
        if !self.is_tagged() {
            return Ok(Untagged {
                ethertype: self.ethertype(),
                header_len: HEADER_LEN,
            });
        }
        let tag = VlanTag::new_checked(self.payload())?;
        Ok(Untagged {
            ethertype: tag.ethertype(),
            header_len: HEADER_LEN + VLAN_TAG_LEN,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst_addr(&mut self, a: Address) {
        set_bytes(self.buffer.as_mut(), field::DESTINATION, &a.0);
    }

    pub fn set_src_addr(&mut self, a: Address) {
        set_bytes(self.buffer.as_mut(), field::SOURCE, &a.0);
    }

    pub fn set_ethertype(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, v);
    }

    /// Exchanges source and destination (a reply goes back to the sender).
    pub fn swap_addresses(&mut self) {
        swap_fields::<6>(self.buffer.as_mut(), field::DESTINATION, field::SOURCE);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD..)
            .unwrap_or_default()
    }
}

/// A view of a VLAN tag: the four bytes after a tag protocol identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    /// A view of a buffer that holds at least the tag.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let t = VlanTag::new_unchecked(buffer);
        t.check_len()?;
        Ok(t)
    }

    /// [`Error::Truncated`] when the buffer is shorter than the tag.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < VLAN_TAG_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Tag control information: priority (3 bits), drop eligible (1), VLAN id (12).
    pub fn tci(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TCI)
    }

    pub fn vlan_id(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The EtherType of what follows the tag.
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::INNER_ETHERTYPE)
    }

    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::TAG_PAYLOAD..)
            .unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    pub fn set_tci(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::TCI, v);
    }

    pub fn set_ethertype(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::INNER_ETHERTYPE, v);
    }

    /// What follows the tag (as [`VlanTag::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::TAG_PAYLOAD..)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAGGED: [u8; 20] = [
        2, 0, 0, 0, 0, 0x51, // destination
        2, 0, 0, 0, 0, 0xc1, // source
        0x81, 0x00, // 802.1Q
        0x20, 42, // priority 1, VLAN 42
        0x08, 0x00, // IPv4
        0x45, 0,
    ];

    #[test]
    fn fields_and_the_tag() {
        let f = Frame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(f.dst_addr(), Address([2, 0, 0, 0, 0, 0x51]));
        assert_eq!(f.src_addr(), Address([2, 0, 0, 0, 0, 0xc1]));
        assert!(f.dst_addr().is_unicast());
        assert!(Address::BROADCAST.is_group());
        assert_eq!(f.ethertype(), ethertype::VLAN);
        let tag = VlanTag::new_checked(f.payload()).unwrap();
        assert_eq!((tag.tci(), tag.vlan_id()), (0x202a, 42));
        assert_eq!(tag.payload(), &[0x45, 0]);
        assert_eq!(
            f.untag(),
            Ok(Untagged {
                ethertype: ethertype::IPV4,
                header_len: 18
            })
        );
        let untagged = [&TAGGED[..12], &TAGGED[16..]].concat();
        let f = Frame::new_checked(&untagged[..]).unwrap();
        assert_eq!(
            f.untag(),
            Ok(Untagged {
                ethertype: ethertype::IPV4,
                header_len: 14
            })
        );
    }

    #[test]
    fn short_buffers() {
        for cut in 0..HEADER_LEN {
            assert_eq!(Frame::new_checked(&TAGGED[..cut]), Err(Error::Truncated));
            // Unchecked, nothing panics.
            let f = Frame::new_unchecked(&TAGGED[..cut]);
            let _ = (
                f.dst_addr(),
                f.src_addr(),
                f.ethertype(),
                f.payload(),
                f.untag(),
            );
        }
        for cut in HEADER_LEN..HEADER_LEN + VLAN_TAG_LEN {
            let f = Frame::new_checked(&TAGGED[..cut]).unwrap();
            assert_eq!(f.untag(), Err(Error::Truncated));
        }
        let mut short = [0u8; 3];
        let mut f = Frame::new_unchecked(&mut short[..]);
        f.swap_addresses();
        f.set_ethertype(1);
        f.set_dst_addr(Address::BROADCAST);
        assert_eq!(short, [0; 3]);
    }

    #[test]
    fn swap_and_set() {
        let mut b = TAGGED;
        let mut f = Frame::new_checked(&mut b[..]).unwrap();
        f.swap_addresses();
        assert_eq!(f.dst_addr(), Address([2, 0, 0, 0, 0, 0xc1]));
        assert_eq!(f.src_addr(), Address([2, 0, 0, 0, 0, 0x51]));
        f.set_ethertype(ethertype::QINQ);
        let mut tag = VlanTag::new_checked(f.payload_mut()).unwrap();
        tag.set_tci(7);
        tag.set_ethertype(ethertype::IPV6);
        assert_eq!(&b[12..18], &[0x88, 0xa8, 0, 7, 0x86, 0xdd]);
    }

    #[test]
    fn a_tag_and_its_payload_written_through_the_view() {
        let mut b = [0u8; 7];
        let mut tag = VlanTag::new_unchecked(&mut b[..]);
        tag.set_tci(42);
        tag.set_ethertype(ethertype::IPV4);
        tag.payload_mut().copy_from_slice(&[0x45, 0, 9]);
        assert_eq!(b, [0, 42, 0x08, 0x00, 0x45, 0, 9]);
        assert_eq!(
            VlanTag::new_checked(&b[..]).unwrap().payload(),
            &[0x45, 0, 9]
        );
        let mut short = [0u8; 3];
        assert!(VlanTag::new_unchecked(&mut short[..])
            .payload_mut()
            .is_empty());
    }
}
