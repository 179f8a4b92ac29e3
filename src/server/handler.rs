//! The per-packet step every backend shares: validate, answer from the snapshot, count.

use crate::clock::{ClockSnapshot, RawStamp};
use crate::proto::{DropReason, Request};
use crate::sys;

use super::counters::Tally;

/// Answers one request into `out` (at least [`crate::proto::MAX_REPLY_LEN`] bytes) and
/// returns the reply length, or counts why it is dropped and returns `None`.
#[inline]
pub fn answer(
    snap: &ClockSnapshot,
    request: &[u8],
    rx: RawStamp,
    out: &mut [u8],
    tally: &mut Tally,
) -> Option<usize> {
    arrived(rx, tally);
    match Request::parse(request) {
        Ok(req) => Some(reply(snap, &req, rx, out, tally)),
        Err(reason) => {
            tally.drop(reason);
            None
        }
    }
}

/// Counts a datagram's arrival and the quality of its receive stamp. Every datagram a backend
/// takes in is counted here exactly once, answered or not.
#[inline]
pub fn arrived(rx: RawStamp, tally: &mut Tally) {
    tally.received += 1;
    tally.stamp(rx.quality);
}

/// Writes the reply to a parsed request into `out` and counts it: `rx` is cooked with the same
/// snapshot that supplies the reply's fields, and the transmit time is read from the clock
/// last, after everything else is written. `out` may be the buffer the request was read from
/// (the xdp backend answers in place): `req` holds all the request's fields it needs.
#[inline]
pub fn reply(
    snap: &ClockSnapshot,
    req: &Request,
    rx: RawStamp,
    out: &mut [u8],
    tally: &mut Tally,
) -> usize {
    let len = req.write_reply(snap, snap.cook(rx.raw), out, || {
        snap.cook(sys::clock::now())
    });
    tally.answered += 1;
    len
}

/// Counts a datagram the kernel cut short (it was longer than the receive buffer): never
/// answered, counted as received, stamped and dropped as too long like any other.
#[inline]
pub fn truncated(rx: RawStamp, tally: &mut Tally) {
    arrived(rx, tally);
    tally.drop(DropReason::TooLong);
}

/// Counts an answered request whose reply the kernel would not take (buffer full, no route):
/// it moves from `answered` to the `send_failed` drops. Never waited on.
#[inline]
pub fn send_failed(tally: &mut Tally) {
    tally.answered -= 1;
    tally.drop(DropReason::SendFailed);
}
