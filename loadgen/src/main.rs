//! meridian-loadgen: offers NTP load at a fixed rate (open loop) or as fast as the server
//! answers (closed loop), validates every reply, and reports round-trip and server residence
//! time distributions. See `--help`.

mod cli;
mod pacing;
mod plot;
mod report;
mod runner;
mod stats;
mod sweep;
mod sys;
mod transport;
mod validate;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;

use cli::{Args, Settings, Target};
use stats::{RunReport, Stats};
use sweep::{Stop, SweepReport};

/// Everything `--json` writes.
#[derive(Serialize)]
struct JsonOut<'a> {
    loadgen_version: &'static str,
    /// Every run passed (no invalid reply; loss within --max-loss, except in sweeps).
    pass: bool,
    max_loss: f64,
    /// One per target: the measurement (or, with --sweep, its best step).
    runs: &'a [RunReport],
    sweeps: &'a [SweepReport],
}

/// The figures of one target kept for the output files.
struct Measured {
    target: Target,
    stats: Stats,
    report: RunReport,
}

fn main() {
    let args = Args::parse();
    let result = real_main(&args);
    // The AF_XDP transport's program detaches and its socket closes here.
    transport::close_all();
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("meridian-loadgen: error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn real_main(args: &Args) -> Result<bool> {
    let settings = args.settings()?;
    check_outputs(args)?;
    let mut measured = Vec::new();
    let mut sweeps = Vec::new();
    let mut pass = true;
    for target in &settings.targets {
        if args.sweep {
            let (best, rep) = run_sweep(args, &settings, target)?;
            println!("{}", rep.line());
            pass &= rep.stop != Stop::Invalid;
            if let Some(m) = best {
                measured.push(m);
            }
            sweeps.push(rep);
        } else {
            let m = measure(args, &settings, target, args.rate)?;
            print!("{}", report::summary_table(&m.report));
            pass &= m.report.pass;
            measured.push(m);
        }
    }
    write_outputs(args, &measured, &sweeps, pass)?;
    if !pass {
        for m in &measured {
            let r = &m.report;
            if r.invalid > 0 {
                eprintln!("FAIL {}: {} invalid replies", r.target, r.invalid);
            }
            if !args.sweep && r.loss_fraction > args.max_loss {
                eprintln!(
                    "FAIL {}: loss {:.3}% exceeds --max-loss {:.3}%",
                    r.target,
                    r.loss_fraction * 100.0,
                    args.max_loss * 100.0
                );
            }
        }
        for s in sweeps.iter().filter(|s| s.stop == Stop::Invalid) {
            eprintln!("FAIL {}: invalid replies during the sweep", s.target);
        }
    }
    Ok(pass)
}

fn measure(args: &Args, settings: &Settings, target: &Target, rate: f64) -> Result<Measured> {
    let stats = runner::run(settings, target, rate)?;
    let report = RunReport::new(
        &target.name,
        target.addr,
        rate,
        settings.duration.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        settings.threads,
        settings.clients,
        &stats,
        args.max_loss,
    );
    Ok(Measured {
        target: target.clone(),
        stats,
        report,
    })
}

fn run_sweep(
    args: &Args,
    settings: &Settings,
    target: &Target,
) -> Result<(Option<Measured>, SweepReport)> {
    let mut best: Option<Measured> = None;
    let mut steps = Vec::new();
    let mut stop = Stop::Exhausted;
    for rate in sweep::rates(args.rate, &args.sweep_rates, args.sweep_steps) {
        let m = measure(args, settings, target, rate)?;
        print!("{}", report::summary_table(&m.report));
        steps.push(m.report.clone());
        let v = sweep::verdict(&m.stats, args.sweep_max_loss);
        if v.sustained {
            best = Some(m);
        }
        if let Some(s) = v.stop {
            stop = s;
            break;
        }
    }
    let rep = SweepReport {
        target: target.name.clone(),
        addr: target.addr.to_string(),
        loss_threshold: args.sweep_max_loss,
        max_sustained_rate: best.as_ref().map(|b| b.report.offered_rate),
        max_sustained_sent_rate: best.as_ref().map(|b| b.report.sent_rate),
        max_sustained_valid_rate: best.as_ref().map(|b| b.report.valid_rate),
        stop,
        steps,
    };
    Ok((best, rep))
}

/// The output files asked for: (option, path).
fn requested_outputs(args: &Args) -> Vec<(&'static str, &Path)> {
    [
        ("--hgrm", &args.hgrm),
        ("--hgrm-residence", &args.hgrm_residence),
        ("--json", &args.json),
        ("--plot", &args.plot),
    ]
    .into_iter()
    .filter_map(|(opt, p)| p.as_deref().map(|p| (opt, p)))
    .collect()
}

/// Refuses, before anything is measured, output paths that could not be written at the end:
/// a directory that does not exist, a path that is a directory, two options naming one file.
fn check_outputs(args: &Args) -> Result<()> {
    let outputs = requested_outputs(args);
    for (i, &(opt, path)) in outputs.iter().enumerate() {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            bail!(
                "{opt} {}: directory {} does not exist",
                path.display(),
                dir.display()
            );
        }
        if path.is_dir() {
            bail!("{opt} {} is a directory", path.display());
        }
        if let Some((other, _)) = outputs[..i].iter().find(|(_, p)| *p == path) {
            bail!("{other} and {opt} name the same file {}", path.display());
        }
    }
    Ok(())
}

