//! Datagrams a server must not answer, the odd shapes it must answer, and the counters that
//! account for every one of them — against the real process, for every backend.

// Integration tests and benchmarks run on real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    assert_answers, backend_name, backends, client_socket, counter, exchange, ext_field,
    ipv6_available, ntp_now, parse_reply, recv_timeout, request, Server, ServerOpts,
};

/// How long we listen for a reply that must not come.
const SILENCE: Duration = Duration::from_millis(300);

/// A request followed by `tail`.
fn with_tail(version: u8, tail: &[u8]) -> Vec<u8> {
    let mut p = request(version, 3, ntp_now());
    p.extend_from_slice(tail);
    p
}

/// Every datagram the server must drop, with the counter it must land in.
fn hostile_shapes() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let t = ntp_now();
    let mut v: Vec<(&str, &str, Vec<u8>)> = vec![
        ("empty datagram", "too_short", vec![]),
        ("1 byte", "too_short", vec![0x23]),
        ("47 bytes", "too_short", request(4, 3, t)[..47].to_vec()),
        ("mode 0 (v4)", "bad_mode", request(4, 0, t)),
        ("mode 2", "bad_mode", request(4, 2, t)),
        ("mode 4", "bad_mode", request(4, 4, t)),
        ("mode 5", "bad_mode", request(4, 5, t)),
        ("mode 6", "bad_mode", request(4, 6, t)),
        ("mode 7", "bad_mode", request(4, 7, t)),
        ("version 0", "bad_version", request(0, 3, t)),
        ("version 5", "bad_version", request(5, 3, t)),
        ("version 6", "bad_version", request(6, 3, t)),
        ("version 7", "bad_version", request(7, 3, t)),
        // 32 bytes follow the header but the field claims 36. (48 + 20 would be read as a
        // legacy MAC by its length, see `twenty_bytes_after_header_are_a_mac`.)
        (
            "truncated extension field",
            "malformed",
            with_tail(4, &ext_field(0x0104, 36, 32)),
        ),
        (
            "extension length not a multiple of 4",
            "malformed",
            with_tail(4, &ext_field(0x0104, 18, 28)),
        ),
        (
            "extension length < 16",
            "malformed",
            with_tail(4, &ext_field(0x0104, 12, 28)),
        ),
        ("1300 bytes", "too_long", with_tail(4, &[0u8; 1300 - 48])),
        ("4000 bytes", "too_long", with_tail(4, &[0u8; 4000 - 48])),
    ];
    // A valid 48-byte mode 3 header, but with trailing junk of a non-MAC length.
    v.push((
        "header + 5 junk bytes",
        "malformed",
        with_tail(4, &[1, 2, 3, 4, 5]),
    ));
    v
}

/// Every hostile shape gets no answer, a valid request still does, and the exit report counts
/// each drop under its reason — exactly.
#[test]
fn hostile_datagrams_are_dropped_and_counted() {
    let v6 = ipv6_available();
    if !v6 {
        common::skip_notice("IPv6 part: [::1] is not available");
    }
    for backend in backends() {
        let mut opts = ServerOpts::new(backend);
        opts.ipv6 = v6;
        let server = Server::must_start(&opts);
        let mut targets = vec![server.addr4()];
        targets.extend(server.v6);
        let shapes = hostile_shapes();
        // One socket per shape and family, all sent at once, then each listened on for at
        // least SILENCE.
        let mut socks = Vec::new();
        for &target in &targets {
            for (name, _, d) in &shapes {
                let s = client_socket(target);
                s.send(d).expect("send");
                socks.push((target, *name, d.len(), s));
            }
        }
        let start = Instant::now();
        for (target, name, len, s) in &socks {
            let left = (start + SILENCE).saturating_duration_since(Instant::now());
            let got = recv_timeout(s, left.max(Duration::from_millis(20)));
            assert!(
                got.is_none(),
                "{backend}: {name} ({len} bytes) to {target} was answered: {got:?}"
            );
        }
        // Still serving.
        for &target in &targets {
            assert_answers(target);
        }

        let families = targets.len() as u64;
        let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, reason, _) in &shapes {
            *expected.entry(reason).or_default() += families;
        }
        let stopped = server.stop();
        let r = &stopped.report;
        for reason in [
            "too_short",
            "too_long",
            "bad_version",
            "bad_mode",
            "malformed",
        ] {
            assert_eq!(
                counter(r, &["total", "dropped", reason]),
                expected.get(reason).copied().unwrap_or(0),
                "{backend}: dropped.{reason} in {r}"
            );
        }
        for reason in ["not_ours", "denied", "rate_limited", "send_failed"] {
            assert_eq!(
                counter(r, &["total", "dropped", reason]),
                0,
                "{reason}: {r}"
            );
        }
        let sent = shapes.len() as u64 * families;
        assert_eq!(counter(r, &["total", "dropped_total"]), sent, "{r}");
        assert_eq!(counter(r, &["total", "received"]), sent + families, "{r}");
        assert_eq!(counter(r, &["total", "answered"]), families, "{r}");
        // Only the valid requests made client records: junk never displaces a client.
        assert_eq!(counter(r, &["total", "clients_added"]), families, "{r}");
        assert_eq!(r["backend"], backend_name(backend), "{r}");
        eprintln!("{backend}: {} hostile datagrams dropped and counted", sent);
    }
}

