//! `[access]` and `[rate-limit]`: whom the workers serve, and how often.

use serde::Deserialize;

use super::Problems;
use crate::datapath::access::{AccessRules, Prefix};
use crate::datapath::ratelimit::{RateLimit, MAX_BURST};

/// Most access rules in one file: the compiled tries take at most 64 bytes per node and a rule
/// adds at most 2 nodes (IPv4) or 14 (IPv6) below two 256 KiB tables, so the worst case is
/// under 100 MiB (typically a few MiB: 10,000 random IPv4 prefixes compile to about 1.2 MiB).
pub const MAX_RULES: usize = 100_000;

/// `[access]`: allow and deny prefixes.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccessConfig {
    /// Prefixes (or bare addresses) served. When any is given, addresses no rule matches are
    /// denied.
    pub allow: Vec<Prefix>,
    /// Prefixes (or bare addresses) refused. The most specific matching rule decides; at the
    /// same prefix, deny wins.
    pub deny: Vec<Prefix>,
    /// What a denied client gets.
    pub deny_action: DenyAction,
}

/// `access.deny-action`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DenyAction {
    /// A kiss-o'-death DENY (never longer than the request).
    #[default]
    Kod,
    /// Nothing.
    Drop,
}

impl AccessConfig {
    pub(super) fn check(&self, p: &mut Problems) {
        let n = self.allow.len() + self.deny.len();
        if n > MAX_RULES {
            p.add(
                "access.allow",
                format!("at most {MAX_RULES} rules in allow and deny together, got {n}"),
            );
        }
    }

    /// The compiled rules.
    pub fn rules(&self) -> AccessRules {
        AccessRules::new(&self.allow, &self.deny)
    }
}

/// `[rate-limit]`: the per-client token bucket.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// log2 of the mean seconds a client must keep between requests.
    pub interval: i8,
    /// Requests a client may send back to back.
    pub burst: u32,
    /// 1 in 2^leak of the limited requests is still answered.
    pub leak: u8,
    /// Limited clients sometimes get KoD RATE instead of silence.
    pub kod: bool,
}

/// `rate-limit.interval` bounds (2^-19 s ≈ 2 µs to 2^12 s ≈ 68 min).
pub const INTERVAL_RANGE: std::ops::RangeInclusive<i8> = -19..=12;
/// `rate-limit.leak` bounds.
pub const LEAK_RANGE: std::ops::RangeInclusive<u8> = 1..=8;

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: false,
            interval: 3,
            burst: 8,
            leak: 2,
            kod: true,
        }
    }
}

impl RateLimitConfig {
    pub(super) fn check(&self, p: &mut Problems) {
        if !INTERVAL_RANGE.contains(&self.interval) {
            p.add(
                "rate-limit.interval",
                format!(
                    "must be within {}..={} (log2 seconds), got {}",
                    INTERVAL_RANGE.start(),
                    INTERVAL_RANGE.end(),
                    self.interval
                ),
            );
        }
        if !(1..=MAX_BURST).contains(&self.burst) {
            p.add(
                "rate-limit.burst",
                format!("must be within 1..={MAX_BURST}, got {}", self.burst),
            );
        }
        if !LEAK_RANGE.contains(&self.leak) {
            p.add(
                "rate-limit.leak",
                format!(
                    "must be within {}..={} (1 in 2^leak limited requests answered), got {}",
                    LEAK_RANGE.start(),
                    LEAK_RANGE.end(),
                    self.leak
                ),
            );
        }
    }

    /// The limit, when enabled.
    pub fn limit(&self) -> Option<RateLimit> {
        self.enabled
            .then(|| RateLimit::new(self.interval, self.burst, self.leak, self.kod))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{err, parse};
    use std::net::IpAddr;

    #[test]
    fn access_rules_parse() {
        let c = parse(
            "[access]\nallow = [\"10.0.0.0/8\", \"2001:db8::/32\"]\ndeny = [\"10.66.0.0/16\"]\n\
             deny-action = \"drop\"\n",
        )
        .unwrap();
        assert_eq!(c.access.allow.len(), 2);
        assert_eq!(c.access.deny_action, super::DenyAction::Drop);
        let rules = c.access.rules();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(rules.allows(ip("10.1.1.1")) && !rules.allows(ip("10.66.1.1")));
        assert!(!rules.allows(ip("192.0.2.1")));
        let d = parse("").unwrap();
        assert!(d.access.rules().is_empty());
        assert_eq!(d.access.deny_action, super::DenyAction::Kod);
    }

    #[test]
    fn a_bad_prefix_is_reported_at_its_line() {
        // The array's line, and the element's index.
        let e = err("[access]\nallow = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/40\",\n]\n");
        assert_eq!(
            e,
            "meridian.toml:2:9: access.allow[1]: prefix length /40 is longer than the address \
             (at most /32)"
        );
        let e = err("[access]\ndeny = [\"example.org\"]\n");
        assert!(e.starts_with("meridian.toml:2:"), "{e}");
        assert!(
            e.contains("\"example.org\" is not an IP address or prefix"),
            "{e}"
        );
        let e = err("[access]\ndeny-action = \"reject\"\n");
        assert!(e.starts_with("meridian.toml:2:"), "{e}");
    }

    #[test]
    fn rate_limit_defaults_and_bounds() {
        let c = parse("").unwrap();
        assert!(!c.rate_limit.enabled && c.rate_limit.limit().is_none());
        assert_eq!(
            (c.rate_limit.interval, c.rate_limit.burst, c.rate_limit.leak),
            (3, 8, 2)
        );
        let c =
            parse("[rate-limit]\nenabled = true\ninterval = -2\nburst = 4\nkod = false\n").unwrap();
        let l = c.rate_limit.limit().unwrap();
        assert_eq!((l.interval, l.burst, l.leak, l.kod), (-2, 4, 2, false));
        assert_eq!(
            err("[rate-limit]\ninterval = 13\n"),
            "meridian.toml:2:12: rate-limit.interval: must be within -19..=12 (log2 seconds), \
             got 13"
        );
        assert_eq!(
            err("[rate-limit]\nburst = 0\n"),
            "meridian.toml:2:9: rate-limit.burst: must be within 1..=255, got 0"
        );
        assert!(err("[rate-limit]\nleak = 0\n").contains("rate-limit.leak: must be within 1..=8"));
        assert_eq!(
            err("[rate-limit]\nenabled = true\n[clients]\nmax = 0\n"),
            "meridian.toml:2:11: rate-limit.enabled: needs the client table (clients.max > 0): \
             the buckets live in the client records"
        );
    }
}
