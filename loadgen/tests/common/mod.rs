//! Helpers shared by the integration tests: child processes that are always stopped, and
//! bounded runs of the load generator.
#![allow(dead_code)]

use std::fs::File;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A child process stopped on every path: SIGTERM by PID, then SIGKILL after a grace period.
pub struct ProcessGuard {
    child: Option<Child>,
    name: &'static str,
}

impl ProcessGuard {
    pub fn new(child: Child, name: &'static str) -> Self {
        ProcessGuard {
            child: Some(child),
            name,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for the process to exit by itself; kills it after that.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                self.child = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Returns the exit status if it exited on its own.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(s)) = child.try_wait() {
            self.child = None;
            return Some(s);
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) with the PID of a child we spawned and have not reaped (so the PID
        // cannot have been reused); it only sends a signal.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        if let Some(s) = self.wait_for(Duration::from_secs(5)) {
            return Some(s);
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        None
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` to completion within `limit` (killed by PID otherwise, failing the test) and
/// returns its output. stdout/stderr go through files, so a chatty child never blocks on a
/// full pipe.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let dir = std::env::temp_dir().join(format!(
        "loadgen-run-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn");
    let mut guard = ProcessGuard::new(child, "child process");
    let started = Instant::now();
    let status = guard.wait_for(limit);
    let output = Output {
        status: status
            .unwrap_or_else(|| panic!("still running after {:?}; killed", started.elapsed())),
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    output
}
