//! `/metrics`: the Prometheus text exposition (format 0.0.4) of the counters, the sources and
//! the tracking values, as a pure function of the control protocol's data. Names follow the
//! Prometheus rules: a `meridian_` prefix, base units in the name (seconds; ratios are
//! dimensionless), `_total` on counters, `meridian_build_info` for build data, and no
//! per-client labels (a label per client would be a series per client).

use std::fmt::Write as _;

use super::format::{Counters, ServerStats, SourceRow};
use crate::discipline::tracking::Tracking;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The states a source may be in (one 0/1 series each).
const SOURCE_STATES: [&str; 7] = [
    "selected",
    "candidate",
    "outlier",
    "falseticker",
    "unreachable",
    "denied",
    "replaced",
];

/// One value of a source.
type SourceValue = dyn Fn(&SourceRow) -> f64;

/// A label value, escaped as the text format asks.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes one metric family: its HELP and TYPE, then each `(labels, value)` sample.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let value = if v.is_finite() {
            format!("{v}")
        } else if v.is_nan() {
            "NaN".to_owned()
        } else if *v > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        };
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Per-worker samples of `f`.
fn per_worker(stats: &ServerStats, f: impl Fn(&Counters) -> u64) -> Vec<(String, f64)> {
    stats
        .workers
        .iter()
        .map(|w| {
            (
                labels(&[("worker", &w.worker.to_string())]),
                f(&w.counters) as f64,
            )
        })
        .collect()
}

/// Per-worker samples for each key of a map of `f`, labelled `key_label`.
fn per_worker_keyed(
    stats: &ServerStats,
    key_label: &str,
    f: impl Fn(&Counters) -> Vec<(String, u64)>,
) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for w in &stats.workers {
        let worker = w.worker.to_string();
        for (k, v) in f(&w.counters) {
            out.push((labels(&[("worker", &worker), (key_label, &k)]), v as f64));
        }
    }
    out
}

fn event(c: &Counters, key: &str) -> u64 {
    c.events.get(key).copied().unwrap_or(0)
}

/// What `/metrics` shows.
pub struct MetricsInput<'a> {
    pub version: &'a str,
    pub stats: &'a ServerStats,
    pub tracking: &'a Tracking,
    pub sources: &'a [SourceRow],
    pub serving: bool,
}

