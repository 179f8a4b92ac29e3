//! Adjusting the OS clock (`clock.mode = "system"`): frequency, steps and the kernel's leap
//! flags through `clock_adjtime(CLOCK_REALTIME)`, and the CAP_SYS_TIME check that guards them.
//!
//! Nothing here decides anything: the discipline's `system` steering (see
//! `discipline::system`) calls these through its `OsClock` trait, which tests replace by a fake,
//! so the machine's real clock is never touched by a test.

use crate::proto::Leap;

/// Linux limits the frequency adjustment to ±500 ppm (MAXFREQ).
pub const MAX_FREQ_PPM: f64 = 500.0;

/// CAP_SYS_TIME's bit in the capability sets.
const CAP_SYS_TIME: u32 = 25;

/// True when the process's effective capabilities include CAP_SYS_TIME (read from
/// /proc/self/status; false when it cannot be read or off Linux).
pub fn has_cap_sys_time() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| cap_eff(&s))
        .is_some_and(|caps| caps & (1u64 << CAP_SYS_TIME) != 0)
}

/// The `CapEff:` mask of a /proc/PID/status text.
fn cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// The kernel clock's discipline state, as read by [`read`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelClock {
    /// Frequency adjustment, ppm (positive: the clock runs faster).
    pub freq_ppm: f64,
    /// `STA_*` status bits.
    pub status: i32,
}

#[cfg(linux_io)]
mod imp {
    use super::*;
    use std::mem::zeroed;

    /// Calls clock_adjtime(CLOCK_REALTIME) with `tx`; returns the clock state after the call.
    fn adjtime(tx: &mut libc::timex) -> std::io::Result<libc::c_int> {
        // SAFETY: `tx` is a valid, writable `struct timex`; the kernel reads the fields selected
        // by `modes` and writes the current state back into it.
        let r = unsafe { libc::clock_adjtime(libc::CLOCK_REALTIME, tx) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    fn empty() -> libc::timex {
        // SAFETY: `struct timex` is plain old data; all-zero (modes = 0: read only) is valid.
        unsafe { zeroed() }
    }

    pub fn read() -> std::io::Result<KernelClock> {
        let mut tx = empty();
        adjtime(&mut tx)?;
        Ok(KernelClock {
            freq_ppm: tx.freq as f64 / 65536.0,
            status: tx.status,
        })
    }

    pub fn set_frequency_ppm(ppm: f64) -> std::io::Result<()> {
        let mut tx = empty();
        tx.modes = libc::ADJ_FREQUENCY;
        tx.freq = (ppm.clamp(-MAX_FREQ_PPM, MAX_FREQ_PPM) * 65536.0).round() as libc::c_long;
        adjtime(&mut tx).map(|_| ())
    }

    pub fn step_nanos(delta_ns: i64) -> std::io::Result<()> {
        let mut tx = empty();
        tx.modes = libc::ADJ_SETOFFSET | libc::ADJ_NANO;
        // With ADJ_NANO the `time.tv_usec` field holds nanoseconds, and must be 0..1e9.
        tx.time.tv_sec = delta_ns.div_euclid(1_000_000_000) as libc::time_t;
        tx.time.tv_usec = delta_ns.rem_euclid(1_000_000_000) as libc::suseconds_t;
        adjtime(&mut tx).map(|_| ())
    }

    pub fn set_leap(leap: Leap) -> std::io::Result<()> {
        let now = read()?;
        let mut status = now.status & !(libc::STA_INS | libc::STA_DEL | libc::STA_UNSYNC);
        match leap {
            Leap::AddSecond => status |= libc::STA_INS,
            Leap::DelSecond => status |= libc::STA_DEL,
            Leap::NoWarning => {}
            Leap::Unsynchronized => status |= libc::STA_UNSYNC,
        }
        let mut tx = empty();
        tx.modes = libc::ADJ_STATUS;
        tx.status = status;
        adjtime(&mut tx).map(|_| ())
    }
}

#[cfg(not(linux_io))]
mod imp {
    use super::*;

    fn unsupported() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "adjusting the OS clock is implemented only on Linux",
        )
    }

    pub fn read() -> std::io::Result<KernelClock> {
        Err(unsupported())
    }

    pub fn set_frequency_ppm(_: f64) -> std::io::Result<()> {
        Err(unsupported())
    }

    pub fn step_nanos(_: i64) -> std::io::Result<()> {
        Err(unsupported())
    }

    pub fn set_leap(_: Leap) -> std::io::Result<()> {
        Err(unsupported())
    }
}

/// The kernel clock's frequency and status (no privilege needed).
pub fn read() -> std::io::Result<KernelClock> {
    imp::read()
}

/// Sets the OS clock's frequency adjustment, ppm (clamped to ±500). Needs CAP_SYS_TIME.
pub fn set_frequency_ppm(ppm: f64) -> std::io::Result<()> {
    imp::set_frequency_ppm(ppm)
}

/// Steps the OS clock by `delta_ns` (ADJ_SETOFFSET). Needs CAP_SYS_TIME.
pub fn step_nanos(delta_ns: i64) -> std::io::Result<()> {
    imp::step_nanos(delta_ns)
}

/// Arms (or clears) the kernel's leap second at the next UTC midnight (STA_INS / STA_DEL) and
/// marks the clock synchronised (clears STA_UNSYNC) unless `leap` is `Unsynchronized`. Needs
/// CAP_SYS_TIME.
pub fn set_leap(leap: Leap) -> std::io::Result<()> {
    imp::set_leap(leap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff_parsing() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(cap_eff(status), Some(0x1ff_ffff_ffff));
        assert!(cap_eff(status).unwrap() & (1 << CAP_SYS_TIME) != 0);
        assert_eq!(cap_eff("CapEff:\t0000000000000000\n"), Some(0));
        assert_eq!(cap_eff("nothing"), None);
    }

    #[cfg(linux_io)]
    #[test]
    fn reading_the_kernel_clock_changes_nothing() {
        // modes = 0 only reads; this never adjusts the shared clock of the machine.
        let k = read().unwrap();
        assert!(k.freq_ppm.abs() <= MAX_FREQ_PPM + 1.0, "{k:?}");
    }
}
