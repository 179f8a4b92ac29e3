//! Per-worker state of the data path, sans IO and without `unsafe`: the per-datagram seam every
//! backend calls ([`Worker`]), the client table, and the counters. A worker creates its state
//! on its own pinned thread and never shares it; imports point one way: io → datapath → proto.
//! Access rules, the rate limiter and interleaved-mode bookkeeping join [`Worker`] here.

#![forbid(unsafe_code)]

pub mod clients;
pub mod counters;
pub mod worker;

pub use worker::{Arrival, Verdict, Worker, WorkerConfig};