/// The exposition text.
pub fn render(m: &MetricsInput<'_>) -> String {
    let mut out = String::new();
    let s = m.stats;
    let t = m.tracking;
    let one = |v: f64| vec![(String::new(), v)];
    family(
        &mut out,
        "meridian_build_info",
        "gauge",
        "Build information (always 1).",
        &[(
            labels(&[("version", m.version), ("backend", &s.backend)]),
            1.0,
        )],
    );
    family(
        &mut out,
        "meridian_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        &one(s.uptime_secs),
    );
    family(
        &mut out,
        "meridian_serving",
        "gauge",
        "1 while NTP requests are answered, 0 after `serving off`.",
        &one(if m.serving { 1.0 } else { 0.0 }),
    );
    let counters: [(&str, &str, &str); 8] = [
        (
            "received",
            "meridian_requests_received_total",
            "NTP requests received.",
        ),
        (
            "answered",
            "meridian_requests_answered_total",
            "NTP requests answered.",
        ),
        (
            "interleaved",
            "meridian_interleaved_replies_total",
            "Replies sent in interleaved mode.",
        ),
        (
            "rate_limit_leaked",
            "meridian_rate_limit_leaked_total",
            "Requests over the rate limit answered anyway (the leak).",
        ),
        (
            "clients_added",
            "meridian_clients_added_total",
            "Client records created in the client tables.",
        ),
        (
            "clients_evicted",
            "meridian_clients_evicted_total",
            "Client records replaced because the table was full.",
        ),
        (
            "tx_stamps_lost",
            "meridian_tx_timestamps_lost_total",
            "Transmit timestamps asked for that never came back.",
        ),
        (
            "rx_buffers_exhausted",
            "meridian_rx_buffers_exhausted_total",
            "Times the receive buffers ran out.",
        ),
    ];
    for (key, name, help) in counters {
        family(
            &mut out,
            name,
            "counter",
            help,
            &per_worker(s, |c| event(c, key)),
        );
    }
    family(
        &mut out,
        "meridian_clients_tracked",
        "gauge",
        "Client records in use (a record is replaced when its table is full, never freed).",
        &per_worker(s, |c| event(c, "clients_added")),
    );
    family(
        &mut out,
        "meridian_requests_dropped_total",
        "counter",
        "NTP requests dropped, by reason.",
        &per_worker_keyed(s, "reason", |c| {
            c.dropped.iter().map(|(k, v)| (k.clone(), *v)).collect()
        }),
    );
    family(
        &mut out,
        "meridian_kod_sent_total",
        "counter",
        "Kiss-o'-death replies sent, by code.",
        &per_worker_keyed(s, "code", |c| {
            vec![
                ("DENY".to_owned(), event(c, "kod_deny")),
                ("RATE".to_owned(), event(c, "kod_rate")),
            ]
        }),
    );
    family(
        &mut out,
        "meridian_rx_timestamps_total",
        "counter",
        "Receive timestamps taken, by quality.",
        &per_worker_keyed(s, "quality", |c| {
            c.rx_timestamps
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        }),
    );
    family(
        &mut out,
        "meridian_tx_timestamps_total",
        "counter",
        "Replies by the quality of the transmit time they carried.",
        &per_worker_keyed(s, "quality", |c| {
            c.tx_timestamps
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        }),
    );

    let synced = matches!(t.status.as_str(), "synchronised" | "holdover" | "local");
    family(
        &mut out,
        "meridian_synchronized",
        "gauge",
        "1 while the served clock is synchronised (also in holdover and at the local stratum).",
        &one(if synced { 1.0 } else { 0.0 }),
    );
    family(
        &mut out,
        "meridian_stratum",
        "gauge",
        "The stratum served (16: unsynchronised).",
        &one(f64::from(t.stratum)),
    );
    let leap = match t.leap.as_str() {
        "normal" => 0.0,
        "insert" => 1.0,
        "delete" => 2.0,
        _ => 3.0,
    };
    family(
        &mut out,
        "meridian_leap_indicator",
        "gauge",
        "The leap indicator served: 0 none, 1 insert, 2 delete, 3 unsynchronised.",
        &one(leap),
    );
    let gauges: [(&str, &str, f64); 7] = [
        (
            "meridian_system_offset_seconds",
            "The served clock minus the sources' combined time at the last measurement.",
            t.last_offset_s,
        ),
        (
            "meridian_system_time_offset_seconds",
            "The served clock minus the best estimate of true time (the slew still to do).",
            t.system_time_s,
        ),
        (
            "meridian_rms_offset_seconds",
            "RMS of the recent system offsets.",
            t.rms_offset_s,
        ),
        (
            "meridian_frequency_ratio",
            "Frequency error of the raw local clock (dimensionless; positive: it runs slow).",
            t.frequency_ppm * 1e-6,
        ),
        (
            "meridian_frequency_skew_ratio",
            "Standard error of the frequency estimate (dimensionless).",
            t.skew_ppm * 1e-6,
        ),
        (
            "meridian_root_delay_seconds",
            "Root delay served.",
            t.root_delay_s,
        ),
        (
            "meridian_root_dispersion_seconds",
            "Root dispersion served.",
            t.root_dispersion_s,
        ),
    ];
    for (name, help, v) in gauges {
        family(&mut out, name, "gauge", help, &one(v));
    }

    let per_source = |f: &SourceValue| -> Vec<(String, f64)> {
        m.sources
            .iter()
            .map(|r| (labels(&[("source", &r.address.to_string())]), f(r)))
            .collect()
    };
    let source_gauges: [(&str, &str, &SourceValue); 6] = [
        (
            "meridian_source_offset_seconds",
            "The source minus the raw local clock, as the last selection saw it.",
            &|r| r.offset,
        ),
        (
            "meridian_source_delay_seconds",
            "Round-trip delay of the source's selected sample.",
            &|r| r.delay,
        ),
        (
            "meridian_source_jitter_seconds",
            "The source's filter jitter.",
            &|r| r.jitter,
        ),
        (
            "meridian_source_root_distance_seconds",
            "The source's root distance.",
            &|r| r.root_distance,
        ),
        (
            "meridian_source_reach",
            "The source's reachability register (8 bits, newest poll in bit 0).",
            &|r| f64::from(r.reach),
        ),
        (
            "meridian_source_stratum",
            "The source's stratum (0 before its first sample).",
            &|r| f64::from(r.stratum),
        ),
    ];
    for (name, help, f) in source_gauges {
        family(&mut out, name, "gauge", help, &per_source(f));
    }
    let mut states = Vec::new();
    for r in m.sources {
        let source = r.address.to_string();
        for st in SOURCE_STATES {
            let v = if r.state == st { 1.0 } else { 0.0 };
            states.push((labels(&[("source", &source), ("state", st)]), v));
        }
    }
    family(
        &mut out,
        "meridian_source_state",
        "gauge",
        "1 for the state each source is in, 0 for the others.",
        &states,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> ServerStats {
        serde_json::from_value(serde_json::json!({
            "backend": "udp", "uptime_secs": 5.5,
            "total": {"received": 3, "answered": 2, "dropped_total": 1,
                      "dropped": {"bad_mode": 1}, "rx_timestamps": {"kernel": 3},
                      "tx_timestamps": {"user": 2}},
            "workers": [{"worker": 0, "core": 1, "received": 3, "answered": 2, "kod_rate": 1,
                         "dropped_total": 1, "dropped": {"bad_mode": 1, "too_short": 0},
                         "rx_timestamps": {"kernel": 3}, "tx_timestamps": {"user": 2}}]
        }))
        .unwrap()
    }

    #[test]
    fn the_exposition_follows_the_naming_rules() {
        let tracking: Tracking = serde_json::from_value(serde_json::json!({
            "status": "synchronised", "reference_id": "7F000102", "reference_name": "a\"b",
            "stratum": 2, "reference_time_unix_s": 1.0, "system_time_s": 0.0,
            "last_offset_s": -1e-5, "rms_offset_s": 2e-5, "frequency_ppm": 1.5,
            "residual_freq_ppm": 0.0, "skew_ppm": 0.1, "root_delay_s": 0.001,
            "root_dispersion_s": 0.002, "update_interval_s": 1.0, "leap": "insert"
        }))
        .unwrap();
        let sources: Vec<SourceRow> = serde_json::from_value(serde_json::json!([{
            "source": "x", "address": "127.0.0.2:123", "state": "falseticker", "reach": 255,
            "poll": 6, "offset": -3.0, "delay": 0.001, "jitter": 0.0001,
            "root_distance": 0.01, "stratum": 1
        }]))
        .unwrap();
        let text = render(&MetricsInput {
            version: "0.1.0",
            stats: &stats(),
            tracking: &tracking,
            sources: &sources,
            serving: true,
        });
        assert!(text.contains("meridian_build_info{version=\"0.1.0\",backend=\"udp\"} 1\n"));
        assert!(text.contains("meridian_requests_received_total{worker=\"0\"} 3\n"));
        assert!(
            text.contains("meridian_requests_dropped_total{worker=\"0\",reason=\"too_short\"} 0\n")
        );
        assert!(text.contains("meridian_kod_sent_total{worker=\"0\",code=\"RATE\"} 1\n"));
        assert!(text.contains("meridian_leap_indicator 1\n"));
        assert!(text.contains("meridian_clients_tracked{worker=\"0\"} 0\n"));
        assert!(
            text.contains("meridian_frequency_ratio 0.0000015\n"),
            "{text}"
        );
        assert!(text
            .contains("meridian_source_state{source=\"127.0.0.2:123\",state=\"falseticker\"} 1\n"));
        assert!(text.contains("meridian_source_offset_seconds{source=\"127.0.0.2:123\"} -3\n"));
        // Every sample's family has HELP and TYPE; counters end in _total, nothing else does.
        let mut kind = std::collections::HashMap::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let (n, k) = rest.split_once(' ').unwrap();
                kind.insert(n.to_owned(), k.to_owned());
                assert_eq!(k == "counter", n.ends_with("_total"), "{l}");
                assert!(n.starts_with("meridian_"), "{l}");
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(kind.contains_key(name), "{l}");
                assert!(!l.contains("127.0.0.1\""), "no client labels: {l}");
            }
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
