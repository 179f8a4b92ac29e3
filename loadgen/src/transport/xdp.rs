//! Linux AF_XDP: the generator writes whole Ethernet/IP/UDP/NTP frames (with
//! `meridian::wire::build_udp`) into the UMEM of one AF_XDP socket (meridian's `io::xdp::Xsk`)
//! and sends them in batches through its TX ring; the replies are taken off the wire by an XDP
//! program that matches the target's port as the UDP *source* port (`PortMatch::Source`) and
//! redirects them to the same socket. No socket buffer, no per-datagram system call, no kernel
//! UDP stack on either path.
//!
//! * **Clients** are (source address, source port) pairs written into the frames: client `i`
//!   sends from `--source-cidr`'s `i`-th address (or the interface's first address of the
//!   target's family) and from port `1024 + (offset + i) mod 64512`, where `offset` moves on by
//!   the client count at every open, so replies still in flight from a previous run (a sweep
//!   step) never reach a client of the next one: they are dropped like datagrams to a closed
//!   socket.
//! * **Ethernet addresses**: source = the interface's MAC; destination = `--dst-mac`, or the
//!   target's entry in the kernel's neighbour table (`/proc/net/arp`, `ip -6 neigh`), filled
//!   by sending one ordinary UDP datagram to the target's discard port (9) first. The target
//!   must be on the link (no gateway lookup).
//! * **Batching**: `send` only queues frames on the TX ring; one `sendto` kick sends everything
//!   queued when the runner next looks for replies (each loop iteration), or as soon as a
//!   batch's worth is waiting — so a closed loop answering many replies at once sends with one
//!   system call, not one per request.
//! * **Receive timestamps**: the program's `bpf_ktime_get_tai_ns()` stamp in front of each
//!   frame, converted to realtime with `meridian::sys::clock::tai_offset_ns()` (re-read every
//!   second); a frame without one gets a user-space realtime read per batch.
//! * **Replies** are checked by the server's own frame parser (`io::xdp::frame::parse`: IP
//!   header and UDP checksums, lengths) and must come from the target; their NTP payload goes
//!   to the generator's usual validation unchanged.
//! * **The generator's own drops** — replies the kernel could not put on this socket (RX ring
//!   full, fill ring empty: `XDP_STATISTICS` rx_dropped + rx_ring_full, read every 20 ms) —
//!   are reported as receive errors, so a loss the generator caused is told apart from one
//!   the server (or the link) caused.
//! * **Lifetime**: the socket and the attached program are kept between the runs of one process
//!   (a sweep's steps would otherwise wait ~1–2 s each for the kernel to release the queue) and
//!   dropped by [`close`] at exit — the program detaches, the socket closes (the kernel does the
//!   same if the process dies).
//!
//! One thread, one socket, queue 0: interfaces with more than one RX queue are refused (a
//! reply could arrive on a queue without a socket).

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use meridian::config::XdpMode;
use meridian::io::xdp::frame::parse;
use meridian::io::xdp::netdev::{interface_addresses, rx_queue_count};
use meridian::io::xdp::{PortMatch, ProgramConfig, RxMeta, XskBinding};
use meridian::wire::{build_udp, UdpFrameSpec};

use super::{Payload, RecvMeta, RecvOutcome, Transport};
use crate::cli::{SourceRange, XdpModeArg, XdpSettings};
use crate::sys::realtime;

/// First client source port.
pub const PORT_BASE: u16 = 1024;
/// Client source ports: 1024..=65535.
const PORT_SPAN: usize = crate::cli::XDP_PORT_SPAN;
/// Frames kept out of the fill ring for transmitting.
const TX_RESERVE: usize = 1024;
/// How often the TAI − realtime offset is re-read.
const TAI_REFRESH: Duration = Duration::from_secs(1);
/// How often the socket's drop counters are read.
const STATS_EVERY: Duration = Duration::from_millis(20);
/// How long the neighbour entry of the target is waited for.
const NEIGH_WAIT: Duration = Duration::from_secs(3);

