//! Human and machine output: progress lines, the summary table, and HdrHistogram's percentile
//! distribution text format (`.hgrm`).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::stats::{RunReport, Summary, PERCENTILES};

/// Java HdrHistogram's default for `outputPercentileDistribution`.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Formats `h` as HdrHistogram's `outputPercentileDistribution` does (the text the
/// HdrHistogram plotter reads): a header, one line per percentile step with Value, Percentile,
/// TotalCount and 1/(1-Percentile), the last (100 %) line without the last column, then the
/// Mean/StdDeviation, Max/Total count and Buckets/SubBuckets footer. Values are divided by
/// `scale` (1000 turns recorded ns into µs).
pub fn hgrm(h: &Histogram<u64>, scale: f64) -> String {
    let digits = h.sigfig() as usize;
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / scale;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {q:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / scale,
            h.stdev() / scale,
            h.highest_equivalent(h.max()) as f64 / scale,
        )
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count for a precision: the power of two holding 2 × 10^sigfig.
pub fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(sigfig as u32);
    largest.next_power_of_two()
}

/// One row of an `.hgrm` file: (value, percentile, total count).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HgrmRow {
    pub value: f64,
    pub quantile: f64,
    pub total: u64,
}

/// Reads the percentile rows back from an `.hgrm` text.
#[cfg(test)]
pub fn parse_hgrm(text: &str) -> Vec<HgrmRow> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 3 {
                return None;
            }
            Some(HgrmRow {
                value: f[0].parse().ok()?,
                quantile: f[1].parse().ok()?,
                total: f[2].parse().ok()?,
            })
        })
        .collect()
}

/// A duration in ns for people: `850ns`, `45.1µs`, `1.23ms`, `2.50s`.
pub fn fmt_ns(ns: f64) -> String {
    let a = ns.abs();
    if a < 1e3 {
        format!("{ns:.0}ns")
    } else if a < 1e6 {
        format!("{:.1}µs", ns / 1e3)
    } else if a < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// A rate for people: `950/s`, `20.0k/s`, `1.25M/s`.
pub fn fmt_rate(r: f64) -> String {
    if r < 1e4 {
        format!("{r:.0}/s")
    } else if r < 1e6 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{:.2}M/s", r / 1e6)
    }
}

/// When a progress line is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// `n` whole seconds into the run (the warm-up included).
    Second { n: u64, warmup: bool },
    /// After the last reply or timeout: the rest.
    End,
}

/// What a progress line counts: the measured requests since the previous line.
pub struct Counts<'a> {
    pub sent: u64,
    pub valid: u64,
    pub invalid: u64,
    pub lost: u64,
    pub missed: u64,
    pub rtt: &'a Histogram<u64>,
}

/// A progress line: `[NAME   3s] sent 20000 valid 19998 invalid 0 lost 2 (0.010%) missed 0
/// rtt p50 21.9µs p99 411.4µs`, the counts since the previous line; the last line says `end`
/// instead of the second. The lines of a run add up to its summary's counts.
pub fn progress_line(target: &str, tick: Tick, c: &Counts<'_>) -> String {
    let loss = if c.sent == 0 {
        0.0
    } else {
        100.0 * c.lost as f64 / c.sent as f64
    };
    let (p50, p99) = if c.rtt.is_empty() {
        ("-".to_string(), "-".to_string())
    } else {
        (
            fmt_ns(c.rtt.value_at_percentile(50.0) as f64),
            fmt_ns(c.rtt.value_at_percentile(99.0) as f64),
        )
    };
    let when = match tick {
        Tick::Second { n, warmup: false } => format!("{n:>3}s"),
        Tick::Second { n, warmup: true } => format!("{n:>3}s warm-up"),
        Tick::End => "end".to_string(),
    };
    format!(
        "[{target} {when}] sent {} valid {} invalid {} lost {} ({loss:.3}%) missed {} rtt p50 {p50} p99 {p99}",
        c.sent, c.valid, c.invalid, c.lost, c.missed,
    )
}

