//! The TOML configuration: serde types with kebab-case keys, unknown keys rejected, and a default
//! for every value so `meridian serve` runs with no file at all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::discipline::leap::LeapDays;
use crate::discipline::leap::MIN_SMEAR_SECONDS;

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub server: ServerConfig,
    pub clock: ClockConfig,
    pub log: LogConfig,
    /// `[[source]]` tables: the upstream servers and pools. None: the local clock is served.
    #[serde(rename = "source")]
    pub sources: Vec<SourceConfig>,
}

/// `[server]`: the data plane.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Addresses to answer on (IPv4 and/or IPv6, each with a port).
    pub listen: Vec<SocketAddr>,
    /// Worker threads; 0 = one per core the process may run on.
    pub workers: usize,
    /// Cores to pin workers to (core ids as the OS numbers them); empty = all available.
    pub cores: Vec<usize>,
    /// Which packet backend to run.
    pub backend: BackendKind,
    /// Packets taken from (and sent to) the kernel per system call (1..=1024).
    pub batch_size: usize,
    /// Network interfaces the xdp backend serves (one AF_XDP socket per RX queue). A string or
    /// a list; empty = none, and `auto` then skips xdp.
    #[serde(deserialize_with = "string_or_list")]
    pub interface: Vec<String>,
    /// How the XDP program is attached: native (driver) first, or forced.
    pub xdp_mode: XdpMode,
    /// RX queues served on each interface; empty = all of them.
    pub queues: Vec<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 123)),
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 123)),
            ],
            workers: 0,
            cores: Vec::new(),
            backend: BackendKind::Auto,
            batch_size: 32,
            interface: Vec::new(),
            xdp_mode: XdpMode::Auto,
            queues: Vec::new(),
        }
    }
}

/// How the XDP program is attached to an interface (mirrors `meridian_bpf::XdpMode`, which
/// exists only on Linux).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// Native (driver) XDP if the driver supports it, else generic.
    #[default]
    Auto,
    /// Native (driver) XDP only.
    Native,
    /// Generic (skb) XDP: works on any interface, slower.
    Generic,
}

/// Accepts `interface = "eth0"` as well as `interface = ["eth0", "eth1"]`.
fn string_or_list<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom(
            "expected an interface name or a list of names, like \"eth0\" or [\"eth0\", \"eth1\"]",
        )),
    }
}

/// The packet backends.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// The best available: xdp when an interface is configured, else io-uring, else udp.
    #[default]
    Auto,
    /// Plain UDP sockets (recvmmsg/sendmmsg on Linux, std sockets elsewhere).
    Udp,
    /// io_uring rings.
    IoUring,
    /// AF_XDP kernel bypass.
    Xdp,
}

/// `[clock]`: how served time is produced.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClockConfig {
    /// Stratum served while the local clock is the reference (1..=15): always without
    /// sources; with sources only after holdover and only when `local_fallback` is set.
    pub local_stratum: u8,
    /// How the discipline steers: `virtual` (served = raw + correction, the OS clock is never
    /// touched) or `system` (slews/steps the OS clock; needs CAP_SYS_TIME).
    pub mode: ClockMode,
    /// Offsets above this many seconds are stepped (during the first `step_limit` updates).
    pub step_threshold: f64,
    /// Steps are allowed during this many synchronised updates; later only slews.
    pub step_limit: u32,
    /// Where the frequency of the OS clock is kept across restarts (`system` mode).
    pub drift_file: Option<PathBuf>,
    /// Seconds served on the last estimate after every source is lost.
    pub holdover: f64,
    /// Agreeing sources needed to synchronise.
    pub min_sources: usize,
    /// With sources: after holdover, serve the local clock at `local_stratum` instead of
    /// becoming unsynchronised.
    pub local_fallback: bool,
    /// Smear leap seconds linearly over `leap_smear_window` instead of stepping.
    pub leap_smear: bool,
    /// Seconds over which a leap second is smeared, centred on midnight UTC.
    pub leap_smear_window: f64,
    /// On which days an announced leap second is acted on.
    pub leap_days: LeapDays,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            local_stratum: 10,
            mode: ClockMode::Virtual,
            step_threshold: 1.0,
            step_limit: 3,
            drift_file: None,
            holdover: 600.0,
            min_sources: 1,
            local_fallback: false,
            leap_smear: false,
            leap_smear_window: 86400.0,
            leap_days: LeapDays::default(),
        }
    }
}

