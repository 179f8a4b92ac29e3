//! Shared helpers for the integration tests, one file per kind:
//!
//! - `server`: a guard around a real `meridian serve` process and bounded runs of `meridian`;
//! - `backends`: the list of backends every test runs against;
//! - `ntp`: raw NTP datagrams over loopback;
//! - `fake_upstream`: fake NTP servers for the discipline tests;
//! - `http_api`: a server with its HTTP listener, and requests to it;
//! - `clients`: `meridian query` and Python ntplib;
//! - `chrony`: chronyd as an independent client.
//!
//! Generic support (process guards, bounded runs, the skip notice, free ports, namespaces)
//! comes from the `meridian-testkit` crate and is re-exported here. Every spawned process is
//! owned by a guard that kills it by PID when dropped, so a failing assertion never leaves a
//! server behind. Every wait has a deadline.

#![allow(dead_code, unused_imports)] // each test binary uses its own subset of these helpers

mod backends;
mod chrony;
mod clients;
mod fake_upstream;
mod http_api;
mod ntp;
mod server;

use std::time::{SystemTime, UNIX_EPOCH};

pub use meridian_testkit::{
    free_port, ipv6_available, is_root, run_bounded, skip_notice, ChildGuard, LineCollector,
    RunOutput,
};

pub use backends::{backend_name, backends};
pub use chrony::{
    chrony_offset, chronyd_dir, chronyd_keyed_args, chronyd_query, chronyd_query_args,
    chronyd_query_keyed, chronyd_xleave, chronyd_xleave_in, interleaved_offsets, Measurement,
    CHRONYD,
};
pub use clients::{ntplib_request, python_with_ntplib, query_offset};
pub use fake_upstream::{source_tables, FakeBehaviour, FakeUpstream};
pub use http_api::{answered, api, fakes, free_tcp, http, start, wait_synced, Started};
pub use ntp::{
    assert_answers, client_socket, exchange, ext_field, ntp_now, ntp_to_f64, parse_reply,
    recv_timeout, request, Reply, NTP_UNIX_OFFSET,
};
pub use server::{
    counter, run_meridian, Server, ServerOpts, ServerProcess, Stopped, MERIDIAN, READY_TIMEOUT,
};

/// Prints why a test (or part of one) is skipped and returns from the enclosing function.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {{
        $crate::common::skip_notice(&format!($($arg)*));
        return;
    }};
}

/// Writes `text` to a fresh file in the temporary directory and returns its path.
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "meridian-itest-{}-{}-{name}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    ));
    std::fs::write(&path, text).expect("writing a temporary file");
    path
}
