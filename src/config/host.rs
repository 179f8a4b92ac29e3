//! The rules that need this host: addresses configured here, cores this process may use,
//! interfaces and directories that exist, the capabilities a mode needs; and the warnings for
//! keys that have no effect in the chosen setup. Nothing here binds a served port, resolves a
//! name or sends a packet: `meridian validate` runs it without starting anything.

use std::net::{SocketAddr, UdpSocket};

use super::{BackendKind, ClockMode, Config, Problems, XdpMode};

/// What this host offers, gathered once (and replaced in tests).
#[derive(Clone, Debug)]
pub struct HostFacts {
    /// Core ids this process may run on.
    pub cores: Vec<usize>,
    /// Whether an interface of this name exists.
    pub interface_exists: fn(&str) -> bool,
    /// Whether an address can be bound here (checked with port 0, never the served port).
    pub address_usable: fn(&SocketAddr) -> bool,
    /// Whether the process may set the clock (CAP_SYS_TIME).
    pub may_set_clock: bool,
    /// Whether this build has the Linux-only parts (the `linux_io` cfg): the io-uring and xdp
    /// backends and `clock.mode = "system"`. Without them only `udp` (portable) remains.
    pub linux_io: bool,
}

impl HostFacts {
    /// The facts of the machine this process runs on.
    pub fn here() -> HostFacts {
        HostFacts {
            cores: core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id)
                .collect(),
            interface_exists: |name| std::path::Path::new("/sys/class/net").join(name).exists(),
            address_usable: |addr| {
                addr.ip().is_unspecified() || UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).is_ok()
            },
            may_set_clock: crate::sys::timex::has_cap_sys_time(),
            linux_io: cfg!(linux_io),
        }
    }
}

/// Why `clock.mode = "system"` cannot run on this host, if it cannot: it exists in Linux
/// builds only (`linux`: the `linux_io` cfg) and needs CAP_SYS_TIME.
pub fn system_mode_refusal(linux: bool, may_set_clock: bool) -> Option<&'static str> {
    if !linux {
        Some(
            "\"system\" adjusts the OS clock with clock_adjtime, which only Linux builds do (not \
             this one: another system, or a Linux build made with --cfg meridian_portable); \
             \"virtual\" never touches it",
        )
    } else if !may_set_clock {
        Some(
            "\"system\" adjusts the OS clock and needs the CAP_SYS_TIME capability (run as \
             root, or `setcap cap_sys_time+ep` on the binary, or AmbientCapabilities=\
             CAP_SYS_TIME under systemd); \"virtual\" never touches it",
        )
    } else {
        None
    }
}

