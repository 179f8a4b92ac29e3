//! Byte-vector tests of the server rules and property tests of the timestamp arithmetic.
//!
//! Requests are built by hand from bytes and replies are checked at exact offsets against values
//! computed independently of the code under test (the NTP seconds below were worked out by hand:
//! Unix second + 2_208_988_800, in hex).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use proptest::prelude::*;

use super::client::{check_reply, exchange, refid_text, ReplyError};
use super::packet::{Header, Leap, Mode, PacketError, Trailer, HEADER_LEN, MAX_PACKET_LEN};
use super::server::{client_request, respond, DropReason, KissCode, Request, MAX_REPLY_LEN};
use super::snapshot::{ClockSnapshot, Correction};
use super::time::{Exchange, NtpShort, NtpTimestamp, UnixNanos, ERA_SECS, NTP_UNIX_OFFSET_SECS};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The snapshot's reference time: Unix 1_700_000_000 s = NTP 0xE8FE6F80.
const REF_TIME: UnixNanos = UnixNanos::from_parts(1_700_000_000, 0);
const REF_TS_BYTES: [u8; 8] = [0xE8, 0xFE, 0x6F, 0x80, 0, 0, 0, 0];
/// The served receive time: Unix 1_700_000_100.5 s = NTP 0xE8FE6FE4.80000000.
const RX: UnixNanos = UnixNanos::from_parts(1_700_000_100, 500_000_000);
const RX_BYTES: [u8; 8] = [0xE8, 0xFE, 0x6F, 0xE4, 0x80, 0, 0, 0];
/// The served transmit time: Unix 1_700_000_100.75 s = NTP 0xE8FE6FE4.C0000000.
const TX: UnixNanos = UnixNanos::from_parts(1_700_000_100, 750_000_000);
const TX_BYTES: [u8; 8] = [0xE8, 0xFE, 0x6F, 0xE4, 0xC0, 0, 0, 0];
/// The client's transmit timestamp, carried in every hand-made request.
const CLIENT_TX: [u8; 8] = [0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x23, 0x45, 0x67];
const CLIENT_TX_TS: NtpTimestamp = NtpTimestamp(0xDEAD_BEEF_0123_4567);

/// A synchronised stratum-2 snapshot with distinctive values in every field.
fn snap() -> ClockSnapshot {
    ClockSnapshot {
        synchronized: true,
        leap: Leap::NoWarning,
        stratum: 2,
        precision: -23, // 0xE9
        root_delay: NtpShort(0x0001_8000),
        root_dispersion_ns: 1_000_000,
        dispersion_rate: 15e-6,
        reference_id: [192, 0, 2, 1],
        reference_time: REF_TIME,
        correction: Correction::default(),
        epoch: 7,
    }
}

/// A 48-byte request: first byte `b0`, poll `poll`, the client transmit timestamp, and junk in
/// the fields a server must not copy (stratum, precision, delays, refid, reference, origin,
/// receive).
fn req(b0: u8, poll: u8) -> Vec<u8> {
    let mut v = vec![
        b0, 0x03, poll, 0xEC, // LI/VN/mode, stratum, poll, precision
        0x11, 0x11, 0x11, 0x11, // root delay
        0x22, 0x22, 0x22, 0x22, // root dispersion
        0x33, 0x33, 0x33, 0x33, // refid
        0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, // reference ts
        0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, // origin ts
        0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, // receive ts
    ];
    v.extend_from_slice(&CLIENT_TX);
    assert_eq!(v.len(), HEADER_LEN);
    v
}

/// An extension field of `len` bytes (type, length, then a patterned body).
fn ext(field_type: u16, len: u16) -> Vec<u8> {
    let mut v = field_type.to_be_bytes().to_vec();
    v.extend_from_slice(&len.to_be_bytes());
    v.extend((4..len).map(|i| i as u8 ^ 0xA5));
    v
}

/// Runs `respond` with the standard snapshot and times; returns the reply bytes.
fn answer_with(request: &[u8], s: &ClockSnapshot) -> Result<Vec<u8>, DropReason> {
    let mut out = [0xFFu8; 256];
    let n = respond(request, s, RX, &mut out, || TX)?;
    Ok(out[..n].to_vec())
}

fn answer(request: &[u8]) -> Result<Vec<u8>, DropReason> {
    answer_with(request, &snap())
}

/// The reply to `req(0x23, 6)` under `snap()`, written out byte by byte.
const EXPECTED_V4_REPLY: [u8; 48] = [
    0x24, 0x02, 0x06, 0xE9, // LI 0, VN 4, mode 4; stratum 2; poll 6; precision -23
    0x00, 0x01, 0x80, 0x00, // root delay 1.5 s
    0x00, 0x00, 0x00,
    0xA5, // root dispersion: 1 ms + 100.5 s * 15 ppm = 2.5075 ms -> 165/65536
    0xC0, 0x00, 0x02, 0x01, // refid 192.0.2.1
    0xE8, 0xFE, 0x6F, 0x80, 0x00, 0x00, 0x00, 0x00, // reference
    0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x23, 0x45, 0x67, // origin = request transmit
    0xE8, 0xFE, 0x6F, 0xE4, 0x80, 0x00, 0x00, 0x00, // receive = rx
    0xE8, 0xFE, 0x6F, 0xE4, 0xC0, 0x00, 0x00, 0x00, // transmit = closure
];

// ---------------------------------------------------------------------------------------------
// Server reply: field by field
// ---------------------------------------------------------------------------------------------

#[test]
fn v4_client_request_gets_the_exact_expected_reply() {
    let reply = answer(&req(0x23, 6)).unwrap();
    assert_eq!(reply, EXPECTED_V4_REPLY);
}

#[test]
fn mode3_is_answered_with_mode4() {
    let reply = answer(&req(0x23, 6)).unwrap();
    assert_eq!(reply[0] & 7, 4);
    let r = Request::parse(&req(0x23, 6)).unwrap();
    assert_eq!(r.mode, Mode::Client);
    assert_eq!(r.reply_mode(), Mode::Server);
}

