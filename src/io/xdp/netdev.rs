//! What the backend asks of the network device and the host: how many RX queues an interface
//! has, and which addresses are local (for wildcard listen addresses).

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
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    // SAFETY: all-zero is a valid ifreq (a name buffer and a union of plain values/pointers).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &b) in ifr.ifr_name.iter_mut().zip(name) {
        *dst = b as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: SIOCETHTOOL reads `ifr` (a NUL-terminated name and a pointer to `ch`, both live
    // across the call) and writes at most a `struct ethtool_channels` into `ch`.
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
    Ok(ch.rx_count + ch.combined_count)
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
