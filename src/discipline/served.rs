//! Served time, sans IO: what the workers are given for the core's snapshot at an instant — the
//! leap second added (stepped at midnight, or smeared), the epoch bumped when served time steps,
//! the smear's reference id. Time is passed in, so every rule is tested on virtual time; the
//! discipline thread only publishes the result (and, in system mode, steers the OS clock to it).

use super::leap::{LeapDays, LeapNote, LeapState, SMEAR_REFID};
use crate::clock::{ClockSnapshot, Correction};
use crate::proto::{Leap, UnixNanos};

/// The leap-second state between the core and the workers.
#[derive(Clone, Debug)]
pub struct ServedTime {
    leap: LeapState,
    smear: bool,
    /// Seconds of leap applied as of the last [`ServedTime::served`].
    leap_applied: f64,
    /// Epoch changes added for stepped leap seconds.
    epoch_bump: u32,
    /// The core's epoch at the last call (a change means the core stepped).
    core_epoch: u32,
}

/// The result of one [`ServedTime::served`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Served {
    /// What the workers serve (its correction is the target in system mode).
    pub snapshot: ClockSnapshot,
    /// A stepped leap second took effect since the last call: the step of served time, seconds
    /// (−1 for an insertion, +1 for a deletion).
    pub leap_step: Option<f64>,
    /// The core stepped its correction since the last call.
    pub core_stepped: bool,
}

impl ServedTime {
    /// `smear` over `window` seconds, announcements believed on `days`.
    pub fn new(smear: bool, window: f64, days: LeapDays) -> ServedTime {
        ServedTime {
            leap: LeapState::new(smear, window, days),
            smear,
            leap_applied: 0.0,
            epoch_bump: 0,
            core_epoch: 0,
        }
    }

    /// The leap bookkeeping (for sample corrections near a leap).
    pub fn leap(&self) -> &LeapState {
        &self.leap
    }

    /// Takes the synchronised estimate's leap indicator at core time `t`.
    pub fn observe(&mut self, leap: Leap, t: f64) -> Option<LeapNote> {
        self.leap.observe(leap, t)
    }

