//! Rate sweep, as ntpperf does it: raise the offered rate step by step until the server loses
//! more than a threshold; the answer is the highest rate sustained below it.

use serde::Serialize;

use crate::stats::{RunReport, Stats};

/// Growth factor between steps when no explicit list is given.
pub const STEP_FACTOR: f64 = 1.5;
/// A step whose generator skipped more than this fraction of its schedule measured the
/// generator, not the server.
pub const MAX_MISSED_FRACTION: f64 = 0.01;

/// The offered rates to try: the explicit list, or `start × 1.5^k`, at most `steps` of them.
pub fn rates(start: f64, explicit: &[f64], steps: usize) -> Vec<f64> {
    if !explicit.is_empty() {
        return explicit.iter().copied().take(steps).collect();
    }
    let mut out = Vec::with_capacity(steps);
    let mut r = start;
    for _ in 0..steps {
        out.push(r.round().max(1.0));
        r *= STEP_FACTOR;
    }
    out
}

/// Why a sweep stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Loss exceeded the threshold (the normal end).
    Loss,
    /// The server sent invalid replies.
    Invalid,
    /// The generator could not keep its schedule.
    GeneratorLimited,
    /// Every step passed.
    Exhausted,
}

/// The verdict on one step: `None` to go on, or why to stop.
pub fn verdict(s: &Stats, max_loss: f64) -> Option<Stop> {
    if s.invalid_total() > 0 {
        return Some(Stop::Invalid);
    }
    if s.loss() >= max_loss {
        return Some(Stop::Loss);
    }
    let scheduled = s.sent + s.missed_sends + s.send_errors;
    if scheduled > 0
        && (s.missed_sends + s.send_errors) as f64 / scheduled as f64 > MAX_MISSED_FRACTION
    {
        return Some(Stop::GeneratorLimited);
    }
    None
}

/// The sweep of one target.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub target: String,
    pub addr: String,
    pub loss_threshold: f64,
    /// Highest offered rate sustained with loss below the threshold (None: not even the first).
    pub max_sustained_rate: Option<f64>,
    /// Valid replies per second at that step.
    pub max_sustained_valid_rate: Option<f64>,
    pub stop: Stop,
    pub steps: Vec<RunReport>,
}

impl SweepReport {
    /// One line per target, like ntpperf's summary.
    pub fn line(&self) -> String {
        let rate = match self.max_sustained_rate {
            Some(r) => format!("{r:.0} req/s"),
            None => "none".to_string(),
        };
        let why = match self.stop {
            Stop::Loss => "loss above threshold at the next step",
            Stop::Invalid => "invalid replies",
            Stop::GeneratorLimited => "generator could not keep its schedule",
            Stop::Exhausted => "all steps passed",
        };
        format!(
            "sweep {} ({}): max rate with < {:.2}% loss: {rate} ({} steps, stopped: {why})",
            self.target,
            self.addr,
            self.loss_threshold * 100.0,
            self.steps.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometric_and_explicit_rates() {
        assert_eq!(rates(1000.0, &[], 4), vec![1000.0, 1500.0, 2250.0, 3375.0]);
        assert_eq!(rates(1000.0, &[5.0, 7.0, 9.0], 2), vec![5.0, 7.0]);
        assert_eq!(rates(0.2, &[], 1), vec![1.0]);
    }

    #[test]
    fn verdicts() {
        let mut s = Stats {
            sent: 100_000,
            ..Stats::default()
        };
        assert_eq!(verdict(&s, 0.001), None);
        s.lost = 99;
        assert_eq!(verdict(&s, 0.001), None);
        s.lost = 100;
        assert_eq!(verdict(&s, 0.001), Some(Stop::Loss));
        s.lost = 0;
        s.missed_sends = 2000;
        assert_eq!(verdict(&s, 0.001), Some(Stop::GeneratorLimited));
        s.count_invalid("short", None);
        assert_eq!(verdict(&s, 0.001), Some(Stop::Invalid));
    }
}
