//! Raw clock reads: CLOCK_REALTIME on Linux (the clock kernel socket timestamps are taken in),
//! the standard library's system time elsewhere.

use crate::proto::UnixNanos;

/// The raw system clock now.
#[cfg(target_os = "linux")]
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
#[cfg(not(target_os = "linux"))]
#[inline]
pub fn now() -> UnixNanos {
    use std::time::{SystemTime, UNIX_EPOCH};
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => UnixNanos::from_parts(d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => UnixNanos(-(e.duration().as_nanos() as i64)),
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
    fn precision_mapping() {
        assert_eq!(precision_from_nanos(1), -29); // 1 ns ≈ 2^-29.9 s → ceil = -29
        assert_eq!(precision_from_nanos(20), -25); // 2^-25.6 s
        assert_eq!(precision_from_nanos(30), -24); // 2^-24.99 s
        assert_eq!(precision_from_nanos(1_000_000), -9);
        assert!((-30..=0).contains(&measure_precision()));
    }
}
