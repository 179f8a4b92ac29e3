//! The per-packet step every backend shares: validate, answer from the snapshot, count.

use crate::clock::{ClockSnapshot, RawStamp};
use crate::proto::{DropReason, Request};
use crate::sys;

use super::counters::Tally;

/// Answers one request into `out` (at least [`crate::proto::MAX_REPLY_LEN`] bytes) and
/// returns the reply length, or counts why it is dropped and returns `None`.
///
/// `rx` is the raw receive stamp; it is cooked with the same snapshot that supplies the reply's
/// fields, and the transmit time is read from the clock last, after everything else is written.
#[inline]
pub fn answer(
    snap: &ClockSnapshot,
    request: &[u8],
    rx: RawStamp,
    out: &mut [u8],
    tally: &mut Tally,
) -> Option<usize> {
    tally.received += 1;
    tally.stamp(rx.quality);
    match Request::parse(request) {
        Ok(req) => {
            let len = req.write_reply(snap, snap.cook(rx.raw), out, || {
                snap.cook(sys::clock::now())
            });
            tally.answered += 1;
            Some(len)
        }
        Err(reason) => {
            tally.drop(reason);
            None
        }
    }
}

/// Counts a datagram the kernel cut short (it was longer than the receive buffer): never
/// answered, counted as received, stamped and dropped as too long like any other.
#[inline]
pub fn truncated(rx: RawStamp, tally: &mut Tally) {
    tally.received += 1;
    tally.stamp(rx.quality);
    tally.drop(DropReason::TooLong);
}
