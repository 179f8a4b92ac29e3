//! Latency by percentile as a hand-written SVG: the x axis is `1/(1-percentile)` on a log
//! scale (0 %, 90 %, 99 %, 99.9 %, ...), as HdrHistogram's plotter draws it, the y axis is
//! linear in microseconds.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::report::TICKS_PER_HALF_DISTANCE;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One curve: a label, a histogram of ns values, and whether to dash it.
pub struct Series<'a> {
    pub label: String,
    pub hist: &'a Histogram<u64>,
    pub dashed: bool,
}

/// The points of a curve: (log10(1/(1-q)), value in µs); the 100 % point sits at `x_max`.
pub fn curve(h: &Histogram<u64>, x_max: f64) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return vec![];
    }
    h.iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|v| {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 {
                x_max
            } else {
                (-(1.0 - q).log10()).min(x_max)
            };
            (x, h.highest_equivalent(v.value_iterated_to()) as f64 / 1e3)
        })
        .collect()
}

/// Number of decades on the percentile axis: enough to reach the 1-in-N point of the largest
/// sample count (at least 99 %, at most 99.9999 %).
pub fn decades(max_count: u64) -> u32 {
    let d = (max_count.max(1) as f64).log10().ceil() as u32;
    d.clamp(2, 6)
}

/// The label of decade `d`: 0 → "0%", 1 → "90%", 2 → "99%", 3 → "99.9%", ...
pub fn decade_label(d: u32) -> String {
    match d {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        _ => format!("99.{}%", "9".repeat(d as usize - 2)).replace("99.%", "99%"),
    }
}

/// A "nice" upper bound for the y axis and its tick step.
pub fn nice_axis(max: f64) -> (f64, f64) {
    if !(max > 0.0 && max.is_finite()) {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole SVG document.
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    let max_count = series.iter().map(|s| s.hist.len()).max().unwrap_or(0);
    let x_max = decades(max_count) as f64;
    let curves: Vec<Vec<(f64, f64)>> = series.iter().map(|s| curve(s.hist, x_max)).collect();
    let y_data_max = curves.iter().flatten().map(|p| p.1).fold(0.0f64, f64::max);
    let (y_max, y_step) = nice_axis(y_data_max);
    let pw = WIDTH - LEFT - RIGHT;
    let ph = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / x_max * pw;
    let sy = |y: f64| TOP + ph - y / y_max * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="16">{}</text>"#,
        WIDTH / 2.0,
        esc(title)
    );
    // Grid and ticks.
    let mut y = 0.0;
    while y <= y_max + y_step * 1e-9 {
        let py = sy(y);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.2}" x2="{:.2}" y2="{py:.2}" stroke="#ddd"/>"##,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.2}" y="{:.2}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            py + 4.0,
            trim_float(y)
        );
        y += y_step;
    }
    for d in 0..=x_max as u32 {
        let px = sx(d as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.2}" y1="{TOP}" x2="{px:.2}" y2="{:.2}" stroke="#ddd"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{px:.2}" y="{:.2}" text-anchor="middle">{}</text>"#,
            TOP + ph + 18.0,
            decade_label(d)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.2}" y="{:.2}" text-anchor="middle">Percentile</text>"#,
        LEFT + pw / 2.0,
        HEIGHT - 22.0
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.2}" text-anchor="middle" transform="rotate(-90 20 {:.2})">Latency (µs)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    // Curves and legend.
    for (i, (ser, pts)) in series.iter().zip(&curves).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let dash = if ser.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        if !pts.is_empty() {
            let mut points = String::new();
            for (x, y) in pts {
                let _ = write!(points, "{:.2},{:.2} ", sx(*x), sy(*y));
            }
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{}"/>"#,
                points.trim_end()
            );
        }
        let ly = TOP + 16.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.2}" y1="{ly:.2}" x2="{:.2}" y2="{ly:.2}" stroke="{colour}" stroke-width="2"{dash}/>"#,
            LEFT + 12.0,
            LEFT + 36.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.2}" y="{:.2}">{} (n={})</text>"#,
            LEFT + 42.0,
            ly + 4.0,
            esc(&ser.label),
            ser.hist.len()
        );
    }
    s.push_str("</svg>\n");
    s
}

fn trim_float(v: f64) -> String {
    let t = format!("{v:.3}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn axis_labels() {
        assert_eq!(decade_label(0), "0%");
        assert_eq!(decade_label(1), "90%");
        assert_eq!(decade_label(2), "99%");
        assert_eq!(decade_label(3), "99.9%");
        assert_eq!(decade_label(5), "99.999%");
        assert_eq!(decades(10_000), 4);
        assert_eq!(decades(3), 2);
        assert_eq!(decades(u64::MAX), 6);
        assert_eq!(nice_axis(87.0), (100.0, 20.0));
        assert_eq!(nice_axis(1.0), (1.0, 0.2));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
    }

    #[test]
    fn curve_is_log_scaled() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let c = curve(&h, 3.0);
        assert_eq!(c.first().unwrap().0, 0.0);
        assert_eq!(c.last().unwrap().0, 3.0);
        // The 99th percentile (x = 2) is near 990 µs.
        let p99 = c.iter().find(|p| p.0 >= 2.0).unwrap();
        assert!((p99.1 - 990.0).abs() < 5.0, "{p99:?}");
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn svg_document() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=20_000u64 {
            a.record(20_000 + v).unwrap();
            b.record(v / 10 + 1).unwrap();
        }
        let doc = svg(
            "meridian <test> & co",
            &[
                Series {
                    label: "rtt".into(),
                    hist: &a,
                    dashed: false,
                },
                Series {
                    label: "residence".into(),
                    hist: &b,
                    dashed: true,
                },
            ],
        );
        assert!(doc.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(doc.trim_end().ends_with("</svg>"));
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert!(doc.contains("stroke-dasharray"));
        for label in ["0%", ">90%<", ">99%<", ">99.9%<", ">99.99%<", ">99.999%<"] {
            assert!(doc.contains(label), "missing {label}");
        }
        assert!(doc.contains("meridian &lt;test&gt; &amp; co"));
        assert!(!doc.contains("NaN") && !doc.contains("inf"));
        // Every polyline coordinate lies inside the plot area.
        for line in doc.lines().filter(|l| l.starts_with("<polyline")) {
            let pts = line
                .split("points=\"")
                .nth(1)
                .unwrap()
                .trim_end_matches("\"/>");
            for p in pts.split(' ') {
                let (x, y) = p.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((LEFT - 0.01..=WIDTH - RIGHT + 0.01).contains(&x), "{x}");
                assert!((TOP - 0.01..=HEIGHT - BOTTOM + 0.01).contains(&y), "{y}");
            }
        }
        // Element balance: every opened text is closed.
        assert_eq!(doc.matches("<text").count(), doc.matches("</text>").count());
    }

    #[test]
    fn empty_series_still_draws_axes() {
        let h = new_histogram();
        let doc = svg(
            "empty",
            &[Series {
                label: "none".into(),
                hist: &h,
                dashed: false,
            }],
        );
        assert_eq!(doc.matches("<polyline").count(), 0);
        assert!(doc.contains(">99%<"));
    }
}
