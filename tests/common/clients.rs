//! Clients other than raw datagrams: `meridian query` and Python's ntplib.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use meridian_testkit::run_bounded;

use super::server::run_meridian;

/// The best offset `meridian query --json -n SAMPLES` measures against `target` (None when
/// no sample was valid, e.g. while the server is unsynchronised).
pub fn query_offset(target: SocketAddr, samples: usize) -> Option<f64> {
    let out = run_meridian(
        &[
            "query",
            &target.to_string(),
            "--json",
            "-n",
            &samples.to_string(),
            "--interval",
            "0.05",
            "--timeout",
            "0.5",
        ],
        Duration::from_secs(10),
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    let r = &v[0];
    let best = r["best"].as_u64()? as usize;
    r["samples"][best]["offset"].as_f64()
}

/// A Python interpreter that can import ntplib.
pub fn python_with_ntplib() -> Result<String, String> {
    let mut tried = Vec::new();
    for py in ["python3", "/usr/bin/python3"] {
        match run_bounded(
            Command::new(py).args(["-c", "import ntplib"]),
            Duration::from_secs(10),
        ) {
            Ok(o) if o.success() => return Ok(py.to_owned()),
            Ok(o) => tried.push(format!("{py}: {}", o.stderr.lines().last().unwrap_or(""))),
            Err(e) => tried.push(format!("{py}: {e}")),
        }
    }
    Err(format!(
        "no python with ntplib ({}); install python3-ntplib",
        tried.join("; ")
    ))
}
