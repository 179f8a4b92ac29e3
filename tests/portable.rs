//! The portable build (no `linux_io`: another system, or `RUSTFLAGS="--cfg meridian_portable"`
//! on Linux, which is how CI runs this file): `auto` serves with the std UDP backend
//! `udp-portable` and answers real NTP clients, and what only Linux builds have — the io-uring
//! and xdp backends, `clock.mode = "system"` — is refused with a message that says why.
//!
//! Compiled only without `linux_io`; the other test files cover the Linux build, and most of
//! them (serve_clients, hostile, lifecycle, discipline, workers) run against `udp-portable`
//! too. What a portable build lacks is compiled out there (xdp.rs, uring.rs, reuseport
//! steering, the CAP_SYS_TIME refusal), not skipped: `MERIDIAN_REQUIRE_ALL=1` holds here too.

#![cfg(not(linux_io))]
// Integration tests and benchmarks run on real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{
    assert_answers, counter, free_port, ipv6_available, run_meridian, temp_file, Server, ServerOpts,
};

#[test]
fn auto_serves_real_clients_with_udp_portable() {
    let mut opts = ServerOpts::new("auto").workers(2);
    if ipv6_available() {
        opts = opts.dual();
    } else {
        common::skip_notice("IPv6 part: [::1] is not available");
    }
    // An interface would make a Linux build try xdp first; here it is only warned about.
    opts.extra = vec!["--interface".into(), "lo".into()];
    let server = Server::must_start(&opts);
    for want in [
        "backend=\"udp-portable\"",
        "workers=2",
        "rx_timestamps=\"user\"",
    ] {
        assert!(
            server.ready_line.contains(want),
            "ready line lacks {want}: {}",
            server.ready_line
        );
    }
    assert!(
        server.stderr_text().contains("xdp not available"),
        "{}",
        server.stderr_text()
    );

    let mut targets = vec![server.addr4()];
    targets.extend(server.v6);
    for t in &targets {
        // A raw request: mode 4, our transmit timestamp echoed, the local clock's stratum.
        let r = assert_answers(*t);
        assert_eq!((r.stratum, r.refid), (10, [127, 127, 1, 1]), "{t}: {r:?}");
        // meridian's own client, which checks the reply fully and measures the offset.
        let out = run_meridian(
            &[
                "query",
                &t.to_string(),
                "--json",
                "-n",
                "2",
                "--interval",
                "0.05",
            ],
            Duration::from_secs(15),
        );
        assert!(out.success(), "query {t}: {}", out.all());
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("query output is not JSON ({e}): {}", out.all()));
        for s in v[0]["samples"].as_array().expect("samples") {
            assert_eq!(s["status"], "ok", "{s}");
            assert_eq!(s["stratum"], 10, "{s}");
            let offset = s["offset"].as_f64().expect("offset");
            assert!(offset.abs() < 0.05, "{t}: offset {offset} s");
        }
    }

    let r = server.stop().report;
    assert_eq!(r["backend"], "udp-portable", "{r}");
    let answered = 3 * targets.len() as u64;
    assert_eq!(counter(&r, &["total", "received"]), answered, "{r}");
    assert_eq!(counter(&r, &["total", "answered"]), answered, "{r}");
    // No kernel stamps on this path: every datagram is stamped in user space.
    assert_eq!(
        counter(&r, &["total", "rx_timestamps", "user"]),
        answered,
        "{r}"
    );
    assert_eq!(r["workers"].as_array().map(Vec::len), Some(2), "{r}");
}

/// `meridian serve` with `extra` arguments must exit non-zero within a few seconds, saying
/// every one of `needles` on stderr.
fn refused(extra: &[&str], needles: &[&str]) {
    let port = free_port(true, false).expect("a free port").to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--listen", &listen];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let out = run_meridian(&args, Duration::from_secs(10));
    assert!(
        out.status.is_some() && !out.success(),
        "{args:?} must fail: {}",
        out.all()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{args:?} took {:?} to fail",
        started.elapsed()
    );
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{args:?}: no {n:?} in: {}",
            out.all()
        );
    }
    assert!(
        !out.stderr.contains("meridian serving"),
        "{args:?} served: {}",
        out.all()
    );
}

#[test]
fn linux_only_backends_are_refused() {
    refused(
        &["--backend", "io-uring"],
        &[
            "\"io-uring\" cannot run",
            "only the portable udp backend",
            "meridian_portable",
            "\"udp\"",
        ],
    );
    refused(
        &["--backend", "xdp", "--interface", "lo"],
        &[
            "\"xdp\" cannot run",
            "only the portable udp backend",
            "meridian_portable",
            "\"udp\"",
        ],
    );
}

#[test]
fn system_clock_mode_is_refused() {
    // With and without a source: refused before anything is bound or polled, so the machine's
    // clock is never at stake.
    for (name, text) in [
        ("no-source", "[clock]\nmode = \"system\"\n".to_owned()),
        (
            "one-source",
            "[clock]\nmode = \"system\"\n\n[[source]]\naddress = \"127.0.0.1:9\"\n".to_owned(),
        ),
    ] {
        let path = temp_file(&format!("portable-system-{name}.toml"), &text);
        let file = path.display().to_string();
        refused(
            &["--config", &file, "--backend", "udp"],
            &[
                "clock.mode",
                "\"system\" adjusts the OS clock",
                "meridian_portable",
                "\"virtual\"",
            ],
        );
        let _ = std::fs::remove_file(&path);
    }
}