/// Mode 1 (symmetric active) is answered with mode 2 (symmetric passive).
#[test]
fn symmetric_active_gets_symmetric_passive() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend));
        let t = ntp_now();
        let reply = exchange(server.addr(), &request(4, 1, t), Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{backend}: mode 1 not answered"));
        assert_eq!(reply.len(), 48);
        let r = parse_reply(&reply);
        assert_eq!(r.mode, 2, "{r:?}");
        assert_eq!(r.version, 4);
        assert_eq!(r.origin, t);
        assert_eq!(r.stratum, 10);
        let stopped = server.stop();
        assert_eq!(counter(&stopped.report, &["total", "answered"]), 1);
    }
}

/// NTPv1 has no mode field: version 1 with mode 0 is a client request, answered as version 1.
#[test]
fn ntpv1_mode_0_is_answered_as_version_1() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend));
        let t = ntp_now();
        let reply = exchange(server.addr(), &request(1, 0, t), Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{backend}: v1 mode 0 not answered"));
        assert_eq!(reply.len(), 48);
        let r = parse_reply(&reply);
        assert_eq!(r.version, 1, "{r:?}");
        assert_eq!(r.mode, 4, "{r:?}");
        assert_eq!(r.origin, t);
        // ... but version 2-4 with mode 0 are dropped.
        for version in [2u8, 3, 4] {
            let got = exchange(server.addr(), &request(version, 0, t), SILENCE);
            assert!(got.is_none(), "{backend}: v{version} mode 0 answered");
        }
        let r = server.stop().report;
        assert_eq!(counter(&r, &["total", "answered"]), 1, "{r}");
        assert_eq!(counter(&r, &["total", "dropped", "bad_mode"]), 3, "{r}");
    }
}

/// A request with a 20-byte legacy MAC (68 bytes) gets a 52-byte reply: a header and a 4-byte
/// zero crypto-NAK.
#[test]
fn legacy_mac_gets_crypto_nak() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend));
        let t = ntp_now();
        let mut req = request(4, 3, t);
        req.extend_from_slice(&1u32.to_be_bytes()); // key id 1
        req.extend_from_slice(&[0xab; 16]); // MD5 digest
        assert_eq!(req.len(), 68);
        let reply = exchange(server.addr(), &req, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{backend}: request with MAC not answered"));
        assert_eq!(reply.len(), 52, "{backend}: reply {reply:?}");
        assert_eq!(&reply[48..], &[0, 0, 0, 0], "{backend}: crypto-NAK");
        let r = parse_reply(&reply);
        assert_eq!((r.mode, r.version, r.origin), (4, 4, t));
        server.stop();
    }
}

/// 48 + 20 bytes whose first word reads like an extension field of 36 bytes is, by its length,
/// a legacy MAC (key id 0x00010024 + 16-byte digest): it is answered with a crypto-NAK. A
/// truncated field cannot be told from a MAC of that length (RFC 7822 §7.5 resolves the
/// ambiguity by length), so this shape is answered, not counted as malformed.
#[test]
fn twenty_bytes_after_header_are_a_mac() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend));
        let req = with_tail(4, &ext_field(0x0001, 36, 20));
        let reply = exchange(server.addr(), &req, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{backend}: 68-byte request not answered"));
        assert_eq!(reply.len(), 52);
        assert_eq!(&reply[48..], &[0, 0, 0, 0]);
        server.stop();
    }
}

