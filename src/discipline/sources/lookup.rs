//! When a network source's name is looked up and which of the addresses it gives are taken,
//! sans IO. A source is looked up while it has fewer addresses than it may use (a server one,
//! a pool `max-sources`), one lookup at a time; an answer that brings nothing new doubles the
//! wait before the next (up to an hour), one that brings addresses resets it to minpoll.
//! Addresses dropped for good (DENY/RSTR, or replaced pool members) are never taken again, and
//! a server that lost its address is not looked up again (a pool is: see
//! [`SourceKind::resolves_again_after_a_drop`]).
//!
//! Time is passed in, so the tests run on virtual time; the lookups themselves run on the
//! resolver thread ([`crate::discipline::resolver`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::{self, SourceConfig, SourceKind};

/// The wait after the first lookup that brought nothing.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between lookups.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The lookups of one configured source.
#[derive(Clone, Debug)]
pub struct Lookup {
    host: String,
    port: u16,
    /// How many addresses it may use at once.
    max: usize,
    kind: SourceKind,
    minpoll: i8,
    /// A lookup is with the resolver.
    asked: bool,
    /// Addresses never to use again.
    banned: HashSet<SocketAddr>,
    next: Instant,
    backoff: Duration,
}

impl Lookup {
    /// The lookups of `cfg`, the first due at `now`.
    pub fn new(cfg: &SourceConfig, now: Instant) -> Lookup {
        let (host, port) = cfg
            .host_port()
            .unwrap_or((cfg.address.clone(), config::NTP_PORT));
        Lookup {
            host,
            port,
            max: cfg.max_sources(),
            kind: cfg.kind,
            minpoll: cfg.minpoll,
            asked: false,
            banned: HashSet::new(),
            next: now,
            backoff: FIRST_BACKOFF,
        }
    }

    /// The name (or IP literal) and port to look up.
    pub fn host_port(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// When the next lookup is due with `members` addresses in use: None while one is with the
    /// resolver, while the source has all the addresses it may use, or, for a kind that does
    /// not look up again after a drop, once an address was dropped.
    pub fn next_due(&self, members: usize) -> Option<Instant> {
        let gave_up = !self.kind.resolves_again_after_a_drop() && !self.banned.is_empty();
        (!self.asked && members < self.max && !gave_up).then_some(self.next)
    }

    /// Is a lookup due at `now` with `members` addresses in use?
    pub fn due(&self, members: usize, now: Instant) -> bool {
        self.next_due(members).is_some_and(|at| now >= at)
    }

    /// A lookup went to the resolver.
    pub fn asked(&mut self) {
        self.asked = true;
    }

    /// The answer came at `now` with `resolved` (empty when the lookup failed), `members`
    /// addresses of this source in use and `in_use` those of every source: returns the
    /// addresses to add (new, in the order given, not in use anywhere, never dropped, as many
    /// as the source still may use) and sets the time of the next lookup.
    pub fn answered(
        &mut self,
        resolved: Vec<SocketAddr>,
        in_use: &HashSet<SocketAddr>,
        members: usize,
        now: Instant,
    ) -> Vec<SocketAddr> {
        self.asked = false;
        let want = self.max.saturating_sub(members);
        let mut seen = HashSet::new();
        let fresh: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|a| seen.insert(*a) && !in_use.contains(a) && !self.banned.contains(a))
            .take(want)
            .collect();
        self.backoff = if fresh.is_empty() {
            (self.backoff * 2).min(MAX_BACKOFF)
        } else {
            Duration::from_secs_f64(
                2f64.powi(self.minpoll.into())
                    .clamp(FIRST_BACKOFF.as_secs_f64(), MAX_BACKOFF.as_secs_f64()),
            )
        };
        self.next = now + self.backoff;
        fresh
    }

    /// `addr` was dropped for good: never taken again.
    pub fn ban(&mut self, addr: SocketAddr) {
        self.banned.insert(addr);
    }

