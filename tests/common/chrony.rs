//! chronyd as an independent client: a one-shot `chronyd -Q` measurement (the clock is never
//! touched) and the offset it printed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use meridian_testkit::{run_bounded, RunOutput};

/// The chronyd binary the tests use as an independent client.
pub const CHRONYD: &str = "/usr/sbin/chronyd";

/// Parses "System clock wrong by -0.000004 seconds (ignored)" from chronyd -Q.
pub fn chrony_offset(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.contains("System clock wrong by "))?;
    let rest = line.split("System clock wrong by ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The arguments of a one-shot `chronyd -Q -t 10 'server HOST port N iburst maxsamples 4'`
/// (the clock untouched) with its own pid file, so it runs beside any other chronyd.
pub fn chronyd_query_args(host: &str, port: u16, pid_path: &Path) -> Vec<String> {
    vec![
        "-Q".into(),
        "-t".into(),
        "10".into(),
        format!("server {host} port {port} iburst maxsamples 4"),
        format!("pidfile {}", pid_path.display()),
    ]
}

/// Runs `chronyd -Q` (see [`chronyd_query_args`]) against `target`; returns its output.
pub fn chronyd_query(target: SocketAddr) -> RunOutput {
    let pid_path = std::env::temp_dir().join(format!(
        "meridian-itest-chronyd-{}-{}.pid",
        std::process::id(),
        target.port()
    ));
    let args = chronyd_query_args(&target.ip().to_string(), target.port(), &pid_path);
    let out = run_bounded(Command::new(CHRONYD).args(&args), Duration::from_secs(20))
        .expect("running chronyd");
    let _ = std::fs::remove_file(&pid_path);
    out
}
