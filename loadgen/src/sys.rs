//! Clock reads and small per-thread OS settings.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use meridian::proto::UnixNanos;

/// The system (realtime) clock as Unix nanoseconds: what NTP timestamps and kernel receive
/// stamps are in.
pub fn realtime() -> UnixNanos {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    UnixNanos(d.as_nanos() as i64)
}

/// Monotonic nanoseconds since `base` (pacing and deadlines).
pub fn mono_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Sets this thread's timer slack (Linux rounds sleeps up by it; the default is 50 µs, too
/// coarse for pacing). Returns whether it was set.
#[cfg(target_os = "linux")]
pub fn set_timer_slack_ns(ns: u64) -> bool {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long by value and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) == 0 }
}

#[cfg(not(target_os = "linux"))]
pub fn set_timer_slack_ns(_ns: u64) -> bool {
    false
}
