//! The `meridian` command: `serve` runs the NTP server, `validate` checks a configuration
//! without starting anything, `query` is an SNTP client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::util::SubscriberInitExt;

use meridian::config::{BackendKind, Changes, Checked, Config, HostFacts, Overrides, XdpMode};
use meridian::control::{
    self as ctl, format, ControlListener, ControlThread, HttpListener, MainRequest,
};
use meridian::datapath::counters::Counter;
use meridian::query::{self, QueryOptions};
use meridian::server::Server;

#[derive(Parser)]
#[command(name = "meridian", version, about = "A carrier-scale NTP time server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the NTP server.
    Serve(ServeArgs),
    /// Check a configuration file without starting anything: every problem, with its line.
    Validate(ValidateArgs),
    /// Query NTP servers as an SNTP client (like `ntpdate -q`).
    Query(QueryArgs),
    /// The upstream sources of a running server (like `chronyc sources`).
    Sources(VerboseArgs),
    /// Statistics of each source's samples (like `chronyc sourcestats`).
    Sourcestats(ControlArgs),
    /// The system's synchronisation (like `chronyc tracking`).
    Tracking(ControlArgs),
    /// The busiest clients of a running server (like `chronyc clients`).
    Clients(ClientsArgs),
    /// Request counters of a running server (like `chronyc serverstats`).
    Serverstats(VerboseArgs),
    /// Start or stop answering NTP requests, without stopping the process.
    Serving(ServingArgs),
    /// Poll every upstream source now, with a burst of quick polls.
    SyncNow(ControlArgs),
    /// Reload the configuration file of a running server (as SIGHUP).
    Reload(ControlArgs),
    /// The recent log lines of a running server, oldest first.
    Log(LogArgs),
}

/// What every control command takes.
#[derive(Args)]
struct ControlArgs {
    /// The server's control socket.
    #[arg(long, value_name = "PATH", default_value = meridian::config::DEFAULT_CONTROL_SOCKET)]
    control: PathBuf,
    /// Print the server's JSON answer instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct VerboseArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// More detail (a legend; per-worker counters).
    #[arg(short = 'v')]
    verbose: bool,
}

#[derive(Args)]
struct ClientsArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// Clients to show.
    #[arg(short = 'n', default_value_t = 20)]
    count: usize,
    /// Order: most requests, most drops (and KoDs), or most recently seen first.
    #[arg(long, value_enum, default_value = "hits")]
    sort: SortArg,
}

#[derive(Args)]
struct LogArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// Lines to show (the server keeps the last 500).
    #[arg(short = 'n', default_value_t = ctl::protocol::DEFAULT_LOG_LINES)]
    count: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SortArg {
    Hits,
    Drops,
    Last,
}

#[derive(Args)]
struct ServingArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// `on` to answer requests, `off` to drop them (counted as not_serving).
    #[arg(value_enum)]
    state: OnOff,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file (every key has a default; see docs/configuration.md).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Address to answer on, e.g. 0.0.0.0:123 or [::1]:1123. Repeat for several; replaces
    /// server.listen from the config.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    listen: Vec<SocketAddr>,
    /// Worker threads (0 = one per available core); overrides server.workers.
    #[arg(long)]
    workers: Option<usize>,
    /// Packet backend; overrides server.backend.
    #[arg(long, value_enum)]
    backend: Option<BackendKind>,
    /// Interface for the xdp backend (AF_XDP, one worker per RX queue). Repeat for several;
    /// replaces server.interface.
    #[arg(long, value_name = "IFACE")]
    interface: Vec<String>,
    /// How the XDP program is attached; overrides server.xdp-mode.
    #[arg(long, value_enum)]
    xdp_mode: Option<XdpMode>,
    /// Log filter, e.g. `debug` or `meridian=debug`; overrides log.level and RUST_LOG.
    #[arg(long)]
    log_level: Option<String>,
    /// Control socket for the CLI commands; overrides control.socket ("" for none).
    #[arg(long, value_name = "PATH", value_parser = any_path)]
    control: Option<PathBuf>,
    /// HTTP listener for /api and /metrics, e.g. 127.0.0.1:8123; overrides control.http
    /// ("" for none).
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<String>,
}

