//! Where the formatted lines go: stderr (the default), a file (appended to, reopened on
//! SIGHUP so logrotate works) or the system logger (`/dev/log`, RFC 3164 datagrams, which
//! journald reads too).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogConfig;

type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

enum Output {
    Stderr,
    File { path: PathBuf, file: Mutex<File> },
    Syslog(Mutex<Syslog>),
}

/// The destination of the log lines, shared by the formatting layer (a `MakeWriter`).
#[derive(Clone)]
pub struct LogWriter(Arc<Output>);

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogWriter {
    /// The destination `[log]` names: `file`, else `syslog`, else stderr.
    pub fn open(config: &LogConfig) -> anyhow::Result<LogWriter> {
        let output = if let Some(path) = &config.file {
            let file = open_append(path)
                .map_err(|e| anyhow::anyhow!("log.file {}: {e}", path.display()))?;
            Output::File {
                path: path.clone(),
                file: Mutex::new(file),
            }
        } else if config.syslog {
            let formatter = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_DAEMON,
                hostname: None,
                process: "meridian".into(),
                pid: std::process::id(),
            };
            let logger = syslog::unix(formatter)
                .map_err(|e| anyhow::anyhow!("log.syslog: no system logger at /dev/log: {e}"))?;
            Output::Syslog(Mutex::new(logger))
        } else {
            Output::Stderr
        };
        Ok(LogWriter(Arc::new(output)))
    }

    /// True for stderr on a terminal (colours), false elsewhere.
    pub fn ansi(&self) -> bool {
        matches!(*self.0, Output::Stderr) && std::io::IsTerminal::is_terminal(&io::stderr())
    }

    /// False for the system logger, which stamps each line itself.
    pub fn timestamps(&self) -> bool {
        !matches!(*self.0, Output::Syslog(_))
    }

    /// Opens the log file again (after logrotate renamed it); nothing for other destinations.
    /// On failure the old file is kept.
    pub fn reopen(&self) -> io::Result<()> {
        if let Output::File { path, file } = &*self.0 {
            let new = open_append(path)?;
            *file.lock().unwrap_or_else(|e| e.into_inner()) = new;
        }
        Ok(())
    }
}

/// One line's writer: the destination and the line's level (the syslog severity).
pub struct LineWriter<'a> {
    output: &'a Output,
    level: Level,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.output {
            Output::Stderr => io::stderr().write(buf),
            Output::File { file, .. } => file.lock().unwrap_or_else(|e| e.into_inner()).write(buf),
            Output::Syslog(logger) => {
                let text = String::from_utf8_lossy(buf);
                let line = text.trim();
                let mut logger = logger.lock().unwrap_or_else(|e| e.into_inner());
                let sent = match self.level {
                    Level::ERROR => logger.err(line),
                    Level::WARN => logger.warning(line),
                    Level::INFO => logger.info(line),
                    _ => logger.debug(line),
                };
                sent.map_err(io::Error::other)?;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.output {
            Output::Stderr => io::stderr().flush(),
            Output::File { file, .. } => file.lock().unwrap_or_else(|e| e.into_inner()).flush(),
            Output::Syslog(_) => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            output: &self.0,
            level: Level::INFO,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            output: &self.0,
            level: *meta.level(),
        }
    }
}

/// The line's time, left out for the system logger.
#[derive(Clone, Copy)]
pub struct LogTimer(pub bool);

impl tracing_subscriber::fmt::time::FormatTime for LogTimer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        if self.0 {
            tracing_subscriber::fmt::time::SystemTime.format_time(w)
        } else {
            Ok(())
        }
    }
}
