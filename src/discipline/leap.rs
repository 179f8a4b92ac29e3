//! Leap seconds, sans IO: what the sources announce, whether and when it takes effect, and how
//! it changes the served clock and the samples. Time is always passed in (core time, seconds
//! since the Unix epoch), so every rule here is tested at any instant of any day.
//!
//! The discipline core works on a continuous time scale T (raw time plus its offset estimate);
//! UTC, which the sources serve and meridian publishes, is `T − L(T)`, where L counts the leap
//! seconds that took effect since meridian started (+1 per insertion, −1 per deletion). So:
//!
//! * a sample's offset measured after a leap is corrected by `+L(T)` before it reaches the
//!   core, which therefore never sees the jump (samples within [`SAMPLE_GUARD`] seconds of the
//!   instant are dropped: the two clocks may straddle it);
//! * the published correction adds `−L(T)` (a 1 s step at midnight UTC), or with smearing a
//!   linear ramp of the same second.
//!
//! **When an announcement counts.** An announcement (LI=1 or 2 from the synchronised estimate)
//! is acted on only on a day a leap second can end ([`LeapDays`]; by default the last day of
//! June or December, as chrony does): it schedules the leap at the end of that UTC day. Before
//! that day it is ignored (reported once, see [`LeapNote::NotLeapDay`]), and the served leap
//! indicator stays "no warning". Withdrawing an announcement before its leap starts cancels it.
//! For an hour after a leap ([`QUIET_AFTER`]) announcements are ignored (sources keep LI set
//! for a while).
//!
//! **Smearing never jumps.** The smear is a linear ramp of the whole second, planned over the
//! window centred on midnight (noon to noon for the default day-long window). It starts at the
//! later of the window's start and the moment the leap became known, so served time stays
//! continuous however late the announcement arrives: a late leap is smeared faster, up to
//! [`MAX_SMEAR_RATE`] (400 ppm, the frequency limit of chrony's documented leap smear,
//! `smoothtime 400 0.001024 leaponly`). When even that rate cannot finish by the window's end
//! the smear runs longer at that rate and [`LeapNote::Late`] says so.

use crate::proto::Leap;

/// The reference id served while a leap second is being smeared: 127.127.1.255, as chrony.
pub const SMEAR_REFID: [u8; 4] = [127, 127, 1, 255];
/// Announcements are ignored for this long after a leap, seconds.
pub const QUIET_AFTER: f64 = 3600.0;
/// Samples taken this close to a leap instant are dropped, seconds.
pub const SAMPLE_GUARD: f64 = 2.0;
/// Fastest smear, as a fraction (400 ppm: one second takes at least 2,500 s).
pub const MAX_SMEAR_RATE: f64 = 400e-6;
/// Shortest smear of one second at [`MAX_SMEAR_RATE`], seconds.
pub const MIN_SMEAR_SECONDS: f64 = 1.0 / MAX_SMEAR_RATE;

const DAY: f64 = 86_400.0;

/// On which days an announced leap second is believed (`clock.leap-days`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeapDays {
    /// The last day of June or December only (every leap second so far; chrony's rule).
    #[default]
    JuneDecember,
    /// The last day of any month (ITU-R TF.460 allows them; none has been used).
    MonthEnd,
    /// Any day: the leap happens at the end of the day it is announced on (test labs).
    AnyDay,
}

impl LeapDays {
    /// Whether a leap second may end the UTC day `day` (days since 1970-01-01).
    pub fn allows(self, day: i64) -> bool {
        let (_, m, _) = civil_date(day);
        let last_of_month = civil_date(day + 1).2 == 1;
        match self {
            LeapDays::JuneDecember => last_of_month && (m == 6 || m == 12),
            LeapDays::MonthEnd => last_of_month,
            LeapDays::AnyDay => true,
        }
    }

    /// The first day from `day` on that [`LeapDays::allows`].
    pub fn next_allowed(self, day: i64) -> i64 {
        (day..day + 370).find(|&d| self.allows(d)).unwrap_or(day)
    }
}

