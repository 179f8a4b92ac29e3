//! Frequency estimation and steering of the served clock.
//!
//! [`FreqEstimator`] fits a straight line `offset(t) = a + f·(t − t_ref)` by weighted least
//! squares through recent points of the combined offset (true time minus raw local time). The
//! slope `f` is the raw clock's frequency error (dimensionless; positive when the raw clock runs
//! slow, i.e. the offset grows). Its standard error comes from the residuals. The history is
//! bounded in count and span, and points whose residual exceeds a multiple of the robust
//! (median absolute deviation) scale are left out of the fit, so isolated bad points do not
//! tilt the line.
//!
//! [`steer`] turns a target `(offset, frequency)` at raw instant `now` into the next
//! [`Correction`] to publish. It never makes served time jump unless it steps on purpose: the
//! new correction is re-anchored at `now` with the offset the current one serves at `now`, so
//! changing only the frequency leaves served time continuous. A remaining error up to the step
//! threshold is slewed: an extra frequency `error / slew_time` (bounded by `max_slew_rate`)
//! closes it, and since the caller re-steers at every update (at least once a second) the
//! error decays exponentially with time constant `slew_time`. Larger errors are stepped (when
//! the policy allows), and the caller bumps the snapshot epoch.

use std::collections::VecDeque;

use crate::clock::Correction;
use crate::proto::UnixNanos;

use super::filter::secs_between;

/// Outlier rejection starts at this many points.
pub const MIN_POINTS_FOR_REJECTION: usize = 6;

/// Frequency estimator settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FreqConfig {
    /// Most points kept.
    pub max_points: usize,
    /// Oldest point kept, seconds before the newest.
    pub max_span: f64,
    /// Points with residuals above this many robust standard deviations are not fitted.
    pub outlier_sigmas: f64,
    /// The estimate is clamped to ±this (dimensionless).
    pub max_freq: f64,
    /// No estimate until the points span at least this many seconds.
    pub min_span: f64,
}

impl Default for FreqConfig {
    fn default() -> Self {
        FreqConfig {
            max_points: 64,
            max_span: 4.0 * 3600.0,
            outlier_sigmas: 4.0,
            max_freq: 500e-6,
            min_span: 4.0,
        }
    }
}

/// One point of the combined offset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FreqPoint {
    /// Local raw time of the point.
    pub at: UnixNanos,
    /// True time minus raw time at `at`, seconds.
    pub offset: f64,
    /// Relative weight (> 0; e.g. 1 / variance). Only ratios matter.
    pub weight: f64,
}

/// The fitted line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FreqEstimate {
    /// Frequency error of the raw clock (d offset / dt, dimensionless), clamped to
    /// ±`max_freq`.
    pub freq: f64,
    /// Standard error of `freq` (dimensionless).
    pub freq_stderr: f64,
    /// The line's offset at `at`, seconds.
    pub offset: f64,
    /// Reference instant of `offset` (the newest point's time).
    pub at: UnixNanos,
    /// Points used in the fit.
    pub used: usize,
    /// Points left out as outliers.
    pub rejected: usize,
    /// Weighted RMS of the used points' residuals, seconds.
    pub residual_rms: f64,
    /// Time from the oldest to the newest point, seconds.
    pub span: f64,
    /// The fitted slope exceeded ±`max_freq` and was clamped.
    pub clamped: bool,
}

impl FreqEstimate {
    /// The line's offset at raw time `t`, seconds.
    pub fn predict(&self, t: UnixNanos) -> f64 {
        self.offset + self.freq * secs_between(t, self.at)
    }
}

/// Weighted least-squares frequency estimator over a bounded history.
#[derive(Clone, Debug)]
pub struct FreqEstimator {
    cfg: FreqConfig,
    points: VecDeque<FreqPoint>,
    estimate: Option<FreqEstimate>,
}

/// Result of one weighted fit over the points selected by `mask`.
struct Fit {
    slope: f64,
    /// Value at t = 0 (the newest point).
    intercept: f64,
    slope_var: f64,
    rms: f64,
}

