//! The CLI's plain-text views, laid out like chronyc's so operators read them at a glance:
//! pure functions from the control protocol's data to text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::discipline::leap::civil_date;
use crate::discipline::stats::SampleStats;
use crate::discipline::tracking::Tracking;

/// One row of `sources` / `sourcestats` as the server sends it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SourceRow {
    pub source: String,
    pub address: SocketAddr,
    pub state: String,
    pub reach: u8,
    pub poll: i8,
    pub offset: f64,
    pub delay: f64,
    pub jitter: f64,
    pub root_distance: f64,
    pub stratum: u8,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub last_sample: Option<LastSampleRow>,
}

/// A source's last sample as the server sends it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct LastSampleRow {
    pub ago_s: f64,
    pub measured_s: f64,
    pub adjusted_s: f64,
    pub stats: Option<SampleStats>,
}

/// chronyc's state mark for a state name.
pub fn state_mark(state: &str) -> char {
    match state {
        "selected" => '*',
        "candidate" => '+',
        "outlier" => '-',
        "falseticker" => 'x',
        _ => '?',
    }
}

/// A duration or offset in seconds as chronyc prints one: at most four digits and a unit
/// (ns, us, ms, s), with a sign when `signed`, right-aligned in 7 (signed) or 6 columns.
pub fn short_secs(v: f64, signed: bool) -> String {
    let a = v.abs();
    let (n, unit) = if !a.is_finite() {
        return format!("{:>w$}", "-", w = if signed { 7 } else { 6 });
    } else if a < 9999.5e-9 {
        (v * 1e9, "ns")
    } else if a < 9999.5e-6 {
        (v * 1e6, "us")
    } else if a < 9999.5e-3 {
        (v * 1e3, "ms")
    } else {
        (v, "s")
    };
    let s = if signed {
        format!("{:+.0}{unit}", n)
    } else {
        format!("{:.0}{unit}", n)
    };
    format!("{s:>w$}", w = if signed { 7 } else { 6 })
}

/// An interval in seconds as chronyc prints one in 4 columns: seconds, then minutes (m),
/// hours (h), days (d), years (y).
pub fn interval(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return format!("{:>4}", "-");
    }
    let s = secs.round() as u64;
    let text = if s < 1200 {
        format!("{s}")
    } else if s < 60 * 600 {
        format!("{}m", s / 60)
    } else if s < 3600 * 96 {
        format!("{}h", s / 3600)
    } else if s < 86_400 * 1000 {
        format!("{}d", s / 86_400)
    } else {
        format!("{}y", s / (86_400 * 365))
    };
    format!("{text:>4}")
}

/// The name column: the address, with its port when it is not 123.
fn name(a: &SocketAddr, width: usize) -> String {
    let mut n = if a.port() == 123 {
        a.ip().to_string()
    } else {
        a.to_string()
    };
    n.truncate(width);
    n
}

const SOURCES_LEGEND: &str = concat!(
    "  .-- Source mode  '^' = server (a pool's members too).\n",
    " / .- Source state '*' = current best, '+' = combined, '-' = not combined,\n",
    "| /             'x' = may be in error, '?' = unusable.\n",
    "||                                                 .- xxxx [ yyyy ] +/- zzzz\n",
    "||      Reachability register (octal) -.           |  xxxx = adjusted offset,\n",
    "||      Log2(Polling interval) --.      |          |  yyyy = measured offset,\n",
    "||                                \\     |          |  zzzz = estimated error.\n",
    "||                                 |    |           \\\n",
);

