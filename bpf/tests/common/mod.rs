//! Shared helpers for the kernel-facing tests: privilege checks, the test program, namespaces
//! (from `meridian-testkit`) and frames built with `meridian-wire` (`frames.rs`).
#![allow(dead_code, unused_imports)]

mod frames;

pub use frames::*;
pub use meridian_testkit::{enter_netns, on_own_thread, Netns, VethPair, VethSpec};

/// Says why `test` does not run here (the testkit's notice, which fails under
/// `MERIDIAN_REQUIRE_ALL=1`, set by `.ci/run` where everything is present).
pub fn skip_notice(test: &str, reason: &str) {
    meridian_testkit::skip_notice(&format!("{test}: {reason}"));
}

/// Returns `true` (after printing why) when this process cannot use bpf(2) for XDP.
pub fn skip_without_bpf(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    match meridian_bpf::probe() {
        Ok(()) => false,
        Err(e) => {
            skip_notice(
                test,
                &format!("bpf(2) unavailable (euid {euid}, need root or CAP_BPF): {e}"),
            );
            true
        }
    }
}

/// The namespace `meridian-bpf-test-<pid>-<tag>` for one test, deleted on drop (also when the
/// test panics); `None`, after printing why, when namespaces cannot be made here.
pub fn netns(test: &str, tag: &str) -> Option<Netns> {
    let name = format!("meridian-bpf-test-{}-{tag}", std::process::id());
    match Netns::create(name) {
        Ok(ns) => Some(ns),
        Err(e) => {
            skip_notice(test, &format!("cannot make a network namespace: {e}"));
            None
        }
    }
}

/// Two namespaces joined by a veth pair: `va` in the first ("server", `{net4}.1/24`,
/// `{net6}::1/64`) and `vb` in the second ("client", `.2`, `::2`), both up. `None`, after
/// printing why, when namespaces cannot be made here.
pub fn veth_pair(test: &str, tag: &str, net4: [u8; 3], net6: [u16; 4]) -> Option<VethPair> {
    let server = netns(test, &format!("{tag}s"))?;
    let client = netns(test, &format!("{tag}c"))?;
    Some(
        VethPair::connect(server, client, VethSpec::new(net4, net6))
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// Loads the program serving UDP port 12300 into `map`'s socket map, the hardware-timestamp
/// variant bound to `ifindex` when asked. `None`, after printing why, when the kernel lacks the
/// RX-metadata kfunc.
pub fn load_test_program(
    test: &str,
    map: &meridian_bpf::XskMap,
    ifindex: u32,
    hardware: bool,
) -> Option<meridian_bpf::XdpProgram> {
    let mut cfg = meridian_bpf::ProgramConfig::new(&[12300]);
    if hardware {
        cfg.timestamp = meridian_bpf::TimestampMode::Hardware { ifindex };
    }
    match meridian_bpf::XdpProgram::load(&cfg, map) {
        Ok(p) => Some(p),
        Err(meridian_bpf::Error::KfuncMissing(k)) => {
            skip_notice(test, &format!("kernel has no {k}"));
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Runs `ip -n <ns> <args>` and returns stdout; panics on failure.
pub fn ip_in(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    meridian_testkit::netns::ip(&all).unwrap_or_else(|e| panic!("{e}"))
}