#[test]
fn mode1_is_answered_with_mode2() {
    // 0x21 = LI 0, VN 4, mode 1 (symmetric active).
    let reply = answer(&req(0x21, 6)).unwrap();
    assert_eq!(reply[0], 0x22); // LI 0, VN 4, mode 2
    assert_eq!(&reply[1..], &EXPECTED_V4_REPLY[1..]);
    // The same for NTPv1..v3 symmetric active.
    for (b0, want) in [(0x09u8, 0x0Au8), (0x11, 0x12), (0x19, 0x1A)] {
        assert_eq!(answer(&req(b0, 6)).unwrap()[0], want, "request {b0:#04x}");
    }
}

#[test]
fn version_is_copied_for_v1_to_v4() {
    // (request first byte, expected reply first byte): mode 3 -> mode 4, version kept.
    for (b0, want) in [(0x0Bu8, 0x0Cu8), (0x13, 0x14), (0x1B, 0x1C), (0x23, 0x24)] {
        let reply = answer(&req(b0, 6)).unwrap();
        assert_eq!(reply[0], want, "request {b0:#04x}");
        assert_eq!((reply[0] >> 3) & 7, (b0 >> 3) & 7);
        assert_eq!(&reply[1..], &EXPECTED_V4_REPLY[1..], "request {b0:#04x}");
    }
}

#[test]
fn ntpv1_mode0_is_answered_as_a_client() {
    // 0x08 = LI 0, VN 1, mode 0: NTPv1 had no mode field.
    let r = Request::parse(&req(0x08, 6)).unwrap();
    assert_eq!(r.mode, Mode::Client);
    assert_eq!(r.version, 1);
    let reply = answer(&req(0x08, 6)).unwrap();
    assert_eq!(reply[0], 0x0C); // LI 0, VN 1, mode 4
    assert_eq!(&reply[1..], &EXPECTED_V4_REPLY[1..]);
}

#[test]
fn poll_is_copied_including_negative() {
    for poll in [
        0u8, 4, 6, 10, 17, 0x7F, 0xFA, /* -6 */
        0xF0, /* -16 */
        0x80,
    ] {
        let reply = answer(&req(0x23, poll)).unwrap();
        assert_eq!(reply[2], poll, "poll {poll:#04x}");
    }
    assert_eq!(Request::parse(&req(0x23, 0xFA)).unwrap().poll, -6);
}

