//! `[log]`: diagnostics.

use std::path::PathBuf;

use serde::Deserialize;

use super::Problems;

/// `[log]`: diagnostics.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `meridian=debug,warn`, ...
    pub level: String,
    /// Log to this file (appended to; reopened on SIGHUP) instead of stderr.
    pub file: Option<PathBuf>,
    /// Log to the system logger (`/dev/log`: syslog or journald) instead of stderr.
    pub syslog: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            file: None,
            syslog: false,
        }
    }
}

impl LogConfig {
    /// The `[log]` rules.
    pub(super) fn check(&self, p: &mut Problems) {
        if let Err(message) = check_log_level(&self.level) {
            p.add("log.level", message);
        }
        if let Some(file) = &self.file {
            if file.as_os_str().is_empty() {
                p.add(
                    "log.file",
                    "empty: leave it out to log to stderr".to_owned(),
                );
            } else if !file.is_absolute() {
                p.add(
                    "log.file",
                    format!(
                        "{} is relative: write an absolute path (the server's working \
                         directory is not the configuration's)",
                        file.display()
                    ),
                );
            } else if self.syslog {
                p.add(
                    "log.file",
                    "log.syslog is true too: choose one destination".to_owned(),
                );
            }
        }
    }
}

/// `level` must be an `EnvFilter` directive list. A bare word that is not a level (`verbose`,
/// `warning`) parses as "every level of target `verbose`", which silences everything else; it is
/// almost always a typo, so it is rejected unless it names one of meridian's own crates.
pub fn check_log_level(level: &str) -> Result<(), String> {
    use tracing_subscriber::filter::LevelFilter;
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level) {
        return Err(format!("not a tracing filter ({e}): {level:?}"));
    }
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', '[']);
        if bare && directive.parse::<LevelFilter>().is_err() && !directive.starts_with("meridian") {
            return Err(format!(
                "not a tracing filter: `{directive}` is not a level (off, error, warn, info, \
                 debug, trace); for a target write `{directive}=LEVEL`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{err, parse};

    #[test]
    fn log_level_must_be_a_filter() {
        for ok in [
            "info",
            "debug",
            "warn,meridian=trace",
            "meridian::io=debug",
            "off",
        ] {
            parse(&format!("[log]\nlevel = \"{ok}\"\n")).unwrap();
        }
        parse("[log]\nlevel = \"meridian\"\n").unwrap();
        parse("[log]\nlevel = \"tokio=off,info\"\n").unwrap();
        for bad in ["loud", "info,warning", "meridian=verbose", "[{", "=info"] {
            let e = err(&format!("[log]\nlevel = \"{bad}\"\n"));
            assert!(
                e.starts_with("meridian.toml:2:9: log.level: not a tracing filter"),
                "{e}"
            );
        }
    }

    #[test]
    fn log_file_is_absolute_and_alone() {
        let c = parse("[log]\nfile = \"/var/log/meridian.log\"\n").unwrap();
        assert_eq!(
            c.log.file.as_deref(),
            Some("/var/log/meridian.log".as_ref())
        );
        assert!(parse("[log]\nsyslog = true\n").unwrap().log.syslog);
        let e = err("[log]\nfile = \"meridian.log\"\n");
        assert!(
            e.starts_with("meridian.toml:2:8: log.file: meridian.log is relative"),
            "{e}"
        );
        let e = err("[log]\nfile = \"\"\n");
        assert!(e.starts_with("meridian.toml:2:8: log.file: empty"), "{e}");
        let e = err("[log]\nsyslog = true\nfile = \"/tmp/m.log\"\n");
        assert!(e.contains("log.file: log.syslog is true too"), "{e}");
        let e = err("[log]\nsyslog = \"yes\"\n");
        assert!(e.contains("syslog"), "{e}");
    }
}