#[derive(Args)]
struct ValidateArgs {
    /// The TOML configuration file to check (without it: the built-in defaults).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct QueryArgs {
    /// Server to query: HOST, HOST:PORT, IPv4[:PORT], IPv6 or [IPv6]:PORT (default port 123).
    server: String,
    /// Requests to send to each server (the one with the smallest delay is marked best).
    #[arg(long, short = 'n', default_value_t = 4)]
    samples: usize,
    /// Also query these servers and print all side by side.
    #[arg(long, value_name = "HOST[:PORT]", num_args = 1..)]
    compare: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 1.0)]
    timeout: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 0.2)]
    interval: f64,
    /// NTP version to send (1-4).
    #[arg(long = "ntp-version", default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=4))]
    ntp_version: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(a),
        Command::Validate(a) => validate(a),
        Command::Query(a) => run_query(a),
        Command::Sources(a) => control_command(&a.control, ctl::Command::Sources, a.verbose),
        Command::Sourcestats(a) => control_command(&a, ctl::Command::Sourcestats, false),
        Command::Tracking(a) => control_command(&a, ctl::Command::Tracking, false),
        Command::Clients(a) => {
            let sort = match a.sort {
                SortArg::Hits => meridian::server::ClientSort::Hits,
                SortArg::Drops => meridian::server::ClientSort::Drops,
                SortArg::Last => meridian::server::ClientSort::Last,
            };
            let c = ctl::Command::Clients {
                sort,
                limit: a.count,
            };
            control_command(&a.control, c, false)
        }
        Command::Serverstats(a) => {
            control_command(&a.control, ctl::Command::Serverstats, a.verbose)
        }
        Command::Serving(a) => {
            let on = matches!(a.state, OnOff::On);
            control_command(&a.control, ctl::Command::Serving { on }, false)
        }
        Command::SyncNow(a) => control_command(&a, ctl::Command::SyncNow, false),
        Command::Reload(a) => control_command(&a, ctl::Command::Reload, false),
        Command::Log(a) => control_command(&a.control, ctl::Command::Log { n: a.count }, false),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meridian: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A path, the empty one included (clap's own parser refuses it).
fn any_path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

/// `--listen`: an IP address with a port, worded for the operator when it is not one.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        Ok(ip) => Err(format!(
            "{s} has no port: write {}, or another port (123 needs root or \
             CAP_NET_BIND_SERVICE)",
            SocketAddr::new(ip, 123)
        )),
        Err(_) => Err(
            "expected IP:PORT, like 127.0.0.1:1123 or [::1]:1123 (names are not resolved)"
                .to_owned(),
        ),
    }
}

/// The log filter, replaceable while running (SIGHUP with a new `log.level`).
type LogHandle = tracing_subscriber::reload::Handle<
    tracing_subscriber::EnvFilter,
    tracing_subscriber::fmt::Formatter<
        tracing_subscriber::fmt::format::DefaultFields,
        tracing_subscriber::fmt::format::Format<
            tracing_subscriber::fmt::format::Full,
            meridian::log::LogTimer,
        >,
        meridian::log::LogWriter,
    >,
>;

fn init_logging(level: &str, writer: &meridian::log::LogWriter) -> anyhow::Result<LogHandle> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("invalid log filter {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(meridian::log::LogTimer(writer.timestamps()))
        .with_writer(writer.clone())
        .with_ansi(writer.ansi())
        .with_filter_reloading();
    let handle = builder.reload_handle();
    // The ring sits under the filter: it gets the lines the configured level lets through.
    tracing_subscriber::layer::SubscriberExt::with(
        builder.finish(),
        meridian::log::RingLayer::new(&meridian::log::RECENT),
    )
    .try_init()
    .context("setting up logging")?;
    Ok(handle)
}

fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .config
        .as_ref()
        .map_or("the built-in defaults".to_owned(), |p| {
            p.display().to_string()
        });
    let report = Config::check_file(
        args.config.as_deref(),
        &Overrides::default(),
        &HostFacts::here(),
    )?;
    for e in &report.errors {
        eprintln!("{e}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let warned = match report.warnings.len() {
        0 => String::new(),
        n => format!(", {n} warning{}", if n == 1 { "" } else { "s" }),
    };
    if report.errors.is_empty() {
        println!("{name}: valid{warned}");
        Ok(ExitCode::SUCCESS)
    } else {
        let n = report.errors.len();
        eprintln!(
            "{name}: {n} problem{}{warned}",
            if n == 1 { "" } else { "s" }
        );
        Ok(ExitCode::FAILURE)
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        listen: args.listen.clone(),
        workers: args.workers,
        backend: args.backend,
        interface: args.interface.clone(),
        xdp_mode: args.xdp_mode,
    };
    let Checked {
        config: mut cfg,
        warnings,
    } = Config::load_checked(args.config.as_deref(), &overrides, &HostFacts::here())?;
    if let Some(path) = &args.control {
        meridian::config::check_socket_path(path).map_err(|m| anyhow::anyhow!("--control {m}"))?;
        cfg.control.socket = Some(path.clone());
    }
    if let Some(addr) = &args.http {
        meridian::config::check_http(addr).map_err(|m| anyhow::anyhow!("--http: {m}"))?;
        cfg.control.http = Some(addr.clone());
    }
    // --log-level, else RUST_LOG, else the file; only the file's can change on reload.
    let fixed_level = args
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok());
    let level = fixed_level.clone().unwrap_or_else(|| cfg.log.level.clone());
    let writer = meridian::log::LogWriter::open(&cfg.log)?;
    let log = init_logging(&level, &writer)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dump = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    // SIGUSR1 and SIGHUP exist only on Unix; elsewhere (Windows) the report comes at exit
    // only and the configuration is read once.
    #[cfg(unix)]
    {
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, dump.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
            .context("installing signal handlers")?;
    }

    // Bound before the workers start, so an explicit path that cannot be used stops here.
    let listener = ControlListener::open(&cfg.control.socket())?;
    let http = HttpListener::open(cfg.control.http(), cfg.control.token_file.as_deref())?;
    let mut server = Server::start(&cfg, stop.clone())?;
    let control = if listener.is_some() || http.is_some() {
        Some(ControlThread::spawn(
            listener,
            http,
            server.workers().clone(),
        )?)
    } else {
        None
    };
    while !server.stopping() {
        std::thread::sleep(Duration::from_millis(50));
        server.tick();
        while let Some(req) = control.as_ref().and_then(|(_, r)| r.next()) {
            match req {
                MainRequest::Server(command, reply) => {
                    reply.send(MainRequest::answer(&command, &server))
                }
                MainRequest::Reload(reply) => {
                    if args.config.is_none() {
                        reply.send(Err(ctl::Failure::new(
                            "failed",
                            "started without --config: nothing to reload",
                        )));
                        continue;
                    }
                    let reload = Reload {
                        path: args.config.as_deref(),
                        overrides: &overrides,
                        fixed_level: fixed_level.as_deref(),
                        log: &log,
                    };
                    cfg = reload.run(cfg, &mut server);
                    reply.send(Ok(serde_json::json!({
                        "reloaded": true,
                        "note": "what changed, or why nothing could, is in the server's log"
                    })));
                }
            }
        }
        if dump.swap(false, Ordering::Relaxed) {
            print_report(&server.report());
        }
        if hup.swap(false, Ordering::Relaxed) {
            // A renamed log file (logrotate) is left for a new one.
            if let Err(e) = writer.reopen() {
                tracing::error!("SIGHUP: log.file not reopened, still writing the old one: {e}");
            }
            let reload = Reload {
                path: args.config.as_deref(),
                overrides: &overrides,
                fixed_level: fixed_level.as_deref(),
                log: &log,
            };
            cfg = reload.run(cfg, &mut server);
        }
    }
    tracing::info!("stopping");
    if let Some((thread, _)) = control {
        thread.stop();
    }
    let report = server.shutdown();
    print_report(&report);
    tracing::info!(
        received = report.total.get(Counter::Received),
        answered = report.total.get(Counter::Answered),
        dropped = report.total.dropped_total,
        "stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// What a SIGHUP needs: the file to read again and what the command line fixed.
struct Reload<'a> {
    path: Option<&'a std::path::Path>,
    overrides: &'a Overrides,
    /// `--log-level` or RUST_LOG, which the file's `log.level` does not replace.
    fixed_level: Option<&'a str>,
    log: &'a LogHandle,
}

