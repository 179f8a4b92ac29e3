//! The server's end of the control socket: opening it (the default path may be left out with
//! a warning, an explicit one may not), the management thread that answers it, and the
//! requests it hands to the main thread.
//!
//! The thread runs a tokio current-thread runtime (confined to it) that serves this socket and
//! the HTTP listener ([`super::http`]) alike, each connection a task.
//!
//! The management thread answers `clients` and `serving` itself, through the workers'
//! [`WorkerControl`] (the workers lend their tables and take up policies between batches:
//! they never wait for it). What needs the [`Server`] (counters, sources, tracking, sync-now,
//! reload) goes to the main thread as a [`MainRequest`], taken up in its 50 ms loop.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::http::HttpListener;
use super::protocol::{parse_request, response_line, Command, Failure, MAX_REQUEST};
use crate::config::ControlSocket;
use crate::server::{Server, WorkerControl};
use crate::sys::peercred::peer_cred;

/// How long a connection may take to send its request, or to read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Control socket connections served at once.
const MAX_CONNECTIONS: usize = 16;
/// How long the management thread waits for the main thread's answer.
const MAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
        // Taken over by the management thread's runtime, which needs it non-blocking.
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
pub struct Reply(tokio::sync::oneshot::Sender<Result<Value, Failure>>);

