//! Hostile frames from a packet socket in the client namespace: never answered, each counted
//! by its drop reason, and the worker still answers afterwards.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use meridian::wire::ethernet;
use meridian::wire::{build_udp_vec, UdpFrameSpec};

use crate::clients::query_ok;
use crate::common::{counter, parse_reply, request};
use crate::frames::{ipv4_header, send_frames, udp_header, with_ipv4_options};
use crate::server::XdpServer;
use crate::{c6, s6, C4, S4};

pub fn hostile_frames_are_dropped_and_counted(mode: &str) {
    let pair = setup!();
    let server = XdpServer::must_start(&pair, mode, &["10.203.0.1:123", "[fd00:203::1]:123"]);
    let smac = pair.server.mac("va");
    let cmac = pair.client.mac("vb");
    let req = |tag: u64| request(4, 3, tag);
    // UDP from the client's port 40001 to `dst`, from vb to va, with both checksums.
    let to = |dst: SocketAddr, payload: &[u8]| {
        let src = match dst {
            SocketAddr::V4(_) => SocketAddr::from((C4, 40001)),
            SocketAddr::V6(_) => SocketAddr::from((c6(), 40001)),
        };
        let spec = UdpFrameSpec {
            src_mac: cmac,
            dst_mac: smac,
            src,
            dst,
        };
        build_udp_vec(&spec, payload).expect("a UDP frame")
    };
    let (srv4, srv6) = (SocketAddr::from((S4, 123)), SocketAddr::from((s6(), 123)));
    let good4 = |tag: u64| to(srv4, &req(tag));
    let good6 = |tag: u64| to(srv6, &req(tag));

    let mut malformed = Vec::new();
    // IP total length beyond the frame (a truncated frame).
    let mut f = good4(1);
    f.truncate(f.len() - 10);
    malformed.push(f);
    // UDP length too large, too small.
    for ulen in [200u16, 7] {
        let mut f = good4(2);
        udp_header(&mut f).set_len(ulen);
        malformed.push(f);
    }
    // IP options (a no-op option word).
    malformed.push(with_ipv4_options(good4(3), &[1, 1, 1, 0]));
    // Wrong UDP checksum (IPv4 and IPv6), zero checksum over IPv6.
    for mut f in [good4(4), good6(5)] {
        let mut u = udp_header(&mut f);
        u.set_checksum(u.checksum() ^ 0x5a00);
        malformed.push(f);
    }
    let mut f = good6(6);
    udp_header(&mut f).set_checksum(0);
    malformed.push(f);
    // Bad IPv4 header checksum.
    let mut f = good4(7);
    let mut ip = ipv4_header(&mut f);
    ip.set_checksum(ip.checksum() ^ 0x3300);
    malformed.push(f);

    let mut others = Vec::new();
    // A too-short NTP payload (valid UDP).
    others.push(to(srv4, &req(8)[..20]));
    // Mode 6 (control) request.
    others.push(to(srv4, &request(2, 6, 9)));
    // Another destination address on the same wire.
    let other = Ipv4Addr::new(10, 203, 0, 77);
    others.push(to((other, 123).into(), &req(10)));
    // Fragments: the program passes them to the kernel (no socket there): no answer either.
    // A first fragment (MF) and a last one (offset 32 bytes), neither with DF.
    let mut frag = Vec::new();
    for (tag, more_frags, offset) in [(11, true, 0), (12, false, 32)] {
        let mut f = good4(tag);
        let mut ip = ipv4_header(&mut f);
        ip.set_frag(false, more_frags, offset);
        ip.fill_checksum();
        frag.push(f);
    }
    // Runt frames (shorter than any header): an Ethernet header and the first two bytes of
    // IPv4 (version/IHL, DSCP), or nothing after it.
    let mut runt4 = good4(0);
    runt4.truncate(ethernet::HEADER_LEN + 2);
    let mut runt6 = good6(0);
    runt6.truncate(ethernet::HEADER_LEN);
    let runts = vec![runt4, runt6];
    // Finally one valid crafted request: answered (full checksum verified).
    let valid = good4(100);

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
