//! The HTTP listener end to end: `/metrics` from a real disciplined server checked with
//! `promtool check metrics` (Debian `prometheus`), `/api/<command>` with the same data as the
//! control socket, and changing requests refused without the token and accepted with it.
//!
//! Loopback only; the server is killed by PID on every path; waits have deadlines that only
//! guard against a hang.

// Integration tests run on real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    answered, api, fakes, http, run_meridian, skip_notice, start, wait_synced, FakeUpstream,
    Server, ServerOpts,
};

const PROMTOOL: &str = "/usr/bin/promtool";

#[test]
fn metrics_pass_promtool_and_the_api_matches_the_socket() {
    let f = fakes(42);
    let refs: Vec<&FakeUpstream> = f.iter().collect();
    let s = start(&refs, None);
    wait_synced(&s);
    assert!(answered(&s));

    let (status, text) = http(s.http, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "{text}");
    for needle in [
        "meridian_build_info{version=\"0.1.0\",backend=\"udp",
        "meridian_synchronized 1\n",
        "meridian_stratum 2\n",
        "# TYPE meridian_requests_received_total counter\n",
        "meridian_requests_received_total{worker=\"0\"} ",
        "meridian_serving 1\n",
    ] {
        assert!(text.contains(needle), "{needle}:\n{text}");
    }
    for g in &f {
        assert!(
            text.contains(&format!("meridian_source_reach{{source=\"{}\"}} ", g.addr)),
            "{text}"
        );
    }
    assert!(text.contains("state=\"selected\"} 1\n"), "{text}");
    assert!(
        !text.contains("127.0.0.1\""),
        "no per-client labels:\n{text}"
    );
    if Path::new(PROMTOOL).exists() {
        let mut child = Command::new(PROMTOOL)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics: {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        skip_notice(
            "promtool check metrics: /usr/bin/promtool missing (apt-get install prometheus)",
        );
    }

    // The API gives what the socket gives.
    let (status, t) = api(s.http, "GET", "/api/tracking", &[], "");
    assert_eq!((status, t["ok"].as_bool()), (200, Some(true)), "{t}");
    let sock = s.sock.display().to_string();
    let out = run_meridian(
        &["tracking", "--json", "--control", &sock],
        Duration::from_secs(20),
    );
    let via_socket: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    for key in ["status", "stratum", "reference_id", "leap"] {
        assert_eq!(t["data"][key], via_socket[key], "{key}");
    }
    let (_, c) = api(s.http, "GET", "/api/clients?sort=last&limit=3", &[], "");
    assert_eq!(c["data"]["clients"][0]["address"], "127.0.0.1", "{c}");
    let (_, src) = api(s.http, "GET", "/api/sources", &[], "");
    assert_eq!(src["data"].as_array().map(Vec::len), Some(3), "{src}");
    let (status, e) = api(s.http, "GET", "/api/nonsense", &[], "");
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("unknown-command"))
    );
    let (status, e) = api(s.http, "GET", "/api/clients?limit=many", &[], "");
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("bad-request"))
    );

    // Without a token file every changing request is refused, whatever it carries.
    let (status, e) = api(
        s.http,
        "POST",
        "/api/serving",
        &["Authorization: Bearer x"],
        "{\"on\":false}",
    );
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (403, Some("denied")),
        "{e}"
    );
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no [control] token-file"));
    let (status, _) = api(s.http, "GET", "/api/serving?on=false", &[], "");
    assert_eq!(status, 405);
    assert!(answered(&s), "still serving");
}

#[test]
fn changing_requests_need_the_token() {
    let f = fakes(43);
    let refs: Vec<&FakeUpstream> = f.iter().collect();
    let s = start(&refs, Some("t0ken-for-the-test"));
    let off = "{\"on\":false}";
    for headers in [
        &[][..],
        &["Authorization: Bearer wrong"],
        &["Authorization: t0ken-for-the-test"],
    ] {
        let (status, e) = api(s.http, "POST", "/api/serving", headers, off);
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (403, Some("denied")),
            "{headers:?}: {e}"
        );
    }
    assert!(answered(&s), "a refused serving off changed nothing");
    let auth = ["Authorization: Bearer t0ken-for-the-test"];
    let (status, v) = api(s.http, "POST", "/api/serving", &auth, off);
    assert_eq!(
        (status, v["data"]["serving"].as_bool()),
        (200, Some(false)),
        "{v}"
    );
    assert!(!answered(&s), "answered while serving off");
    let (_, m) = http(s.http, "GET", "/metrics", &[], "");
    assert!(m.contains("meridian_serving 0\n"), "{m}");
    let (status, v) = api(s.http, "POST", "/api/serving", &auth, "{\"on\":true}");
    assert_eq!(
        (status, v["data"]["serving"].as_bool()),
        (200, Some(true)),
        "{v}"
    );
    assert!(answered(&s), "not answered after serving on");
    let (status, v) = api(s.http, "POST", "/api/sync-now", &auth, "");
    assert_eq!(status, 200, "{v}");
    let (status, v) = api(s.http, "POST", "/api/reload", &auth, "");
    assert_eq!(
        (status, v["data"]["reloaded"].as_bool()),
        (200, Some(true)),
        "{v}"
    );
    let (status, e) = api(s.http, "POST", "/api/serving", &auth, "[1]");
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("bad-request")),
        "{e}"
    );
}

#[test]
fn an_explicit_http_address_in_use_stops_the_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut opts = ServerOpts::new("udp");
    opts.extra = vec![
        "--control".into(),
        String::new(),
        "--http".into(),
        addr.to_string(),
    ];
    let e = Server::start(&opts).err().expect("a start-up error");
    assert!(e.contains(&format!("control http {addr}")), "{e}");
    // A name is not an address.
    opts.extra = vec!["--http".into(), "localhost:8123".into()];
    let e = Server::start(&opts).err().expect("a start-up error");
    assert!(e.contains("--http: expected IP:PORT"), "{e}");
}
