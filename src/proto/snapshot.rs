//! What a reply needs from the clock, as one small `Copy` value: [`ClockSnapshot`] and its
//! raw-to-served [`Correction`]. It lives in the protocol core, which writes replies from it;
//! `crate::clock` publishes it (and re-exports it), so imports point one way: clock → proto.

use super::{Leap, NtpShort, NtpTimestamp, UnixNanos};

/// Dispersion growth rate when nothing better is known: RFC 5905's PHI, 15 ppm.
pub const DEFAULT_DISPERSION_RATE: f64 = 15e-6;

/// The reference id a local (undisciplined) reference publishes: 127.127.1.1, as chrony and
/// ntpd report their local clock.
pub const LOCAL_REFID: [u8; 4] = [127, 127, 1, 1];

/// How a raw clock reading becomes served time: `served = raw + offset + freq * (raw - at)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Correction {
    /// The raw instant the correction is anchored at.
    pub at: UnixNanos,
    /// Served minus raw at `at`, in nanoseconds.
    pub offset_ns: i64,
    /// Extra rate of served time relative to raw time (dimensionless; 1e-6 = 1 ppm fast).
    pub freq: f64,
}

impl Correction {
    /// Served time for a raw reading.
    #[inline]
    pub fn cook(&self, raw: UnixNanos) -> UnixNanos {
        let since = raw.nanos_since(self.at);
        let drift = (since as f64 * self.freq) as i64;
        raw.add_nanos(self.offset_ns.saturating_add(drift))
    }
}

/// Everything a reply needs, published as one value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockSnapshot {
    /// False until the clock has a reference (or after holdover expired): replies then carry
    /// LI=3 and stratum 0.
    pub synchronized: bool,
    pub leap: Leap,
    /// Our stratum (1..=15) when synchronised.
    pub stratum: u8,
    /// log2 seconds of the clock's read precision.
    pub precision: i8,
    pub root_delay: NtpShort,
    /// Root dispersion at `reference_time`, in nanoseconds.
    pub root_dispersion_ns: i64,
    /// Growth of root dispersion per second of served time since `reference_time`.
    pub dispersion_rate: f64,
    pub reference_id: [u8; 4],
    /// Served time of the last update.
    pub reference_time: UnixNanos,
    pub correction: Correction,
    /// Changes whenever served time is stepped, so holders of older stamps can tell.
    pub epoch: u32,
}

impl ClockSnapshot {
    /// A snapshot for a server that has no reference yet.
    pub fn unsynchronized(precision: i8) -> Self {
        ClockSnapshot {
            synchronized: false,
            leap: Leap::Unsynchronized,
            stratum: 16,
            precision,
            root_delay: NtpShort(0),
            root_dispersion_ns: 0,
            dispersion_rate: DEFAULT_DISPERSION_RATE,
            reference_id: [0; 4],
            reference_time: UnixNanos(0),
            correction: Correction::default(),
            epoch: 0,
        }
    }

    /// A snapshot serving the local clock unchanged at `stratum` (the `local stratum N`
    /// fallback), referenced at raw time `now`.
    pub fn local(stratum: u8, precision: i8, now: UnixNanos) -> Self {
        ClockSnapshot {
            synchronized: true,
            leap: Leap::NoWarning,
            stratum,
            precision,
            root_delay: NtpShort(0),
            root_dispersion_ns: 0,
            dispersion_rate: DEFAULT_DISPERSION_RATE,
            reference_id: LOCAL_REFID,
            reference_time: now,
            correction: Correction {
                at: now,
                offset_ns: 0,
                freq: 0.0,
            },
            epoch: 0,
        }
    }

    /// Served time for a raw clock reading.
    #[inline]
    pub fn cook(&self, raw: UnixNanos) -> UnixNanos {
        self.correction.cook(raw)
    }

    /// Root dispersion at served time `now`: the published value plus growth since the
    /// reference time (never less than the published value).
    #[inline]
    pub fn root_dispersion_at(&self, now: UnixNanos) -> NtpShort {
        let elapsed = now.nanos_since(self.reference_time).max(0);
        let grown = (elapsed as f64 * self.dispersion_rate) as i64;
        NtpShort::from_nanos(self.root_dispersion_ns.saturating_add(grown))
    }

    /// The reference time in wire format.
    #[inline]
    pub fn reference_ts(&self) -> NtpTimestamp {
        NtpTimestamp::from_unix(self.reference_time)
    }
}
