//! The server's answer to one request, sans IO.
//!
//! [`Request::parse`] decides whether a datagram deserves an answer (or why not);
//! [`Request::write_reply`] writes the reply into a caller-provided buffer, reading the transmit
//! time last through the closure it is given. The reply is never longer than the request.
//!
//! Rules (RFC 5905, RFC 4330 §5):
//! * versions 1–4 are answered, with the request's version; 0 and 5–7 are dropped;
//! * mode 3 (client) is answered with mode 4 (server); mode 1 (symmetric active) with mode 2
//!   (symmetric passive), as RFC 4330 asks of servers; NTPv1 has no mode field, so a version 1
//!   packet with mode 0 is treated as a client request;
//! * modes 0, 2, 4, 5, 6 and 7 are never answered: no control (6) or private (7) service, which
//!   are the amplification vectors;
//! * origin = the request's transmit timestamp; receive and transmit from the server's clock;
//!   leap, stratum, precision, root delay, root dispersion, reference id and time from the
//!   snapshot; when the server is not synchronised, LI=3, stratum 0, refid 0 and a zero
//!   reference time go on the wire;
//! * a request carrying a legacy MAC is answered with a crypto-NAK here; the worker checks
//!   the MAC against the configured keys first (`crate::auth`) and signs the reply of a valid
//!   one instead. Extension fields are walked and skipped, and malformed ones make the
//!   request dropped.

use super::packet::{
    field, li_vn_mode, Header, Leap, Mode, PacketError, PacketView, HEADER_LEN, MAX_MAC_LEN,
};
use super::snapshot::ClockSnapshot;
use super::time::{NtpShort, NtpTimestamp, UnixNanos};

/// Why a datagram gets no answer. Small and `Copy`, indexable for per-reason counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an NTP header.
    TooShort,
    /// Longer than the largest request read (or truncated on receive).
    TooLong,
    /// Version 0 or 5–7.
    BadVersion,
    /// A mode that is never answered (0, 2, 4, 5, 6, 7).
    BadMode,
    /// Bytes after the header are neither extension fields nor a MAC.
    Malformed,
    /// Not a unicast request from a routable client to a served address and port (the xdp
    /// backend checks what its program redirects; the kernel does this for socket backends).
    NotOurs,
    /// Refused by an access rule (used by the access-control layer).
    Denied,
    /// Refused by the rate limiter without a KoD (used by the rate limiter).
    RateLimited,
    /// Serving is switched off (`meridian serving off`).
    NotServing,
    /// The reply could not be sent.
    SendFailed,
    /// No MAC, and `[auth] require = true` with `require-action = "drop"`.
    Unauthenticated,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 11] = [
        DropReason::TooShort,
        DropReason::TooLong,
        DropReason::BadVersion,
        DropReason::BadMode,
        DropReason::Malformed,
        DropReason::NotOurs,
        DropReason::Denied,
        DropReason::RateLimited,
        DropReason::NotServing,
        DropReason::SendFailed,
        DropReason::Unauthenticated,
    ];
    /// Number of reasons (size of a counter array).
    pub const COUNT: usize = Self::ALL.len();

    /// Stable index into a counter array.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Stable name for counters and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::TooLong => "too_long",
            DropReason::BadVersion => "bad_version",
            DropReason::BadMode => "bad_mode",
            DropReason::Malformed => "malformed",
            DropReason::NotOurs => "not_ours",
            DropReason::Denied => "denied",
            DropReason::RateLimited => "rate_limited",
            DropReason::NotServing => "not_serving",
            DropReason::SendFailed => "send_failed",
            DropReason::Unauthenticated => "unauthenticated",
        }
    }
}

impl From<PacketError> for DropReason {
    fn from(e: PacketError) -> Self {
        match e {
            PacketError::TooShort => DropReason::TooShort,
            PacketError::TooLong => DropReason::TooLong,
            PacketError::MalformedExtension => DropReason::Malformed,
        }
    }
}

/// The kiss codes this server can send (RFC 5905 §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KissCode {
    /// Access denied: stop sending.
    Deny,
    /// Rate exceeded: reduce the poll rate.
    Rate,
    /// Access restricted: stop sending.
    Rstr,
    /// Cryptographic authentication failed (sent to unauthenticated requests when
    /// authentication is required).
    Cryp,
}

impl KissCode {
    pub const fn as_bytes(self) -> [u8; 4] {
        match self {
            KissCode::Deny => *b"DENY",
            KissCode::Rate => *b"RATE",
            KissCode::Rstr => *b"RSTR",
            KissCode::Cryp => *b"CRYP",
        }
    }
}

/// Length of a crypto-NAK (a MAC of one zero key id).
pub const CRYPTO_NAK_LEN: usize = 4;
/// The longest reply: a header and the longest MAC (a signed reply to an NTPv3 request
/// with a SHA-512 key). Output buffers are this long.
pub const MAX_REPLY_LEN: usize = HEADER_LEN + MAX_MAC_LEN;