impl Reload<'_> {
    /// Reads the file again and applies what may change live; returns the configuration now
    /// running (`running` itself when the file cannot be used).
    fn run(&self, running: Config, server: &mut Server) -> Config {
        let Some(path) = self.path else {
            tracing::info!("SIGHUP: started without --config: nothing to reload");
            return running;
        };
        tracing::info!("SIGHUP: reloading {}", path.display());
        let reloaded = match Config::load_checked(Some(path), self.overrides, &HostFacts::here()) {
            Ok(checked) => {
                for w in &checked.warnings {
                    tracing::warn!("{w}");
                }
                checked.config
            }
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!("reload: {line}");
                }
                tracing::error!("reload: not applied; the running configuration stays");
                return running;
            }
        };
        let changes = Changes::between(&running, &reloaded);
        if !changes.need_restart.is_empty() {
            tracing::warn!(
                "reload: changed but kept until a restart: {}",
                changes.need_restart.join(", ")
            );
        }
        if changes.log_level {
            match self.fixed_level {
                Some(fixed) => tracing::warn!(
                    "reload: log.level not applied: the level is fixed to {fixed:?} by \
                     --log-level or RUST_LOG"
                ),
                None => match tracing_subscriber::EnvFilter::try_new(&reloaded.log.level)
                    .map_err(anyhow::Error::from)
                    .and_then(|f| Ok(self.log.reload(f)?))
                {
                    Ok(()) => tracing::info!("reload: log level {:?}", reloaded.log.level),
                    Err(e) => tracing::error!("reload: log level not changed: {e}"),
                },
            }
        }
        if changes.sources {
            if let Err(e) = server.set_sources(reloaded.sources.clone()) {
                tracing::error!("reload: sources not changed: {e:#}");
                return running;
            }
        }
        if changes.policy {
            server
                .workers()
                .set_access(&reloaded.access, &reloaded.rate_limit);
        }
        // The key file is read again whether or not the configuration changed.
        if reloaded.auth.keys.is_some() || running.auth != reloaded.auth {
            server.workers().set_auth(&reloaded.auth);
        }
        tracing::info!(
            "reload: done ({} source table(s){})",
            reloaded.sources.len(),
            if changes.sources {
                ", changed"
            } else {
                ", unchanged"
            }
        );
        Changes::applied(&running, &reloaded)
    }
}

/// The counters report: one JSON line on stdout (logs go to stderr).
fn print_report(report: &meridian::server::Report) {
    match serde_json::to_string(report) {
        Ok(s) => println!("{s}"),
        Err(e) => tracing::warn!("cannot encode counters: {e}"),
    }
}

fn run_query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let opts = QueryOptions {
        samples: args.samples.max(1),
        interval: Duration::from_secs_f64(args.interval.max(0.0)),
        timeout: Duration::from_secs_f64(args.timeout.max(0.001)),
        version: args.ntp_version,
    };
    let targets: Vec<String> = std::iter::once(args.server).chain(args.compare).collect();
    let compare = targets.len() > 1;
    // Servers are queried in parallel so a slow one does not delay the others' samples.
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| s.spawn(|| query::query_server(t, &opts)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("query thread panicked"))
            .collect()
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else if compare {
        print!("{}", query::render_compare(&results));
    } else {
        print!("{}", query::render_server(&results[0]));
    }
    let all_ok = results.iter().all(|r| r.best.is_some());
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A control command: asks the server at `--control` and prints its answer (JSON, or the
/// chronyc-like view); a server that is not there is one line on stderr.
fn control_command(
    args: &ControlArgs,
    command: ctl::Command,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let data = match ctl::call(&args.control, &command) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("meridian: {}", e.line(&args.control));
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&data)?);
        return Ok(ExitCode::SUCCESS);
    }
    let decode = |what: &str| {
        format!(
            "{}: the server's {what} answer is not understood",
            args.control.display()
        )
    };
    let text = match command {
        ctl::Command::Sources => format::sources(
            &serde_json::from_value::<Vec<format::SourceRow>>(data)
                .with_context(|| decode("sources"))?,
            verbose,
        ),
        ctl::Command::Sourcestats => format::sourcestats(
            &serde_json::from_value::<Vec<format::SourceRow>>(data)
                .with_context(|| decode("sourcestats"))?,
        ),
        ctl::Command::Tracking => {
            format::tracking(&serde_json::from_value(data).with_context(|| decode("tracking"))?)
        }
        ctl::Command::Clients { .. } => {
            format::clients(&serde_json::from_value(data).with_context(|| decode("clients"))?)
        }
        ctl::Command::Serverstats => format::serverstats(
            &serde_json::from_value(data).with_context(|| decode("serverstats"))?,
            verbose,
        ),
        ctl::Command::Serving { .. } => {
            let on = data["serving"].as_bool().unwrap_or(false);
            format!("serving {}\n", if on { "on" } else { "off" })
        }
        ctl::Command::SyncNow => "polling every source now\n".to_owned(),
        ctl::Command::Reload => "reloaded (see the server's log for what changed)\n".to_owned(),
        ctl::Command::Log { .. } => format::log(
            &serde_json::from_value::<format::LogData>(data).with_context(|| decode("log"))?,
        ),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
