//! `[clients]`: what the workers remember about their clients.

use serde::Deserialize;

use super::Problems;

/// `[clients]`: the per-worker client tables.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientsConfig {
    /// Client records kept in total, shared out evenly over the workers (each worker's table
    /// rounds its share up to a power of two of 8-record buckets). 64 bytes each. 0: no table
    /// (nothing is remembered about clients).
    pub max: usize,
}

/// Default `clients.max`: a carrier edge's worth (64 MiB of records).
pub const DEFAULT_MAX_CLIENTS: usize = 1 << 20;
/// Upper bound of `clients.max` (8 GiB of records).
pub const MAX_CLIENTS: usize = 1 << 27;

impl Default for ClientsConfig {
    fn default() -> Self {
        ClientsConfig {
            max: DEFAULT_MAX_CLIENTS,
        }
    }
}

impl ClientsConfig {
    /// The `[clients]` rules.
    pub(super) fn check(&self, p: &mut Problems) {
        if self.max > MAX_CLIENTS {
            p.add(
                "clients.max",
                format!(
                    "must be at most {MAX_CLIENTS} (0 = no client table), got {}",
                    self.max
                ),
            );
        }
    }

    /// Records for each of `workers` workers.
    pub fn per_worker(&self, workers: usize) -> usize {
        self.max.div_ceil(workers.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{err, parse};

    #[test]
    fn clients_max() {
        assert_eq!(parse("").unwrap().clients.max, 1 << 20);
        assert_eq!(parse("[clients]\nmax = 1000\n").unwrap().clients.max, 1000);
        assert_eq!(
            parse("[clients]\nmax = 0\n").unwrap().clients.per_worker(4),
            0
        );
        assert_eq!(
            err("[clients]\nmax = 134217729\n"),
            "meridian.toml:2:7: clients.max: must be at most 134217728 (0 = no client table), \
             got 134217729"
        );
        assert_eq!(ClientsConfig { max: 10 }.per_worker(4), 3);
        assert_eq!(ClientsConfig { max: 10 }.per_worker(0), 10);
    }
}