/// `clock.mode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClockMode {
    /// Serve raw time plus a published correction; never touch the OS clock.
    #[default]
    Virtual,
    /// Discipline the OS clock itself (adjtimex / clock_adjtime).
    System,
}

/// `[[source]]`: one upstream server, or a pool of them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// `HOST`, `HOST:PORT`, `IPv4[:PORT]`, `IPv6` or `[IPv6]:PORT` (default port 123).
    pub address: String,
    /// `server` (one address) or `pool` (a name resolving to several).
    #[serde(default)]
    pub kind: SourceKind,
    /// Start with a burst of quick polls.
    #[serde(default)]
    pub iburst: bool,
    /// Shortest poll interval, log2 seconds (-6..=17).
    #[serde(default = "default_minpoll")]
    pub minpoll: i8,
    /// Longest poll interval, log2 seconds (minpoll..=17).
    #[serde(default = "default_maxpoll")]
    pub maxpoll: i8,
    /// Prefer this source when it survives selection.
    #[serde(default)]
    pub prefer: bool,
    /// Pools: how many of the resolved addresses are used at once (default 4).
    #[serde(default)]
    pub max_sources: Option<usize>,
}

/// `source.kind`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    #[default]
    Server,
    Pool,
}

fn default_minpoll() -> i8 {
    DEFAULT_MINPOLL
}

fn default_maxpoll() -> i8 {
    DEFAULT_MAXPOLL
}

/// Default `minpoll` (64 s).
pub const DEFAULT_MINPOLL: i8 = 6;
/// Default `maxpoll` (1024 s).
pub const DEFAULT_MAXPOLL: i8 = 10;
/// Poll exponents accepted (1/64 s ..= 36 h).
pub const POLL_RANGE: std::ops::RangeInclusive<i8> = -6..=17;
/// The NTP port, used when an address has none.
pub const NTP_PORT: u16 = 123;
/// Default `max-sources` of a pool.
pub const DEFAULT_POOL_SOURCES: usize = 4;
/// Upper bound of `max-sources` and `min-sources`.
pub const MAX_SOURCES: usize = 16;
/// Upper bound of `clock.leap-smear-window`, seconds.
pub const MAX_SMEAR_WINDOW: f64 = 172_800.0;

impl SourceConfig {
    /// A source with every default but its address.
    pub fn new(address: &str) -> SourceConfig {
        SourceConfig {
            address: address.to_owned(),
            kind: SourceKind::Server,
            iburst: false,
            minpoll: DEFAULT_MINPOLL,
            maxpoll: DEFAULT_MAXPOLL,
            prefer: false,
            max_sources: None,
        }
    }

    /// The host (a name or an IP literal, without brackets) and port of `address`.
    pub fn host_port(&self) -> Result<(String, u16), String> {
        split_host_port(&self.address)
    }

    /// How many addresses this source contributes at most: 1 for a server.
    pub fn max_sources(&self) -> usize {
        match self.kind {
            SourceKind::Server => 1,
            SourceKind::Pool => self.max_sources.unwrap_or(DEFAULT_POOL_SOURCES),
        }
    }
}

/// Splits `HOST`, `HOST:PORT`, `IPv4[:PORT]`, `IPv6` or `[IPv6]:PORT` (default port 123).
pub fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let a = address.trim();
    if a.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port()));
    }
    if let Ok(ip) = a
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return Ok((ip.to_string(), NTP_PORT));
    }
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) => {
            let port =
                p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                    format!("invalid port {p:?} in {address:?}, expected 1..=65535")
                })?;
            (h, port)
        }
        None => (a, NTP_PORT),
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !name_ok {
        return Err(format!(
            "invalid address {address:?}, expected HOST, HOST:PORT, IP, IP:PORT or [IPv6]:PORT"
        ));
    }
    Ok((host.to_owned(), port))
}

