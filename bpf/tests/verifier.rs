//! Every program variant passes the kernel verifier; a bad program is refused with its log.

mod common;

use common::skip_without_bpf;
use meridian_bpf::insn::{Insn, Reg, Size};
use meridian_bpf::{Error, LoadOptions, PortMatch, ProgramConfig, XdpProgram, XskMap};

#[test]
fn every_software_variant_is_accepted() {
    if skip_without_bpf("every_software_variant_is_accepted") {
        return;
    }
    let map = XskMap::create(4).unwrap();
    let mut variants = Vec::new();
    for ports in [&[123u16][..], &[123, 4123], &[1, 2, 3, 4, 5, 6, 7, 8]] {
        for (ipv4, ipv6) in [(true, true), (true, false), (false, true)] {
            for port_match in [PortMatch::Destination, PortMatch::Source] {
                let mut c = ProgramConfig::new(ports);
                c.ipv4 = ipv4;
                c.ipv6 = ipv6;
                c.port_match = port_match;
                variants.push(c);
            }
        }
    }
    for c in &variants {
        let prog = XdpProgram::load(c, &map).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert!(prog.insn_count() > 20);
        assert!(prog.id().unwrap() > 0);
    }
}

#[test]
fn a_refused_program_reports_the_verifier_log() {
    if skip_without_bpf("a_refused_program_reports_the_verifier_log") {
        return;
    }
    // Reads the first packet byte without a bounds check against data_end.
    let insns = [
        Insn::load(Size::U32, Reg::R2, Reg::R1, 0),
        Insn::load(Size::U8, Reg::R0, Reg::R2, 0),
        Insn::exit(),
    ];
    match XdpProgram::load_insns(&insns, &LoadOptions::default()) {
        Err(e @ Error::Verifier { .. }) => {
            assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
            let Error::Verifier { log, .. } = &e else {
                unreachable!()
            };
            assert!(log.contains("invalid access to packet"), "log: {log}");
            assert!(e.to_string().contains("verifier log"), "{e}");
        }
        other => panic!("expected a verifier error, got {other:?}"),
    }
    // The smallest valid program loads.
    let ok = [Insn::mov64_imm(Reg::R0, 2), Insn::exit()];
    XdpProgram::load_insns(&ok, &LoadOptions::default()).unwrap();
}
