//! Per-worker state of the data path, sans IO and without `unsafe`: the per-datagram seam every
//! backend calls ([`Worker`]), the client table, and the counters. A worker creates its state
//! on its own pinned thread and never shares it; imports point one way: io → datapath → proto.
//! Interleaved mode keeps its pairs in the client records (`interleaved.rs`); the access rules
//! (`access.rs`) and the rate limiter (`ratelimit.rs`) come in a [`Policy`] that the rest of
//! the process hands each worker through its [`Mailbox`], which also lends out the client
//! table for reading.

#![forbid(unsafe_code)]

pub mod access;
mod auth;
pub mod clients;
pub mod counters;
pub mod interleaved;
pub mod mailbox;
pub mod policy;
pub mod ratelimit;
pub mod worker;

pub use interleaved::TxToken;
pub use mailbox::Mailbox;
pub use policy::Policy;
pub use worker::{Arrival, Verdict, Worker, WorkerConfig};
