//! Randomness from the operating system (getrandom), for request nonces and poll jitter. Should
//! the OS source fail, the clock's low bits stand in: these values need to be unpredictable to
//! an off-path spoofer, not cryptographic keys.

use crate::proto::NtpTimestamp;

use super::clock;

/// A random 64-bit transmit timestamp for a client request (RFC 9109: reveals nothing of our
/// clock and doubles as the nonce the reply's origin must echo).
pub fn nonce() -> NtpTimestamp {
    NtpTimestamp(getrandom::u64().unwrap_or_else(|_| clock::now().0 as u64 ^ 0x9e37_79b9_7f4a_7c15))
}

/// A random 64-bit seed (for hash tables keyed against flooding).
pub fn seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| clock::now().0 as u64 ^ 0x6a09_e667_f3bc_c908)
}

/// A random value in [0, 1).
pub fn unit() -> f64 {
    let r = getrandom::u32().unwrap_or_else(|_| clock::now().0 as u32);
    r as f64 / 4_294_967_296.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_differ_and_stay_in_range() {
        assert_ne!(super::nonce(), super::nonce());
        for _ in 0..1000 {
            let u = super::unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
