//! What the backend asks of the network device and the host: how many RX queues an interface
//! has, how its receive hash spreads UDP over them, and which addresses are local (for
//! wildcard listen addresses).

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `ETHTOOL_GCHANNELS` (linux/ethtool.h).
const ETHTOOL_GCHANNELS: u32 = 0x0000_003c;

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// The number of RX queues of `ifname`: ETHTOOL_GCHANNELS (rx + combined channels), else the
/// `rx-*` entries of /sys/class/net/IFACE/queues, else 1.
pub fn rx_queue_count(ifname: &str) -> u32 {
    match ethtool_rx_queues(ifname) {
        Ok(n) if n > 0 => return n,
        Ok(_) => {}
        Err(e) => tracing::debug!(interface = ifname, "ETHTOOL_GCHANNELS: {e}"),
    }
    sysfs_rx_queues(ifname).filter(|&n| n > 0).unwrap_or(1)
}

fn ethtool_rx_queues(ifname: &str) -> io::Result<u32> {
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    ethtool(ifname, (&mut ch as *mut EthtoolChannels).cast())?;
    Ok(ch.rx_count + ch.combined_count)
}

/// `ETHTOOL_GRXFH` (linux/ethtool.h): which header fields the NIC's RSS hash covers.
const ETHTOOL_GRXFH: u32 = 0x0000_0029;
/// Flow types (linux/ethtool.h).
const UDP_V4_FLOW: u32 = 0x02;
const UDP_V6_FLOW: u32 = 0x06;
/// Hash field bits (RXH_*).
const RXH_IP_SRC: u64 = 1 << 4;
const RXH_IP_DST: u64 = 1 << 5;
const RXH_L4_B_0_1: u64 = 1 << 6;
const RXH_L4_B_2_3: u64 = 1 << 7;

/// The head of `struct ethtool_rxnfc`: for ETHTOOL_GRXFH the kernel copies only `cmd`,
/// `flow_type` and `data` in and out.
#[repr(C)]
#[derive(Default)]
struct EthtoolRxHash {
    cmd: u32,
    flow_type: u32,
    data: u64,
}

/// What a NIC's receive hash for UDP means for per-client state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpSteering {
    /// By source and destination address only: a client always reaches the same queue.
    Addresses,
    /// The ports too: a client whose source port changes may reach another queue (and another
    /// worker's client table).
    AddressesAndPorts,
    /// Some other set of fields (`RXH_*` bits as the driver reported them).
    Other(u64),
}

impl UdpSteering {
    /// Reads the `RXH_*` bits ETHTOOL_GRXFH reported.
    pub fn from_fields(fields: u64) -> UdpSteering {
        let addrs = RXH_IP_SRC | RXH_IP_DST;
        let ports = RXH_L4_B_0_1 | RXH_L4_B_2_3;
        match fields & (addrs | ports) {
            f if f == addrs => UdpSteering::Addresses,
            f if f & addrs == addrs && f & ports != 0 => UdpSteering::AddressesAndPorts,
            _ => UdpSteering::Other(fields),
        }
    }
}

/// The receive hash of `ifname` for UDP over IPv4 and over IPv6 (ETHTOOL_GRXFH).
pub fn udp_steering(ifname: &str) -> io::Result<[UdpSteering; 2]> {
    let read = |flow_type| -> io::Result<UdpSteering> {
        let mut h = EthtoolRxHash {
            cmd: ETHTOOL_GRXFH,
            flow_type,
            data: 0,
        };
        ethtool(ifname, (&mut h as *mut EthtoolRxHash).cast())?;
        Ok(UdpSteering::from_fields(h.data))
    };
    Ok([read(UDP_V4_FLOW)?, read(UDP_V6_FLOW)?])
}