/// Where a request's legacy MAC is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacField {
    pub key_id: u32,
    /// Offset of the key id: the MAC covers the request's bytes before it.
    pub at: u16,
    /// Length of the digest after the key id (0: a crypto-NAK).
    pub digest_len: u8,
}

impl MacField {
    /// The bytes the MAC covers (header and extension fields), from the request's buffer.
    pub fn covered<'a>(&self, request: &'a [u8]) -> &'a [u8] {
        request.get(..self.at as usize).unwrap_or(&[])
    }

    /// The digest, from the request's buffer.
    pub fn digest<'a>(&self, request: &'a [u8]) -> &'a [u8] {
        let from = self.at as usize + 4;
        request
            .get(from..from + self.digest_len as usize)
            .unwrap_or(&[])
    }
}

/// The origin and receive fields of a reply, and the served receive time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTimes {
    /// Served receive time (root dispersion is reported as of this instant).
    pub rx: UnixNanos,
    /// The receive field as it goes on the wire.
    pub receive: NtpTimestamp,
    /// The origin field: the request's transmit (basic) or receive field (interleaved).
    pub origin: NtpTimestamp,
}

/// What the server needs from a request, taken before the buffer may be overwritten (the XDP
/// backend writes the reply over the request in place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub version: u8,
    /// The request's mode after the NTPv1 rule (mode 0 read as client).
    pub mode: Mode,
    pub poll: i8,
    /// The client's transmit timestamp: our reply's origin in basic mode.
    pub transmit_ts: NtpTimestamp,
    /// The request's origin field: in interleaved mode (RFC 9769) the receive timestamp of
    /// our earlier reply to this client.
    pub origin_ts: NtpTimestamp,
    /// The request's receive field: in interleaved mode our reply's origin.
    pub receive_ts: NtpTimestamp,
    /// Length of the request datagram.
    pub len: usize,
    /// The request's legacy MAC, if any (the answer carries a crypto-NAK unless the worker
    /// verified it and signs the reply).
    pub mac: Option<MacField>,
    /// Number of extension fields (walked and skipped).
    pub extension_fields: u16,
}

impl Request {
    /// Validates a datagram and extracts what the reply needs.
    pub fn parse(buf: &[u8]) -> Result<Request, DropReason> {
        let view = PacketView::new(buf)?;
        let version = view.version();
        if !(1..=4).contains(&version) {
            return Err(DropReason::BadVersion);
        }
        let mode = match (view.mode(), version) {
            (Mode::Client, _) | (Mode::SymmetricActive, _) => view.mode(),
            (Mode::Reserved, 1) => Mode::Client,
            _ => return Err(DropReason::BadMode),
        };
        // NTPv1-3 packets carry no extension fields; still, everything after the header must be
        // either nothing, extension fields (v4) or a legacy MAC.
        let trailer = view.trailer()?;
        Ok(Request {
            version,
            mode,
            poll: view.poll(),
            transmit_ts: view.transmit_ts(),
            origin_ts: view.origin_ts(),
            receive_ts: view.receive_ts(),
            len: view.len(),
            mac: trailer.mac.map(|m| MacField {
                key_id: m.key_id,
                at: (HEADER_LEN + trailer.fields_len()) as u16,
                digest_len: m.digest.len() as u8,
            }),
            extension_fields: trailer.extensions().count().min(u16::MAX as usize) as u16,
        })
    }

    /// The request with its poll field raised to at least `min` (log2 s): replies and KoDs
    /// to it tell the client to poll no faster (a rate-limited client).
    pub fn with_min_poll(self, min: i8) -> Request {
        Request {
            poll: self.poll.max(min),
            ..self
        }
    }

    /// The request carried a legacy MAC.
    pub const fn has_mac(&self) -> bool {
        self.mac.is_some()
    }

    /// The request without its MAC (verified: the reply is signed after it is written).
    pub fn without_mac(self) -> Request {
        Request { mac: None, ..self }
    }

    /// The mode of our answer.
    pub const fn reply_mode(&self) -> Mode {
        match self.mode {
            Mode::SymmetricActive => Mode::SymmetricPassive,
            _ => Mode::Server,
        }
    }

