//! The NTP packet: a zero-copy view over a buffer, an owned header, and the walk over what
//! follows the 48-byte header (RFC 7822 extension fields and legacy MACs).
//!
//! The view checks the length once in [`PacketView::new`]; every accessor afterwards reads a
//! fixed range inside the first [`HEADER_LEN`] bytes and cannot panic.

use super::time::{NtpShort, NtpTimestamp};

/// Length of the fixed NTP header.
pub const HEADER_LEN: usize = 48;
/// The largest request this server reads: the IPv6 minimum MTU less the IPv6 and UDP headers.
/// Anything longer is dropped (no legitimate NTP request is that large).
pub const MAX_PACKET_LEN: usize = 1232;

/// Byte ranges of the header fields (RFC 5905 figure 8).
pub mod field {
    use std::ops::Range;
    pub const LI_VN_MODE: usize = 0;
    pub const STRATUM: usize = 1;
    pub const POLL: usize = 2;
    pub const PRECISION: usize = 3;
    pub const ROOT_DELAY: Range<usize> = 4..8;
    pub const ROOT_DISPERSION: Range<usize> = 8..12;
    pub const REFERENCE_ID: Range<usize> = 12..16;
    pub const REFERENCE_TS: Range<usize> = 16..24;
    pub const ORIGIN_TS: Range<usize> = 24..32;
    pub const RECEIVE_TS: Range<usize> = 32..40;
    pub const TRANSMIT_TS: Range<usize> = 40..48;
}

/// Leap indicator (2 bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Leap {
    #[default]
    NoWarning = 0,
    /// Last minute of the day has 61 seconds.
    AddSecond = 1,
    /// Last minute of the day has 59 seconds.
    DelSecond = 2,
    /// Clock not synchronised.
    Unsynchronized = 3,
}

impl Leap {
    pub const fn from_bits(b: u8) -> Leap {
        match b & 3 {
            0 => Leap::NoWarning,
            1 => Leap::AddSecond,
            2 => Leap::DelSecond,
            _ => Leap::Unsynchronized,
        }
    }
}

/// Association mode (3 bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    Reserved = 0,
    SymmetricActive = 1,
    SymmetricPassive = 2,
    #[default]
    Client = 3,
    Server = 4,
    Broadcast = 5,
    Control = 6,
    Private = 7,
}

impl Mode {
    pub const fn from_bits(b: u8) -> Mode {
        match b & 7 {
            0 => Mode::Reserved,
            1 => Mode::SymmetricActive,
            2 => Mode::SymmetricPassive,
            3 => Mode::Client,
            4 => Mode::Server,
            5 => Mode::Broadcast,
            6 => Mode::Control,
            _ => Mode::Private,
        }
    }
}

/// Packs LI, VN and mode into the first header byte.
pub const fn li_vn_mode(leap: Leap, version: u8, mode: Mode) -> u8 {
    ((leap as u8) << 6) | ((version & 7) << 3) | mode as u8
}

/// Why a buffer is not a well-formed NTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketError {
    /// Fewer than 48 bytes.
    TooShort,
    /// More than [`MAX_PACKET_LEN`] bytes.
    TooLong,
    /// The bytes after the header are neither a sequence of extension fields nor a legacy MAC.
    MalformedExtension,
}

/// A read-only view over a buffer holding at least a full NTP header.
#[derive(Clone, Copy, Debug)]
pub struct PacketView<'a> {
    header: &'a [u8; HEADER_LEN],
    rest: &'a [u8],
}

