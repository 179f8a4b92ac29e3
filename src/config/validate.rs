//! The whole-file rules: each section's own rules, then the ones that span sections.

use super::source::{self, MAX_SOURCES};
use super::{Config, Problem, Problems};

impl Config {
    /// Every failed rule, without locations, in key order.
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        self.server.check(&mut p);
        self.clock.check(&mut p);
        let clock = &self.clock;
        if (1..=MAX_SOURCES).contains(&clock.min_sources) && !self.sources.is_empty() {
            let most: usize = self.sources.iter().map(|s| s.max_sources().max(1)).sum();
            if clock.min_sources > most {
                p.add(
                    "clock.min-sources",
                    format!(
                        "is {} but the [[source]] tables give at most {most} source(s)",
                        clock.min_sources
                    ),
                );
            }
        }
        self.clients.check(&mut p);
        self.access.check(&mut p);
        self.rate_limit.check(&mut p);
        if self.rate_limit.enabled && self.clients.max == 0 {
            p.add(
                "rate-limit.enabled",
                "needs the client table (clients.max > 0): the buckets live in the client records"
                    .to_owned(),
            );
        }
        self.auth.check(&mut p);
        source::check(&self.sources, &mut p);
        self.log.check(&mut p);
        self.control.check(&mut p);
        p.0
    }
}