/// The end-of-run summary: counts, then a table of percentiles for both distributions.
pub fn summary_table(r: &RunReport) -> String {
    let mut s = String::new();
    let mode = if r.mode == "open" {
        format!("open loop at {}", fmt_rate(r.offered_rate))
    } else {
        "closed loop".to_string()
    };
    let _ = writeln!(
        s,
        "== {} ({}): {mode}, {:.1} s measured, {} thread(s)",
        r.target, r.addr, r.duration_s, r.threads
    );
    let _ = match &r.sources {
        Some(src) if src.count <= 1 && r.clients > 1 => writeln!(
            s,
            "   clients: {} {} (one source address: a server steering by address gives them \
             one worker; --source-cidr spreads them)",
            r.clients,
            src.describe(r.clients)
        ),
        Some(src) => writeln!(s, "   clients: {} {}", r.clients, src.describe(r.clients)),
        None => writeln!(s, "   clients: {}", r.clients),
    };
    let _ = writeln!(
        s,
        "   sent {} ({})  received {}  valid {} ({})  invalid {}  lost {} ({:.3}%)  late {}  duplicate {}",
        r.sent,
        fmt_rate(r.sent_rate),
        r.received,
        r.valid,
        fmt_rate(r.valid_rate),
        r.invalid,
        r.lost,
        100.0 * r.loss_fraction,
        r.late,
        r.duplicate
    );
    if r.invalid > 0 {
        let reasons: Vec<String> = r
            .invalid_by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(s, "   invalid by reason: {}", reasons.join(", "));
    }
    if !r.kod_by_code.is_empty() {
        let codes: Vec<String> = r
            .kod_by_code
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(s, "   kiss-o'-death by code: {}", codes.join(", "));
    }
    if r.interleaved {
        let m = &r.modes;
        let _ = writeln!(
            s,
            "   interleaved: {} requests, {} answered: {} interleaved ({:.1}%), {} basic; \
             {} of {} valid replies interleaved ({:.1}%)",
            m.interleaved_requests,
            m.interleaved_requests_answered,
            m.interleaved_replies,
            100.0 * r.interleaved_fraction,
            m.interleaved_requests_answered - m.interleaved_replies,
            m.interleaved_replies,
            r.valid,
            100.0 * r.interleaved_fraction_of_valid
        );
        if let Some(src) = r.sources.as_ref().filter(|src| src.count < r.clients) {
            let _ = writeln!(
                s,
                "   (the {} clients share {} source address(es): a server keeping interleaved \
                 state per address, as meridian does, interleaves one client per address)",
                r.clients, src.count
            );
        }
    }
    let _ = writeln!(
        s,
        "   pacing: missed sends {}  max lag {}  mean lag {}  send errors {}  receive errors {}",
        r.missed_sends,
        fmt_ns(r.max_lag_ns as f64),
        fmt_ns(r.mean_lag_ns),
        r.send_errors,
        r.recv_errors
    );
    if let Some(o) = &r.offset_ns {
        let _ = writeln!(
            s,
            "   server offset: min {}  mean {}  max {}",
            fmt_ns(o.min as f64),
            fmt_ns(o.mean),
            fmt_ns(o.max as f64)
        );
    }
    let _ = write!(s, "   {:<14}", "(µs)");
    for (name, _) in PERCENTILES {
        let _ = write!(s, "{name:>11}");
    }
    let _ = writeln!(s, "{:>11}{:>11}", "max", "count");
    for (label, sum) in [("round trip", &r.rtt_ns), ("residence", &r.residence_ns)] {
        let _ = writeln!(s, "   {}", table_row(label, sum));
    }
    let _ = writeln!(s, "   result: {}", if r.pass { "PASS" } else { "FAIL" });
    s
}

