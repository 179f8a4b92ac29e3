//! Raw NTP over loopback: timestamps, request datagrams, decoded reply headers and one-shot
//! exchanges with a deadline.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds from 1900 (NTP era 0) to 1970.
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Now as a 64-bit NTP timestamp.
pub fn ntp_now() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// An NTP timestamp as seconds (f64), for offsets.
pub fn ntp_to_f64(ts: u64) -> f64 {
    (ts >> 32) as f64 + (ts & 0xffff_ffff) as f64 / 4_294_967_296.0
}

/// A 48-byte header with the given version and mode, and `transmit` as transmit timestamp.
pub fn request(version: u8, mode: u8, transmit: u64) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = ((version & 7) << 3) | (mode & 7);
    p[2] = 6; // poll
    p[40..48].copy_from_slice(&transmit.to_be_bytes());
    p
}

/// An RFC 7822 extension field header (type, length) followed by `body_len` zero bytes.
pub fn ext_field(field_type: u16, claimed_len: u16, actual_len: usize) -> Vec<u8> {
    let mut v = vec![0u8; actual_len];
    v[..2].copy_from_slice(&field_type.to_be_bytes());
    v[2..4].copy_from_slice(&claimed_len.to_be_bytes());
    v
}

/// A decoded reply header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub leap: u8,
    pub version: u8,
    pub mode: u8,
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    pub root_delay: u32,
    pub root_dispersion: u32,
    pub refid: [u8; 4],
    pub reference: u64,
    pub origin: u64,
    pub receive: u64,
    pub transmit: u64,
}

pub fn parse_reply(b: &[u8]) -> Reply {
    assert!(
        b.len() >= 48,
        "reply shorter than a header: {} bytes",
        b.len()
    );
    let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap());
    Reply {
        leap: b[0] >> 6,
        version: (b[0] >> 3) & 7,
        mode: b[0] & 7,
        stratum: b[1],
        poll: b[2] as i8,
        precision: b[3] as i8,
        root_delay: u32::from_be_bytes(b[4..8].try_into().unwrap()),
        root_dispersion: u32::from_be_bytes(b[8..12].try_into().unwrap()),
        refid: [b[12], b[13], b[14], b[15]],
        reference: u64_at(16),
        origin: u64_at(24),
        receive: u64_at(32),
        transmit: u64_at(40),
    }
}

/// A loopback socket of `target`'s family, connected to it.
pub fn client_socket(target: SocketAddr) -> UdpSocket {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    };
    let s = UdpSocket::bind(local).expect("binding a client socket");
    s.connect(target).expect("connecting a client socket");
    s
}

/// Waits up to `timeout` for one datagram on `sock`.
pub fn recv_timeout(sock: &UdpSocket, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => return Some(buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            // ECONNREFUSED from an earlier ICMP error: nothing is listening.
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// Sends `datagram` to `target` from a fresh socket and waits up to `timeout` for a reply.
pub fn exchange(target: SocketAddr, datagram: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let s = client_socket(target);
    s.send(datagram).expect("send");
    recv_timeout(&s, timeout)
}

/// A valid v4 client request is answered, with our transmit timestamp as origin.
pub fn assert_answers(target: SocketAddr) -> Reply {
    let t = ntp_now();
    let reply = exchange(target, &request(4, 3, t), Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no answer from {target} to a valid request"));
    assert_eq!(reply.len(), 48, "reply length");
    let r = parse_reply(&reply);
    assert_eq!(r.origin, t, "origin must echo our transmit timestamp");
    assert_eq!(r.mode, 4);
    r
}
