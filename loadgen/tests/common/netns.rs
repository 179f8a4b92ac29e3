//! The veth topology of the AF_XDP tests: a server and a client namespace, and meridian
//! started in the server one.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_testkit::netns::{VethPair, VethSpec};

use super::{meridian_binary, run_bounded, ChildGuard};

/// The two namespaces, as scripts/netns.sh builds them with EXTRA=4: NAME-srv with veth
/// NAME-s0 (10.201.0.1/24, fd00:201::1/64) and NAME-cli with NAME-c0 (10.201.0.2/24,
/// fd00:201::2/64, and .100-.103 / ::100-::103), reverse-path filtering off. Deleted on drop.
pub struct Namespaces {
    pub name: String,
    pub pair: VethPair,
}

impl Namespaces {
    /// `prefix`: a few letters naming the test (interface names are PREFIX+PID-s0: at most 15
    /// bytes).
    pub fn up(prefix: &str) -> Namespaces {
        let name = format!("{prefix}{}", std::process::id() % 1_000_000);
        let spec = VethSpec::new([10, 201, 0], [0xfd00, 0x201, 0, 0])
            .devices(&format!("{name}-s0"), &format!("{name}-c0"))
            .client_extra(4)
            .rp_filter_off();
        let pair = VethPair::create(&format!("{name}-srv"), &format!("{name}-cli"), spec)
            .unwrap_or_else(|e| panic!("veth pair {name}: {e}"));
        Namespaces { name, pair }
    }

    /// `ip netns exec NAME-srv PROGRAM`.
    pub fn in_srv(&self, program: &Path) -> Command {
        self.pair.server.command(program)
    }

    /// `ip netns exec NAME-cli PROGRAM`.
    pub fn in_cli(&self, program: &Path) -> Command {
        self.pair.client.command(program)
    }
}

/// Starts meridian in the server namespace (with `extra` arguments) and waits until it
/// answers from the client one.
pub fn start_server(
    ns: &Namespaces,
    backend: &str,
    port: u16,
    log: &Path,
    extra: &[&str],
) -> ChildGuard {
    let mut c = ns.in_srv(&meridian_binary());
    c.args(["serve", "--workers", "1", "--backend", backend])
        .args(extra)
        .args(["--listen", &format!("10.201.0.1:{port}")])
        .args(["--listen", &format!("[fd00:201::1]:{port}")]);
    if backend == "xdp" {
        c.args(["--interface", &format!("{}-s0", ns.name)]);
    }
    let file = std::fs::File::create(log).unwrap();
    let child = c
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("spawn meridian");
    let mut guard = ChildGuard::terminating(child, "meridian");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = guard.try_wait() {
            panic!(
                "meridian --backend {backend} exited: {s}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let mut q = ns.in_cli(&meridian_binary());
        q.args(["query", &format!("10.201.0.1:{port}"), "-n", "1"])
            .args(["--timeout", "0.3"]);
        if run_bounded(q, Duration::from_secs(10)).status.success() {
            return guard;
        }
        assert!(
            Instant::now() < deadline,
            "meridian --backend {backend} never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
