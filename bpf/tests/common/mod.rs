//! Shared helpers for the kernel-facing tests: privilege checks and hand-built frames.
#![allow(dead_code)]

/// Says why a test does not run here. With `MERIDIAN_REQUIRE_ALL=1` (set by `.ci/run`, where
/// everything is present) a skip is a failure instead.
pub fn skip_notice(test: &str, reason: &str) {
    let required = std::env::var_os("MERIDIAN_REQUIRE_ALL").is_some_and(|v| v == "1");
    assert!(
        !required,
        "MERIDIAN_REQUIRE_ALL=1, but {test} would be skipped: {reason}"
    );
    eprintln!("SKIP {test}: {reason}");
}

/// Returns `true` (after printing why) when this process cannot use bpf(2) for XDP.
pub fn skip_without_bpf(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    match meridian_bpf::probe() {
        Ok(()) => false,
        Err(e) => {
            skip_notice(
                test,
                &format!("bpf(2) unavailable (euid {euid}, need root or CAP_BPF): {e}"),
            );
            true
        }
    }
}

pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn eth_vlan(tpid: u16, vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn csum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet; `frag` is the raw flags+fragment-offset field, `options` 0..40 bytes.
pub fn ipv4_full(proto: u8, frag: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ihl = 5 + options.len() / 4;
    let total = ihl * 4 + payload.len();
    let mut h = vec![
        0x40 | ihl as u8,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        (frag >> 8) as u8,
        frag as u8,
        64,
        proto,
        0,
        0,
        10,
        0,
        0,
        1,
        10,
        0,
        0,
        2,
    ];
    h.extend_from_slice(options);
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_full(proto, 0x4000, &[], payload) // DF, offset 0
}

pub fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(64);
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(payload);
    h
}

/// A UDP datagram with a 48-byte NTP-sized payload (checksum left 0).
pub fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let payload = [0x23u8; 48];
    let len = 8 + payload.len();
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(&payload);
    u
}

pub fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_ICMP: u8 = 1;

pub fn udp4(dport: u16) -> Vec<u8> {
    eth(ETH_P_IP, &ipv4(IPPROTO_UDP, &udp(40000, dport)))
}

pub fn udp6(dport: u16) -> Vec<u8> {
    eth(ETH_P_IPV6, &ipv6(IPPROTO_UDP, &udp(40000, dport)))
}

/// A network namespace for one test, deleted on drop (also when the test panics).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `meridian-bpf-test-<pid>-<tag>`, or prints why not and returns `None`.
    pub fn create(test: &str, tag: &str) -> Option<Self> {
        let name = format!("meridian-bpf-test-{}-{tag}", std::process::id());
        // A leftover from an earlier crashed run with the same pid: remove it first.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        match std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .output()
        {
            Ok(o) if o.status.success() => Some(Netns { name }),
            Ok(o) => {
                skip_notice(
                    test,
                    &format!(
                        "`ip netns add` failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                );
                None
            }
            Err(e) => {
                skip_notice(test, &format!("cannot run `ip` (iproute2): {e}"));
                None
            }
        }
    }

    /// Runs `ip -n <ns> <args>` and returns stdout; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        ip_in(&self.name, args)
    }
}

/// Two namespaces joined by a veth pair: `va` in the first ("server", `{net4}.1/24`,
/// `{net6}::1/64`) and `vb` in the second ("client", `.2`, `::2`), both up. `None`, after
/// printing why, when namespaces cannot be made here.
pub fn veth_pair(test: &str, tag: &str, net4: &str, net6: &str) -> Option<(Netns, Netns)> {
    let server = Netns::create(test, &format!("{tag}s"))?;
    let client = Netns::create(test, &format!("{tag}c"))?;
    server.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    server.ip(&["link", "set", "vb", "netns", &client.name]);
    server.ip(&["addr", "add", &format!("{net4}.1/24"), "dev", "va"]);
    server.ip(&[
        "addr",
        "add",
        &format!("{net6}::1/64"),
        "dev",
        "va",
        "nodad",
    ]);
    client.ip(&["addr", "add", &format!("{net4}.2/24"), "dev", "vb"]);
    client.ip(&[
        "addr",
        "add",
        &format!("{net6}::2/64"),
        "dev",
        "vb",
        "nodad",
    ]);
    server.ip(&["link", "set", "va", "up"]);
    client.ip(&["link", "set", "vb", "up"]);
    Some((server, client))
}

/// Loads the program serving UDP port 12300 into `map`'s socket map, the hardware-timestamp
/// variant bound to `ifindex` when asked. `None`, after printing why, when the kernel lacks the
/// RX-metadata kfunc.
pub fn load_test_program(
    test: &str,
    map: &meridian_bpf::XskMap,
    ifindex: u32,
    hardware: bool,
) -> Option<meridian_bpf::XdpProgram> {
    let mut cfg = meridian_bpf::ProgramConfig::new(&[12300]);
    if hardware {
        cfg.timestamp = meridian_bpf::TimestampMode::Hardware { ifindex };
    }
    match meridian_bpf::XdpProgram::load(&cfg, map) {
        Ok(p) => Some(p),
        Err(meridian_bpf::Error::KfuncMissing(k)) => {
            skip_notice(test, &format!("kernel has no {k}"));
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Runs `ip -n <ns> <args>` and returns stdout; panics on failure.
pub fn ip_in(ns: &str, args: &[&str]) -> String {
    let o = std::process::Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        o.status.success(),
        "ip -n {ns} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Moves the calling thread into the named namespace (sockets, ifindex lookups and bpf
/// links made by this thread afterwards belong to it).
pub fn enter_netns(name: &str) {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{name}");
    let f = std::fs::File::open(&path).expect("open netns file");
    // SAFETY: `f` is an open namespace file; setns only changes this thread's namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `f` on a fresh thread (so namespace switches never leak into other tests) and
/// re-raises its panic here.
pub fn on_own_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match std::thread::spawn(f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}
