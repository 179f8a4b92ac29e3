//! Real clients against a real server: meridian's own `query`, Python ntplib and chronyd, over
//! IPv4 and IPv6 loopback, for every backend.

// Integration tests and benchmarks run on real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{
    backends, chrony_offset, chronyd_query, counter, ipv6_available, ntplib_request,
    python_with_ntplib, run_meridian, Server, ServerOpts, CHRONYD,
};

/// Offsets and delays on loopback are microseconds; this bound only catches real errors
/// (wrong epoch, wrong field, swapped timestamps).
const MAX_OFFSET: f64 = 0.05;
const MAX_DELAY: f64 = 0.05;

#[derive(Clone, Copy, Debug)]
enum Family {
    V4,
    V6,
}

fn opts(backend: &str, family: Family) -> ServerOpts {
    match family {
        Family::V4 => ServerOpts::new(backend),
        Family::V6 => ServerOpts::new(backend).ipv6_only(),
    }
}

/// Checks one server entry of `meridian query --json`.
fn check_query_entry(entry: &serde_json::Value, expect_addr: SocketAddr, samples: usize) {
    assert_eq!(
        entry["address"].as_str(),
        Some(expect_addr.to_string().as_str()),
        "address in {entry}"
    );
    let list = entry["samples"].as_array().expect("samples array");
    assert_eq!(list.len(), samples, "samples in {entry}");
    for s in list {
        assert_eq!(s["status"], "ok", "sample {s}");
        assert_eq!(s["stratum"], 10, "sample {s}");
        assert_eq!(s["refid"], "127.127.1.1", "sample {s}");
        assert_eq!(s["leap"], "none", "sample {s}");
        let offset = s["offset"].as_f64().expect("offset");
        let delay = s["delay"].as_f64().expect("delay");
        assert!(offset.abs() < MAX_OFFSET, "offset {offset} in {s}");
        assert!((0.0..MAX_DELAY).contains(&delay), "delay {delay} in {s}");
    }
    assert!(entry["best"].as_u64().is_some(), "best in {entry}");
}

fn meridian_query(family: Family) {
    if matches!(family, Family::V6) && !ipv6_available() {
        skip!("IPv6 loopback [::1] is not available");
    }
    for backend in backends() {
        let server = Server::must_start(&opts(backend, family));
        let addr = server.addr();
        let out = run_meridian(
            &[
                "query",
                &addr.to_string(),
                "--json",
                "-n",
                "4",
                "--interval",
                "0.05",
                "--timeout",
                "1",
            ],
            Duration::from_secs(15),
        );
        assert!(out.success(), "query failed: {}", out.all());
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("query output is not JSON ({e}): {}", out.all()));
        let arr = v.as_array().expect("an array of servers");
        assert_eq!(arr.len(), 1);
        check_query_entry(&arr[0], addr, 4);
        let stopped = server.stop();
        assert_eq!(counter(&stopped.report, &["total", "answered"]), 4);
        eprintln!("{backend} {family:?}: meridian query ok");
    }
}

#[test]
fn meridian_query_ipv4() {
    meridian_query(Family::V4);
}

#[test]
fn meridian_query_ipv6() {
    meridian_query(Family::V6);
}

/// One dual-stack server must answer on both families from the same process.
#[test]
fn meridian_query_dual_stack() {
    if !ipv6_available() {
        skip!("IPv6 loopback [::1] is not available");
    }
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend).dual());
        for addr in [server.addr4(), server.addr6()] {
            let out = run_meridian(
                &[
                    "query",
                    &addr.to_string(),
                    "--json",
                    "-n",
                    "2",
                    "--interval",
                    "0.05",
                ],
                Duration::from_secs(15),
            );
            assert!(out.success(), "query {addr} failed: {}", out.all());
            let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
            check_query_entry(&v[0], addr, 2);
        }
        let stopped = server.stop();
        assert_eq!(counter(&stopped.report, &["total", "answered"]), 4);
    }
}