/// `meridian sources [-v]`.
pub fn sources(rows: &[SourceRow], verbose: bool) -> String {
    let mut out = String::new();
    if verbose {
        out.push_str(SOURCES_LEGEND);
    }
    out.push_str("MS Name/IP address         Stratum Poll Reach LastRx Last sample\n");
    out.push_str(&"=".repeat(79));
    out.push('\n');
    for r in rows {
        let sample = match &r.last_sample {
            Some(s) => format!(
                "{:>4}  {}[{}] +/- {}",
                interval(s.ago_s),
                short_secs(s.adjusted_s, true),
                short_secs(s.measured_s, true),
                short_secs(r.root_distance, false)
            ),
            None => format!("{:>4}  {:>7}[{:>7}] +/- {:>6}", "-", "-", "-", "-"),
        };
        let _ = writeln!(
            out,
            "^{} {:<27}  {:>2}  {:>2}   {:>3o}  {}",
            state_mark(&r.state),
            name(&r.address, 27),
            r.stratum,
            r.poll,
            r.reach,
            sample
        );
    }
    out
}

/// `meridian sourcestats`.
pub fn sourcestats(rows: &[SourceRow]) -> String {
    let mut out = String::from(
        "Name/IP Address            NP  NR  Span  Frequency  Freq Skew  Offset  Std Dev\n",
    );
    out.push_str(&"=".repeat(78));
    out.push('\n');
    for r in rows {
        let n = name(&r.address, 25);
        match r.last_sample.as_ref().and_then(|s| s.stats) {
            Some(s) => {
                let ppm = |v: Option<f64>, signed: bool| match v {
                    Some(v) if signed => format!("{:+10.3}", v * 1e6),
                    Some(v) => format!("{:10.3}", v * 1e6),
                    None => format!("{:>10}", "-"),
                };
                let _ = writeln!(
                    out,
                    "{n:<25} {:>3} {:>3}  {} {} {}  {}  {}",
                    s.samples,
                    s.runs,
                    interval(s.span_s),
                    ppm(s.frequency, true),
                    ppm(s.skew, false),
                    short_secs(s.offset_s, true),
                    short_secs(s.std_dev_s, false)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{n:<25} {:>3} {:>3}  {:>4} {:>10} {:>10}  {:>7}  {:>6}",
                    0, 0, "-", "-", "-", "-", "-"
                );
            }
        }
    }
    out
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Unix seconds as ctime prints them in UTC: `Fri Dec 04 20:11:47 2026`.
pub fn ctime(unix: f64) -> String {
    let t = unix.floor() as i64;
    let day = t.div_euclid(86_400);
    let s = t.rem_euclid(86_400);
    let (y, m, d) = civil_date(day);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} {y}",
        WEEKDAYS[day.rem_euclid(7) as usize],
        MONTHS[(m as usize).saturating_sub(1).min(11)],
        d,
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// `meridian tracking`.
pub fn tracking(t: &Tracking) -> String {
    let name = t.reference_name.as_deref().unwrap_or("");
    let ref_time = t
        .reference_time_unix_s
        .map_or("Thu Jan 01 00:00:00 1970".to_owned(), ctime);
    let fast_slow = |v: f64, pos: &str, neg: &str| if v >= 0.0 { pos } else { neg }.to_owned();
    let leap = match t.leap.as_str() {
        "normal" => "Normal",
        "insert" => "Insert second",
        "delete" => "Delete second",
        _ => "Not synchronised",
    };
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<16}: {value}");
    };
    line("Reference ID", format!("{} ({name})", t.reference_id));
    line("Stratum", t.stratum.to_string());
    line("Ref time (UTC)", ref_time);
    line(
        "System time",
        format!(
            "{:.9} seconds {} of NTP time",
            t.system_time_s.abs(),
            fast_slow(t.system_time_s, "fast", "slow")
        ),
    );
    line("Last offset", format!("{:+.9} seconds", t.last_offset_s));
    line("RMS offset", format!("{:.9} seconds", t.rms_offset_s));
    line(
        "Frequency",
        format!(
            "{:.3} ppm {}",
            t.frequency_ppm.abs(),
            fast_slow(t.frequency_ppm, "slow", "fast")
        ),
    );
    line("Residual freq", format!("{:+.3} ppm", t.residual_freq_ppm));
    line("Skew", format!("{:.3} ppm", t.skew_ppm));
    line("Root delay", format!("{:.9} seconds", t.root_delay_s));
    line(
        "Root dispersion",
        format!("{:.9} seconds", t.root_dispersion_s),
    );
    line(
        "Update interval",
        format!("{:.1} seconds", t.update_interval_s),
    );
    line("Leap status", leap.to_owned());
    out
}

