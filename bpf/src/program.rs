//! meridian's XDP program, assembled at run time from a [`ProgramConfig`].
//!
//! See the crate documentation for the step-by-step description. Register plan:
//!
//! | register | during parsing                          | after the port matched          |
//! |----------|------------------------------------------|---------------------------------|
//! | R6       | `struct xdp_md *ctx`                     | same                            |
//! | R7       | `data` (frame start)                     | timestamp kind                  |
//! | R8       | `data_end`                               | timestamp (ns)                  |
//! | R9       | cursor: L3 header, then UDP header       | metadata flags word             |
//! | R4       | scalar offset of the current header      | —                               |
//! | R5       | flags collected so far (VLAN, IPv6)      | —                               |
//!
//! R1–R3 and R0 are scratch. No call happens during parsing, so R4/R5 survive until the
//! flags word is built.

use std::os::fd::RawFd;

use crate::insn::{AluOp, Asm, Cond, Insn, Reg, Size};
use crate::Error;

/// How many UDP destination ports one program can serve.
pub const MAX_PORTS: usize = 8;

/// XDP verdicts (`enum xdp_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    /// `XDP_ABORTED` (0): drop and trace an error.
    Aborted,
    /// `XDP_DROP` (1).
    Drop,
    /// `XDP_PASS` (2): give the frame to the kernel's network stack.
    Pass,
    /// `XDP_TX` (3): bounce out of the same interface.
    Tx,
    /// `XDP_REDIRECT` (4): here, to the AF_XDP socket of the receive queue.
    Redirect,
    /// Anything else.
    Other(u32),
}

impl XdpAction {
    /// The numeric verdict.
    pub const fn code(self) -> u32 {
        match self {
            XdpAction::Aborted => 0,
            XdpAction::Drop => 1,
            XdpAction::Pass => 2,
            XdpAction::Tx => 3,
            XdpAction::Redirect => 4,
            XdpAction::Other(v) => v,
        }
    }

    /// Decodes a numeric verdict.
    pub const fn from_code(v: u32) -> Self {
        match v {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            v => XdpAction::Other(v),
        }
    }
}

/// Kernel helper numbers (`enum bpf_func_id`).
pub mod helper {
    /// `u64 bpf_ktime_get_ns(void)` (CLOCK_MONOTONIC).
    pub const KTIME_GET_NS: i32 = 5;
    /// `long bpf_redirect_map(void *map, u64 key, u64 flags)`.
    pub const REDIRECT_MAP: i32 = 51;
    /// `long bpf_xdp_adjust_meta(struct xdp_md *ctx, int delta)`.
    pub const XDP_ADJUST_META: i32 = 54;
    /// `u64 bpf_ktime_get_tai_ns(void)` (CLOCK_TAI, Linux 6.1+).
    pub const KTIME_GET_TAI_NS: i32 = 208;
}

/// Where the early receive timestamp comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampMode {
    /// `bpf_ktime_get_tai_ns()` at the start of XDP processing (works everywhere, any mode).
    SoftwareTai,
    /// The NIC's receive timestamp through the kfunc `bpf_xdp_metadata_rx_timestamp`, with
    /// the TAI stamp as fallback when the driver has none for a frame. The program is
    /// device-bound to `ifindex` and can only be attached there in native mode.
    Hardware {
        /// The interface the program is bound to.
        ifindex: u32,
    },
}

/// Which UDP port of a frame is compared with [`ProgramConfig::ports`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PortMatch {
    /// The destination port: a server taking the requests sent to its ports (the default).
    #[default]
    Destination,
    /// The source port: a client (the load generator) taking the replies that come back from
    /// a server's port to its many client ports.
    Source,
}

impl PortMatch {
    /// Offset of the matched port in the UDP header.
    pub const fn udp_offset(self) -> i16 {
        match self {
            PortMatch::Destination => 2,
            PortMatch::Source => 0,
        }
    }
}

/// What the program serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramConfig {
    /// UDP ports redirected to AF_XDP (1 to [`MAX_PORTS`], no zero): destination ports, or
    /// source ports with [`PortMatch::Source`].
    pub ports: Vec<u16>,
    /// Which port of the UDP header is matched against `ports`.
    pub port_match: PortMatch,
    /// Redirect matching IPv4 frames.
    pub ipv4: bool,
    /// Redirect matching IPv6 frames.
    pub ipv6: bool,
    /// Source of the receive timestamp written to the metadata area.
    pub timestamp: TimestampMode,
}

