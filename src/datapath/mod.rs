//! Per-worker state of the data path, sans IO and without `unsafe`: what each worker keeps
//! about its clients (the client table), and — as the per-datagram seam grows — access rules,
//! the rate limiter and interleaved-mode bookkeeping. A worker creates its state on its own
//! pinned thread and never shares it.

#![forbid(unsafe_code)]

pub mod clients;
