//! The TOML configuration: serde types with kebab-case keys, unknown keys rejected, and a default
//! for every value so `meridian serve` runs with no file at all.
//!
//! One module per section (`server`, `clock`, `source`, `log`), each with its types, defaults
//! and rules; `validate` runs them all and adds the rules that span sections; `error` words the
//! problems and `spans` finds their lines; `host` checks what needs this machine, and `reload`
//! says what a SIGHUP may change live. A new section is a new module plus one line in
//! [`Config`] and one in `validate`.

mod access;
mod auth;
mod clients;
mod clock;
mod control;
mod error;
mod host;
mod log;
mod reload;
mod server;
mod source;
mod spans;
mod validate;

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

pub use access::{AccessConfig, DenyAction, RateLimitConfig, MAX_RULES};
pub use auth::{AuthConfig, RequireAction};
pub use clients::{ClientsConfig, DEFAULT_MAX_CLIENTS, MAX_CLIENTS};
pub use clock::{ClockConfig, ClockMode, LeapDays, MAX_SMEAR_WINDOW};
pub use control::{
    check_http, check_socket_path, ControlConfig, ControlHttp, ControlSocket, DEFAULT_CONTROL_HTTP,
    DEFAULT_CONTROL_SOCKET,
};
pub use error::{ConfigError, Problem, Problems};
pub use host::{system_mode_refusal, HostFacts};
pub use log::LogConfig;
pub use reload::Changes;
pub use server::{BackendKind, ServerConfig, XdpMode, MAX_BATCH_SIZE, MAX_QUEUE, MAX_WORKERS};
pub use source::{
    split_host_port, SourceConfig, SourceKind, DEFAULT_MAXPOLL, DEFAULT_MINPOLL,
    DEFAULT_POOL_SOURCES, MAX_SOURCES, NTP_PORT, POLL_RANGE,
};

use error::line_col;
use spans::value_spans;

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub server: ServerConfig,
    pub clock: ClockConfig,
    pub clients: ClientsConfig,
    pub access: AccessConfig,
    pub rate_limit: RateLimitConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub control: ControlConfig,
    /// `[[source]]` tables: the upstream servers and pools. None: the local clock is served.
    #[serde(rename = "source")]
    pub sources: Vec<SourceConfig>,
}

/// At most this many problems are reported from one file.
const MAX_REPORTED: usize = 64;

/// What [`Config::check_file`] found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The configuration, when the file could be read into one (with the values of the wrong
    /// type left at their defaults); usable only when `errors` is empty.
    pub config: Option<Config>,
    /// Every problem, worded `file:line:col: key: message`, the type errors first.
    pub errors: Vec<String>,
    /// Keys without effect and the like, worded the same way.
    pub warnings: Vec<String>,
}

/// `text` with its 1-based line `line` commented out (line numbers stay the same).
fn set_aside(text: &str, line: usize) -> String {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                format!("#{l}")
            } else {
                l.to_owned()
            }
        })
        .collect()
}

/// A configuration that passed every check, and what was worth a warning (worded
/// `file:line:col: key: message`).
#[derive(Clone, Debug)]
pub struct Checked {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// The `meridian serve` flags that replace keys of the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Non-empty: replaces `server.listen`.
    pub listen: Vec<SocketAddr>,
    pub workers: Option<usize>,
    pub backend: Option<BackendKind>,
    /// Non-empty: replaces `server.interface`.
    pub interface: Vec<String>,
    pub xdp_mode: Option<XdpMode>,
}

impl Overrides {
    /// Applies the flags to `config`; returns the keys they replaced.
    pub fn apply(&self, config: &mut Config) -> Vec<&'static str> {
        config.apply_overrides(&self.listen, self.workers, self.backend);
        config.apply_xdp_overrides(&self.interface, self.xdp_mode);
        let mut keys = Vec::new();
        for (key, set) in [
            ("server.listen", !self.listen.is_empty()),
            ("server.workers", self.workers.is_some()),
            ("server.backend", self.backend.is_some()),
            ("server.interface", !self.interface.is_empty()),
            ("server.xdp-mode", self.xdp_mode.is_some()),
        ] {
            if set {
                keys.push(key);
            }
        }
        keys
    }
}

/// Points each problem at its value in `text`; a key set on the command line (`replaced`) is
/// said to come from there instead.
fn locate(problems: Vec<Problem>, text: &str, replaced: &[&str]) -> Vec<Problem> {
    let spans = value_spans(text);
    problems
        .into_iter()
        .map(|mut p| {
            if replaced.contains(&p.key.as_str()) {
                p.message.push_str(" (set on the command line)");
            } else {
                p.location = spans.get(&p.key).map(|&offset| line_col(text, offset));
            }
            p
        })
        .collect()
}

