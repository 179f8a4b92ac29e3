//! The xdp backend end to end: two network namespaces joined by a veth pair, `meridian serve
//! --backend xdp` on the server side, real clients (meridian query, Python ntplib, chronyd),
//! kernel traffic that must still get through, hostile frames from a packet socket, a burst,
//! and restarts. Generic and native XDP.
//!
//! Needs root (namespaces, bpf(2), AF_XDP) and `ip`; skips with the reason otherwise. Every
//! namespace is deleted by a guard and every process killed by PID, also when an assertion
//! fails.
//!
//! One test binary; this file lists the tests, each one line calling its scenario in the file
//! of its topic: `clients.rs` (meridian query, ntplib, chronyd, what the client's kernel
//! sees), `traffic.rs` (kernel traffic still flows), `hostile.rs` (hostile frames, built in
//! `frames.rs`), `burst.rs`, `restarts.rs` (restarts and misconfiguration). `server.rs` holds
//! the server handle; the namespaces come from `meridian-testkit`.
//!
//! AF_XDP is Linux-only: a portable build (`--cfg meridian_portable`) has no xdp backend, and
//! `tests/portable.rs` checks that it refuses `--backend xdp`.

#![cfg(linux_io)]
// Integration tests and benchmarks run on real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use meridian_testkit::netns::{self, VethPair, VethSpec};

// ---------------------------------------------------------------------------------------------
// Namespaces

/// The server end (`va`, in the server namespace) and the client end (`vb`).
const S4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
const C4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
const S6: &str = "fd00:203::1";
const C6: &str = "fd00:203::2";

fn s6() -> Ipv6Addr {
    S6.parse().unwrap()
}
fn c6() -> Ipv6Addr {
    C6.parse().unwrap()
}

/// How long the kernel may take to release a closed BPF link (from a work queue).
const DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if !common::is_root() {
        return Some("needs root (network namespaces, bpf(2), AF_XDP)".into());
    }
    netns::unavailable()
}

/// A server namespace and a client namespace joined by a veth pair (`va` in the server, `vb`
/// in the client) with 10.203.0.{1,2}/24 and fd00:203::{1,2}/64. Deleted on drop.
fn create_pair() -> Result<VethPair, String> {
    let base = netns::unique_name("mxdp");
    let spec = VethSpec::new([10, 203, 0], [0xfd00, 0x203, 0, 0]);
    VethPair::create(&format!("{base}-s"), &format!("{base}-c"), spec)
}

/// The pair for one test, or a skip (returning from the test) with the reason.
macro_rules! setup {
    () => {{
        if let Some(why) = crate::unavailable() {
            skip!("{why}");
        }
        match crate::create_pair() {
            Ok(p) => p,
            Err(e) => skip!("cannot build the namespaces: {e}"),
        }
    }};
}

mod auth;
mod burst;
mod clients;
mod frames;
mod hostile;
mod restarts;
mod server;
mod traffic;

// ---------------------------------------------------------------------------------------------
// Clients

#[test]
fn keyed_chronyd_generic() {
    auth::keyed_chronyd("generic");
}

#[test]
fn clients_generic() {
    clients::clients("generic");
}

#[test]
fn clients_native() {
    clients::clients("native");
}

#[test]
fn chronyd_interleaved_generic() {
    clients::chronyd_interleaved("generic");
}

#[test]
fn chronyd_interleaved_native() {
    clients::chronyd_interleaved("native");
}

#[test]
fn answered_source_and_checksums_seen_by_the_client_kernel() {
    clients::answered_source_and_checksums_seen_by_the_client_kernel();
}

// ---------------------------------------------------------------------------------------------
// Kernel traffic still flows

#[test]
fn kernel_traffic_passes_while_attached() {
    traffic::kernel_traffic_passes_while_attached();
}

// ---------------------------------------------------------------------------------------------
// Hostile frames from a packet socket

#[test]
fn hostile_frames_native() {
    hostile::hostile_frames_are_dropped_and_counted("native");
}

#[test]
fn hostile_frames_generic() {
    hostile::hostile_frames_are_dropped_and_counted("generic");
}

// ---------------------------------------------------------------------------------------------
// Burst

#[test]
fn burst_native() {
    burst::burst("native");
}

#[test]
fn burst_generic() {
    burst::burst("generic");
}

// ---------------------------------------------------------------------------------------------
// Restarts and misconfiguration

#[test]
fn restart_right_after_exit_and_after_kill() {
    restarts::restart_right_after_exit_and_after_kill();
}

/// Misconfigurations fail loudly with a reason instead of serving nothing.
#[test]
fn bad_interface_or_queue_fails_with_a_reason() {
    restarts::bad_interface_or_queue_fails_with_a_reason();
}