/// `[log]`: diagnostics.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `meridian=debug,warn`, ...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// A configuration that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Anything else, already formatted.
    #[error("{0}")]
    Invalid(String),
    /// The text is not TOML, or does not fit the schema (unknown key, wrong type, ...).
    #[error("{}", located(file, Some((*line, *column)), key.as_deref(), message))]
    Parse {
        /// The file name given to [`Config::parse`].
        file: String,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// Dotted key path (`server.workers`, `server.listen[1]`), when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The file parsed but some values are out of range; every problem is listed, one per line.
    #[error("{}", problems_to_string(file.as_deref(), problems))]
    Validation {
        /// The file name, when the configuration came from a file.
        file: Option<String>,
        /// Every rule that failed, in key order.
        problems: Vec<Problem>,
    },
}

/// One failed validation rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `server.batch-size`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
    /// 1-based line and column of the value in the file, when it came from one.
    pub location: Option<(usize, usize)>,
}

fn located(
    file: &str,
    location: Option<(usize, usize)>,
    key: Option<&str>,
    message: &str,
) -> String {
    let mut out = String::from(file);
    if let Some((line, column)) = location {
        out.push_str(&format!(":{line}:{column}"));
    }
    if let Some(key) = key {
        out.push_str(": ");
        out.push_str(key);
    }
    out.push_str(": ");
    out.push_str(message);
    out
}