/// What the socket kept between runs was opened for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    interface: String,
    port: u16,
    mode: XdpModeArg,
}

struct Kept {
    key: Key,
    binding: XskBinding,
}

/// The socket and program between runs (see the module docs).
static KEPT: Mutex<Option<Kept>> = Mutex::new(None);
/// Where the next run's client ports start (see the module docs).
static NEXT_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// Detaches the program and closes the socket kept between runs (call before exiting).
pub fn close() {
    if let Ok(mut k) = KEPT.lock() {
        k.take();
    }
}

pub struct XdpTransport {
    kept: Option<Kept>,
    target: SocketAddr,
    /// Per client: the frame addresses.
    specs: Vec<UdpFrameSpec>,
    /// The index of this transport's first client in `--source-cidr`.
    first: usize,
    /// More clients than source ports: each has its own address of this range, which says
    /// whose a reply is.
    by_address: Option<SourceRange>,
    /// This run's port offset (see the module docs).
    offset: usize,
    batch: usize,
    tai_offset_ns: i64,
    tai_read: Instant,
    /// Replies the kernel dropped on this socket so far, and when that was read.
    dropped: u64,
    dropped_read: Instant,
}

/// Replies the kernel dropped on the generator's socket (RX ring full, no fill frame).
fn socket_drops(xsk: &meridian::io::xdp::Xsk) -> u64 {
    xsk.statistics()
        .map_or(0, |st| st.rx_dropped + st.rx_ring_full)
}

impl Drop for XdpTransport {
    fn drop(&mut self) {
        if let (Some(k), Ok(mut slot)) = (self.kept.take(), KEPT.lock()) {
            *slot = Some(k);
        }
    }
}

/// The MAC address of `ifname` (sysfs).
fn interface_mac(ifname: &str) -> Result<[u8; 6]> {
    let path = format!("/sys/class/net/{ifname}/address");
    let s = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    crate::cli::parse_mac(s.trim()).with_context(|| path.clone())
}

/// The target's complete neighbour entry on `ifname`, if the kernel has one.
fn neighbour(ifname: &str, ip: IpAddr) -> Option<[u8; 6]> {
    match ip {
        IpAddr::V4(a) => {
            let table = fs::read_to_string("/proc/net/arp").ok()?;
            arp_entry(&table, ifname, &a.to_string())
        }
        IpAddr::V6(a) => {
            let out = Command::new("ip")
                .args(["-6", "neigh", "show", "to", &a.to_string(), "dev", ifname])
                .output()
                .ok()?;
            ip_neigh_entry(&String::from_utf8_lossy(&out.stdout))
        }
    }
}

/// The complete (flag 0x2) entry for `ip` on `ifname` in /proc/net/arp's text
/// (`IP address  HW type  Flags  HW address  Mask  Device`).
fn arp_entry(table: &str, ifname: &str, ip: &str) -> Option<[u8; 6]> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let complete = f
            .get(2)
            .and_then(|x| u32::from_str_radix(x.trim_start_matches("0x"), 16).ok())
            .is_some_and(|flags| flags & 0x2 != 0);
        (f.len() >= 6 && f[0] == ip && f[5] == ifname && complete)
            .then(|| crate::cli::parse_mac(f[3]).ok())
            .flatten()
    })
}

/// The link-layer address in `ip -6 neigh show to ADDR dev IFACE` output, unless the entry
/// failed or is incomplete.
fn ip_neigh_entry(text: &str) -> Option<[u8; 6]> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let at = f.iter().position(|w| *w == "lladdr")?;
        let bad = f.iter().any(|w| matches!(*w, "FAILED" | "INCOMPLETE"));
        (!bad)
            .then(|| f.get(at + 1).and_then(|m| crate::cli::parse_mac(m).ok()))
            .flatten()
    })
}