/// (year, month 1..=12, day 1..=31) of `day` days since 1970-01-01 in the proleptic Gregorian
/// calendar (days are counted in 400-year cycles of 146,097 days from 0000-03-01).
pub fn civil_date(day: i64) -> (i64, u32, u32) {
    let z = day + 719_468; // days since 0000-03-01
    let cycle = z.div_euclid(146_097);
    let doc = z.rem_euclid(146_097); // day of the 400-year cycle, 0..=146_096
    let yoc = (doc - doc / 1460 + doc / 36_524 - doc / 146_096) / 365; // 0..=399
    let doy = doc - (365 * yoc + yoc / 4 - yoc / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoc + cycle * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD` of `day` days since 1970-01-01.
pub fn date_string(day: i64) -> String {
    let (y, m, d) = civil_date(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// What [`LeapState::observe`] decided, for the log (each decision is reported once).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LeapNote {
    /// A leap is scheduled at core time `at` (+1 inserted, −1 deleted); with smearing, the
    /// ramp runs from `start` to `end` at `rate` (seconds per second).
    Scheduled {
        at: f64,
        delta: f64,
        smear: Option<Smear>,
    },
    /// As `Scheduled`, but learned too late to finish by the window's planned end `planned_end`
    /// even at [`MAX_SMEAR_RATE`]: the ramp ends at `smear.end` instead.
    Late {
        at: f64,
        delta: f64,
        smear: Smear,
        planned_end: f64,
    },
    /// Announced on a day no leap second can end: not acted on until the UTC day `until`
    /// (days since 1970-01-01).
    NotLeapDay { delta: f64, until: i64 },
    /// A scheduled leap was withdrawn before it started.
    Withdrawn { at: f64 },
}

/// The ramp of one smeared leap second, core time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Smear {
    pub start: f64,
    pub end: f64,
}

impl Smear {
    /// Seconds of served time per second: the ramp's slope.
    pub fn rate(&self) -> f64 {
        1.0 / (self.end - self.start)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Event {
    /// Core time T of the leap (UTC midnight plus the leaps before it).
    at: f64,
    /// +1 inserted, −1 deleted.
    delta: f64,
    /// When served time starts and stops changing: the ramp, or `at`..`at` for a step.
    start: f64,
    end: f64,
}

impl Event {
    /// The fraction of the second served at `t`: 0 before, 1 after.
    fn progress(&self, t: f64) -> f64 {
        if self.end > self.start {
            ((t - self.start) / (self.end - self.start)).clamp(0.0, 1.0)
        } else if t >= self.at {
            1.0
        } else {
            0.0
        }
    }

    fn ramping(&self, t: f64) -> bool {
        self.end > self.start && t >= self.start && t < self.end
    }
}

/// Leap second bookkeeping (see the module documentation).
#[derive(Clone, Debug)]
pub struct LeapState {
    smear: bool,
    window: f64,
    days: LeapDays,
    events: Vec<Event>,
    /// The announcement last ignored as [`LeapNote::NotLeapDay`] (reported once).
    ignored: Option<f64>,
}

impl LeapState {
    /// `smear`: spread the second over `window` seconds centred on the leap (at least
    /// [`MIN_SMEAR_SECONDS`]); `days`: when an announcement is believed.
    pub fn new(smear: bool, window: f64, days: LeapDays) -> LeapState {
        LeapState {
            smear,
            window: window.max(MIN_SMEAR_SECONDS),
            days,
            events: Vec::new(),
            ignored: None,
        }
    }

    /// Takes the synchronised estimate's leap indicator at core time `t` (seconds since the
    /// Unix epoch); returns a decision worth logging, at most once per decision.
    pub fn observe(&mut self, leap: Leap, t: f64) -> Option<LeapNote> {
        let delta = match leap {
            Leap::AddSecond => 1.0,
            Leap::DelSecond => -1.0,
            Leap::NoWarning => {
                self.ignored = None;
                let last = self.events.last().copied()?;
                if t < last.start {
                    self.events.pop();
                    return Some(LeapNote::Withdrawn { at: last.at });
                }
                return None;
            }
            Leap::Unsynchronized => return None,
        };
        if let Some(last) = self.events.last() {
            if t < last.at + QUIET_AFTER {
                return None; // already scheduled (or just applied)
            }
        }
        let before = self.applied(t);
        let day = ((t - before) / DAY).floor() as i64;
        if !self.days.allows(day) {
            if self.ignored == Some(delta) {
                return None;
            }
            self.ignored = Some(delta);
            return Some(LeapNote::NotLeapDay {
                delta,
                until: self.days.next_allowed(day),
            });
        }
        self.ignored = None;
        let at = (day + 1) as f64 * DAY + before;
        if !self.smear {
            self.events.push(Event {
                at,
                delta,
                start: at,
                end: at,
            });
            return Some(LeapNote::Scheduled {
                at,
                delta,
                smear: None,
            });
        }
        let planned_end = at + self.window / 2.0;
        let start = t.max(at - self.window / 2.0);
        let end = planned_end.max(start + MIN_SMEAR_SECONDS);
        self.events.push(Event {
            at,
            delta,
            start,
            end,
        });
        let smear = Smear { start, end };
        Some(if end > planned_end {
            LeapNote::Late {
                at,
                delta,
                smear,
                planned_end,
            }
        } else {
            LeapNote::Scheduled {
                at,
                delta,
                smear: Some(smear),
            }
        })
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

    /// Served minus core time at `t`, seconds: −L(t), or its smeared (continuous) form.
    pub fn served_offset(&self, t: f64) -> f64 {
        -self
            .events
            .iter()
            .map(|e| e.delta * e.progress(t))
            .sum::<f64>()
    }

    /// d(served offset)/dt at `t`: nonzero only while smearing, never above
    /// [`MAX_SMEAR_RATE`] per leap second.
    pub fn served_rate(&self, t: f64) -> f64 {
        -self
            .events
            .iter()
            .filter(|e| e.ramping(t))
            .map(|e| e.delta / (e.end - e.start))
            .sum::<f64>()
    }

    /// True while a leap second is being smeared at `t`.
    pub fn smearing(&self, t: f64) -> bool {
        self.events.iter().any(|e| e.ramping(t))
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
    const HOUR: f64 = 3600.0;

    fn state(smear: bool, window: f64) -> LeapState {
        LeapState::new(smear, window, LeapDays::JuneDecember)
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date((DEC31 / DAY) as i64), (2016, 12, 31));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
        assert_eq!(civil_date(-25_508), (1900, 3, 1)); // 1900 is not a leap year
        assert_eq!(date_string(24_105), "2035-12-31");
        // Every day of 1968..2100 follows the one before.
        let mut prev = civil_date(-731);
        for day in -730..47_482 {
            let (y, m, d) = civil_date(day);
            let next_day = d == prev.2 + 1 && m == prev.1 && y == prev.0;
            let next_month = d == 1 && (m == prev.1 + 1 && y == prev.0 || m == 1 && prev.1 == 12);
            assert!(next_day || next_month, "{prev:?} -> {:?}", (y, m, d));
            prev = (y, m, d);
        }
    }

    #[test]
    fn leap_days() {
        let day = |y: i64, m: u32, d: u32| {
            (-800..60_000)
                .find(|&n| civil_date(n) == (y, m, d))
                .unwrap()
        };
        let jd = LeapDays::JuneDecember;
        assert!(jd.allows(day(2016, 12, 31)) && jd.allows(day(2015, 6, 30)));
        assert!(!jd.allows(day(2016, 12, 30)) && !jd.allows(day(2016, 11, 30)));
        assert!(!jd.allows(day(2016, 12, 1)) && !jd.allows(day(2017, 1, 1)));
        assert_eq!(jd.next_allowed(day(2026, 12, 1)), day(2026, 12, 31));
        assert_eq!(jd.next_allowed(day(2027, 1, 1)), day(2027, 6, 30));
        let me = LeapDays::MonthEnd;
        assert!(me.allows(day(2016, 11, 30)) && me.allows(day(2024, 2, 29)));
        assert!(!me.allows(day(2023, 2, 27)) && me.allows(day(2023, 2, 28)));
        assert!(!me.allows(day(2016, 12, 30)));
        assert!(LeapDays::AnyDay.allows(day(2016, 12, 1)));
    }

    #[test]
    fn insertion_steps_back_one_second_at_midnight() {
        let mut l = state(false, 86400.0);
        assert_eq!(
            l.observe(Leap::AddSecond, DEC31 + 3600.0),
            Some(LeapNote::Scheduled {
                at: MIDNIGHT,
                delta: 1.0,
                smear: None
            })
        );
        assert_eq!(l.observe(Leap::AddSecond, DEC31 + 3601.0), None);
        assert_eq!(l.next(DEC31), Some((MIDNIGHT, 1.0)));
        assert_eq!(
            l.served_leap(Leap::AddSecond, MIDNIGHT - 10.0),
            Leap::AddSecond
        );
        assert_eq!(l.served_offset(MIDNIGHT - 0.001), 0.0);
        assert_eq!(l.served_offset(MIDNIGHT), -1.0);
        assert_eq!(l.served_offset(MIDNIGHT + 5000.0), -1.0);
        // After the leap: no warning served, even while sources still announce it.
        assert_eq!(l.observe(Leap::AddSecond, MIDNIGHT + 5.0), None);
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
        let mut l = state(false, 86400.0);
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
        let mut l = state(false, 86400.0);
        l.observe(Leap::AddSecond, DEC31 + 10.0);
        assert_eq!(
            l.observe(Leap::NoWarning, DEC31 + 20.0),
            Some(LeapNote::Withdrawn { at: MIDNIGHT })
        );
        assert_eq!(l.next(DEC31), None);
        assert_eq!(l.served_offset(MIDNIGHT + 1.0), 0.0);
        // Unsynchronised estimates neither schedule nor cancel.
        l.observe(Leap::AddSecond, DEC31 + 30.0);
        assert_eq!(l.observe(Leap::Unsynchronized, DEC31 + 40.0), None);
        assert!(l.next(DEC31 + 40.0).is_some());
    }

    #[test]
    fn an_announcement_before_the_leap_day_waits_for_it_and_is_reported_once() {
        let dec1 = DEC31 - 30.0 * DAY;
        let dec31 = (DEC31 / DAY) as i64;
        for smear in [false, true] {
            let mut l = state(smear, 86400.0);
            assert_eq!(
                l.observe(Leap::AddSecond, dec1 + 12.0 * HOUR),
                Some(LeapNote::NotLeapDay {
                    delta: 1.0,
                    until: dec31
                })
            );
            // Every later poll of the month: nothing new to say, nothing scheduled or served.
            for t in (1..30).map(|d| dec1 + d as f64 * DAY) {
                assert_eq!(l.observe(Leap::AddSecond, t), None, "{t}");
                assert_eq!(l.next(t), None);
                assert_eq!(l.served_leap(Leap::AddSecond, t), Leap::NoWarning);
                assert_eq!(l.served_offset(t), 0.0);
            }
            // On the 31st it is believed.
            assert!(matches!(
                l.observe(Leap::AddSecond, DEC31),
                Some(LeapNote::Scheduled { at: MIDNIGHT, .. })
            ));
            assert_eq!(l.served_offset(MIDNIGHT + DAY), -1.0);
        }
        // A withdrawal resets the memo: a new announcement is reported again.
        let mut l = state(false, 86400.0);
        assert!(l.observe(Leap::AddSecond, dec1).is_some());
        assert_eq!(l.observe(Leap::NoWarning, dec1 + 60.0), None);
        assert!(l.observe(Leap::AddSecond, dec1 + 120.0).is_some());
        // Other rules.
        let mut any = LeapState::new(false, 86400.0, LeapDays::AnyDay);
        assert!(matches!(
            any.observe(Leap::AddSecond, dec1),
            Some(LeapNote::Scheduled { at, .. }) if at == dec1 + DAY
        ));
        let mut month = LeapState::new(false, 86400.0, LeapDays::MonthEnd);
        assert!(matches!(
            month.observe(Leap::AddSecond, dec1 - 1.0), // 2016-11-30T23:59:59Z
            Some(LeapNote::Scheduled { at, .. }) if at == dec1
        ));
    }

    #[test]
    fn smear_is_linear_over_the_window_centred_on_midnight() {
        let w = 86400.0;
        let mut l = state(true, w);
        let smear = Smear {
            start: MIDNIGHT - w / 2.0,
            end: MIDNIGHT + w / 2.0,
        };
        assert_eq!(
            l.observe(Leap::AddSecond, DEC31 + 1.0),
            Some(LeapNote::Scheduled {
                at: MIDNIGHT,
                delta: 1.0,
                smear: Some(smear)
            })
        );
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
    fn a_late_smear_starts_where_it_is_learned_and_says_when_it_cannot_finish() {
        // Learned at 20:00 with the day-long window: the ramp starts at 20:00 (no jump) and
        // still ends at noon, a little faster.
        let mut l = state(true, 86400.0);
        let t = MIDNIGHT - 4.0 * HOUR;
        let note = l.observe(Leap::AddSecond, t).unwrap();
        let LeapNote::Scheduled { smear: Some(s), .. } = note else {
            panic!("{note:?}")
        };
        assert_eq!((s.start, s.end), (t, MIDNIGHT + 12.0 * HOUR));
        assert!(s.rate() <= MAX_SMEAR_RATE && s.rate() > 1.0 / 86400.0);
        assert_eq!(l.served_offset(t), 0.0);
        // A one-hour window learned at 23:59:59: 2,500 s at 400 ppm, past the planned 00:30.
        let mut l = state(true, 3600.0);
        let t = MIDNIGHT - 1.0;
        let note = l.observe(Leap::AddSecond, t).unwrap();
        assert_eq!(
            note,
            LeapNote::Late {
                at: MIDNIGHT,
                delta: 1.0,
                smear: Smear {
                    start: t,
                    end: t + MIN_SMEAR_SECONDS
                },
                planned_end: MIDNIGHT + 1800.0,
            }
        );
        assert!((l.served_rate(t + 1.0) + MAX_SMEAR_RATE).abs() < 1e-12);
        // A window shorter than the bound allows is widened to it.
        let mut l = state(true, 10.0);
        l.observe(Leap::AddSecond, DEC31);
        assert!((l.served_rate(MIDNIGHT) + MAX_SMEAR_RATE).abs() < 1e-12);
    }

    /// Runs the discipline's use of the leap logic as the thread does (an estimate every
    /// second announcing the leap until midnight and no warning after it), starting at
    /// `start`, for two days; checks what clients are served.
    fn run_day(start: f64, smear: bool, window: f64, leap_day: bool) {
        let mut l = state(smear, window);
        let mut notes = Vec::new();
        let mut prev: Option<(f64, f64)> = None; // (t, served offset)
        let end = start + 2.0 * DAY;
        let mut t = start;
        let what = format!("start {start} smear {smear} window {window}");
        while t < end {
            let est = if t < MIDNIGHT {
                Leap::AddSecond
            } else {
                Leap::NoWarning
            };
            notes.extend(l.observe(est, t));
            let off = l.served_offset(t);
            assert!(
                l.served_rate(t).abs() <= MAX_SMEAR_RATE + 1e-15,
                "{what}: rate at {t}"
            );
            if let Some((pt, poff)) = prev {
                let jump = (off - poff).abs();
                if smear || !leap_day {
                    assert!(
                        jump <= MAX_SMEAR_RATE * (t - pt) + 1e-9,
                        "{what}: served time jumps by {jump} s at {t}"
                    );
                } else if jump > 0.0 {
                    assert!(poff == 0.0 && off == -1.0 && t >= MIDNIGHT && pt < MIDNIGHT);
                }
                // Served time never runs backwards while smearing, nor stands still.
                if smear {
                    assert!(
                        t + off > pt + poff,
                        "{what}: served time not increasing at {t}"
                    );
                }
            }
            if t < MIDNIGHT && !smear && leap_day {
                assert_eq!(l.served_leap(est, t), Leap::AddSecond, "{what} at {t}");
            } else {
                assert_eq!(l.served_leap(est, t), Leap::NoWarning, "{what} at {t}");
            }
            prev = Some((t, off));
            t += 1.0;
        }
        let expect = if leap_day { -1.0 } else { 0.0 };
        assert_eq!(l.served_offset(end), expect, "{what}");
        assert_eq!(notes.len(), 1, "{what}: one decision logged: {notes:?}");
        if !leap_day {
            assert!(matches!(notes[0], LeapNote::NotLeapDay { .. }), "{notes:?}");
        }
    }

    #[test]
    fn any_time_of_day_on_the_leap_day_and_on_another_day() {
        let times = [
            0.0,
            11.0 * HOUR + 59.0 * 60.0,
            12.0 * HOUR + 60.0,
            DAY - 1.0,
        ];
        for smear in [false, true] {
            for window in [86400.0, 3600.0] {
                for &tod in &times {
                    run_day(DEC31 + tod, smear, window, true);
                    // 2016-12-30: announced, not acted on (the next day is another run).
                    let mut l = state(smear, window);
                    let t = DEC31 - DAY + tod;
                    assert!(matches!(
                        l.observe(Leap::AddSecond, t),
                        Some(LeapNote::NotLeapDay { .. })
                    ));
                    assert_eq!(l.next(t), None);
                    assert_eq!(l.served_offset(t + DAY), 0.0);
                }
            }
        }
        // A non-leap day whole: announced all day, nothing ever served.
        let nov30 = DEC31 - 31.0 * DAY;
        for smear in [false, true] {
            let mut l = state(smear, 86400.0);
            let mut notes = 0;
            for s in 0..86_400 {
                let t = nov30 + f64::from(s);
                notes += usize::from(l.observe(Leap::AddSecond, t).is_some());
                assert_eq!(l.served_offset(t), 0.0);
                assert_eq!(l.served_leap(Leap::AddSecond, t), Leap::NoWarning);
            }
            assert_eq!(notes, 1);
        }
    }

    #[test]
    fn a_later_leap_counts_the_earlier_one() {
        let mut l = state(false, 86400.0);
        l.observe(Leap::AddSecond, DEC31);
        // Half a year later (in core time, one second ahead of UTC): 2017-06-30.
        let june = MIDNIGHT + 180.5 * DAY;
        l.observe(Leap::AddSecond, june);
        let (at, _) = l.next(june).unwrap();
        assert_eq!(at, MIDNIGHT + 181.0 * DAY + 1.0);
        assert_eq!(l.served_offset(at + 1.0), -2.0);
    }
}
