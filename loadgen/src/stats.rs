//! Counters and histograms of one run, mergeable across threads, and their JSON form.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest value a latency histogram holds: 60 s in ns (larger values saturate).
pub const HIST_MAX_NS: u64 = 60_000_000_000;
/// Significant digits of the histograms.
pub const HIST_SIGFIG: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, HIST_SIGFIG).expect("valid histogram bounds")
}

/// Everything counted about the measured requests of one run (or one thread of it).
#[derive(Clone, Debug)]
pub struct Stats {
    /// Requests sent after the warm-up.
    pub sent: u64,
    /// Requests sent during the warm-up (not otherwise counted).
    pub warmup_sent: u64,
    /// Replies received (any kind, matched or not, after the warm-up).
    pub received: u64,
    pub valid: u64,
    /// Invalid replies by reason (`check_reply` names plus `offset`).
    pub invalid: BTreeMap<&'static str, u64>,
    /// Kiss-o'-death replies by code (also counted as invalid `kod`).
    pub kod: BTreeMap<String, u64>,
    /// Requests without a reply within the timeout.
    pub lost: u64,
    /// Replies after the timeout (their request is counted lost).
    pub late: u64,
    /// Second and later replies to one request.
    pub duplicate: u64,
    /// Open loop: schedule slots skipped because the sender was late.
    pub missed_sends: u64,
    /// Sends the kernel refused (buffer full, ...).
    pub send_errors: u64,
    /// Receive errors (ICMP unreachable, ...).
    pub recv_errors: u64,
    /// Open loop: worst and mean lateness of a sent slot (ns).
    pub max_lag_ns: u64,
    pub lag_sum_ns: u128,
    pub lag_count: u64,
    /// Replies with a kernel receive timestamp (the rest use a user-space clock read).
    pub kernel_rx_stamps: u64,
    /// Requests and valid replies by mode, basic or interleaved.
    pub modes: Modes,
    /// Interleaved requests were sent (`--interleaved`).
    pub interleaved: bool,
    /// Round-trip time (ns): our receive − our send.
    pub rtt: Histogram<u64>,
    /// Server residence time (ns): its transmit − its receive; for an interleaved reply the
    /// true transmit time of the earlier reply it carries − that reply's receive time.
    pub residence: Histogram<u64>,
    /// Clock offset of the server (ns): min, max, sum over valid replies.
    pub offset_min_ns: i64,
    pub offset_max_ns: i64,
    pub offset_sum_ns: i128,
    /// The transport that carried the packets.
    pub transport: &'static str,
    /// The addresses the clients sent from.
    pub sources: Option<Sources>,
}

/// The measured requests and valid replies by mode: basic, or interleaved (RFC 9769). The
/// same fields count in [`Stats`] and appear in the JSON report ([`RunReport`]).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Modes {
    /// Requests sent in interleaved form (origin = the client's last reply's receive
    /// timestamp); the rest were basic.
    pub interleaved_requests: u64,
    /// Valid replies to interleaved requests, in either mode.
    pub interleaved_requests_answered: u64,
    /// Valid replies in basic mode (origin = the request's transmit timestamp).
    pub basic_replies: u64,
    /// Valid replies in interleaved mode (origin = the request's receive field).
    pub interleaved_replies: u64,
}

impl Modes {
    /// Counts one valid reply: to an interleaved request or not, in interleaved mode or not.
    pub fn count_reply(&mut self, to_interleaved_request: bool, interleaved_reply: bool) {
        self.interleaved_requests_answered += u64::from(to_interleaved_request);
        if interleaved_reply {
            self.interleaved_replies += 1;
        } else {
            self.basic_replies += 1;
        }
    }

    pub fn merge(&mut self, o: &Modes) {
        self.interleaved_requests += o.interleaved_requests;
        self.interleaved_requests_answered += o.interleaved_requests_answered;
        self.basic_replies += o.basic_replies;
        self.interleaved_replies += o.interleaved_replies;
    }

