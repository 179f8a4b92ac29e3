//! Latency by percentile as a hand-written SVG, drawn as HdrHistogram's plotter draws it: the
//! x axis is `1/(1-percentile)` on a log scale (0 %, 90 %, 99 %, 99.9 %, ...) and the latency
//! axis is logarithmic too (1, 2, 5 × powers of ten, in ns/µs/ms/s), so a curve's median and
//! its tail, orders of magnitude apart, can both be read. The legend, below the plot, gives
//! each curve's p50, p99 and max, which are also marked on the curve.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::report::{fmt_ns, TICKS_PER_HALF_DISTANCE};

const WIDTH: f64 = 900.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 50.0;
/// Height of the plot area.
const PLOT_H: f64 = 400.0;
/// From the bottom of the plot area to the first legend line (tick labels, axis title).
const BELOW_PLOT: f64 = 66.0;
const LEGEND_LINE: f64 = 18.0;
/// Up to this many decades on the latency axis every 1, 2 and 5 tick is labelled (at least
/// 400 px × log10(2) / 6 = 20 px between labels); beyond, only the powers of ten.
const LABEL_ALL_DECADES: i32 = 6;
/// The latency axis never reaches below 1 ns, the histograms' resolution.
const FLOOR_EXP_US: i32 = -3;
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

/// The logarithmic latency axis: whole decades from 10^lo to 10^hi µs around the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogAxis {
    pub lo_exp: i32,
    pub hi_exp: i32,
}

impl LogAxis {
    /// The decades holding every positive value of `values` (µs), the smallest at least a
    /// factor 2 above the floor; zeros are drawn on the floor. Without a positive value: 1 µs
    /// to 1 ms.
    pub fn around(values: impl IntoIterator<Item = f64>) -> LogAxis {
        let (mut min, mut max) = (f64::INFINITY, 0.0f64);
        for v in values.into_iter().filter(|v| *v > 0.0 && v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
        }
        if max == 0.0 {
            return LogAxis {
                lo_exp: 0,
                hi_exp: 3,
            };
        }
        // The floor at least a factor 2 below the smallest value, so that the lower part of a
        // curve never lies on it; the top at or above the largest (a small tolerance keeps
        // 1000.0000001 µs below 1 ms).
        let lo_exp = (((min / 2.0).log10() + 1e-9).floor() as i32).max(FLOOR_EXP_US);
        let hi_exp = ((max.log10() - 1e-9).ceil() as i32).max(lo_exp + 1);
        LogAxis { lo_exp, hi_exp }
    }

    pub fn lo(&self) -> f64 {
        10f64.powi(self.lo_exp)
    }

    /// Where `us` sits on the axis: 0 at the floor, 1 at the top (values at or below the
    /// floor, zero included, on the floor).
    pub fn fraction(&self, us: f64) -> f64 {
        if us <= self.lo() {
            return 0.0;
        }
        ((us.log10() - self.lo_exp as f64) / (self.hi_exp - self.lo_exp) as f64).min(1.0)
    }

    /// The ticks, bottom to top: 1, 2, 5 × every power of ten, and whether each is labelled.
    pub fn ticks(&self) -> Vec<(f64, bool)> {
        let label_all = self.hi_exp - self.lo_exp <= LABEL_ALL_DECADES;
        let mut out = Vec::new();
        for e in self.lo_exp..self.hi_exp {
            for m in [1.0, 2.0, 5.0] {
                out.push((m * 10f64.powi(e), m == 1.0 || label_all));
            }
        }
        out.push((10f64.powi(self.hi_exp), true));
        out
    }
}