    /// Look for a replacement at once (a member was dropped to be replaced).
    pub fn again(&mut self, now: Instant) {
        self.next = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discipline::testutil::virtual_epoch;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 123))
    }

    fn pool(max: usize) -> SourceConfig {
        let mut cfg = SourceConfig::new("pool.example.net:4123");
        cfg.kind = SourceKind::Pool;
        cfg.max_sources = Some(max);
        cfg
    }

    #[test]
    fn a_server_is_looked_up_until_it_has_its_address_and_not_after_it_was_dropped() {
        let t0 = virtual_epoch();
        let mut l = Lookup::new(&SourceConfig::new("[2001:db8::1]:9"), t0);
        assert_eq!(l.host_port(), ("2001:db8::1", 9));
        assert!(l.due(0, t0));
        l.asked();
        assert!(
            !l.due(0, t0 + Duration::from_secs(10)),
            "one lookup at a time"
        );
        assert_eq!(l.next_due(0), None);
        // Nothing came: 2 s, then 4 s.
        assert!(l.answered(vec![], &HashSet::new(), 0, t0).is_empty());
        assert_eq!(l.next_due(0), Some(t0 + Duration::from_secs(2)));
        l.asked();
        l.answered(vec![], &HashSet::new(), 0, t0);
        assert_eq!(l.next_due(0), Some(t0 + Duration::from_secs(4)));
        l.asked();
        let got = l.answered(vec![addr(1), addr(2)], &HashSet::new(), 0, t0);
        assert_eq!(got, vec![addr(1)], "a server takes one address");
        assert_eq!(l.next_due(1), None, "it has its address");
        // Dropped (DENY): never looked up again, and the address never taken again.
        l.ban(addr(1));
        assert_eq!(l.next_due(0), None);
        l.again(t0);
        assert!(!l.due(0, t0 + MAX_BACKOFF));
    }

    #[test]
    fn a_pool_takes_new_addresses_up_to_its_size_and_backs_off_when_none_come() {
        let t0 = virtual_epoch();
        let mut l = Lookup::new(&pool(3), t0);
        l.asked();
        // Duplicates, an address another source polls and a banned one are skipped.
        l.ban(addr(4));
        let in_use: HashSet<SocketAddr> = [addr(2)].into();
        let got = l.answered(
            vec![addr(1), addr(1), addr(2), addr(4), addr(5), addr(6)],
            &in_use,
            1,
            t0,
        );
        assert_eq!(
            got,
            vec![addr(1), addr(5)],
            "two more for a pool of 3 with 1"
        );
        // Addresses came: the next lookup minpoll (64 s) later.
        assert_eq!(l.next_due(2), Some(t0 + Duration::from_secs(64)));
        assert_eq!(l.next_due(3), None, "full");
        // Lookups that bring nothing new back off, doubling up to an hour.
        let in_use: HashSet<SocketAddr> = [addr(1), addr(2), addr(5)].into();
        let mut waits = Vec::new();
        for _ in 0..14 {
            l.asked();
            assert!(l
                .answered(vec![addr(1), addr(4)], &in_use, 2, t0)
                .is_empty());
            waits.push(l.next_due(2).unwrap().duration_since(t0).as_secs());
        }
        assert_eq!(
            waits,
            [128, 256, 512, 1024, 2048, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 3600]
        );
    }

    #[test]
    fn a_replaced_pool_member_is_looked_for_again_at_once() {
        let t0 = virtual_epoch();
        let mut cfg = pool(2);
        cfg.minpoll = -2; // the reset wait is still at least 1 s
        let mut l = Lookup::new(&cfg, t0);
        l.asked();
        assert_eq!(
            l.answered(vec![addr(1), addr(2)], &HashSet::new(), 0, t0),
            vec![addr(1), addr(2)]
        );
        assert_eq!(l.next_due(1), Some(t0 + FIRST_BACKOFF));
        let later = t0 + Duration::from_millis(300);
        l.ban(addr(2));
        l.again(later);
        assert!(l.due(1, later), "a pool looks up again after a drop");
        l.asked();
        let got = l.answered(vec![addr(1), addr(2), addr(3)], &[addr(1)].into(), 1, later);
        assert_eq!(got, vec![addr(3)]);
    }
}
