//! Interleaved mode (RFC 9769) against a real, independent client: chronyd with `xleave`,
//! polling every 1/16 s on loopback, on every socket backend. chronyd marks each measurement
//! basic or interleaved in its measurements.log; the server counts what it sent.
//!
//! Assertions are on what was counted and on offsets far above any scheduling noise (the same
//! host clock on both sides, so the true offset is 0); nothing depends on how fast the
//! machine is.

// Tests are shells: they may read the clock.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{backend_name, backends, chronyd_xleave, counter, skip_notice, Server, ServerOpts};

#[test]
fn chronyd_with_xleave_gets_interleaved_replies_on_every_backend() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend));
        let lines = match chronyd_xleave(server.addr4(), 5) {
            Ok(l) => l,
            Err(why) => return skip_notice(&format!("interleaved with chronyd: {why}")),
        };
        let stopped = server.stop();
        let name = backend_name(backend);
        let total = &stopped.report["total"];
        // chronyd's first exchange (and the iburst before it settles) is basic; from then on
        // every poll asks for interleaved mode and gets it.
        let interleaved = lines.iter().filter(|m| m.interleaved).count();
        assert!(lines.len() >= 20, "{name}: {} measurements", lines.len());
        assert!(
            interleaved * 10 >= lines.len() * 8,
            "{name}: {interleaved} of {} measurements interleaved",
            lines.len()
        );
        assert!(
            counter(total, &["interleaved"]) >= interleaved as u64,
            "{name}: {total}"
        );
        // Same clock on both sides: every interleaved offset is tiny (a wrong transmit time
        // would be off by the poll interval, 62.5 ms, or by the reply's delay).
        let mut offsets: Vec<f64> = lines
            .iter()
            .filter(|m| m.interleaved)
            .map(|m| m.offset.abs())
            .collect();
        offsets.sort_by(f64::total_cmp);
        let median = offsets[offsets.len() / 2];
        assert!(median < 100e-6, "{name}: median |offset| {median} s");
        if cfg!(linux_io) && backend == "udp" {
            // The kernel's transmit stamps reached the clients' records.
            assert!(counter(total, &["tx_stamped"]) > 0, "{name}: {total}");
            assert!(
                counter(total, &["tx_timestamps", "kernel"]) >= interleaved as u64 / 2,
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