    /// Length of the reply to this request.
    pub const fn reply_len(&self) -> usize {
        if self.has_mac() {
            HEADER_LEN + CRYPTO_NAK_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The times of a basic-mode reply received at served time `rx`: origin = the request's
    /// transmit timestamp, receive = `rx`.
    pub fn basic_times(&self, rx: UnixNanos) -> ReplyTimes {
        ReplyTimes {
            rx,
            receive: NtpTimestamp::from_unix(rx),
            origin: self.transmit_ts,
        }
    }

    /// Writes the basic-mode reply into `out` and returns its length.
    ///
    /// `rx` is the served receive time; `transmit` is called last, just before the transmit
    /// field is written, and returns the served transmit time.
    ///
    /// # Panics
    /// Never for `out.len() >= MAX_REPLY_LEN`; a shorter buffer is a caller bug and panics.
    pub fn write_reply(
        &self,
        snap: &ClockSnapshot,
        rx: UnixNanos,
        out: &mut [u8],
        transmit: impl FnOnce() -> UnixNanos,
    ) -> usize {
        self.write_reply_with(snap, self.basic_times(rx), out, || {
            NtpTimestamp::from_unix(transmit())
        })
    }

    /// Writes a reply carrying `times` (basic or interleaved) into `out` and returns its
    /// length. `transmit` is called last and returns the transmit field as it goes on the
    /// wire.
    ///
    /// # Panics
    /// Never for `out.len() >= MAX_REPLY_LEN`; a shorter buffer is a caller bug and panics.
    pub fn write_reply_with(
        &self,
        snap: &ClockSnapshot,
        times: ReplyTimes,
        out: &mut [u8],
        transmit: impl FnOnce() -> NtpTimestamp,
    ) -> usize {
        let len = self.reply_len();
        debug_assert!(len <= self.len, "reply must not be longer than the request");
        // Unsynchronised: LI=3, stratum 0 ("unspecified") and no reference to speak of.
        let (leap, stratum, refid, reference_ts) = if snap.synchronized {
            (
                snap.leap,
                snap.stratum,
                snap.reference_id,
                snap.reference_ts(),
            )
        } else {
            (Leap::Unsynchronized, 0, [0; 4], NtpTimestamp::ZERO)
        };
        let header = Header {
            leap,
            version: self.version,
            mode: self.reply_mode(),
            stratum,
            poll: self.poll,
            precision: snap.precision,
            root_delay: snap.root_delay,
            root_dispersion: snap.root_dispersion_at(times.rx),
            reference_id: refid,
            reference_ts,
            origin_ts: times.origin,
            receive_ts: times.receive,
            transmit_ts: NtpTimestamp::ZERO,
        };
        let (head, tail) = out[..len].split_at_mut(HEADER_LEN);
        let head: &mut [u8; HEADER_LEN] = head.try_into().expect("split at HEADER_LEN");
        header.emit(head);
        tail.fill(0); // crypto-NAK: key id 0, no digest
        head[field::TRANSMIT_TS].copy_from_slice(&transmit().to_be_bytes());
        len
    }

    /// Writes a kiss-o'-death reply (LI=3, stratum 0, the code as reference id). It carries no
    /// time: the receive and transmit fields repeat the origin. Returns its length (48).
    pub fn write_kod(&self, code: KissCode, out: &mut [u8]) -> usize {
        let header = Header {
            leap: Leap::Unsynchronized,
            version: self.version,
            mode: self.reply_mode(),
            stratum: 0,
            poll: self.poll,
            precision: 0,
            root_delay: NtpShort(0),
            root_dispersion: NtpShort(0),
            reference_id: code.as_bytes(),
            reference_ts: NtpTimestamp::ZERO,
            origin_ts: self.transmit_ts,
            receive_ts: self.transmit_ts,
            transmit_ts: self.transmit_ts,
        };
        let head: &mut [u8; HEADER_LEN] = (&mut out[..HEADER_LEN])
            .try_into()
            .expect("slice of HEADER_LEN");
        header.emit(head);
        HEADER_LEN
    }

    /// Writes a crypto-NAK that carries no time: a KoD CRYP header and the 4-byte zero key
    /// id (the answer to a bad MAC when authentication is required). Returns its length (52,
    /// no longer than the request, which carried a MAC); a request without a MAC gets the
    /// bare KoD (48).
    pub fn write_crypto_nak_kod(&self, out: &mut [u8]) -> usize {
        let len = self.write_kod(KissCode::Cryp, out);
        if !self.has_mac() {
            return len;
        }
        out[len..len + CRYPTO_NAK_LEN].fill(0);
        len + CRYPTO_NAK_LEN
    }
}

/// Parses `request` and writes the answer into `out` (at least [`MAX_REPLY_LEN`] bytes).
/// Returns the reply length, or why the request gets none.
pub fn respond(
    request: &[u8],
    snap: &ClockSnapshot,
    rx: UnixNanos,
    out: &mut [u8],
    transmit: impl FnOnce() -> UnixNanos,
) -> Result<usize, DropReason> {
    let req = Request::parse(request)?;
    Ok(req.write_reply(snap, rx, out, transmit))
}

/// Builds a client request (mode 3) with the given transmit timestamp. Used by the query client,
/// the load generator and the discipline thread.
pub fn client_request(version: u8, poll: i8, transmit_ts: NtpTimestamp) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[field::LI_VN_MODE] = li_vn_mode(Leap::NoWarning, version, Mode::Client);
    out[field::POLL] = poll as u8;
    out[field::TRANSMIT_TS].copy_from_slice(&transmit_ts.to_be_bytes());
    out
}
