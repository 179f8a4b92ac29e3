//! A server with its HTTP listener (`--http`) on a free loopback port, fake upstreams and
//! optionally a token file; one-shot HTTP/1.1 requests to it (tests/metrics.rs, tests/web.rs).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{
    exchange, ntp_now, request, temp_file, FakeBehaviour, FakeUpstream, Server, ServerOpts,
};

/// A loopback TCP port free a moment ago.
pub fn free_tcp() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One HTTP/1.1 request; the status and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    (status, body.to_owned())
}

pub fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, text) = http(addr, method, path, headers, body);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, v)
}

pub struct Started {
    pub server: Server,
    pub http: SocketAddr,
    pub sock: PathBuf,
    files: Vec<PathBuf>,
}

impl Drop for Started {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// meridian with `fakes` as sources (polled every 250 ms), a control socket, the HTTP
/// listener on a free port and, with `token`, a token file.
pub fn start(fakes: &[&FakeUpstream], token: Option<&str>) -> Started {
    let text = super::source_tables(fakes.iter().copied(), -2, true);
    let config = temp_file("metrics.toml", &text);
    let sock = temp_file("metrics.sock", "");
    std::fs::remove_file(&sock).unwrap();
    let mut files = vec![config.clone(), sock.clone()];
    let mut last = String::new();
    for _ in 0..5 {
        let http = free_tcp();
        let mut opts = ServerOpts::new("udp");
        opts.extra = vec![
            "--config".into(),
            config.display().to_string(),
            "--control".into(),
            sock.display().to_string(),
            "--http".into(),
            http.to_string(),
        ];
        if let Some(t) = token {
            let tf = temp_file("token", &format!("{t}\n"));
            files.push(tf.clone());
            let cfg = format!("[control]\ntoken-file = \"{}\"\n{text}", tf.display());
            std::fs::write(&config, cfg).unwrap();
        }
        match Server::start(&opts) {
            Ok(server) => {
                return Started {
                    server,
                    http,
                    sock,
                    files,
                }
            }
            Err(e) if e.contains("in use") => last = e,
            Err(e) => panic!("server did not start: {e}"),
        }
    }
    panic!("no free HTTP port after 5 tries: {last}");
}

pub fn fakes(net: u8) -> Vec<FakeUpstream> {
    (2..=4)
        .map(|h| FakeUpstream::start(Ipv4Addr::new(127, 0, net, h), FakeBehaviour::offset(0.1)))
        .collect()
}

/// Waits until the API says synchronised.
pub fn wait_synced(s: &Started) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, t) = api(s.http, "GET", "/api/tracking", &[], "");
        if t["data"]["status"] == "synchronised" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not synchronised: {t}\n{}",
            s.server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn answered(s: &Started) -> bool {
    exchange(
        s.server.addr(),
        &request(4, 3, ntp_now()),
        Duration::from_secs(1),
    )
    .is_some()
}