#[test]
fn meridian_query_compare_two_servers() {
    for backend in backends() {
        let a = Server::must_start(&ServerOpts::new(backend));
        let b = Server::must_start(&ServerOpts::new(backend));
        let (aa, ba) = (a.addr(), b.addr());
        let out = run_meridian(
            &[
                "query",
                &aa.to_string(),
                "--compare",
                &ba.to_string(),
                "--json",
                "-n",
                "2",
                "--interval",
                "0.05",
            ],
            Duration::from_secs(15),
        );
        assert!(out.success(), "query --compare failed: {}", out.all());
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        let arr = v.as_array().expect("array");
        assert_eq!(arr.len(), 2, "both servers in {v}");
        check_query_entry(&arr[0], aa, 2);
        check_query_entry(&arr[1], ba, 2);

        // The text table names both too.
        let out = run_meridian(
            &[
                "query",
                &aa.to_string(),
                "--compare",
                &ba.to_string(),
                "-n",
                "1",
            ],
            Duration::from_secs(15),
        );
        assert!(
            out.success(),
            "query --compare (text) failed: {}",
            out.all()
        );
        for addr in [aa, ba] {
            assert!(
                out.stdout.contains(&addr.to_string()),
                "{addr} missing from the table:\n{}",
                out.stdout
            );
        }
        for s in [a, b] {
            let r = s.stop().report;
            assert_eq!(counter(&r, &["total", "answered"]), 3, "report {r}");
        }
    }
}