impl Config {
    /// Problems that make the configuration unusable on this host (`errors`) and keys that
    /// have no effect as configured (`warnings`).
    pub(super) fn host_problems(
        &self,
        host: &HostFacts,
        errors: &mut Problems,
        warnings: &mut Problems,
    ) {
        let s = &self.server;
        for addr in &s.listen {
            if !(host.address_usable)(addr) {
                errors.add(
                    "server.listen",
                    format!("{} is not an address of this host", addr.ip()),
                );
            }
        }
        for core in &s.cores {
            if !host.cores.contains(core) {
                errors.add(
                    "server.cores",
                    format!(
                        "core {core} is not available to this process (available: {:?})",
                        host.cores
                    ),
                );
            }
        }
        if !host.linux_io {
            let backend = match s.backend {
                BackendKind::IoUring => Some("io-uring"),
                BackendKind::Xdp => Some("xdp"),
                BackendKind::Udp | BackendKind::Auto => None,
            };
            if let Some(backend) = backend {
                errors.add(
                    "server.backend",
                    format!(
                        "\"{backend}\" cannot run: {}; use \"udp\" or \"auto\"",
                        crate::io::ONLY_PORTABLE_UDP
                    ),
                );
            }
        }
        let xdp_possible = matches!(s.backend, BackendKind::Xdp | BackendKind::Auto);
        if xdp_possible && host.linux_io {
            for name in &s.interface {
                if (host.interface_exists)(name) {
                    continue;
                }
                let missing = format!("no interface {name:?} on this host");
                if s.backend == BackendKind::Xdp {
                    errors.add("server.interface", missing);
                } else {
                    // auto falls back to io-uring or udp, and says so when it starts.
                    warnings.add(
                        "server.interface",
                        format!("{missing}: auto will not use xdp"),
                    );
                }
            }
        }
        if !xdp_possible {
            let backend = match s.backend {
                BackendKind::Udp => "udp",
                _ => "io-uring",
            };
            if !s.interface.is_empty() {
                warnings.add(
                    "server.interface",
                    format!("has no effect with backend = \"{backend}\" (only xdp uses it)"),
                );
            }
            if !s.queues.is_empty() {
                warnings.add(
                    "server.queues",
                    format!("has no effect with backend = \"{backend}\" (only xdp uses it)"),
                );
            }
            if s.xdp_mode != XdpMode::Auto {
                warnings.add(
                    "server.xdp-mode",
                    format!("has no effect with backend = \"{backend}\" (only xdp uses it)"),
                );
            }
        }
        if s.workers > host.cores.len() && !host.cores.is_empty() && s.backend != BackendKind::Xdp {
            warnings.add(
                "server.workers",
                format!(
                    "{} workers on {} available core(s): workers will share cores",
                    s.workers,
                    host.cores.len()
                ),
            );
        }
        let c = &self.clock;
        match c.mode {
            ClockMode::System => {
                if let Some(why) = system_mode_refusal(host.linux_io, host.may_set_clock) {
                    errors.add("clock.mode", why.to_owned());
                }
                if let Some(path) = &c.drift_file {
                    let dir = path
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or(std::path::Path::new("."));
                    if !dir.is_dir() {
                        errors.add(
                            "clock.drift-file",
                            format!("directory {} does not exist", dir.display()),
                        );
                    }
                }
            }
            ClockMode::Virtual => {
                if c.drift_file.is_some() {
                    warnings.add(
                        "clock.drift-file",
                        "has no effect with mode = \"virtual\" (only system mode keeps a drift \
                         file)"
                            .to_owned(),
                    );
                }
            }
        }
        if self.sources.is_empty() && c.local_fallback {
            warnings.add(
                "clock.local-fallback",
                "has no effect without [[source]] tables (the local clock is served anyway)"
                    .to_owned(),
            );
        }
        if self.clients.max == 0 && self.server.interleaved {
            warnings.add(
                "clients.max",
                "0 also turns interleaved mode off (it keeps its state in the client table); \
                 set server.interleaved = false to say so"
                    .to_owned(),
            );
        }
        self.auth.host_check(&self.sources, errors, warnings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            cores: vec![0, 1],
            interface_exists: |n| n == "eth0",
            address_usable: |a| a.ip().is_loopback() || a.ip().is_unspecified(),
            may_set_clock: false,
            linux_io: true,
        }
    }

    fn check(text: &str) -> (Vec<String>, Vec<String>) {
        check_on(&facts(), text)
    }

    fn check_on(host: &HostFacts, text: &str) -> (Vec<String>, Vec<String>) {
        let c = Config::parse(text, "t.toml").unwrap();
        let (mut e, mut w) = (Problems::default(), Problems::default());
        c.host_problems(host, &mut e, &mut w);
        let words = |p: Problems| p.0.into_iter().map(|p| format!("{}: {}", p.key, p.message));
        (words(e).collect(), words(w).collect())
    }

