//! Logs end to end: `[log] file` gets the lines, and after the file is renamed (as logrotate
//! does) a SIGHUP makes the server write a new one.
//!
//! Everything stays on 127.0.0.0/8 and in a private temporary directory; the server is killed
//! by PID on every path, every wait has a deadline that only guards against a hang.

// Integration tests run on real time.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MERIDIAN: &str = env!("CARGO_BIN_EXE_meridian");

/// A private temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("meridian-log-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server process, killed (by its PID) when dropped.
struct Serving(Option<Child>);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until the file at `path` contains `needle`; its text.
fn wait_for(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {} within 20 s:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_log_file_gets_the_lines_and_is_reopened_on_sighup() {
    let dir = TempDir::new("file");
    let log = dir.0.join("meridian.log");
    let config = dir.0.join("meridian.toml");
    std::fs::write(
        &config,
        format!("[log]\nfile = {:?}\n", log.display().to_string()),
    )
    .unwrap();
    let child = Command::new(MERIDIAN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "udp",
            "--http",
            "",
        ])
        .arg("--control")
        .arg(dir.0.join("control.sock"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Serving(Some(child));
    let text = wait_for(&log, "meridian serving");
    assert!(
        text.contains(" INFO meridian::server: meridian serving"),
        "{text}"
    );

    // logrotate: rename, then SIGHUP; the new lines go to a new file at the same path.
    let rotated = dir.0.join("meridian.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = server.0.as_ref().map_or(0, |c| c.id() as i32);
    // SAFETY: kill(2) on the PID of the child this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let text = wait_for(&log, "reload: done");
    assert!(
        !text.contains("meridian serving"),
        "the old lines are in the new file: {text}"
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("reload: done"), "{old}");

    // Nothing went to stderr.
    let mut child = server.0.take().unwrap();
    child.kill().unwrap();
    let stderr = child.wait_with_output().unwrap().stderr;
    assert!(stderr.is_empty(), "{}", String::from_utf8_lossy(&stderr));
}

#[macro_use]
mod common;

/// Waits until the server's stderr contains `needle`.
fn wait_stderr(server: &common::Server, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !server.stderr_text().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} logged within {within:?}\n--- stderr\n{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_falseticker_and_the_loss_of_every_source_are_alerts() {
    use common::{FakeBehaviour, FakeUpstream, Server, ServerOpts};
    use std::net::Ipv4Addr;
    let mut fakes: Vec<FakeUpstream> = (2..=4)
        .map(|h| FakeUpstream::start(Ipv4Addr::new(127, 0, 46, h), FakeBehaviour::offset(0.2)))
        .collect();
    fakes.push(FakeUpstream::start(
        Ipv4Addr::new(127, 0, 46, 5),
        FakeBehaviour::offset(-3.0),
    ));
    let text = String::from("[clock]\nholdover = 0\n") + &common::source_tables(&fakes, -2, true);
    let dir = TempDir::new("alerts");
    let config = dir.0.join("meridian.toml");
    std::fs::write(&config, text).unwrap();
    let mut opts = ServerOpts::new("udp");
    opts.extra = vec![
        "--config".into(),
        config.display().to_string(),
        "--control".into(),
        dir.0.join("control.sock").display().to_string(),
        "--http".into(),
        String::new(),
    ];
    let server = Server::must_start(&opts);
    wait_stderr(&server, "discipline: synchronised", Duration::from_secs(30));
    wait_stderr(&server, "event=\"falseticker\"", Duration::from_secs(30));
    assert!(server.stderr_text().contains(&format!(
        "WARN meridian::discipline::sources::network: discipline: source {} falseticker",
        fakes[3].addr
    )));

    // Every upstream stops: synchronisation is lost (no holdover), one warning.
    fakes.clear();
    wait_stderr(&server, "event=\"sync_lost\"", Duration::from_secs(60));
    assert_eq!(
        server.stderr_text().matches("event=\"sync_lost\"").count(),
        1
    );
}