/// Resolves the target's MAC: the neighbour table, after one UDP datagram to its discard port
/// (sent through the kernel, before the program is attached) makes the kernel resolve it.
fn resolve_mac(ifname: &str, ip: IpAddr) -> Result<[u8; 6]> {
    if let Some(m) = neighbour(ifname, ip) {
        return Ok(m);
    }
    let bind: SocketAddr = if ip.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let poke = UdpSocket::bind(bind).context("a UDP socket to resolve the target's MAC")?;
    let deadline = Instant::now() + NEIGH_WAIT;
    let mut next_poke = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next_poke {
            let _ = poke.send_to(&[0u8], SocketAddr::new(ip, 9));
            next_poke = Instant::now() + Duration::from_millis(500);
        }
        std::thread::sleep(Duration::from_millis(10));
        if let Some(m) = neighbour(ifname, ip) {
            return Ok(m);
        }
    }
    bail!(
        "no neighbour entry for {ip} on {ifname} after {} s (is the target on that link? \
         give --dst-mac)",
        NEIGH_WAIT.as_secs()
    )
}

fn open_binding(key: &Key) -> Result<XskBinding> {
    let queues = rx_queue_count(&key.interface);
    if queues > 1 {
        bail!(
            "--transport xdp uses one AF_XDP socket on queue 0, but {} has {queues} RX queues \
             (replies could land on another); reduce them (ethtool -L {} combined 1) or use \
             another transport",
            key.interface,
            key.interface
        );
    }
    let mut cfg = ProgramConfig::new(&[key.port]);
    cfg.port_match = PortMatch::Source;
    let mode = match key.mode {
        XdpModeArg::Auto => XdpMode::Auto,
        XdpModeArg::Native => XdpMode::Native,
        XdpModeArg::Generic => XdpMode::Generic,
    };
    let b = XskBinding::open(&key.interface, 0, &cfg, mode)
        .with_context(|| format!("AF_XDP on {}", key.interface))?;
    Ok(b)
}

impl XdpTransport {
    pub fn new(
        xdp: &XdpSettings,
        target: SocketAddr,
        sources: Option<&SourceRange>,
        first: usize,
        count: usize,
        batch: usize,
    ) -> Result<XdpTransport> {
        let ifname = &xdp.interface;
        let src_mac = interface_mac(ifname)?;
        let dst_mac = match xdp.dst_mac {
            Some(m) => m,
            None => resolve_mac(ifname, target.ip())?,
        };
        let own = interface_addresses(ifname).with_context(|| format!("addresses of {ifname}"))?;
        let default_src = own
            .iter()
            .copied()
            .find(|a| match a {
                IpAddr::V4(_) => target.is_ipv4(),
                IpAddr::V6(v6) => target.is_ipv6() && (v6.segments()[0] & 0xffc0) != 0xfe80,
            })
            .with_context(|| {
                format!(
                    "{ifname} has no {} address to send from",
                    if target.is_ipv4() {
                        "IPv4"
                    } else {
                        "global IPv6"
                    }
                )
            })?;
        // Source addresses need not be configured here: the program takes the replies off
        // the wire before the kernel looks at their address (the target must route them back
        // to this interface: a spoofed flood). Past the port span, each client has its own.
        let by_address = match sources {
            Some(s) if count > PORT_SPAN => {
                if s.count() < first + count {
                    bail!("{count} clients need as many source addresses (--source-cidr)");
                }
                Some(s.clone())
            }
            _ => None,
        };
        let offset = NEXT_OFFSET.fetch_add(count, Ordering::Relaxed) % PORT_SPAN;
        let specs = (0..count)
            .map(|i| {
                let ip = sources.map_or(default_src, |s| s.nth(first + i));
                UdpFrameSpec {
                    src_mac,
                    dst_mac,
                    src: SocketAddr::new(ip, port_of(offset, i)),
                    dst: target,
                }
            })
            .collect();

        let key = Key {
            interface: ifname.clone(),
            port: target.port(),
            mode: xdp.mode,
        };
        let previous = KEPT.lock().ok().and_then(|mut k| k.take());
        let mut kept = match previous {
            Some(k) if k.key == key => k,
            other => {
                // A different interface or port: detach the old program first.
                drop(other);
                Kept {
                    binding: open_binding(&key)?,
                    key,
                }
            }
        };
        let xsk = &mut kept.binding.xsk;
        // Whatever is still queued from an earlier run is not ours any more (bounded: replies
        // may still be arriving).
        for _ in 0..4 {
            if xsk.receive(4096, |_| {}) == 0 {
                break;
            }
        }
        xsk.refill(TX_RESERVE);
        let dropped = socket_drops(xsk);
        Ok(XdpTransport {
            dropped,
            dropped_read: Instant::now(),
            kept: Some(kept),
            target,
            specs,
            offset,
            first,
            by_address,
            batch,
            tai_offset_ns: meridian::sys::clock::tai_offset_ns(),
            tai_read: Instant::now(),
        })
    }
}

