//! Network namespaces and veth pairs made for one test: a [`Netns`] is deleted when dropped
//! (also when the test panics), and a [`VethPair`] is two of them joined by a veth pair with
//! an IPv4 and an IPv6 address on each end, so deleting the namespaces deletes the link too.
//! The host's own interfaces, routes and addresses are never touched.
//!
//! Commands run inside with `ip netns exec` ([`Netns::command`]); code of the test itself runs
//! inside on a thread of its own that enters the namespace ([`Netns::on_thread`]), so a
//! namespace switch never leaks into other tests. `scripts/netns.sh` builds the same kind of
//! pair by hand, for benchmarks and people.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::process::{is_root, run_bounded, RunOutput};

/// Why namespaces cannot be made here, if they cannot: not root, or no `ip` (iproute2).
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("needs root (CAP_NET_ADMIN) for network namespaces".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2) is missing".into()),
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// `PREFIX-PID-N`: a name no other test process (and no other call in this one) uses.
pub fn unique_name(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Runs `ip ARGS...` and returns its stdout, or the command and its stderr as the error.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Moves the calling thread into namespace `name` (sockets, interface lookups and BPF links
/// made by this thread afterwards belong to it). Panics if it cannot.
pub fn enter_netns(name: &str) {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: `file` is an open network-namespace file; setns changes only the calling
    // thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {name}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a fresh thread (so namespace switches never leak into other tests) and
/// re-raises its panic here.
pub fn on_own_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match std::thread::spawn(f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// A network namespace, with its loopback up, deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (removing a leftover of that name from a crashed earlier run
    /// first) and brings its loopback up. The error says why namespaces cannot be made.
    pub fn create(name: impl Into<String>) -> Result<Netns, String> {
        let name = name.into();
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stdin(Stdio::null())
            .output();
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.try_ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`: its stdout, or why it failed.
    pub fn try_ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `ip -n NAME ARGS...`: its stdout; panics if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        self.try_ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip netns exec NAME PROGRAM`, to add arguments to and run.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `PROGRAM ARGS...` inside, killed by PID after `timeout`.
    pub fn run(&self, program: &str, args: &[&str], timeout: Duration) -> RunOutput {
        run_bounded(self.command(program).args(args), timeout)
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    /// Runs `PROGRAM ARGS...` inside (within 10 s), asserts it succeeded and returns its
    /// stdout.
    pub fn output(&self, program: &str, args: &[&str]) -> String {
        let o = self.run(program, args, Duration::from_secs(10));
        assert!(o.success(), "{program} {args:?}: {}", o.all());
        o.stdout
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn on_thread<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let name = self.name.clone();
        on_own_thread(move || {
            enter_netns(&name);
            f()
        })
    }

    /// The MAC address of interface `dev`.
    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let path = format!("/sys/class/net/{dev}/address");
        let out = self.output("cat", &[&path]);
        let mut mac = [0u8; 6];
        for (m, part) in mac.iter_mut().zip(out.trim().split(':')) {
            *m = u8::from_str_radix(part, 16).expect("hex MAC");
        }
        mac
    }

    /// Whether an XDP program is attached to `dev` (per `ip link`).
    pub fn xdp_attached(&self, dev: &str) -> bool {
        let o = run_bounded(
            Command::new("ip").args(["-n", &self.name, "link", "show", dev]),
            Duration::from_secs(5),
        )
        .expect("ip link show");
        o.stdout.contains("prog/xdp")
    }

    /// Waits up to `timeout` (the kernel releases a closed BPF link from a work queue) for
    /// `dev` to have no XDP program; returns whether it has none.
    pub fn xdp_detached_within(&self, dev: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.xdp_attached(dev) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output();
    }
}

/// How to join two namespaces: interface names, the networks of the two ends and extra
/// client addresses.
#[derive(Clone, Debug)]
pub struct VethSpec {
    /// The end in the server namespace (default `va`).
    pub server_dev: String,
    /// The end in the client namespace (default `vb`).
    pub client_dev: String,
    /// The first three octets of the IPv4 /24: the server is `.1`, the client `.2`.
    pub net4: [u8; 3],
    /// The first four groups of the IPv6 /64: the server is `::1`, the client `::2`.
    pub net6: [u16; 4],
    /// The client also gets `.100`, `.101`, ... and `::100`, `::101`, ... (at most 150), for
    /// many source addresses.
    pub client_extra: u8,
    /// Turn off reverse-path filtering in both namespaces (best effort, as scripts/netns.sh).
    pub rp_filter_off: bool,
}

impl VethSpec {
    /// `va` (`NET4.1/24`, `NET6::1/64`) and `vb` (`.2`, `::2`), no extra address.
    pub fn new(net4: [u8; 3], net6: [u16; 4]) -> Self {
        VethSpec {
            server_dev: "va".into(),
            client_dev: "vb".into(),
            net4,
            net6,
            client_extra: 0,
            rp_filter_off: false,
        }
    }

    /// Other interface names (at most 15 bytes each).
    pub fn devices(mut self, server: &str, client: &str) -> Self {
        self.server_dev = server.into();
        self.client_dev = client.into();
        self
    }

    /// `n` more client addresses (see [`VethSpec::client_extra`]).
    pub fn client_extra(mut self, n: u8) -> Self {
        self.client_extra = n;
        self
    }

    pub fn rp_filter_off(mut self) -> Self {
        self.rp_filter_off = true;
        self
    }

    /// Host `host` of the IPv4 network.
    pub fn addr4(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.net4;
        Ipv4Addr::new(a, b, c, host)
    }

    /// Host `host` of the IPv6 network.
    pub fn addr6(&self, host: u16) -> Ipv6Addr {
        let [a, b, c, d] = self.net6;
        Ipv6Addr::new(a, b, c, d, 0, 0, 0, host)
    }
}

/// A server namespace and a client namespace joined by a veth pair, both ends up with the
/// addresses of their [`VethSpec`]. Deleted (namespaces and link) on drop.
#[derive(Debug)]
pub struct VethPair {
    pub server: Netns,
    pub client: Netns,
    spec: VethSpec,
}

impl VethPair {
    /// Creates the namespaces `server` and `client` and joins them. The error says what
    /// failed; what was made is deleted again.
    pub fn create(server: &str, client: &str, spec: VethSpec) -> Result<VethPair, String> {
        let server = Netns::create(server)?;
        let client = Netns::create(client)?;
        Self::connect(server, client, spec)
    }

    /// Joins two existing namespaces (taking them over: they are deleted with the pair, also
    /// when this fails).
    pub fn connect(server: Netns, client: Netns, spec: VethSpec) -> Result<VethPair, String> {
        assert!(spec.client_extra <= 150, "at most 150 extra addresses");
        let (sdev, cdev) = (spec.server_dev.as_str(), spec.client_dev.as_str());
        server.try_ip(&[
            "link",
            "add",
            sdev,
            "type",
            "veth",
            "peer",
            "name",
            cdev,
            "netns",
            client.name(),
        ])?;
        let add4 = |ns: &Netns, dev: &str, host: u8| {
            ns.try_ip(&[
                "addr",
                "add",
                &format!("{}/24", spec.addr4(host)),
                "dev",
                dev,
            ])
        };
        let add6 = |ns: &Netns, dev: &str, host: u16| {
            let a = format!("{}/64", spec.addr6(host));
            ns.try_ip(&["addr", "add", &a, "dev", dev, "nodad"])
        };
        add4(&server, sdev, 1)?;
        add6(&server, sdev, 1)?;
        add4(&client, cdev, 2)?;
        add6(&client, cdev, 2)?;
        for i in 0..spec.client_extra {
            add4(&client, cdev, 100 + i)?;
            add6(&client, cdev, 0x100 + u16::from(i))?;
        }
        server.try_ip(&["link", "set", sdev, "up"])?;
        client.try_ip(&["link", "set", cdev, "up"])?;
        if spec.rp_filter_off {
            // Many source addresses reach the server only if replies are not dropped as
            // martians. Best effort, as in scripts/netns.sh.
            for (ns, dev) in [(&server, sdev), (&client, cdev)] {
                let _ = ns.run(
                    "sysctl",
                    &[
                        "-qw",
                        "net.ipv4.conf.all.rp_filter=0",
                        &format!("net.ipv4.conf.{dev}.rp_filter=0"),
                    ],
                    Duration::from_secs(10),
                );
            }
        }
        Ok(VethPair {
            server,
            client,
            spec,
        })
    }

    pub fn spec(&self) -> &VethSpec {
        &self.spec
    }

    pub fn server_dev(&self) -> &str {
        &self.spec.server_dev
    }

    pub fn client_dev(&self) -> &str {
        &self.spec.client_dev
    }

    /// The server end's IPv4 address (`.1`).
    pub fn server4(&self) -> Ipv4Addr {
        self.spec.addr4(1)
    }

    /// The client end's IPv4 address (`.2`).
    pub fn client4(&self) -> Ipv4Addr {
        self.spec.addr4(2)
    }

    /// The server end's IPv6 address (`::1`).
    pub fn server6(&self) -> Ipv6Addr {
        self.spec.addr6(1)
    }

    /// The client end's IPv6 address (`::2`).
    pub fn client6(&self) -> Ipv6Addr {
        self.spec.addr6(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_addresses() {
        let spec = VethSpec::new([10, 203, 0], [0xfd00, 0x203, 0, 0]).client_extra(2);
        assert_eq!(spec.addr4(1).to_string(), "10.203.0.1");
        assert_eq!(spec.addr6(0x101).to_string(), "fd00:203::101");
        assert_eq!(
            (spec.server_dev.as_str(), spec.client_dev.as_str()),
            ("va", "vb")
        );
    }

    #[test]
    fn a_pair_carries_udp_and_is_deleted_on_drop() {
        if let Some(why) = unavailable() {
            crate::skip_notice(&why);
            return;
        }
        let (s, c) = (unique_name("mtk-s"), unique_name("mtk-c"));
        let spec = VethSpec::new([10, 209, 0], [0xfd00, 0x209, 0, 0]).client_extra(1);
        let pair = VethPair::create(&s, &c, spec).expect("veth pair");
        let addrs = pair.client.ip(&["-o", "addr", "show", "dev", "vb"]);
        for a in [
            "10.209.0.2/24",
            "10.209.0.100/24",
            "fd00:209::2/64",
            "fd00:209::100/64",
        ] {
            assert!(addrs.contains(a), "{a} in {addrs}");
        }
        let from = pair.client4();
        let seen = pair.server.on_thread(move || {
            // Entered the server namespace: the server end's address is local here.
            let sock = std::net::UdpSocket::bind((Ipv4Addr::new(10, 209, 0, 1), 0)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let port = sock.local_addr().unwrap().port();
            let sender = std::thread::spawn(move || {
                enter_netns(&c);
                let s = std::net::UdpSocket::bind((from, 0)).unwrap();
                for _ in 0..20 {
                    s.send_to(b"hi", (Ipv4Addr::new(10, 209, 0, 1), port))
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let mut buf = [0u8; 8];
            let got = sock
                .recv_from(&mut buf)
                .map(|(n, a)| (buf[..n].to_vec(), a.ip()));
            sender.join().unwrap();
            got.ok()
        });
        assert_eq!(seen, Some((b"hi".to_vec(), from.into())));
        assert!(!pair.server.xdp_attached("va"));
        drop(pair);
        let list = ip(&["netns", "list"]).unwrap();
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(s.as_str())),
            "{s} deleted: {list}"
        );
    }
}
