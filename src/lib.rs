//! meridian: a carrier-scale NTP server.
//!
//! See `docs/architecture.md` for the path of one request through these modules.

pub mod clock;
pub mod proto;
