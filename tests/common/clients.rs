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

/// One ntplib request (`version`) to `target`: the reply's fields as ntplib read them
/// (`stratum`, `version`, `mode`, `leap`, `offset`, `delay`, `ref_id`, `orig_time`).
pub fn ntplib_request(python: &str, target: SocketAddr, version: u8) -> serde_json::Value {
    const SCRIPT: &str = r#"
import json, sys, ntplib
host, port, version = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = ntplib.NTPClient().request(host, port=port, version=version, timeout=2)
print(json.dumps({"stratum": r.stratum, "version": r.version, "mode": r.mode,
                  "leap": r.leap, "offset": r.offset, "delay": r.delay,
                  "ref_id": ntplib.ref_id_to_text(r.ref_id, r.stratum),
                  "orig_time": r.orig_time}))
"#;
    let out = run_bounded(
        Command::new(python).args([
            "-c",
            SCRIPT,
            &target.ip().to_string(),
            &target.port().to_string(),
            &version.to_string(),
        ]),
        Duration::from_secs(15),
    )
    .expect("running python");
    assert!(out.success(), "ntplib v{version} failed: {}", out.all());
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("ntplib output is not JSON ({e}): {}", out.all()))
}
