//! NTP time formats (RFC 5905 §6) and the on-wire offset/delay arithmetic.
//!
//! * [`NtpTimestamp`]: the 64-bit format, 32 bits of seconds since 1900-01-01 (modulo 2^32, so
//!   the same bit pattern recurs every era of ~136 years) and 32 bits of fraction.
//! * [`NtpShort`]: the 32-bit 16.16 format used for root delay and root dispersion.
//! * [`UnixNanos`]: nanoseconds since the Unix epoch, the representation the rest of the
//!   program uses for instants (it covers 1677–2262).
//!
//! Differences between two [`NtpTimestamp`]s are era-aware in the RFC 5905 sense: the 64-bit
//! values are subtracted modulo 2^64 and read as a signed number, which is right whenever the two
//! instants are within 68 years of each other, in particular across the 2036 rollover.

use std::fmt;

/// Seconds between 1900-01-01 (NTP era 0) and 1970-01-01 (Unix epoch).
pub const NTP_UNIX_OFFSET_SECS: i64 = 2_208_988_800;
/// Length of one NTP era in seconds (2^32).
pub const ERA_SECS: i64 = 1 << 32;
const NANOS_PER_SEC: i64 = 1_000_000_000;

/// An instant as nanoseconds since 1970-01-01T00:00:00 UTC (may be negative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixNanos(pub i64);

impl UnixNanos {
    /// Builds an instant from whole seconds and nanoseconds (`nanos` < 10^9).
    pub const fn from_parts(secs: i64, nanos: u32) -> Self {
        UnixNanos(secs * NANOS_PER_SEC + nanos as i64)
    }

    /// Whole seconds (floor) and the nanoseconds past them.
    pub const fn parts(self) -> (i64, u32) {
        (
            self.0.div_euclid(NANOS_PER_SEC),
            self.0.rem_euclid(NANOS_PER_SEC) as u32,
        )
    }

    /// Seconds as a float (for display and statistics, not for wire values).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// `self - other` in nanoseconds, saturating.
    pub const fn nanos_since(self, other: UnixNanos) -> i64 {
        self.0.saturating_sub(other.0)
    }

    /// This instant shifted by `delta` nanoseconds, saturating.
    pub const fn add_nanos(self, delta: i64) -> UnixNanos {
        UnixNanos(self.0.saturating_add(delta))
    }
}