/// The source port of client `i` for a run starting at `offset`.
fn port_of(offset: usize, i: usize) -> u16 {
    (usize::from(PORT_BASE) + (offset + i) % PORT_SPAN) as u16
}

impl Transport for XdpTransport {
    fn name(&self) -> &'static str {
        "xdp"
    }

    fn clients(&self) -> usize {
        self.specs.len()
    }

    fn batch(&self) -> usize {
        self.batch
    }

    fn source_ips(&self) -> Vec<IpAddr> {
        self.specs.iter().map(|s| s.src.ip()).collect()
    }

    fn send(&mut self, client: usize, payloads: &[Payload]) -> io::Result<usize> {
        let spec = self.specs[client];
        let xsk = &mut self.kept.as_mut().expect("open until dropped").binding.xsk;
        let queued = xsk.queue_tx(payloads.len().min(self.batch), |i, buf| {
            build_udp(buf, &spec, &payloads[i])
        });
        if queued < payloads.len().min(self.batch) || xsk.tx_pending() as usize >= self.batch {
            // Ring or frames ran short, or a batch is waiting: send now.
            xsk.flush_tx()?;
            if queued == 0 {
                return Ok(xsk.queue_tx(payloads.len().min(self.batch), |i, buf| {
                    build_udp(buf, &spec, &payloads[i])
                }));
            }
        }
        Ok(queued)
    }

    fn recv(
        &mut self,
        timeout: Duration,
        max: usize,
        on_packet: &mut dyn FnMut(RecvMeta, &[u8]),
    ) -> io::Result<RecvOutcome> {
        if self.tai_read.elapsed() >= TAI_REFRESH {
            self.tai_offset_ns = meridian::sys::clock::tai_offset_ns();
            self.tai_read = Instant::now();
        }
        let mut out = RecvOutcome::default();
        if self.dropped_read.elapsed() >= STATS_EVERY {
            let xsk = &self.kept.as_ref().expect("open until dropped").binding.xsk;
            let now = socket_drops(xsk);
            out.errors += now.saturating_sub(self.dropped);
            self.dropped = now;
            self.dropped_read = Instant::now();
        }
        // What `send` queued leaves now, before the replies are read or waited for.
        self.kept
            .as_mut()
            .expect("open until dropped")
            .binding
            .xsk
            .flush_tx()?;
        for round in 0..2 {
            let user_now = realtime().0;
            let tai_offset = self.tai_offset_ns;
            let target = self.target;
            let specs = &self.specs;
            let offset = self.offset;
            let (first, by_address) = (self.first, self.by_address.as_ref());
            let xsk = &mut self.kept.as_mut().expect("open until dropped").binding.xsk;
            let mut errors = 0u64;
            let n = xsk.receive(max, |f| {
                let Ok(p) = parse(f.data) else {
                    errors += 1; // bad checksum or length: the kernel would drop it too
                    return;
                };
                if p.src != target {
                    return;
                }
                let client = match by_address {
                    // One address per client: the address names it.
                    Some(range) => range
                        .index_of(p.dst.ip())
                        .and_then(|i| i.checked_sub(first))
                        .filter(|&i| i < specs.len()),
                    None => client_index(offset, specs.len(), p.dst.port()),
                };
                let Some(client) = client else {
                    return; // a client of an earlier run: like a closed socket
                };
                if specs[client].src != p.dst {
                    return;
                }
                let stamp = f
                    .meta
                    .filter(|m| m.kind == RxMeta::KIND_SOFTWARE_TAI)
                    .map(|m| (m.timestamp_ns as i64).saturating_sub(tai_offset));
                let meta = RecvMeta {
                    client: client as u32,
                    rx_ns: stamp.unwrap_or(user_now),
                    kernel_stamp: stamp.is_some(),
                };
                on_packet(meta, &f.data[p.payload()]);
                out.packets += 1;
            });
            out.errors += errors;
            xsk.refill(TX_RESERVE);
            if n > 0 || round == 1 || timeout.is_zero() {
                break;
            }
            xsk.wait_for(timeout)?;
        }
        Ok(out)
    }
}

