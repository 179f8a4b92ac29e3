//! `[server]`: the data plane (addresses, workers, backend, batching, xdp).

use std::net::SocketAddr;

use serde::Deserialize;

use super::Problems;

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
    /// Answer interleaved requests in interleaved mode (RFC 9769), carrying the true transmit
    /// time of the client's previous reply. Needs the client table (`[clients] max > 0`).
    pub interleaved: bool,
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
            interleaved: true,
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

/// Upper bound of `server.workers`.
pub const MAX_WORKERS: usize = 4096;
/// Upper bound of `server.batch-size`.
pub const MAX_BATCH_SIZE: usize = 1024;

impl ServerConfig {
    /// The `[server]` rules.
    pub(super) fn check(&self, p: &mut Problems) {
        let server = self;
        if server.listen.is_empty() {
            p.add("server.listen", "must name at least one address".to_owned());
        }
        for (i, addr) in server.listen.iter().enumerate() {
            if server.listen[..i].contains(addr) {
                p.add("server.listen", format!("duplicate address {addr}"));
            }
        }
        if server.workers > MAX_WORKERS {
            p.add(
                "server.workers",
                format!(
                    "must be at most {MAX_WORKERS} (0 = one per core), got {}",
                    server.workers
                ),
            );
        }
        for (i, core) in server.cores.iter().enumerate() {
            if server.cores[..i].contains(core) {
                p.add("server.cores", format!("duplicate core {core}"));
            }
        }
        if !(1..=MAX_BATCH_SIZE).contains(&server.batch_size) {
            p.add(
                "server.batch-size",
                format!("must be in 1..={MAX_BATCH_SIZE}, got {}", server.batch_size),
            );
        }
        for (i, name) in server.interface.iter().enumerate() {
            if let Err(message) = check_interface_name(name) {
                p.add("server.interface", message);
            } else if server.interface[..i].contains(name) {
                p.add("server.interface", format!("duplicate interface {name:?}"));
            }
        }
        if server.backend == BackendKind::Xdp && server.interface.is_empty() {
            p.add(
                "server.interface",
                "backend \"xdp\" needs at least one interface (server.interface or --interface)"
                    .to_owned(),
            );
        }
        for (i, q) in server.queues.iter().enumerate() {
            if server.queues[..i].contains(q) {
                p.add("server.queues", format!("duplicate queue {q}"));
            } else if *q >= MAX_QUEUE {
                p.add(
                    "server.queues",
                    format!("queue {q} is out of range (0..{MAX_QUEUE})"),
                );
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{err, parse, problems};
    use crate::config::Config;

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
}
