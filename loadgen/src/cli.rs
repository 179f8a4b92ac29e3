//! Command line: what to load, how hard, for how long, and where the figures go.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

/// Open- and closed-loop NTP load generator: validates every reply, records round-trip and
/// server residence times in HDR histograms, and finds the highest sustainable rate (`--sweep`).
#[derive(Parser, Debug, Clone)]
#[command(
    name = "meridian-loadgen",
    version,
    after_help = "Exit status: 0 when every run passed; 1 when a run had invalid replies \
                  (kiss-o'-death included) or lost more than --max-loss (in a sweep, loss only \
                  ends the sweep); 2 on a usage or I/O error."
)]
pub struct Args {
    /// Server to load: `ADDR:PORT` or `NAME=ADDR:PORT` (repeat to measure several servers one
    /// after another under the same settings).
    #[arg(long = "target", required = true, value_name = "[NAME=]ADDR:PORT")]
    pub targets: Vec<String>,

    /// Offered rate in requests per second (open loop, fixed schedule). 0 runs closed loop: as
    /// fast as replies come back, with `--window` requests outstanding per client.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,

    /// Measured duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Sender/receiver threads, each pinned to a core and owning its share of the clients.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Simulated clients: one UDP socket each, with its own source port. Default: 64 (at
    /// least one per thread). Against IPv4 loopback targets (Linux) without `--source-cidr`
    /// each client also has its own source address, 127.0.0.1, 127.0.0.2, ...: servers that
    /// steer clients to workers by source address, as meridian does, then spread them over
    /// all their workers (`--source-cidr 127.0.0.1/32` sends from one address).
    #[arg(long)]
    pub clients: Option<usize>,

    /// Seconds of traffic before measuring (sent, but not counted).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,

    /// Fail (exit status 1) when the lost fraction exceeds this.
    #[arg(long, default_value_t = 0.01)]
    pub max_loss: f64,

    /// Write the round-trip time distribution to FILE in HdrHistogram's percentile text
    /// format (values in microseconds). Output paths are taken as given (relative to the
    /// current directory) and their directory must exist; with several targets each gets its
    /// own file, the target's name inserted before the extension (`rtt.NAME.hgrm`).
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,

    /// Write the server residence time distribution (its transmit − receive stamp) to FILE,
    /// in the same format as `--hgrm`.
    #[arg(long, value_name = "FILE")]
    pub hgrm_residence: Option<PathBuf>,

    /// Write every figure as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Draw latency by percentile as SVG to FILE.svg, both axes logarithmic (percentile as
    /// 1/(1−p): 50 %, 90 %, 99 %, ...; latency in 1-2-5 steps of ns/µs/ms), p50 and p99 marked.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Raise the rate step by step (×1.5 from `--rate`, or `--sweep-rates`) until the loss
    /// exceeds `--sweep-max-loss`; report the highest rate sustained per target.
    #[arg(long)]
    pub sweep: bool,

    /// Explicit sweep steps, e.g. `10000,20000,40000`.
    #[arg(long, value_delimiter = ',', value_name = "RATE,...")]
    pub sweep_rates: Vec<f64>,

    /// A sweep step "sustains" its rate when its lost fraction stays below this.
    #[arg(long, default_value_t = 0.001)]
    pub sweep_max_loss: f64,

    /// Upper bound on the number of sweep steps.
    #[arg(long, default_value_t = 25)]
    pub sweep_steps: usize,

    /// Bind clients to consecutive addresses of this prefix, starting at the given address
    /// (or the first host when the host bits are zero), e.g. `10.201.0.100/24`. The addresses
    /// must exist on this host (see scripts/netns.sh); every 127.0.0.0/8 address does on
    /// Linux. Without it clients send from the address the kernel picks (one for all), except
    /// against loopback targets (see `--clients`).
    #[arg(long, value_name = "CIDR")]
    pub source_cidr: Option<String>,

    /// A request without a reply after this long is lost; a reply after it is late.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,

    /// A valid reply's server times must lie within [our send − this, our receive + this]
    /// (seconds).
    #[arg(long, default_value_t = 1.0)]
    pub max_offset: f64,