impl Reply {
    /// Sends the answer (dropped if the management thread gave up waiting).
    pub fn send(self, result: Result<Value, Failure>) {
        let _ = self.0.send(result);
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
    stop: Arc<tokio::sync::Notify>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ControlThread {
    /// Starts the thread `meridian-control` answering on `socket` and `http` (at least one).
    pub fn spawn(
        socket: Option<ControlListener>,
        http: Option<HttpListener>,
        workers: Arc<WorkerControl>,
    ) -> anyhow::Result<(ControlThread, ControlRequests)> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(tokio::sync::Notify::new());
        let handler = Arc::new(Handler {
            workers,
            main: tx,
            owner: socket.as_ref().map(|s| s.owner),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("starting the management thread's runtime")?;
        let stop_thread = stop.clone();
        let handle = std::thread::Builder::new()
            .name("meridian-control".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let unix = async {
                        match socket {
                            Some(l) => unix_loop(l, &handler).await,
                            None => std::future::pending().await,
                        }
                    };
                    let web = async {
                        match http {
                            Some(h) => h.serve(handler.clone()).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = unix => {}
                        _ = web => {}
                        _ = stop_thread.notified() => {}
                    }
                });
            })
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
        // notify_one keeps the permit if the thread is not waiting yet.
        self.stop.notify_one();
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

/// Accepts on the control socket until the runtime stops; the listener (and its file) goes
/// with it.
async fn unix_loop(listener: ControlListener, handler: &Arc<Handler>) {
    let owner = listener.owner;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let std_listener = match listener.listener.try_clone() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("control socket: {e}; no longer answered");
            return std::future::pending().await;
        }
    };
    let unix = match tokio::net::UnixListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("control socket: {e}; no longer answered");
            return std::future::pending().await;
        }
    };
    loop {
        match unix.accept().await {
            Ok((stream, _)) => {
                let uid = peer_cred(&stream).ok().map(|c| c.uid);
                let may_change = match uid {
                    Some(u) if u == 0 || u == owner => Ok(()),
                    None => Err(Failure::new(
                        "denied",
                        "changes the server: the caller's credentials are unknown (this build \
                         cannot read them), so only read-only requests are taken",
                    )),
                    Some(_) => Err(Failure::new(
                        "denied",
                        format!("changes the server: only its owner (uid {owner}) or root may ask"),
                    )),
                };
                let who = uid.map_or("unknown".to_owned(), |u| format!("uid {u}"));
                // Each connection is a task, so one that sends nothing holds up nobody; at
                // most MAX_CONNECTIONS at a time (others wait to be accepted).
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let talk = handler.connection(stream, &may_change, &who);
                    match tokio::time::timeout(IO_TIMEOUT * 4, talk).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!("control: connection ended: {e}"),
                        Err(_) => tracing::debug!("control: connection timed out"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!("control: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the management thread answers with (the socket and HTTP alike).
pub struct Handler {
    workers: Arc<WorkerControl>,
    main: Sender<MainRequest>,
    owner: Option<u32>,
}

impl Handler {
    /// Answers the requests of one connection, one per line, until it closes.
    async fn connection(
        &self,
        stream: tokio::net::UnixStream,
        may_change: &Result<(), Failure>,
        who: &str,
    ) -> std::io::Result<()> {
        let (read, mut writer) = stream.into_split();
        let mut reader = BufReader::new(read).take(MAX_REQUEST as u64 + 1);
        let mut line = String::new();
        loop {
            line.clear();
            reader.set_limit(MAX_REQUEST as u64 + 1);
            let n = match tokio::time::timeout(IO_TIMEOUT, reader.read_line(&mut line)).await {
                Err(_) => return Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    let bad = Err(Failure::new("bad-request", "the request is not UTF-8"));
                    writer
                        .write_all(format!("{}\n", response_line(&bad)).as_bytes())
                        .await?;
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
            };
            if n == 0 {
                return Ok(());
            }
            if n > MAX_REQUEST {
                let long = Err(Failure::new(
                    "bad-request",
                    format!("a request line is at most {MAX_REQUEST} bytes"),
                ));
                writer
                    .write_all(format!("{}\n", response_line(&long)).as_bytes())
                    .await?;
                return Ok(());
            }
            if line.trim().is_empty() {
                continue;
            }
            let result = match parse_request(line.trim()) {
                Ok(c) => self.run(&c, may_change, who).await,
                Err(f) => Err(f),
            };
            let answer = format!("{}\n", response_line(&result));
            tokio::time::timeout(IO_TIMEOUT, writer.write_all(answer.as_bytes()))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        }
    }

    /// Runs `command` for a caller whom `may_change` allows (or not) to change the server;
    /// `who` names the caller in the log.
    pub async fn run(
        &self,
        command: &Command,
        may_change: &Result<(), Failure>,
        who: &str,
    ) -> Result<Value, Failure> {
        if command.changes() {
            if let Err(f) = may_change {
                tracing::info!("control: {} refused to {who}", command.name());
                return Err(Failure::new(
                    &f.code,
                    format!("{} {}", command.name(), f.message),
                ));
            }
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
            Command::Reload => self.ask_main(MainRequest::Reload).await,
            Command::Log { n } => {
                let ring = &crate::log::RECENT;
                Ok(serde_json::json!({"capacity": ring.capacity(), "lines": ring.last(*n)}))
            }
            Command::Serverstats => {
                let mut stats = self
                    .ask_main(|reply| MainRequest::Server(Command::Serverstats, reply))
                    .await?;
                // Whether the workers answer: a page or a script reads it with the counters.
                if let Value::Object(map) = &mut stats {
                    map.insert("serving".into(), self.workers.serving().into());
                }
                Ok(stats)
            }
            other => {
                self.ask_main(|reply| MainRequest::Server(other.clone(), reply))
                    .await
            }
        }
    }

    /// True unless serving was switched off.
    pub fn serving(&self) -> bool {
        self.workers.serving()
    }

    /// The uid allowed to change the server over the socket (None without a socket).
    pub fn owner(&self) -> Option<u32> {
        self.owner
    }

    /// Hands a request to the main thread and waits (bounded) for its answer.
    async fn ask_main(&self, make: impl FnOnce(Reply) -> MainRequest) -> Result<Value, Failure> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.main
            .send(make(Reply(tx)))
            .map_err(|_| Failure::new("unavailable", "the server is stopping"))?;
        match tokio::time::timeout(MAIN_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Failure::new("unavailable", "the server is stopping")),
            Err(_) => Err(Failure::new(
                "unavailable",
                "the server's main thread did not answer in time",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("meridian-ctl-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_default_path_gives_way_an_explicit_one_does_not() {
        let d = dir("default");
        let path = d.join("sub/control.sock");
        // The default's directory is made; the socket is 0660 and removed when dropped.
        let first = ControlListener::open(&ControlSocket::Default(path.clone()))
            .unwrap()
            .expect("bound");
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        // Taken: the default is left out, an explicit path is an error.
        assert!(ControlListener::open(&ControlSocket::Default(path.clone()))
            .unwrap()
            .is_none());
        let e = ControlListener::open(&ControlSocket::Explicit(path.clone()))
            .err()
            .expect("in use");
        assert!(
            format!("{e:#}").ends_with("in use: another server answers on it"),
            "{e:#}"
        );
        drop(first);
        assert!(!path.exists());
        // A stale socket is replaced; a file that is not a socket is not touched.
        drop(UnixListener::bind(&path).unwrap());
        let again = ControlListener::open(&ControlSocket::Explicit(path.clone())).unwrap();
        assert!(again.is_some());
        drop(again);
        std::fs::write(&path, "not a socket").unwrap();
        let e = ControlListener::open(&ControlSocket::Explicit(path.clone()))
            .err()
            .expect("not a socket");
        assert!(
            format!("{e:#}").ends_with("exists and is not a socket"),
            "{e:#}"
        );
        assert!(ControlListener::open(&ControlSocket::Default(path.clone()))
            .unwrap()
            .is_none());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
        // An explicit path's directory is not made.
        let e = ControlListener::open(&ControlSocket::Explicit(d.join("none/c.sock")));
        assert!(e.is_err());
        assert!(ControlListener::open(&ControlSocket::Off)
            .unwrap()
            .is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_default_http_address_in_use_is_left_out() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(
            HttpListener::open(crate::config::ControlHttp::Default(addr), None)
                .unwrap()
                .is_none()
        );
        assert!(HttpListener::open(crate::config::ControlHttp::Explicit(addr), None).is_err());
        assert!(HttpListener::open(crate::config::ControlHttp::Off, None)
            .unwrap()
            .is_none());
    }
}