impl ProgramConfig {
    /// IPv4 and IPv6 to destination `ports`, software TAI timestamps.
    pub fn new(ports: &[u16]) -> Self {
        ProgramConfig {
            ports: ports.to_vec(),
            port_match: PortMatch::Destination,
            ipv4: true,
            ipv6: true,
            timestamp: TimestampMode::SoftwareTai,
        }
    }

    /// Checks the limits the program relies on.
    pub fn validate(&self) -> Result<(), Error> {
        if self.ports.is_empty() || self.ports.len() > MAX_PORTS {
            return Err(Error::InvalidConfig(format!(
                "between 1 and {MAX_PORTS} UDP ports are needed, got {}",
                self.ports.len()
            )));
        }
        if self.ports.contains(&0) {
            return Err(Error::InvalidConfig("UDP port 0 cannot be served".into()));
        }
        if !self.ipv4 && !self.ipv6 {
            return Err(Error::InvalidConfig(
                "at least one of IPv4 and IPv6 must be enabled".into(),
            ));
        }
        if let TimestampMode::Hardware { ifindex: 0 } = self.timestamp {
            return Err(Error::InvalidConfig(
                "hardware timestamps need a real interface index".into(),
            ));
        }
        Ok(())
    }
}

/// The metadata the program writes immediately before the frame's first byte
/// (`data_meta .. data`), which AF_XDP delivers in front of the packet in the UMEM frame.
///
/// Layout (16 bytes, host byte order, `#[repr(C)]`):
///
/// | offset | size | field          | meaning                                              |
/// |--------|------|----------------|------------------------------------------------------|
/// | 0      | 8    | `timestamp_ns` | receive time in ns; clock given by `kind`            |
/// | 8      | 4    | `kind`         | 1 = CLOCK_TAI (software), 2 = NIC hardware (PHC)      |
/// | 12     | 4    | `flags`        | bits 0..16: `FLAG_*`; bits 16..32: UDP header offset |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RxMeta {
    /// Receive time in nanoseconds: CLOCK_TAI for [`RxMeta::KIND_SOFTWARE_TAI`], the NIC's
    /// PTP hardware clock for [`RxMeta::KIND_HARDWARE`].
    pub timestamp_ns: u64,
    /// Which clock `timestamp_ns` is in.
    pub kind: u32,
    /// `FLAG_*` bits in the low half; the UDP header's offset from the frame start in the
    /// high half.
    pub flags: u32,
}

impl RxMeta {
    /// Size of the metadata area the program reserves.
    pub const SIZE: usize = 16;
    /// `timestamp_ns` is `bpf_ktime_get_tai_ns()`.
    pub const KIND_SOFTWARE_TAI: u32 = 1;
    /// `timestamp_ns` is the NIC's hardware receive timestamp.
    pub const KIND_HARDWARE: u32 = 2;
    /// The frame carried one 802.1Q / 802.1ad VLAN tag.
    pub const FLAG_VLAN: u32 = 1 << 0;
    /// The frame is IPv6 (otherwise IPv4).
    pub const FLAG_IPV6: u32 = 1 << 1;
    /// Hardware mode, but the driver gave no timestamp for this frame: TAI was used.
    pub const FLAG_HW_FALLBACK: u32 = 1 << 2;

    /// Decodes the 16 bytes found before the packet data.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let (ts, rest) = b.split_at(8);
        let (kind, flags) = rest.split_at(4);
        RxMeta {
            timestamp_ns: u64::from_ne_bytes(ts.try_into().expect("8 bytes")),
            kind: u32::from_ne_bytes(kind.try_into().expect("4 bytes")),
            flags: u32::from_ne_bytes(flags.try_into().expect("4 bytes")),
        }
    }

    /// Reads the metadata in front of a packet that starts at `data_offset` in `buf`
    /// (for example a UMEM area and an RX descriptor's `addr`).
    pub fn read_before(buf: &[u8], data_offset: usize) -> Option<Self> {
        let start = data_offset.checked_sub(Self::SIZE)?;
        let bytes: &[u8; Self::SIZE] = buf.get(start..data_offset)?.try_into().ok()?;
        Some(Self::from_bytes(bytes))
    }

    /// Whether `kind` is one the program writes (a sanity check on the area).
    pub fn is_valid(&self) -> bool {
        matches!(self.kind, Self::KIND_SOFTWARE_TAI | Self::KIND_HARDWARE)
    }

    /// Offset of the UDP header from the first byte of the frame.
    pub fn udp_offset(&self) -> usize {
        (self.flags >> 16) as usize
    }

    /// Whether the frame is IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.flags & Self::FLAG_IPV6 != 0
    }

    /// Whether the frame carried a VLAN tag.
    pub fn has_vlan(&self) -> bool {
        self.flags & Self::FLAG_VLAN != 0
    }
}

