//! meridian-bpf: meridian's XDP program, assembled in Rust at run time and loaded through
//! `bpf(2)` — no clang, no libbpf, no ELF objects.
//!
//! # What the program does
//!
//! For every frame received on the interface it is attached to:
//!
//! 1. **Ethernet.** At least 14 bytes must be present. One 802.1Q (0x8100) or 802.1ad
//!    (0x88a8) tag is skipped (4 more bytes, bounds-checked); a second tag is not parsed.
//! 2. **Network layer.** EtherType 0x0800 → IPv4, 0x86dd → IPv6 (each can be disabled in
//!    [`ProgramConfig`]); anything else (ARP, LLDP, …) → `XDP_PASS`.
//! 3. **IPv4.** 20 bytes present, version 4, IHL ≥ 5 (the header length comes from IHL, so
//!    options are skipped), protocol UDP, and not a fragment: a set MF bit or a non-zero
//!    fragment offset → `XDP_PASS`, so the kernel reassembles.
//!    **IPv6.** The fixed 40-byte header present, version 6, next header UDP; extension
//!    headers (including fragments) → `XDP_PASS`.
//! 4. **UDP.** The whole 8-byte header present and the destination port in the served set
//!    (1 to 8 ports); otherwise `XDP_PASS`. With [`PortMatch::Source`] the *source* port is
//!    matched instead: a client (the load generator) takes the replies coming back from a
//!    server's port, whatever its own ports are.
//! 5. **Timestamp.** Software mode: `bpf_ktime_get_tai_ns()`. Hardware mode: the kfunc
//!    `bpf_xdp_metadata_rx_timestamp()` (program device-bound to the NIC, native mode); if it
//!    fails or yields 0, the TAI stamp is taken instead and `FLAG_HW_FALLBACK` is set.
//! 6. **Metadata.** `bpf_xdp_adjust_meta(ctx, -16)` reserves 16 bytes in front of the frame
//!    and the program writes an [`RxMeta`] there. If the driver cannot hold metadata the
//!    frame goes to the kernel (`XDP_PASS`): a frame reaches AF_XDP only with its stamp.
//! 7. **Redirect.** `bpf_redirect_map(&xskmap, ctx->rx_queue_index, XDP_PASS)`: to the
//!    AF_XDP socket of the receiving queue, or — when that slot of the [`XskMap`] is
//!    empty — back to the kernel.
//!
//! Everything that is not UDP to a served port (ARP, ICMP, SSH, other UDP, TCP to the same
//! port, …) is passed to the host's stack, so the machine stays reachable.
//!
//! # Metadata layout
//!
//! AF_XDP places the metadata area immediately before the packet in the UMEM frame; the
//! backend reads the 16 bytes ending at the RX descriptor's `addr` ([`RxMeta::read_before`]):
//!
//! | offset | size | field          | meaning                                                  |
//! |--------|------|----------------|----------------------------------------------------------|
//! | 0      | 8    | `timestamp_ns` | receive time, ns                                         |
//! | 8      | 4    | `kind`         | 1 = CLOCK_TAI (`bpf_ktime_get_tai_ns`), 2 = NIC hardware |
//! | 12     | 4    | `flags`        | bit 0 VLAN, bit 1 IPv6, bit 2 HW fallback; bits 16..32 = UDP header offset |
//!
//! All fields are in host byte order. A hardware stamp is in the NIC's PTP clock domain.
//!
//! # Using it (the AF_XDP backend)
//!
//! ```no_run
//! use meridian_bpf::{ifindex, ProgramConfig, XdpMode, XdpProgram, XskMap};
//! # fn main() -> Result<(), meridian_bpf::Error> {
//! let ifx = ifindex("eth0")?;
//! let map = XskMap::create(4)?; // one slot per RX queue
//! let prog = XdpProgram::load(&ProgramConfig::new(&[123]), &map)?;
//! let link = prog.attach(ifx, XdpMode::Auto)?;
//! // for each queue q: create and bind an AF_XDP socket `xsk`, then
//! // map.insert(q, xsk.as_fd())?;
//! drop(link); // detaches (also when the process dies)
//! # Ok(()) }
//! ```

pub mod btf;
mod error;
pub mod insn;
pub mod loader;
pub mod program;
pub mod sys;

pub use error::Error;
pub use loader::{ifindex, probe, LoadOptions, TestRun, XdpLink, XdpMode, XdpProgram, XskMap};
pub use program::{PortMatch, ProgramConfig, RxMeta, TimestampMode, XdpAction, MAX_PORTS};