fn problems_to_string(file: Option<&str>, problems: &[Problem]) -> String {
    let file = file.unwrap_or("configuration");
    problems
        .iter()
        .map(|p| located(file, p.location, Some(&p.key), &p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// 1-based line and column (counted in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Upper bound of `server.workers`.
pub const MAX_WORKERS: usize = 4096;
/// Upper bound of `server.batch-size`.
pub const MAX_BATCH_SIZE: usize = 1024;

impl Config {
    /// Reads and validates a file; `None` gives the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
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
        let spans = value_spans(text);
        let problems = problems
            .into_iter()
            .map(|mut p| {
                p.location = spans.get(&p.key).map(|&offset| line_col(text, offset));
                p
            })
            .collect();
        Err(ConfigError::Validation {
            file: Some(name.to_owned()),
            problems,
        })
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

    /// Every failed rule, without locations.
    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: key.to_owned(),
                message,
                location: None,
            })
        };
        let server = &self.server;
        if server.listen.is_empty() {
            problem("server.listen", "must name at least one address".to_owned());
        }
        for (i, addr) in server.listen.iter().enumerate() {
            if server.listen[..i].contains(addr) {
                problem("server.listen", format!("duplicate address {addr}"));
            }
        }
        if server.workers > MAX_WORKERS {
            problem(
                "server.workers",
                format!(
                    "must be at most {MAX_WORKERS} (0 = one per core), got {}",
                    server.workers
                ),
            );
        }
        for (i, core) in server.cores.iter().enumerate() {
            if server.cores[..i].contains(core) {
                problem("server.cores", format!("duplicate core {core}"));
            }
        }
        if !(1..=MAX_BATCH_SIZE).contains(&server.batch_size) {
            problem(
                "server.batch-size",
                format!("must be in 1..={MAX_BATCH_SIZE}, got {}", server.batch_size),
            );
        }
        for (i, name) in server.interface.iter().enumerate() {
            if let Err(message) = check_interface_name(name) {
                problem("server.interface", message);
            } else if server.interface[..i].contains(name) {
                problem("server.interface", format!("duplicate interface {name:?}"));
            }
        }
        if server.backend == BackendKind::Xdp && server.interface.is_empty() {
            problem(
                "server.interface",
                "backend \"xdp\" needs at least one interface (server.interface or --interface)"
                    .to_owned(),
            );
        }
        for (i, q) in server.queues.iter().enumerate() {
            if server.queues[..i].contains(q) {
                problem("server.queues", format!("duplicate queue {q}"));
            } else if *q >= MAX_QUEUE {
                problem(
                    "server.queues",
                    format!("queue {q} is out of range (0..{MAX_QUEUE})"),
                );
            }
        }
        if !(1..=15).contains(&self.clock.local_stratum) {
            problem(
                "clock.local-stratum",
                format!("must be in 1..=15, got {}", self.clock.local_stratum),
            );
        }
        let clock = &self.clock;
        if !(clock.step_threshold.is_finite() && clock.step_threshold > 0.0) {
            problem(
                "clock.step-threshold",
                format!(
                    "must be a positive number of seconds, got {}",
                    clock.step_threshold
                ),
            );
        }
        if !(clock.holdover.is_finite() && clock.holdover >= 0.0) {
            problem(
                "clock.holdover",
                format!("must be 0 or more seconds, got {}", clock.holdover),
            );
        }
        if !(1..=MAX_SOURCES).contains(&clock.min_sources) {
            problem(
                "clock.min-sources",
                format!("must be in 1..={MAX_SOURCES}, got {}", clock.min_sources),
            );
        } else if !self.sources.is_empty() {
            let most: usize = self.sources.iter().map(|s| s.max_sources().max(1)).sum();
            if clock.min_sources > most {
                problem(
                    "clock.min-sources",
                    format!(
                        "is {} but the [[source]] tables give at most {most} source(s)",
                        clock.min_sources
                    ),
                );
            }
        }
        if !(clock.leap_smear_window.is_finite()
            && clock.leap_smear_window >= MIN_SMEAR_SECONDS
            && clock.leap_smear_window <= MAX_SMEAR_WINDOW)
        {
            problem(
                "clock.leap-smear-window",
                format!(
                    "must be {MIN_SMEAR_SECONDS} to {MAX_SMEAR_WINDOW} seconds (a smear runs at \
                     most 400 ppm), got {}",
                    clock.leap_smear_window
                ),
            );
        }
        for (i, s) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("source[{i}].{k}");
            if let Err(message) = s.host_port() {
                problem(&key("address"), message);
            } else if self.sources[..i]
                .iter()
                .any(|o| o.address.trim() == s.address.trim())
            {
                problem(&key("address"), format!("duplicate source {:?}", s.address));
            }
            for (name, v) in [("minpoll", s.minpoll), ("maxpoll", s.maxpoll)] {
                if !POLL_RANGE.contains(&v) {
                    problem(
                        &key(name),
                        format!(
                            "must be in {}..={} (log2 seconds), got {v}",
                            POLL_RANGE.start(),
                            POLL_RANGE.end()
                        ),
                    );
                }
            }
            if s.minpoll > s.maxpoll {
                problem(
                    &key("maxpoll"),
                    format!(
                        "must be at least minpoll ({}), got {}",
                        s.minpoll, s.maxpoll
                    ),
                );
            }
            match (s.kind, s.max_sources) {
                (SourceKind::Server, Some(_)) => problem(
                    &key("max-sources"),
                    "applies only to kind = \"pool\"".to_owned(),
                ),
                (SourceKind::Pool, Some(n)) if !(1..=MAX_SOURCES).contains(&n) => problem(
                    &key("max-sources"),
                    format!("must be in 1..={MAX_SOURCES}, got {n}"),
                ),
                _ => {}
            }
        }
        if let Err(message) = check_log_level(&self.log.level) {
            problem("log.level", message);
        }
        problems
    }
}

/// Upper bound (exclusive) of a `server.queues` entry: far above any NIC's queue count.
pub const MAX_QUEUE: u32 = 4096;

/// A Linux interface name: 1 to 15 bytes (IFNAMSIZ - 1), no `/`, no whitespace, not `.`/`..`.
fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "interface name {name:?} must be 1 to 15 bytes long"
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    Ok(())
}

