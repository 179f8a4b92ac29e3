//! Sans-IO NTP: wire format, timestamps, the server's answer and the client's check of a reply.
//!
//! Nothing here reads a clock or opens a socket: time is passed in. That is what lets the whole
//! protocol be tested with byte vectors and virtual time, and fuzzed.
#![forbid(unsafe_code)]

pub mod client;
pub mod packet;
pub mod server;
pub mod snapshot;
pub mod time;

#[cfg(test)]
mod tests;

pub use packet::{Header, Leap, Mode, PacketError, PacketView, HEADER_LEN, MAX_PACKET_LEN};
pub use server::{respond, DropReason, KissCode, ReplyTimes, Request, MAX_REPLY_LEN};
pub use time::{Exchange, NtpShort, NtpTimestamp, UnixNanos};