#[test]
fn origin_is_the_request_transmit_timestamp() {
    let mut r = req(0x23, 6);
    r[40..48].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let reply = answer(&r).unwrap();
    assert_eq!(&reply[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
    // A zero transmit timestamp is echoed as zero, not replaced.
    r[40..48].fill(0);
    assert_eq!(&answer(&r).unwrap()[24..32], &[0; 8]);
}

#[test]
fn receive_is_the_rx_passed_in() {
    let mut out = [0u8; MAX_REPLY_LEN];
    let rx = UnixNanos::from_parts(1_700_000_010, 250_000_000); // NTP 0xE8FE6F8A.40000000
    let n = respond(&req(0x23, 6), &snap(), rx, &mut out, || TX).unwrap();
    assert_eq!(n, 48);
    assert_eq!(&out[32..40], &[0xE8, 0xFE, 0x6F, 0x8A, 0x40, 0, 0, 0]);
    assert_eq!(&out[40..48], &TX_BYTES);
}

#[test]
fn transmit_is_the_closure_value_called_exactly_once() {
    let calls = Cell::new(0u32);
    let mut out = [0u8; MAX_REPLY_LEN];
    let tx = UnixNanos::from_parts(1_700_000_010, 250_000_000); // NTP 0xE8FE6F8A.40000000
    let n = respond(&req(0x23, 6), &snap(), RX, &mut out, || {
        calls.set(calls.get() + 1);
        tx
    })
    .unwrap();
    assert_eq!(n, 48);
    assert_eq!(calls.get(), 1);
    assert_eq!(&out[40..48], &[0xE8, 0xFE, 0x6F, 0x8A, 0x40, 0, 0, 0]);
    // Receive still comes from rx, not from the closure.
    assert_eq!(&out[32..40], &RX_BYTES);
}

/// The transmit closure must run after every other field is in the buffer. The closure cannot
/// look at `out` (it is mutably borrowed), so it panics instead: whatever `out` holds when the
/// unwind reaches us is exactly what was written before the closure ran.
#[test]
fn transmit_closure_runs_after_every_other_field_is_written() {
    let calls = Cell::new(0u32);
    // With a MAC so the crypto-NAK tail is covered too.
    let mut request = req(0x23, 6);
    request.extend_from_slice(&[0, 0, 0, 9]);
    request.extend_from_slice(&[0xAB; 16]);
    let parsed = Request::parse(&request).unwrap();
    let mut out = [0xFFu8; MAX_REPLY_LEN];
    let result = catch_unwind(AssertUnwindSafe(|| {
        parsed.write_reply(&snap(), RX, &mut out, || {
            calls.set(calls.get() + 1);
            std::panic::resume_unwind(Box::new("transmit closure reached"))
        })
    }));
    assert!(result.is_err(), "the closure must have been called");
    assert_eq!(calls.get(), 1);
    assert_eq!(&out[..40], &EXPECTED_V4_REPLY[..40]);
    assert_eq!(&out[48..52], &[0, 0, 0, 0]);
    // And once it returns, its value is what lands in the transmit field.
    let mut out = [0xFFu8; MAX_REPLY_LEN];
    assert_eq!(parsed.write_reply(&snap(), RX, &mut out, || TX), 52);
    assert_eq!(&out[..48], &EXPECTED_V4_REPLY);
}

#[test]
fn header_fields_come_from_the_snapshot() {
    let mut s = snap();
    s.leap = Leap::AddSecond;
    s.stratum = 3;
    s.precision = -6; // 0xFA
    s.root_delay = NtpShort(0x1234_5678);
    s.reference_id = *b"XYZW";
    s.reference_time = UnixNanos::from_parts(1_700_000_010, 250_000_000);
    s.dispersion_rate = 0.0;
    s.root_dispersion_ns = 1_500_000_000; // exactly 0x00018000
    let reply = answer_with(&req(0x23, 6), &s).unwrap();
    assert_eq!(reply[0], 0x64); // LI 1, VN 4, mode 4
    assert_eq!(reply[1], 3);
    assert_eq!(reply[3], 0xFA);
    assert_eq!(&reply[4..8], &[0x12, 0x34, 0x56, 0x78]);
    assert_eq!(&reply[8..12], &[0x00, 0x01, 0x80, 0x00]);
    assert_eq!(&reply[12..16], b"XYZW");
    assert_eq!(&reply[16..24], &[0xE8, 0xFE, 0x6F, 0x8A, 0x40, 0, 0, 0]);

    s.leap = Leap::DelSecond;
    let reply = answer_with(&req(0x23, 6), &s).unwrap();
    assert_eq!(reply[0], 0xA4); // LI 2, VN 4, mode 4
}

#[test]
fn root_dispersion_grows_with_rx_since_reference_at_the_rate() {
    let mut s = snap();
    s.root_dispersion_ns = 1_000_000;
    s.dispersion_rate = 1e-3;
    s.reference_time = UnixNanos::from_parts(1_700_000_000, 0);
    let rx = UnixNanos::from_parts(1_700_000_010, 0);
    // The closure returns a later time: dispersion must be computed at rx, not at transmit.
    let tx = UnixNanos::from_parts(1_700_000_011, 0);
    let mut out = [0u8; MAX_REPLY_LEN];
    respond(&req(0x23, 6), &s, rx, &mut out, || tx).unwrap();
    // 1 ms + 10 s * 1e-3 = 11 ms = 720.896/65536 s, rounded up to 721 = 0x2D1.
    assert_eq!(&out[8..12], &[0x00, 0x00, 0x02, 0xD1]);

    // At the reference time itself: just the published 1 ms (65.536 -> 66 = 0x42).
    respond(&req(0x23, 6), &s, s.reference_time, &mut out, || tx).unwrap();
    assert_eq!(&out[8..12], &[0x00, 0x00, 0x00, 0x42]);

    // Twice the elapsed time at half the rate gives the same growth.
    s.dispersion_rate = 0.5e-3;
    let rx2 = UnixNanos::from_parts(1_700_000_020, 0);
    respond(&req(0x23, 6), &s, rx2, &mut out, || tx).unwrap();
    assert_eq!(&out[8..12], &[0x00, 0x00, 0x02, 0xD1]);

    // An rx before the reference time never shrinks it.
    respond(
        &req(0x23, 6),
        &s,
        UnixNanos::from_parts(1_699_999_000, 0),
        &mut out,
        || tx,
    )
    .unwrap();
    assert_eq!(&out[8..12], &[0x00, 0x00, 0x00, 0x42]);
}

#[test]
fn unsynchronized_snapshot_puts_li3_and_stratum0_on_the_wire() {
    // A snapshot that is not synchronised but still holds leap 0 and stratum 2: the flag wins.
    let mut s = snap();
    s.synchronized = false;
    let reply = answer_with(&req(0x23, 6), &s).unwrap();
    assert_eq!(reply[0], 0xE4); // LI 3, VN 4, mode 4
    assert_eq!(reply[0] >> 6, 3);
    assert_eq!(reply[1], 0);
    // Still a real answer: origin, receive and transmit are filled.
    assert_eq!(&reply[24..32], &CLIENT_TX);
    assert_eq!(&reply[32..40], &RX_BYTES);
    assert_eq!(&reply[40..48], &TX_BYTES);
    // No reference: refid and reference time are zero.
    assert_eq!(&reply[12..16], &[0; 4]);
    assert_eq!(&reply[16..24], &[0; 8]);

    // The constructor for "no reference yet" behaves the same.
    let reply = answer_with(&req(0x1B, 6), &ClockSnapshot::unsynchronized(-20)).unwrap();
    assert_eq!(reply[0], 0xDC); // LI 3, VN 3, mode 4
    assert_eq!(reply[1], 0);
    assert_eq!(reply[3], 0xEC); // precision -20 still served
}

// ---------------------------------------------------------------------------------------------
// Requests that are never answered
// ---------------------------------------------------------------------------------------------

#[test]
fn unanswered_modes_are_bad_mode() {
    // Mode 0 with versions 2-4.
    for b0 in [0x10u8, 0x18, 0x20] {
        assert_eq!(answer(&req(b0, 6)), Err(DropReason::BadMode), "{b0:#04x}");
    }
    // Modes 2, 4, 5, 6, 7 with every accepted version, and with any leap indicator.
    for vn in 1u8..=4 {
        for mode in [2u8, 4, 5, 6, 7] {
            for li in 0u8..4 {
                let b0 = (li << 6) | (vn << 3) | mode;
                assert_eq!(
                    Request::parse(&req(b0, 6)),
                    Err(DropReason::BadMode),
                    "{b0:#04x}"
                );
            }
        }
    }
    // Control (6) and private (7) stay unanswered even with a body after the header.
    for b0 in [0x16u8, 0x17, 0x1E, 0x1F, 0x26, 0x27] {
        let mut r = req(b0, 6);
        r.extend_from_slice(&[0; 20]);
        assert_eq!(answer(&r), Err(DropReason::BadMode), "{b0:#04x}");
    }
}

#[test]
fn bad_versions_are_dropped() {
    for vn in [0u8, 5, 6, 7] {
        for mode in [0u8, 1, 3] {
            let b0 = (vn << 3) | mode;
            assert_eq!(
                answer(&req(b0, 6)),
                Err(DropReason::BadVersion),
                "{b0:#04x}"
            );
        }
    }
    // Explicitly the common client bytes.
    for b0 in [0x03u8, 0x2B, 0x33, 0x3B] {
        assert_eq!(
            answer(&req(b0, 6)),
            Err(DropReason::BadVersion),
            "{b0:#04x}"
        );
    }
}

#[test]
fn short_requests_are_dropped() {
    assert_eq!(answer(&[]), Err(DropReason::TooShort));
    assert_eq!(answer(&[0x23]), Err(DropReason::TooShort));
    let r = req(0x23, 6);
    assert_eq!(answer(&r[..47]), Err(DropReason::TooShort));
    assert_eq!(Request::parse(&r[..47]), Err(DropReason::TooShort));
    assert!(answer(&r).is_ok());
}

#[test]
fn long_requests_are_dropped() {
    // The largest accepted: the header and one extension field filling the rest.
    let mut r = req(0x23, 6);
    r.extend(ext(0xF00D, (MAX_PACKET_LEN - HEADER_LEN) as u16));
    assert_eq!(r.len(), MAX_PACKET_LEN);
    assert_eq!(answer(&r).unwrap().len(), 48);
    // One byte more.
    r.push(0);
    assert_eq!(answer(&r), Err(DropReason::TooLong));
    let mut big = req(0x23, 6);
    big.resize(9000, 0);
    assert_eq!(Request::parse(&big), Err(DropReason::TooLong));
}

#[test]
fn malformed_extension_fields_are_dropped() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Only part of an extension field header.
        ("truncated field header", vec![0x01, 0x04]),
        // A 32-byte field of which only 28 bytes arrived.
        ("truncated field body", ext(0x0104, 32)[..28].to_vec()),
        // Length 30 in a 32-byte region.
        ("length not a multiple of 4", {
            let mut e = ext(0x0104, 32);
            e[3] = 30;
            e
        }),
        // An 18-byte field followed by a good 16-byte one: it would walk cleanly if lengths
        // that are not a multiple of 4 were taken.
        ("length 18, then a good field", {
            let mut e = ext(0x0104, 18);
            e.extend(ext(0x0105, 16));
            e
        }),
        // Length 12 (the minimum is 16), in a 28-byte region.
        ("length below 16", {
            let mut e = ext(0x0104, 28);
            e[3] = 12;
            e
        }),
        // A 12-byte field followed by a good 16-byte one: it would walk cleanly if fields
        // shorter than 16 bytes were taken.
        ("length 12, then a good field", {
            let mut e = ext(0x0104, 12);
            e.extend(ext(0x0105, 16));
            e
        }),
        // The same with an 8-byte field and a 28-byte one.
        ("length 8, then a good field", {
            let mut e = ext(0x0104, 8);
            e.extend(ext(0x0105, 28));
            e
        }),
        // Length zero (would never advance).
        ("length zero", {
            let mut e = ext(0x0104, 28);
            e[3] = 0;
            e
        }),
        // Length 0x0400 with 32 bytes present.
        ("length past the end", {
            let mut e = ext(0x0104, 32);
            e[2] = 0x04;
            e[3] = 0x00;
            e
        }),
        // A good field, then garbage that is neither a field nor a MAC.
        ("good field then garbage", {
            let mut e = ext(0x0104, 16);
            e.extend_from_slice(&[0xFF; 7]);
            e
        }),
        // A good field followed by a field pointing past the end.
        ("good field then field past the end", {
            let mut e = ext(0x0104, 16);
            e.extend(ext(0x0105, 64)[..36].to_vec());
            e
        }),
    ];
    for (what, trailer) in cases {
        let mut r = req(0x23, 6);
        r.extend_from_slice(&trailer);
        assert_eq!(answer(&r), Err(DropReason::Malformed), "{what}");
        assert_eq!(
            Trailer::parse(&trailer),
            Err(PacketError::MalformedExtension),
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reply length and trailers
// ---------------------------------------------------------------------------------------------

fn with_trailer(parts: &[&[u8]]) -> Vec<u8> {
    let mut r = req(0x23, 6);
    for p in parts {
        r.extend_from_slice(p);
    }
    r
}

#[test]
fn reply_is_never_longer_than_the_request() {
    let mac20: Vec<u8> = [0, 0, 0, 1].into_iter().chain([0xAA; 16]).collect();
    let mac24: Vec<u8> = [0, 0, 0, 2].into_iter().chain([0xBB; 20]).collect();
    let nak: Vec<u8> = vec![0, 0, 0, 0];
    let e16 = ext(0x0104, 16);
    let e28 = ext(0x0204, 28);
    let e36 = ext(0xABCD, 36);
    // (request, expected reply length)
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        ("bare header", with_trailer(&[]), 48),
        ("MD5 MAC", with_trailer(&[&mac20]), 52),
        ("SHA-1 MAC", with_trailer(&[&mac24]), 52),
        ("crypto-NAK", with_trailer(&[&nak]), 52),
        ("one field", with_trailer(&[&e16]), 48),
        ("one field of 28", with_trailer(&[&e28]), 48),
        ("two fields", with_trailer(&[&e16, &e36]), 48),
        ("three fields", with_trailer(&[&e28, &e16, &e36]), 48),
        ("field + MD5 MAC", with_trailer(&[&e16, &mac20]), 52),
        ("field + SHA-1 MAC", with_trailer(&[&e36, &mac24]), 52),
        ("two fields + MAC", with_trailer(&[&e28, &e16, &mac20]), 52),
        ("field + crypto-NAK", with_trailer(&[&e16, &nak]), 52),
    ];
    for (what, request, want) in cases {
        let mut out = [0xFFu8; MAX_REPLY_LEN];
        let n = respond(&request, &snap(), RX, &mut out, || TX)
            .unwrap_or_else(|e| panic!("{what}: dropped ({e:?})"));
        assert_eq!(n, want, "{what}");
        assert!(
            n <= request.len(),
            "{what}: reply {n} > request {}",
            request.len()
        );
        assert_eq!(&out[..48], &EXPECTED_V4_REPLY, "{what}");
        if n == 52 {
            assert_eq!(&out[48..52], &[0, 0, 0, 0], "{what}: crypto-NAK");
        }
        let parsed = Request::parse(&request).unwrap();
        assert_eq!(parsed.len, request.len(), "{what}");
        assert_eq!(parsed.reply_len(), n, "{what}");
    }
}

#[test]
fn mac_requests_get_a_crypto_nak() {
    // 48 + 20 (key id 7 + MD5 digest).
    let mut r = req(0x23, 6);
    r.extend_from_slice(&[0, 0, 0, 7]);
    r.extend_from_slice(&[0x5A; 16]);
    let parsed = Request::parse(&r).unwrap();
    assert!(parsed.has_mac());
    let reply = answer(&r).unwrap();
    assert_eq!(reply.len(), 52);
    assert_eq!(&reply[48..], &[0, 0, 0, 0]);
    // 48 + 24 (SHA-1 digest).
    let mut r = req(0x23, 6);
    r.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    r.extend_from_slice(&[0x5A; 20]);
    let reply = answer(&r).unwrap();
    assert_eq!(reply.len(), 52);
    assert_eq!(&reply[48..], &[0, 0, 0, 0]);
    // A bare request carries no MAC and gets none.
    assert!(!Request::parse(&req(0x23, 6)).unwrap().has_mac());
}

#[test]
fn unknown_extension_fields_are_skipped_and_answered() {
    let mut r = req(0x23, 6);
    r.extend(ext(0xFFFF, 16));
    r.extend(ext(0x7E57, 40));
    r.extend(ext(0x0000, 28));
    let parsed = Request::parse(&r).unwrap();
    assert_eq!(parsed.extension_fields, 3);
    assert!(!parsed.has_mac());
    assert_eq!(parsed.transmit_ts, CLIENT_TX_TS);
    assert_eq!(answer(&r).unwrap(), EXPECTED_V4_REPLY);
    // An NTPv3 request has no extension fields: what follows its header is a MAC (of a
    // 28-byte digest here, as chronyd sends with SHA-256 keys), answered with a crypto-NAK.
    let mut r3 = req(0x1B, 6);
    r3.extend(ext(0xFFFF, 32));
    let parsed = Request::parse(&r3).unwrap();
    assert_eq!(parsed.extension_fields, 0);
    assert_eq!(parsed.mac.map(|m| (m.at, m.digest_len)), Some((48, 28)));
    let reply = answer(&r3).unwrap();
    assert_eq!((reply[0], reply.len()), (0x1C, 52));
}

// ---------------------------------------------------------------------------------------------
// Kiss-o'-death
// ---------------------------------------------------------------------------------------------

#[test]
fn kiss_codes_and_their_text() {
    use super::client::{code_text, kiss_code};
    assert_eq!(kiss_code(*b"RATE"), Some(*b"RATE"));
    assert_eq!(kiss_code(*b"GPS\0"), Some(*b"GPS\0"));
    assert_eq!(kiss_code([0; 4]), None);
    assert_eq!(kiss_code(*b"\0ATE"), None);
    assert_eq!(kiss_code(*b"R TE"), None);
    assert_eq!(code_text(*b"DENY"), "DENY");
    assert_eq!(code_text(*b"GPS\0"), "GPS");
    assert_eq!(code_text([0; 4]), "");
    assert_eq!(code_text([b'A', 0x07, 0x1B, 0]), "A\\x07\\x1b");
    assert_eq!(ReplyError::Kiss(*b"RATE").to_string(), "kiss-o'-death RATE");
}

#[test]
fn kod_replies() {
    for (code, ascii) in [
        (KissCode::Deny, *b"DENY"),
        (KissCode::Rate, *b"RATE"),
        (KissCode::Rstr, *b"RSTR"),
        (KissCode::Cryp, *b"CRYP"),
    ] {
        let parsed = Request::parse(&req(0x23, 0xFA)).unwrap();
        let mut out = [0x77u8; MAX_REPLY_LEN];
        let n = parsed.write_kod(code, &mut out);
        assert_eq!(n, 48);
        let mut want = vec![0xE4, 0x00, 0xFA, 0x00]; // LI 3, VN 4, mode 4; stratum 0; poll -6
        want.extend_from_slice(&[0; 8]); // root delay, root dispersion
        want.extend_from_slice(&ascii); // refid = kiss code
        want.extend_from_slice(&[0; 8]); // reference
        want.extend_from_slice(&CLIENT_TX); // origin
        want.extend_from_slice(&CLIENT_TX); // receive
        want.extend_from_slice(&CLIENT_TX); // transmit
        assert_eq!(&out[..48], &want[..], "{code:?}");
        // Nothing written past the header.
        assert!(out[48..].iter().all(|&b| b == 0x77));
        // A client reads it as that kiss code.
        assert_eq!(
            check_reply(&out[..n], 4, CLIENT_TX_TS),
            Err(ReplyError::Kiss(ascii))
        );
    }
    // A KoD to a MAC-carrying request is still a bare 48 bytes, never longer than the request.
    let mut r = req(0x1B, 6);
    r.extend_from_slice(&[0; 20]);
    let mut out = [0u8; MAX_REPLY_LEN];
    assert_eq!(
        Request::parse(&r)
            .unwrap()
            .write_kod(KissCode::Rate, &mut out),
        48
    );
    assert_eq!(out[0], 0xDC); // LI 3, VN 3, mode 4
                              // The crypto-NAK without time (a bad MAC when authentication is required): the KoD CRYP
                              // and a zero key id, 52 bytes; without a MAC in the request, the bare KoD.
    let parsed = Request::parse(&r).unwrap();
    let mut out = [0x77u8; MAX_REPLY_LEN];
    assert_eq!(parsed.write_crypto_nak_kod(&mut out), 52);
    assert_eq!(&out[12..16], b"CRYP");
    assert_eq!(&out[48..52], &[0; 4]);
    assert_eq!(out[52], 0x77);
    let plain = Request::parse(&req(0x23, 6)).unwrap();
    assert_eq!(plain.write_crypto_nak_kod(&mut out), 48);
}

#[test]
fn the_mac_field_points_at_the_key_id_after_the_extension_fields() {
    let mut r = req(0x23, 6);
    r.extend(ext(0x7E57, 16));
    r.extend_from_slice(&[0, 0, 0, 9]);
    r.extend_from_slice(&[0xAB; 16]);
    let mac = Request::parse(&r).unwrap().mac.unwrap();
    assert_eq!((mac.key_id, mac.at, mac.digest_len), (9, 64, 16));
    assert_eq!(mac.covered(&r), &r[..64]);
    assert_eq!(mac.digest(&r), &[0xAB; 16]);
    // NTPv3 with a whole SHA-512 digest (68 bytes of MAC); one word more is malformed.
    let mut v3 = req(0x1B, 6);
    v3.extend_from_slice(&[0, 0, 0, 5]);
    v3.extend_from_slice(&[0xCD; 64]);
    let mac = Request::parse(&v3).unwrap().mac.unwrap();
    assert_eq!((mac.key_id, mac.at, mac.digest_len), (5, 48, 64));
    v3.extend_from_slice(&[0; 4]);
    assert_eq!(Request::parse(&v3), Err(DropReason::Malformed));
}

// ---------------------------------------------------------------------------------------------
// Client: checking a reply
// ---------------------------------------------------------------------------------------------

/// A good stratum-1 v4 reply to a request whose transmit timestamp was `CLIENT_TX`.
fn good_reply() -> Vec<u8> {
    let mut v = vec![
        0x24, 0x01, 0x06, 0xE9, // LI 0, VN 4, mode 4; stratum 1; poll 6; precision -23
        0x00, 0x00, 0x00, 0x10, // root delay
        0x00, 0x00, 0x00, 0x20, // root dispersion
        b'G', b'P', b'S', 0x00, // refid
    ];
    v.extend_from_slice(&REF_TS_BYTES);
    v.extend_from_slice(&CLIENT_TX);
    v.extend_from_slice(&RX_BYTES);
    v.extend_from_slice(&TX_BYTES);
    v
}

#[test]
fn check_reply_accepts_a_good_reply() {
    let h = check_reply(&good_reply(), 4, CLIENT_TX_TS).unwrap();
    assert_eq!(h.mode, Mode::Server);
    assert_eq!(h.version, 4);
    assert_eq!(h.stratum, 1);
    assert_eq!(h.poll, 6);
    assert_eq!(h.precision, -23);
    assert_eq!(h.root_delay, NtpShort(0x10));
    assert_eq!(h.root_dispersion, NtpShort(0x20));
    assert_eq!(h.reference_id, *b"GPS\0");
    assert_eq!(h.origin_ts, CLIENT_TX_TS);
    assert_eq!(h.receive_ts, NtpTimestamp(0xE8FE_6FE4_8000_0000));
    assert_eq!(h.transmit_ts, NtpTimestamp(0xE8FE_6FE4_C000_0000));
    // Equal receive and transmit are fine, and so is a trailing crypto-NAK.
    let mut r = good_reply();
    r[40..48].copy_from_slice(&RX_BYTES);
    assert!(check_reply(&r, 4, CLIENT_TX_TS).is_ok());
    r.extend_from_slice(&[0; 4]);
    assert!(check_reply(&r, 4, CLIENT_TX_TS).is_ok());
    // Stratum 15 is still synchronised.
    let mut r = good_reply();
    r[1] = 15;
    assert!(check_reply(&r, 4, CLIENT_TX_TS).is_ok());
    // The leap-second warnings are not errors.
    for b0 in [0x64u8, 0xA4] {
        let mut r = good_reply();
        r[0] = b0;
        assert!(check_reply(&r, 4, CLIENT_TX_TS).is_ok());
    }
}

#[test]
fn check_reply_reports_every_error() {
    let sent = CLIENT_TX_TS;
    let check = |r: &[u8]| check_reply(r, 4, sent);

    let good = good_reply();
    assert_eq!(
        check(&good[..47]),
        Err(ReplyError::Malformed(PacketError::TooShort))
    );
    assert_eq!(
        check(&[]),
        Err(ReplyError::Malformed(PacketError::TooShort))
    );
    let mut long = good.clone();
    long.resize(MAX_PACKET_LEN + 1, 0);
    assert_eq!(
        check(&long),
        Err(ReplyError::Malformed(PacketError::TooLong))
    );
    let mut bad_trailer = good.clone();
    bad_trailer.extend_from_slice(&[0xFF; 7]);
    assert_eq!(
        check(&bad_trailer),
        Err(ReplyError::Malformed(PacketError::MalformedExtension))
    );

    let mut r = good.clone();
    r[0] = 0x23; // mode 3
    assert_eq!(check(&r), Err(ReplyError::WrongMode(3)));
    r[0] = 0x25; // mode 5 (broadcast)
    assert_eq!(check(&r), Err(ReplyError::WrongMode(5)));
    r[0] = 0x22; // mode 2
    assert_eq!(check(&r), Err(ReplyError::WrongMode(2)));

    let mut r = good.clone();
    r[0] = 0x1C; // VN 3, mode 4
    assert_eq!(check(&r), Err(ReplyError::WrongVersion(3)));
    assert!(check_reply(&r, 3, sent).is_ok());

    let mut r = good.clone();
    r[31] ^= 1; // origin differs in its last bit
    assert_eq!(check(&r), Err(ReplyError::WrongOrigin));
    assert_eq!(
        check_reply(&good, 4, NtpTimestamp(sent.0 + 1)),
        Err(ReplyError::WrongOrigin)
    );

    let mut r = good.clone();
    r[0] = 0xE4; // a real KoD has LI 3 too; the kiss code wins
    r[1] = 0;
    r[12..16].copy_from_slice(b"RATE");
    assert_eq!(check(&r), Err(ReplyError::Kiss(*b"RATE")));
    // Shorter codes are NUL-padded.
    r[12..16].copy_from_slice(b"GO\0\0");
    assert_eq!(check(&r), Err(ReplyError::Kiss(*b"GO\0\0")));

    // An unsynchronised server (LI 3, stratum 0, zero refid) is not a kiss-o'-death, and
    // neither is stratum 0 with bytes that are no printable code.
    for refid in [
        [0u8; 4],
        [0x01, 0x02, 0x03, 0x04],
        *b"RA\0E",
        [0xC3, 0xA9, b'A', 0],
    ] {
        let mut r = good.clone();
        r[0] = 0xE4;
        r[1] = 0;
        r[12..16].copy_from_slice(&refid);
        assert_eq!(check(&r), Err(ReplyError::Unsynchronized), "{refid:?}");
        assert_eq!(
            ReplyError::Unsynchronized.to_string(),
            "server is not synchronised"
        );
    }

    let mut r = good.clone();
    r[0] = 0xE4; // LI 3
    assert_eq!(check(&r), Err(ReplyError::Unsynchronized));
    let mut r = good.clone();
    r[1] = 16;
    assert_eq!(check(&r), Err(ReplyError::Unsynchronized));
    r[1] = 255;
    assert_eq!(check(&r), Err(ReplyError::Unsynchronized));

    let mut r = good.clone();
    r[32..40].fill(0); // receive zero
    assert_eq!(check(&r), Err(ReplyError::ZeroTimestamp));
    let mut r = good.clone();
    r[40..48].fill(0); // transmit zero
    assert_eq!(check(&r), Err(ReplyError::ZeroTimestamp));

    let mut r = good.clone();
    r[40..48].copy_from_slice(&[0xE8, 0xFE, 0x6F, 0xE4, 0x7F, 0xFF, 0xFF, 0xFF]); // 1 unit early
    assert_eq!(check(&r), Err(ReplyError::Reversed));
}

#[test]
fn refid_text_by_stratum() {
    assert_eq!(refid_text(1, *b"GPS\0"), "GPS");
    assert_eq!(refid_text(1, *b"PPS\0"), "PPS");
    assert_eq!(refid_text(0, *b"RATE"), "RATE");
    assert_eq!(refid_text(2, [192, 0, 2, 1]), "192.0.2.1");
    assert_eq!(refid_text(3, [127, 127, 1, 1]), "127.127.1.1");
    assert_eq!(refid_text(2, *b"GPS\0"), "71.80.83.0");
}

#[test]
fn client_request_respond_check_round_trip() {
    let t1 = NtpTimestamp(0xE8FE_6FE4_0000_0000); // Unix 1_700_000_100.0
    let request = client_request(4, 6, t1);
    assert_eq!(request[0], 0x23);
    assert_eq!(request[2], 6);
    assert_eq!(&request[40..48], &t1.to_be_bytes());
    let mut out = [0u8; MAX_REPLY_LEN];
    let n = respond(&request, &snap(), RX, &mut out, || TX).unwrap();
    let h = check_reply(&out[..n], 4, t1).unwrap();
    // Client receives at 1_700_000_101.25: t2 - t1 = 0.5 s, t3 - t4 = -0.5 s, so offset 0,
    // and 1.25 s round trip less 0.25 s in the server is 1 s of delay.
    let ex = exchange(&h, NtpTimestamp(0xE8FE_6FE5_4000_0000));
    assert_eq!(ex.t1, t1);
    assert_eq!(ex.offset_nanos(), 0);
    assert_eq!(ex.delay_nanos(), 1_000_000_000);
    // Received at 1_700_000_101.0 instead: (0.5 - 0.25) / 2 = 125 ms offset, 0.75 s delay.
    let ex = exchange(&h, NtpTimestamp(0xE8FE_6FE5_0000_0000));
    assert_eq!(ex.offset_nanos(), 125_000_000);
    assert_eq!(ex.delay_nanos(), 750_000_000);
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

const NANOS: i64 = 1_000_000_000;
/// 1900-01-01T00:00:00Z and 2200-01-01T00:00:00Z as Unix nanoseconds.
const Y1900: i64 = -NTP_UNIX_OFFSET_SECS * NANOS;
const Y2200: i64 = 7_258_118_400 * NANOS;
/// Just under 68 years (2^31 s), the era-ambiguity limit.
const HALF_ERA_NANOS: i64 = ((1i64 << 31) - 1) * NANOS;
/// The 2036 rollover (NTP era 1, second 0) as Unix nanoseconds.
const ROLLOVER: i64 = (ERA_SECS - NTP_UNIX_OFFSET_SECS) * NANOS;
/// The largest duration that NtpShort represents without saturating (0xFFFF.FFFF s).
const SHORT_MAX_NANOS: i64 = 65_535_999_984_741;

fn leap_strategy() -> impl Strategy<Value = Leap> {
    (0u8..4).prop_map(Leap::from_bits)
}

fn mode_strategy() -> impl Strategy<Value = Mode> {
    (0u8..8).prop_map(Mode::from_bits)
}

prop_compose! {
    fn header_strategy()(
        leap in leap_strategy(),
        version in 0u8..8,
        mode in mode_strategy(),
        stratum in any::<u8>(),
        poll in any::<i8>(),
        precision in any::<i8>(),
        root_delay in any::<u32>(),
        root_dispersion in any::<u32>(),
        reference_id in any::<[u8; 4]>(),
        ts in any::<[u64; 4]>(),
    ) -> Header {
        Header {
            leap,
            version,
            mode,
            stratum,
            poll,
            precision,
            root_delay: NtpShort(root_delay),
            root_dispersion: NtpShort(root_dispersion),
            reference_id,
            reference_ts: NtpTimestamp(ts[0]),
            origin_ts: NtpTimestamp(ts[1]),
            receive_ts: NtpTimestamp(ts[2]),
            transmit_ts: NtpTimestamp(ts[3]),
        }
    }
}

/// One piece of a plausible trailer: a well-formed extension field, possibly corrupted.
fn ext_piece() -> impl Strategy<Value = Vec<u8>> {
    (any::<u16>(), 4u16..40, any::<u8>(), 0u8..8).prop_map(|(t, words, fill, corrupt)| {
        let mut e = ext(t, words * 4);
        e[4..].fill(fill);
        if corrupt == 0 {
            // Truncate or damage the length.
            e[3] ^= fill | 1;
        }
        e
    })
}

/// A request that is often (not always) acceptable: a header with any first byte, then
/// extension fields and maybe a MAC-length tail, maybe cut short.
fn plausible_request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            3 => prop::sample::select(vec![0x23u8, 0x1B, 0x13, 0x0B, 0x08, 0x21, 0xE3, 0x09]),
            1 => any::<u8>(),
        ],
        prop::collection::vec(any::<u8>(), 47),
        prop::collection::vec(ext_piece(), 0..6),
        prop::sample::select(vec![0usize, 0, 4, 20, 24, 7]),
        any::<Option<u16>>(),
    )
        .prop_map(|(b0, rest, fields, mac, cut)| {
            let mut v = vec![b0];
            v.extend_from_slice(&rest);
            for f in fields {
                v.extend(f);
            }
            v.extend(std::iter::repeat_n(0x3Cu8, mac));
            if let Some(c) = cut {
                if c % 4 == 0 {
                    v.truncate(c as usize % (v.len() + 1));
                }
            }
            v
        })
}

