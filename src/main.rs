//! The `meridian` command: `serve` runs the NTP server, `query` is an SNTP client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use meridian::config::{BackendKind, Config, XdpMode};
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
    #[arg(long, value_name = "ADDR:PORT")]
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

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("invalid log filter {level:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(args.config.as_deref())?;
    cfg.apply_overrides(&args.listen, args.workers, args.backend);
    cfg.apply_xdp_overrides(&args.interface, args.xdp_mode);
    cfg.validate()?;
    let level = args
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| cfg.log.level.clone());
    init_logging(&level)?;
    let stop = Arc::new(AtomicBool::new(false));
    let dump = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, dump.clone())
        .context("installing signal handlers")?;

    let mut server = Server::start(&cfg, stop.clone())?;
    while !server.stopping() {
        std::thread::sleep(Duration::from_millis(50));
        server.tick();
        if dump.swap(false, Ordering::Relaxed) {
            print_report(&server.report());
        }
    }
    tracing::info!("stopping");
    let report = server.shutdown();
    print_report(&report);
    tracing::info!(
        received = report.total.received,
        answered = report.total.answered,
        dropped = report.total.dropped_total,
        "stopped"
    );
    Ok(ExitCode::SUCCESS)
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