    /// Outstanding requests per client in closed loop (`--rate 0`).
    #[arg(long, default_value_t = 8)]
    pub window: usize,

    /// Largest sendmmsg/recvmmsg batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,

    /// Open loop: a send slot later than this (or one interval, whichever is larger) is
    /// skipped and counted as missed instead of being sent in a catch-up burst (microseconds).
    #[arg(long, default_value_t = 200)]
    pub max_lag_us: u64,

    /// NTP version of the requests.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub ntp_version: u8,

    /// Interleaved client/server mode (RFC 9769, chronyd's `xleave`): once a client has a
    /// valid reply, its next request refers to it (origin = that reply's receive timestamp,
    /// receive field = our receive time of it), asking for the reply's true transmit time.
    /// Each reply is referred to once; after a lost reply the client sends basic until it has
    /// another. Replies are counted by mode (basic, interleaved). A server keeping this state
    /// per client address (meridian) interleaves only one client per source address: against
    /// loopback each client has its own; elsewhere see `--source-cidr`. NTPv4 only.
    #[arg(long)]
    pub interleaved: bool,

    /// Socket layer.
    #[arg(long, value_enum, default_value_t = TransportKind::Auto)]
    pub transport: TransportKind,

    /// `--transport xdp`: the interface the requests leave by and the replies arrive on (an
    /// XDP program matching the target's UDP port as *source* port is attached to it).
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,

    /// `--transport xdp`: how the XDP program is attached (auto = native, else generic).
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,

    /// `--transport xdp`: the Ethernet destination (the target's or the gateway's MAC,
    /// `aa:bb:cc:dd:ee:ff`); by default read from the kernel's neighbour table after one
    /// ordinary UDP datagram to the target's discard port.
    #[arg(long, value_name = "MAC")]
    pub dst_mac: Option<String>,

    /// Do not pin threads to cores.
    #[arg(long)]
    pub no_pin: bool,

    /// No progress lines (one a second on stderr and a last one, `end`, with the rest).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Which transport carries the packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// sendmmsg/recvmmsg with kernel receive timestamps on Linux, `std` elsewhere.
    Auto,
    /// Linux sendmmsg/recvmmsg batches, epoll, SO_TIMESTAMPNS.
    Mmsg,
    /// Portable std::net sockets, one datagram per call (any OS).
    Std,
    /// AF_XDP (Linux): frames built here and sent through the TX ring of one socket on
    /// `--interface`, replies taken by an XDP program (one thread, one queue).
    Xdp,
}

/// How the generator's XDP program is attached (`--xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    /// Native (driver) mode, else generic.
    Auto,
    /// Driver mode only.
    Native,
    /// Generic (skb) mode.
    Generic,
}

/// What the AF_XDP transport needs beyond the common settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpSettings {
    pub interface: String,
    pub mode: XdpModeArg,
    pub dst_mac: Option<[u8; 6]>,
}

/// `aa:bb:cc:dd:ee:ff` (also with `-`).
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        bail!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)");
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            bail!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)");
        }
        *m = u8::from_str_radix(p, 16)
            .with_context(|| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    }
    Ok(mac)
}

/// One server to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
}

/// `NAME=ADDR:PORT` or `ADDR:PORT` (host names are resolved; the first address wins).
pub fn parse_target(s: &str) -> Result<Target> {
    let (name, spec) = match s.split_once('=') {
        Some((n, a)) if !n.is_empty() => (n.to_string(), a),
        Some(_) => bail!("empty target name in {s:?}"),
        None => (s.to_string(), s),
    };
    let addr = spec
        .to_socket_addrs()
        .with_context(|| format!("target {spec:?} is not ADDR:PORT"))?
        .next()
        .with_context(|| format!("target {spec:?} resolves to no address"))?;
    Ok(Target { name, addr })
}

/// The source addresses of `--source-cidr`: from the given address (or the first host when the
/// host part is zero) to the last usable host of the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRange {
    first: u128,
    count: u128,
    v6: bool,
}