/// The counters of one worker or all, as the server sends them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Counters {
    #[serde(flatten)]
    pub events: BTreeMap<String, u64>,
    pub dropped_total: u64,
    pub dropped: BTreeMap<String, u64>,
    pub rx_timestamps: BTreeMap<String, u64>,
    pub tx_timestamps: BTreeMap<String, u64>,
}

/// One worker's counters.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct WorkerStats {
    pub worker: usize,
    pub core: Option<usize>,
    #[serde(flatten)]
    pub counters: Counters,
}

/// `serverstats` as the server sends it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ServerStats {
    pub backend: String,
    pub uptime_secs: f64,
    pub total: Counters,
    pub workers: Vec<WorkerStats>,
}

fn counter_lines(out: &mut String, c: &Counters) {
    let ev = |k: &str| c.events.get(k).copied().unwrap_or(0);
    let mut line = |label: &str, v: u64| {
        let _ = writeln!(out, "{label:<27}: {v}");
    };
    line("NTP packets received", ev("received"));
    line("NTP packets answered", ev("answered"));
    line("NTP packets dropped", c.dropped_total);
    for (reason, n) in c.dropped.iter().filter(|(_, n)| **n > 0) {
        line(&format!("  {reason}"), *n);
    }
    line("KoD DENY sent", ev("kod_deny"));
    line("KoD RATE sent", ev("kod_rate"));
    line("Rate limit leaked", ev("rate_limit_leaked"));
    line("Interleaved replies", ev("interleaved"));
    line("Clients added", ev("clients_added"));
    line("Clients evicted", ev("clients_evicted"));
    for (q, n) in &c.rx_timestamps {
        line(&format!("RX timestamps {q}"), *n);
    }
    for (q, n) in &c.tx_timestamps {
        line(&format!("TX timestamps {q}"), *n);
    }
    line("TX timestamps lost", ev("tx_stamps_lost"));
}

/// `meridian serverstats [-v]`.
pub fn serverstats(s: &ServerStats, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<27}: {}", "Backend", s.backend);
    let _ = writeln!(out, "{:<27}: {}", "Workers", s.workers.len());
    let _ = writeln!(out, "{:<27}: {:.0} seconds", "Uptime", s.uptime_secs);
    counter_lines(&mut out, &s.total);
    if verbose {
        for w in &s.workers {
            let core = w
                .core
                .map_or("unpinned".to_owned(), |c| format!("core {c}"));
            let _ = writeln!(out, "\nWorker {} ({core}):", w.worker);
            counter_lines(&mut out, &w.counters);
        }
    }
    out
}

/// One client as the server sends it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ClientRow {
    pub address: std::net::IpAddr,
    pub worker: usize,
    pub requests: u32,
    pub drops: u16,
    pub kods: u16,
    pub last_seen_ago_s: f64,
    pub interval_s: Option<f64>,
}

/// `clients` as the server sends it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ClientsData {
    pub total: usize,
    pub capacity: usize,
    pub clients: Vec<ClientRow>,
}

/// The `log` answer.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct LogData {
    pub capacity: usize,
    pub lines: Vec<crate::log::LogLine>,
}

/// `meridian log`: one line per log line, oldest first, as the server's stderr shows them.
pub fn log(d: &LogData) -> String {
    let mut out = String::new();
    for l in &d.lines {
        let _ = writeln!(out, "{l}");
    }
    out
}