/// For every shape that is answered, the reply is never longer than the request (no
/// amplification), and it is a well-formed answer to it.
#[test]
fn replies_are_never_longer_than_requests() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend));
        let target = server.addr();
        let mac = |n: usize| {
            let mut m = vec![0u8; n];
            m[3] = 7; // key id 7
            m
        };
        let cat = |parts: &[Vec<u8>]| parts.concat();
        let shapes: Vec<(&str, u8, u8, Vec<u8>)> = vec![
            ("v4 client", 4, 3, vec![]),
            ("v3 client", 3, 3, vec![]),
            ("v2 client", 2, 3, vec![]),
            ("v1 client", 1, 3, vec![]),
            ("v1 mode 0", 1, 0, vec![]),
            ("v4 symmetric active", 4, 1, vec![]),
            ("v3 symmetric active", 3, 1, vec![]),
            ("crypto-NAK sized MAC (4)", 4, 3, mac(4)),
            ("MD5 MAC (20)", 4, 3, mac(20)),
            ("SHA-1 MAC (24)", 4, 3, mac(24)),
            ("v3 with MD5 MAC", 3, 3, mac(20)),
            ("one 16-byte field", 4, 3, ext_field(0x0104, 16, 16)),
            ("one 28-byte field", 4, 3, ext_field(0x0104, 28, 28)),
            (
                "two fields",
                4,
                3,
                cat(&[ext_field(0x0104, 16, 16), ext_field(0x0204, 32, 32)]),
            ),
            (
                "field + MAC",
                4,
                3,
                cat(&[ext_field(0x0104, 28, 28), mac(20)]),
            ),
            (
                "largest accepted (1232 bytes)",
                4,
                3,
                ext_field(0x0104, 1232 - 48, 1232 - 48),
            ),
        ];
        for (name, version, mode, tail) in &shapes {
            let t = ntp_now();
            let mut req = request(*version, *mode, t);
            req.extend_from_slice(tail);
            let reply = exchange(target, &req, Duration::from_secs(2))
                .unwrap_or_else(|| panic!("{backend}: {name} ({} bytes) not answered", req.len()));
            assert!(
                reply.len() <= req.len(),
                "{backend}: {name}: reply of {} bytes to a request of {}",
                reply.len(),
                req.len()
            );
            let has_mac = name.contains("MAC");
            assert_eq!(
                reply.len(),
                if has_mac { 52 } else { 48 },
                "{backend}: {name}"
            );
            let r = parse_reply(&reply);
            assert_eq!(r.origin, t, "{backend}: {name}: origin");
            assert_eq!(r.version, *version, "{backend}: {name}: version");
            let want_mode = if *mode == 1 { 2 } else { 4 };
            assert_eq!(r.mode, want_mode, "{backend}: {name}: mode");
            assert_eq!(r.stratum, 10, "{backend}: {name}");
            assert_eq!(r.refid, [127, 127, 1, 1], "{backend}: {name}");
            assert_eq!(r.leap, 0, "{backend}: {name}");
            assert_eq!(r.poll, 6, "{backend}: {name}: poll is echoed");
            assert!(
                (-30..=-6).contains(&r.precision),
                "{backend}: {name}: precision {}",
                r.precision
            );
            // Local reference: no root delay, tiny dispersion (16.16 seconds), refreshed often.
            assert_eq!(r.root_delay, 0, "{backend}: {name}");
            assert!(r.root_dispersion < 0x0000_1000, "{backend}: {name}: {r:?}");
            let age = common::ntp_to_f64(r.receive) - common::ntp_to_f64(r.reference);
            assert!(
                (0.0..5.0).contains(&age),
                "{backend}: {name}: reference time {age} s before receive"
            );
            let now = common::ntp_to_f64(ntp_now());
            assert!(
                (common::ntp_to_f64(r.transmit) - now).abs() < 0.05,
                "{backend}: {name}: transmit time far from our clock"
            );
            assert!(
                r.receive != 0 && r.transmit >= r.receive,
                "{backend}: {name}: receive {:#x} transmit {:#x}",
                r.receive,
                r.transmit
            );
        }
        let rep = server.stop().report;
        assert_eq!(
            counter(&rep, &["total", "answered"]),
            shapes.len() as u64,
            "{rep}"
        );
        assert_eq!(counter(&rep, &["total", "dropped_total"]), 0, "{rep}");
    }
}

/// A flood of garbage does not stop the server from answering a valid request in between.
#[test]
fn still_answers_during_garbage() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend));
        let target = server.addr();
        let junk = client_socket(target);
        for i in 0..2000u32 {
            let d = match i % 4 {
                0 => vec![],
                1 => request(6, 3, 0),
                2 => request(4, 6, 0),
                _ => vec![0xff; 1500],
            };
            let _ = junk.send(&d);
        }
        assert_answers(target);
        assert!(
            recv_timeout(&junk, Duration::from_millis(50)).is_none(),
            "{backend}: garbage was answered"
        );
        let r = server.stop().report;
        assert_eq!(counter(&r, &["total", "answered"]), 1, "{r}");
    }
}

fn stamps_total(r: &serde_json::Value) -> u64 {
    r["rx_timestamps"]
        .as_object()
        .expect("rx_timestamps")
        .values()
        .map(|v| v.as_u64().expect("a count"))
        .sum()
}

/// `rx_timestamps` tells how every received datagram was stamped, so its counts add up to
/// `received` — also for a datagram longer than the receive buffer (cut by the kernel,
/// MSG_TRUNC), which is received, stamped by the kernel, and dropped as too long.
#[test]
fn rx_timestamp_counts_add_up_to_received() {
    for backend in backends() {
        let server = Server::must_start(&ServerOpts::new(backend));
        let target = server.addr();
        for d in [vec![0u8; 4000], vec![0u8; 1300], vec![], request(6, 3, 1)] {
            assert!(exchange(target, &d, Duration::from_millis(50)).is_none());
        }
        assert_answers(target);
        let r = server.stop().report;
        assert_eq!(counter(&r, &["total", "received"]), 5, "{r}");
        assert_eq!(
            stamps_total(&r["total"]),
            counter(&r, &["total", "received"]),
            "{backend}: rx_timestamps must add up to received: {r}"
        );
        for w in r["workers"].as_array().expect("workers") {
            assert_eq!(stamps_total(w), counter(w, &["received"]), "{backend}: {w}");
        }
    }
}
