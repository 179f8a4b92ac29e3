//! The system's tracking values for the operator (`meridian tracking`), sans IO: what the
//! discipline thread publishes once per update from its [`SystemEstimate`] and the snapshot
//! the core made of it; [`TrackingLog`] keeps what spans updates (RMS offset, update
//! interval).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::filter::secs_between;
use super::{SyncStatus, SystemEstimate};
use crate::clock::ClockSnapshot;
use crate::proto::{Leap, UnixNanos};

/// Measured offsets the RMS offset is taken over.
pub const RMS_WINDOW: usize = 16;

/// chrony's `tracking` values, for the served clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tracking {
    /// `synchronised`, `holdover`, `local` or `unsynchronised`.
    pub status: String,
    /// The reference id served, eight hex digits (`7F000102`).
    pub reference_id: String,
    /// The selected source's address (filled in by the management plane), or `LOCAL`.
    #[serde(default)]
    pub reference_name: Option<String>,
    pub stratum: u8,
    /// Served time of the last update, Unix seconds (None before the first).
    pub reference_time_unix_s: Option<f64>,
    /// The served clock minus the best estimate of true time, seconds (positive: fast; not 0
    /// while a slew is still under way).
    pub system_time_s: f64,
    /// The served clock minus the sources' combined time at the last update, seconds
    /// (positive: the served clock was ahead).
    pub last_offset_s: f64,
    /// RMS of the last [`RMS_WINDOW`] of those, seconds.
    pub rms_offset_s: f64,
    /// Frequency error of the raw local clock, ppm (positive: it runs slow).
    pub frequency_ppm: f64,
    /// The served clock's extra rate beyond that frequency, ppm: what is slewing the
    /// remaining offset out (0 once it has).
    pub residual_freq_ppm: f64,
    /// Standard error of the frequency, ppm.
    pub skew_ppm: f64,
    pub root_delay_s: f64,
    pub root_dispersion_s: f64,
    /// Seconds between the last two updates that had a new measurement.
    pub update_interval_s: f64,
    /// `normal`, `insert`, `delete` or `unsynchronised`.
    pub leap: String,
}

fn hex(refid: [u8; 4]) -> String {
    refid.iter().map(|b| format!("{b:02X}")).collect()
}

fn leap_name(l: Leap) -> &'static str {
    match l {
        Leap::NoWarning => "normal",
        Leap::AddSecond => "insert",
        Leap::DelSecond => "delete",
        Leap::Unsynchronized => "unsynchronised",
    }
}

/// The name of a [`SyncStatus`].
pub fn status_name(s: SyncStatus) -> &'static str {
    match s {
        SyncStatus::Synchronized => "synchronised",
        SyncStatus::Holdover => "holdover",
        SyncStatus::Local => "local",
        SyncStatus::Unsynchronized => "unsynchronised",
    }
}

impl Tracking {
    /// What a published snapshot alone says (the local clock, or before the discipline's
    /// first estimate): no offsets, no frequency.
    pub fn from_snapshot(snap: &ClockSnapshot, status: &str) -> Tracking {
        Tracking {
            status: status.to_owned(),
            reference_id: hex(snap.reference_id),
            reference_name: None,
            stratum: snap.stratum,
            reference_time_unix_s: (snap.reference_time.0 != 0)
                .then(|| snap.reference_time.as_secs_f64()),
            system_time_s: 0.0,
            last_offset_s: 0.0,
            rms_offset_s: 0.0,
            frequency_ppm: 0.0,
            residual_freq_ppm: 0.0,
            skew_ppm: 0.0,
            root_delay_s: snap.root_delay.as_secs_f64(),
            root_dispersion_s: snap.root_dispersion_ns as f64 * 1e-9,
            update_interval_s: 0.0,
            leap: leap_name(snap.leap).to_owned(),
        }
    }
}

/// What [`Tracking`] needs from more than one update.
#[derive(Clone, Debug, Default)]
pub struct TrackingLog {
    /// Recent combined offsets relative to the served clock.
    offsets: VecDeque<f64>,
    last_measured: Option<(f64, UnixNanos)>,
    interval: f64,
}

