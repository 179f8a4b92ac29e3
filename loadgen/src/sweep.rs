//! Rate sweep, as ntpperf does it: raise the offered rate step by step until the server loses
//! more than a threshold; the answer is the highest rate sustained below it.

use serde::Serialize;

use crate::stats::{RunReport, Stats};

/// Growth factor between steps when no explicit list is given.
pub const STEP_FACTOR: f64 = 1.5;
/// A step whose generator skipped more than this fraction of its schedule reached the
/// generator's limit, not the server's: the sweep stops there (the step still counts, at the
/// rate actually sent).
pub const MAX_MISSED_FRACTION: f64 = 0.05;

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

/// The verdict on one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The server sustained the rate this step actually sent.
    pub sustained: bool,
    /// Why to stop here (`None`: try the next rate).
    pub stop: Option<Stop>,
}

pub fn verdict(s: &Stats, max_loss: f64) -> Verdict {
    let fail = |stop| Verdict {
        sustained: false,
        stop: Some(stop),
    };
    if s.invalid_total() > 0 {
        return fail(Stop::Invalid);
    }
    if s.sent == 0 || s.loss() >= max_loss {
        return fail(Stop::Loss);
    }
    let scheduled = s.sent + s.missed_sends + s.send_errors;
    let generator_limited =
        (s.missed_sends + s.send_errors) as f64 / scheduled as f64 > MAX_MISSED_FRACTION;
    Verdict {
        sustained: true,
        stop: generator_limited.then_some(Stop::GeneratorLimited),
    }
}

/// The sweep of one target.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub target: String,
    pub addr: String,
    pub loss_threshold: f64,
    /// Highest offered rate sustained with loss below the threshold (None: not even the first).
    pub max_sustained_rate: Option<f64>,
    /// Requests actually sent per second at that step (lower than offered when the generator
    /// skipped slots).
    pub max_sustained_sent_rate: Option<f64>,
    /// Valid replies per second at that step.
    pub max_sustained_valid_rate: Option<f64>,
    pub stop: Stop,
    pub steps: Vec<RunReport>,
}

impl SweepReport {
    /// One line per target, like ntpperf's summary.
    pub fn line(&self) -> String {
        let rate = match (self.max_sustained_rate, self.max_sustained_sent_rate) {
            (Some(r), Some(sent)) => format!("{r:.0} req/s offered, {sent:.0} req/s sent"),
            _ => "none".to_string(),
        };
        let why = match self.stop {
            Stop::Loss => "loss above threshold at the next step",
            Stop::Invalid => "invalid replies",
            Stop::GeneratorLimited => {
                "the generator could not keep its schedule (its limit, not the server's)"
            }
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
        let go = Verdict {
            sustained: true,
            stop: None,
        };
        let mut s = Stats {
            sent: 100_000,
            ..Stats::default()
        };
        assert_eq!(verdict(&s, 0.001), go);
        s.lost = 99;
        assert_eq!(verdict(&s, 0.001), go);
        s.lost = 100;
        assert_eq!(
            verdict(&s, 0.001),
            Verdict {
                sustained: false,
                stop: Some(Stop::Loss)
            }
        );
        s.lost = 0;
        s.missed_sends = 4000;
        assert_eq!(verdict(&s, 0.001), go);
        s.missed_sends = 6000;
        assert_eq!(
            verdict(&s, 0.001),
            Verdict {
                sustained: true,
                stop: Some(Stop::GeneratorLimited)
            }
        );
        s.count_invalid("short", None);
        assert!(!verdict(&s, 0.001).sustained);
        assert_eq!(verdict(&s, 0.001).stop, Some(Stop::Invalid));
        assert!(!verdict(&Stats::default(), 0.001).sustained);
    }
}
