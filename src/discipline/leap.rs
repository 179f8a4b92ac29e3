//! Leap seconds, sans IO: what the sources announce, when it takes effect, and how it changes
//! the served clock and the samples.
//!
//! The discipline core works on a continuous time scale T (raw time plus its offset estimate);
//! UTC, which the sources serve and meridian publishes, is `T − L(T)`, where L counts the leap
//! seconds that took effect since meridian started (+1 per insertion, −1 per deletion). So:
//!
//! * a sample's offset measured after a leap is corrected by `+L(T)` before it reaches the
//!   core, which therefore never sees the jump (samples within [`SAMPLE_GUARD`] seconds of the
//!   instant are dropped: the two clocks may straddle it);
//! * the published correction adds `−L(T)` (a 1 s step at midnight UTC), or with smearing a
//!   linear ramp of the same second over the smear window centred on midnight.
//!
//! An announcement (LI=1 or 2 from the synchronised estimate) schedules the leap at the end of
//! the current UTC day; withdrawing it before the leap starts cancels it. For an hour after a
//! leap ([`QUIET_AFTER`]), announcements are ignored (sources keep LI set for a while).

use crate::proto::Leap;

/// The reference id served while a leap second is being smeared: 127.127.1.255, as chrony.
pub const SMEAR_REFID: [u8; 4] = [127, 127, 1, 255];
/// Announcements are ignored for this long after a leap, seconds.
pub const QUIET_AFTER: f64 = 3600.0;
/// Samples taken this close to a leap instant are dropped, seconds.
pub const SAMPLE_GUARD: f64 = 2.0;

const DAY: f64 = 86_400.0;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Event {
    /// Core time T of the leap (UTC midnight plus the leaps before it).
    at: f64,
    /// +1 inserted, −1 deleted.
    delta: f64,
}

/// Leap second bookkeeping (see the module documentation).
#[derive(Clone, Debug)]
pub struct LeapState {
    smear: bool,
    window: f64,
    events: Vec<Event>,
}

impl LeapState {
    /// `smear`: spread the second over `window` seconds centred on the leap.
    pub fn new(smear: bool, window: f64) -> LeapState {
        LeapState {
            smear,
            window: window.max(1.0),
            events: Vec::new(),
        }
    }

    /// True once `e` has started changing served time at core time `t`.
    fn started(&self, e: &Event, t: f64) -> bool {
        if self.smear {
            t >= e.at - self.window / 2.0
        } else {
            t >= e.at
        }
    }

    /// Takes the synchronised estimate's leap indicator at core time `t` (seconds since the
    /// Unix epoch).
    pub fn observe(&mut self, leap: Leap, t: f64) {
        let delta = match leap {
            Leap::AddSecond => 1.0,
            Leap::DelSecond => -1.0,
            Leap::NoWarning => {
                if let Some(last) = self.events.last().copied() {
                    if !self.started(&last, t) {
                        self.events.pop();
                    }
                }
                return;
            }
            Leap::Unsynchronized => return,
        };
        if let Some(last) = self.events.last() {
            if t < last.at + QUIET_AFTER {
                return; // already scheduled (or just applied)
            }
        }
        let before = self.applied(t);
        let utc = t - before;
        let midnight = ((utc / DAY).floor() + 1.0) * DAY;
        self.events.push(Event {
            at: midnight + before,
            delta,
        });
    }

    /// L(t): seconds of leap that took effect by core time `t` (UTC = T − L).
    pub fn applied(&self, t: f64) -> f64 {
        self.events
            .iter()
            .filter(|e| t >= e.at)
            .map(|e| e.delta)
            .sum()
    }

    /// What to add to a measured sample offset taken at core time `t`.
    pub fn sample_fix(&self, t: f64) -> f64 {
        self.applied(t)
    }

    /// True when a sample at core time `t` is too close to a leap to use.
    pub fn near_leap(&self, t: f64) -> bool {
        self.events.iter().any(|e| (t - e.at).abs() < SAMPLE_GUARD)
    }

    /// Served minus core time at `t`, seconds: −L(t), or its smeared form.
    pub fn served_offset(&self, t: f64) -> f64 {
        if !self.smear {
            return -self.applied(t);
        }
        -self
            .events
            .iter()
            .map(|e| e.delta * ((t - (e.at - self.window / 2.0)) / self.window).clamp(0.0, 1.0))
            .sum::<f64>()
    }

    /// d(served offset)/dt at `t`: nonzero only while smearing.
    pub fn served_rate(&self, t: f64) -> f64 {
        if !self.smear {
            return 0.0;
        }
        -self
            .events
            .iter()
            .filter(|e| (t - e.at).abs() < self.window / 2.0)
            .map(|e| e.delta / self.window)
            .sum::<f64>()
    }

    /// True while a leap second is being smeared at `t`.
    pub fn smearing(&self, t: f64) -> bool {
        self.smear
            && self
                .events
                .iter()
                .any(|e| (t - e.at).abs() < self.window / 2.0)
    }

    /// The leap indicator to serve at `t` when the estimate says `est`: the scheduled leap
    /// while it is still ahead (never while smearing: clients must not apply it a second
    /// time), otherwise no warning; `Unsynchronized` passes through.
    pub fn served_leap(&self, est: Leap, t: f64) -> Leap {
        if est == Leap::Unsynchronized {
            return est;
        }
        if self.smear {
            return Leap::NoWarning;
        }
        match self.events.iter().find(|e| t < e.at) {
            Some(e) if e.delta > 0.0 => Leap::AddSecond,
            Some(_) => Leap::DelSecond,
            None => Leap::NoWarning,
        }
    }

