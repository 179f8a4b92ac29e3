//! The server's end of the control socket: opening it (the default path may be left out with
//! a warning, an explicit one may not), the management thread that answers it, and the
//! requests it hands to the main thread.
//!
//! The management thread answers `clients` and `serving` itself, through the workers'
//! [`WorkerControl`] (the workers lend their tables and take up policies between batches:
//! they never wait for it). What needs the [`Server`] (counters, sources, tracking, sync-now,
//! reload) goes to the main thread as a [`MainRequest`], taken up in its 50 ms loop.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::protocol::{parse_request, response_line, Command, Failure, MAX_REQUEST};
use crate::config::ControlSocket;
use crate::server::{Server, WorkerControl};
use crate::sys::peercred::peer_cred;

/// How long a connection may take to send its request, or to read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the management thread waits for the main thread's answer.
const MAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// The bound control socket; its file is removed when dropped (if it is still ours).
pub struct ControlListener {
    listener: UnixListener,
    path: PathBuf,
    /// The uid owning the socket file: it (and root) may send changing requests.
    owner: u32,
    ino: u64,
}

impl ControlListener {
    /// Opens the socket `setting` asks for: None when it is off, or when the default path
    /// cannot be used (one warning says why); an explicit path that cannot be used is an error.
    pub fn open(setting: &ControlSocket) -> anyhow::Result<Option<ControlListener>> {
        match setting {
            ControlSocket::Off => Ok(None),
            ControlSocket::Explicit(path) => ControlListener::bind(path, false)
                .map(Some)
                .with_context(|| format!("control socket {}", path.display())),
            ControlSocket::Default(path) => match ControlListener::bind(path, true) {
                Ok(l) => Ok(Some(l)),
                Err(e) => {
                    tracing::warn!(
                        "control socket {}: {e:#}; running without one (set [control] socket \
                         or --control PATH for another)",
                        path.display()
                    );
                    Ok(None)
                }
            },
        }
    }

