//! The management plane: the control socket, its protocol and the CLI's views.
//!
//! - `protocol`: the versioned JSON protocol (one request per line; docs/control.md);
//! - `socket`: the server's end: opening the socket, the management thread
//!   `meridian-control`, and the requests it hands to the main thread;
//! - `client`: the CLI's end (one request, one answer);
//! - `format`: the CLI's plain-text views, laid out like chronyc's (pure functions);
//! - `http`: the HTTP listener (axum): the commands as JSON under `/api/`, and `/metrics`;
//! - `metrics`: the Prometheus exposition (a pure function).
//!
//! Workers never wait on any of it: the management thread reads the published counters and
//! tracking values, and borrows the client tables between the workers' batches.

pub mod client;
pub mod format;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod socket;

pub use client::{call, CallError};
pub use http::HttpListener;
pub use protocol::{Command, Failure};
pub use socket::{ControlListener, ControlRequests, ControlThread, MainRequest};
