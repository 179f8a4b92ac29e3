//! The internet checksum (RFC 1071), the one implementation for every header here: IPv4's
//! header checksum and UDP's over its pseudo-header, for both IP versions.
//!
//! A sum is accumulated unfolded in a `u64` ([`sum_words`], [`pseudo_header`]) and folded to
//! 16 bits once at the end ([`fold`]); the checksum field holds the complement of the fold. A
//! header whose checksum is right sums, field included, to `0xffff`. An unfolded sum means
//! something only folded: the same words added in other groupings differ before the fold.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` as big-endian 16-bit words, added to `sum` (not folded). An
/// odd last byte is padded with a zero byte. `sum` below 2^32 and `data` below 16 GiB cannot
/// overflow the accumulator.
pub fn sum_words(mut sum: u64, data: &[u8]) -> u64 {
    // Four bytes at a time: a big-endian 32-bit word is two 16-bit words, and 2^16 ≡ 1 in
    // one's-complement arithmetic, so adding it whole adds both ([`fold`] takes the carries).
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        sum += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    match *chunks.remainder() {
        [a, b, c] => sum + u64::from(u16::from_be_bytes([a, b])) + (u64::from(c) << 8),
        [a, b] => sum + u64::from(u16::from_be_bytes([a, b])),
        [a] => sum + (u64::from(a) << 8),
        _ => sum,
    }
}

/// Folds a one's-complement accumulator to 16 bits (end-around carry).
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum field's value for `data` whose own checksum field is 0: the complement of the
/// folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_words(0, data))
}

/// Whether `data`, checksum field included, sums to `0xffff`.
pub fn verifies(data: &[u8]) -> bool {
    fold(sum_words(0, data)) == 0xffff
}

/// The IPv4 pseudo-header's sum (not folded): addresses, protocol and upper-layer length.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> u64 {
    let sum = u64::from(protocol) + len as u64;
    sum_words(sum_words(sum, &src.octets()), &dst.octets())
}

/// The IPv6 pseudo-header's sum (RFC 8200 §8.1; not folded).
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, len: usize) -> u64 {
    let sum = u64::from(protocol) + len as u64;
    sum_words(sum_words(sum, &src.octets()), &dst.octets())
}

/// The pseudo-header's sum for either family. Addresses of different families contribute
/// nothing (no datagram has them, and no checksum computed with them verifies).
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u64 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(s, d, protocol, len),
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_v6(s, d, protocol, len),
        _ => u64::from(protocol) + len as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_folding() {
        // RFC 1071's example words: 0001 f203 f4f5 f6f7 → sum ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
        // Odd length: the last byte is padded with zero.
        assert_eq!(fold(sum_words(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(fold(0x1_ffff), 0x0001);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(checksum(&[]), 0xffff);
    }

    /// The plain definition: 16-bit words, one at a time.
    fn reference(sum: u64, data: &[u8]) -> u16 {
        let mut s = u128::from(sum);
        for c in data.chunks(2) {
            s += u128::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    proptest::proptest! {
        #[test]
        fn sums_match_the_definition(
            sum in 0u64..0x1_0000_0000,
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            proptest::prop_assert_eq!(fold(sum_words(sum, &data)), reference(sum, &data));
        }
    }

    #[test]
    fn a_filled_checksum_verifies() {
        let mut h = [
            0x45u8, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verifies(&h));
        h[15] ^= 1;
        assert!(!verifies(&h));
    }

    #[test]
    fn pseudo_headers() {
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        // 0a00 0001 0a00 0002 0011 0038 (sums are compared folded: that is all they mean)
        let want = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 56;
        assert_eq!(fold(pseudo_header_v4(s, d, 17, 56)), want);
        assert_eq!(fold(pseudo_header(s.into(), d.into(), 17, 56)), want);
        let (s6, d6): (Ipv6Addr, Ipv6Addr) =
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let want6 = fold(0xfd00 + 1 + 0xfd00 + 2 + 17 + 56);
        assert_eq!(fold(pseudo_header(s6.into(), d6.into(), 17, 56)), want6);
        assert_eq!(fold(pseudo_header(s.into(), d6.into(), 17, 56)), 17 + 56);
    }
}