    /// Binds `path` (creating its directory when `make_dir`), mode 0660. A socket file left
    /// by a server that is gone is replaced; one a running server answers on is not.
    fn bind(path: &Path, make_dir: bool) -> anyhow::Result<ControlListener> {
        if let (true, Some(dir)) = (make_dir, path.parent()) {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_socket() => {
                anyhow::bail!("exists and is not a socket")
            }
            Ok(_) => match UnixStream::connect(path) {
                Ok(_) => anyhow::bail!("in use: another server answers on it"),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).context("removing a stale socket")?;
                }
                Err(e) => return Err(e).context("checking the socket already there"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .context("setting its mode to 0660")?;
        let meta = std::fs::metadata(path)?;
        listener.set_nonblocking(true)?;
        tracing::info!(
            "control socket {} (mode 0660; changes by uid {} or root)",
            path.display(),
            meta.uid()
        );
        Ok(ControlListener {
            listener,
            path: path.to_owned(),
            owner: meta.uid(),
            ino: meta.ino(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        // Another server may have replaced a socket it thought stale: remove only ours.
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The main thread's answer to a [`MainRequest`].
pub struct Reply(SyncSender<Result<Value, Failure>>);

impl Reply {
    /// Sends the answer (dropped if the management thread gave up waiting).
    pub fn send(self, result: Result<Value, Failure>) {
        let _ = self.0.try_send(result);
    }
}

/// What the management thread asks of the main thread.
pub enum MainRequest {
    /// `sources`, `sourcestats`, `tracking`, `serverstats`, `sync-now`: answered by
    /// [`MainRequest::answer`].
    Server(Command, Reply),
    /// `reload`: the main thread reloads its configuration file and replies.
    Reload(Reply),
}

impl MainRequest {
    /// Answers a request that needs only the server.
    pub fn answer(command: &Command, server: &Server) -> Result<Value, Failure> {
        let encode = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| Failure::new("failed", format!("encoding the answer: {e}")))
        };
        match command {
            Command::Sources | Command::Sourcestats => {
                encode(serde_json::to_value(server.report().sources))
            }
            Command::Serverstats => encode(serde_json::to_value(server.report())),
            Command::Tracking => {
                let mut t = server.tracking();
                t.reference_name = if t.reference_id == "7F7F0101" {
                    Some("LOCAL".to_owned())
                } else {
                    server
                        .report()
                        .sources
                        .iter()
                        .find(|s| s.state == "selected")
                        .map(|s| s.address.ip().to_string())
                };
                encode(serde_json::to_value(t))
            }
            Command::SyncNow => {
                if server.sync_now() {
                    Ok(serde_json::json!({"sync_now": true}))
                } else {
                    Err(Failure::new(
                        "failed",
                        "no [[source]] configured: nothing to poll",
                    ))
                }
            }
            other => Err(Failure::new(
                "failed",
                format!("{} is not answered by the main thread", other.name()),
            )),
        }
    }
}

/// The main thread's end: requests to take up in its loop.
pub struct ControlRequests {
    rx: Receiver<MainRequest>,
}

impl ControlRequests {
    /// The next waiting request, without blocking.
    pub fn next(&self) -> Option<MainRequest> {
        self.rx.try_recv().ok()
    }
}

/// The running management thread; stopped and joined by [`ControlThread::stop`] (or when
/// dropped), which removes the socket.
pub struct ControlThread {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ControlThread {
    /// Starts the thread `meridian-control` answering on `listener`.
    pub fn spawn(
        listener: ControlListener,
        workers: Arc<WorkerControl>,
    ) -> anyhow::Result<(ControlThread, ControlRequests)> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Handler {
            workers,
            main: tx,
            owner: listener.owner,
        };
        let stop_thread = stop.clone();
        let handle = std::thread::Builder::new()
            .name("meridian-control".into())
            .spawn(move || accept_loop(&listener, &handler, &stop_thread))
            .context("spawning the management thread")?;
        Ok((
            ControlThread {
                stop,
                handle: Some(handle),
            },
            ControlRequests { rx },
        ))
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for ControlThread {
    fn drop(&mut self) {
        self.halt();
    }
}

fn accept_loop(listener: &ControlListener, handler: &Handler, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = handler.connection(stream) {
                    tracing::debug!("control: connection ended: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                tracing::warn!("control: accept: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// What the management thread answers with.
struct Handler {
    workers: Arc<WorkerControl>,
    main: Sender<MainRequest>,
    owner: u32,
}

impl Handler {
    /// Answers the requests of one connection, one per line, until it closes.
    fn connection(&self, stream: UnixStream) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        // Unknown credentials may read, never change.
        let uid = peer_cred(&stream).ok().map(|c| c.uid);
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream).take(MAX_REQUEST as u64 + 1);
        let mut line = String::new();
        loop {
            line.clear();
            reader.set_limit(MAX_REQUEST as u64 + 1);
            let n = match reader.read_line(&mut line) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    let bad = Err(Failure::new("bad-request", "the request is not UTF-8"));
                    writeln!(writer, "{}", response_line(&bad))?;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(());
            }
            if n > MAX_REQUEST {
                let long = Err(Failure::new(
                    "bad-request",
                    format!("a request line is at most {MAX_REQUEST} bytes"),
                ));
                writeln!(writer, "{}", response_line(&long))?;
                return Ok(());
            }
            if line.trim().is_empty() {
                continue;
            }
            let result = parse_request(line.trim()).and_then(|c| self.run(&c, uid));
            writeln!(writer, "{}", response_line(&result))?;
        }
    }

    fn run(&self, command: &Command, uid: Option<u32>) -> Result<Value, Failure> {
        if command.changes() && !uid.is_some_and(|u| u == 0 || u == self.owner) {
            tracing::info!(
                "control: {} refused to uid {}",
                command.name(),
                uid.map_or("unknown".to_owned(), |u| u.to_string())
            );
            return Err(Failure::new(
                "denied",
                format!(
                    "{} changes the server: only its owner (uid {}) or root may ask",
                    command.name(),
                    self.owner
                ),
            ));
        }
        match command {
            Command::Clients { sort, limit } => self
                .workers
                .clients(*sort, *limit)
                .map_err(|e| Failure::new("unavailable", format!("{e:#}")))
                .and_then(|r| {
                    serde_json::to_value(r).map_err(|e| Failure::new("failed", e.to_string()))
                }),
            Command::Serving { on } => {
                self.workers.set_serving(*on);
                // Answered once every worker runs on it, so the next request sees it.
                self.workers
                    .settle()
                    .map_err(|e| Failure::new("unavailable", format!("{e:#}")))?;
                Ok(serde_json::json!({"serving": self.workers.serving()}))
            }
            Command::Reload => self.ask_main(MainRequest::Reload),
            other => self.ask_main(|reply| MainRequest::Server(other.clone(), reply)),
        }
    }

    /// Hands a request to the main thread and waits (bounded) for its answer.
    fn ask_main(&self, make: impl FnOnce(Reply) -> MainRequest) -> Result<Value, Failure> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.main
            .send(make(Reply(tx)))
            .map_err(|_| Failure::new("unavailable", "the server is stopping"))?;
        rx.recv_timeout(MAIN_TIMEOUT).unwrap_or_else(|_| {
            Err(Failure::new(
                "unavailable",
                "the server's main thread did not answer in time",
            ))
        })
    }
}