/// The NTP 64-bit timestamp format, stored as the raw 64-bit value (seconds << 32 | fraction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// The all-zero timestamp, which RFC 5905 reserves for "unknown / not set".
    pub const ZERO: NtpTimestamp = NtpTimestamp(0);

    /// Builds a timestamp from its two 32-bit halves.
    pub const fn from_parts(secs: u32, frac: u32) -> Self {
        NtpTimestamp(((secs as u64) << 32) | frac as u64)
    }

    /// The seconds field (era-relative).
    pub const fn secs(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The fraction field, in units of 2^-32 s.
    pub const fn frac(self) -> u32 {
        self.0 as u32
    }

    /// True for the reserved zero value.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Converts a Unix instant into NTP format (the era number is dropped, as on the wire).
    /// The fraction is rounded to the nearest 2^-32 s (resolution ~233 ps).
    pub const fn from_unix(t: UnixNanos) -> Self {
        let (secs, nanos) = t.parts();
        let ntp_secs = secs.wrapping_add(NTP_UNIX_OFFSET_SECS) as u64 & 0xffff_ffff;
        // Rounded to nearest: (nanos * 2^32 + 5e8) / 1e9 stays below 2^32 for every whole
        // nanosecond count below 1e9 (it would reach 2^32 only above 999_999_999.88 ns).
        let frac = (((nanos as u64) << 32) + 500_000_000) / 1_000_000_000;
        NtpTimestamp((ntp_secs << 32) | frac)
    }

    /// Converts to a Unix instant, choosing the era that puts the result closest to `pivot`
    /// (normally "now" as the caller knows it). Correct for any instant within 68 years of the
    /// pivot, whichever side of an era boundary either lies on.
    pub fn to_unix_near(self, pivot: UnixNanos) -> UnixNanos {
        let pivot_ts = NtpTimestamp::from_unix(pivot);
        pivot.add_nanos(self.diff_nanos(pivot_ts))
    }

    /// Era-aware `self - earlier` as a signed 32.32 fixed-point value (units of 2^-32 s).
    pub const fn diff_fixed(self, earlier: NtpTimestamp) -> i64 {
        self.0.wrapping_sub(earlier.0) as i64
    }

    /// Era-aware `self - earlier` in nanoseconds (rounded to nearest).
    pub const fn diff_nanos(self, earlier: NtpTimestamp) -> i64 {
        fixed_to_nanos(self.diff_fixed(earlier) as i128)
    }

    /// Era-aware `self - earlier` in seconds.
    pub fn diff_secs(self, earlier: NtpTimestamp) -> f64 {
        self.diff_fixed(earlier) as f64 / 4_294_967_296.0
    }

    /// This timestamp shifted by `nanos` (wrapping within the era, as the wire format does).
    pub const fn add_nanos(self, nanos: i64) -> NtpTimestamp {
        let fixed = ((nanos as i128) << 32) / NANOS_PER_SEC as i128;
        NtpTimestamp(self.0.wrapping_add(fixed as i64 as u64))
    }

    /// Reads from 8 big-endian bytes.
    pub const fn from_be_bytes(b: [u8; 8]) -> Self {
        NtpTimestamp(u64::from_be_bytes(b))
    }

    /// The 8 big-endian bytes of the wire format.
    pub const fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for NtpTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}.{:08x}", self.secs(), self.frac())
    }
}

/// 32.32 (or 16.16 scaled) fixed point to nanoseconds, rounding half away from zero.
const fn fixed_to_nanos(fixed: i128) -> i64 {
    let scaled = fixed * NANOS_PER_SEC as i128;
    let half = 1i128 << 31;
    let q = if scaled >= 0 {
        (scaled + half) >> 32
    } else {
        -((-scaled + half) >> 32)
    };
    q as i64
}

/// The NTP 32-bit short format: 16 bits of seconds, 16 bits of fraction (unsigned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NtpShort(pub u32);

impl NtpShort {
    /// The largest representable value (~65536 s), used when a quantity saturates.
    pub const MAX: NtpShort = NtpShort(u32::MAX);

    /// From a duration in seconds; negative values become 0, large ones saturate.
    pub fn from_secs_f64(secs: f64) -> Self {
        if secs.is_nan() || secs <= 0.0 {
            return NtpShort(0);
        }
        let v = (secs * 65536.0).round();
        if v >= u32::MAX as f64 {
            NtpShort::MAX
        } else {
            NtpShort(v as u32)
        }
    }

    /// From a duration in nanoseconds; negative values become 0, large ones saturate.
    pub const fn from_nanos(nanos: i64) -> Self {
        if nanos <= 0 {
            return NtpShort(0);
        }
        let v = ((nanos as u128) << 16).div_ceil(NANOS_PER_SEC as u128);
        if v > u32::MAX as u128 {
            NtpShort::MAX
        } else {
            NtpShort(v as u32)
        }
    }

    /// The value in seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 65536.0
    }

    /// The value in nanoseconds (rounded to nearest).
    pub const fn as_nanos(self) -> i64 {
        fixed_to_nanos((self.0 as i128) << 16)
    }
}

/// The four timestamps of one client/server exchange (RFC 5905 §8):
/// `t1` client transmit (the reply's origin), `t2` server receive, `t3` server transmit,
/// `t4` client receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub t1: NtpTimestamp,
    pub t2: NtpTimestamp,
    pub t3: NtpTimestamp,
    pub t4: NtpTimestamp,
}

