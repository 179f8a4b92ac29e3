//! Raw clock reads: CLOCK_REALTIME on Linux (the clock kernel socket timestamps are taken in),
//! the standard library's system time elsewhere (without the `linux_io` cfg).

use crate::proto::UnixNanos;

/// The raw system clock now.
#[cfg(linux_io)]
#[inline]
pub fn now() -> UnixNanos {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists, so the call
    // cannot fail and only writes `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    UnixNanos::from_parts(ts.tv_sec, ts.tv_nsec as u32)
}

/// The raw system clock now.
#[cfg(not(linux_io))]
#[inline]
pub fn now() -> UnixNanos {
    use std::time::{SystemTime, UNIX_EPOCH};
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => UnixNanos::from_parts(d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => UnixNanos(-(e.duration().as_nanos() as i64)),
    }
}

/// CLOCK_TAI minus CLOCK_REALTIME in nanoseconds, measured now (Linux only; elsewhere 0).
///
/// The kernel's TAI offset is whatever was last set with adjtimex (`ADJ_TAI`): 37 s on a host
/// whose NTP daemon sets it, 0 on many others. Timestamps taken in CLOCK_TAI (the XDP program's
/// `bpf_ktime_get_tai_ns`, AF_XDP TX completion stamps) become system time by subtracting this.
/// Three REALTIME/TAI/REALTIME brackets are read and the narrowest one is used, so a preemption
/// between reads cannot skew the result by more than the bracket's width.
#[cfg(linux_io)]
pub fn tai_offset_ns() -> i64 {
    fn read(clock: libc::clockid_t) -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME and CLOCK_TAI exist on
        // every supported kernel (TAI since 2.6.39), and the call only writes `ts`.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }
    let mut best = (i64::MAX, 0);
    for _ in 0..3 {
        let a = read(libc::CLOCK_REALTIME);
        let t = read(libc::CLOCK_TAI);
        let b = read(libc::CLOCK_REALTIME);
        let width = b - a;
        if width < best.0 {
            best = (width, t - (a + width / 2));
        }
    }
    round_offset(best.1)
}

/// CLOCK_TAI minus CLOCK_REALTIME: without CLOCK_TAI, 0.
#[cfg(not(linux_io))]
pub fn tai_offset_ns() -> i64 {
    0
}

/// The TAI offset is a whole number of seconds: a measured value within 1 ms of one is taken
/// as exactly that (the reads around it cost a few hundred nanoseconds at most); otherwise the
/// measurement is kept as is.
#[cfg(any(linux_io, test))]
fn round_offset(ns: i64) -> i64 {
    let secs = (ns as f64 / 1e9).round() as i64;
    if (ns - secs * 1_000_000_000).abs() < 1_000_000 {
        secs * 1_000_000_000
    } else {
        ns
    }
}

/// The clock's precision as NTP reports it: log2 of the time one read takes (or of the
/// clock's resolution, whichever is larger), measured now. Typically -24 to -26 with a vDSO
/// clock.
pub fn measure_precision() -> i8 {
    const READS: usize = 1000;
    let mut best = i64::MAX;
    let mut prev = now();
    for _ in 0..READS {
        let t = now();
        let d = t.nanos_since(prev);
        if d > 0 && d < best {
            best = d;
        }
        prev = t;
    }
    precision_from_nanos(best)
}

/// log2(seconds), rounded up, for a positive step in nanoseconds; clamped to [-30, 0].
pub fn precision_from_nanos(step_ns: i64) -> i8 {
    if step_ns <= 0 || step_ns == i64::MAX {
        return -20;
    }
    let secs = step_ns as f64 / 1e9;
    (secs.log2().ceil() as i32).clamp(-30, 0) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2024_and_monotone_enough() {
        let a = now();
        let b = now();
        assert!(a.0 > 1_700_000_000_000_000_000);
        assert!(b.nanos_since(a) >= 0);
    }

    #[test]
    fn tai_offset_is_whole_seconds() {
        let off = tai_offset_ns();
        assert_eq!(off % 1_000_000_000, 0, "{off}");
        // 0 when nobody set it, 37 s today when an NTP daemon did; never negative or huge.
        assert!((0..=100_000_000_000).contains(&off), "{off}");
        assert_eq!(round_offset(37_000_000_400), 37_000_000_000);
        assert_eq!(round_offset(-300), 0);
        assert_eq!(round_offset(5_000_000), 5_000_000);
    }

    #[test]
    fn precision_mapping() {
        assert_eq!(precision_from_nanos(1), -29); // 1 ns ≈ 2^-29.9 s → ceil = -29
        assert_eq!(precision_from_nanos(20), -25); // 2^-25.6 s
        assert_eq!(precision_from_nanos(30), -24); // 2^-24.99 s
        assert_eq!(precision_from_nanos(1_000_000), -9);
        assert!((-30..=0).contains(&measure_precision()));
    }
}