    /// The share of interleaved replies among the valid replies to interleaved requests (0
    /// when there were none).
    pub fn interleaved_fraction(&self) -> f64 {
        fraction(self.interleaved_replies, self.interleaved_requests_answered)
    }

    /// The share of interleaved replies among all valid replies (0 when there were none).
    pub fn interleaved_fraction_of_valid(&self) -> f64 {
        fraction(
            self.interleaved_replies,
            self.basic_replies + self.interleaved_replies,
        )
    }
}

/// `part / whole`, 0 when `whole` is 0.
fn fraction(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The source addresses of a run's clients.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Sources {
    /// The lowest address.
    pub first: IpAddr,
    /// The highest address.
    pub last: IpAddr,
    /// Distinct addresses.
    pub count: usize,
}

impl Sources {
    pub fn of(ips: &[IpAddr]) -> Option<Sources> {
        let set: BTreeSet<IpAddr> = ips.iter().copied().collect();
        Some(Sources {
            first: *set.first()?,
            last: *set.last()?,
            count: set.len(),
        })
    }

    /// `over 127.0.0.1–127.0.0.64`, `over 300 addresses 127.0.0.1–127.0.0.255`, or `from
    /// 10.0.0.2` (one address).
    pub fn describe(&self, clients: usize) -> String {
        if self.count <= 1 {
            format!("from {}", self.first)
        } else if self.count == clients {
            format!("over {}–{}", self.first, self.last)
        } else {
            format!("over {} addresses {}–{}", self.count, self.first, self.last)
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sent: 0,
            warmup_sent: 0,
            received: 0,
            valid: 0,
            invalid: BTreeMap::new(),
            kod: BTreeMap::new(),
            lost: 0,
            late: 0,
            duplicate: 0,
            missed_sends: 0,
            send_errors: 0,
            recv_errors: 0,
            max_lag_ns: 0,
            lag_sum_ns: 0,
            lag_count: 0,
            kernel_rx_stamps: 0,
            modes: Modes::default(),
            interleaved: false,
            rtt: new_histogram(),
            residence: new_histogram(),
            offset_min_ns: i64::MAX,
            offset_max_ns: i64::MIN,
            offset_sum_ns: 0,
            transport: "",
            sources: None,
        }
    }
}

impl Stats {
    pub fn invalid_total(&self) -> u64 {
        self.invalid.values().sum()
    }

    pub fn count_invalid(&mut self, reason: &'static str, kiss: Option<[u8; 4]>) {
        *self.invalid.entry(reason).or_default() += 1;
        if let Some(code) = kiss {
            *self.kod.entry(kiss_text(code)).or_default() += 1;
        }
    }

    pub fn record_valid(&mut self, rtt_ns: i64, residence_ns: i64, offset_ns: i64) {
        self.valid += 1;
        self.rtt.saturating_record(rtt_ns.max(0) as u64);
        self.residence.saturating_record(residence_ns.max(0) as u64);
        self.offset_min_ns = self.offset_min_ns.min(offset_ns);
        self.offset_max_ns = self.offset_max_ns.max(offset_ns);
        self.offset_sum_ns += offset_ns as i128;
    }

    /// Lost fraction of the measured requests (0 when none were sent).
    pub fn loss(&self) -> f64 {
        fraction(self.lost, self.sent)
    }