/// `level` must be an `EnvFilter` directive list. A bare word that is not a level (`verbose`,
/// `warning`) parses as "every level of target `verbose`", which silences everything else; it is
/// almost always a typo, so it is rejected unless it names one of meridian's own crates.
fn check_log_level(level: &str) -> Result<(), String> {
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

/// Byte offsets of the values of table keys (`server.workers` → offset) and of keys in arrays
/// of tables (`source[1].minpoll` → offset), for pointing validation errors at a line. Only
/// called on text that already parsed.
fn value_spans(text: &str) -> BTreeMap<String, usize> {
    toml::from_str::<SpanIndex>(text)
        .map(|s| s.0)
        .unwrap_or_default()
}

/// The top level of a file: each table (or array of tables) and the offsets of its values.
struct SpanIndex(BTreeMap<String, usize>);

/// One top-level value: a table's keys (`.key`) or an array of tables' keys (`[i].key`).
struct SpanSection(Vec<(String, usize)>);

impl<'de> Deserialize<'de> for SpanIndex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SpanIndex;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SpanIndex, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(table) = map.next_key::<String>()? {
                    let section: SpanSection = map.next_value()?;
                    for (key, offset) in section.0 {
                        out.insert(format!("{table}{key}"), offset);
                    }
                }
                Ok(SpanIndex(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for SpanSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type Keys = BTreeMap<String, toml::Spanned<toml::Value>>;
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SpanSection;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table or an array of tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SpanSection, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: toml::Spanned<toml::Value> = map.next_value()?;
                    out.push((format!(".{key}"), value.span().start));
                }
                Ok(SpanSection(out))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SpanSection, A::Error> {
                let mut out = Vec::new();
                let mut i = 0;
                while let Some(keys) = seq.next_element::<Keys>()? {
                    for (key, value) in keys {
                        out.push((format!("[{i}].{key}"), value.span().start));
                    }
                    i += 1;
                }
                Ok(SpanSection(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "meridian.toml")
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

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
                log: LogConfig {
                    level: "meridian=trace,warn".into()
                },
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
    fn every_backend_name_parses() {
        for (name, kind) in [
            ("auto", BackendKind::Auto),
            ("udp", BackendKind::Udp),
            ("io-uring", BackendKind::IoUring),
            ("xdp", BackendKind::Xdp),
        ] {
            // (xdp also needs an interface)
            let c = parse(&format!(
                "[server]\nbackend = \"{name}\"\ninterface = \"eth0\"\n"
            ))
            .unwrap();
            assert_eq!(c.server.backend, kind);
            // The CLI spells them the same way.
            assert_eq!(
                <BackendKind as clap::ValueEnum>::from_str(name, false).unwrap(),
                kind
            );
        }
    }

    #[test]
    fn unknown_backend_names_key_and_line() {
        let e = err("[server]\nbackend = \"dpdk\"\n");
        assert!(
            e.starts_with("meridian.toml:2:11: server.backend: unknown variant `dpdk`"),
            "{e}"
        );
        assert!(e.contains("`io-uring`"), "{e}");
    }

    #[test]
    fn example_file_parses_and_matches_the_docs() {
        let text = include_str!("../docs/meridian.example.toml");
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
                log: LogConfig::default(),
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
            "address =",
            "kind =",
            "iburst =",
            "minpoll =",
            "maxpoll =",
            "prefer =",
            "max-sources =",
            "level =",
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
        let doc = include_str!("../docs/configuration.md");
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
                "meridian.toml:3:11: server.workers: invalid type: string \"two\", expected usize"
                    .to_owned(),
            ),
            (
                "[server]\nlistn = [\"0.0.0.0:123\"]\n",
                "meridian.toml:2:1: unknown field `listn` in [server], expected one of \
                 `listen`, `workers`, `cores`, `backend`, `batch-size`, `interface`, `xdp-mode`, \
                 `queues`"
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
            e.starts_with("meridian.toml:3:2: unknown field `sever` in the top level, expected one of `server`, `clock`, `log`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_key_path_and_line() {
        let e = err("# comment\n\n[server]\nworkers = \"two\"\n");
        assert_eq!(
            e,
            "meridian.toml:4:11: server.workers: invalid type: string \"two\", expected usize"
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
    fn line_col_counts_characters() {
        let text = "ab\nçd\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 2), (1, 3));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 5), (2, 2));
        assert_eq!(line_col(text, 4), (2, 1)); // inside 'ç': rounds down
        assert_eq!(line_col(text, 100), (3, 1));
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text).unwrap_err() {
            ConfigError::Validation { problems, .. } => problems,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn listen_must_not_be_empty() {
        let p = problems("[server]\nlisten = []\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "server.listen");
        assert_eq!(p[0].location, Some((2, 10)));
        assert_eq!(
            err("[server]\nlisten = []\n"),
            "meridian.toml:2:10: server.listen: must name at least one address"
        );
    }

    #[test]
    fn listen_rejects_duplicates() {
        let e = err("[server]\nlisten = [\"127.0.0.1:123\", \"[::]:123\", \"127.0.0.1:123\"]\n");
        assert_eq!(
            e,
            "meridian.toml:2:10: server.listen: duplicate address 127.0.0.1:123"
        );
        // Same address, different port: fine.
        parse("[server]\nlisten = [\"127.0.0.1:123\", \"127.0.0.1:1123\"]\n").unwrap();
    }

    #[test]
    fn batch_size_range() {
        for ok in [1, 32, 1024] {
            parse(&format!("[server]\nbatch-size = {ok}\n")).unwrap();
        }
        for bad in [0, 1025, 100_000] {
            let e = err(&format!("[server]\nbatch-size = {bad}\n"));
            assert_eq!(
                e,
                format!("meridian.toml:2:14: server.batch-size: must be in 1..=1024, got {bad}")
            );
        }
    }

    #[test]
    fn workers_limit() {
        parse("[server]\nworkers = 4096\n").unwrap();
        parse("[server]\nworkers = 0\n").unwrap();
        let e = err("[server]\nworkers = 4097\n");
        assert_eq!(
            e,
            "meridian.toml:2:11: server.workers: must be at most 4096 (0 = one per core), got 4097"
        );
    }

    #[test]
    fn cores_must_be_unique() {
        parse("[server]\ncores = [0, 1, 2]\n").unwrap();
        let e = err("[server]\ncores = [0, 1, 0]\n");
        assert_eq!(e, "meridian.toml:2:9: server.cores: duplicate core 0");
    }

    #[test]
    fn local_stratum_range() {
        for ok in [1, 10, 15] {
            parse(&format!("[clock]\nlocal-stratum = {ok}\n")).unwrap();
        }
        for bad in [0, 16, 255] {
            let e = err(&format!("[clock]\nlocal-stratum = {bad}\n"));
            assert_eq!(
                e,
                format!("meridian.toml:2:17: clock.local-stratum: must be in 1..=15, got {bad}")
            );
        }
    }

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
    fn interface_is_a_string_or_a_list() {
        let c = parse("[server]\ninterface = \"eth0\"\n").unwrap();
        assert_eq!(c.server.interface, vec!["eth0".to_owned()]);
        let c = parse("[server]\ninterface = [\"eth0\", \"veth-x.10\"]\n").unwrap();
        assert_eq!(
            c.server.interface,
            vec!["eth0".to_owned(), "veth-x.10".to_owned()]
        );
        assert!(ServerConfig::default().interface.is_empty());
        let e = err("[server]\ninterface = 3\n");
        assert!(
            e.starts_with(
                "meridian.toml:2:13: server.interface: expected an interface name or a list"
            ),
            "{e}"
        );
    }

    #[test]
    fn interface_names_are_checked() {
        for bad in ["", "a-very-long-interface-name", "eth 0", "a/b", ".."] {
            let text = format!("[server]\ninterface = [{bad:?}]\n");
            let p = problems(&text);
            assert_eq!(p.len(), 1, "{bad:?}: {p:?}");
            assert_eq!(p[0].key, "server.interface");
        }
        assert_eq!(
            err("[server]\ninterface = [\"eth0\", \"eth0\"]\n"),
            "meridian.toml:2:13: server.interface: duplicate interface \"eth0\""
        );
    }

    #[test]
    fn xdp_mode_names_parse() {
        for (name, mode) in [
            ("auto", XdpMode::Auto),
            ("native", XdpMode::Native),
            ("generic", XdpMode::Generic),
        ] {
            let c = parse(&format!("[server]\nxdp-mode = \"{name}\"\n")).unwrap();
            assert_eq!(c.server.xdp_mode, mode);
            assert_eq!(
                <XdpMode as clap::ValueEnum>::from_str(name, false).unwrap(),
                mode
            );
        }
        assert_eq!(ServerConfig::default().xdp_mode, XdpMode::Auto);
        let e = err("[server]\nxdp-mode = \"offload\"\n");
        assert!(
            e.starts_with("meridian.toml:2:12: server.xdp-mode: unknown variant `offload`"),
            "{e}"
        );
    }

    #[test]
    fn queues_are_unique_and_in_range() {
        let c = parse("[server]\nqueues = [0, 3]\n").unwrap();
        assert_eq!(c.server.queues, vec![0, 3]);
        assert_eq!(
            err("[server]\nqueues = [1, 1]\n"),
            "meridian.toml:2:10: server.queues: duplicate queue 1"
        );
        assert_eq!(
            err("[server]\nqueues = [5000]\n"),
            "meridian.toml:2:10: server.queues: queue 5000 is out of range (0..4096)"
        );
    }

    #[test]
    fn xdp_backend_needs_an_interface() {
        assert_eq!(
            err("[server]\nbackend = \"xdp\"\n"),
            "meridian.toml: server.interface: backend \"xdp\" needs at least one interface \
             (server.interface or --interface)"
        );
        parse("[server]\nbackend = \"xdp\"\ninterface = \"eth0\"\n").unwrap();
        // The flags can supply it.
        let mut c = parse("[server]\nbackend = \"xdp\"\ninterface = \"eth0\"\n").unwrap();
        c.apply_xdp_overrides(&["veth1".into(), "veth2".into()], Some(XdpMode::Generic));
        assert_eq!(
            c.server.interface,
            vec!["veth1".to_owned(), "veth2".to_owned()]
        );
        assert_eq!(c.server.xdp_mode, XdpMode::Generic);
        c.apply_xdp_overrides(&[], None);
        assert_eq!(c.server.interface.len(), 2);
        c.validate().unwrap();
        let mut c = Config::default();
        c.apply_overrides(&[], None, Some(BackendKind::Xdp));
        assert!(c.validate().is_err());
    }

    #[test]
    fn sources_and_clock_defaults() {
        let c = parse("[[source]]\naddress = \"192.0.2.1\"\n").unwrap();
        assert_eq!(c.sources, vec![SourceConfig::new("192.0.2.1")]);
        let s = &c.sources[0];
        assert_eq!(
            (s.minpoll, s.maxpoll, s.iburst, s.prefer),
            (6, 10, false, false)
        );
        assert_eq!(s.kind, SourceKind::Server);
        assert_eq!(s.max_sources(), 1);
        let d = ClockConfig::default();
        assert_eq!(d.mode, ClockMode::Virtual);
        assert_eq!(
            (d.step_threshold, d.step_limit, d.holdover),
            (1.0, 3, 600.0)
        );
        assert_eq!(
            (d.min_sources, d.local_fallback, d.leap_smear),
            (1, false, false)
        );
        assert_eq!(d.leap_smear_window, 86400.0);
        assert_eq!(d.drift_file, None);
        assert!(Config::default().sources.is_empty());
        let c = parse("[[source]]\naddress = \"pool.example.net\"\nkind = \"pool\"\n").unwrap();
        assert_eq!(c.sources[0].max_sources(), 4);
        let c = parse("[clock]\nmode = \"system\"\nstep-threshold = 2\n").unwrap();
        assert_eq!(c.clock.mode, ClockMode::System);
        assert_eq!(c.clock.step_threshold, 2.0);
    }

    #[test]
    fn source_address_forms() {
        for (a, host, port) in [
            ("192.0.2.1", "192.0.2.1", 123),
            ("192.0.2.1:1123", "192.0.2.1", 1123),
            ("2001:db8::1", "2001:db8::1", 123),
            ("[2001:db8::1]", "2001:db8::1", 123),
            ("[2001:db8::1]:9", "2001:db8::1", 9),
            ("ntp.example.net", "ntp.example.net", 123),
            ("ntp.example.net:4123", "ntp.example.net", 4123),
            ("localhost", "localhost", 123),
        ] {
            assert_eq!(split_host_port(a), Ok((host.to_owned(), port)), "{a}");
        }
        for bad in [
            "",
            "host:",
            "host:0",
            "host:99999",
            "a b",
            "ho/st",
            "[::1]:x",
            "a:b:c",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn source_errors_name_the_table_and_line() {
        let text = "[[source]]\naddress = \"192.0.2.1\"\n\n[[source]]\naddress = \"a b\"\n\
                    minpoll = 9\nmaxpoll = 18\n";
        assert_eq!(
            err(text),
            "meridian.toml:5:11: source[1].address: invalid address \"a b\", expected HOST, \
             HOST:PORT, IP, IP:PORT or [IPv6]:PORT\n\
             meridian.toml:7:11: source[1].maxpoll: must be in -6..=17 (log2 seconds), got 18"
        );
        assert_eq!(
            err("[[source]]\naddress = \"h\"\nminpoll = 8\nmaxpoll = 7\n"),
            "meridian.toml:4:11: source[0].maxpoll: must be at least minpoll (8), got 7"
        );
        assert_eq!(
            err("[[source]]\naddress = \"h\"\nmax-sources = 2\n"),
            "meridian.toml:3:15: source[0].max-sources: applies only to kind = \"pool\""
        );
        assert_eq!(
            err("[[source]]\naddress = \"p\"\nkind = \"pool\"\nmax-sources = 0\n"),
            "meridian.toml:4:15: source[0].max-sources: must be in 1..=16, got 0"
        );
        assert_eq!(
            err("[[source]]\naddress = \"h\"\n[[source]]\naddress = \"h\"\n"),
            "meridian.toml:4:11: source[1].address: duplicate source \"h\""
        );
        let e = err("[[source]]\naddress = \"h\"\nburst = true\n");
        assert!(
            e.starts_with(
                "meridian.toml:3:1: unknown field `burst` in [source[0]], expected one of"
            ),
            "{e}"
        );
        let e = err("[[source]]\nkind = \"pool\"\n");
        assert!(e.contains("missing field `address`"), "{e}");
        let e = err("[[source]]\naddress = \"h\"\nkind = \"peer\"\n");
        assert!(
            e.starts_with("meridian.toml:3:8: source[0].kind: unknown variant `peer`"),
            "{e}"
        );
    }

    #[test]
    fn clock_ranges() {
        assert_eq!(
            err("[clock]\nstep-threshold = 0\nholdover = -1\nmin-sources = 0\n\
                 leap-smear-window = 0\n"),
            "meridian.toml:2:18: clock.step-threshold: must be a positive number of seconds, got 0\n\
             meridian.toml:3:12: clock.holdover: must be 0 or more seconds, got -1\n\
             meridian.toml:4:15: clock.min-sources: must be in 1..=16, got 0\n\
             meridian.toml:5:21: clock.leap-smear-window: must be 2500 to 172800 seconds (a \
             smear runs at most 400 ppm), got 0"
        );
        assert_eq!(
            err(
                "[clock]\nmin-sources = 3\n[[source]]\naddress = \"a\"\n[[source]]\n\
                 address = \"b\"\n"
            ),
            "meridian.toml:2:15: clock.min-sources: is 3 but the [[source]] tables give at \
             most 2 source(s)"
        );
        parse("[clock]\nmin-sources = 3\n[[source]]\naddress = \"p\"\nkind = \"pool\"\n").unwrap();
        let e = err("[clock]\nmode = \"kernel\"\n");
        assert!(
            e.starts_with("meridian.toml:2:8: clock.mode: unknown variant `kernel`"),
            "{e}"
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
