//! Interleaved mode (RFC 9769) against a real, independent client: chronyd with `xleave`,
//! polling every 1/16 s on loopback, on every socket backend. chronyd marks each measurement
//! basic or interleaved in its measurements.log; the server counts what it sent. On Linux the
//! udp and io-uring backends hand the kernel's transmit stamp of each reply to the client's
//! next, interleaved one; the portable build carries the estimate.
//!
//! Assertions are on what was counted and on offsets far above any scheduling noise (the same
//! host clock on both sides, so the true offset is 0); nothing depends on how fast the
//! machine is. Basic clients (ntplib, `meridian query`) still get correct basic replies from
//! the same server.

// Tests are shells: they may read the clock.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{
    backend_name, backends, chronyd_xleave, counter, ntplib_request, python_with_ntplib,
    query_offset, skip_notice, Server, ServerOpts,
};

#[test]
fn chronyd_with_xleave_gets_interleaved_replies_on_every_backend() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend));
        let name = backend_name(backend);
        // The kernel's stamps, on Linux: the start-up log says so.
        let kernel_stamps = cfg!(linux_io);
        if kernel_stamps {
            let log = server.stderr_text();
            assert!(
                log.contains("tx_timestamps=\"kernel\""),
                "{name}: the start-up log names the transmit stamps:\n{log}"
            );
        }
        let target = server.addr4();
        let lines = match chronyd_xleave(target, 5) {
            Ok(l) => l,
            Err(why) => return skip_notice(&format!("interleaved with chronyd: {why}")),
        };
        // Basic clients from the same address, after chronyd: correct basic replies.
        match python_with_ntplib() {
            Ok(py) => {
                let v = ntplib_request(&py, target, 4);
                assert_eq!(
                    (v["mode"].as_u64(), v["stratum"].as_u64()),
                    (Some(4), Some(10))
                );
                let offset = v["offset"].as_f64().expect("offset");
                assert!(offset.abs() < 0.05, "{name}: ntplib offset {offset}: {v}");
            }
            Err(e) => skip_notice(&format!("ntplib after chronyd: {e}")),
        }
        let offset = query_offset(target, 3).expect("meridian query gets valid replies");
        assert!(
            offset.abs() < 0.05,
            "{name}: meridian query offset {offset}"
        );
        let stopped = server.stop();
        let total = &stopped.report["total"];
        // chronyd's first exchange is basic (there is no earlier reply to stamp yet); from then
        // on every poll asks for interleaved mode and gets it.
        let interleaved = lines.iter().filter(|m| m.interleaved).count();
        assert!(lines.len() >= 20, "{name}: {} measurements", lines.len());
        let later_basic = lines.iter().skip(2).filter(|m| !m.interleaved).count();
        assert_eq!(
            later_basic, 0,
            "{name}: basic replies after the start: {lines:?}"
        );
        let counted = counter(total, &["interleaved"]);
        assert!(counted >= interleaved as u64, "{name}: {total}");
        // Same clock on both sides: every interleaved offset is tiny (a wrong transmit time
        // would be off by the poll interval, 62.5 ms, or by the reply's delay).
        let offsets = common::interleaved_offsets(&lines);
        let median = offsets[offsets.len() / 2];
        assert!(median < 100e-6, "{name}: median |offset| {median} s");
        if kernel_stamps {
            // Kernel stamps on both ends: no sample is off by scheduling delays either (the
            // portable path's user-space stamps can be, on a busy machine).
            assert!(
                offsets.last().is_some_and(|&o| o < 1e-3),
                "{name}: |offset| up to {:?} s",
                offsets.last()
            );
            // Kernel stamps are asked for once the client has interleaved: every stamp asked
            // for came back and reached the client's record, and every interleaved reply but
            // the first carried one (the first refers to a reply sent before chronyd had
            // shown it interleaves, which carries the estimate).
            assert!(
                counter(total, &["tx_stamped"]) >= counted - 1,
                "{name}: {total}"
            );
            assert_eq!(counter(total, &["tx_stamps_lost"]), 0, "{name}: {total}");
            assert_eq!(
                counter(total, &["tx_timestamps", "kernel"]),
                counted - 1,
                "{name}: {total}"
            );
        }
        eprintln!(
            "{name}: {interleaved}/{} interleaved, median |offset| {:.3} µs, report {total}",
            lines.len(),
            median * 1e6
        );
    }
}
