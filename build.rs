//! Sets the `linux_io` cfg, which every Linux-only item of the crate sits behind (SO_TIMESTAMPING
//! and PKTINFO control messages, recvmmsg/sendmmsg, io_uring, AF_XDP, clock_adjtime, the
//! reuseport steering program, the upstream sockets' kernel receive stamps).
//!
//! It is on when the target is Linux, unless the build asks for the portable path with
//! `RUSTFLAGS="--cfg meridian_portable"`: then the crate is compiled as on any other system
//! (std sockets, std clocks, no libc), which is how CI checks the portable build on a Linux
//! machine with no foreign target installed.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(linux_io)");
    println!("cargo::rustc-check-cfg=cfg(meridian_portable)");
    println!("cargo::rerun-if-changed=build.rs");
    // Cargo reports the target's cfgs (RUSTFLAGS included) to build scripts as CARGO_CFG_*.
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let portable = env::var_os("CARGO_CFG_MERIDIAN_PORTABLE").is_some();
    if linux && !portable {
        println!("cargo::rustc-cfg=linux_io");
    }
}
