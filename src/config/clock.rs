//! `[clock]`: how served time is produced (virtual or system steering, holdover, leap seconds).

use std::path::PathBuf;

use serde::Deserialize;

pub use crate::discipline::leap::LeapDays;
use crate::discipline::leap::MIN_SMEAR_SECONDS;

use super::source::MAX_SOURCES;
use super::Problems;

/// `[clock]`: how served time is produced.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClockConfig {
    /// Stratum served while the local clock is the reference (1..=15): always without
    /// sources; with sources only after holdover and only when `local_fallback` is set.
    pub local_stratum: u8,
    /// How the discipline steers: `virtual` (served = raw + correction, the OS clock is never
    /// touched) or `system` (slews/steps the OS clock; needs CAP_SYS_TIME).
    pub mode: ClockMode,
    /// Offsets above this many seconds are stepped (during the first `step_limit` updates).
    pub step_threshold: f64,
    /// Steps are allowed during this many synchronised updates; later only slews.
    pub step_limit: u32,
    /// Where the frequency of the OS clock is kept across restarts (`system` mode).
    pub drift_file: Option<PathBuf>,
    /// Seconds served on the last estimate after every source is lost.
    pub holdover: f64,
    /// Agreeing sources needed to synchronise.
    pub min_sources: usize,
    /// With sources: after holdover, serve the local clock at `local_stratum` instead of
    /// becoming unsynchronised.
    pub local_fallback: bool,
    /// Smear leap seconds linearly over `leap_smear_window` instead of stepping.
    pub leap_smear: bool,
    /// Seconds over which a leap second is smeared, centred on midnight UTC.
    pub leap_smear_window: f64,
    /// On which days an announced leap second is acted on.
    pub leap_days: LeapDays,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            local_stratum: 10,
            mode: ClockMode::Virtual,
            step_threshold: 1.0,
            step_limit: 3,
            drift_file: None,
            holdover: 600.0,
            min_sources: 1,
            local_fallback: false,
            leap_smear: false,
            leap_smear_window: 86400.0,
            leap_days: LeapDays::default(),
        }
    }
}

/// `clock.mode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClockMode {
    /// Serve raw time plus a published correction; never touch the OS clock.
    #[default]
    Virtual,
    /// Discipline the OS clock itself (adjtimex / clock_adjtime).
    System,
}

/// Upper bound of `clock.leap-smear-window`, seconds.
pub const MAX_SMEAR_WINDOW: f64 = 172_800.0;

impl ClockConfig {
    /// The `[clock]` rules that need no other section.
    pub(super) fn check(&self, p: &mut Problems) {
        if !(1..=15).contains(&self.local_stratum) {
            p.add(
                "clock.local-stratum",
                format!("must be in 1..=15, got {}", self.local_stratum),
            );
        }
        let clock = self;
        if !(clock.step_threshold.is_finite() && clock.step_threshold > 0.0) {
            p.add(
                "clock.step-threshold",
                format!(
                    "must be a positive number of seconds, got {}",
                    clock.step_threshold
                ),
            );
        }
        if !(clock.holdover.is_finite() && clock.holdover >= 0.0) {
            p.add(
                "clock.holdover",
                format!("must be 0 or more seconds, got {}", clock.holdover),
            );
        }
        if !(1..=MAX_SOURCES).contains(&clock.min_sources) {
            p.add(
                "clock.min-sources",
                format!("must be in 1..={MAX_SOURCES}, got {}", clock.min_sources),
            );
        }
        if !(clock.leap_smear_window.is_finite()
            && clock.leap_smear_window >= MIN_SMEAR_SECONDS
            && clock.leap_smear_window <= MAX_SMEAR_WINDOW)
        {
            p.add(
                "clock.leap-smear-window",
                format!(
                    "must be {MIN_SMEAR_SECONDS} to {MAX_SMEAR_WINDOW} seconds (a smear runs at \
                     most 400 ppm), got {}",
                    clock.leap_smear_window
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{err, parse};
    use crate::config::{Config, SourceConfig, SourceKind};

    #[test]
    fn local_stratum_range() {
        for ok in [1, 10, 15] {
            parse(&format!("[clock]\nlocal-stratum = {ok}\n")).unwrap();
        }
        for bad in [0, 16, 255] {
            let e = err(&format!("[clock]\nlocal-stratum = {bad}\n"));
            assert_eq!(
                e,
                format!("meridian.toml:2:17: clock.local-stratum: must be in 1..=15, got {bad}")
            );
        }
    }
    #[test]
    fn clock_ranges() {
        assert_eq!(
            err("[clock]\nstep-threshold = 0\nholdover = -1\nmin-sources = 0\n\
                 leap-smear-window = 0\n"),
            "meridian.toml:2:18: clock.step-threshold: must be a positive number of seconds, got 0\n\
             meridian.toml:3:12: clock.holdover: must be 0 or more seconds, got -1\n\
             meridian.toml:4:15: clock.min-sources: must be in 1..=16, got 0\n\
             meridian.toml:5:21: clock.leap-smear-window: must be 2500 to 172800 seconds (a \
             smear runs at most 400 ppm), got 0"
        );
        assert_eq!(
            err(
                "[clock]\nmin-sources = 3\n[[source]]\naddress = \"a\"\n[[source]]\n\
                 address = \"b\"\n"
            ),
            "meridian.toml:2:15: clock.min-sources: is 3 but the [[source]] tables give at \
             most 2 source(s)"
        );
        parse("[clock]\nmin-sources = 3\n[[source]]\naddress = \"p\"\nkind = \"pool\"\n").unwrap();
        let e = err("[clock]\nmode = \"kernel\"\n");
        assert!(
            e.starts_with("meridian.toml:2:8: clock.mode: unknown variant `kernel`"),
            "{e}"
        );
    }
    #[test]
    fn sources_and_clock_defaults() {
        let c = parse("[[source]]\naddress = \"192.0.2.1\"\n").unwrap();
        assert_eq!(c.sources, vec![SourceConfig::new("192.0.2.1")]);
        let s = &c.sources[0];
        assert_eq!(
            (s.minpoll, s.maxpoll, s.iburst, s.prefer),
            (6, 10, false, false)
        );
        assert_eq!(s.kind, SourceKind::Server);
        assert_eq!(s.max_sources(), 1);
        let d = ClockConfig::default();
        assert_eq!(d.mode, ClockMode::Virtual);
        assert_eq!(
            (d.step_threshold, d.step_limit, d.holdover),
            (1.0, 3, 600.0)
        );
        assert_eq!(
            (d.min_sources, d.local_fallback, d.leap_smear),
            (1, false, false)
        );
        assert_eq!(d.leap_smear_window, 86400.0);
        assert_eq!(d.drift_file, None);
        assert!(Config::default().sources.is_empty());
        let c = parse("[[source]]\naddress = \"pool.example.net\"\nkind = \"pool\"\n").unwrap();
        assert_eq!(c.sources[0].max_sources(), 4);
        let c = parse("[clock]\nmode = \"system\"\nstep-threshold = 2\n").unwrap();
        assert_eq!(c.clock.mode, ClockMode::System);
        assert_eq!(c.clock.step_threshold, 2.0);
    }
}