fn fit(t: &[f64], y: &[f64], w: &[f64], mask: &[bool]) -> Option<Fit> {
    let idx = || (0..t.len()).filter(|&i| mask[i]);
    let n = idx().count();
    if n < 3 {
        return None;
    }
    let sw: f64 = idx().map(|i| w[i]).sum();
    let tm = idx().map(|i| w[i] * t[i]).sum::<f64>() / sw;
    let ym = idx().map(|i| w[i] * y[i]).sum::<f64>() / sw;
    let stt: f64 = idx().map(|i| w[i] * (t[i] - tm).powi(2)).sum();
    if stt <= 0.0 {
        return None;
    }
    let sty: f64 = idx().map(|i| w[i] * (t[i] - tm) * (y[i] - ym)).sum();
    let slope = sty / stt;
    let intercept = ym - slope * tm;
    let ssr: f64 = idx()
        .map(|i| w[i] * (y[i] - intercept - slope * t[i]).powi(2))
        .sum();
    Some(Fit {
        slope,
        intercept,
        slope_var: ssr / (n - 2).max(1) as f64 / stt,
        rms: (ssr / sw).sqrt(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl FreqEstimator {
    /// An empty estimator.
    pub fn new(cfg: FreqConfig) -> Self {
        FreqEstimator {
            cfg,
            points: VecDeque::with_capacity(cfg.max_points + 1),
            estimate: None,
        }
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when no point is held.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The newest point.
    pub fn last(&self) -> Option<&FreqPoint> {
        self.points.back()
    }

    /// The current estimate, if the history allows one.
    pub fn estimate(&self) -> Option<FreqEstimate> {
        self.estimate
    }

    /// Forgets the history (e.g. after the raw clock itself was stepped).
    pub fn clear(&mut self) {
        self.points.clear();
        self.estimate = None;
    }

    /// Adds a point (points should come in time order), trims the history and refits.
    pub fn add(&mut self, p: FreqPoint) -> Option<FreqEstimate> {
        let weight_ok = p.weight > 0.0 && p.weight.is_finite();
        if !p.offset.is_finite() || !weight_ok {
            return self.estimate;
        }
        self.points.push_back(p);
        while self.points.len() > self.cfg.max_points.max(3) {
            self.points.pop_front();
        }
        while self.points.len() > 3 && secs_between(p.at, self.points[0].at) > self.cfg.max_span {
            self.points.pop_front();
        }
        self.estimate = self.refit();
        self.estimate
    }

    fn refit(&self) -> Option<FreqEstimate> {
        let newest = self.points.back()?.at;
        let oldest = self.points.iter().map(|p| p.at).min()?;
        if secs_between(newest, oldest) < self.cfg.min_span {
            return None;
        }
        let t: Vec<f64> = self
            .points
            .iter()
            .map(|p| secs_between(p.at, newest))
            .collect();
        let y: Vec<f64> = self.points.iter().map(|p| p.offset).collect();
        let w: Vec<f64> = self.points.iter().map(|p| p.weight).collect();
        let n = t.len();
        let mut mask = vec![true; n];
        let mut best = fit(&t, &y, &w, &mask)?;
        for _ in 0..4 {
            let resid: Vec<f64> = (0..n)
                .map(|i| (y[i] - best.intercept - best.slope * t[i]).abs())
                .collect();
            let used: Vec<f64> = (0..n).filter(|&i| mask[i]).map(|i| resid[i]).collect();
            let scale = 1.4826 * median(used);
            let limit = (self.cfg.outlier_sigmas * scale).max(1e-9);
            let next: Vec<bool> = resid.iter().map(|&r| r <= limit).collect();
            let kept = next.iter().filter(|&&k| k).count();
            // Outliers need a few points to stand out against, and never reject most of the
            // history: then the line itself has moved.
            if n < MIN_POINTS_FOR_REJECTION || next == mask || 2 * kept <= n {
                break;
            }
            match fit(&t, &y, &w, &next) {
                Some(f) => {
                    best = f;
                    mask = next;
                }
                None => break,
            }
        }
        let used = mask.iter().filter(|&&m| m).count();
        let freq = best.slope.clamp(-self.cfg.max_freq, self.cfg.max_freq);
        Some(FreqEstimate {
            freq,
            clamped: freq != best.slope,
            span: secs_between(newest, oldest),
            freq_stderr: best.slope_var.max(0.0).sqrt(),
            offset: best.intercept,
            at: newest,
            used,
            rejected: n - used,
            residual_rms: best.rms,
        })
    }
}

/// Steering settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SteerConfig {
    /// Errors above this (seconds) are stepped when the policy allows.
    pub step_threshold: f64,
    /// Time constant of the slew, seconds.
    pub slew_time: f64,
    /// Largest extra frequency used to slew (dimensionless).
    pub max_slew_rate: f64,
}

impl Default for SteerConfig {
    fn default() -> Self {
        SteerConfig {
            step_threshold: 0.128,
            slew_time: 16.0,
            max_slew_rate: 500e-6,
        }
    }
}

/// When [`steer`] may step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepPolicy {
    /// Only slew.
    Never,
    /// Step when the error exceeds the threshold.
    AboveThreshold,
    /// Step whatever the error (first synchronisation).
    Always,
}

/// What [`steer`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteerAction {
    /// Served time continues without a jump.
    Slew,
    /// Served time jumped to the target.
    Step,
}

/// A steering decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Steer {
    /// The correction to publish.
    pub correction: Correction,
    /// Slew or step.
    pub action: SteerAction,
    /// Target minus served offset at `now` before this update, seconds.
    pub error: f64,
    /// Target minus served offset at `now` after this update, seconds (0 after a step).
    pub remaining: f64,
}

/// Steers `current` toward serving `raw + target_offset` at raw time `now`, drifting at
/// `target_freq` (see the module documentation).
pub fn steer(
    current: &Correction,
    target_offset: f64,
    target_freq: f64,
    now: UnixNanos,
    policy: StepPolicy,
    cfg: &SteerConfig,
) -> Steer {
    let served_ns = current.cook(now).nanos_since(now);
    let error = target_offset - served_ns as f64 * 1e-9;
    let step = match policy {
        StepPolicy::Never => false,
        StepPolicy::AboveThreshold => error.abs() > cfg.step_threshold,
        StepPolicy::Always => true,
    };
    if step {
        return Steer {
            correction: Correction {
                at: now,
                offset_ns: (target_offset * 1e9).round() as i64,
                freq: target_freq,
            },
            action: SteerAction::Step,
            error,
            remaining: 0.0,
        };
    }
    let rate = (error / cfg.slew_time.max(1e-3)).clamp(-cfg.max_slew_rate, cfg.max_slew_rate);
    Steer {
        correction: Correction {
            at: now,
            offset_ns: served_ns,
            freq: target_freq + rate,
        },
        action: SteerAction::Slew,
        error,
        remaining: error,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Rng;
    use super::*;

    fn at(secs: f64) -> UnixNanos {
        UnixNanos(1_700_000_000_000_000_000 + (secs * 1e9) as i64)
    }

    #[test]
    fn recovers_a_known_drift_with_noise_and_outliers() {
        let mut rng = Rng::new(7);
        let mut est = FreqEstimator::new(FreqConfig::default());
        let mut last = None;
        for i in 0..40 {
            let t = i as f64 * 64.0;
            let mut offset = 0.2 + 25e-6 * t + rng.gauss(0.5e-3);
            if i % 13 == 5 {
                offset += 0.05; // an occasional wild point
            }
            last = est.add(FreqPoint {
                at: at(t),
                offset,
                weight: 1.0,
            });
        }
        let e = last.unwrap();
        assert!((e.freq - 25e-6).abs() < 0.5e-6, "freq {}", e.freq);
        assert!(e.freq_stderr < 0.5e-6 && e.freq_stderr > 0.0);
        assert!(e.rejected >= 2, "rejected {}", e.rejected);
        assert_eq!(e.used + e.rejected, 40);
        assert!((e.predict(at(39.0 * 64.0)) - (0.2 + 25e-6 * 39.0 * 64.0)).abs() < 1e-3);
    }

    #[test]
    fn exact_line_and_weights() {
        let mut est = FreqEstimator::new(FreqConfig::default());
        for i in 0..10 {
            let t = i as f64 * 10.0;
            est.add(FreqPoint {
                at: at(t),
                offset: -1e-5 * t,
                weight: 1.0 + i as f64,
            });
        }
        let e = est.estimate().unwrap();
        assert!((e.freq + 1e-5).abs() < 1e-12);
        assert!(e.freq_stderr < 1e-12);
        assert_eq!(e.rejected, 0);
    }

    #[test]
    fn needs_three_points_and_a_span() {
        let mut est = FreqEstimator::new(FreqConfig::default());
        for i in 0..2 {
            assert!(est
                .add(FreqPoint {
                    at: at(i as f64 * 10.0),
                    offset: 0.0,
                    weight: 1.0
                })
                .is_none());
        }
        assert!(est
            .add(FreqPoint {
                at: at(20.0),
                offset: 0.0,
                weight: 1.0
            })
            .is_some());
        let mut close = FreqEstimator::new(FreqConfig::default());
        for i in 0..5 {
            close.add(FreqPoint {
                at: at(i as f64 * 0.5),
                offset: 0.0,
                weight: 1.0,
            });
        }
        assert!(close.estimate().is_none());
    }

    #[test]
    fn history_is_bounded_and_clamped() {
        let cfg = FreqConfig {
            max_points: 8,
            max_span: 100.0,
            ..FreqConfig::default()
        };
        let mut est = FreqEstimator::new(cfg);
        for i in 0..50 {
            est.add(FreqPoint {
                at: at(i as f64 * 20.0),
                offset: 1e-3 * i as f64 * 20.0,
                weight: 1.0,
            });
        }
        assert!(est.len() <= 8);
        let e = est.estimate().unwrap();
        assert_eq!(e.freq, cfg.max_freq);
        assert!(e.clamped);
        assert!(e.span <= 100.0);
    }

    #[test]
    fn frequency_change_is_continuous() {
        let cur = Correction {
            at: at(0.0),
            offset_ns: 200_000_000,
            freq: 10e-6,
        };
        let now = at(100.0);
        let before = cur.cook(now);
        let s = steer(
            &cur,
            0.201,
            -30e-6,
            now,
            StepPolicy::AboveThreshold,
            &SteerConfig::default(),
        );
        assert_eq!(s.action, SteerAction::Slew);
        assert_eq!(s.correction.cook(now), before);
        assert!(s.error.abs() < 1e-9);
        assert!((s.correction.freq + 30e-6).abs() < 1e-9);
    }

    #[test]
    fn small_errors_slew_large_ones_step() {
        let cfg = SteerConfig::default();
        let cur = Correction::default();
        let now = at(0.0);
        // 1 ms: slewed at 1 ms / 16 s.
        let s = steer(&cur, 0.001, 0.0, now, StepPolicy::AboveThreshold, &cfg);
        assert_eq!(s.action, SteerAction::Slew);
        assert_eq!(s.correction.cook(now), now);
        assert!((s.correction.freq - 0.001 / 16.0).abs() < 1e-12);
        // 10 ms: the slew rate is bounded.
        let s = steer(&cur, 0.010, 0.0, now, StepPolicy::AboveThreshold, &cfg);
        assert!((s.correction.freq - 500e-6).abs() < 1e-12);
        // 200 ms: stepped.
        let s = steer(&cur, 0.2, 5e-6, now, StepPolicy::AboveThreshold, &cfg);
        assert_eq!(s.action, SteerAction::Step);
        assert_eq!(s.correction.cook(now), now.add_nanos(200_000_000));
        assert_eq!(s.remaining, 0.0);
        // ...unless stepping is forbidden.
        let s = steer(&cur, 0.2, 5e-6, now, StepPolicy::Never, &cfg);
        assert_eq!(s.action, SteerAction::Slew);
        assert_eq!(s.correction.cook(now), now);
    }

    #[test]
    fn repeated_slews_converge() {
        let cfg = SteerConfig::default();
        let mut cur = Correction::default();
        let target = 0.005; // 5 ms, constant
        let mut t = 0.0;
        while t < 200.0 {
            cur = steer(&cur, target, 0.0, at(t), StepPolicy::Never, &cfg).correction;
            t += 1.0;
        }
        let served = cur.cook(at(t)).nanos_since(at(t)) as f64 * 1e-9;
        assert!((served - target).abs() < 1e-5, "served {served}");
    }
}
