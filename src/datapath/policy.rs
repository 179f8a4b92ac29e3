//! What a worker applies to each datagram before answering it, as one value the management
//! side replaces (start-up, reload, `serving on|off`) and every worker takes up between two
//! batches: whether to serve at all, the access rules, what a denied client gets, and the rate
//! limit.

use std::sync::Arc;

use super::access::AccessRules;
use super::ratelimit::RateLimit;
use crate::auth::ServerAuth;

/// The per-datagram rules of every worker.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Answer requests at all (`meridian serving off` drops them, counted as `not_serving`).
    pub serving: bool,
    /// Who is served (no rules: everyone).
    pub access: Arc<AccessRules>,
    /// A denied client gets a KoD DENY (else nothing).
    pub deny_kod: bool,
    /// The per-client rate limit (needs the client table), if any.
    pub rate_limit: Option<RateLimit>,
    /// The symmetric keys and whether requests must be authenticated (`[auth]`).
    pub auth: Arc<ServerAuth>,
}

impl Default for Policy {
    /// Serve everyone, no limit.
    fn default() -> Policy {
        Policy {
            serving: true,
            access: Arc::new(AccessRules::new(&[], &[])),
            deny_kod: true,
            rate_limit: None,
            auth: Arc::new(ServerAuth::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ClockSnapshot, RawStamp, TimestampQuality};
    use crate::datapath::counters::{Counter, WorkerCounters};
    use crate::datapath::{Arrival, Mailbox, Verdict, Worker, WorkerConfig};
    use crate::proto::server::client_request;
    use crate::proto::{DropReason, KissCode, NtpTimestamp, UnixNanos, MAX_REPLY_LEN};

    const T: i64 = 1_700_000_000_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn worker(policy: &Policy) -> Worker {
        let mut w = Worker::new(WorkerConfig {
            clients: 64,
            seed: 1,
            interleaved: true,
        });
        w.set_policy(policy);
        w
    }

    fn deny(prefixes: &[&str], kod: bool) -> Policy {
        let d: Vec<_> = prefixes.iter().map(|p| p.parse().unwrap()).collect();
        Policy {
            access: Arc::new(AccessRules::new(&[], &d)),
            deny_kod: kod,
            ..Policy::default()
        }
    }

    /// One request (poll 4) from `src` at raw time `at`: the verdict and the datagram.
    fn ask(w: &mut Worker, src: &str, at: i64) -> (Verdict, [u8; 48]) {
        let snap = ClockSnapshot::local(2, -20, UnixNanos(T));
        let meta = Arrival {
            src: src.parse().unwrap(),
            dst: None,
            ifindex: 0,
            rx: RawStamp {
                raw: UnixNanos(at),
                quality: TimestampQuality::Kernel,
            },
        };
        let req = client_request(4, 4, NtpTimestamp(0x1111_2222_3333_4444));
        let mut out = [0u8; MAX_REPLY_LEN];
        let v = w.on_datagram(&meta, &req, &mut out, &snap, || UnixNanos(at + 1000));
        (v, out[..48].try_into().unwrap())
    }

    #[test]
    fn denied_clients_get_a_kod_deny_no_longer_than_the_request_and_no_record() {
        let mut w = worker(&deny(&["192.0.2.0/24", "2001:db8::/32"], true));
        for src in [
            "192.0.2.9:123",
            "[::ffff:192.0.2.9]:5000",
            "[2001:db8::1]:123",
        ] {
            let (v, out) = ask(&mut w, src, T);
            assert_eq!(
                v,
                Verdict::Kod {
                    len: 48,
                    code: KissCode::Deny
                },
                "{src}"
            );
            assert_eq!(out[0] >> 6, 3, "LI 3");
            assert_eq!(out[1], 0, "stratum 0");
            assert_eq!(&out[12..16], b"DENY");
            assert_eq!(
                &out[24..32],
                &0x1111_2222_3333_4444u64.to_be_bytes(),
                "origin"
            );
        }
        assert!(
            w.clients().unwrap().is_empty(),
            "denied clients get no record"
        );
        let (v, _) = ask(&mut w, "198.51.100.1:123", T);
        assert!(matches!(v, Verdict::Reply { len: 48, .. }), "{v:?}");
        let t = *w.tally();
        assert_eq!(t.get(Counter::KodDeny), 3);
        assert_eq!(t.get(Counter::Answered), 4, "KoDs are replies too");
        assert_eq!(t.dropped_total(), 0);
    }

    #[test]
    fn denied_clients_get_nothing_when_the_action_is_drop() {
        let mut w = worker(&deny(&["192.0.2.0/24"], false));
        let (v, _) = ask(&mut w, "192.0.2.9:123", T);
        assert_eq!(v, Verdict::Drop(DropReason::Denied));
        assert_eq!(w.tally().dropped[DropReason::Denied.index()], 1);
        assert_eq!(w.tally().get(Counter::KodDeny), 0);
    }

    #[test]
    fn a_fast_client_gets_its_burst_then_leaks_and_one_kod_per_token() {
        let policy = Policy {
            rate_limit: Some(RateLimit::new(3, 4, 1, true)),
            ..Policy::default()
        };
        let mut w = worker(&policy);
        let mut verdicts = Vec::new();
        // 20 requests 10 ms apart: far faster than one per 8 s.
        for i in 0..20 {
            let (v, out) = ask(&mut w, "192.0.2.1:123", T + i * SEC / 100);
            if i >= 4 && v.send().is_some() {
                assert!(out[2] as i8 >= 3, "poll raised to the interval: {}", out[2]);
            }
            verdicts.push(v);
        }
        let passed = verdicts[..4]
            .iter()
            .all(|v| matches!(v, Verdict::Reply { .. }));
        assert!(passed, "the burst: {verdicts:?}");
        let rest = &verdicts[4..];
        let leaks = rest
            .iter()
            .filter(|v| matches!(v, Verdict::Reply { .. }))
            .count();
        let kods = rest
            .iter()
            .filter(|v| {
                matches!(
                    v,
                    Verdict::Kod {
                        code: KissCode::Rate,
                        ..
                    }
                )
            })
            .count();
        let drops = rest
            .iter()
            .filter(|v| **v == Verdict::Drop(DropReason::RateLimited))
            .count();
        assert_eq!((leaks, kods, drops), (8, 1, 7), "{rest:?}");
        let t = *w.tally();
        assert_eq!(t.get(Counter::RateLimitLeaked), 8);
        assert_eq!(t.get(Counter::KodRate), 1);
        assert_eq!(t.dropped[DropReason::RateLimited.index()], 7);
        assert_eq!(t.get(Counter::Received), 20);
        assert_eq!(t.get(Counter::Answered) + t.dropped_total(), 20);
        let ip = "192.0.2.1".parse().unwrap();
        let r = w.clients().unwrap().find(ip).unwrap().1;
        assert_eq!((r.requests, r.drops, r.kods), (20, 7, 1));
        // Another client is not held back by the first.
        let (v, _) = ask(&mut w, "192.0.2.2:123", T + SEC);
        assert!(matches!(v, Verdict::Reply { .. }));
    }

    #[test]
    fn serving_off_drops_and_counts_until_on() {
        let mut w = worker(&Policy {
            serving: false,
            ..Policy::default()
        });
        assert_eq!(
            ask(&mut w, "192.0.2.1:1", T).0,
            Verdict::Drop(DropReason::NotServing)
        );
        assert_eq!(w.tally().dropped[DropReason::NotServing.index()], 1);
        // Handed over through the mailbox: taken up at the end of the batch.
        let mailbox = Mailbox::default();
        mailbox.post_policy(Arc::new(Policy::default()));
        assert_eq!(
            ask(&mut w, "192.0.2.1:1", T).0,
            Verdict::Drop(DropReason::NotServing)
        );
        w.end_batch(&WorkerCounters::default(), &mailbox);
        assert!(matches!(
            ask(&mut w, "192.0.2.1:1", T).0,
            Verdict::Reply { .. }
        ));
    }

    #[test]
    fn rate_limit_needs_the_client_table() {
        let mut w = Worker::new(WorkerConfig {
            clients: 0,
            seed: 1,
            interleaved: false,
        });
        w.set_policy(&Policy {
            rate_limit: Some(RateLimit::new(3, 1, 1, true)),
            ..Policy::default()
        });
        for _ in 0..5 {
            assert!(matches!(
                ask(&mut w, "192.0.2.1:1", T).0,
                Verdict::Reply { .. }
            ));
        }
    }
}
