//! Test support shared by meridian's crates (`meridian`, `meridian-bpf`, `meridian-loadgen`):
//!
//! - [`skip_notice`]: the one way a test says it does not run here (a failure under
//!   `MERIDIAN_REQUIRE_ALL=1`, which CI sets);
//! - [`process`]: child processes killed by PID when their guard drops, bounded runs, line
//!   collectors for pipes;
//! - [`netns`] (Linux): network namespaces and veth pairs built for one test and deleted on
//!   drop, commands run inside them, threads that enter them;
//! - [`ports`]: free loopback ports.
//!
//! It knows nothing of NTP or of meridian (meridian-bpf is a dependency of meridian, so this
//! crate must depend on neither): what is specific to one crate's tests stays in that crate's
//! `tests/common`.

#[cfg(target_os = "linux")]
pub mod netns;
pub mod ports;
pub mod process;
mod skip;

#[cfg(target_os = "linux")]
pub use netns::{enter_netns, on_own_thread, Netns, VethPair, VethSpec};
pub use ports::{free_port, ipv6_available};
pub use process::{is_root, run_bounded, system_user, ChildGuard, LineCollector, RunOutput};
pub use skip::{require_all, skip_notice};
