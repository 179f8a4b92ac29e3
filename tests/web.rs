//! The status page at `/` in a real browser: headless Chromium driven by Selenium from Python
//! (`tests/web_driver.py`, written to a temporary directory) against a server with three fake
//! upstreams. The rendered DOM must match `/api/tracking`, list the sources with a `*`, plot
//! points after a few polls; "Serving off" with the token must stop the NTP answers and
//! "Serving on" bring them back; no JavaScript console error. A screenshot is left in the
//! temporary directory and its path printed.
//!
//! Skipped (the testkit's notice; a failure under `MERIDIAN_REQUIRE_ALL=1`) without
//! `/usr/bin/chromium`, `/usr/bin/chromedriver` or python3's `selenium`. Loopback only; the
//! server and the driver are killed by PID on every path; every wait has a deadline.

// Integration tests run on real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    answered, api, counter, http, run_bounded, start, wait_synced, ChildGuard, FakeBehaviour,
    FakeUpstream, LineCollector,
};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DRIVER: &str = include_str!("web_driver.py");
const TOKEN: &str = "page-t0ken";

/// Why the browser test cannot run here, if it cannot.
fn missing() -> Option<String> {
    for p in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(p).exists() {
            return Some(format!(
                "{p} missing (apt-get install chromium chromium-driver)"
            ));
        }
    }
    let probe = run_bounded(
        Command::new("python3").args(["-c", "import selenium.webdriver"]),
        Duration::from_secs(20),
    );
    match probe {
        Ok(out) if out.success() => None,
        _ => Some("python3 selenium missing (pip install selenium)".to_owned()),
    }
}

