//! meridian: a carrier-scale NTP server.
//!
//! See `docs/architecture.md` for the path of one request through these modules.

pub mod clock;
pub mod config;
pub mod discipline;
pub mod io;
pub mod proto;
pub mod query;
pub mod server;
pub mod sys;
