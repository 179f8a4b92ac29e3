//! `clock.mode = "system"`: making the OS clock itself follow the discipline, sans unsafe.
//!
//! The discipline core models a *free-running* raw clock. When meridian adjusts the OS clock,
//! the OS clock stops being free-running, so [`SystemSteering`] keeps an exact record of what
//! it applied, `applied(free) = OS − free` (a [`Correction`]: the steps it made plus the
//! integral of the frequency it set beyond the base frequency), and converts every OS reading
//! back to free time before it reaches the core ([`SystemSteering::to_free`]). After each
//! update the core's correction is the *target*: the OS clock should read `free + target(free)`;
//! [`SystemSteering::follow`] sets the kernel frequency to the target's frequency plus a slew of
//! the remaining error (time constant `slew_time`, at most `max_rate`), or steps the clock
//! (ADJ_SETOFFSET) when the core stepped. Workers then serve the OS clock unchanged.
//!
//! The OS is reached only through the [`OsClock`] trait: [`RealClock`] calls `sys::timex`;
//! tests use a simulated clock, so no test ever adjusts the machine's clock.

use std::io;
use std::path::Path;

use crate::clock::Correction;
use crate::proto::{Leap, UnixNanos};
use crate::sys;

/// What system steering needs from the OS clock.
pub trait OsClock {
    /// The OS clock now.
    fn now(&self) -> UnixNanos;
    /// Sets the frequency adjustment, ppm (positive: faster).
    fn set_frequency_ppm(&mut self, ppm: f64) -> io::Result<()>;
    /// Steps the clock by `delta_ns`.
    fn step_nanos(&mut self, delta_ns: i64) -> io::Result<()>;
    /// Arms the kernel's leap second for the coming midnight (or clears it).
    fn set_leap(&mut self, leap: Leap) -> io::Result<()>;
}

/// The machine's CLOCK_REALTIME through `clock_adjtime`.
pub struct RealClock;

impl OsClock for RealClock {
    fn now(&self) -> UnixNanos {
        sys::clock::now()
    }
    fn set_frequency_ppm(&mut self, ppm: f64) -> io::Result<()> {
        sys::timex::set_frequency_ppm(ppm)
    }
    fn step_nanos(&mut self, delta_ns: i64) -> io::Result<()> {
        sys::timex::step_nanos(delta_ns)
    }
    fn set_leap(&mut self, leap: Leap) -> io::Result<()> {
        sys::timex::set_leap(leap)
    }
}

/// Steps smaller than this are folded into the slew, nanoseconds.
const MIN_STEP_NS: i64 = 1_000;

/// What [`SystemSteering::follow`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FollowAction {
    /// Stepped by this many nanoseconds, then set the frequency.
    Stepped(i64),
    /// Set the frequency (ppm) to slew the remaining error (nanoseconds).
    Slewed { ppm: f64, error_ns: i64 },
}

/// The OS clock following the discipline (see the module documentation).
pub struct SystemSteering<C: OsClock> {
    clock: C,
    /// Kernel frequency that counts as "free running", ppm (drift file or the value found).
    base_ppm: f64,
    /// OS − free, as a function of free time.
    applied: Correction,
    slew_time: f64,
    max_rate: f64,
    leap: Leap,
}