fn table_row(label: &str, sum: &Summary) -> String {
    let mut s = format!("{label:<14}");
    for v in sum.row() {
        let _ = write!(s, "{:>11.3}", v as f64 / 1e3);
    }
    let _ = write!(s, "{:>11}", sum.count);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn hgrm_matches_the_java_layout() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1000).unwrap(); // 1 µs .. 10 ms, uniform
        }
        let text = hgrm(&h, 1000.0);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        let first = lines.next().unwrap();
        assert_eq!(
            first,
            "       1.000 0.000000000000          1           1.00"
        );
        let rows = parse_hgrm(&text);
        assert!(rows.len() > 50, "{}", rows.len());
        // Monotonic, ending at percentile 1 with the total count and no 4th column.
        for w in rows.windows(2) {
            assert!(w[0].value <= w[1].value);
            assert!(w[0].quantile <= w[1].quantile);
            assert!(w[0].total <= w[1].total);
        }
        let last = rows.last().unwrap();
        assert_eq!(last.quantile, 1.0);
        assert_eq!(last.total, 10_000);
        assert!((last.value - 10_000.0).abs() / 10_000.0 < 0.001);
        let last_line = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert_eq!(last_line.split_whitespace().count(), 3);
        // The median row is near 5 ms.
        let median = rows.iter().find(|r| r.quantile >= 0.5).unwrap();
        assert!((median.value - 5000.0).abs() < 10.0, "{median:?}");
        // Footer.
        let footer: Vec<&str> = text.lines().filter(|l| l.starts_with("#[")).collect();
        assert_eq!(footer.len(), 3);
        assert!(
            footer[0].starts_with("#[Mean    =     5000."),
            "{}",
            footer[0]
        );
        assert!(footer[0].contains(", StdDeviation   = "));
        assert!(footer[1].starts_with("#[Max     =    10"), "{}", footer[1]);
        assert!(footer[1].ends_with("Total count    =        10000]"));
        assert!(footer[2].ends_with("SubBuckets     =         2048]"));
    }

    #[test]
    fn hgrm_line_format_is_fixed_width() {
        let mut h = new_histogram();
        h.record(1500).unwrap();
        h.record(2500).unwrap();
        let text = hgrm(&h, 1000.0);
        let rows: Vec<&str> = text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#'))
            .collect();
        // "%12.3f %2.12f %10d %14.2f": 12 + 1 + 14 + 1 + 10 + 1 + 14 characters.
        assert_eq!(rows[0].len(), 53, "{:?}", rows[0]);
        assert_eq!(rows.last().unwrap().len(), 38);
    }

    #[test]
    fn empty_histogram_has_header_and_footer() {
        let text = hgrm(&new_histogram(), 1000.0);
        assert!(parse_hgrm(&text).is_empty());
        assert!(text.contains("Total count    =            0]"));
    }

    #[test]
    fn summary_names_the_clients_source_addresses() {
        let mut stats = crate::stats::Stats::default();
        let ips: Vec<std::net::IpAddr> = (1..=8)
            .map(|i| format!("127.0.0.{i}").parse().unwrap())
            .collect();
        stats.sources = crate::stats::Sources::of(&ips);
        let report = |stats: &crate::stats::Stats, clients| {
            let addr = "127.0.0.1:123".parse().unwrap();
            RunReport::new("t", addr, 100.0, 1.0, 0.0, 1, clients, stats, 0.01)
        };
        let text = summary_table(&report(&stats, 8));
        assert!(
            text.contains("\n   clients: 8 over 127.0.0.1–127.0.0.8\n"),
            "{text}"
        );
        stats.sources = crate::stats::Sources::of(&ips[..1]);
        let text = summary_table(&report(&stats, 8));
        assert!(
            text.contains("   clients: 8 from 127.0.0.1 (one source address"),
            "{text}"
        );
    }

    #[test]
    fn summary_gives_the_interleaved_share() {
        let mut stats = crate::stats::Stats::default();
        let ips: Vec<std::net::IpAddr> = (1..=4)
            .map(|i| format!("127.0.0.{i}").parse().unwrap())
            .collect();
        stats.sources = crate::stats::Sources::of(&ips);
        stats.valid = 40;
        let addr = "127.0.0.1:123".parse().unwrap();
        let report = |s: &crate::stats::Stats, clients| {
            RunReport::new("t", addr, 100.0, 1.0, 0.0, 1, clients, s, 0.01)
        };
        // Without --interleaved: no line.
        assert!(!summary_table(&report(&stats, 4)).contains("interleaved"));
        stats.interleaved = true;
        stats.modes = crate::stats::Modes {
            interleaved_requests: 36,
            interleaved_requests_answered: 36,
            basic_replies: 8,
            interleaved_replies: 32,
        };
        let text = summary_table(&report(&stats, 4));
        assert!(
            text.contains(
                "\n   interleaved: 36 requests, 36 answered: 32 interleaved (88.9%), 4 basic; \
                 32 of 40 valid replies interleaved (80.0%)\n"
            ),
            "{text}"
        );
        assert!(!text.contains("share"), "{text}");
        // Eight clients over four addresses: said.
        let text = summary_table(&report(&stats, 8));
        assert!(
            text.contains("the 8 clients share 4 source address(es)"),
            "{text}"
        );
    }

    #[test]
    fn progress_lines_give_counts() {
        let mut rtt = new_histogram();
        rtt.record(21_900).unwrap();
        let c = Counts {
            sent: 20_000,
            valid: 19_998,
            invalid: 0,
            lost: 2,
            missed: 5,
            rtt: &rtt,
        };
        let tick = Tick::Second {
            n: 3,
            warmup: false,
        };
        assert_eq!(
            progress_line("m", tick, &c),
            "[m   3s] sent 20000 valid 19998 invalid 0 lost 2 (0.010%) missed 5 rtt p50 21.9µs p99 21.9µs"
        );
        let empty = new_histogram();
        let c = Counts {
            sent: 0,
            valid: 0,
            invalid: 0,
            lost: 0,
            missed: 0,
            rtt: &empty,
        };
        assert_eq!(
            progress_line("m", Tick::End, &c),
            "[m end] sent 0 valid 0 invalid 0 lost 0 (0.000%) missed 0 rtt p50 - p99 -"
        );
        let warm = Tick::Second { n: 1, warmup: true };
        assert!(progress_line("m", warm, &c).starts_with("[m   1s warm-up] sent 0 "));
    }

    #[test]
    fn human_units() {
        assert_eq!(fmt_ns(850.0), "850ns");
        assert_eq!(fmt_ns(45_120.0), "45.1µs");
        assert_eq!(fmt_ns(1_234_000.0), "1.23ms");
        assert_eq!(fmt_rate(950.0), "950/s");
        assert_eq!(fmt_rate(20_000.0), "20.0k/s");
        assert_eq!(sub_bucket_count(3), 2048);
        assert_eq!(sub_bucket_count(2), 256);
    }
}