/// When one of the compared servers does not answer, the others are still printed and the
/// exit status says something failed.
#[test]
fn meridian_query_compare_with_a_dead_server() {
    let server = Server::must_start(&ServerOpts::new("udp"));
    let dead_port = common::free_port(true, false).expect("free port");
    let dead = format!("127.0.0.1:{dead_port}");
    let out = run_meridian(
        &[
            "query",
            &server.addr().to_string(),
            "--compare",
            &dead,
            "--json",
            "-n",
            "1",
            "--timeout",
            "0.3",
        ],
        Duration::from_secs(15),
    );
    assert!(
        out.status.is_some() && !out.success(),
        "a server without answers must fail the query: {}",
        out.all()
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    check_query_entry(&v[0], server.addr(), 1);
    assert_eq!(v[1]["samples"][0]["status"], "error", "{v}");
    assert!(v[1]["best"].is_null(), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Python ntplib

fn ntplib(family: Family) {
    if matches!(family, Family::V6) && !ipv6_available() {
        skip!("IPv6 loopback [::1] is not available");
    }
    let py = match python_with_ntplib() {
        Ok(p) => p,
        Err(e) => skip!("{e}"),
    };
    for backend in backends() {
        let server = Server::must_start(&opts(backend, family));
        let addr = server.addr();
        for version in [4u8, 3] {
            let v = ntplib_request(&py, addr, version);
            assert_eq!(v["stratum"], 10, "{v}");
            assert_eq!(v["version"], version, "{v}");
            assert_eq!(v["mode"], 4, "{v}");
            assert_eq!(v["leap"], 0, "{v}");
            assert_eq!(v["ref_id"], "127.127.1.1", "{v}");
            let offset = v["offset"].as_f64().expect("offset");
            let delay = v["delay"].as_f64().expect("delay");
            assert!(offset.abs() < MAX_OFFSET, "offset {offset}: {v}");
            assert!(delay.abs() < MAX_DELAY, "delay {delay}: {v}");
            eprintln!("{backend} {family:?}: ntplib v{version} offset {offset:+.6} s");
        }
        let r = server.stop().report;
        assert_eq!(counter(&r, &["total", "answered"]), 2, "report {r}");
    }
}

#[test]
fn ntplib_ipv4() {
    ntplib(Family::V4);
}

#[test]
fn ntplib_ipv6() {
    ntplib(Family::V6);
}

// ---------------------------------------------------------------------------------------------
// chronyd as a one-shot client

fn chronyd(family: Family) {
    if !Path::new(CHRONYD).exists() {
        skip!("{CHRONYD} is missing (apt-get install chrony)");
    }
    if !common::is_root() {
        skip!("chronyd -Q needs root");
    }
    if matches!(family, Family::V6) && !ipv6_available() {
        skip!("IPv6 loopback [::1] is not available");
    }
    for backend in backends() {
        let server = Server::must_start(&opts(backend, family));
        let addr = server.addr();
        let out = chronyd_query(addr);
        let text = format!("{}\n{}", out.stdout, out.stderr);
        let offset = chrony_offset(&text)
            .unwrap_or_else(|| panic!("chronyd printed no offset: {}", out.all()));
        assert!(
            offset.abs() < MAX_OFFSET,
            "chronyd measured {offset} s: {}",
            out.all()
        );
        let r = server.stop().report;
        assert!(
            counter(&r, &["total", "answered"]) >= 1,
            "chronyd got answers, yet the report says none: {r}"
        );
        assert_eq!(counter(&r, &["total", "dropped_total"]), 0, "report {r}");
        eprintln!("{backend} {family:?}: chronyd offset {offset:+.6} s");
    }
}

#[test]
fn chronyd_ipv4() {
    chronyd(Family::V4);
}

#[test]
fn chronyd_ipv6() {
    chronyd(Family::V6);
}

#[test]
fn chrony_offset_parser() {
    let t = "2026-11-21T05:34:51Z System clock wrong by -0.000004 seconds (ignored)\n";
    assert_eq!(chrony_offset(t), Some(-0.000004));
    assert_eq!(
        chrony_offset("No suitable source for synchronisation"),
        None
    );
}

/// Listening on 0.0.0.0 / [::] makes the backend address each reply with PKTINFO from the
/// request's destination; a connected client socket only accepts a reply from exactly the
/// address and port it sent to. (Only loopback addresses are sent to.)
#[test]
fn wildcard_listeners_reply_from_the_request_destination() {
    for backend in backends() {
        let mut opts = ServerOpts::new(backend);
        opts.wildcard = true;
        if ipv6_available() {
            opts.ipv6 = true;
        } else {
            common::skip_notice("IPv6 part: [::1] is not available");
        }
        let server = Server::must_start(&opts);
        let mut targets = vec![server.addr4()];
        targets.extend(server.v6);
        for t in &targets {
            let r = common::assert_answers(*t);
            assert_eq!(r.stratum, 10, "{backend} {t}");
            let out = run_meridian(
                &["query", &t.to_string(), "--json", "-n", "1"],
                Duration::from_secs(15),
            );
            assert!(out.success(), "{backend}: query {t}: {}", out.all());
        }
        let r = server.stop().report;
        assert_eq!(
            counter(&r, &["total", "answered"]),
            2 * targets.len() as u64,
            "{r}"
        );
        assert_eq!(counter(&r, &["total", "dropped", "send_failed"]), 0, "{r}");
    }
}

/// `meridian query --ntp-version N` is answered in version N.
#[test]
fn meridian_query_each_version() {
    let server = Server::must_start(&ServerOpts::new("udp"));
    for version in 1..=4 {
        let out = run_meridian(
            &[
                "query",
                &server.addr().to_string(),
                "--json",
                "-n",
                "1",
                "--ntp-version",
                &version.to_string(),
            ],
            Duration::from_secs(15),
        );
        assert!(out.success(), "v{version}: {}", out.all());
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        check_query_entry(&v[0], server.addr(), 1);
        assert_eq!(v[0]["samples"][0]["version"], version, "{v}");
    }
    let r = server.stop().report;
    assert_eq!(counter(&r, &["total", "answered"]), 4, "{r}");
}