/// The driver's next `WORD json` line, which must be `word`.
fn step(out: &LineCollector, word: &str, deadline: Instant, stderr: &LineCollector) -> Value {
    let left = deadline.saturating_duration_since(Instant::now());
    let line = out.recv_timeout(left).unwrap_or_else(|_| {
        panic!(
            "no {word} from the driver in time\n--- stdout\n{}\n--- stderr\n{}",
            out.text(),
            stderr.text()
        )
    });
    let (w, json) = line.split_once(' ').unwrap_or((&line, "null"));
    assert_eq!(
        w,
        word,
        "from the driver: {line}\n--- stderr\n{}",
        stderr.text()
    );
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn the_page_shows_the_server_and_its_buttons_change_it() {
    if let Some(why) = missing() {
        skip!("the browser test: {why}");
    }
    // The quiet one is selected; the two noisy ones are combined with it.
    let f: Vec<FakeUpstream> = [0.0, 0.0005, 0.0005]
        .iter()
        .zip(2..)
        .map(|(jitter, host)| {
            let behaviour = FakeBehaviour::offset(0.1).jitter(*jitter);
            FakeUpstream::start(Ipv4Addr::new(127, 0, 44, host), behaviour)
        })
        .collect();
    let refs: Vec<&FakeUpstream> = f.iter().collect();
    let s = start(&refs, Some(TOKEN));
    wait_synced(&s);
    // A client for the clients table.
    assert!(answered(&s), "not answered before the page");

    // The page and its assets come from the binary.
    let (status, page) = http(s.http, "GET", "/", &[], "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<script src=\"/app.js\">"), "{page}");
    for asset in ["/app.js", "/style.css"] {
        let (status, body) = http(s.http, "GET", asset, &[], "");
        assert!(status == 200 && !body.is_empty(), "{asset}: {status}");
    }

    let dir = std::env::temp_dir().join(format!("meridian-web-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("web_driver.py");
    std::fs::write(&script, DRIVER).unwrap();
    let screenshot = dir.join("page.png");
    let url = format!("http://{}/", s.http);
    let mut child = Command::new("python3")
        .arg(&script)
        .args([url.as_str(), TOKEN])
        .arg(&screenshot)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning python3");
    let mut stdin = child.stdin.take().unwrap();
    let out = LineCollector::new(child.stdout.take().unwrap());
    let err = LineCollector::new(child.stderr.take().unwrap());
    // SIGTERM first: the driver then quits Chromium itself.
    let mut driver = ChildGuard::terminating(child, "the Selenium driver");
    let deadline = Instant::now() + Duration::from_secs(120);

    // What the page shows is what the API says (asked again should the selection change
    // between the page's poll and the test's).
    step(&out, "READY", deadline, &err);
    let mut ask = |command: &str| {
        stdin.write_all(format!("{command}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    let (mut dom, mut t) = (Value::Null, Value::Null);
    for _ in 0..10 {
        ask("dom");
        dom = step(&out, "DOM", deadline, &err);
        t = api(s.http, "GET", "/api/tracking", &[], "").1["data"].take();
        if dom["reference_id"] == t["reference_id"] {
            break;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    let t = &t;
    assert_eq!(dom["status"], "synchronised", "{dom}");
    assert_eq!(dom["stratum"], t["stratum"].to_string(), "{dom}\n{t}");
    assert_eq!(dom["reference_id"], t["reference_id"], "{dom}\n{t}");
    let name = t["reference_name"].as_str().unwrap_or_default();
    assert_eq!(dom["reference_name"], format!("({name})"), "{dom}\n{t}");
    assert_eq!(dom["serving"], "serving", "{dom}");
    let rows = dom["sources"].as_array().unwrap();
    assert_eq!(rows.len(), f.len(), "{dom}");
    for fake in &f {
        let row = rows
            .iter()
            .find(|r| r[1] == fake.addr.to_string())
            .unwrap_or_else(|| panic!("{} not in the table: {dom}", fake.addr));
        assert!(
            ["*", "+", "-"].contains(&row[0].as_str().unwrap_or("")),
            "{row}"
        );
    }
    let selected = rows.iter().filter(|r| r[0] == "*").count();
    assert_eq!(selected, 1, "one selected source: {dom}");
    assert!(dom["points"].as_u64() >= Some(3), "{dom}");
    assert_eq!(dom["offset_paths"].as_u64(), Some(3), "{dom}");
    assert_eq!(dom["delay_paths"].as_u64(), Some(3), "{dom}");
    assert!(
        dom["received_rate"]
            .as_str()
            .unwrap_or("")
            .ends_with("total)"),
        "{dom}"
    );
    // The recent log panel has the start-up line, with its fields.
    let logged = dom["log"].as_array().unwrap();
    assert!(
        logged.iter().any(|row| row[1] == "INFO"
            && row[2] == "meridian::server"
            && row[3]
                .as_str()
                .is_some_and(|m| m.starts_with("meridian serving backend=udp"))),
        "no start-up line in the log panel: {dom}"
    );

    // "Serving off" with the token: the API says so, and NTP requests go unanswered.
    ask("off");
    let off = step(&out, "OFF", deadline, &err);
    assert_eq!(off["stored"], TOKEN, "the token is kept in sessionStorage");
    let (_, st) = api(s.http, "GET", "/api/serverstats", &[], "");
    assert_eq!(st["data"]["serving"], false, "{st}");
    assert!(!answered(&s), "answered after Serving off on the page");
    let (_, st) = api(s.http, "GET", "/api/serverstats", &[], "");
    assert!(
        counter(&st["data"], &["total", "dropped", "not_serving"]) >= 1,
        "{st}"
    );

    // "Serving on" restores it.
    ask("on");
    let on = step(&out, "ON", deadline, &err);
    assert_eq!(on["result"], "serving on", "{on}");
    let (_, st) = api(s.http, "GET", "/api/serverstats", &[], "");
    assert_eq!(st["data"]["serving"], true, "{st}");
    assert!(answered(&s), "not answered after Serving on on the page");

    // "Sync now" is taken.
    ask("sync");
    let sync = step(&out, "SYNC", deadline, &err);
    assert!(
        sync["result"]
            .as_str()
            .unwrap_or("")
            .contains("every source polled"),
        "{sync}"
    );

    // No JavaScript error on the way.
    ask("logs");
    let logs = step(&out, "LOGS", deadline, &err);
    let severe: Vec<&Value> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(severe.is_empty(), "console errors: {severe:?}");
    ask("quit");
    step(&out, "DONE", deadline, &err);
    let status = driver.wait_timeout(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "the driver: {status:?}\n{}",
        err.text()
    );
    assert!(screenshot.exists(), "no screenshot");
    println!("screenshot: {}", screenshot.display());
}