impl<C: OsClock> SystemSteering<C> {
    /// Takes over `clock` at frequency `base_ppm` (sets it).
    pub fn new(
        mut clock: C,
        base_ppm: f64,
        slew_time: f64,
        max_rate: f64,
    ) -> io::Result<SystemSteering<C>> {
        let base_ppm = base_ppm.clamp(-sys::timex::MAX_FREQ_PPM, sys::timex::MAX_FREQ_PPM);
        clock.set_frequency_ppm(base_ppm)?;
        let now = clock.now();
        Ok(SystemSteering {
            clock,
            base_ppm,
            applied: Correction {
                at: now,
                offset_ns: 0,
                freq: 0.0,
            },
            slew_time: slew_time.max(1e-3),
            max_rate,
            leap: Leap::NoWarning,
        })
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The base (free-running) frequency, ppm.
    pub fn base_ppm(&self) -> f64 {
        self.base_ppm
    }

    /// OS − free at free time `free`, nanoseconds.
    fn applied_at(&self, free: UnixNanos) -> i64 {
        self.applied.cook(free).nanos_since(free)
    }

    /// Free time for an OS reading (kernel stamps included).
    pub fn to_free(&self, os: UnixNanos) -> UnixNanos {
        // applied changes by at most ~1e-3 × its argument's error: one refinement is exact to
        // well below a nanosecond.
        let guess = os.add_nanos(-self.applied_at(os));
        os.add_nanos(-self.applied_at(guess))
    }

    /// OS time for a free time.
    pub fn to_os(&self, free: UnixNanos) -> UnixNanos {
        self.applied.cook(free)
    }

    /// Free time now.
    pub fn free_now(&self) -> UnixNanos {
        self.to_free(self.clock.now())
    }

    /// Makes the OS clock follow `target` (served = free + target(free)) from free time `now`;
    /// steps when `step` (the core stepped) and the error is not negligible.
    pub fn follow(
        &mut self,
        target: &Correction,
        now: UnixNanos,
        step: bool,
    ) -> io::Result<FollowAction> {
        let want = target.cook(now).nanos_since(now);
        let have = self.applied_at(now);
        let err = want - have;
        let (offset, remaining, action) = if step && err.abs() >= MIN_STEP_NS {
            self.clock.step_nanos(err)?;
            (want, 0, Some(err))
        } else {
            (have, err, None)
        };
        let rate = (remaining as f64 * 1e-9 / self.slew_time).clamp(-self.max_rate, self.max_rate);
        // The kernel's extra frequency is relative to the clock's own rate, which the base
        // frequency already changed: d(OS − free)/d(free) = extra / (1 + base).
        let scale = 1.0 + self.base_ppm * 1e-6;
        let lo = (-sys::timex::MAX_FREQ_PPM - self.base_ppm) * 1e-6;
        let hi = (sys::timex::MAX_FREQ_PPM - self.base_ppm) * 1e-6;
        let extra = ((target.freq + rate) * scale).clamp(lo, hi);
        let ppm = self.base_ppm + extra * 1e6;
        self.clock.set_frequency_ppm(ppm)?;
        self.applied = Correction {
            at: now,
            offset_ns: offset,
            freq: extra / scale,
        };
        Ok(match action {
            Some(ns) => FollowAction::Stepped(ns),
            None => FollowAction::Slewed {
                ppm,
                error_ns: remaining,
            },
        })
    }

    /// Records that the kernel itself stepped the clock by `delta_ns` (a leap second it applied
    /// at midnight), so free time stays continuous.
    pub fn kernel_stepped(&mut self, delta_ns: i64) {
        self.applied.offset_ns = self.applied.offset_ns.saturating_add(delta_ns);
    }

    /// Arms the kernel leap flag when it changes.
    pub fn arm_leap(&mut self, leap: Leap) -> io::Result<()> {
        if leap != self.leap {
            self.clock.set_leap(leap)?;
            self.leap = leap;
        }
        Ok(())
    }

    /// The frequency to store in the drift file for a free-clock frequency estimate
    /// (dimensionless), ppm.
    pub fn drift_ppm(&self, free_freq: f64) -> f64 {
        self.base_ppm + free_freq * 1e6
    }
}

/// Reads a drift file: the first number in it, ppm (chrony's format). None when absent or
/// unreadable; out-of-range values are rejected.
pub fn read_drift(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: f64 = text.split_whitespace().next()?.parse().ok()?;
    (v.is_finite() && v.abs() <= sys::timex::MAX_FREQ_PPM).then_some(v)
}

/// Writes a drift file atomically (temporary file, then rename).
pub fn write_drift(path: &Path, ppm: f64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{ppm:.4}\n"))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated OS clock: true time advances by `tick`; the clock runs at
    /// `1 + hw + kernel_ppm·1e-6` and can be stepped. Every call is recorded.
    struct FakeClock {
        truth: i64,
        /// OS time, whole nanoseconds plus a fraction (f64 alone lacks the precision).
        os: i64,
        frac: f64,
        hw: f64,
        ppm: f64,
        steps: Vec<i64>,
        leaps: Vec<Leap>,
    }

    impl FakeClock {
        fn new(os: i64, hw: f64) -> Self {
            FakeClock {
                truth: os,
                os,
                frac: 0.0,
                hw,
                ppm: 0.0,
                steps: Vec::new(),
                leaps: Vec::new(),
            }
        }
        fn advance(&mut self, ns: i64) {
            self.truth += ns;
            let d = ns as f64 * (1.0 + self.hw + self.ppm * 1e-6) + self.frac;
            self.os += d.floor() as i64;
            self.frac = d - d.floor();
        }
    }

    impl OsClock for FakeClock {
        fn now(&self) -> UnixNanos {
            UnixNanos(self.os)
        }
        fn set_frequency_ppm(&mut self, ppm: f64) -> io::Result<()> {
            self.ppm = ppm;
            Ok(())
        }
        fn step_nanos(&mut self, delta_ns: i64) -> io::Result<()> {
            self.os += delta_ns;
            self.steps.push(delta_ns);
            Ok(())
        }
        fn set_leap(&mut self, leap: Leap) -> io::Result<()> {
            self.leaps.push(leap);
            Ok(())
        }
    }

    const T0: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn free_time_stays_free_while_the_os_clock_is_adjusted() {
        let mut s = SystemSteering::new(FakeClock::new(T0, 0.0), 0.0, 16.0, 500e-6).unwrap();
        let free0 = s.free_now();
        // Step +200 ms, then slew with +100 ppm for 10 s.
        let target = Correction {
            at: free0,
            offset_ns: 200_000_000,
            freq: 100e-6,
        };
        assert_eq!(
            s.follow(&target, free0, true).unwrap(),
            FollowAction::Stepped(200_000_000)
        );
        assert_eq!(s.clock().steps, vec![200_000_000]);
        for _ in 0..10 {
            s.clock.advance(1_000_000_000);
            let free = s.free_now();
            s.follow(&target, free, false).unwrap();
        }
        // The free clock advanced exactly as true time did (no hardware error here)...
        let free = s.free_now();
        assert!(
            (free.nanos_since(free0) - 10_000_000_000).abs() < 10,
            "{free:?}"
        );
        // ...and the OS clock serves what the target says.
        let served = target.cook(free);
        assert!(
            (s.clock().now().nanos_since(served)).abs() < 10,
            "{}",
            s.clock().now().nanos_since(served)
        );
        assert!((s.clock().ppm - 100.0).abs() < 1e-6, "{}", s.clock().ppm);
    }

    #[test]
    fn an_error_is_slewed_away_within_limits() {
        let mut s = SystemSteering::new(FakeClock::new(T0, 0.0), 10.0, 16.0, 500e-6).unwrap();
        assert_eq!(s.clock().ppm, 10.0);
        let free0 = s.free_now();
        let target = Correction {
            at: free0,
            offset_ns: 5_000_000, // 5 ms to slew: 5e-3 / 16 s = 312 ppm
            freq: 0.0,
        };
        match s.follow(&target, free0, false).unwrap() {
            FollowAction::Slewed { ppm, error_ns } => {
                assert_eq!(error_ns, 5_000_000);
                assert!((ppm - (10.0 + 312.5 * (1.0 + 10e-6))).abs() < 1e-6, "{ppm}");
            }
            other => panic!("{other:?}"),
        }
        let mut last = i64::MAX;
        for _ in 0..120 {
            s.clock.advance(1_000_000_000);
            let free = s.free_now();
            if let FollowAction::Slewed { error_ns, ppm } = s.follow(&target, free, false).unwrap()
            {
                assert!(error_ns.abs() <= last, "error grows: {error_ns}");
                assert!(ppm <= 10.0 + 500.0 + 1e-9);
                last = error_ns.abs();
            }
        }
        assert!(last < 5_000, "left {last} ns");
        // No step ever happened.
        assert!(s.clock().steps.is_empty());
    }

    #[test]
    fn frequency_stays_within_the_kernel_limit() {
        let mut s = SystemSteering::new(FakeClock::new(T0, 0.0), 450.0, 16.0, 500e-6).unwrap();
        let free0 = s.free_now();
        let target = Correction {
            at: free0,
            offset_ns: 1_000_000_000,
            freq: 0.0,
        };
        s.follow(&target, free0, false).unwrap();
        assert!(s.clock().ppm <= 500.0 + 1e-9, "{}", s.clock().ppm);
        // And the record matches what the kernel got: free time runs at the base frequency.
        for _ in 0..5 {
            s.clock.advance(1_000_000_000);
        }
        let free = s.free_now();
        let expected = 5_000_000_000 + 2_250_000; // 5 s at +450 ppm
        assert!((free.nanos_since(free0) - expected).abs() < 10, "{free:?}");
    }

    #[test]
    fn kernel_leap_and_arming() {
        let mut s = SystemSteering::new(FakeClock::new(T0, 0.0), 0.0, 16.0, 500e-6).unwrap();
        s.arm_leap(Leap::AddSecond).unwrap();
        s.arm_leap(Leap::AddSecond).unwrap();
        assert_eq!(s.clock().leaps, vec![Leap::AddSecond]);
        let free0 = s.free_now();
        // The kernel inserts the second: the OS clock goes back 1 s, free time must not.
        s.clock.step_nanos(-1_000_000_000).unwrap();
        s.kernel_stepped(-1_000_000_000);
        assert!(s.free_now().nanos_since(free0).abs() < 10);
        assert_eq!(s.drift_ppm(2e-6), 2.0);
    }

    #[test]
    fn drift_file_roundtrip() {
        let dir = std::env::temp_dir().join(format!("meridian-drift-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("drift");
        assert_eq!(read_drift(&p), None);
        write_drift(&p, -12.3456).unwrap();
        assert_eq!(read_drift(&p), Some(-12.3456));
        std::fs::write(&p, "7.5 0.01\n").unwrap(); // chrony writes "freq skew"
        assert_eq!(read_drift(&p), Some(7.5));
        std::fs::write(&p, "9999\n").unwrap();
        assert_eq!(read_drift(&p), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