impl SourceRange {
    pub fn parse(s: &str) -> Result<SourceRange> {
        let (addr, len) = s
            .split_once('/')
            .with_context(|| format!("{s:?} is not ADDR/PREFIX"))?;
        let addr: IpAddr = addr
            .parse()
            .with_context(|| format!("{addr:?} is not an IP address"))?;
        let len: u32 = len
            .parse()
            .with_context(|| format!("{len:?} is not a prefix length"))?;
        let (value, bits, v6) = match addr {
            IpAddr::V4(a) => (u32::from(a) as u128, 32, false),
            IpAddr::V6(a) => (u128::from(a), 128, true),
        };
        if len > bits {
            bail!("prefix length {len} is too long for {addr}");
        }
        let host_bits = bits - len;
        let host_mask: u128 = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let network = value & !host_mask;
        let mut last = network | host_mask;
        let mut first = value;
        // Skip the network address (and the IPv4 broadcast) unless the prefix is a /31-/32
        // (or /127-/128), where every address is a host.
        if host_bits >= 2 {
            if first == network {
                first += 1;
            }
            if !v6 {
                last -= 1;
            }
        }
        if first > last {
            bail!("{s} leaves no usable source address");
        }
        Ok(SourceRange {
            first,
            count: last - first + 1,
            v6,
        })
    }

    /// One loopback address per client, from 127.0.0.1 up (every 127.0.0.0/8 address is
    /// local on Linux, no configuration needed).
    pub fn loopback_v4(clients: usize) -> SourceRange {
        SourceRange {
            first: u32::from(Ipv4Addr::new(127, 0, 0, 1)) as u128,
            count: clients.clamp(1, (1 << 24) - 2) as u128,
            v6: false,
        }
    }

    /// The address of client `i` (cycling through the range).
    pub fn nth(&self, i: usize) -> IpAddr {
        let v = self.first + (i as u128 % self.count);
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(v))
        } else {
            IpAddr::V4(Ipv4Addr::from(v as u32))
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// The index of `ip` in the range (the `i` of [`SourceRange::nth`] below `count`).
    pub fn index_of(&self, ip: IpAddr) -> Option<usize> {
        let v = match (ip, self.v6) {
            (IpAddr::V4(a), false) => u128::from(u32::from(a)),
            (IpAddr::V6(a), true) => u128::from(a),
            _ => return None,
        };
        let i = v.checked_sub(self.first)?;
        (i < self.count).then_some(i as usize)
    }

    /// How many addresses the range holds (saturating).
    pub fn count(&self) -> usize {
        self.count.min(usize::MAX as u128) as usize
    }
}

/// The source addresses when `--source-cidr` is not given: one loopback address per client
/// when every target is an IPv4 loopback address and the clients are sockets on Linux (where
/// all of 127.0.0.0/8 is local); otherwise none (the kernel picks one address for all).
fn default_sources(
    targets: &[Target],
    transport: TransportKind,
    clients: usize,
) -> Option<SourceRange> {
    let loopback = targets
        .iter()
        .all(|t| matches!(t.addr.ip(), IpAddr::V4(a) if a.is_loopback()));
    (cfg!(target_os = "linux") && transport != TransportKind::Xdp && loopback)
        .then(|| SourceRange::loopback_v4(clients))
}

/// Settings shared by every run, checked and converted.
#[derive(Clone, Debug)]
pub struct Settings {
    pub targets: Vec<Target>,
    pub threads: usize,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub max_offset_ns: i64,
    pub window: usize,
    pub batch: usize,
    pub max_lag: Duration,
    pub version: u8,
    /// Interleaved requests (`--interleaved`).
    pub interleaved: bool,
    pub transport: TransportKind,
    pub pin: bool,
    pub sources: Option<SourceRange>,
    pub progress: bool,
    /// `--transport xdp` only.
    pub xdp: Option<XdpSettings>,
}

/// Clients when `--clients` is not given (at least one per thread). Enough source addresses
/// that meridian's steering (a hash of the source address modulo the workers) reaches every
/// worker of a server with up to 8 workers, and most larger counts, from 127.0.0.1 up.
pub const DEFAULT_CLIENTS: usize = 64;