impl Config {
    /// Reads and validates a file; `None` gives the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.display().to_string(),
            error,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `name` is used in error messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let config = Config::deserialize_located(text, name)?;
        let problems = config.problems();
        if problems.is_empty() {
            return Ok(config);
        }
        Err(ConfigError::Validation {
            file: Some(name.to_owned()),
            problems: locate(problems, text, &[]),
        })
    }

    /// Everything `meridian validate` checks, and `meridian serve` before it touches
    /// anything: reads `path` (or takes the defaults), applies the command-line `overrides`,
    /// then runs every rule, those of the file and those of this `host`. Only an unreadable
    /// file is an `Err`; every problem found is in the report, worded with its location.
    ///
    /// A value of the wrong type stops serde at the first one, so its line is set aside (as
    /// if commented out) and the file read again, until all such values are found (or a
    /// line set aside breaks the syntax); the rules then run on what remains.
    pub fn check_file(
        path: Option<&Path>,
        overrides: &Overrides,
        host: &HostFacts,
    ) -> Result<Report, ConfigError> {
        let (text, name) = match path {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
                    path: path.display().to_string(),
                    error,
                })?,
                path.display().to_string(),
            ),
            None => (String::new(), "configuration".to_owned()),
        };
        let mut errors = Vec::new();
        let mut readable = text.clone();
        let config = loop {
            match Config::deserialize_located(&readable, &name) {
                Ok(config) => break Some(config),
                Err(e) => {
                    let ConfigError::Parse { line, key, .. } = &e else {
                        errors.push(e.to_string());
                        break None;
                    };
                    let typed = key.is_some() || e.to_string().contains("unknown field");
                    if !errors.is_empty() && !typed {
                        break None; // most likely caused by a line set aside: not the user's
                    }
                    errors.push(e.to_string());
                    if !typed || errors.len() >= MAX_REPORTED {
                        break None;
                    }
                    readable = set_aside(&readable, *line);
                }
            }
        };
        let mut warnings = Vec::new();
        if let Some(mut config) = config {
            let replaced = overrides.apply(&mut config);
            let mut problems = Problems(config.problems());
            let mut warned = Problems::default();
            config.host_problems(host, &mut problems, &mut warned);
            let word = |p: &Problem| error::located(&name, p.location, Some(&p.key), &p.message);
            errors.extend(locate(problems.0, &text, &replaced).iter().map(word));
            warnings.extend(locate(warned.0, &text, &replaced).iter().map(word));
            return Ok(Report {
                config: Some(config),
                errors,
                warnings,
            });
        }
        Ok(Report {
            config: None,
            errors,
            warnings,
        })
    }

    /// [`Config::check_file`], for starting: the configuration and its warnings, or every
    /// problem as one error.
    pub fn load_checked(
        path: Option<&Path>,
        overrides: &Overrides,
        host: &HostFacts,
    ) -> Result<Checked, ConfigError> {
        let report = Config::check_file(path, overrides, host)?;
        match report.config {
            Some(config) if report.errors.is_empty() => Ok(Checked {
                config,
                warnings: report.warnings,
            }),
            _ => Err(ConfigError::Invalid(report.errors.join("\n"))),
        }
    }

    /// Checks the value ranges; for configurations built or changed in code (CLI overrides).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Validation {
                file: None,
                problems,
            })
        }
    }

    /// Applies the `meridian serve` flags: a non-empty `listen` replaces `server.listen`,
    /// `workers` and `backend` replace theirs. Call [`Config::validate`] afterwards.
    pub fn apply_overrides(
        &mut self,
        listen: &[SocketAddr],
        workers: Option<usize>,
        backend: Option<BackendKind>,
    ) {
        if !listen.is_empty() {
            self.server.listen = listen.to_vec();
        }
        if let Some(workers) = workers {
            self.server.workers = workers;
        }
        if let Some(backend) = backend {
            self.server.backend = backend;
        }
    }

    /// Applies the xdp flags of `meridian serve`: a non-empty `interfaces` replaces
    /// `server.interface`, `xdp_mode` replaces `server.xdp-mode`. Call [`Config::validate`]
    /// afterwards.
    pub fn apply_xdp_overrides(&mut self, interfaces: &[String], xdp_mode: Option<XdpMode>) {
        if !interfaces.is_empty() {
            self.server.interface = interfaces.to_vec();
        }
        if let Some(mode) = xdp_mode {
            self.server.xdp_mode = mode;
        }
    }

    fn deserialize_located(text: &str, name: &str) -> Result<Config, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let (line, column) = line_col(text, inner.span().map_or(0, |s| s.start));
            // toml's syntax messages span lines ("invalid string\nexpected ..."): keep one line.
            let message = inner
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            let span = inner.span().unwrap_or(0..0);
            let message = error::plain_words(&message);
            let message = if message == "invalid socket address syntax" {
                // std's message omits the value and the expected form.
                let value = text.get(span).unwrap_or("").trim();
                format!("invalid socket address {value}, expected IP:PORT like \"0.0.0.0:123\" or \"[::]:123\"")
            } else {
                message
            };
            let (key, message) = if let Some(rest) = message.strip_prefix("unknown field `") {
                // serde's path ends with the unknown key itself; name the table holding it.
                let table = match path.rsplit_once('.') {
                    Some((table, _)) => format!("[{table}]"),
                    None => "the top level".to_owned(),
                };
                let message = match rest.split_once("`, ") {
                    Some((field, expected)) => {
                        format!("unknown field `{field}` in {table}, {expected}")
                    }
                    None => format!("unknown field `{rest} in {table}"),
                };
                (None, message)
            } else if path == "." || path == "?" || path.is_empty() {
                (None, message)
            } else {
                (Some(path), message)
            };
            ConfigError::Parse {
                file: name.to_owned(),
                line,
                column,
                key,
                message,
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shorthands for the configuration tests of every section.
    use super::{Config, ConfigError, Problem};

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "meridian.toml")
    }

    pub fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    pub fn problems(text: &str) -> Vec<Problem> {
        match parse(text).unwrap_err() {
            ConfigError::Validation { problems, .. } => problems,
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{err, parse, problems};
    use super::*;

    #[test]
    fn empty_file_and_no_file_give_defaults() {
        let empty = parse("").unwrap();
        assert_eq!(empty, Config::default());
        assert_eq!(Config::load(None).unwrap(), Config::default());
        let d = Config::default();
        assert_eq!(
            d.server.listen,
            vec![
                "0.0.0.0:123".parse::<SocketAddr>().unwrap(),
                "[::]:123".parse().unwrap()
            ]
        );
        assert_eq!(d.server.workers, 0);
        assert!(d.server.cores.is_empty());
        assert_eq!(d.server.backend, BackendKind::Auto);
        assert_eq!(d.server.batch_size, 32);
        assert_eq!(d.clock.local_stratum, 10);
        assert_eq!(d.log.level, "info");
        d.validate().unwrap();
    }

    #[test]
    fn empty_tables_and_comments_give_defaults() {
        let c = parse("# nothing\n[server]\n[clock]\n[log]\n").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn partial_table_keeps_other_defaults() {
        let c = parse("[server]\nworkers = 3\n").unwrap();
        assert_eq!(c.server.workers, 3);
        assert_eq!(c.server.listen, ServerConfig::default().listen);
        assert_eq!(c.server.batch_size, 32);
        assert_eq!(c.clock, ClockConfig::default());
    }

    #[test]
    fn full_example() {
        let text = r#"
[server]
listen = ["127.0.0.1:1123", "[::1]:1123"]
workers = 2
cores = [0, 1]
backend = "udp"
batch-size = 1024

[clock]
local-stratum = 1

[log]
level = "meridian=trace,warn"
"#;
        let c = parse(text).unwrap();
        assert_eq!(
            c,
            Config {
                server: ServerConfig {
                    listen: vec![
                        "127.0.0.1:1123".parse().unwrap(),
                        "[::1]:1123".parse().unwrap()
                    ],
                    workers: 2,
                    cores: vec![0, 1],
                    backend: BackendKind::Udp,
                    batch_size: 1024,
                    ..ServerConfig::default()
                },
                clock: ClockConfig {
                    local_stratum: 1,
                    ..ClockConfig::default()
                },
                clients: ClientsConfig::default(),
                access: AccessConfig::default(),
                rate_limit: RateLimitConfig::default(),
                auth: AuthConfig::default(),
                log: LogConfig {
                    level: "meridian=trace,warn".into(),
                    ..LogConfig::default()
                },
                control: ControlConfig::default(),
                sources: Vec::new(),
            }
        );
    }

    #[test]
    fn dotted_keys_and_inline_tables_work() {
        let c = parse("server.workers = 5\nclock = { local-stratum = 3 }\n").unwrap();
        assert_eq!(c.server.workers, 5);
        assert_eq!(c.clock.local_stratum, 3);
    }

    #[test]
    fn example_file_parses_and_matches_the_docs() {
        let text = include_str!("../../docs/meridian.example.toml");
        let c = Config::parse(text, "meridian.example.toml").unwrap();
        let placeholder = |a: &str| SourceConfig {
            iburst: true,
            ..SourceConfig::new(a)
        };
        assert_eq!(
            c,
            Config {
                server: ServerConfig {
                    listen: vec!["127.0.0.1:1123".parse().unwrap()],
                    ..ServerConfig::default()
                },
                clock: ClockConfig {
                    local_fallback: true,
                    ..ClockConfig::default()
                },
                clients: ClientsConfig::default(),
                access: AccessConfig::default(),
                rate_limit: RateLimitConfig::default(),
                auth: AuthConfig::default(),
                log: LogConfig::default(),
                control: ControlConfig::default(),
                sources: vec![
                    SourceConfig {
                        prefer: true,
                        minpoll: 4,
                        maxpoll: 8,
                        ..placeholder("127.0.0.1:10123")
                    },
                    placeholder("127.0.0.2:10123"),
                    SourceConfig {
                        kind: SourceKind::Pool,
                        max_sources: Some(3),
                        iburst: false,
                        ..SourceConfig::new("localhost:10124")
                    },
                ],
            }
        );
        // Safe as shipped: loopback only, the host clock untouched, sources on loopback.
        assert!(c.server.listen.iter().all(|a| a.ip().is_loopback()));
        assert_eq!(c.clock.mode, ClockMode::Virtual);
        for s in &c.sources {
            let (host, _) = s.host_port().unwrap();
            let ip: Option<std::net::IpAddr> = host.parse().ok();
            assert!(
                host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()),
                "{host}"
            );
        }
        // Every key of the schema appears in the example, set or (for keys that only matter in
        // another setup) as a commented-out example line.
        for key in [
            "listen =",
            "workers =",
            "cores =",
            "backend =",
            "batch-size =",
            "interface =",
            "xdp-mode =",
            "queues =",
            "interleaved =",
            "local-stratum =",
            "mode =",
            "step-threshold =",
            "step-limit =",
            "drift-file =",
            "holdover =",
            "min-sources =",
            "local-fallback =",
            "leap-smear =",
            "leap-smear-window =",
            "leap-days =",
            "max =",
            "address =",
            "kind =",
            "iburst =",
            "minpoll =",
            "maxpoll =",
            "prefer =",
            "max-sources =",
            "level =",
            "socket =",
            "http =",
            "token-file =",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(key) || l.starts_with(&format!("# {key}"))),
                "{key}"
            );
        }
    }

    #[test]
    fn configuration_doc_example_errors_are_real() {
        let doc = include_str!("../../docs/configuration.md");
        for (text, expected) in doc_error_examples() {
            assert!(
                doc.contains(&expected),
                "docs/configuration.md lacks:\n{expected}"
            );
            assert_eq!(err(text), expected);
        }
    }

    /// The inputs behind the messages quoted in docs/configuration.md.
    fn doc_error_examples() -> Vec<(&'static str, String)> {
        vec![
            (
                "[server]\nlisten = [\"0.0.0.0:123\"]\nworkers = \"two\"\n",
                "meridian.toml:3:11: server.workers: invalid type: string \"two\", expected a whole number (0 or more)"
                    .to_owned(),
            ),
            (
                "[server]\nlistn = [\"0.0.0.0:123\"]\n",
                "meridian.toml:2:1: unknown field `listn` in [server], expected one of \
                 `listen`, `workers`, `cores`, `backend`, `batch-size`, `interface`, `xdp-mode`, \
                 `queues`, `interleaved`"
                    .to_owned(),
            ),
            (
                "[server]\nbatch-size = 0\n\n[clock]\nlocal-stratum = 16\n",
                "meridian.toml:2:14: server.batch-size: must be in 1..=1024, got 0\n\
                 meridian.toml:5:17: clock.local-stratum: must be in 1..=15, got 16"
                    .to_owned(),
            ),
            (
                "[server]\nworkers = 2\nbatch-size = = 3\n",
                "meridian.toml:3:14: invalid string, expected `\"`, `'`".to_owned(),
            ),
        ]
    }

    #[test]
    fn unknown_key_names_table_and_line() {
        let e = err("[server]\nworkers = 2\n\n\n\n\nlistn = []\n");
        assert!(
            e.starts_with("meridian.toml:7:1: unknown field `listn` in [server], expected one of"),
            "{e}"
        );
        let e = err("[clock]\nstratum = 3\n");
        assert!(
            e.starts_with(
                "meridian.toml:2:1: unknown field `stratum` in [clock], expected one of \
                 `local-stratum`, `mode`"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_table_is_rejected() {
        let e = err("[server]\n\n[sever]\nworkers = 1\n");
        assert!(
            e.starts_with("meridian.toml:3:2: unknown field `sever` in the top level, expected one of `server`, `clock`, `clients`, `access`, `rate-limit`, `auth`, `log`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_key_path_and_line() {
        let e = err("# comment\n\n[server]\nworkers = \"two\"\n");
        assert_eq!(
            e,
            "meridian.toml:4:11: server.workers: invalid type: string \"two\", expected a whole number (0 or more)"
        );
        let e = err("[server]\nlisten = [\"0.0.0.0:123\", \"nonsense\"]\n");
        assert_eq!(
            e,
            "meridian.toml:2:26: server.listen[1]: invalid socket address \"nonsense\", \
             expected IP:PORT like \"0.0.0.0:123\" or \"[::]:123\""
        );
        let e = err("[server]\nlisten = [\"0.0.0.0\"]\n");
        assert!(
            e.contains("invalid socket address \"0.0.0.0\", expected IP:PORT"),
            "{e}"
        );
        let e = err("[server]\ncores = [1, -2]\n");
        assert!(
            e.starts_with("meridian.toml:2:13: server.cores[1]: "),
            "{e}"
        );
        let e = err("[clock]\nlocal-stratum = 300\n");
        assert!(
            e.starts_with("meridian.toml:2:17: clock.local-stratum: "),
            "{e}"
        );
        let e = err("server = 3\n");
        assert!(
            e.starts_with("meridian.toml:1:10: server: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_a_structured_error() {
        match parse("[log]\nlevel = 3\n").unwrap_err() {
            ConfigError::Parse {
                file,
                line,
                column,
                key,
                message,
            } => {
                assert_eq!(file, "meridian.toml");
                assert_eq!((line, column), (2, 9));
                assert_eq!(key.as_deref(), Some("log.level"));
                assert!(
                    message.starts_with("invalid type: integer `3`"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let e = err("[server]\nworkers = 2\nbatch-size = = 3\n");
        assert!(e.starts_with("meridian.toml:3:"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        let e = err("[server\n");
        assert!(e.starts_with("meridian.toml:1:"), "{e}");
        let e = err("[server]\nworkers = 1\nworkers = 2\n");
        assert!(e.starts_with("meridian.toml:3:1: "), "{e}");
        assert!(e.contains("duplicate key"), "{e}");
    }

    #[test]
    fn all_problems_are_reported_together() {
        let text = "[server]\nlisten = []\nworkers = 5000\ncores = [1, 1]\nbatch-size = 0\n\
                    [clock]\nlocal-stratum = 0\n[log]\nlevel = \"=\"\n";
        let keys: Vec<String> = problems(text).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.workers",
                "server.cores",
                "server.batch-size",
                "clock.local-stratum",
                "log.level"
            ]
        );
        assert_eq!(err(text).lines().count(), 6);
    }

    #[test]
    fn validation_lines_for_dotted_keys() {
        let e = err("\nserver.batch-size = 0\n");
        assert_eq!(
            e,
            "meridian.toml:2:21: server.batch-size: must be in 1..=1024, got 0"
        );
    }

    #[test]
    fn overrides_replace_and_validate() {
        let mut c =
            parse("[server]\nlisten = [\"0.0.0.0:123\"]\nworkers = 2\ninterface = \"eth0\"\n")
                .unwrap();
        c.apply_overrides(&[], None, None);
        assert_eq!(c.server.listen, vec!["0.0.0.0:123".parse().unwrap()]);
        assert_eq!(c.server.workers, 2);
        let addrs: Vec<SocketAddr> = vec!["127.0.0.1:1123".parse().unwrap()];
        c.apply_overrides(&addrs, Some(9000), Some(BackendKind::Xdp));
        assert_eq!(c.server.listen, addrs);
        assert_eq!(c.server.backend, BackendKind::Xdp);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "configuration: server.workers: must be at most 4096 (0 = one per core), got 9000"
        );
    }

    #[test]
    fn load_reads_files_and_names_them() {
        let dir = std::env::temp_dir().join(format!("meridian-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.toml");
        std::fs::write(&path, "[server]\nworkers = \"x\"\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:2:11: server.workers:", path.display())),
            "{e}"
        );
        std::fs::write(&path, "[server]\nworkers = 7\n").unwrap();
        assert_eq!(Config::load(Some(&path)).unwrap().server.workers, 7);
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        match Config::load(Some(&missing)).unwrap_err() {
            ConfigError::Io { path, .. } => assert_eq!(path, missing.display().to_string()),
            other => panic!("{other:?}"),
        }
    }
}