impl Exchange {
    /// Clock offset of the server relative to the client, `((t2 - t1) + (t3 - t4)) / 2`, in
    /// nanoseconds. Positive when the server is ahead.
    pub const fn offset_nanos(&self) -> i64 {
        let a = self.t2.diff_fixed(self.t1) as i128;
        let b = self.t3.diff_fixed(self.t4) as i128;
        fixed_to_nanos((a + b) / 2)
    }

    /// Round-trip delay, `(t4 - t1) - (t3 - t2)`, in nanoseconds. It can be slightly negative
    /// when the two clocks run at different rates or the server's stamps are coarse.
    pub const fn delay_nanos(&self) -> i64 {
        let a = self.t4.diff_fixed(self.t1) as i128;
        let b = self.t3.diff_fixed(self.t2) as i128;
        fixed_to_nanos(a - b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_epoch_is_ntp_2208988800() {
        let t = NtpTimestamp::from_unix(UnixNanos(0));
        assert_eq!(t, NtpTimestamp::from_parts(2_208_988_800, 0));
        assert_eq!(t.to_unix_near(UnixNanos(0)), UnixNanos(0));
    }

    #[test]
    fn half_second_is_half_fraction() {
        let t = NtpTimestamp::from_unix(UnixNanos::from_parts(1, 500_000_000));
        assert_eq!(t.frac(), 0x8000_0000);
        assert_eq!(t.secs(), 2_208_988_801);
    }

    #[test]
    fn last_nanosecond_stays_in_its_second() {
        let t = NtpTimestamp::from_unix(UnixNanos::from_parts(10, 999_999_999));
        assert_eq!(t.secs(), 2_208_988_810);
        assert_eq!(t.frac(), 0xffff_fffc);
        assert_eq!(
            t.to_unix_near(UnixNanos(0)),
            UnixNanos::from_parts(10, 999_999_999)
        );
    }

    #[test]
    fn era_rollover_2036() {
        // 2036-02-07T06:28:16Z is NTP era 1, second 0.
        let rollover = UnixNanos::from_parts(ERA_SECS - NTP_UNIX_OFFSET_SECS, 0);
        let before = rollover.add_nanos(-1_500_000_000);
        let after = rollover.add_nanos(2_250_000_000);
        let tb = NtpTimestamp::from_unix(before);
        let ta = NtpTimestamp::from_unix(after);
        assert_eq!(ta.secs(), 2);
        assert_eq!(tb.secs(), u32::MAX - 1);
        assert_eq!(ta.diff_nanos(tb), 3_750_000_000);
        assert_eq!(tb.diff_nanos(ta), -3_750_000_000);
        assert_eq!(ta.to_unix_near(before), after);
        assert_eq!(tb.to_unix_near(after), before);
    }

    #[test]
    fn offset_and_delay_formulas() {
        let base = NtpTimestamp::from_unix(UnixNanos::from_parts(1_700_000_000, 0));
        // Server 250 ms ahead, 10 ms each way, 1 ms in the server.
        let ex = Exchange {
            t1: base,
            t2: base.add_nanos(10_000_000 + 250_000_000),
            t3: base.add_nanos(11_000_000 + 250_000_000),
            t4: base.add_nanos(21_000_000),
        };
        assert_eq!(ex.offset_nanos(), 250_000_000);
        assert_eq!(ex.delay_nanos(), 20_000_000);
    }

    #[test]
    fn short_format() {
        assert_eq!(NtpShort::from_secs_f64(1.5), NtpShort(0x0001_8000));
        assert_eq!(NtpShort::from_nanos(1_500_000_000), NtpShort(0x0001_8000));
        assert_eq!(NtpShort::from_secs_f64(-1.0), NtpShort(0));
        assert_eq!(NtpShort::from_secs_f64(1e9), NtpShort::MAX);
        assert_eq!(NtpShort(0x0001_8000).as_nanos(), 1_500_000_000);
    }
}