    pub fn merge(&mut self, o: &Stats) {
        self.sent += o.sent;
        self.warmup_sent += o.warmup_sent;
        self.received += o.received;
        self.valid += o.valid;
        for (k, v) in &o.invalid {
            *self.invalid.entry(k).or_default() += v;
        }
        for (k, v) in &o.kod {
            *self.kod.entry(k.clone()).or_default() += v;
        }
        self.lost += o.lost;
        self.late += o.late;
        self.duplicate += o.duplicate;
        self.missed_sends += o.missed_sends;
        self.send_errors += o.send_errors;
        self.recv_errors += o.recv_errors;
        self.max_lag_ns = self.max_lag_ns.max(o.max_lag_ns);
        self.lag_sum_ns += o.lag_sum_ns;
        self.lag_count += o.lag_count;
        self.kernel_rx_stamps += o.kernel_rx_stamps;
        self.modes.merge(&o.modes);
        self.interleaved |= o.interleaved;
        self.rtt.add(&o.rtt).expect("same histogram shape");
        self.residence
            .add(&o.residence)
            .expect("same histogram shape");
        self.offset_min_ns = self.offset_min_ns.min(o.offset_min_ns);
        self.offset_max_ns = self.offset_max_ns.max(o.offset_max_ns);
        self.offset_sum_ns += o.offset_sum_ns;
        if self.transport.is_empty() {
            self.transport = o.transport;
        }
        if self.sources.is_none() {
            self.sources = o.sources.clone();
        }
    }
}

/// A kiss code as text (`RATE`), non-printable bytes escaped (meridian's own rendering).
pub use meridian::proto::client::code_text as kiss_text;

/// The percentiles every report shows.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

/// A latency distribution's summary in ns.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    #[serde(rename = "p99.9")]
    pub p99_9: u64,
    #[serde(rename = "p99.99")]
    pub p99_99: u64,
    pub max: u64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary {
                count: 0,
                min: 0,
                mean: 0.0,
                stdev: 0.0,
                p50: 0,
                p90: 0,
                p99: 0,
                p99_9: 0,
                p99_99: 0,
                max: 0,
            };
        }
        let p = |q: f64| h.value_at_percentile(q);
        Summary {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            stdev: h.stdev(),
            p50: p(50.0),
            p90: p(90.0),
            p99: p(99.0),
            p99_9: p(99.9),
            p99_99: p(99.99),
            max: h.max(),
        }
    }

    /// The values in [`PERCENTILES`] order followed by the max.
    pub fn row(&self) -> [u64; 6] {
        [
            self.p50,
            self.p90,
            self.p99,
            self.p99_9,
            self.p99_99,
            self.max,
        ]
    }
}

/// The JSON figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub target: String,
    pub addr: String,
    /// `open` or `closed`.
    pub mode: &'static str,
    /// Offered rate (open loop), requests per second; 0 in closed loop.
    pub offered_rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub threads: usize,
    pub clients: usize,
    /// The addresses the clients sent from.
    pub sources: Option<Sources>,
    pub transport: &'static str,
    /// Measured requests sent per second.
    pub sent_rate: f64,
    /// Valid replies per second.
    pub valid_rate: f64,
    pub sent: u64,
    pub warmup_sent: u64,
    pub received: u64,
    pub valid: u64,
    pub invalid: u64,
    pub invalid_by_reason: BTreeMap<&'static str, u64>,
    pub kod_by_code: BTreeMap<String, u64>,
    pub lost: u64,
    pub loss_fraction: f64,
    pub late: u64,
    pub duplicate: u64,
    pub missed_sends: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    pub max_lag_ns: u64,
    pub mean_lag_ns: f64,
    pub kernel_rx_stamps: u64,
    /// Interleaved requests were sent (`--interleaved`).
    pub interleaved: bool,
    #[serde(flatten)]
    pub modes: Modes,
    /// [`Modes::interleaved_fraction`]: interleaved replies / valid replies to interleaved
    /// requests.
    pub interleaved_fraction: f64,
    /// [`Modes::interleaved_fraction_of_valid`]: interleaved replies / valid replies.
    pub interleaved_fraction_of_valid: f64,
    pub offset_ns: Option<OffsetReport>,
    pub rtt_ns: Summary,
    pub residence_ns: Summary,
    /// The run passed (no invalid reply, loss within `--max-loss`).
    pub pass: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct OffsetReport {
    pub min: i64,
    pub mean: f64,
    pub max: i64,
}

