//! Per-source statistics for the operator (`meridian sources` and `sourcestats`), sans IO: the
//! last sample of a source, and a least-squares line through the samples its clock filter
//! holds, both relative to the **served** clock (the raw clock plus the published correction),
//! which is what an operator compares a source with.

use serde::{Deserialize, Serialize};

use super::filter::secs_between;
use super::{Discipline, SourceId};
use crate::proto::UnixNanos;

/// A line through a source's samples: chrony's `sourcestats` columns.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleStats {
    /// Samples used (NP).
    pub samples: usize,
    /// Runs of residuals of the same sign (NR): about half of NP when the line fits.
    pub runs: usize,
    /// Seconds from the oldest sample to the newest.
    pub span_s: f64,
    /// The source's frequency relative to the served clock (dimensionless: +1e-6 is the
    /// source gaining 1 µs per second on it); None with fewer than 2 samples over a span.
    pub frequency: Option<f64>,
    /// Standard error of `frequency` (dimensionless); None with fewer than 3 samples.
    pub skew: Option<f64>,
    /// The line's value at the evaluation instant: source minus served clock, seconds.
    pub offset_s: f64,
    /// Standard deviation of the samples about the line, seconds (0 with fewer than 3).
    pub std_dev_s: f64,
}

/// Fits a line to `(t, y)` points (seconds since any origin, seconds) and evaluates it at
/// `now` (same origin). None without points.
pub fn fit(points: &[(f64, f64)], now: f64) -> Option<SampleStats> {
    let n = points.len();
    if n == 0 {
        return None;
    }
    let nf = n as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let stt: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    let first = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let last = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let slope = (n >= 2 && stt > 0.0).then(|| {
        points
            .iter()
            .map(|p| (p.0 - mean_t) * (p.1 - mean_y))
            .sum::<f64>()
            / stt
    });
    let b = slope.unwrap_or(0.0);
    let residuals: Vec<f64> = points
        .iter()
        .map(|p| p.1 - (mean_y + b * (p.0 - mean_t)))
        .collect();
    let (std_dev, skew) = if n >= 3 && slope.is_some() {
        let var = residuals.iter().map(|r| r * r).sum::<f64>() / (nf - 2.0);
        (var.sqrt(), Some((var / stt).sqrt()))
    } else {
        (0.0, None)
    };
    Some(SampleStats {
        samples: n,
        runs: runs(&residuals),
        span_s: last - first,
        frequency: slope,
        skew,
        offset_s: mean_y + b * (now - mean_t),
        std_dev_s: std_dev,
    })
}

/// Runs of the same sign in `residuals` (a zero continues the run it is in).
fn runs(residuals: &[f64]) -> usize {
    let mut runs = 0;
    let mut sign = 0i8;
    for r in residuals {
        let s = if *r > 0.0 {
            1
        } else if *r < 0.0 {
            -1
        } else {
            sign
        };
        if s != sign || runs == 0 {
            runs += 1;
            sign = s;
        }
    }
    runs
}

/// What the operator sees of one source beyond its [`SourceReport`](super::SourceReport).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SourceDetail {
    /// Seconds from its last accepted sample to the last update.
    pub last_rx_ago_s: f64,
    /// The last sample's offset: source minus the raw local clock, seconds.
    pub measured_s: f64,
    /// The same against the served clock (the correction at that instant taken off).
    pub adjusted_s: f64,
    /// The line through its filter's samples, at the last update.
    pub stats: Option<SampleStats>,
}

impl Discipline {
    /// The served clock minus the raw clock at raw time `at`, seconds, as last published.
    fn served_offset(&self, at: UnixNanos) -> f64 {
        self.published().correction.cook(at).nanos_since(at) as f64 * 1e-9
    }

    /// The operator's view of source `id` at the last update; None for an unknown source or
    /// one without an accepted sample (or before the first update).
    pub fn source_detail(&self, id: SourceId) -> Option<SourceDetail> {
        let now = self.updated_at?;
        let src = self.sources.get(&id)?;
        let last = src.last?;
        let points: Vec<(f64, f64)> = src
            .filter
            .samples()
            .map(|s| (secs_between(s.at, now), s.offset - self.served_offset(s.at)))
            .collect();
        Some(SourceDetail {
            last_rx_ago_s: secs_between(now, last.at).max(0.0),
            measured_s: last.offset,
            adjusted_s: last.offset - self.served_offset(last.at),
            stats: fit(&points, 0.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_found_with_its_spread() {
        // y = 0.001 + 2e-6 t, alternating ±10 µs: 8 runs of one sample each.
        let pts: Vec<(f64, f64)> = (0..8)
            .map(|i| {
                let t = f64::from(i) * 16.0;
                let e = if i % 2 == 0 { 10e-6 } else { -10e-6 };
                (t, 0.001 + 2e-6 * t + e)
            })
            .collect();
        let s = fit(&pts, 128.0).unwrap();
        assert_eq!((s.samples, s.runs), (8, 8));
        assert_eq!(s.span_s, 112.0);
        assert!((s.frequency.unwrap() - 2e-6).abs() < 2e-7, "{s:?}");
        assert!((s.offset_s - (0.001 + 2e-6 * 128.0)).abs() < 3e-5, "{s:?}");
        assert!(s.std_dev_s > 5e-6 && s.std_dev_s < 2e-5, "{s:?}");
        assert!(s.skew.unwrap() > 0.0);
    }

    #[test]
    fn few_samples_give_what_they_can() {
        assert_eq!(fit(&[], 0.0), None);
        let one = fit(&[(0.0, 0.5)], 10.0).unwrap();
        assert_eq!((one.samples, one.runs, one.span_s), (1, 1, 0.0));
        assert_eq!((one.frequency, one.skew, one.offset_s), (None, None, 0.5));
        let two = fit(&[(0.0, 0.0), (10.0, 1e-5)], 20.0).unwrap();
        assert!((two.frequency.unwrap() - 1e-6).abs() < 1e-12);
        assert_eq!(two.skew, None);
        assert!((two.offset_s - 2e-5).abs() < 1e-12);
        // The same instant twice: no slope.
        let same = fit(&[(5.0, 1.0), (5.0, 3.0)], 5.0).unwrap();
        assert_eq!((same.frequency, same.offset_s), (None, 2.0));
    }

    #[test]
    fn runs_count_sign_changes() {
        assert_eq!(runs(&[1.0, 2.0, -1.0, -2.0, 3.0]), 3);
        assert_eq!(runs(&[0.0, 0.0]), 1);
        assert_eq!(runs(&[1.0, 0.0, 1.0]), 1);
        assert_eq!(runs(&[]), 0);
    }
}
