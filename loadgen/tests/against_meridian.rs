//! The load generator against a real `meridian serve --workers 4` on loopback: 20,000
//! requests/s for 3 s with the default clients, no invalid reply, every request accounted for,
//! every worker of the server answering, the progress lines adding up to the summary, and
//! every output file written and readable.
//!
//! Nothing here depends on how busy the machine is: the assertions are on what was counted
//! (the schedule's slots, requests sent/answered/lost, lines printed), never on rates or
//! latencies achieved; the time limits only bound a hang.

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{answers, free_port, meridian_binary, ChildGuard};

#[test]
fn twenty_thousand_per_second_against_meridian() {
    let bin = meridian_binary();
    let dir = std::env::temp_dir().join(format!("loadgen-meridian-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port(true, false).expect("a free loopback port");
    let server_out = dir.join("server.stdout");
    let server_err = dir.join("server.stderr");
    let mut server = ChildGuard::terminating(
        Command::new(&bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--workers",
                "4",
            ])
            .stdin(Stdio::null())
            .stdout(File::create(&server_out).unwrap())
            .stderr(File::create(&server_err).unwrap())
            .spawn()
            .expect("start meridian serve"),
        "meridian serve",
    );
    let server_log = || std::fs::read_to_string(&server_err).unwrap_or_default();

    // Ready when it answers (bounded: 60 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(port) {
        if let Some(status) = server.try_wait() {
            panic!("meridian serve exited early ({status}):\n{}", server_log());
        }
        assert!(
            Instant::now() < deadline,
            "meridian serve (pid {}) did not answer on 127.0.0.1:{port} within 60 s:\n{}",
            server.pid(),
            server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let json = dir.join("run.json");
    let hgrm = dir.join("rtt.hgrm");
    let residence = dir.join("residence.hgrm");
    let svg = dir.join("latency.svg");
    let loadgen_out = dir.join("loadgen.stdout");
    let loadgen_err = dir.join("loadgen.stderr");
    let mut loadgen = ChildGuard::terminating(
        Command::new(env!("CARGO_BIN_EXE_meridian-loadgen"))
            .args([
                "--target",
                &format!("meridian=127.0.0.1:{port}"),
                "--rate",
                "20000",
                "--duration",
                "3",
                "--timeout-ms",
                "2000",
                // Loss under load is the machine's, not a fault: only invalid replies or
                // losing most requests fail the run.
                "--max-loss",
                "0.5",
            ])
            .arg("--json")
            .arg(&json)
            .arg("--hgrm")
            .arg(&hgrm)
            .arg("--hgrm-residence")
            .arg(&residence)
            .arg("--plot")
            .arg(&svg)
            .stdin(Stdio::null())
            .stdout(File::create(&loadgen_out).unwrap())
            .stderr(File::create(&loadgen_err).unwrap())
            .spawn()
            .expect("start meridian-loadgen"),
        "meridian-loadgen",
    );
    let status = loadgen
        .wait_timeout(Duration::from_secs(180))
        .expect("meridian-loadgen finished within 180 s");
    let stdout = std::fs::read_to_string(&loadgen_out).unwrap();
    let stderr = std::fs::read_to_string(&loadgen_err).unwrap();
    println!("{stdout}");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
            .expect("JSON parses");
    let run = &v["runs"][0];
    assert_eq!(run["invalid"], 0, "invalid replies: {run}");
    let count = |key: &str| run[key].as_u64().unwrap_or_else(|| panic!("{key}: {run}"));
    let (sent, valid, lost) = (count("sent"), count("valid"), count("lost"));
    // Every slot of the 60,000-slot schedule is accounted for: sent, skipped because the
    // generator was late, or refused by the kernel (how many of each depends on the load).
    let scheduled = sent + count("missed_sends") + count("send_errors");
    assert!((59_999..=60_001).contains(&scheduled), "{run}");
    assert!(sent > 0 && valid > 0, "{run}");
    // Every request sent ended answered or lost, and at most half were lost.
    assert_eq!(valid + lost, sent, "{run}");
    assert!(run["loss_fraction"].as_f64().unwrap() <= 0.5, "{run}");
    for key in ["p50", "p90", "p99", "p99.9", "p99.99", "max"] {
        assert!(run["rtt_ns"][key].as_u64().unwrap() > 0, "rtt {key}");
        assert!(run["residence_ns"][key].is_u64(), "residence {key}");
    }
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");

    // The summary table.
    for col in [
        "p50",
        "p90",
        "p99",
        "p99.9",
        "p99.99",
        "max",
        "round trip",
        "residence",
    ] {
        assert!(stdout.contains(col), "summary lacks {col}:\n{stdout}");
    }
    // Progress lines: they parse, end with one `end` line, and add up to the totals (how many
    // per-second lines there are depends on when the printing thread got to run).
    common::check_progress_adds_up(&stderr, "meridian", run);

    // HdrHistogram percentile files: rows of 3-4 numbers, the 100 % row, the footer.
    for path in [hgrm.clone(), residence.clone()] {
        let text = std::fs::read_to_string(&path).expect("hgrm written");
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
            .collect();
        assert!(!rows.is_empty(), "{}", path.display());
        assert!(rows.iter().all(|r| r.len() == 3 || r.len() == 4));
        assert!(rows
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][2] <= w[1][2]));
        let last = rows.last().unwrap();
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2] as u64, run["valid"].as_u64().unwrap());
        assert!(text.contains("#[Mean    ="));
        assert!(text.contains("#[Buckets ="));
    }
    let plot = std::fs::read_to_string(&svg).expect("svg written");
    assert!(plot.starts_with("<svg") && plot.contains("<polyline") && plot.contains("99.9%"));

    // The default clients: 64, each from its own loopback address.
    assert!(
        stdout.contains("\n   clients: 64 over 127.0.0.1–127.0.0.64\n"),
        "{stdout}"
    );
    assert_eq!(run["clients"], 64);
    assert_eq!(run["sources"]["first"], "127.0.0.1", "{run}");
    assert_eq!(run["sources"]["last"], "127.0.0.64", "{run}");
    assert_eq!(run["sources"]["count"], 64, "{run}");

    // The server's own counts (its report on stdout when it stops): every one of its 4
    // workers answered, and together at least every valid reply we saw.
    let stopped = server.stop_within(Duration::from_secs(60));
    assert!(stopped.is_some_and(|s| s.success()), "{}", server_log());
    let counters = std::fs::read_to_string(&server_out).unwrap();
    let c: serde_json::Value = serde_json::from_str(counters.trim())
        .unwrap_or_else(|e| panic!("server report {counters:?}: {e}"));
    let workers = c["workers"].as_array().expect("per-worker counts");
    assert_eq!(workers.len(), 4, "{c}");
    for w in workers {
        assert!(
            w["answered"].as_u64().unwrap() > 0,
            "a worker got no client: {c}"
        );
    }
    assert!(
        c["total"]["answered"].as_u64().unwrap() >= run["valid"].as_u64().unwrap(),
        "{c}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