/// Largest number of threads: the thread index travels in 4 bits of every transmit timestamp.
pub const MAX_THREADS: usize = 16;
/// Most clients of a socket transport: one socket each.
pub const SOCKET_MAX_CLIENTS: usize = 65_536;
/// Most clients of `--transport xdp`: a (source address, source port) pair each, written into
/// the frames; past 64,512 clients (the source ports from 1024 up) each needs its own address.
pub const XDP_MAX_CLIENTS: usize = 1 << 20;
/// The source ports `--transport xdp` gives its clients: 1024..=65535.
pub const XDP_PORT_SPAN: usize = 65_536 - 1024;

impl Args {
    pub fn settings(&self) -> Result<Settings> {
        let targets = self
            .targets
            .iter()
            .map(|t| parse_target(t))
            .collect::<Result<Vec<_>>>()?;
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            bail!("--rate must be a finite number ≥ 0");
        }
        if !(self.duration > 0.0 && self.duration <= 86_400.0) {
            bail!("--duration must be in (0, 86400] seconds");
        }
        if !(self.warmup >= 0.0 && self.warmup <= 3600.0) {
            bail!("--warmup must be in [0, 3600] seconds");
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            bail!("--threads must be 1..={MAX_THREADS}");
        }
        let clients = self.clients.unwrap_or(DEFAULT_CLIENTS.max(self.threads));
        if clients < self.threads {
            bail!(
                "--clients ({clients}) must be at least --threads ({})",
                self.threads
            );
        }
        if clients > SOCKET_MAX_CLIENTS && self.transport != TransportKind::Xdp {
            bail!(
                "--clients must be at most {SOCKET_MAX_CLIENTS} (one socket each; \
                 --transport xdp simulates up to {XDP_MAX_CLIENTS})"
            );
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            bail!("--timeout-ms must be 1..=60000");
        }
        if !(self.max_offset > 0.0 && self.max_offset < 1e6) {
            bail!("--max-offset must be a positive number of seconds");
        }
        if self.window == 0 || self.batch == 0 || self.batch > 1024 {
            bail!("--window must be ≥ 1 and --batch 1..=1024");
        }
        if self.interleaved && self.ntp_version != 4 {
            bail!("--interleaved needs --ntp-version 4 (RFC 9769 defines it for NTPv4)");
        }
        if self.sweep && self.rate == 0.0 && self.sweep_rates.is_empty() {
            bail!("--sweep needs a starting --rate > 0 or --sweep-rates");
        }
        if self
            .sweep_rates
            .iter()
            .any(|r| !(*r > 0.0 && r.is_finite()))
        {
            bail!("--sweep-rates must be positive numbers");
        }
        let sources = match self.source_cidr.as_deref() {
            Some(cidr) => Some(SourceRange::parse(cidr)?),
            None => default_sources(&targets, self.transport, clients),
        };
        if let Some(src) = &sources {
            for t in &targets {
                if t.addr.is_ipv6() != src.is_ipv6() {
                    bail!(
                        "--source-cidr {} and target {} are of different address families",
                        self.source_cidr.as_deref().unwrap_or_default(),
                        t.addr
                    );
                }
            }
        }
        let xdp = match (self.transport, &self.interface) {
            (TransportKind::Xdp, None) => {
                bail!("--transport xdp needs --interface IFACE (where the target is reached)")
            }
            (TransportKind::Xdp, Some(interface)) => {
                if self.threads != 1 {
                    bail!(
                        "--transport xdp runs one thread (one AF_XDP socket on queue 0); \
                         give --threads 1"
                    );
                }
                if clients > XDP_MAX_CLIENTS {
                    bail!("--transport xdp simulates at most {XDP_MAX_CLIENTS} clients");
                }
                if clients > XDP_PORT_SPAN && sources.as_ref().is_none_or(|s| s.count() < clients) {
                    bail!(
                        "--transport xdp: more than {} clients need one source address each: \
                         give --source-cidr with at least {clients} addresses",
                        XDP_PORT_SPAN
                    );
                }
                let ports: Vec<u16> = targets.iter().map(|t| t.addr.port()).collect();
                if ports.contains(&0) {
                    bail!("--transport xdp needs targets with a port");
                }
                Some(XdpSettings {
                    interface: interface.clone(),
                    mode: self.xdp_mode,
                    dst_mac: self.dst_mac.as_deref().map(parse_mac).transpose()?,
                })
            }
            (_, Some(_)) => bail!("--interface applies to --transport xdp only"),
            (_, None) if self.dst_mac.is_some() => {
                bail!("--dst-mac applies to --transport xdp only")
            }
            (_, None) => None,
        };
        Ok(Settings {
            targets,
            threads: self.threads,
            clients,
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup),
            timeout: Duration::from_millis(self.timeout_ms),
            max_offset_ns: (self.max_offset * 1e9) as i64,
            window: self.window,
            batch: self.batch,
            max_lag: Duration::from_micros(self.max_lag_us),
            version: self.ntp_version,
            interleaved: self.interleaved,
            transport: self.transport,
            pin: !self.no_pin,
            sources,
            progress: !self.quiet,
            xdp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_with_and_without_names() {
        let t = parse_target("chrony=127.0.0.1:1123").unwrap();
        assert_eq!(t.name, "chrony");
        assert_eq!(t.addr, "127.0.0.1:1123".parse().unwrap());
        let t = parse_target("[::1]:123").unwrap();
        assert_eq!(t.name, "[::1]:123");
        assert!(parse_target("=1.2.3.4:5").is_err());
        assert!(parse_target("nope").is_err());
    }

    #[test]
    fn source_ranges() {
        let r = SourceRange::parse("10.201.0.0/24").unwrap();
        assert_eq!(r.nth(0), "10.201.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.nth(253), "10.201.0.254".parse::<IpAddr>().unwrap());
        assert_eq!(r.nth(254), "10.201.0.1".parse::<IpAddr>().unwrap());
        let r = SourceRange::parse("10.201.0.100/24").unwrap();
        assert_eq!(r.nth(0), "10.201.0.100".parse::<IpAddr>().unwrap());
        assert_eq!(r.nth(155), "10.201.0.100".parse::<IpAddr>().unwrap());
        let r = SourceRange::parse("fd00:201::10/64").unwrap();
        assert_eq!(r.nth(1), "fd00:201::11".parse::<IpAddr>().unwrap());
        let r = SourceRange::parse("127.0.0.5/32").unwrap();
        assert_eq!(r.nth(3), "127.0.0.5".parse::<IpAddr>().unwrap());
        assert!(SourceRange::parse("10.0.0.0/33").is_err());
        assert!(SourceRange::parse("10.0.0.255/24").is_err());
        // index_of is nth's inverse within the range.
        let r = SourceRange::parse("10.204.0.0/15").unwrap();
        assert_eq!(r.count(), 131_070);
        for i in [0, 1, 255, 256, 99_999, 131_069] {
            assert_eq!(r.index_of(r.nth(i)), Some(i));
        }
        assert_eq!(r.index_of("10.204.0.0".parse().unwrap()), None);
        assert_eq!(r.index_of("10.206.0.1".parse().unwrap()), None);
        assert_eq!(r.index_of("::1".parse().unwrap()), None);
    }

    #[test]
    fn client_limits_by_transport() {
        let args = |extra: &[&str]| {
            let mut v = vec!["x", "--target", "10.201.0.1:123", "--clients", "100000"];
            v.extend_from_slice(extra);
            Args::parse_from(v).settings()
        };
        let e = args(&[]).unwrap_err().to_string();
        assert!(e.contains("at most 65536 (one socket each"), "{e}");
        let xdp = ["--transport", "xdp", "--interface", "veth0"];
        let e = args(&xdp).unwrap_err().to_string();
        assert!(e.contains("need one source address each"), "{e}");
        let mut with_sources = xdp.to_vec();
        with_sources.extend_from_slice(&["--source-cidr", "10.204.0.0/15"]);
        assert_eq!(args(&with_sources).unwrap().clients, 100_000);
    }

    #[test]
    fn defaults_are_valid() {
        let a = Args::parse_from(["x", "--target", "127.0.0.1:123"]);
        let s = a.settings().unwrap();
        assert_eq!(s.clients, DEFAULT_CLIENTS);
        assert_eq!(s.version, 4);
        let a = Args::parse_from(["x", "--target", "127.0.0.1:123", "--threads", "17"]);
        assert!(a.settings().is_err());
        assert!(s.xdp.is_none());
        let a = Args::parse_from(["x", "--target", "127.0.0.1:123", "--threads", "16"]);
        assert_eq!(a.settings().unwrap().clients, 64);
        assert!(!s.interleaved);
    }

    #[test]
    fn interleaved_needs_ntpv4() {
        let parse = |extra: &[&str]| {
            let mut v = vec!["x", "--target", "127.0.0.1:123", "--interleaved"];
            v.extend_from_slice(extra);
            Args::parse_from(v).settings()
        };
        assert!(parse(&[]).unwrap().interleaved);
        let e = parse(&["--ntp-version", "3"]).unwrap_err();
        assert!(e.to_string().contains("--ntp-version 4"), "{e}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn loopback_clients_get_an_address_each() {
        let settings = |extra: &[&str]| {
            let mut v = vec!["x"];
            v.extend_from_slice(extra);
            Args::parse_from(v).settings().unwrap()
        };
        let s = settings(&["--target", "127.0.0.1:123"]);
        let src = s.sources.expect("loopback default on Linux");
        let addrs: Vec<IpAddr> = (0..s.clients).map(|i| src.nth(i)).collect();
        assert_eq!(addrs[0], "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(addrs[63], "127.0.0.64".parse::<IpAddr>().unwrap());
        let distinct: std::collections::BTreeSet<_> = addrs.iter().collect();
        assert_eq!(distinct.len(), 64);
        // Past 127.0.0.255 the addresses go on in 127.0.1.0/24.
        let s = settings(&["--target", "127.0.0.1:123", "--clients", "300"]);
        assert_eq!(
            s.sources.unwrap().nth(299),
            "127.0.1.44".parse::<IpAddr>().unwrap()
        );
        // An explicit range wins; other targets get the kernel's choice.
        let s = settings(&["--target", "127.0.0.1:1", "--source-cidr", "127.0.0.9/32"]);
        assert_eq!(s.sources.unwrap().count(), 1);
        assert!(settings(&["--target", "10.0.0.1:123"]).sources.is_none());
        assert!(settings(&["--target", "[::1]:123"]).sources.is_none());
        assert!(
            settings(&["--target", "127.0.0.1:1", "--target", "10.0.0.1:1"])
                .sources
                .is_none()
        );
    }

    #[test]
    fn xdp_options() {
        let parse = |extra: &[&str]| {
            let mut v = vec!["x", "--target", "10.0.0.1:123"];
            v.extend_from_slice(extra);
            Args::parse_from(v).settings()
        };
        assert!(parse(&["--transport", "xdp"]).is_err(), "needs --interface");
        assert!(parse(&["--interface", "eth0"]).is_err(), "xdp only");
        assert!(parse(&["--transport", "xdp", "--interface", "e", "--threads", "2"]).is_err());
        let s = parse(&[
            "--transport",
            "xdp",
            "--interface",
            "veth0",
            "--xdp-mode",
            "generic",
            "--dst-mac",
            "02:00:0a:C9:00:01",
        ])
        .unwrap();
        let x = s.xdp.unwrap();
        assert_eq!(x.interface, "veth0");
        assert_eq!(x.mode, XdpModeArg::Generic);
        assert_eq!(x.dst_mac, Some([2, 0, 0x0a, 0xc9, 0, 1]));
        assert!(parse_mac("02:00:0a:c9:00").is_err());
        assert!(parse_mac("02:00:0a:c9:00:zz").is_err());
        assert!(parse_mac("02:00:0a:c9:00:100").is_err());
    }
}