    /// The snapshot to publish for the core's `snap` at free-running time `now`, with the core
    /// time offset `core_offset` (core time = free time + it); `ahead` is the time until the
    /// next call, over which a smear's slope is taken (a secant, so the published correction
    /// meets the ramp again at the next publication, also across the ramp's start and end).
    pub fn served(
        &mut self,
        snap: ClockSnapshot,
        now: UnixNanos,
        core_offset: f64,
        ahead: f64,
    ) -> Served {
        let at = snap.correction.at;
        let core_at = snap.correction.cook(at).as_secs_f64();
        let adj = self.leap.served_offset(core_at);
        let rate = if self.smear && ahead > 0.0 {
            (self.leap.served_offset(core_at + ahead) - adj) / ahead
        } else {
            0.0 // a step happens at its instant, with an epoch change
        };
        let correction = Correction {
            at,
            offset_ns: snap
                .correction
                .offset_ns
                .saturating_add((adj * 1e9).round() as i64),
            freq: snap.correction.freq + rate,
        };
        let core_now = now.as_secs_f64() + core_offset;
        let applied = self.leap.applied(core_now);
        let core_stepped = snap.epoch != self.core_epoch;
        self.core_epoch = snap.epoch;
        let mut leap_step = None;
        if applied != self.leap_applied {
            if !self.smear {
                self.epoch_bump = self.epoch_bump.wrapping_add(1);
                leap_step = Some(-(applied - self.leap_applied));
            }
            self.leap_applied = applied;
        }
        let mut out = snap;
        out.correction = correction;
        out.reference_time = correction.cook(now);
        out.epoch = snap.epoch.wrapping_add(self.epoch_bump);
        if out.synchronized {
            out.leap = self.leap.served_leap(snap.leap, core_now);
            if self.leap.smearing(core_now) {
                out.reference_id = SMEAR_REFID;
            }
        }
        Served {
            snapshot: out,
            leap_step,
            core_stepped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2016-12-31T00:00:00Z and the leap second at its end.
    const DEC31: f64 = 1_483_142_400.0;
    const MIDNIGHT: f64 = DEC31 + 86_400.0;

    fn nanos(secs: f64) -> UnixNanos {
        UnixNanos((secs * 1e9).round() as i64)
    }

    /// A synchronised core snapshot anchored at free time `t` with no correction of its own
    /// (free time = core time).
    fn core_snapshot(t: f64, leap: Leap) -> ClockSnapshot {
        ClockSnapshot {
            synchronized: true,
            leap,
            stratum: 2,
            reference_id: [192, 0, 2, 1],
            correction: Correction {
                at: nanos(t),
                offset_ns: 0,
                freq: 0.0,
            },
            ..ClockSnapshot::local(2, -20, nanos(t))
        }
    }

    fn served_secs(s: &ClockSnapshot, t: f64) -> f64 {
        s.cook(nanos(t)).as_secs_f64()
    }

    #[test]
    fn a_stepped_leap_changes_the_epoch_once_at_midnight() {
        let mut st = ServedTime::new(false, 86_400.0, LeapDays::JuneDecember);
        assert!(st.observe(Leap::AddSecond, DEC31 + 3600.0).is_some());
        let before = st.served(
            core_snapshot(MIDNIGHT - 1.0, Leap::AddSecond),
            nanos(MIDNIGHT - 1.0),
            0.0,
            1.0,
        );
        assert_eq!(before.leap_step, None);
        assert_eq!(before.snapshot.leap, Leap::AddSecond);
        assert!((served_secs(&before.snapshot, MIDNIGHT - 1.0) - (MIDNIGHT - 1.0)).abs() < 1e-6);
        let epoch = before.snapshot.epoch;
        // The first publication after midnight: one second back, a new epoch, no warning.
        let after = st.served(
            core_snapshot(MIDNIGHT + 0.5, Leap::AddSecond),
            nanos(MIDNIGHT + 0.5),
            0.0,
            1.0,
        );
        assert_eq!(after.leap_step, Some(-1.0));
        assert_eq!(after.snapshot.epoch, epoch.wrapping_add(1));
        assert_eq!(after.snapshot.leap, Leap::NoWarning);
        assert!((served_secs(&after.snapshot, MIDNIGHT + 0.5) - (MIDNIGHT - 0.5)).abs() < 1e-6);
        // And only once.
        let later = st.served(
            core_snapshot(MIDNIGHT + 1.5, Leap::NoWarning),
            nanos(MIDNIGHT + 1.5),
            0.0,
            1.0,
        );
        assert_eq!(later.leap_step, None);
        assert_eq!(later.snapshot.epoch, after.snapshot.epoch);
    }

    #[test]
    fn a_smear_is_followed_without_jumps_across_its_start_and_end() {
        // A one-hour window (the ramp: 23:30 to 00:30) published once a second.
        let mut st = ServedTime::new(true, 3600.0, LeapDays::JuneDecember);
        st.observe(Leap::AddSecond, DEC31 + 3600.0);
        let mut prev: Option<(ClockSnapshot, f64)> = None;
        let mut t = MIDNIGHT - 1900.5;
        while t < MIDNIGHT + 1900.0 {
            let s = st.served(core_snapshot(t, Leap::AddSecond), nanos(t), 0.0, 1.0);
            assert_eq!(s.leap_step, None, "a smear never steps");
            assert_eq!(s.snapshot.leap, Leap::NoWarning);
            let ramping = (MIDNIGHT - 1800.0..MIDNIGHT + 1800.0).contains(&t);
            assert_eq!(s.snapshot.reference_id == SMEAR_REFID, ramping, "at {t}");
            if let Some((p, pt)) = prev {
                // What the last publication served just before this one meets what this one
                // serves now (to rounding), and served time advances at 1 ± 1/3600.
                let gap = served_secs(&s.snapshot, t) - served_secs(&p, t);
                assert!(gap.abs() < 1e-6, "jump of {gap} s at {t}");
                let advance = served_secs(&s.snapshot, t) - served_secs(&p, pt);
                assert!(
                    (advance - (t - pt)).abs() <= (t - pt) / 3600.0 + 1e-6,
                    "at {t}"
                );
                assert_eq!(s.snapshot.epoch, p.epoch);
            }
            prev = Some((s.snapshot, t));
            t += 1.0;
        }
        let (last, t) = prev.unwrap();
        assert!(
            (served_secs(&last, t) - (t - 1.0)).abs() < 1e-6,
            "the whole second"
        );
    }

    #[test]
    fn a_core_step_is_reported() {
        let mut st = ServedTime::new(false, 86_400.0, LeapDays::JuneDecember);
        let mut snap = core_snapshot(DEC31, Leap::NoWarning);
        assert!(!st.served(snap, nanos(DEC31), 0.0, 1.0).core_stepped);
        snap.epoch = 7;
        assert!(st.served(snap, nanos(DEC31 + 1.0), 0.0, 1.0).core_stepped);
        assert!(!st.served(snap, nanos(DEC31 + 2.0), 0.0, 1.0).core_stepped);
        // Unsynchronised snapshots pass through unchanged.
        let mut u = ClockSnapshot::unsynchronized(-20);
        u.correction.at = nanos(DEC31);
        assert_eq!(
            st.served(u, nanos(DEC31 + 3.0), 0.0, 1.0).snapshot.leap,
            Leap::Unsynchronized
        );
    }
}