/// `meridian clients`: chronyc's NTP columns (Int is log2 of the request interval), the
/// worker, and the total.
pub fn clients(c: &ClientsData) -> String {
    let mut out = format!(
        "{:<25} {:>8} {:>6} {:>5} {:>3} {:>4} {:>6}\n",
        "Hostname", "NTP", "Drop", "KoD", "Int", "Last", "Worker"
    );
    out.push_str(&"=".repeat(64));
    out.push('\n');
    for r in &c.clients {
        let int = r
            .interval_s
            .filter(|i| *i > 0.0)
            .map_or("-".to_owned(), |i| format!("{}", i.log2().round() as i64));
        let mut host = r.address.to_string();
        host.truncate(25);
        let _ = writeln!(
            out,
            "{host:<25} {:>8} {:>6} {:>5} {:>3} {} {:>6}",
            r.requests,
            r.drops,
            r.kods,
            int,
            interval(r.last_seen_ago_s),
            r.worker
        );
    }
    let _ = writeln!(
        out,
        "\n{} client{} tracked (table capacity {}), {} shown",
        c.total,
        if c.total == 1 { "" } else { "s" },
        c.capacity,
        c.clients.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(addr: &str, state: &str, sample: Option<(f64, f64, f64)>) -> SourceRow {
        SourceRow {
            source: addr.to_owned(),
            address: addr.parse().unwrap(),
            state: state.to_owned(),
            reach: 0o377,
            poll: 6,
            offset: 0.0,
            delay: 0.001,
            jitter: 0.0001,
            root_distance: 0.0065,
            stratum: 2,
            kind: "server".to_owned(),
            last_sample: sample.map(|(ago, adj, meas)| LastSampleRow {
                ago_s: ago,
                measured_s: meas,
                adjusted_s: adj,
                stats: Some(SampleStats {
                    samples: 8,
                    runs: 5,
                    span_s: 448.0,
                    frequency: Some(0.014e-6),
                    skew: Some(0.007e-6),
                    offset_s: 129e-6,
                    std_dev_s: 60e-6,
                }),
            }),
        }
    }

    #[test]
    fn short_values_keep_four_digits() {
        assert_eq!(short_secs(-195e-6, true), " -195us");
        assert_eq!(short_secs(1157e-9, true), "+1157ns");
        assert_eq!(short_secs(6565e-6, false), "6565us");
        assert_eq!(short_secs(0.012, false), "  12ms");
        assert_eq!(short_secs(-3.0, true), "-3000ms");
        assert_eq!(short_secs(12.0, true), "   +12s");
        assert_eq!(short_secs(0.0, true), "   +0ns");
        assert_eq!(short_secs(f64::NAN, false), "     -");
        assert_eq!(interval(35.0), "  35");
        assert_eq!(interval(8340.0), "139m");
        assert_eq!(interval(7.0 * 3600.0 * 24.0), "  7d");
        assert_eq!(interval(5.0 * 3600.0), "300m");
        assert_eq!(interval(-1.0), "   -");
    }

    #[test]
    fn sources_have_chronyc_columns_and_marks() {
        let rows = [
            row("127.0.1.2:123", "selected", Some((35.0, -195e-6, -280e-6))),
            row("127.0.1.5:40123", "falseticker", Some((1.0, -3.0, -2.8))),
            row("[2001:db8::1]:123", "unreachable", None),
        ];
        let text = sources(&rows, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "MS Name/IP address         Stratum Poll Reach LastRx Last sample"
        );
        assert_eq!(lines[1], "=".repeat(79));
        assert_eq!(
            lines[2],
            "^* 127.0.1.2                     2   6   377    35   -195us[ -280us] +/- 6500us"
        );
        assert!(lines[3].starts_with("^x 127.0.1.5:40123 "), "{}", lines[3]);
        assert!(
            lines[3].ends_with("-3000ms[-2800ms] +/- 6500us"),
            "{}",
            lines[3]
        );
        assert!(lines[4].starts_with("^? 2001:db8::1 "), "{}", lines[4]);
        // The stratum sits under "Stratum", the reach under "Reach".
        assert_eq!(lines[2].find("  2 ").map(|i| i + 2), Some(33));
        assert_eq!(&lines[2][41..44], "377");
        assert!(sources(&rows, true).starts_with("  .-- Source mode"));
    }

    #[test]
    fn sourcestats_have_chronyc_columns() {
        let text = sourcestats(&[
            row("127.0.1.2:123", "selected", Some((1.0, 0.0, 0.0))),
            row("127.0.1.3:123", "unreachable", None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "127.0.1.2                   8   5   448     +0.014      0.007   +129us    60us"
        );
        assert_eq!(
            lines[3],
            "127.0.1.3                   0   0     -          -          -        -       -"
        );
        assert_eq!(lines[0].len(), lines[2].len());
    }

    #[test]
    fn tracking_reads_like_chronyc() {
        let t = Tracking {
            status: "synchronised".into(),
            reference_id: "7F000102".into(),
            reference_name: Some("127.0.1.2".into()),
            stratum: 2,
            reference_time_unix_s: Some(1_796_415_107.5),
            system_time_s: -1.5e-6,
            last_offset_s: 12e-6,
            rms_offset_s: 20e-6,
            frequency_ppm: -1.25,
            residual_freq_ppm: 0.001,
            skew_ppm: 0.012,
            root_delay_s: 0.001,
            root_dispersion_s: 0.0005,
            update_interval_s: 64.0,
            leap: "normal".into(),
        };
        let text = tracking(&t);
        let expect = "\
Reference ID    : 7F000102 (127.0.1.2)
Stratum         : 2
Ref time (UTC)  : Fri Dec 04 20:11:47 2026
System time     : 0.000001500 seconds slow of NTP time
Last offset     : +0.000012000 seconds
RMS offset      : 0.000020000 seconds
Frequency       : 1.250 ppm fast
Residual freq   : +0.001 ppm
Skew            : 0.012 ppm
Root delay      : 0.001000000 seconds
Root dispersion : 0.000500000 seconds
Update interval : 64.0 seconds
Leap status     : Normal
";
        assert_eq!(text, expect);
        assert_eq!(ctime(0.0), "Thu Jan 01 00:00:00 1970");
    }

    #[test]
    fn serverstats_and_clients_from_the_wire() {
        let stats: ServerStats = serde_json::from_value(serde_json::json!({
            "backend": "udp", "uptime_secs": 12.4,
            "total": {"received": 10, "answered": 8, "kod_rate": 1, "dropped_total": 2,
                      "dropped": {"bad_mode": 2, "too_short": 0},
                      "rx_timestamps": {"kernel": 10}, "tx_timestamps": {"kernel": 8}},
            "workers": [{"worker": 0, "core": null, "received": 10, "answered": 8,
                         "dropped_total": 2, "dropped": {"bad_mode": 2},
                         "rx_timestamps": {}, "tx_timestamps": {}}]
        }))
        .unwrap();
        let text = serverstats(&stats, true);
        assert!(text.contains("NTP packets received       : 10\n"), "{text}");
        assert!(
            text.contains("NTP packets dropped        : 2\n  bad_mode"),
            "{text}"
        );
        assert!(!text.contains("too_short"), "{text}");
        assert!(text.contains("KoD RATE sent              : 1\n"), "{text}");
        assert!(text.contains("\nWorker 0 (unpinned):\n"), "{text}");
        assert!(!serverstats(&stats, false).contains("Worker 0"));

        let c: ClientsData = serde_json::from_value(serde_json::json!({
            "total": 3, "capacity": 1024, "clients": [
                {"address": "127.0.0.1", "worker": 1, "requests": 5, "drops": 0, "kods": 0,
                 "first_seen_ago_s": 9.0, "last_seen_ago_s": 3.2, "interval_s": 2.0}]
        }))
        .unwrap();
        let text = clients(&c);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "127.0.0.1                        5      0     0   1    3      1"
        );
        assert!(text.ends_with("3 clients tracked (table capacity 1024), 1 shown\n"));
    }
}
