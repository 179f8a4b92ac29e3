//! What a reload (SIGHUP) may change while serving, and what waits for a restart.
//!
//! Live: the `[[source]]` tables (added, removed and changed sources), `[access]` and
//! `[rate-limit]` (each worker takes them up between two batches: no request is dropped for
//! it), `[auth]` (the key file is read again on every SIGHUP, changed or not), and
//! `log.level`.
//! Everything in `[server]` (sockets, rings, workers, the XDP program), `[clock]` (the
//! steering and leap state of a running discipline) and `[clients]` (the tables' memory,
//! allocated at start-up) keeps its running value until a restart.

use super::Config;

/// The differences between the running configuration and a reloaded one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Keys that changed but only take effect after a restart, in file order.
    pub need_restart: Vec<&'static str>,
    /// The `[[source]]` tables differ.
    pub sources: bool,
    /// `log.level` differs.
    pub log_level: bool,
    /// `[access]` or `[rate-limit]` differ.
    pub policy: bool,
}

impl Changes {
    /// Compares `running` with `reloaded`.
    pub fn between(running: &Config, reloaded: &Config) -> Changes {
        let (a, b) = (&running.server, &reloaded.server);
        let (c, d) = (&running.clock, &reloaded.clock);
        let keys: [(&'static str, bool); 25] = [
            ("server.listen", a.listen != b.listen),
            ("server.workers", a.workers != b.workers),
            ("server.cores", a.cores != b.cores),
            ("server.backend", a.backend != b.backend),
            ("server.batch-size", a.batch_size != b.batch_size),
            ("server.interface", a.interface != b.interface),
            ("server.xdp-mode", a.xdp_mode != b.xdp_mode),
            ("server.queues", a.queues != b.queues),
            ("server.interleaved", a.interleaved != b.interleaved),
            ("clock.local-stratum", c.local_stratum != d.local_stratum),
            ("clock.mode", c.mode != d.mode),
            ("clock.step-threshold", c.step_threshold != d.step_threshold),
            ("clock.step-limit", c.step_limit != d.step_limit),
            ("clock.drift-file", c.drift_file != d.drift_file),
            ("clock.holdover", c.holdover != d.holdover),
            ("clock.min-sources", c.min_sources != d.min_sources),
            ("clock.local-fallback", c.local_fallback != d.local_fallback),
            (
                "clock.leap-smear",
                c.leap_smear != d.leap_smear || c.leap_smear_window != d.leap_smear_window,
            ),
            ("clock.leap-days", c.leap_days != d.leap_days),
            ("clients.max", running.clients.max != reloaded.clients.max),
            (
                "control.socket",
                running.control.socket != reloaded.control.socket,
            ),
            (
                "control.http",
                running.control.http != reloaded.control.http,
            ),
            (
                "control.token-file",
                running.control.token_file != reloaded.control.token_file,
            ),
            ("log.file", running.log.file != reloaded.log.file),
            ("log.syslog", running.log.syslog != reloaded.log.syslog),
        ];
        Changes {
            need_restart: keys.iter().filter(|(_, k)| *k).map(|(n, _)| *n).collect(),
            sources: running.sources != reloaded.sources,
            log_level: running.log.level != reloaded.log.level,
            policy: running.access != reloaded.access || running.rate_limit != reloaded.rate_limit,
        }
    }

    /// The configuration to run on: `running` with what may change live taken from
    /// `reloaded`.
    pub fn applied(running: &Config, reloaded: &Config) -> Config {
        Config {
            sources: reloaded.sources.clone(),
            log: reloaded.log.clone(),
            access: reloaded.access.clone(),
            rate_limit: reloaded.rate_limit.clone(),
            auth: reloaded.auth.clone(),
            ..running.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::parse;

    #[test]
    fn live_and_restart_only_changes() {
        let running = parse(
            "[server]\nlisten = [\"127.0.0.1:1123\"]\n[[source]]\naddress = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        assert_eq!(Changes::between(&running, &running), Changes::default());
        let reloaded = parse(
            "[server]\nlisten = [\"127.0.0.1:1124\"]\nworkers = 3\n[clock]\nholdover = 5\n\
             [log]\nlevel = \"debug\"\n[[source]]\naddress = \"127.0.0.1:2\"\n",
        )
        .unwrap();
        let ch = Changes::between(&running, &reloaded);
        assert_eq!(
            ch.need_restart,
            ["server.listen", "server.workers", "clock.holdover"]
        );
        assert!(ch.sources && ch.log_level);
        let applied = Changes::applied(&running, &reloaded);
        assert_eq!(applied.server, running.server);
        assert_eq!(applied.clock, running.clock);
        assert_eq!(applied.sources, reloaded.sources);
        assert_eq!(applied.log.level, "debug");
        // Only an option of a source changed: still a source change, nothing to restart.
        let iburst = parse(
            "[server]\nlisten = [\"127.0.0.1:1123\"]\n[[source]]\naddress = \"127.0.0.1:1\"\n\
             iburst = true\n",
        )
        .unwrap();
        let ch = Changes::between(&running, &iburst);
        assert!(ch.sources && ch.need_restart.is_empty() && !ch.log_level);
        // Access rules and the rate limit change live.
        let policy = parse(
            "[server]\nlisten = [\"127.0.0.1:1123\"]\n[[source]]\naddress = \"127.0.0.1:1\"\n\
             [access]\ndeny = [\"192.0.2.0/24\"]\n[rate-limit]\nenabled = true\n",
        )
        .unwrap();
        let ch = Changes::between(&running, &policy);
        assert!(ch.policy && ch.need_restart.is_empty() && !ch.sources);
        let moved = parse("[control]\nsocket = \"/tmp/m.sock\"\nhttp = \"\"\n").unwrap();
        assert_eq!(
            Changes::between(&Config::default(), &moved).need_restart,
            ["control.socket", "control.http"]
        );
        let applied = Changes::applied(&running, &policy);
        assert_eq!(applied.access, policy.access);
        assert!(applied.rate_limit.enabled);
    }
}