impl TrackingLog {
    /// Takes up the estimate `est` and the snapshot `core` the core made of it (before any
    /// leap smear), and returns the tracking values; `served` is the snapshot published.
    pub fn update(
        &mut self,
        est: &SystemEstimate,
        core: &ClockSnapshot,
        served: &ClockSnapshot,
    ) -> Tracking {
        let now = est.at;
        let served_offset = core.correction.cook(now).nanos_since(now) as f64 * 1e-9;
        let synced = est.status == SyncStatus::Synchronized;
        // A new measurement moves the combined offset (the core reuses it otherwise).
        if synced && self.last_measured.map(|(m, _)| m) != Some(est.measured_offset) {
            if let Some((_, at)) = self.last_measured {
                self.interval = secs_between(now, at);
            }
            self.last_measured = Some((est.measured_offset, now));
            self.offsets.push_back(served_offset - est.measured_offset);
            if self.offsets.len() > RMS_WINDOW {
                self.offsets.pop_front();
            }
        }
        let rms = if self.offsets.is_empty() {
            0.0
        } else {
            (self.offsets.iter().map(|o| o * o).sum::<f64>() / self.offsets.len() as f64).sqrt()
        };
        Tracking {
            status: status_name(est.status).to_owned(),
            system_time_s: served_offset - est.offset,
            last_offset_s: served_offset - est.measured_offset,
            rms_offset_s: rms,
            frequency_ppm: est.frequency * 1e6,
            residual_freq_ppm: (core.correction.freq - est.frequency) * 1e6,
            skew_ppm: est.frequency_stderr * 1e6,
            update_interval_s: self.interval,
            ..Tracking::from_snapshot(served, status_name(est.status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Correction;
    use crate::proto::NtpShort;

    fn estimate(at_s: i64, measured: f64) -> SystemEstimate {
        SystemEstimate {
            status: SyncStatus::Synchronized,
            at: UnixNanos(at_s * 1_000_000_000),
            offset: 0.2,
            measured_offset: measured,
            frequency: 2e-6,
            frequency_stderr: 1e-7,
            root_delay: 0.01,
            root_dispersion: 0.002,
            dispersion_rate: 15e-6,
            jitter: 1e-4,
            stratum: 2,
            refid: [127, 0, 1, 2],
            leap: Leap::NoWarning,
            system_peer: None,
            sources: Vec::new(),
        }
    }

    fn snapshot(at_s: i64, offset: f64) -> ClockSnapshot {
        let mut s = ClockSnapshot::unsynchronized(-20);
        s.synchronized = true;
        s.leap = Leap::NoWarning;
        s.stratum = 2;
        s.reference_id = [127, 0, 1, 2];
        s.root_delay = NtpShort::from_secs_f64(0.01);
        s.root_dispersion_ns = 2_000_000;
        s.reference_time = UnixNanos(at_s * 1_000_000_000);
        s.correction = Correction {
            at: UnixNanos(at_s * 1_000_000_000),
            offset_ns: (offset * 1e9) as i64,
            freq: 2.5e-6,
        };
        s
    }

    #[test]
    fn tracking_values_follow_the_estimates() {
        let mut log = TrackingLog::default();
        let t = log.update(
            &estimate(100, 0.2003),
            &snapshot(100, 0.2001),
            &snapshot(100, 0.2001),
        );
        assert_eq!(t.status, "synchronised");
        assert_eq!(t.reference_id, "7F000102");
        assert_eq!((t.stratum, t.leap.as_str()), (2, "normal"));
        assert!((t.system_time_s - 0.0001).abs() < 1e-9, "{t:?}");
        assert!((t.rms_offset_s - 0.0002).abs() < 1e-9, "{t:?}");
        assert!((t.frequency_ppm - 2.0).abs() < 1e-9);
        assert!((t.residual_freq_ppm - 0.5).abs() < 1e-9);
        assert!((t.skew_ppm - 0.1).abs() < 1e-9);
        assert_eq!(t.update_interval_s, 0.0);
        assert_eq!(t.reference_time_unix_s, Some(100.0));
        // Same measurement a second later: no new point; a new one 4 s after the first.
        log.update(
            &estimate(101, 0.2003),
            &snapshot(101, 0.2003),
            &snapshot(101, 0.2003),
        );
        let t = log.update(
            &estimate(104, 0.2001),
            &snapshot(104, 0.2001),
            &snapshot(104, 0.2001),
        );
        assert_eq!(t.update_interval_s, 4.0);
        // RMS of 0.0002 and 0.
        assert!((t.rms_offset_s - (0.0002f64.powi(2) / 2.0).sqrt()).abs() < 1e-9);
    }

    #[test]
    fn a_bare_snapshot_has_no_offsets() {
        let t = Tracking::from_snapshot(&ClockSnapshot::unsynchronized(-20), "unsynchronised");
        assert_eq!(t.stratum, 16);
        assert_eq!(t.leap, "unsynchronised");
        assert_eq!(t.reference_id, "00000000");
        assert_eq!(t.reference_time_unix_s, None);
    }
}