impl RunReport {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        target: &str,
        addr: std::net::SocketAddr,
        offered_rate: f64,
        duration_s: f64,
        warmup_s: f64,
        threads: usize,
        clients: usize,
        s: &Stats,
        max_loss: f64,
    ) -> RunReport {
        let invalid = s.invalid_total();
        RunReport {
            target: target.to_string(),
            addr: addr.to_string(),
            mode: if offered_rate > 0.0 { "open" } else { "closed" },
            offered_rate,
            duration_s,
            warmup_s,
            threads,
            clients,
            sources: s.sources.clone(),
            transport: s.transport,
            sent_rate: s.sent as f64 / duration_s,
            valid_rate: s.valid as f64 / duration_s,
            sent: s.sent,
            warmup_sent: s.warmup_sent,
            received: s.received,
            valid: s.valid,
            invalid,
            invalid_by_reason: s.invalid.clone(),
            kod_by_code: s.kod.clone(),
            lost: s.lost,
            loss_fraction: s.loss(),
            late: s.late,
            duplicate: s.duplicate,
            missed_sends: s.missed_sends,
            send_errors: s.send_errors,
            recv_errors: s.recv_errors,
            max_lag_ns: s.max_lag_ns,
            mean_lag_ns: if s.lag_count == 0 {
                0.0
            } else {
                s.lag_sum_ns as f64 / s.lag_count as f64
            },
            kernel_rx_stamps: s.kernel_rx_stamps,
            interleaved: s.interleaved,
            modes: s.modes,
            interleaved_fraction: s.modes.interleaved_fraction(),
            interleaved_fraction_of_valid: s.modes.interleaved_fraction_of_valid(),
            offset_ns: (s.valid > 0).then(|| OffsetReport {
                min: s.offset_min_ns,
                mean: s.offset_sum_ns as f64 / s.valid as f64,
                max: s.offset_max_ns,
            }),
            rtt_ns: Summary::of(&s.rtt),
            residence_ns: Summary::of(&s.residence),
            pass: invalid == 0 && s.loss() <= max_loss,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats {
            sent: 10,
            ..Stats::default()
        };
        a.record_valid(1000, 10, -5);
        a.count_invalid("kod", Some(*b"RATE"));
        let mut b = Stats {
            sent: 5,
            lost: 1,
            ..Stats::default()
        };
        b.record_valid(3000, 30, 7);
        b.count_invalid("kod", Some(*b"RATE"));
        b.count_invalid("short", None);
        a.merge(&b);
        assert_eq!(a.sent, 15);
        assert_eq!(a.valid, 2);
        assert_eq!(a.invalid_total(), 3);
        assert_eq!(a.invalid["kod"], 2);
        assert_eq!(a.kod["RATE"], 2);
        assert_eq!(a.rtt.len(), 2);
        assert_eq!((a.offset_min_ns, a.offset_max_ns), (-5, 7));
        assert!((a.loss() - 1.0 / 15.0).abs() < 1e-12);
    }

    #[test]
    fn sources_are_described() {
        let ips: Vec<IpAddr> = ["127.0.0.2", "127.0.0.1", "127.0.0.3", "127.0.0.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let s = Sources::of(&ips).unwrap();
        assert_eq!(s.count, 3);
        assert_eq!(s.describe(3), "over 127.0.0.1–127.0.0.3");
        assert_eq!(s.describe(4), "over 3 addresses 127.0.0.1–127.0.0.3");
        let one = Sources::of(&ips[..1]).unwrap();
        assert_eq!(one.describe(64), "from 127.0.0.2");
        assert_eq!(Sources::of(&[]), None);
    }

    #[test]
    fn kiss_text_escapes() {
        assert_eq!(kiss_text(*b"RATE"), "RATE");
        assert_eq!(kiss_text([b'X', 1, 0, 0]), "X\\x01");
    }

    #[test]
    fn summary_of_empty_and_full() {
        assert_eq!(Summary::of(&new_histogram()).count, 0);
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1000).unwrap();
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 10_000);
        assert!((s.p50 as f64 - 5e6).abs() / 5e6 < 0.002, "{}", s.p50);
        assert!(s.p99 <= s.p99_9 && s.p99_9 <= s.p99_99 && s.p99_99 <= s.max);
    }
}
