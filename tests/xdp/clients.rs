//! Real clients in the client namespace against the xdp server: `meridian query`, Python
//! ntplib and chronyd over IPv4 and IPv6, and what the client's kernel accepts as a reply.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use meridian_testkit::{skip_notice, VethPair};

use crate::common::{
    chrony_offset, chronyd_query_args, chronyd_xleave_in, counter, parse_reply, python_with_ntplib,
    request, CHRONYD, MERIDIAN,
};
use crate::server::XdpServer;
use crate::{c6, s6, C4, DETACH_WAIT, S4, S6};

const MAX_OFFSET: f64 = 0.05;

/// `meridian query` from the client namespace: every sample answered, by meridian's local
/// clock, with a small offset.
pub fn query_ok(pair: &VethPair, addr: &str, samples: usize) {
    let n = samples.to_string();
    let out = pair.client.run(
        MERIDIAN,
        &[
            "query",
            addr,
            "--json",
            "-n",
            &n,
            "--interval",
            "0.05",
            "--timeout",
            "1",
        ],
        Duration::from_secs(20),
    );
    assert!(out.success(), "meridian query {addr}: {}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("query JSON");
    let list = v[0]["samples"].as_array().expect("samples");
    assert_eq!(list.len(), samples, "{v}");
    for s in list {
        assert_eq!(s["status"], "ok", "{s}");
        assert_eq!(s["stratum"], 10, "{s}");
        assert_eq!(s["refid"], "127.127.1.1", "{s}");
        let offset = s["offset"].as_f64().unwrap();
        assert!(offset.abs() < MAX_OFFSET, "offset {offset}: {s}");
    }
}

const NTPLIB_SCRIPT: &str = r#"
import json, sys, ntplib
r = ntplib.NTPClient().request(sys.argv[1], port=int(sys.argv[2]), version=4, timeout=2)
print(json.dumps({"stratum": r.stratum, "mode": r.mode, "offset": r.offset}))
"#;

fn ntplib_ok(pair: &VethPair, py: &str, host: &str, port: u16) {
    let out = pair.client.run(
        py,
        &["-c", NTPLIB_SCRIPT, host, &port.to_string()],
        Duration::from_secs(20),
    );
    assert!(out.success(), "ntplib {host}: {}", out.all());
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("ntplib JSON");
    assert_eq!(v["stratum"], 10, "{v}");
    assert_eq!(v["mode"], 4, "{v}");
    assert!(v["offset"].as_f64().unwrap().abs() < MAX_OFFSET, "{v}");
}

fn chronyd_ok(pair: &VethPair, host: &str, port: u16) -> f64 {
    let pid_path =
        std::env::temp_dir().join(format!("meridian-xdp-chronyd-{}.pid", pair.client.name()));
    let args = chronyd_query_args(host, port, &pid_path);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = pair.client.run(CHRONYD, &args, Duration::from_secs(25));
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let offset =
        chrony_offset(&text).unwrap_or_else(|| panic!("chronyd printed no offset: {}", out.all()));
    assert!(
        offset.abs() < MAX_OFFSET,
        "chronyd offset {offset}: {}",
        out.all()
    );
    offset
}

pub fn clients(mode: &str) {
    let pair = setup!();
    let server = XdpServer::must_start(&pair, mode, &["10.203.0.1:123", "[fd00:203::1]:123"]);
    let mut expected = 0;
    for addr in ["10.203.0.1", "[fd00:203::1]"] {
        query_ok(&pair, addr, 4);
        expected += 4;
    }
    match python_with_ntplib() {
        Ok(py) => {
            for host in ["10.203.0.1", S6] {
                ntplib_ok(&pair, &py, host, 123);
                expected += 1;
            }
        }
        Err(e) => skip_notice(&format!("part: {e}")),
    }
    if Path::new(CHRONYD).exists() {
        for host in ["10.203.0.1", S6] {
            let off = chronyd_ok(&pair, host, 123);
            eprintln!("{mode}: chronyd via {host}: offset {off:+.6} s");
            expected += 1;
        }
    } else {
        skip_notice(&format!("part: {CHRONYD} missing"));
    }
    assert!(
        pair.server.xdp_attached("va"),
        "program attached while serving"
    );
    let (report, log) = server.stop();
    assert_eq!(report["backend"], "xdp", "{report}");
    let answered = counter(&report, &["total", "answered"]);
    assert!(
        answered >= expected,
        "answered {answered} < {expected}: {report}"
    );
    assert_eq!(counter(&report, &["total", "dropped_total"]), 0, "{report}");
    assert_eq!(
        counter(&report, &["total", "rx_timestamps", "driver"]),
        counter(&report, &["total", "received"]),
        "every request stamped by the XDP program: {report}"
    );
    assert!(
        log.contains(&format!("xdp_mode=\"{mode}\"")),
        "attached in {mode} mode: {log}"
    );
    // A transmit timestamp was read back from the AF_XDP TX metadata.
    let tx_line = log
        .lines()
        .find(|l| l.contains("first TX completion timestamp"))
        .unwrap_or_else(|| panic!("no TX completion timestamp logged: {log}"));
    eprintln!("{mode}: {tx_line}");
    // Both stamps are CLOCK_TAI converted with the same offset: the reply left after the
    // request arrived, and not long after.
    let rx_to_tx_us: f64 = tx_line
        .split("rx_to_tx_us=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rx_to_tx_us in {tx_line}"));
    assert!(
        (0.0..100_000.0).contains(&rx_to_tx_us),
        "TX stamp {rx_to_tx_us} µs after RX: {tx_line}"
    );
    assert!(log.contains("program detached"), "{log}");
    assert!(
        pair.server.xdp_detached_within("va", DETACH_WAIT),
        "program detached after exit"
    );
}

