//! meridian: a carrier-scale NTP server.
//!
//! See `docs/architecture.md` for the path of one request through these modules.
//!
//! Boundaries the compiler enforces: `unsafe` only in `io/` and `sys/` (every block with a
//! `// SAFETY:` comment, `clippy::undocumented_unsafe_blocks`); clocks are read only in `sys/`
//! and the thin shells that must (the backends' loops, the discipline thread, the runtime, the
//! query command), so the protocol core, the discipline core and the configuration get time
//! passed in (`clippy.toml` disallows `Instant::now`, `SystemTime::now` and `clock_gettime`
//! elsewhere).
//!
//! Linux-only code (kernel timestamps, recvmmsg, io_uring, AF_XDP, clock_adjtime) sits behind
//! the `linux_io` cfg that `build.rs` sets on Linux; `RUSTFLAGS="--cfg meridian_portable"`
//! turns it off to build the portable path (std sockets and clocks, no libc, no unsafe) as on
//! any other system: there `unsafe` is denied in `io/` and `sys/` too.

#![deny(unsafe_code)]

// Without `linux_io` the name `libc` means `core`, so a libc call or constant left outside a
// `linux_io` item fails to compile: the portable build proves it never calls libc.
#[cfg(not(linux_io))]
extern crate core as libc;

pub mod auth;
pub mod clock;
pub mod config;
#[cfg(unix)]
pub mod control;
pub mod datapath;
pub mod discipline;
#[cfg_attr(linux_io, allow(unsafe_code))]
#[allow(clippy::disallowed_methods)]
pub mod io;
#[allow(clippy::disallowed_methods)]
pub mod log;
pub mod proto;
#[allow(clippy::disallowed_methods)]
pub mod query;
#[allow(clippy::disallowed_methods)]
pub mod server;
#[cfg_attr(linux_io, allow(unsafe_code))]
#[allow(clippy::disallowed_methods)]
pub mod sys;
/// Ethernet/VLAN, IPv4, IPv6 and UDP views, the checksum and the UDP frame builder: the
/// `meridian-wire` crate (`wire/`), which the tests of the `bpf/` crate use too.
pub use meridian_wire as wire;
