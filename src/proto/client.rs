//! The client side of one exchange, sans IO: checking a server's reply against the request we
//! sent. Used by `meridian query`, the load generator and the discipline thread.

use super::packet::{Header, Leap, Mode, PacketError, PacketView};
use super::time::{Exchange, NtpTimestamp};

/// Why a reply is not a usable answer to our request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyError {
    /// Not a well-formed NTP packet (too short, too long, bad trailer).
    Malformed(PacketError),
    /// Mode is not 4 (server).
    WrongMode(u8),
    /// Version differs from the one we sent.
    WrongVersion(u8),
    /// The origin timestamp does not echo our transmit timestamp (stale, spoofed or misrouted).
    WrongOrigin,
    /// A kiss-o'-death packet: stratum 0 with a printable ASCII code (`RATE`, `DENY`, ...).
    Kiss([u8; 4]),
    /// The server says it is not synchronised: LI=3, stratum 16 or more, or stratum 0 without
    /// a printable kiss code (a zero reference id).
    Unsynchronized,
    /// Receive or transmit timestamp is zero.
    ZeroTimestamp,
    /// The server's transmit time is before its receive time.
    Reversed,
    /// The source has a key and the reply carries no valid MAC of it (unsigned, a
    /// crypto-NAK, another key, or a bad digest).
    Unauthenticated,
}

impl ReplyError {
    /// Stable short name for counters and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplyError::Malformed(PacketError::TooShort) => "short",
            ReplyError::Malformed(PacketError::TooLong) => "too_long",
            ReplyError::Malformed(PacketError::MalformedExtension) => "malformed",
            ReplyError::WrongMode(_) => "wrong_mode",
            ReplyError::WrongVersion(_) => "wrong_version",
            ReplyError::WrongOrigin => "wrong_origin",
            ReplyError::Kiss(_) => "kod",
            ReplyError::Unsynchronized => "unsynchronized",
            ReplyError::ZeroTimestamp => "zero_timestamp",
            ReplyError::Reversed => "reversed_timestamps",
            ReplyError::Unauthenticated => "unauthenticated",
        }
    }
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Malformed(e) => write!(f, "malformed reply ({e:?})"),
            ReplyError::WrongMode(m) => write!(f, "reply has mode {m}, expected 4"),
            ReplyError::WrongVersion(v) => write!(f, "reply has version {v}"),
            ReplyError::WrongOrigin => write!(f, "reply origin does not match our request"),
            ReplyError::Kiss(code) => write!(f, "kiss-o'-death {}", code_text(*code)),
            ReplyError::Unsynchronized => write!(f, "server is not synchronised"),
            ReplyError::ZeroTimestamp => write!(f, "reply has a zero timestamp"),
            ReplyError::Reversed => write!(f, "server transmit precedes its receive"),
            ReplyError::Unauthenticated => write!(f, "reply not signed with the source's key"),
        }
    }
}

/// Checks `reply` against the request we sent (`sent_version`, `sent_transmit`) and returns its
/// header. Checks in order: well-formed, mode 4, version, origin, kiss code, synchronised,
/// non-zero and ordered server timestamps.
pub fn check_reply(
    reply: &[u8],
    sent_version: u8,
    sent_transmit: NtpTimestamp,
) -> Result<Header, ReplyError> {
    let view = PacketView::new(reply).map_err(ReplyError::Malformed)?;
    view.trailer().map_err(ReplyError::Malformed)?;
    let h = view.header();
    if h.mode != Mode::Server {
        return Err(ReplyError::WrongMode(h.mode as u8));
    }
    if h.version != sent_version {
        return Err(ReplyError::WrongVersion(h.version));
    }
    if h.origin_ts != sent_transmit {
        return Err(ReplyError::WrongOrigin);
    }
    if h.stratum == 0 {
        if let Some(code) = kiss_code(h.reference_id) {
            return Err(ReplyError::Kiss(code));
        }
        return Err(ReplyError::Unsynchronized);
    }
    if h.leap == Leap::Unsynchronized || h.stratum >= 16 {
        return Err(ReplyError::Unsynchronized);
    }
    if h.receive_ts.is_zero() || h.transmit_ts.is_zero() {
        return Err(ReplyError::ZeroTimestamp);
    }
    if h.transmit_ts.diff_fixed(h.receive_ts) < 0 {
        return Err(ReplyError::Reversed);
    }
    Ok(h)
}

/// The kiss code in a stratum-0 reference id: one to four printable ASCII characters (letters,
/// digits), NUL-padded (RFC 5905 §7.4). A zero or non-printable id is no kiss code: that is how
/// an unsynchronised server answers.
pub fn kiss_code(refid: [u8; 4]) -> Option<[u8; 4]> {
    let len = refid.iter().position(|&b| b == 0).unwrap_or(4);
    let printable = len > 0
        && refid[..len].iter().all(u8::is_ascii_alphanumeric)
        && refid[len..].iter().all(|&b| b == 0);
    printable.then_some(refid)
}

/// A reference id or kiss code as text, without its NUL padding; anything not printable ASCII
/// is shown as `\xNN`, so a hostile reply cannot write control bytes to a terminal.
pub fn code_text(code: [u8; 4]) -> String {
    let len = code.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    code[..len]
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// The four timestamps of an exchange from a checked reply and our receive time.
pub fn exchange(reply: &Header, client_rx: NtpTimestamp) -> Exchange {
    Exchange {
        t1: reply.origin_ts,
        t2: reply.receive_ts,
        t3: reply.transmit_ts,
        t4: client_rx,
    }
}

/// Root distance as RFC 5905 defines it for a sample: root delay / 2 + root dispersion, plus
/// half our own measured delay, in seconds.
pub fn root_distance_secs(reply: &Header, delay_secs: f64) -> f64 {
    reply.root_delay.as_secs_f64() / 2.0
        + reply.root_dispersion.as_secs_f64()
        + delay_secs.max(0.0) / 2.0
}

/// The reference id as a person reads it: an IPv4 address for stratum ≥ 2, otherwise the
/// ASCII code (e.g. `GPS`, `LOCL`, or a kiss code).
pub fn refid_text(stratum: u8, refid: [u8; 4]) -> String {
    if stratum >= 2 {
        std::net::Ipv4Addr::from(refid).to_string()
    } else {
        refid
            .iter()
            .take_while(|b| **b != 0)
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
            .collect()
    }
}
