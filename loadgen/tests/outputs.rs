//! Output files: exactly the ones asked for, at the paths given (relative to the current
//! directory), nothing else; a path that cannot be written is refused before the run.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::NtpServer;

/// A fresh, empty working directory for one test.
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-out-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap();
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// The load generator run in `cwd`.
fn loadgen_in(cwd: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meridian-loadgen"));
    c.current_dir(cwd).args(args);
    let out = common::run_bounded(c, Duration::from_secs(120));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The number of values in an `.hgrm` text (its footer's total count).
fn hgrm_total(text: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("#[Max "))
        .unwrap_or_else(|| panic!("no footer in {text}"));
    let n = line.split("Total count    =").nth(1).expect("total count");
    n.trim().trim_end_matches(']').trim().parse().unwrap()
}

#[test]
fn only_the_requested_files_at_the_given_relative_paths() {
    let server = NtpServer::start();
    let dir = workdir("relative");
    std::fs::create_dir(dir.join("plots")).unwrap();
    let out = loadgen_in(
        &dir,
        &[
            "--target",
            &server.addr(),
            "--rate",
            "200",
            "--duration",
            "0.3",
            "--timeout-ms",
            "5000",
            // Late slots are sent, not skipped: requests go out however busy the machine.
            "--max-lag-us",
            "10000000",
            "--max-loss",
            "1",
            "--quiet",
            "--hgrm",
            "rtt.hgrm",
            "--json",
            "run.json",
            "--plot",
            "plots/latency.svg",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    // No residence histogram unless asked for, nothing anywhere else.
    assert_eq!(
        files_under(&dir),
        set(&["plots/latency.svg", "rtt.hgrm", "run.json"])
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let valid = v["runs"][0]["valid"].as_u64().unwrap();
    let rtt = std::fs::read_to_string(dir.join("rtt.hgrm")).unwrap();
    assert_eq!(hgrm_total(&rtt), valid);
    assert!(std::fs::read_to_string(dir.join("plots/latency.svg"))
        .unwrap()
        .starts_with("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn residence_histogram_only_when_asked_and_one_file_per_target() {
    let a = NtpServer::start();
    let b = NtpServer::start();
    let dir = workdir("residence");
    let out = loadgen_in(
        &dir,
        &[
            "--target",
            &format!("first={}", a.addr()),
            "--target",
            &format!("second={}", b.addr()),
            "--rate",
            "200",
            "--duration",
            "0.3",
            "--timeout-ms",
            "5000",
            // Late slots are sent, not skipped: requests go out however busy the machine.
            "--max-lag-us",
            "10000000",
            "--max-loss",
            "1",
            "--quiet",
            "--hgrm-residence",
            "res.hgrm",
            "--json",
            "run.json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        files_under(&dir),
        set(&["res.first.hgrm", "res.second.hgrm", "run.json"])
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    for (i, name) in ["first", "second"].iter().enumerate() {
        let run = &v["runs"][i];
        assert_eq!(run["target"], *name);
        let text = std::fs::read_to_string(dir.join(format!("res.{name}.hgrm"))).unwrap();
        // The residence distribution: one value per valid reply, the summary's max as its max.
        assert_eq!(hgrm_total(&text), run["valid"].as_u64().unwrap(), "{run}");
        let max_us = run["residence_ns"]["max"].as_u64().unwrap() as f64 / 1e3;
        assert!(
            text.contains(&format!("#[Max     = {max_us:>12.3}")),
            "max {max_us} µs not in\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unwritable_output_is_refused_before_the_run() {
    let server = NtpServer::start();
    let dir = workdir("refused");
    let out = loadgen_in(
        &dir,
        &[
            "--target",
            &server.addr(),
            "--rate",
            "200",
            "--duration",
            "0.3",
            "--json",
            "missing/run.json",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--json missing/run.json"), "{stderr}");
    // Nothing was measured (no summary, no request reached the server), nothing written.
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(server.stop().received, 0);
    assert!(files_under(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
