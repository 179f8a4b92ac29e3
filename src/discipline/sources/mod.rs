//! The sources the discipline thread follows. The decisions are sans IO and take time as an
//! argument: when an address is polled and how long a reply is waited for ([`poll`]), when a
//! name is looked up and which of its addresses are taken ([`lookup`]), what a reply means
//! ([`reply`]).

pub mod lookup;
pub mod poll;
pub mod reply;

use crate::proto::UnixNanos;

/// The runner's time scales, as a source needs them to turn a measurement into a sample.
pub trait Timebase {
    /// Free-running raw time for an OS clock reading (the same in virtual mode).
    fn free(&self, os: UnixNanos) -> UnixNanos;
    /// What to add to the offset of a sample taken at free time `at` for leap seconds past;
    /// None within the guard around a leap (the sample is not used).
    fn leap_fix(&self, at: UnixNanos) -> Option<f64>;
}