/// Says at start-up how `ifname` spreads clients over its `queues` RX queues: per-client state
/// (client table, interleaved mode, rate limits) is per worker, so a client must always reach
/// the same queue. Only logs; changing the NIC's hash is the operator's call.
pub fn log_udp_steering(ifname: &str, queues: u32) {
    if queues <= 1 {
        tracing::info!(
            interface = ifname,
            "xdp: one RX queue: every client reaches the same worker"
        );
        return;
    }
    match udp_steering(ifname) {
        Ok([UdpSteering::Addresses, UdpSteering::Addresses]) => tracing::info!(
            interface = ifname,
            "xdp: the NIC hashes UDP by addresses only: each client reaches one queue"
        ),
        Ok(found) => tracing::warn!(
            interface = ifname,
            udp4 = ?found[0],
            udp6 = ?found[1],
            "xdp: the NIC does not hash UDP by addresses only: a client changing source ports \
             may reach another queue, whose worker keeps its own client record (interleaved \
             mode and rate limits then see it as two clients); `ethtool -N {ifname} \
             rx-flow-hash udp4 sd` and `... udp6 sd` fix that"
        ),
        Err(e) => tracing::warn!(
            interface = ifname,
            "xdp: cannot read the NIC's UDP hash fields (ETHTOOL_GRXFH: {e}); per-client state \
             assumes each client reaches one queue"
        ),
    }
}

/// One SIOCETHTOOL request on `ifname`: `data` points to the command's structure, whose first
/// word is the command.
fn ethtool(ifname: &str, data: *mut libc::c_void) -> io::Result<()> {
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: plain socket(2); checked below and closed by OwnedFd.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: all-zero is a valid ifreq (a name buffer and a union of plain values/pointers).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &b) in ifr.ifr_name.iter_mut().zip(name) {
        *dst = b as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = data.cast();
    // SAFETY: SIOCETHTOOL reads `ifr` (a NUL-terminated name and the pointer `data`, which the
    // callers make point to a live structure of the size their command reads and writes).
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SIOCETHTOOL as _,
            &mut ifr,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sysfs_rx_queues(ifname: &str) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{ifname}/queues")).ok()?;
    Some(
        dir.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count() as u32,
    )
}

/// Every address configured on the host (all interfaces, both families), as getifaddrs(3)
/// lists them. IPv6 link-local addresses are included (their scope is the interface).
pub fn local_addresses() -> io::Result<Vec<IpAddr>> {
    addresses(None)
}

/// The addresses configured on interface `ifname` (both families, sorted: IPv4 first).
pub fn interface_addresses(ifname: &str) -> io::Result<Vec<IpAddr>> {
    addresses(Some(ifname))
}

fn addresses(only: Option<&str>) -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head` (or fails and leaves it alone).
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        let wanted = match only {
            None => true,
            Some(_) if ifa.ifa_name.is_null() => false,
            Some(name) => {
                // SAFETY: ifa_name is non-null (checked above) and points to a NUL-terminated
                // string owned by the list, alive until freeifaddrs.
                let ifa_name = unsafe { CStr::from_ptr(ifa.ifa_name) };
                ifa_name.to_bytes() == name.as_bytes()
            }
        };
        if wanted && !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its real type and size.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once; no reference into it survives.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    Ok(out)
}

/// The name of interface `ifindex`, for messages.
pub fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    Some(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_udp_hash_fields_are_read_right() {
        let sd = RXH_IP_SRC | RXH_IP_DST;
        assert_eq!(UdpSteering::from_fields(sd), UdpSteering::Addresses);
        let sdfn = sd | RXH_L4_B_0_1 | RXH_L4_B_2_3;
        assert_eq!(
            UdpSteering::from_fields(sdfn),
            UdpSteering::AddressesAndPorts
        );
        // RXH_L2DA (bit 1) or RXH_VLAN (bit 2) besides the addresses do not split a client.
        assert_eq!(
            UdpSteering::from_fields(sd | 1 << 1),
            UdpSteering::Addresses
        );
        assert_eq!(
            UdpSteering::from_fields(RXH_IP_SRC),
            UdpSteering::Other(RXH_IP_SRC)
        );
        assert_eq!(UdpSteering::from_fields(0), UdpSteering::Other(0));
    }

    #[test]
    fn a_device_without_rss_says_so() {
        // Loopback has no receive hash to report.
        assert!(udp_steering("lo").is_err());
        assert!(udp_steering("").is_err());
    }

    #[test]
    fn loopback_has_a_queue_and_local_addresses_include_it() {
        assert!(rx_queue_count("lo") >= 1);
        let addrs = local_addresses().unwrap();
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
        assert_eq!(ifname(1).as_deref(), Some("lo"));
        assert_eq!(rx_queue_count("no-such-if0"), 1);
        let lo = interface_addresses("lo").unwrap();
        assert!(lo.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{lo:?}");
        assert!(interface_addresses("no-such-if0").unwrap().is_empty());
    }
}
