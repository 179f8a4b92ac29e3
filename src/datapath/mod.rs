//! Per-worker state of the data path, sans IO and without `unsafe`: the per-datagram seam every
//! backend calls ([`Worker`]), the client table, and the counters. A worker creates its state
//! on its own pinned thread and never shares it; imports point one way: io → datapath → proto.
//! Interleaved mode keeps its pairs in the client records (`interleaved.rs`); access rules and
//! the rate limiter join [`Worker`] here.

#![forbid(unsafe_code)]

pub mod clients;
pub mod counters;
pub mod interleaved;
pub mod worker;

pub use interleaved::TxToken;
pub use worker::{Arrival, Verdict, Worker, WorkerConfig};
