//! `--transport xdp` end to end: two network namespaces joined by a veth pair
//! (meridian-testkit's, as scripts/netns.sh makes them, a name unique to this test process), `meridian serve` in one (`--backend
//! udp`, then `--backend xdp`), the load generator's AF_XDP transport in the other at 20,000
//! requests/s for 2 s over IPv4 and IPv6: no invalid reply, every request accounted for
//! (answered or lost, at most half lost), every reply stamped by the XDP program, and the
//! generator's program detached when it exits. The assertions are on counts, never on rates
//! achieved, so a busy machine does not change the verdict.
//!
//! Needs root, `ip` and bpf(2); skips with a printed reason otherwise. The namespaces are
//! removed by a guard on every path; processes are stopped by PID.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

mod common;

use common::netns::{start_server, Namespaces};
use common::{run_bounded, skip_notice};
use meridian_testkit::netns;

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    if !meridian_testkit::is_root() {
        return Some("needs root (namespaces, XDP, AF_XDP)".into());
    }
    if let Some(why) = netns::unavailable() {
        return Some(why);
    }
    if let Err(e) = meridian::io::xdp::probe() {
        return Some(e);
    }
    None
}

fn loadgen(ns: &Namespaces, target: &str, extra: &[&str], json: &Path) -> Output {
    loadgen_at(
        ns,
        target,
        &["--rate", "20000", "--duration", "2"],
        extra,
        json,
    )
}

/// [`loadgen`] with another `load` (`--rate`, `--duration`).
fn loadgen_at(ns: &Namespaces, target: &str, load: &[&str], extra: &[&str], json: &Path) -> Output {
    let mut c = ns.in_cli(Path::new(env!("CARGO_BIN_EXE_meridian-loadgen")));
    c.args(["--target", target, "--transport", "xdp"])
        .args(["--interface", &format!("{}-c0", ns.name)])
        .args(load)
        .arg("--quiet")
        // Loss under load is the machine's: only invalid replies or losing most fail the run.
        .args(["--timeout-ms", "2000", "--max-loss", "0.5"])
        .arg("--json")
        .arg(json)
        .args(extra);
    run_bounded(c, Duration::from_secs(180))
}

fn check_run(out: &Output, json: &Path, what: &str) {
    let text = std::fs::read_to_string(json).unwrap_or_default();
    assert!(
        out.status.success(),
        "{what}: exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("--json output");
    let run = &v["runs"][0];
    assert_eq!(run["transport"], "xdp", "{what}");
    let count = |key: &str| run[key].as_u64().unwrap_or_else(|| panic!("{what}: {key}"));
    let (sent, valid, stamps) = (count("sent"), count("valid"), count("kernel_rx_stamps"));
    assert_eq!(run["invalid"], 0, "{what}: {run}");
    // 40,000 slots, each sent, skipped (the generator late) or refused (TX ring full).
    let scheduled = sent + count("missed_sends") + count("send_errors");
    assert!((39_999..=40_001).contains(&scheduled), "{what}: {run}");
    assert!(valid > 0, "{what}: {run}");
    assert_eq!(valid + count("lost"), sent, "{what}: {run}");
    assert!(
        run["loss_fraction"].as_f64().unwrap() <= 0.5,
        "{what}: loss {run}"
    );
    assert!(
        stamps >= valid && valid > 0,
        "{what}: every reply carries the XDP stamp ({stamps} of {valid})"
    );
    eprintln!(
        "{what}: sent {sent}, valid {valid}, lost {}, rtt p50 {} ns",
        run["lost"], run["rtt_ns"]["p50"]
    );
}

#[test]
fn xdp_transport_against_udp_and_xdp_backends() {
    if let Some(why) = skip_reason() {
        skip_notice(&format!(
            "xdp_transport_against_udp_and_xdp_backends: {why}"
        ));
        return;
    }
    let ns = Namespaces::up("lgx");
    let dir = std::env::temp_dir().join(format!("loadgen-xdp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = 123;
    for backend in ["udp", "xdp"] {
        let log = dir.join(format!("server-{backend}.log"));
        let mut server = start_server(&ns, backend, port, &log, &[]);
        for (i, (family, target, extra)) in [
            ("IPv4", "10.201.0.1:123", &["--clients", "50"][..]),
            (
                "IPv6, 3 source addresses",
                "[fd00:201::1]:123",
                &["--clients", "40", "--source-cidr", "fd00:201::101/126"][..],
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let what = format!("--backend {backend}, {family}");
            let json = dir.join(format!("{backend}-{i}.json"));
            let out = loadgen(&ns, target, extra, &json);
            check_run(&out, &json, &what);
            // The generator's program is gone with it.
            let dev = format!("{}-c0", ns.name);
            let link = ns
                .pair
                .client
                .run("ip", &["link", "show", &dev], Duration::from_secs(10))
                .stdout;
            assert!(!link.contains("xdp"), "{what}: still attached: {link}");
        }
        // Interleaved requests from frames built here: three clients, one per source
        // address (the server keeps interleaved state per address), 300 requests/s.
        let what = format!("--backend {backend}, --interleaved");
        let json = dir.join(format!("{backend}-interleaved.json"));
        let load = ["--rate", "300", "--duration", "1", "--warmup", "0.5"];
        let extra = [
            "--interleaved",
            "--clients",
            "3",
            "--source-cidr",
            "fd00:201::101/126",
        ];
        let out = loadgen_at(&ns, "[fd00:201::1]:123", &load, &extra, &json);
        assert!(out.status.success(), "{what}: {out:?}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let run = &v["runs"][0];
        let count = |key: &str| run[key].as_u64().unwrap_or_else(|| panic!("{what}: {key}"));
        assert_eq!(run["transport"], "xdp", "{what}");
        assert_eq!(count("invalid"), 0, "{what}: {run}");
        let (answered, interleaved) = (
            count("interleaved_requests_answered"),
            count("interleaved_replies"),
        );
        assert!(answered > 0, "{what}: {run}");
        assert!(interleaved * 10 >= answered * 9, "{what}: {run}");
        eprintln!(
            "{what}: {interleaved} of {answered} replies to interleaved requests interleaved"
        );
        assert!(server.stop().is_some(), "meridian stopped on SIGTERM");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn xdp_transport_refuses_what_it_cannot_serve() {
    if let Some(why) = skip_reason() {
        skip_notice(&format!(
            "xdp_transport_refuses_what_it_cannot_serve: {why}"
        ));
        return;
    }
    // No namespaces needed: these fail before anything is attached.
    let bin = env!("CARGO_BIN_EXE_meridian-loadgen");
    let mut c = Command::new(bin);
    c.args(["--target", "10.201.0.1:123", "--transport", "xdp"])
        .args([
            "--interface",
            "no-such-if0",
            "--dst-mac",
            "02:00:00:00:00:01",
        ])
        .args(["--duration", "0.1", "--quiet"]);
    let out = run_bounded(c, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-if0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
