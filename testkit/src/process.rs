//! Child processes that never outlive their test: each is owned by a [`ChildGuard`] that kills
//! it by PID when dropped, so a failing assertion never leaves a process behind; every wait
//! has a deadline.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A child process stopped and reaped when the guard is dropped: at once with SIGKILL
/// ([`ChildGuard::new`]), or first asked with SIGTERM ([`ChildGuard::terminating`]). Signals
/// go to its PID only.
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    /// On drop: SIGTERM, this long to exit, then SIGKILL. `None`: SIGKILL at once.
    grace_on_drop: Option<Duration>,
}

impl ChildGuard {
    /// Killed with SIGKILL when dropped.
    pub fn new(child: Child) -> Self {
        ChildGuard {
            child: Some(child),
            name: "child process".to_owned(),
            grace_on_drop: None,
        }
    }

    /// Stopped with [`ChildGuard::stop`] when dropped (SIGTERM, up to 5 s, then SIGKILL);
    /// `name` says which process would not stop.
    pub fn terminating(child: Child, name: &str) -> Self {
        ChildGuard {
            child: Some(child),
            name: name.to_owned(),
            grace_on_drop: Some(Duration::from_secs(5)),
        }
    }

    /// The PID (0 once reaped by [`ChildGuard::kill`] or [`ChildGuard::stop`]).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) takes plain integers; the PID is our own unreaped child, so it
            // cannot have been recycled for another process.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// The exit status if the child has exited (without waiting).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Waits up to `timeout` for the child to exit; `None` on timeout (the child keeps running).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) => {}
                Err(e) => panic!("waiting for pid {}: {e}", child.id()),
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the child (if still running) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                // SAFETY: as in `signal`: our own child, not yet reaped.
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGKILL);
                }
                let _ = c.wait();
            }
        }
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Returns the exit status if it exited on its own.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.stop_within(Duration::from_secs(5))
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status if it exited on its
    /// own (also when it had exited before); the child is reaped either way.
    pub fn stop_within(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.child.as_ref()?;
        if let Some(st) = self.try_wait() {
            self.child = None;
            return Some(st);
        }
        self.signal(libc::SIGTERM);
        if let Some(st) = self.wait_timeout(grace) {
            self.child = None;
            return Some(st);
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        self.kill();
        None
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        match self.grace_on_drop {
            Some(grace) => {
                self.stop_within(grace);
            }
            None => self.kill(),
        }
    }
}

/// Collects the lines of a pipe in a thread: all of them kept, each also sent on a channel
/// (to wait for one line without polling).
pub struct LineCollector {
    lines: Arc<Mutex<Vec<String>>>,
    rx: Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

impl LineCollector {
    pub fn new(pipe: impl Read + Send + 'static) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let l = lines.clone();
        let thread = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        LineCollector {
            lines,
            rx,
            thread: Some(thread),
        }
    }

    /// The next line not yet received this way, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<String, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The lines so far, joined with newlines.
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until the pipe is closed (bounded), then returns everything.
    pub fn finish(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        self.text()
    }
}

/// The result of a bounded run of a program.
#[derive(Debug)]
pub struct RunOutput {
    /// `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Everything the program printed, for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "status {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with piped output, killing it (by PID) if it is still running after `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> std::io::Result<RunOutput> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut out = LineCollector::new(child.stdout.take().expect("piped stdout"));
    let mut err = LineCollector::new(child.stderr.take().expect("piped stderr"));
    let mut guard = ChildGuard::new(child);
    let status = guard.wait_timeout(timeout);
    let elapsed = started.elapsed();
    guard.kill();
    Ok(RunOutput {
        status,
        stdout: out.finish(Duration::from_secs(2)),
        stderr: err.finish(Duration::from_secs(2)),
        elapsed,
    })
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The first of `names` that /etc/passwd knows, with its uid and gid: the user a daemon under
/// test drops root to (chronyd: Debian's `_chrony`, Fedora's `chrony`), who must own the
/// directories it writes.
pub fn system_user(names: &[&str]) -> Option<(String, u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    names.iter().find_map(|name| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] == *name)
                .then(|| Some((name.to_string(), f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_a_system_user() {
        let (name, uid, gid) = system_user(&["no-such-user-here", "root"]).unwrap();
        assert_eq!((name.as_str(), uid, gid), ("root", 0, 0));
        assert_eq!(system_user(&["no-such-user-here"]), None);
    }

    fn alive(pid: i32) -> bool {
        // /proc/PID disappears once the process is reaped.
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn dropped_guards_leave_no_process() {
        let guard = ChildGuard::new(Command::new("sleep").arg("60").spawn().unwrap());
        let pid = guard.pid();
        assert!(alive(pid));
        drop(guard);
        assert!(!alive(pid), "killed and reaped on drop");
        // A terminating guard asks with SIGTERM, which `sleep` obeys.
        let guard = ChildGuard::terminating(Command::new("sleep").arg("60").spawn().unwrap(), "t");
        let pid = guard.pid();
        drop(guard);
        assert!(!alive(pid), "terminated and reaped on drop");
    }

    #[test]
    fn stop_reports_how_the_child_ended() {
        let mut g = ChildGuard::new(Command::new("true").spawn().unwrap());
        let st = g
            .wait_timeout(Duration::from_secs(10))
            .expect("`true` exits");
        assert!(st.success());
        assert_eq!(g.stop().map(|s| s.success()), Some(true), "exited before");
        assert_eq!(g.pid(), 0, "reaped");
        // A child that ignores SIGTERM is killed after the grace period: no status.
        let mut g = ChildGuard::new(
            Command::new("sh")
                .args(["-c", "trap '' TERM; echo ready; sleep 60"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let out = LineCollector::new(g.child_mut().stdout.take().unwrap());
        assert_eq!(out.recv_timeout(Duration::from_secs(10)).unwrap(), "ready");
        assert_eq!(g.stop_within(Duration::from_millis(200)), None);
    }

    #[test]
    fn bounded_runs_collect_output_and_stop_at_the_deadline() {
        let o = run_bounded(
            Command::new("sh").args(["-c", "echo one; echo two; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(o.status.and_then(|s| s.code()), Some(3), "{}", o.all());
        assert_eq!(o.stdout, "one\ntwo");
        assert_eq!(o.stderr, "err");
        let o = run_bounded(Command::new("sleep").arg("60"), Duration::from_millis(100)).unwrap();
        assert!(o.status.is_none(), "killed at the deadline: {}", o.all());
    }
}