// Offsets in `struct xdp_md`.
const CTX_DATA: i16 = 0;
const CTX_DATA_END: i16 = 4;
const CTX_DATA_META: i16 = 8;
const CTX_RX_QUEUE_INDEX: i16 = 16;

const ETH_HLEN: i32 = 14;
const VLAN_HLEN: i32 = 4;
const IPV4_MIN_HLEN: i32 = 20;
const IPV6_HLEN: i32 = 40;
const UDP_HLEN: i32 = 8;
const IPPROTO_UDP: i32 = 17;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// The register value of a big-endian 16-bit field read with a 2-byte load.
fn wire16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// Assembles the program for `config`. `xskmap_fd` is the XSKMAP's descriptor (embedded
/// with `BPF_PSEUDO_MAP_FD`); `rx_timestamp_kfunc` is the BTF id of
/// `bpf_xdp_metadata_rx_timestamp`, required for [`TimestampMode::Hardware`].
pub fn build(
    config: &ProgramConfig,
    xskmap_fd: RawFd,
    rx_timestamp_kfunc: Option<u32>,
) -> Result<Vec<Insn>, Error> {
    use Reg::*;
    config.validate()?;
    let hw_kfunc = match config.timestamp {
        TimestampMode::SoftwareTai => None,
        TimestampMode::Hardware { .. } => {
            Some(rx_timestamp_kfunc.ok_or(Error::KfuncMissing(crate::btf::RX_TIMESTAMP_KFUNC))?)
        }
    };

    let mut a = Asm::new();
    let pass = a.label();
    let vlan = a.label();
    let l3 = a.label();
    let ipv4 = a.label();
    let ipv6 = a.label();
    let l4 = a.label();
    let served = a.label();
    let write_meta = a.label();

    // Step 0 — prologue: keep ctx, load the frame bounds, clear the flags.
    a.mov64_reg(R6, R1);
    a.load(Size::U32, R7, R6, CTX_DATA);
    a.load(Size::U32, R8, R6, CTX_DATA_END);
    a.mov64_imm(R5, 0);

    // Step 1 — Ethernet: 14 bytes must be there; read the EtherType.
    a.mov64_reg(R1, R7).alu64_imm(AluOp::Add, R1, ETH_HLEN);
    a.jump_if_reg(Cond::UGt, R1, R8, pass);
    a.load(Size::U16, R2, R7, 12);
    a.mov64_imm(R4, ETH_HLEN);
    a.jump_if_imm(Cond::Eq, R2, wire16(ETH_P_8021Q), vlan);
    a.jump_if_imm(Cond::Eq, R2, wire16(ETH_P_8021AD), vlan);
    a.jump(l3);

    // Step 1b — one VLAN tag: the inner EtherType follows the 4-byte tag.
    a.bind(vlan);
    a.mov64_reg(R1, R7)
        .alu64_imm(AluOp::Add, R1, ETH_HLEN + VLAN_HLEN);
    a.jump_if_reg(Cond::UGt, R1, R8, pass);
    a.load(Size::U16, R2, R7, 16);
    a.mov64_imm(R4, ETH_HLEN + VLAN_HLEN);
    a.alu64_imm(AluOp::Or, R5, RxMeta::FLAG_VLAN as i32);

    // Step 2 — dispatch on the network protocol (a second tag or anything else: pass).
    a.bind(l3);
    a.mov64_reg(R9, R7).alu64_reg(AluOp::Add, R9, R4);
    if config.ipv4 {
        a.jump_if_imm(Cond::Eq, R2, wire16(ETH_P_IP), ipv4);
    }
    if config.ipv6 {
        a.jump_if_imm(Cond::Eq, R2, wire16(ETH_P_IPV6), ipv6);
    }
    a.jump(pass);

    if config.ipv4 {
        // Step 3a — IPv4: fixed part present, version 4, IHL >= 5, protocol UDP, and neither
        // MF nor a fragment offset (fragments go to the kernel, which reassembles them).
        a.bind(ipv4);
        a.mov64_reg(R1, R9).alu64_imm(AluOp::Add, R1, IPV4_MIN_HLEN);
        a.jump_if_reg(Cond::UGt, R1, R8, pass);
        a.load(Size::U8, R2, R9, 0);
        a.mov64_reg(R3, R2).alu64_imm(AluOp::And, R3, 0xf0);
        a.jump_if_imm(Cond::Ne, R3, 0x40, pass);
        a.alu64_imm(AluOp::And, R2, 0x0f);
        a.jump_if_imm(Cond::ULt, R2, 5, pass);
        a.load(Size::U8, R3, R9, 9);
        a.jump_if_imm(Cond::Ne, R3, IPPROTO_UDP, pass);
        a.load(Size::U16, R3, R9, 6);
        a.alu64_imm(AluOp::And, R3, wire16(0x3fff)); // MF | fragment offset
        a.jump_if_imm(Cond::Ne, R3, 0, pass);
        a.alu64_imm(AluOp::Lsh, R2, 2); // IHL in bytes, 20..=60
        a.alu64_reg(AluOp::Add, R4, R2);
        a.jump(l4);
    }

    if config.ipv6 {
        // Step 3b — IPv6: fixed 40-byte header, version 6, next header UDP (extension headers
        // are left to the kernel).
        a.bind(ipv6);
        a.mov64_reg(R1, R9).alu64_imm(AluOp::Add, R1, IPV6_HLEN);
        a.jump_if_reg(Cond::UGt, R1, R8, pass);
        a.load(Size::U8, R2, R9, 0);
        a.alu64_imm(AluOp::And, R2, 0xf0);
        a.jump_if_imm(Cond::Ne, R2, 0x60, pass);
        a.load(Size::U8, R3, R9, 6);
        a.jump_if_imm(Cond::Ne, R3, IPPROTO_UDP, pass);
        a.alu64_imm(AluOp::Add, R4, IPV6_HLEN);
        a.alu64_imm(AluOp::Or, R5, RxMeta::FLAG_IPV6 as i32);
    }

    // Step 4 — UDP: the whole 8-byte header present, destination (or, with
    // `PortMatch::Source`, source) port in the served set.
    a.bind(l4);
    a.mov64_reg(R9, R7).alu64_reg(AluOp::Add, R9, R4);
    a.mov64_reg(R1, R9).alu64_imm(AluOp::Add, R1, UDP_HLEN);
    a.jump_if_reg(Cond::UGt, R1, R8, pass);
    a.load(Size::U16, R2, R9, config.port_match.udp_offset());
    for &port in &config.ports {
        a.jump_if_imm(Cond::Eq, R2, wire16(port), served);
    }
    a.jump(pass);

    // Step 5 — timestamp. Flags word first: UDP offset << 16 | flags.
    a.bind(served);
    a.alu64_imm(AluOp::Lsh, R4, 16);
    a.alu64_reg(AluOp::Or, R4, R5);
    a.mov64_reg(R9, R4);
    if let Some(kfunc) = hw_kfunc {
        let software = a.label();
        // u64 slot at fp-8 for the kfunc's output.
        a.mov64_imm(R1, 0).store(Size::U64, R10, -8, R1);
        a.mov64_reg(R1, R6);
        a.mov64_reg(R2, R10).alu64_imm(AluOp::Add, R2, -8);
        a.call_kfunc(kfunc);
        a.jump32_if_imm(Cond::Ne, R0, 0, software); // int return: compare 32 bits
        a.load(Size::U64, R8, R10, -8);
        a.jump_if_imm(Cond::Eq, R8, 0, software);
        a.mov64_imm(R7, RxMeta::KIND_HARDWARE as i32);
        a.jump(write_meta);
        a.bind(software);
        a.alu64_imm(AluOp::Or, R9, RxMeta::FLAG_HW_FALLBACK as i32);
    }
    a.call_helper(helper::KTIME_GET_TAI_NS);
    a.mov64_reg(R8, R0);
    a.mov64_imm(R7, RxMeta::KIND_SOFTWARE_TAI as i32);

    // Step 6 — metadata: grow the area in front of the frame by 16 bytes, re-derive the
    // pointers (the helper invalidates them), bounds-check and store. If the driver has
    // no metadata support the frame goes to the kernel rather than arrive without a stamp.
    a.bind(write_meta);
    a.mov64_reg(R1, R6);
    a.mov64_imm(R2, -(RxMeta::SIZE as i32));
    a.call_helper(helper::XDP_ADJUST_META);
    a.jump_if_imm(Cond::Ne, R0, 0, pass);
    a.load(Size::U32, R2, R6, CTX_DATA_META);
    a.load(Size::U32, R3, R6, CTX_DATA);
    a.mov64_reg(R1, R2)
        .alu64_imm(AluOp::Add, R1, RxMeta::SIZE as i32);
    a.jump_if_reg(Cond::UGt, R1, R3, pass);
    a.store(Size::U64, R2, 0, R8);
    a.store(Size::U32, R2, 8, R7);
    a.store(Size::U32, R2, 12, R9);

    // Step 7 — redirect to the XSKMAP slot of this RX queue; an empty slot (no socket on
    // this queue) returns the flags' low bits, XDP_PASS, so the kernel gets the frame.
    a.load(Size::U32, R2, R6, CTX_RX_QUEUE_INDEX);
    a.ld_map_fd(R1, xskmap_fd);
    a.mov64_imm(R3, XdpAction::Pass.code() as i32);
    a.call_helper(helper::REDIRECT_MAP);
    a.exit();

    // Everything else: the host's own stack.
    a.bind(pass);
    a.mov64_imm(R0, XdpAction::Pass.code() as i32);
    a.exit();

    Ok(a.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_limits() {
        assert!(ProgramConfig::new(&[123]).validate().is_ok());
        assert!(ProgramConfig::new(&[]).validate().is_err());
        assert!(ProgramConfig::new(&[1, 2, 3, 4, 5, 6, 7, 8])
            .validate()
            .is_ok());
        assert!(ProgramConfig::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9])
            .validate()
            .is_err());
        assert!(ProgramConfig::new(&[0]).validate().is_err());
        let mut c = ProgramConfig::new(&[123]);
        c.ipv4 = false;
        c.ipv6 = false;
        assert!(c.validate().is_err());
        c.ipv6 = true;
        c.timestamp = TimestampMode::Hardware { ifindex: 0 };
        assert!(c.validate().is_err());
    }

    #[test]
    fn hardware_mode_needs_the_kfunc_id() {
        let mut c = ProgramConfig::new(&[123]);
        c.timestamp = TimestampMode::Hardware { ifindex: 3 };
        assert!(matches!(build(&c, 3, None), Err(Error::KfuncMissing(_))));
        let insns = build(&c, 3, Some(4242)).unwrap();
        assert!(insns
            .iter()
            .any(|i| i.code == 0x85 && i.src() == 2 && i.imm == 4242));
    }

    #[test]
    fn program_embeds_ports_and_map_fd() {
        let insns = build(&ProgramConfig::new(&[123, 4123]), 7, None).unwrap();
        let ld = insns.iter().position(|i| i.is_ld_imm64()).unwrap();
        assert_eq!((insns[ld].src(), insns[ld].imm), (1, 7));
        for port in [123u16, 4123] {
            assert!(insns
                .iter()
                .any(|i| i.code == 0x15 && i.imm == wire16(port)));
        }
        assert_eq!(insns.last().unwrap().code, 0x95);
    }

    #[test]
    fn port_match_picks_the_loaded_field() {
        // The only 2-byte load from R9 into R2 reads the UDP port that is compared.
        let udp_port_load = |insns: &[Insn]| {
            insns
                .iter()
                .filter(|i| i.code == 0x69 && i.src() == Reg::R9 as u8 && i.dst() == Reg::R2 as u8)
                .map(|i| i.off)
                .collect::<Vec<_>>()
        };
        let mut c = ProgramConfig::new(&[123]);
        assert_eq!(c.port_match, PortMatch::Destination);
        assert_eq!(udp_port_load(&build(&c, 3, None).unwrap()), vec![2]);
        c.port_match = PortMatch::Source;
        assert_eq!(udp_port_load(&build(&c, 3, None).unwrap()), vec![0]);
    }

    #[test]
    fn meta_layout() {
        assert_eq!(std::mem::size_of::<RxMeta>(), RxMeta::SIZE);
        assert_eq!(std::mem::align_of::<RxMeta>(), 8);
        let mut buf = vec![0u8; 64];
        buf[16..24].copy_from_slice(&42u64.to_ne_bytes());
        buf[24..28].copy_from_slice(&1u32.to_ne_bytes());
        buf[28..32].copy_from_slice(&((34u32 << 16) | 2).to_ne_bytes());
        let m = RxMeta::read_before(&buf, 32).unwrap();
        assert_eq!(m.timestamp_ns, 42);
        assert!(m.is_valid() && m.is_ipv6() && !m.has_vlan());
        assert_eq!(m.udp_offset(), 34);
        assert!(RxMeta::read_before(&buf, 8).is_none());
    }
}