/// The file of one target: `base` as given with one target; with several, the target's name
/// (made file-name safe) inserted before the extension: `dir/stem.ext` → `dir/stem.NAME.ext`.
fn output_path(base: &Path, target: Option<&str>) -> PathBuf {
    let Some(t) = target else {
        return base.to_path_buf();
    };
    let clean: String = t
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.push('.');
    name.push_str(&clean);
    if let Some(ext) = base.extension() {
        name.push('.');
        name.push_str(&ext.to_string_lossy());
    }
    base.with_file_name(name)
}

fn write_outputs(
    args: &Args,
    measured: &[Measured],
    sweeps: &[SweepReport],
    pass: bool,
) -> Result<()> {
    let many = measured.len() > 1;
    type Pick = fn(&Stats) -> &Histogram<u64>;
    let hgrms: [(&Option<PathBuf>, Pick); 2] = [
        (&args.hgrm, |s| &s.rtt),
        (&args.hgrm_residence, |s| &s.residence),
    ];
    for (base, hist) in hgrms {
        let Some(base) = base else { continue };
        for m in measured {
            let path = output_path(base, many.then_some(m.target.name.as_str()));
            std::fs::write(&path, report::hgrm(hist(&m.stats), 1000.0))
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    if let Some(path) = &args.plot {
        let series: Vec<plot::Series<'_>> = measured
            .iter()
            .flat_map(|m| {
                [
                    plot::Series {
                        label: format!("{} round trip", m.target.name),
                        hist: &m.stats.rtt,
                        dashed: false,
                    },
                    plot::Series {
                        label: format!("{} server residence", m.target.name),
                        hist: &m.stats.residence,
                        dashed: true,
                    },
                ]
            })
            .collect();
        let title = match measured.first() {
            Some(m) if m.report.mode == "open" => format!(
                "NTP latency by percentile at {}",
                report::fmt_rate(m.report.offered_rate)
            ),
            _ => "NTP latency by percentile (closed loop)".to_string(),
        };
        std::fs::write(path, plot::svg(&title, &series))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let runs: Vec<RunReport> = measured.iter().map(|m| m.report.clone()).collect();
        let out = JsonOut {
            loadgen_version: env!("CARGO_PKG_VERSION"),
            pass,
            max_loss: args.max_loss,
            runs: &runs,
            sweeps,
        };
        let text = serde_json::to_string_pretty(&out)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths() {
        let p = Path::new("out/lat.hgrm");
        assert_eq!(output_path(p, None), Path::new("out/lat.hgrm"));
        assert_eq!(
            output_path(p, Some("chrony 4")),
            Path::new("out/lat.chrony_4.hgrm")
        );
        assert_eq!(output_path(Path::new("x"), Some("a")), Path::new("x.a"));
        assert_eq!(output_path(Path::new("x"), None), Path::new("x"));
    }

    #[test]
    fn outputs_are_checked_before_the_run() {
        let args = |extra: &[&str]| {
            let mut v = vec!["x", "--target", "127.0.0.1:123"];
            v.extend_from_slice(extra);
            Args::parse_from(v)
        };
        assert!(check_outputs(&args(&[])).is_ok());
        assert!(check_outputs(&args(&["--json", "run.json", "--hgrm", "rtt.hgrm"])).is_ok());
        let e = check_outputs(&args(&["--plot", "no/such/dir/p.svg"])).unwrap_err();
        assert!(e.to_string().contains("no/such/dir"), "{e}");
        let e = check_outputs(&args(&["--json", "."])).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e =
            check_outputs(&args(&["--hgrm", "a.hgrm", "--hgrm-residence", "a.hgrm"])).unwrap_err();
        assert!(e.to_string().contains("same file"), "{e}");
    }
}