    /// The instant (core time) of the next leap not yet in effect, and its sign.
    pub fn next(&self, t: f64) -> Option<(f64, f64)> {
        self.events
            .iter()
            .find(|e| t < e.at)
            .map(|e| (e.at, e.delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2016-12-31T00:00:00Z, the day of the last leap second so far.
    const DEC31: f64 = 1_483_142_400.0;
    const MIDNIGHT: f64 = DEC31 + DAY;

    #[test]
    fn insertion_steps_back_one_second_at_midnight() {
        let mut l = LeapState::new(false, 86400.0);
        l.observe(Leap::AddSecond, DEC31 + 3600.0);
        assert_eq!(l.next(DEC31), Some((MIDNIGHT, 1.0)));
        assert_eq!(
            l.served_leap(Leap::AddSecond, MIDNIGHT - 10.0),
            Leap::AddSecond
        );
        assert_eq!(l.served_offset(MIDNIGHT - 0.001), 0.0);
        assert_eq!(l.served_offset(MIDNIGHT), -1.0);
        assert_eq!(l.served_offset(MIDNIGHT + 5000.0), -1.0);
        // After the leap: no warning served, even while sources still announce it.
        l.observe(Leap::AddSecond, MIDNIGHT + 5.0);
        assert_eq!(
            l.served_leap(Leap::AddSecond, MIDNIGHT + 5.0),
            Leap::NoWarning
        );
        assert_eq!(l.next(MIDNIGHT + 5.0), None);
        // Samples: the source stepped too, so its offset is corrected back by +1 s.
        assert_eq!(l.sample_fix(MIDNIGHT - 100.0), 0.0);
        assert_eq!(l.sample_fix(MIDNIGHT + 100.0), 1.0);
        assert!(l.near_leap(MIDNIGHT + 1.0) && l.near_leap(MIDNIGHT - 1.0));
        assert!(!l.near_leap(MIDNIGHT + 3.0));
        assert_eq!(l.served_rate(MIDNIGHT), 0.0);
        assert!(!l.smearing(MIDNIGHT));
    }

    #[test]
    fn deletion_steps_forward() {
        let mut l = LeapState::new(false, 86400.0);
        l.observe(Leap::DelSecond, DEC31 + 10.0);
        assert_eq!(
            l.served_leap(Leap::DelSecond, DEC31 + 20.0),
            Leap::DelSecond
        );
        assert_eq!(l.served_offset(MIDNIGHT + 1.0), 1.0);
        assert_eq!(l.sample_fix(MIDNIGHT + 100.0), -1.0);
    }

    #[test]
    fn withdrawn_announcement_cancels() {
        let mut l = LeapState::new(false, 86400.0);
        l.observe(Leap::AddSecond, DEC31 + 10.0);
        l.observe(Leap::NoWarning, DEC31 + 20.0);
        assert_eq!(l.next(DEC31), None);
        assert_eq!(l.served_offset(MIDNIGHT + 1.0), 0.0);
        // Unsynchronised estimates neither schedule nor cancel.
        l.observe(Leap::AddSecond, DEC31 + 30.0);
        l.observe(Leap::Unsynchronized, DEC31 + 40.0);
        assert!(l.next(DEC31 + 40.0).is_some());
    }

    #[test]
    fn smear_is_linear_over_the_window_centred_on_midnight() {
        let w = 86400.0;
        let mut l = LeapState::new(true, w);
        l.observe(Leap::AddSecond, DEC31 + 1.0);
        assert_eq!(l.served_offset(MIDNIGHT - w / 2.0 - 1.0), 0.0);
        assert!(!l.smearing(MIDNIGHT - w / 2.0 - 1.0));
        assert!((l.served_offset(MIDNIGHT - w / 4.0) + 0.25).abs() < 1e-9);
        assert!((l.served_offset(MIDNIGHT) + 0.5).abs() < 1e-9);
        assert!((l.served_offset(MIDNIGHT + w / 4.0) + 0.75).abs() < 1e-9);
        assert_eq!(l.served_offset(MIDNIGHT + w / 2.0 + 1.0), -1.0);
        assert!(l.smearing(MIDNIGHT));
        assert!((l.served_rate(MIDNIGHT) + 1.0 / w).abs() < 1e-15);
        // Clients of a smearing server never see the warning.
        assert_eq!(
            l.served_leap(Leap::AddSecond, MIDNIGHT - 10.0),
            Leap::NoWarning
        );
        // Once the smear has started, a withdrawn announcement no longer cancels it.
        l.observe(Leap::NoWarning, MIDNIGHT - 10.0);
        assert!((l.served_offset(MIDNIGHT) + 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_later_leap_counts_the_earlier_one() {
        let mut l = LeapState::new(false, 86400.0);
        l.observe(Leap::AddSecond, DEC31);
        // Half a year later (in core time, one second ahead of UTC).
        let june = MIDNIGHT + 181.5 * DAY;
        l.observe(Leap::AddSecond, june);
        let (at, _) = l.next(june).unwrap();
        assert_eq!(at, MIDNIGHT + 182.0 * DAY + 1.0);
        assert_eq!(l.served_offset(at + 1.0), -2.0);
    }
}
