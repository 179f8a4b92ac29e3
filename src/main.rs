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

use meridian::config::{BackendKind, Changes, Checked, Config, HostFacts, Overrides, XdpMode};
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meridian: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
        tracing_subscriber::fmt::format::Format,
        fn() -> std::io::Stderr,
    >,
>;

fn init_logging(level: &str) -> anyhow::Result<LogHandle> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("invalid log filter {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr as fn() -> std::io::Stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
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
    // --log-level, else RUST_LOG, else the file; only the file's can change on reload.
    let fixed_level = args
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok());
    let level = fixed_level.clone().unwrap_or_else(|| cfg.log.level.clone());
    let log = init_logging(&level)?;
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

    let mut server = Server::start(&cfg, stop.clone())?;
    while !server.stopping() {
        std::thread::sleep(Duration::from_millis(50));
        server.tick();
        if dump.swap(false, Ordering::Relaxed) {
            print_report(&server.report());
        }
        if hup.swap(false, Ordering::Relaxed) {
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