/// A tick value in µs for people: `500 ns`, `1 µs`, `20 µs`, `1 ms`, `2 s`.
pub fn tick_label(us: f64) -> String {
    let ns = (us * 1e3).round();
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    format!("{} {unit}", trim_float(v))
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
    let axis = LogAxis::around(curves.iter().flatten().map(|p| p.1));
    let pw = WIDTH - LEFT - RIGHT;
    let bottom = TOP + PLOT_H;
    let height = bottom + BELOW_PLOT + LEGEND_LINE * series.len() as f64 + 8.0;
    let sx = |x: f64| LEFT + x / x_max * pw;
    let sy = |us: f64| bottom - axis.fraction(us) * PLOT_H;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="16">{}</text>"#,
        WIDTH / 2.0,
        esc(title)
    );
    // Latency grid and ticks.
    for (us, labelled) in axis.ticks() {
        let py = sy(us);
        let grid = if labelled { "#ccc" } else { "#eee" };
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{py:.2}" x2="{:.2}" y2="{py:.2}" stroke="{grid}"/>"#,
            LEFT + pw
        );
        if labelled {
            let _ = writeln!(
                s,
                r#"<text class="ytick" x="{:.2}" y="{:.2}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                py + 4.0,
                tick_label(us)
            );
        }
    }
    // Percentile grid and ticks: every decade, and the median.
    let mut xticks: Vec<(f64, String)> = (0..=x_max as u32)
        .map(|d| (d as f64, decade_label(d)))
        .collect();
    xticks.insert(1, (2f64.log10(), "50%".to_string()));
    for (x, label) in &xticks {
        let px = sx(*x);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.2}" y1="{TOP}" x2="{px:.2}" y2="{bottom:.2}" stroke="#ccc"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text class="xtick" x="{px:.2}" y="{:.2}" text-anchor="middle">{label}</text>"#,
            bottom + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{PLOT_H}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.2}" y="{:.2}" text-anchor="middle">Percentile</text>"#,
        LEFT + pw / 2.0,
        bottom + 40.0
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.2}" text-anchor="middle" transform="rotate(-90 20 {:.2})">Latency (log scale)</text>"#,
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0
    );
    // Curves, their p50 and p99 marks, and the legend.
    for (i, (ser, pts)) in series.iter().zip(&curves).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let dash = if ser.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let h = ser.hist;
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
            for (class, q) in [("p50", 50.0), ("p99", 99.0)] {
                let x = (-(1.0 - q / 100.0f64).log10()).min(x_max);
                let us = h.highest_equivalent(h.value_at_percentile(q)) as f64 / 1e3;
                let _ = writeln!(
                    s,
                    r#"<circle class="{class}" cx="{:.2}" cy="{:.2}" r="3" fill="{colour}"/>"#,
                    sx(x),
                    sy(us)
                );
            }
        }
        let ly = bottom + BELOW_PLOT + LEGEND_LINE * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.2}" y1="{ly:.2}" x2="{:.2}" y2="{ly:.2}" stroke="{colour}" stroke-width="2"{dash}/>"#,
            LEFT,
            LEFT + 24.0
        );
        let figures = if h.is_empty() {
            "no samples".to_string()
        } else {
            format!(
                "n={}, p50 {}, p99 {}, max {}",
                h.len(),
                fmt_ns(h.value_at_percentile(50.0) as f64),
                fmt_ns(h.value_at_percentile(99.0) as f64),
                fmt_ns(h.max() as f64)
            )
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.2}" y="{:.2}">{}: {figures}</text>"#,
            LEFT + 30.0,
            ly + 4.0,
            esc(&ser.label),
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
        assert_eq!(tick_label(0.001), "1 ns");
        assert_eq!(tick_label(0.5), "500 ns");
        assert_eq!(tick_label(1.0), "1 µs");
        assert_eq!(tick_label(20.0), "20 µs");
        assert_eq!(tick_label(500.0), "500 µs");
        assert_eq!(tick_label(1000.0), "1 ms");
        assert_eq!(tick_label(5e6), "5 s");
    }

    #[test]
    fn latency_axis_spans_whole_decades() {
        let a = LogAxis::around([21.9, 35.0, 6180.0]);
        assert_eq!((a.lo_exp, a.hi_exp), (1, 4)); // 10 µs .. 10 ms
        let a = LogAxis::around([0.0, 20.0, 1000.0]); // zero: on the floor, not -inf
        assert_eq!((a.lo_exp, a.hi_exp), (1, 3));
        assert_eq!(a.fraction(0.0), 0.0);
        assert!((a.fraction(100.0) - 0.5).abs() < 1e-12);
        // 12 µs is too close to 10 µs: one decade more below.
        assert_eq!(LogAxis::around([12.0, 900.0]).lo_exp, 0);
        assert_eq!(
            LogAxis::around([42.0]),
            LogAxis {
                lo_exp: 1,
                hi_exp: 2
            }
        );
        assert_eq!(
            LogAxis::around([]),
            LogAxis {
                lo_exp: 0,
                hi_exp: 3
            }
        );
        assert_eq!(LogAxis::around([1e-6, 2.0]).lo_exp, FLOOR_EXP_US);
        let ticks: Vec<String> = LogAxis::around([20.0, 900.0])
            .ticks()
            .iter()
            .map(|t| tick_label(t.0))
            .collect();
        assert_eq!(
            ticks,
            ["10 µs", "20 µs", "50 µs", "100 µs", "200 µs", "500 µs", "1 ms"]
        );
        // Many decades: only the powers of ten are labelled.
        let wide = LogAxis::around([0.001, 5e7]);
        assert!(wide
            .ticks()
            .iter()
            .all(|(v, l)| *l == ((v.log10() - v.log10().round()).abs() < 1e-9)));
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

    /// The attribute `name` of an SVG element line.
    fn attr(line: &str, name: &str) -> f64 {
        let key = format!(" {name}=\"");
        let rest = &line[line
            .find(&key)
            .unwrap_or_else(|| panic!("{name} in {line}"))
            + key.len()..];
        rest[..rest.find('"').unwrap()].parse().unwrap()
    }

    /// The text content of a `<text ...>...</text>` line.
    fn content(line: &str) -> &str {
        let start = line.find('>').unwrap() + 1;
        &line[start..line.rfind("</text>").unwrap()]
    }

    /// A tick label back to µs: `500 ns` → 0.5, `2 ms` → 2000.
    fn label_us(label: &str) -> f64 {
        let (v, unit) = label.split_once(' ').unwrap();
        let v: f64 = v.parse().unwrap();
        v * match unit {
            "ns" => 1e-3,
            "µs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            u => panic!("unit {u}"),
        }
    }

    /// A latency distribution like a real run's: 99 % between 20 and 25 µs, a 1 % tail from 1
    /// to 6 ms; the residence about half of it.
    fn realistic() -> (Histogram<u64>, Histogram<u64>) {
        let (mut rtt, mut res) = (new_histogram(), new_histogram());
        for i in 0..20_000u64 {
            let v = if i % 100 == 99 {
                1_000_000 + (i * 2_503) % 5_000_000
            } else {
                20_000 + (i * 37) % 5_000
            };
            rtt.record(v).unwrap();
            res.record(v / 2).unwrap();
        }
        (rtt, res)
    }

    fn document(rtt: &Histogram<u64>, res: &Histogram<u64>) -> String {
        svg(
            "meridian <test> & co",
            &[
                Series {
                    label: "rtt".into(),
                    hist: rtt,
                    dashed: false,
                },
                Series {
                    label: "residence".into(),
                    hist: res,
                    dashed: true,
                },
            ],
        )
    }

    #[test]
    fn latency_axis_is_logarithmic_and_p50_is_readable() {
        let (rtt, res) = realistic();
        let doc = document(&rtt, &res);
        let ticks: Vec<(f64, f64)> = doc
            .lines()
            .filter(|l| l.starts_with("<text class=\"ytick\""))
            .map(|l| (label_us(content(l)), attr(l, "y")))
            .collect();
        assert!(ticks.len() >= 7, "{ticks:?}");
        // 1-2-5 steps, bottom to top.
        for w in ticks.windows(2) {
            let ratio = w[1].0 / w[0].0;
            assert!(
                (ratio - 2.0).abs() < 1e-9 || (ratio - 2.5).abs() < 1e-9,
                "{ticks:?}"
            );
        }
        let labels: Vec<&str> = doc
            .lines()
            .filter(|l| l.starts_with("<text class=\"ytick\""))
            .map(content)
            .collect();
        assert!(
            labels.contains(&"10 µs") && labels.contains(&"1 ms"),
            "{labels:?}"
        );
        // Positions proportional to log10 of the value: one scale fits every tick.
        let (v0, y0) = ticks[0];
        let (v1, y1) = *ticks.last().unwrap();
        let px_per_decade = (y0 - y1) / (v1 / v0).log10();
        assert!(px_per_decade > 50.0, "{px_per_decade}");
        for &(v, y) in &ticks {
            let expect = y0 - (v / v0).log10() * px_per_decade;
            assert!(
                (y - expect).abs() < 0.05,
                "tick {v} µs at {y}, expected {expect}"
            );
        }
        // Labels at least a line apart.
        for w in ticks.windows(2) {
            assert!(w[0].1 - w[1].1 >= 14.0, "{ticks:?}");
        }
        // The p50 marks sit well above the floor, where a linear axis up to the 6 ms max
        // would put them (22 µs of 6 ms: 0.4 % of the height): here a third of the way up.
        let floor = y0 - 4.0; // text baselines are 4 px below their tick
        let p50: Vec<f64> = doc
            .lines()
            .filter(|l| l.starts_with("<circle class=\"p50\""))
            .map(|l| attr(l, "cy"))
            .collect();
        assert_eq!(p50.len(), 2);
        let rtt_p50_us = rtt.value_at_percentile(50.0) as f64 / 1e3;
        let expect = floor - (rtt_p50_us / v0).log10() * px_per_decade;
        assert!(
            (p50[0] - expect).abs() < 0.5,
            "p50 at {}, expected {expect}",
            p50[0]
        );
        assert!(
            floor - p50[0] > 0.25 * PLOT_H,
            "p50 {} vs floor {floor}",
            p50[0]
        );
        assert!(
            floor - p50[1] > 0.1 * PLOT_H,
            "p50 {} vs floor {floor}",
            p50[1]
        );
        // p50 and p99 are in the legend.
        assert!(
            doc.contains(&format!(
                "rtt: n=20000, p50 {}, p99 ",
                fmt_ns(rtt_p50_us * 1e3)
            )),
            "{doc}"
        );
    }

    #[test]
    fn svg_document() {
        let (a, b) = realistic();
        let doc = document(&a, &b);
        assert!(doc.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(doc.trim_end().ends_with("</svg>"));
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert!(doc.contains("stroke-dasharray"));
        for label in [
            ">0%<",
            ">50%<",
            ">90%<",
            ">99%<",
            ">99.9%<",
            ">99.99%<",
            ">99.999%<",
        ] {
            assert!(doc.contains(label), "missing {label}");
        }
        assert!(doc.contains("meridian &lt;test&gt; &amp; co"));
        assert!(!doc.contains("NaN") && !doc.contains("inf"));
        // Every polyline and mark lies inside the plot area.
        let inside = |x: f64, y: f64| {
            assert!((LEFT - 0.01..=WIDTH - RIGHT + 0.01).contains(&x), "{x}");
            assert!((TOP - 0.01..=TOP + PLOT_H + 0.01).contains(&y), "{y}");
        };
        for line in doc.lines().filter(|l| l.starts_with("<polyline")) {
            let pts = line
                .split("points=\"")
                .nth(1)
                .unwrap()
                .trim_end_matches("\"/>");
            for p in pts.split(' ') {
                let (x, y) = p.split_once(',').unwrap();
                inside(x.parse().unwrap(), y.parse().unwrap());
            }
        }
        for line in doc.lines().filter(|l| l.starts_with("<circle")) {
            inside(attr(line, "cx"), attr(line, "cy"));
        }
        // Percentile labels do not overlap (about 7 px per character at 12 px).
        let xticks: Vec<(f64, usize)> = doc
            .lines()
            .filter(|l| l.starts_with("<text class=\"xtick\""))
            .map(|l| (attr(l, "x"), content(l).chars().count()))
            .collect();
        for w in xticks.windows(2) {
            let room = (w[0].1 + w[1].1) as f64 * 7.0 / 2.0;
            assert!(w[1].0 - w[0].0 > room, "{xticks:?}");
        }
        // The legend sits below the plot and its axis title, inside the document.
        let height = attr(doc.lines().next().unwrap(), "height");
        let legend: Vec<f64> = doc
            .lines()
            .filter(|l| l.starts_with("<text") && l.contains(": n="))
            .map(|l| attr(l, "y"))
            .collect();
        assert_eq!(legend.len(), 2);
        assert!(legend
            .iter()
            .all(|y| *y > TOP + PLOT_H + 40.0 && *y < height));
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
        assert!(doc.contains(">1 ms<"));
        assert!(doc.contains("none: no samples"));
    }
}
