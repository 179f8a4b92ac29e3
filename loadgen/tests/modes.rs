//! Closed loop, warm-up, several targets, progress lines and the rate sweep, against small
//! NTP servers written here (127.0.0.1, ephemeral ports, bounded runs). The assertions are on
//! what was counted, on both sides, never on rates or durations achieved: a busy machine
//! changes how many requests go out, not whether the figures add up.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{check_progress_adds_up, count, loadgen, NtpServer};

#[test]
fn closed_loop_with_warmup() {
    let server = NtpServer::start();
    let target = server.addr();
    let (out, v) = loadgen(&[
        "--target",
        &target,
        "--rate",
        "0",
        "--duration",
        "0.5",
        // The worker's first requests go out as soon as it runs: a second of warm-up leaves it
        // all that time to get there.
        "--warmup",
        "1",
        "--clients",
        "2",
        "--window",
        "2",
        "--timeout-ms",
        "10000",
    ]);
    assert!(out.status.success(), "{out:?}");
    let run = &v["runs"][0];
    assert_eq!(run["mode"], "closed");
    assert_eq!(run["invalid"], 0);
    let warmup_sent = count(run, "warmup_sent");
    assert!(warmup_sent > 0, "{run}");
    let (sent, valid) = (count(run, "sent"), count(run, "valid"));
    assert!(valid > 0, "{run}");
    // At most clients × window requests are in flight: everything sent was answered.
    assert_eq!(count(run, "lost"), 0, "{run}");
    assert_eq!(sent, valid, "{run}");
    // The server answered the warm-up's requests and the measured ones, and only the measured
    // ones were counted.
    let served = server.stop();
    assert_eq!(served.answered, warmup_sent + sent, "{served:?} {run}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    check_progress_adds_up(&stderr, &target, run);
}

#[test]
fn progress_lines_add_up_even_in_a_run_shorter_than_a_second() {
    let server = NtpServer::start();
    let target = format!("short={}", server.addr());
    let (out, v) = loadgen(&[
        "--target",
        &target,
        "--rate",
        "1000",
        "--duration",
        "0.3",
        "--timeout-ms",
        "10000",
        "--max-loss",
        "1",
    ]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // However the run went, its last line (`end`) is printed and the lines add up.
    let lines = check_progress_adds_up(&stderr, "short", &v["runs"][0]);
    assert!(lines >= 1);
    // --quiet prints none.
    let (out, _) = loadgen(&[
        "--target",
        &target,
        "--rate",
        "1000",
        "--duration",
        "0.3",
        "--max-loss",
        "1",
        "--quiet",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(common::progress_lines(&String::from_utf8_lossy(&out.stderr), "short").is_empty());
}

#[test]
fn several_targets_run_one_after_another() {
    let a = NtpServer::start();
    let b = NtpServer::start();
    let (out, v) = loadgen(&[
        "--target",
        &format!("first={}", a.addr()),
        "--target",
        &format!("second={}", b.addr()),
        "--rate",
        "300",
        "--duration",
        "0.4",
        "--threads",
        "2",
        "--clients",
        "4",
        "--timeout-ms",
        "10000",
        // Late slots are sent, not skipped: requests go out however busy the machine.
        "--max-lag-us",
        "10000000",
        "--max-loss",
        "0.5",
    ]);
    assert!(out.status.success(), "{out:?}");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["target"], "first");
    assert_eq!(runs[1]["target"], "second");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (r, server) in runs.iter().zip([a, b]) {
        assert_eq!(r["invalid"], 0);
        assert_eq!(r["threads"], 2);
        let (sent, valid) = (count(r, "sent"), count(r, "valid"));
        // 300/s for 0.4 s: 120 slots, each sent, skipped (late) or refused.
        let scheduled = sent + count(r, "missed_sends") + count(r, "send_errors");
        assert!((119..=121).contains(&scheduled), "{r}");
        assert!(valid > 0, "{r}");
        assert_eq!(valid + count(r, "lost"), sent, "{r}");
        // Each target got its own run's requests, no other.
        let served = server.stop();
        assert_eq!(served.received, served.answered);
        assert!(
            served.answered >= valid && served.received <= sent,
            "{served:?} {r}"
        );
        check_progress_adds_up(&stderr, r["target"].as_str().unwrap(), r);
    }
}

#[test]
fn sweep_stops_at_the_first_lossy_step() {
    // A capacity that runs out after a number of requests, not a rate: the server answers the
    // first 150 requests and none after. With nothing skipped (--max-lag-us 10 s: late slots
    // are sent, not skipped), the steps send 50, 100, 200, ... requests: 100/s and 200/s pass,
    // 400/s loses all but none of its requests, and the sweep stops there.
    let server = NtpServer::with_budget(150);
    let rates = [100.0, 200.0, 400.0, 800.0];
    let (out, v) = loadgen(&[
        "--target",
        &format!("limited={}", server.addr()),
        "--sweep",
        "--sweep-rates",
        "100,200,400,800",
        "--duration",
        "0.5",
        "--timeout-ms",
        "3000",
        "--max-lag-us",
        "10000000",
        "--quiet",
    ]);
    // Loss ends a sweep; only invalid replies fail it.
    assert!(out.status.success(), "{out:?}");
    let sweep = &v["sweeps"][0];
    let steps = sweep["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{sweep}");
    // What the sweep's verdict must have been on each step, from the step's own counts.
    let threshold = sweep["loss_threshold"].as_f64().unwrap();
    let lossy = |s: &serde_json::Value| {
        let sent = count(s, "sent");
        sent == 0 || count(s, "lost") as f64 / sent as f64 >= threshold
    };
    let generator_limited = |s: &serde_json::Value| {
        let skipped = count(s, "missed_sends") + count(s, "send_errors");
        skipped as f64 / (count(s, "sent") + skipped) as f64 > 0.05
    };
    let mut cumulative = 0;
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["offered_rate"], rates[i], "{sweep}");
        assert_eq!(s["invalid"], 0, "{s}");
        let before = cumulative;
        cumulative += count(s, "sent");
        if i + 1 < steps.len() {
            assert!(
                !lossy(s) && !generator_limited(s),
                "step {i} should have ended it: {s}"
            );
        } else {
            assert!(
                lossy(s) || generator_limited(s),
                "the last step did not end it: {s}"
            );
        }
        if before >= 150 {
            // The budget was spent before this step: nothing of it was answered.
            assert_eq!(count(s, "valid"), 0, "{s}");
        }
    }
    // The sweep ends at the latest on the step that overran the budget.
    assert!(
        cumulative > 150 || generator_limited(steps.last().unwrap()),
        "{sweep}"
    );
    let last = steps.last().unwrap();
    let (stop, best) = if lossy(last) {
        let best = steps.len().checked_sub(2).map(|i| rates[i]);
        ("loss", best)
    } else {
        ("generator_limited", Some(rates[steps.len() - 1]))
    };
    assert_eq!(sweep["stop"], stop, "{sweep}");
    assert_eq!(sweep["max_sustained_rate"].as_f64(), best, "{sweep}");
    // With no slot skipped, the budget runs out in the third step exactly.
    if steps.iter().all(|s| count(s, "missed_sends") == 0) {
        assert_eq!(steps.len(), 3, "{sweep}");
        assert_eq!(best, Some(200.0));
    }
    // The best step's figures are the run reported, and the line names it.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("sweep limited (127.0.0.1:"), "{stdout}");
    if let Some(best) = best {
        assert_eq!(v["runs"][0]["offered_rate"], best);
        assert!(
            stdout.contains(&format!("{best:.0} req/s offered")),
            "{stdout}"
        );
    }
    assert_eq!(server.stop().answered, 150.min(cumulative));
}

#[test]
fn bad_arguments_are_refused() {
    let out = common::run_bounded(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_meridian-loadgen"));
            c.args(["--target", "127.0.0.1:9", "--threads", "0"]);
            c
        },
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
}