fn check_answer_no_longer(request: &[u8]) -> Result<(), TestCaseError> {
    let mut out = [0xEEu8; MAX_REPLY_LEN];
    if let Ok(req) = Request::parse(request) {
        prop_assert!(req.reply_len() <= request.len());
        let n = req.write_reply(&snap(), RX, &mut out, || TX);
        prop_assert!(
            n <= request.len(),
            "reply {} > request {}",
            n,
            request.len()
        );
        prop_assert!(n == 48 || n == 52);
        prop_assert!((1..=4).contains(&((out[0] >> 3) & 7)));
        prop_assert!(out[0] & 7 == 4 || out[0] & 7 == 2);
        prop_assert_eq!(&out[24..32], &request[40..48]);
        prop_assert_eq!(
            Ok(n),
            respond(request, &snap(), RX, &mut [0u8; MAX_REPLY_LEN], || TX)
        );
    } else {
        prop_assert!(respond(request, &snap(), RX, &mut out, || TX).is_err());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn prop_unix_ntp_round_trip(t in Y1900..=Y2200, d in -HALF_ERA_NANOS..=HALF_ERA_NANOS) {
        // The pivot is any instant within 68 years (clamped to what UnixNanos can hold).
        let pivot = UnixNanos(t.saturating_add(d));
        let back = NtpTimestamp::from_unix(UnixNanos(t)).to_unix_near(pivot);
        prop_assert!((back.0 - t).abs() <= 1, "t={} pivot={} back={}", t, pivot.0, back.0);
    }

    #[test]
    fn prop_diff_is_antisymmetric(a in any::<u64>(), b in any::<u64>()) {
        // Exactly half an era apart is the one ambiguous case (both readings are i64::MIN).
        prop_assume!(a.wrapping_sub(b) != 1 << 63);
        let (a, b) = (NtpTimestamp(a), NtpTimestamp(b));
        let ab = a.diff_nanos(b);
        let ba = b.diff_nanos(a);
        prop_assert!((ab + ba).abs() <= 1, "ab={} ba={}", ab, ba);
        prop_assert_eq!(a.diff_fixed(b).wrapping_neg(), b.diff_fixed(a));
    }

    #[test]
    fn prop_diff_across_2036_is_the_unix_difference(
        before in 1i64..=HALF_ERA_NANOS / 2,
        after in 0i64..=HALF_ERA_NANOS / 2,
    ) {
        let a = UnixNanos(ROLLOVER - before);
        let b = UnixNanos(ROLLOVER + after);
        let (ta, tb) = (NtpTimestamp::from_unix(a), NtpTimestamp::from_unix(b));
        // a is in era 0, b in era 1: b's 32-bit seconds have wrapped past a's.
        prop_assert!(tb.secs() < ta.secs() || after < NANOS && before < NANOS);
        prop_assert_eq!(tb.diff_nanos(ta), b.0 - a.0);
        prop_assert_eq!(ta.diff_nanos(tb), a.0 - b.0);
        prop_assert_eq!(tb.to_unix_near(a), b);
        prop_assert_eq!(ta.to_unix_near(b), a);
    }

    #[test]
    fn prop_exchange_recovers_offset_and_delay(
        t0 in Y1900..=Y2200,
        offset in -(1i64 << 30) * NANOS..=(1i64 << 30) * NANOS,
        one_way in 0i64..=100 * NANOS,
        server_time in 0i64..=10 * NANOS,
    ) {
        // Client clock C; server clock C + offset; symmetric paths of `one_way` each.
        let t1 = t0;
        let t2 = t0 + one_way + offset;
        let t3 = t2 + server_time;
        let t4 = t0 + 2 * one_way + server_time;
        let ts = |n: i64| NtpTimestamp::from_unix(UnixNanos(n));
        let ex = Exchange { t1: ts(t1), t2: ts(t2), t3: ts(t3), t4: ts(t4) };
        prop_assert!((ex.offset_nanos() - offset).abs() <= 1, "offset {}", ex.offset_nanos());
        prop_assert!((ex.delay_nanos() - 2 * one_way).abs() <= 1, "delay {}", ex.delay_nanos());
    }

    #[test]
    fn prop_short_round_trip(n in 0i64..=65_536 * NANOS) {
        let s = NtpShort::from_nanos(n);
        let back = s.as_nanos();
        // Resolution is 2^-16 s = 15.26 us; from_nanos rounds up, never down.
        prop_assert!((back - n).abs() <= 16_000, "n={} back={}", n, back);
        prop_assert!(back >= n.min(SHORT_MAX_NANOS));
        let f = NtpShort::from_secs_f64(n as f64 / 1e9);
        prop_assert!((f.as_nanos() - n).abs() <= 16_000);
    }

    #[test]
    fn prop_short_saturates(n in 65_536 * NANOS..=i64::MAX, neg in i64::MIN..=0) {
        prop_assert_eq!(NtpShort::from_nanos(n), NtpShort::MAX);
        prop_assert_eq!(NtpShort::from_secs_f64(n as f64 / 1e9), NtpShort::MAX);
        prop_assert_eq!(NtpShort::from_nanos(neg), NtpShort(0));
        prop_assert_eq!(NtpShort::from_secs_f64(neg as f64 / 1e9), NtpShort(0));
    }

    #[test]
    fn prop_header_round_trip(h in header_strategy()) {
        let bytes = h.to_bytes();
        prop_assert_eq!(Header::parse(&bytes), Ok(h));
        prop_assert_eq!(bytes[0], ((h.leap as u8) << 6) | (h.version << 3) | h.mode as u8);
        prop_assert_eq!(bytes[2], h.poll as u8);
        prop_assert_eq!(&bytes[40..48], &h.transmit_ts.0.to_be_bytes());
        // Trailing bytes do not change the header.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[0xAB; 20]);
        prop_assert_eq!(Header::parse(&longer), Ok(h));
    }

    #[test]
    fn prop_parse_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..1400),
    ) {
        let _ = Trailer::parse(&bytes);
        check_answer_no_longer(&bytes)?;
        let _ = check_reply(&bytes, 4, CLIENT_TX_TS);
    }

    #[test]
    fn prop_answered_requests_are_never_longer(bytes in plausible_request()) {
        if bytes.len() >= HEADER_LEN {
            let _ = Trailer::parse(&bytes[HEADER_LEN..]);
        }
        check_answer_no_longer(&bytes)?;
    }

    #[test]
    fn prop_trailer_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1400)) {
        if let Ok(t) = Trailer::parse(&bytes) {
            // Whatever was accepted walks cleanly and accounts for every byte.
            let fields: usize = t.extensions().map(|f| f.body.len() + 4).sum();
            let mac = t.mac.map_or(0, |m| 4 + m.digest.len());
            prop_assert_eq!(fields + mac, bytes.len());
        }
    }
}
