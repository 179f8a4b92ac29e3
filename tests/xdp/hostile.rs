//! Hostile frames from a packet socket in the client namespace: never answered, each counted
//! by its drop reason, and the worker still answers afterwards.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use crate::clients::query_ok;
use crate::common::{counter, parse_reply, request};
use crate::frames::{eth, ipv4, ipv6, send_frames, udp};
use crate::server::XdpServer;
use crate::{c6, s6, C4, S4};

pub fn hostile_frames_are_dropped_and_counted(mode: &str) {
    let pair = setup!();
    let server = XdpServer::must_start(&pair, mode, &["10.203.0.1:123", "[fd00:203::1]:123"]);
    let smac = pair.server.mac("va");
    let cmac = pair.client.mac("vb");
    let req = |tag: u64| request(4, 3, tag);
    let (s4, c4) = (S4.octets(), C4.octets());
    let (s6o, c6o) = (s6().octets(), c6().octets());
    let good4 = |tag: u64| ipv4(S4, 0x4000, &[], &udp(&c4, &s4, &req(tag)));
    let e4 = |l3: Vec<u8>| eth(smac, cmac, 0x0800, &l3);
    let e6 = |l3: Vec<u8>| eth(smac, cmac, 0x86dd, &l3);

    let mut malformed = Vec::new();
    // IP total length beyond the frame (a truncated frame).
    let mut f = good4(1);
    f.truncate(f.len() - 10);
    malformed.push(e4(f));
    // UDP length too large, too small.
    for ulen in [200u16, 7] {
        let mut f = good4(2);
        f[24..26].copy_from_slice(&ulen.to_be_bytes());
        malformed.push(e4(f));
    }
    // IP options (a no-op option word).
    malformed.push(e4(ipv4(S4, 0x4000, &[1, 1, 1, 0], &udp(&c4, &s4, &req(3)))));
    // Wrong UDP checksum (IPv4 and IPv6), zero checksum over IPv6.
    let mut f = good4(4);
    f[26] ^= 0x5a;
    malformed.push(e4(f));
    let mut u = udp(&c6o, &s6o, &req(5));
    u[6] ^= 0x5a;
    malformed.push(e6(ipv6(&u)));
    let mut u = udp(&c6o, &s6o, &req(6));
    u[6..8].copy_from_slice(&[0, 0]);
    malformed.push(e6(ipv6(&u)));
    // Bad IPv4 header checksum.
    let mut f = good4(7);
    f[10] ^= 0x33;
    malformed.push(e4(f));

    let mut others = Vec::new();
    // A too-short NTP payload (valid UDP).
    others.push(e4(ipv4(S4, 0x4000, &[], &udp(&c4, &s4, &req(8)[..20]))));
    // Mode 6 (control) request.
    let mut ctl = req(9);
    ctl[0] = (2 << 3) | 6;
    others.push(e4(ipv4(S4, 0x4000, &[], &udp(&c4, &s4, &ctl))));
    // Another destination address on the same wire.
    let other = Ipv4Addr::new(10, 203, 0, 77);
    others.push(e4(ipv4(
        other,
        0x4000,
        &[],
        &udp(&c4, &other.octets(), &req(10)),
    )));
    // Fragments: the program passes them to the kernel (no socket there): no answer either.
    let mut frag = vec![e4(ipv4(S4, 0x2000, &[], &udp(&c4, &s4, &req(11))))];
    frag.push(e4(ipv4(S4, 0x0004, &[], &udp(&c4, &s4, &req(12)))));
    // Runt frames (shorter than any header).
    let runts = vec![
        eth(smac, cmac, 0x0800, &[0x45, 0]),
        eth(smac, cmac, 0x86dd, &[]),
    ];
    // Finally one valid crafted request: answered (full checksum verified).
    let valid = e4(good4(100));

    let all: Vec<Vec<u8>> = malformed
        .iter()
        .chain(&others)
        .chain(&frag)
        .chain(&runts)
        .cloned()
        .chain(std::iter::once(valid))
        .collect();
    let answered_tags = pair.client.on_thread(move || {
        let s4 = UdpSocket::bind((C4, 40001)).unwrap();
        let s6 = UdpSocket::bind((c6(), 40001)).unwrap();
        send_frames("vb", &all);
        let mut tags = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut buf = [0u8; 200];
        while Instant::now() < deadline {
            for s in [&s4, &s6] {
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                if let Ok(n) = s.recv(&mut buf) {
                    if n >= 48 {
                        tags.push(parse_reply(&buf[..n]).origin);
                    }
                }
            }
        }
        tags
    });
    assert_eq!(
        answered_tags,
        vec![100],
        "only the valid crafted request is answered"
    );
    // The worker is alive and still answers.
    query_ok(&pair, "10.203.0.1", 1);
    query_ok(&pair, "[fd00:203::1]", 1);
    let (report, _) = server.stop();
    eprintln!("{mode}: report after hostile frames: {}", report["total"]);
    let d = |r: &str| counter(&report, &["total", "dropped", r]);
    assert_eq!(d("malformed"), malformed.len() as u64, "{report}");
    assert_eq!(d("too_short"), 1, "{report}");
    assert_eq!(d("bad_mode"), 1, "{report}");
    assert_eq!(d("not_ours"), 1, "{report}");
    assert_eq!(counter(&report, &["total", "answered"]), 3, "{report}");
}