    #[test]
    fn host_errors() {
        let (e, w) = check(
            "[server]\nlisten = [\"127.0.0.1:123\", \"192.0.2.10:123\"]\ncores = [1, 2]\n\
             backend = \"xdp\"\ninterface = [\"eth0\", \"eth9\"]\n[clock]\nmode = \"system\"\n\
             drift-file = \"/nonexistent-dir/drift\"\n",
        );
        assert_eq!(
            e,
            [
                "server.listen: 192.0.2.10 is not an address of this host",
                "server.cores: core 2 is not available to this process (available: [0, 1])",
                "server.interface: no interface \"eth9\" on this host",
                "clock.mode: \"system\" adjusts the OS clock and needs the CAP_SYS_TIME \
                 capability (run as root, or `setcap cap_sys_time+ep` on the binary, or \
                 AmbientCapabilities=CAP_SYS_TIME under systemd); \"virtual\" never touches it",
                "clock.drift-file: directory /nonexistent-dir does not exist",
            ]
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn system_mode_needs_linux_and_the_capability() {
        assert_eq!(system_mode_refusal(true, true), None);
        assert!(system_mode_refusal(true, false)
            .unwrap()
            .contains("CAP_SYS_TIME"));
        assert!(system_mode_refusal(false, true)
            .unwrap()
            .contains("only Linux builds"));
    }

    #[test]
    fn a_portable_build_refuses_what_only_linux_builds_have() {
        let portable = HostFacts {
            linux_io: false,
            may_set_clock: true,
            ..facts()
        };
        for (name, text) in [
            ("io-uring", "[server]\nbackend = \"io-uring\"\n"),
            ("xdp", "[server]\nbackend = \"xdp\"\ninterface = \"eth0\"\n"),
        ] {
            let (e, _) = check_on(&portable, text);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with(&format!(
                    "server.backend: \"{name}\" cannot run: this build"
                )),
                "{e:?}"
            );
            assert!(e[0].contains("use \"udp\" or \"auto\""), "{e:?}");
        }
        // Interfaces are not looked up: no xdp here to use them.
        let (e, _) = check_on(&portable, "[server]\ninterface = \"eth9\"\n");
        assert!(e.is_empty(), "{e:?}");
        let (e, _) = check_on(&portable, "[clock]\nmode = \"system\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("clock.mode: \"system\" adjusts the OS clock"),
            "{e:?}"
        );
        assert!(e[0].contains("meridian_portable"), "{e:?}");
        // What a portable build has raises nothing.
        let (e, w) = check_on(&portable, "[server]\nbackend = \"udp\"\n");
        assert!(e.is_empty() && w.is_empty(), "{e:?} {w:?}");
    }

    #[test]
    fn keys_without_effect_are_warned_about() {
        let (e, w) = check(
            "[server]\nbackend = \"udp\"\ninterface = \"eth9\"\nqueues = [0]\n\
             xdp-mode = \"native\"\nworkers = 3\n[clock]\ndrift-file = \"/x/drift\"\n\
             local-fallback = true\n",
        );
        assert!(
            e.is_empty(),
            "a missing interface is no error when unused: {e:?}"
        );
        assert_eq!(
            w,
            [
                "server.interface: has no effect with backend = \"udp\" (only xdp uses it)",
                "server.queues: has no effect with backend = \"udp\" (only xdp uses it)",
                "server.xdp-mode: has no effect with backend = \"udp\" (only xdp uses it)",
                "server.workers: 3 workers on 2 available core(s): workers will share cores",
                "clock.drift-file: has no effect with mode = \"virtual\" (only system mode \
                 keeps a drift file)",
                "clock.local-fallback: has no effect without [[source]] tables (the local \
                 clock is served anyway)",
            ]
        );
        // With auto, a missing interface means no xdp, said when it starts.
        let (e, w) = check("[server]\ninterface = \"eth9\"\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            w,
            ["server.interface: no interface \"eth9\" on this host: auto will not use xdp"]
        );
        // No client table: no interleaved mode either, said unless asked for.
        let (_, w) = check("[clients]\nmax = 0\n");
        assert_eq!(
            w,
            [
                "clients.max: 0 also turns interleaved mode off (it keeps its state in the client \
              table); set server.interleaved = false to say so"
            ]
        );
        let (_, w) = check("[server]\ninterleaved = false\n[clients]\nmax = 0\n");
        assert!(w.is_empty(), "{w:?}");
        // The defaults raise nothing.
        let (e, w) = check("");
        assert!(e.is_empty() && w.is_empty(), "{e:?} {w:?}");
    }

    #[test]
    fn this_host_has_loopback_and_its_own_cores() {
        let here = HostFacts::here();
        assert!(!here.cores.is_empty());
        assert!((here.address_usable)(&"127.0.0.1:123".parse().unwrap()));
        assert!((here.address_usable)(&"0.0.0.0:123".parse().unwrap()));
        // TEST-NET-1 (RFC 5737) is never configured on a test machine.
        assert!(!(here.address_usable)(&"192.0.2.10:123".parse().unwrap()));
    }
}