impl<'a> PacketView<'a> {
    /// Checks the length and returns the view. The bytes after the header are not validated
    /// here: see [`PacketView::trailer`].
    pub fn new(buf: &'a [u8]) -> Result<Self, PacketError> {
        if buf.len() > MAX_PACKET_LEN {
            return Err(PacketError::TooLong);
        }
        let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return Err(PacketError::TooShort);
        };
        Ok(PacketView { header, rest })
    }

    /// The whole packet length in bytes.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.rest.len()
    }

    /// Always false: a view holds at least a header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The 48 header bytes.
    pub fn header_bytes(&self) -> &'a [u8; HEADER_LEN] {
        self.header
    }

    /// The bytes after the header (extension fields and/or MAC), unvalidated.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub fn leap(&self) -> Leap {
        Leap::from_bits(self.header[field::LI_VN_MODE] >> 6)
    }
    pub fn version(&self) -> u8 {
        (self.header[field::LI_VN_MODE] >> 3) & 7
    }
    pub fn mode(&self) -> Mode {
        Mode::from_bits(self.header[field::LI_VN_MODE])
    }
    pub fn stratum(&self) -> u8 {
        self.header[field::STRATUM]
    }
    pub fn poll(&self) -> i8 {
        self.header[field::POLL] as i8
    }
    pub fn precision(&self) -> i8 {
        self.header[field::PRECISION] as i8
    }
    pub fn root_delay(&self) -> NtpShort {
        NtpShort(self.u32_at(field::ROOT_DELAY.start))
    }
    pub fn root_dispersion(&self) -> NtpShort {
        NtpShort(self.u32_at(field::ROOT_DISPERSION.start))
    }
    pub fn reference_id(&self) -> [u8; 4] {
        let s = field::REFERENCE_ID.start;
        [
            self.header[s],
            self.header[s + 1],
            self.header[s + 2],
            self.header[s + 3],
        ]
    }
    pub fn reference_ts(&self) -> NtpTimestamp {
        self.ts_at(field::REFERENCE_TS.start)
    }
    pub fn origin_ts(&self) -> NtpTimestamp {
        self.ts_at(field::ORIGIN_TS.start)
    }
    pub fn receive_ts(&self) -> NtpTimestamp {
        self.ts_at(field::RECEIVE_TS.start)
    }
    pub fn transmit_ts(&self) -> NtpTimestamp {
        self.ts_at(field::TRANSMIT_TS.start)
    }

    /// Walks the bytes after the header, by the rules of the packet's version. See
    /// [`Trailer::parse_for`].
    pub fn trailer(&self) -> Result<Trailer<'a>, PacketError> {
        Trailer::parse_for(self.rest, self.version())
    }

    /// The owned header.
    pub fn header(&self) -> Header {
        Header {
            leap: self.leap(),
            version: self.version(),
            mode: self.mode(),
            stratum: self.stratum(),
            poll: self.poll(),
            precision: self.precision(),
            root_delay: self.root_delay(),
            root_dispersion: self.root_dispersion(),
            reference_id: self.reference_id(),
            reference_ts: self.reference_ts(),
            origin_ts: self.origin_ts(),
            receive_ts: self.receive_ts(),
            transmit_ts: self.transmit_ts(),
        }
    }

    fn u32_at(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.header[at..at + 4]);
        u32::from_be_bytes(b)
    }

    fn ts_at(&self, at: usize) -> NtpTimestamp {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.header[at..at + 8]);
        NtpTimestamp::from_be_bytes(b)
    }
}

/// The NTP header as plain values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub leap: Leap,
    pub version: u8,
    pub mode: Mode,
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    pub root_delay: NtpShort,
    pub root_dispersion: NtpShort,
    pub reference_id: [u8; 4],
    pub reference_ts: NtpTimestamp,
    pub origin_ts: NtpTimestamp,
    pub receive_ts: NtpTimestamp,
    pub transmit_ts: NtpTimestamp,
}

impl Header {
    /// Parses the header of a packet (length rules of [`PacketView::new`]).
    pub fn parse(buf: &[u8]) -> Result<Header, PacketError> {
        PacketView::new(buf).map(|v| v.header())
    }

    /// Writes the 48 header bytes.
    pub fn emit(&self, out: &mut [u8; HEADER_LEN]) {
        out[field::LI_VN_MODE] = li_vn_mode(self.leap, self.version, self.mode);
        out[field::STRATUM] = self.stratum;
        out[field::POLL] = self.poll as u8;
        out[field::PRECISION] = self.precision as u8;
        out[field::ROOT_DELAY].copy_from_slice(&self.root_delay.0.to_be_bytes());
        out[field::ROOT_DISPERSION].copy_from_slice(&self.root_dispersion.0.to_be_bytes());
        out[field::REFERENCE_ID].copy_from_slice(&self.reference_id);
        out[field::REFERENCE_TS].copy_from_slice(&self.reference_ts.to_be_bytes());
        out[field::ORIGIN_TS].copy_from_slice(&self.origin_ts.to_be_bytes());
        out[field::RECEIVE_TS].copy_from_slice(&self.receive_ts.to_be_bytes());
        out[field::TRANSMIT_TS].copy_from_slice(&self.transmit_ts.to_be_bytes());
    }

