//! Kernel traffic still flows while the program is attached: UDP to another port, TCP to
//! port 123, ARP and neighbour discovery; only NTP reaches AF_XDP.

use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::Duration;

use meridian_testkit::{ChildGuard, LineCollector};

use crate::clients::query_ok;
use crate::common::counter;
use crate::server::XdpServer;
use crate::{c6, s6, C4, S4, S6};

const ECHO_SCRIPT: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
u = socket.socket(fam, socket.SOCK_DGRAM)
u.bind((sys.argv[1], 7777))
t = socket.socket(fam, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((sys.argv[1], 123))
t.listen(4)
u.settimeout(10)
print("ready", flush=True)
for _ in range(2):
    data, peer = u.recvfrom(100)
    u.sendto(b"echo:" + data, peer)
c, _ = t.accept()
c.sendall(b"tcp-ok")
c.close()
"#;

pub fn kernel_traffic_passes_while_attached() {
    let pair = setup!();
    let server = XdpServer::must_start(&pair, "native", &["10.203.0.1:123", "[fd00:203::1]:123"]);
    for (local, remote, srv) in [
        (
            SocketAddr::from((C4, 0)),
            SocketAddr::from((S4, 7777)),
            "10.203.0.1",
        ),
        (
            SocketAddr::from((c6(), 0)),
            SocketAddr::from((s6(), 7777)),
            S6,
        ),
    ] {
        let mut echo = pair.server.command("python3");
        echo.args(["-c", ECHO_SCRIPT, srv]);
        echo.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = echo.spawn().expect("python3 echo server");
        let ready = LineCollector::new(child.stdout.take().unwrap());
        let mut guard = ChildGuard::new(child);
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("echo server ready");
        let got = pair.client.on_thread(move || {
            let s = UdpSocket::bind(local).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut buf = [0u8; 100];
            let mut udp = None;
            for _ in 0..10 {
                s.send_to(b"hello", remote).unwrap();
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    udp = Some(buf[..n].to_vec());
                    break;
                }
            }
            s.send_to(b"hello", remote).unwrap();
            // TCP to the NTP port goes to the kernel too.
            let tcp = std::net::TcpStream::connect_timeout(
                &SocketAddr::new(remote.ip(), 123),
                Duration::from_secs(3),
            )
            .and_then(|mut c| {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut c, &mut v).map(|_| v)
            });
            (udp, tcp.ok())
        });
        assert_eq!(
            got.0.as_deref(),
            Some(&b"echo:hello"[..]),
            "UDP echo on 7777 via {srv}"
        );
        assert_eq!(
            got.1.as_deref(),
            Some(&b"tcp-ok"[..]),
            "TCP to port 123 via {srv}"
        );
        let _ = guard.wait_timeout(Duration::from_secs(5));
        guard.kill();
    }
    // Neighbour resolution (ARP, NDP) went through the kernel: both neighbours are known.
    let neigh = pair.client.output("ip", &["neigh", "show", "dev", "vb"]);
    assert!(neigh.contains("10.203.0.1 lladdr"), "{neigh}");
    assert!(neigh.contains("fd00:203::1 lladdr"), "{neigh}");
    // NTP still answered by XDP after all that.
    query_ok(&pair, "10.203.0.1", 1);
    let (report, _) = server.stop();
    assert_eq!(
        counter(&report, &["total", "answered"]),
        1,
        "only NTP reached AF_XDP: {report}"
    );
    assert_eq!(counter(&report, &["total", "dropped_total"]), 0, "{report}");
}
