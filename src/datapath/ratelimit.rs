//! Per-client rate limiting: a token bucket kept in each client's record, sans IO and lock free
//! (the record belongs to one worker).
//!
//! * A client earns one token per `2^interval` seconds, up to `burst` tokens; a new client
//!   starts with a full bucket. Each request it sends spends a token.
//! * A request that finds no token is *limited*. One in `2^leak` limited requests (counted per
//!   worker) is still answered, so a client that cannot tell it is limited still gets time now
//!   and then; its reply's poll field says `interval` at least.
//! * With `kod`, a limited request that is not leaked may get a KoD RATE instead of silence,
//!   but at most one per earned token: after a KoD the client must earn (and spend) a token
//!   before it can get another. A KoD is never longer than the request, so neither answers nor
//!   KoDs ever exceed what the bucket allows: the server is no amplifier.
//!
//! Tokens are fixed point, [`ONE`] units a token, refilled from the nanoseconds since the
//! client's previous request.

use super::clients::{Record, FLAG_KOD_SENT as KOD_SENT};

/// One token in the record's fixed-point units.
pub const ONE: u32 = 1 << 20;
/// Largest `burst`: [`ONE`] × 255 fits the record's 32 bits.
pub const MAX_BURST: u32 = 255;

/// The rate limit every client of a worker is held to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// log2 of the seconds a client must wait, on average, between requests.
    pub interval: i8,
    /// Tokens a bucket holds (1..=[`MAX_BURST`]).
    pub burst: u32,
    /// 1 in 2^`leak` limited requests is still answered.
    pub leak: u8,
    /// Limited clients may get KoD RATE.
    pub kod: bool,
    /// Token units earned per nanosecond.
    units_per_ns: f64,
}

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Within the limit: answer.
    Pass,
    /// Limited, but this one leaks through: answer, with the poll raised.
    Leak,
    /// Limited: send a KoD RATE.
    Kod,
    /// Limited: send nothing.
    Drop,
}

impl RateLimit {
    /// A limit of one request per `2^interval` s, `burst` back to back (clamped to
    /// 1..=[`MAX_BURST`]), `leak` and `kod` as in the module docs.
    pub fn new(interval: i8, burst: u32, leak: u8, kod: bool) -> RateLimit {
        RateLimit {
            interval,
            burst: burst.clamp(1, MAX_BURST),
            leak: leak.min(31),
            kod,
            units_per_ns: f64::from(ONE) / (2f64.powi(i32::from(interval)) * 1e9),
        }
    }

    /// The decision for a request from the client of `record`, `since` ns after its previous
    /// request (`None`: its first, in a new record). `limited_seq` is the worker's count of
    /// limited requests, which picks the leaked ones.
    #[inline]
    pub fn check(
        &self,
        record: &mut Record,
        since: Option<u64>,
        limited_seq: &mut u64,
    ) -> Decision {
        let cap = self.burst * ONE;
        let tokens = match since {
            None => {
                record.flags &= !KOD_SENT;
                cap
            }
            Some(dt) => {
                // Saturating float to int: a long silence fills the bucket.
                let earned = (dt as f64 * self.units_per_ns) as u32;
                record.tokens.saturating_add(earned).min(cap)
            }
        };
        if tokens >= ONE {
            record.tokens = tokens - ONE;
            record.flags &= !KOD_SENT;
            return Decision::Pass;
        }
        record.tokens = tokens;
        let seq = *limited_seq;
        *limited_seq = seq.wrapping_add(1);
        if seq & ((1u64 << self.leak) - 1) == 0 {
            Decision::Leak
        } else if self.kod && record.flags & KOD_SENT == 0 {
            record.flags |= KOD_SENT;
            Decision::Kod
        } else {
            Decision::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// Sends `n` requests `gap` ns apart through a fresh record and counts the decisions
    /// (pass, leak, kod, drop).
    fn run(limit: &RateLimit, n: usize, gap: u64) -> [usize; 4] {
        let mut r = Record::default();
        let mut seq = 0;
        let mut counts = [0; 4];
        for i in 0..n {
            let since = (i > 0).then_some(gap);
            let d = limit.check(&mut r, since, &mut seq);
            counts[d as usize] += 1;
        }
        counts
    }

    #[test]
    fn a_client_within_the_limit_is_always_answered() {
        let limit = RateLimit::new(3, 8, 2, true);
        // One request every 8 s, every 9 s: never limited.
        assert_eq!(run(&limit, 1000, 8 * SEC), [1000, 0, 0, 0]);
        assert_eq!(run(&limit, 1000, 9 * SEC), [1000, 0, 0, 0]);
    }

    #[test]
    fn a_burst_passes_then_the_rate_is_the_interval_plus_the_leak() {
        let limit = RateLimit::new(3, 8, 2, false);
        // 16 requests back to back: the burst of 8 passes, the rest limited, 1 in 4 leaked.
        let c = run(&limit, 16, 0);
        assert_eq!(c, [8, 2, 0, 6], "{c:?}");
        // One request a second for 800 s: 8 + 800/8 tokens, and a quarter of the rest leaks.
        let c = run(&limit, 800, SEC);
        let passed = c[0];
        assert!((107..=109).contains(&passed), "{c:?}");
        let limited = 800 - passed;
        assert_eq!(c[1], limited.div_ceil(4), "{c:?}");
        assert_eq!(c[2], 0, "no KoD without kod");
    }

    #[test]
    fn kod_is_sent_at_most_once_per_earned_token() {
        let limit = RateLimit::new(0, 1, 4, true);
        let mut r = Record::default();
        let mut seq = 1; // not a leak slot first
        assert_eq!(limit.check(&mut r, None, &mut seq), Decision::Pass);
        // Flooding a microsecond apart: one KoD, then silence (and a leak per 16).
        let mut kods = 0;
        let mut leaks = 0;
        for _ in 0..100 {
            match limit.check(&mut r, Some(1_000), &mut seq) {
                Decision::Kod => kods += 1,
                Decision::Leak => leaks += 1,
                Decision::Drop => {}
                Decision::Pass => panic!("no token earned in 100 µs"),
            }
        }
        assert_eq!(kods, 1);
        assert_eq!(leaks, 6, "slots 16, 32, ..., 96");
        // A second later a token is earned and spent; the next limited request may get a
        // KoD again.
        assert_eq!(limit.check(&mut r, Some(SEC), &mut seq), Decision::Pass);
        let d: Vec<Decision> = (0..3)
            .map(|_| limit.check(&mut r, Some(1_000), &mut seq))
            .collect();
        assert!(d.contains(&Decision::Kod), "{d:?}");
    }

    #[test]
    fn the_bucket_never_holds_more_than_burst() {
        let limit = RateLimit::new(-2, 4, 1, false);
        let mut r = Record::default();
        let mut seq = 0;
        assert_eq!(limit.check(&mut r, None, &mut seq), Decision::Pass);
        // A day of silence (past any overflow) earns just the burst.
        let mut passes = 0;
        for i in 0..10 {
            let since = if i == 0 { 86_400 * SEC } else { 0 };
            if limit.check(&mut r, Some(since), &mut seq) == Decision::Pass {
                passes += 1;
            }
        }
        assert_eq!(passes, 4);
        assert_eq!(RateLimit::new(0, 10_000, 1, false).burst, MAX_BURST);
        assert_eq!(RateLimit::new(0, 0, 1, false).burst, 1);
    }
}
