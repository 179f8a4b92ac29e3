//! chronyd as the server under load: `local stratum 1` on 127.0.0.1 (the clock never touched,
//! `-x`), everything it writes in a temporary directory owned by the user it drops root to.
//! It serves interleaved mode (RFC 9769) by default, with kernel or daemon transmit stamps.

use std::fs::File;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_testkit::{free_port, is_root, ChildGuard};

use super::answers;

/// The chronyd binary (Debian's `chrony` package).
pub const CHRONYD: &str = "/usr/sbin/chronyd";

/// The configuration of a chronyd serving 127.0.0.0/8 on 127.0.0.1:`port`, as its own
/// stratum-1 source, without a command port or socket, its pid file in `dir`.
pub fn server_conf(port: u16, user: &str, dir: &Path) -> String {
    format!(
        "port {port}\n\
         bindaddress 127.0.0.1\n\
         allow 127.0.0.0/8\n\
         local stratum 1\n\
         cmdport 0\n\
         bindcmdaddress /\n\
         user {user}\n\
         pidfile {}\n",
        dir.join("chronyd.pid").display()
    )
}

/// A running chronyd server; stopped (SIGTERM, by PID) and its directory removed on drop.
pub struct Chronyd {
    pub port: u16,
    dir: PathBuf,
    guard: ChildGuard,
}

impl Chronyd {
    /// Starts chronyd on a free port of 127.0.0.1 and waits until it answers. `Err` says why it
    /// cannot run here (a reason to skip); one that starts but never answers fails the test.
    pub fn start() -> Result<Chronyd, String> {
        if !Path::new(CHRONYD).is_file() {
            return Err(format!(
                "{CHRONYD} is not installed (apt-get install chrony)"
            ));
        }
        if !is_root() {
            return Err("chronyd as a server needs root (it drops to its own user)".into());
        }
        let (user, uid, gid) = meridian_testkit::system_user(&["_chrony", "chrony"])
            .ok_or("no _chrony (or chrony) user in /etc/passwd")?;
        let mut last_log = String::new();
        // A port found free may be taken before chronyd binds it: try another.
        for attempt in 0..3 {
            let dir = std::env::temp_dir()
                .join(format!("loadgen-chronyd-{}-{attempt}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            chown(&dir, Some(uid), Some(gid)).unwrap();
            let port = free_port(true, false).expect("a free loopback port");
            let conf = dir.join("chrony.conf");
            std::fs::write(&conf, server_conf(port, &user, &dir)).unwrap();
            let child = Command::new(CHRONYD)
                .args(["-x", "-d", "-f"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(File::create(dir.join("chronyd.log")).unwrap())
                .stderr(File::create(dir.join("chronyd.stderr")).unwrap())
                .spawn()
                .expect("start chronyd");
            let mut guard = ChildGuard::terminating(child, "chronyd");
            // Ready when it answers (bounded: 30 s).
            let deadline = Instant::now() + Duration::from_secs(30);
            while guard.try_wait().is_none() && Instant::now() < deadline {
                if answers(port) {
                    return Ok(Chronyd { port, dir, guard });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            guard.stop();
            last_log = read_logs(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("chronyd never answered on 127.0.0.1:\n{last_log}");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What chronyd printed so far.
    pub fn log(&self) -> String {
        read_logs(&self.dir)
    }
}

fn read_logs(dir: &Path) -> String {
    ["chronyd.log", "chronyd.stderr"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("")
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        self.guard.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