    /// The 48 header bytes as an array.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        self.emit(&mut out);
        out
    }
}

/// Extension field header length (type + length).
pub const EXT_HEADER_LEN: usize = 4;
/// The smallest extension field RFC 7822 allows.
pub const EXT_MIN_LEN: usize = 16;

/// One RFC 7822 extension field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtensionField<'a> {
    pub field_type: u16,
    /// The value, without the 4-byte type/length header (may include padding).
    pub body: &'a [u8],
}

/// A legacy (RFC 5905 §7.3) message authentication code: a key id and a digest. A MAC of four
/// bytes (key id only) is the crypto-NAK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyMac<'a> {
    pub key_id: u32,
    pub digest: &'a [u8],
}

impl LegacyMac<'_> {
    pub fn is_crypto_nak(&self) -> bool {
        self.digest.is_empty()
    }
}

/// Legacy MAC lengths: crypto-NAK (key id only), MD5 (4 + 16) and SHA-1 / AES-CMAC-style
/// 20-byte digests (4 + 20).
pub const fn is_legacy_mac_len(n: usize) -> bool {
    matches!(n, 4 | 20 | 24)
}

/// The longest legacy MAC: a key id and a SHA-512 digest. Only NTPv1–3 packets carry MACs
/// longer than 24 bytes (they have no extension fields to confuse them with).
pub const MAX_MAC_LEN: usize = 4 + 64;

/// What follows the header: zero or more extension fields, then optionally a legacy MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer<'a> {
    /// The extension-field region (walk it with [`Trailer::extensions`]).
    fields: &'a [u8],
    pub mac: Option<LegacyMac<'a>>,
}

impl<'a> Trailer<'a> {
    /// Splits `rest` (the bytes after the header) into extension fields and a MAC.
    ///
    /// Fields are taken while the next four bytes announce a length that is a multiple of 4, at
    /// least 16, and fits; the remainder must then be empty or have a legacy MAC length. When a
    /// remainder of MAC length could also be read as one last field (the key id decoding to a
    /// plausible type/length), the MAC reading wins, as in RFC 7822 §7.5's disambiguation by
    /// length: a field that ends the packet must be longer than 24 bytes when no MAC follows.
    pub fn parse(rest: &'a [u8]) -> Result<Trailer<'a>, PacketError> {
        let mut pos = 0;
        loop {
            let remaining = &rest[pos..];
            if remaining.is_empty() {
                return Ok(Trailer {
                    fields: &rest[..pos],
                    mac: None,
                });
            }
            if is_legacy_mac_len(remaining.len()) {
                let (id, digest) = remaining.split_at(4);
                return Ok(Trailer {
                    fields: &rest[..pos],
                    mac: Some(LegacyMac {
                        key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
                        digest,
                    }),
                });
            }
            match ext_field_len(remaining) {
                Some(len) => pos += len,
                None => return Err(PacketError::MalformedExtension),
            }
        }
    }

    /// [`Trailer::parse`], for a packet of NTP `version`: NTPv1–3 packets have no extension
    /// fields, so there a remainder of 28 to [`MAX_MAC_LEN`] bytes (a multiple of 4) is a MAC
    /// with a long digest (SHA-256 and up, as chronyd sends them).
    pub fn parse_for(rest: &'a [u8], version: u8) -> Result<Trailer<'a>, PacketError> {
        let n = rest.len();
        if version <= 3 && n > 24 && n <= MAX_MAC_LEN && n % 4 == 0 {
            let (id, digest) = rest.split_at(4);
            return Ok(Trailer {
                fields: &[],
                mac: Some(LegacyMac {
                    key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
                    digest,
                }),
            });
        }
        Trailer::parse(rest)
    }

    /// The length of the extension-field region (where a MAC starts, after the header).
    pub fn fields_len(&self) -> usize {
        self.fields.len()
    }

    /// True when there is neither an extension field nor a MAC.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.mac.is_none()
    }

    /// Iterates over the extension fields (already validated by [`Trailer::parse`]).
    pub fn extensions(&self) -> ExtensionIter<'a> {
        ExtensionIter { rest: self.fields }
    }
}

