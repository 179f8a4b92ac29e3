//! Attaching to a veth pair inside a private network namespace: each mode, detach on drop,
//! detach when the owning process is killed, the device-bound hardware variant, and real
//! traffic reaching the host's stack while the program is attached.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use meridian_bpf::{ifindex, Error, ProgramConfig, TimestampMode, XdpMode, XdpProgram, XskMap};
use meridian_testkit::ChildGuard;

/// A namespace holding the veth pair `va` <-> `vb`, both up.
fn veth_ns(test: &str, tag: &str) -> Option<Netns> {
    if skip_without_bpf(test) {
        return None;
    }
    let ns = netns(test, tag)?;
    ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    ns.ip(&["link", "set", "va", "up"]);
    ns.ip(&["link", "set", "vb", "up"]);
    Some(ns)
}

/// The first line of `ip link show dev va` and whether a program is listed.
fn xdp_state(ns: &str) -> (String, String) {
    let out = ip_in(ns, &["link", "show", "dev", "va"]);
    let first = out.lines().next().unwrap_or_default().to_string();
    (first, out)
}

/// Waits (at most 2 s: the kernel may release a closed link from deferred work on a busy
/// machine) until no XDP program is attached to `va`.
fn assert_detached(ns: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let (first, all) = xdp_state(ns);
        if !first.contains(" xdp") && !all.contains("prog/xdp") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no XDP program expected on va:\n{all}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn attach_and_detach_in_each_mode() {
    let Some(ns) = veth_ns("attach_and_detach_in_each_mode", "modes") else {
        return;
    };
    let name = ns.name().to_owned();
    on_own_thread(move || {
        enter_netns(&name);
        let ifx = ifindex("va").unwrap();
        let map = XskMap::create(1).unwrap();
        let prog = XdpProgram::load(&ProgramConfig::new(&[123, 4123]), &map).unwrap();
        let id = prog.id().unwrap();
        assert_detached(&name);
        for (mode, used, word) in [
            (XdpMode::Generic, XdpMode::Generic, " xdpgeneric "),
            (XdpMode::Native, XdpMode::Native, " xdp "),
            (XdpMode::Auto, XdpMode::Native, " xdp "), // veth supports native
        ] {
            let link = prog
                .attach(ifx, mode)
                .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            assert_eq!(link.mode(), used);
            assert_eq!(link.ifindex(), ifx);
            let (first, all) = xdp_state(&name);
            assert!(
                first.contains(word),
                "{mode:?}: expected `{word}` in:\n{all}"
            );
            assert!(
                all.contains(&format!("prog/xdp id {id} name meridian_xdp")),
                "{all}"
            );
            // The interface is taken: a second link fails with a typed error.
            match prog.attach(ifx, used) {
                Err(e @ Error::Attach { .. }) => {
                    let errno = e.raw_os_error();
                    assert!(
                        matches!(errno, Some(libc::EBUSY) | Some(libc::EEXIST)),
                        "{e}"
                    );
                }
                other => panic!("second attach should fail, got {other:?}"),
            }
            drop(link);
            assert_detached(&name);
        }
        // Attaching to a missing interface fails cleanly.
        assert!(matches!(
            prog.attach(999_999, XdpMode::Auto),
            Err(Error::Attach { .. })
        ));
    });
}

/// The child half of `link_detaches_when_the_owner_is_killed`: attaches, says so, waits.
#[test]
fn child_attach_and_wait() {
    let Ok(ns) = std::env::var("MERIDIAN_BPF_TEST_CHILD_NS") else {
        return; // only meaningful when started by the parent test
    };
    enter_netns(&ns);
    let map = XskMap::create(1).unwrap();
    let prog = XdpProgram::load(&ProgramConfig::new(&[123]), &map).unwrap();
    let _link = prog
        .attach(ifindex("va").unwrap(), XdpMode::Native)
        .unwrap();
    println!("ATTACHED {}", prog.id().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn link_detaches_when_the_owner_is_killed() {
    let Some(ns) = veth_ns("link_detaches_when_the_owner_is_killed", "kill") else {
        return;
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_attach_and_wait",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MERIDIAN_BPF_TEST_CHILD_NS", ns.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = ChildGuard::new(child);
    let mut id = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // The harness prints "test child_attach_and_wait ... " on the same line first.
        if let Some((_, rest)) = line.split_once("ATTACHED ") {
            id = Some(rest.trim().to_string());
            break;
        }
    }
    let id = id.expect("child attached");
    let (_, all) = xdp_state(ns.name());
    assert!(all.contains(&format!("prog/xdp id {id}")), "{all}");
    child.kill(); // SIGKILL (by PID, then reaped): no destructors run in the child
                  // The kernel releases the link when the last fd closes; allow a moment for teardown.
    for _ in 0..50 {
        if !xdp_state(ns.name()).1.contains("prog/xdp") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_detached(ns.name());
}

#[test]
fn hardware_variant_is_device_bound() {
    let Some(ns) = veth_ns("hardware_variant_is_device_bound", "hw") else {
        return;
    };
    let name = ns.name().to_owned();
    on_own_thread(move || {
        enter_netns(&name);
        let ifx = ifindex("va").unwrap();
        let map = XskMap::create(1).unwrap();
        let mut cfg = ProgramConfig::new(&[123, 4123]);
        cfg.timestamp = TimestampMode::Hardware { ifindex: ifx };
        let prog = match XdpProgram::load(&cfg, &map) {
            Ok(p) => p,
            Err(Error::KfuncMissing(k)) => {
                common::skip_notice(
                    "hardware_variant_is_device_bound",
                    &format!("kernel has no {k}"),
                );
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(prog.dev_bound_ifindex(), Some(ifx));
        // Device-bound programs run only in native mode, and cannot be test-run (EINVAL).
        match prog.attach(ifx, XdpMode::Generic) {
            Err(e @ Error::Attach { .. }) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL)),
            other => panic!("generic attach of a dev-bound program: {other:?}"),
        }
        let err = prog.test_run(&udp4(123)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
        let link = prog.attach(ifx, XdpMode::Auto).unwrap();
        assert_eq!(link.mode(), XdpMode::Native);
        let (first, all) = xdp_state(&name);
        assert!(first.contains(" xdp "), "{all}");
        drop(link);
        assert_detached(&name);
        // Bound to va, it cannot go on vb.
        let vb = ifindex("vb").unwrap();
        assert!(prog.attach(vb, XdpMode::Native).is_err());
    });
}

/// Host traffic (ARP, neighbour discovery, UDP to served and other ports, both families)
/// still reaches the kernel with the program attached and no AF_XDP socket in the map.
fn traffic_passes(test: &str, tag: &str, hardware: bool) {
    if skip_without_bpf(test) {
        return;
    }
    let Some(pair) = veth_pair(test, tag, [10, 200, 0], [0xfd00, 0x6d62, 0, 0]) else {
        return;
    };
    let (sname, cname) = (pair.server.name().to_owned(), pair.client.name().to_owned());
    let test = test.to_string();
    on_own_thread(move || {
        enter_netns(&sname);
        let ifx = ifindex("va").unwrap();
        let map = XskMap::create(1).unwrap();
        let Some(prog) = load_test_program(&test, &map, ifx, hardware) else {
            return;
        };
        let _link = prog.attach(ifx, XdpMode::Native).unwrap();
        let servers: Vec<(SocketAddr, UdpSocket)> = [
            "10.200.0.1:12300",
            "10.200.0.1:12301",
            "[fd00:6d62::1]:12300",
            "[fd00:6d62::1]:12301",
        ]
        .iter()
        .map(|a| {
            let addr: SocketAddr = a.parse().unwrap();
            let s = UdpSocket::bind(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            (addr, s)
        })
        .collect();
        enter_netns(&cname);
        let client4 = UdpSocket::bind("10.200.0.2:0").unwrap();
        let client6 = UdpSocket::bind("[fd00:6d62::2]:0").unwrap();
        for (addr, server) in &servers {
            let client = if addr.is_ipv4() { &client4 } else { &client6 };
            let msg = format!("hello {addr}");
            let mut buf = [0u8; 128];
            // The first datagram may wait on ARP / neighbour discovery: retry a few times.
            let got = (0..15).find_map(|_| {
                client.send_to(msg.as_bytes(), addr).unwrap();
                server.recv_from(&mut buf).ok()
            });
            let (n, from) = got.unwrap_or_else(|| panic!("{addr}: nothing received"));
            assert_eq!(&buf[..n], msg.as_bytes(), "{addr}: payload intact");
            assert_eq!(from.ip(), client.local_addr().unwrap().ip());
        }
    });
    drop(pair);
}

#[test]
fn host_traffic_passes_with_program_attached() {
    traffic_passes("host_traffic_passes_with_program_attached", "sw", false);
}

#[test]
fn host_traffic_passes_with_hardware_variant_attached() {
    traffic_passes(
        "host_traffic_passes_with_hardware_variant_attached",
        "hw",
        true,
    );
}