/// chronyd with `xleave` in the client namespace, polling every 1/16 s for 6 s: after its
/// first exchange every reply is interleaved, carrying the transmit time the AF_XDP TX
/// completion stamped, and the offsets are those of one clock.
pub fn chronyd_interleaved(mode: &str) {
    let pair = setup!();
    if !Path::new(CHRONYD).exists() {
        return skip_notice(&format!("chronyd interleaved over xdp: {CHRONYD} missing"));
    }
    let server = XdpServer::must_start(&pair, mode, &["10.203.0.1:123"]);
    let target = SocketAddr::from((S4, 123));
    let lines = chronyd_xleave_in(Some(pair.client.name()), target, 6)
        .unwrap_or_else(|e| panic!("chronyd in the client namespace: {e}"));
    let (report, _) = server.stop();
    assert!(lines.len() >= 20, "{mode}: {} measurements", lines.len());
    let later_basic = lines.iter().skip(2).filter(|m| !m.interleaved).count();
    assert_eq!(
        later_basic, 0,
        "{mode}: basic replies after the start: {lines:?}"
    );
    let interleaved = lines.iter().filter(|m| m.interleaved).count() as u64;
    assert!(
        counter(&report, &["total", "interleaved"]) >= interleaved,
        "{report}"
    );
    // The interleaved replies carried the completion stamps of the earlier replies (kernel
    // quality in copy mode, as on veth; hardware with zero copy), never the estimate.
    let stamped: u64 = ["kernel", "driver", "hardware"]
        .iter()
        .map(|q| counter(&report, &["total", "tx_timestamps", q]))
        .sum();
    assert!(
        stamped >= interleaved,
        "interleaved replies carry completion stamps: {report}"
    );
    // The same host clock on both sides: a wrong transmit time would be off by the poll
    // interval (62.5 ms) or the reply's delay; these are far below either.
    let offsets = crate::common::interleaved_offsets(&lines);
    let median = offsets[offsets.len() / 2];
    assert!(
        median < 0.000_5,
        "{mode}: median |offset| {median} s: {lines:?}"
    );
    eprintln!(
        "{mode}: chronyd xleave over xdp: {} measurements, {interleaved} interleaved, median \
         |offset| {:.2} µs",
        lines.len(),
        median * 1e6
    );
}

pub fn answered_source_and_checksums_seen_by_the_client_kernel() {
    // The client's kernel validated our checksums (a wrong one would be dropped silently), and
    // the reply came from the address and port the request went to.
    let pair = setup!();
    let server = XdpServer::must_start(&pair, "generic", &["0.0.0.0:123", "[::]:123"]);
    let froms = pair.client.on_thread(|| {
        let mut froms = Vec::new();
        for (local, remote) in [
            (SocketAddr::from((C4, 0)), SocketAddr::from((S4, 123))),
            (SocketAddr::from((c6(), 0)), SocketAddr::from((s6(), 123))),
        ] {
            let s = UdpSocket::bind(local).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 100];
            for _ in 0..6 {
                s.send_to(&request(4, 3, 7), remote).unwrap();
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    assert_eq!(n, 48);
                    assert_eq!(parse_reply(&buf[..n]).origin, 7);
                    froms.push(from);
                    break;
                }
            }
        }
        froms
    });
    assert_eq!(
        froms,
        vec![SocketAddr::from((S4, 123)), SocketAddr::from((s6(), 123))],
        "wildcard listen answers from the address used"
    );
    let (report, _) = server.stop();
    assert_eq!(counter(&report, &["total", "answered"]), 2, "{report}");
}
