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

/// [`chronyd_query_args`] with `keyfile FILE` and `key ID` on the server line, when given.
pub fn chronyd_keyed_args(
    host: &str,
    port: u16,
    pid_path: &Path,
    key: Option<(&Path, u32)>,
) -> Vec<String> {
    let mut args = chronyd_query_args(host, port, pid_path);
    if let Some((file, id)) = key {
        args[3].push_str(&format!(" key {id}"));
        args.push(format!("keyfile {}", file.display()));
    }
    args
}

/// Runs `chronyd -Q` (see [`chronyd_query_args`]) against `target`; returns its output.
pub fn chronyd_query(target: SocketAddr) -> RunOutput {
    chronyd_query_keyed(target, None)
}

/// [`chronyd_query`] with a symmetric key: `keyfile FILE` and `key ID` on the server line
/// (the key file must be readable by chronyd's user, which it drops to).
pub fn chronyd_query_keyed(target: SocketAddr, key: Option<(&Path, u32)>) -> RunOutput {
    // One chronyd per key and file at a time: its pid file says which.
    let tag = key.map_or(String::new(), |(file, id)| {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        format!("-{id}-{name}")
    });
    let pid_path = std::env::temp_dir().join(format!(
        "meridian-itest-chronyd-{}-{}{tag}.pid",
        std::process::id(),
        target.port()
    ));
    let args = chronyd_keyed_args(&target.ip().to_string(), target.port(), &pid_path, key);
    let out = run_bounded(Command::new(CHRONYD).args(&args), Duration::from_secs(20))
        .expect("running chronyd");
    let _ = std::fs::remove_file(&pid_path);
    out
}

/// A fresh directory for one chronyd (its config, pid file, logs), owned by the user chronyd
/// drops to, named after `tag` and this process. `Err`: no such user here.
pub fn chronyd_dir(tag: &str) -> Result<std::path::PathBuf, String> {
    let (_, uid, gid) = meridian_testkit::system_user(&["_chrony", "chrony"])
        .ok_or("no _chrony (or chrony) user in /etc/passwd")?;
    let dir = std::env::temp_dir().join(format!(
        "meridian-itest-chronyd-{}-{tag}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The absolute offsets of the interleaved measurements in `lines`, smallest first.
pub fn interleaved_offsets(lines: &[Measurement]) -> Vec<f64> {
    let mut offsets: Vec<f64> = lines
        .iter()
        .filter(|m| m.interleaved)
        .map(|m| m.offset.abs())
        .collect();
    offsets.sort_by(f64::total_cmp);
    offsets
}

/// One line of a chronyd client's measurements.log.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    /// The reply was interleaved (`4I`), not basic (`4B`).
    pub interleaved: bool,
    /// The measured offset, seconds.
    pub offset: f64,
}

/// Runs a chronyd client (`-x`: the clock is never touched) with `xleave` against `target`,
/// polling every 1/16 s for `secs` seconds, and returns the measurements it logged. `Err`
/// says why chronyd cannot run here (a reason to skip).
pub fn chronyd_xleave(target: SocketAddr, secs: u32) -> Result<Vec<Measurement>, String> {
    chronyd_xleave_in(None, target, secs)
}

/// [`chronyd_xleave`] inside the network namespace `netns` (`ip netns exec`), or here.
pub fn chronyd_xleave_in(
    netns: Option<&str>,
    target: SocketAddr,
    secs: u32,
) -> Result<Vec<Measurement>, String> {
    if !Path::new(CHRONYD).is_file() {
        return Err(format!(
            "{CHRONYD} is not installed (apt-get install chrony)"
        ));
    }
    if !meridian_testkit::is_root() {
        return Err("chronyd needs root (it drops to its own user)".into());
    }
    let dir = chronyd_dir(&format!(
        "xleave-{}-{}",
        netns.unwrap_or("host"),
        target.port()
    ))?;
    let conf = dir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "server {} port {} xleave minpoll -4 maxpoll -4 iburst\n\
             logdir {d}\nlog measurements\npidfile {d}/chronyd.pid\ncmdport 0\n\
             bindcmdaddress /\n",
            target.ip(),
            target.port(),
            d = dir.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    // SIGTERM after `secs` (chronyd then flushes its logs), bounded again from outside.
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "timeout"]);
            c
        }
        None => Command::new("timeout"),
    };
    cmd.args(["-s", "TERM", &secs.to_string(), CHRONYD, "-x", "-d", "-f"])
        .arg(&conf);
    let out = run_bounded(&mut cmd, Duration::from_secs(u64::from(secs) + 10))
        .map_err(|e| format!("running chronyd: {e}"))?;
    let log = std::fs::read_to_string(dir.join("measurements.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<Measurement> = log.lines().filter_map(measurement).collect();
    assert!(
        !lines.is_empty(),
        "chronyd logged no measurement: {}",
        out.all()
    );
    Ok(lines)
}

/// Parses a measurements.log data line (`date time IP L St ... offset delay ... 4I K K`).
fn measurement(line: &str) -> Option<Measurement> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 17 || !f[0].starts_with("20") {
        return None;
    }
    let mode = f[f.len() - 3];
    Some(Measurement {
        interleaved: mode.ends_with('I'),
        offset: f[11].parse().ok()?,
    })
}