/// The client index of local port `port` in a run of `count` clients starting at `offset`.
fn client_index(offset: usize, count: usize, port: u16) -> Option<usize> {
    let p = usize::from(port.checked_sub(PORT_BASE)?);
    let i = (p + PORT_SPAN - offset) % PORT_SPAN;
    (i < count).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_map_back_to_clients() {
        for offset in [0, 5, PORT_SPAN - 3, 40_000] {
            for i in [0usize, 1, 2, 99] {
                let port = port_of(offset, i);
                assert!(port >= PORT_BASE);
                assert_eq!(client_index(offset, 100, port), Some(i), "{offset} {i}");
            }
            // A client of the previous run (offset − 100) is nobody now.
            let prev = (offset + PORT_SPAN - 100) % PORT_SPAN;
            assert_eq!(client_index(offset, 100, port_of(prev, 0)), None);
        }
        assert_eq!(client_index(0, 10, 123), None, "below the range");
    }

    #[test]
    fn neighbour_tables_parse() {
        let arp =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
                   10.201.0.1       0x1         0x2         3a:cf:0a:14:36:5d     *        m-c0\n\
                   10.201.0.9       0x1         0x0         00:00:00:00:00:00     *        m-c0\n\
                   10.201.0.1       0x1         0x2         02:00:00:00:00:07     *        eth1\n";
        let mac = [0x3a, 0xcf, 0x0a, 0x14, 0x36, 0x5d];
        assert_eq!(arp_entry(arp, "m-c0", "10.201.0.1"), Some(mac));
        assert_eq!(
            arp_entry(arp, "eth1", "10.201.0.1"),
            Some([2, 0, 0, 0, 0, 7])
        );
        assert_eq!(arp_entry(arp, "m-c0", "10.201.0.9"), None, "incomplete");
        assert_eq!(arp_entry(arp, "m-c0", "10.201.0.10"), None, "absent");
        assert_eq!(
            ip_neigh_entry("fd00:201::1 lladdr 3a:cf:0a:14:36:5d REACHABLE\n"),
            Some(mac)
        );
        assert_eq!(
            ip_neigh_entry("fd00:201::1 lladdr 3a:cf:0a:14:36:5d router STALE\n"),
            Some(mac)
        );
        assert_eq!(ip_neigh_entry("fd00:201::1 FAILED\n"), None);
        assert_eq!(ip_neigh_entry("fd00:201::1  INCOMPLETE\n"), None);
        assert_eq!(ip_neigh_entry(""), None);
        assert!(neighbour("no-such-if0", "10.0.0.1".parse().unwrap()).is_none());
    }
}