/// The length of the extension field at the start of `buf`, if it is well-formed and fits.
fn ext_field_len(buf: &[u8]) -> Option<usize> {
    let (hdr, _) = buf.split_first_chunk::<EXT_HEADER_LEN>()?;
    let len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    (len >= EXT_MIN_LEN && len % 4 == 0 && len <= buf.len()).then_some(len)
}

/// Iterator over validated extension fields.
#[derive(Clone, Debug)]
pub struct ExtensionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ExtensionIter<'a> {
    type Item = ExtensionField<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let len = ext_field_len(self.rest)?;
        let (field, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(ExtensionField {
            field_type: u16::from_be_bytes([field[0], field[1]]),
            body: &field[EXT_HEADER_LEN..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(field_type: u16, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[..2].copy_from_slice(&field_type.to_be_bytes());
        v[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        v
    }

    #[test]
    fn header_roundtrip() {
        let h = Header {
            leap: Leap::AddSecond,
            version: 4,
            mode: Mode::Server,
            stratum: 2,
            poll: -6,
            precision: -24,
            root_delay: NtpShort(0x0001_0203),
            root_dispersion: NtpShort(7),
            reference_id: *b"GPS\0",
            reference_ts: NtpTimestamp(1),
            origin_ts: NtpTimestamp(2),
            receive_ts: NtpTimestamp(3),
            transmit_ts: NtpTimestamp(u64::MAX),
        };
        let bytes = h.to_bytes();
        assert_eq!(bytes[0], 0b01_100_100);
        assert_eq!(Header::parse(&bytes), Ok(h));
    }

    #[test]
    fn length_limits() {
        assert_eq!(
            PacketView::new(&[0u8; 47]).unwrap_err(),
            PacketError::TooShort
        );
        assert!(PacketView::new(&[0u8; 48]).is_ok());
        assert!(PacketView::new(&[0u8; MAX_PACKET_LEN]).is_ok());
        assert_eq!(
            PacketView::new(&[0u8; MAX_PACKET_LEN + 1]).unwrap_err(),
            PacketError::TooLong
        );
    }

    #[test]
    fn trailer_fields_then_mac() {
        let mut rest = ext(0x0104, 36);
        rest.extend(ext(0x9999, 16));
        rest.extend([0, 0, 0, 7]);
        rest.extend([0xaa; 16]);
        let t = Trailer::parse(&rest).unwrap();
        let f: Vec<_> = t.extensions().collect();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].field_type, 0x0104);
        assert_eq!(f[0].body.len(), 32);
        assert_eq!(f[1].field_type, 0x9999);
        assert_eq!(t.mac.unwrap().key_id, 7);
        assert_eq!(t.mac.unwrap().digest.len(), 16);
    }

    #[test]
    fn trailer_rejects_truncated_and_bad_lengths() {
        let mut truncated = ext(0x0104, 36);
        truncated.truncate(30);
        assert_eq!(
            Trailer::parse(&truncated),
            Err(PacketError::MalformedExtension)
        );
        let mut odd = ext(0x0104, 32);
        odd[3] = 30; // not a multiple of 4
        assert_eq!(Trailer::parse(&odd), Err(PacketError::MalformedExtension));
        let mut small = ext(0x0104, 32);
        small[3] = 8; // below the 16-byte minimum
        assert_eq!(Trailer::parse(&small), Err(PacketError::MalformedExtension));
        assert_eq!(
            Trailer::parse(&[0u8; 7]),
            Err(PacketError::MalformedExtension)
        );
    }

    #[test]
    fn crypto_nak_and_empty() {
        let t = Trailer::parse(&[0, 0, 0, 0]).unwrap();
        assert!(t.mac.unwrap().is_crypto_nak());
        assert!(Trailer::parse(&[]).unwrap().is_empty());
    }
}
