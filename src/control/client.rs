//! The CLI's end of the control socket: one request, one answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::protocol::{parse_response, Command, Failure};

/// How long the CLI waits for the server (a `clients` read of big tables takes a moment).
const TIMEOUT: Duration = Duration::from_secs(15);
/// Longest answer read, bytes.
const MAX_RESPONSE: u64 = 64 << 20;

/// Why a command got no data.
#[derive(Debug)]
pub enum CallError {
    /// Nothing answers at the path (no file, refused, not allowed to connect).
    NoServer(std::io::Error),
    /// The server answered with a failure.
    Server(Failure),
    /// The conversation broke off or made no sense.
    Protocol(String),
}

impl CallError {
    /// One line for the operator about the server at `path`.
    pub fn line(&self, path: &Path) -> String {
        match self {
            CallError::NoServer(e) => {
                format!("no server at {} ({})", path.display(), io_reason(e))
            }
            CallError::Server(f) => format!("{} ({})", f.message, f.code),
            CallError::Protocol(m) => format!("{}: {m}", path.display()),
        }
    }
}

/// An I/O error in a few lowercase words, without "(os error N)".
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such socket".to_owned(),
        ConnectionRefused => "connection refused".to_owned(),
        PermissionDenied => "permission denied".to_owned(),
        TimedOut | WouldBlock => "timed out".to_owned(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_lowercase()
        }
    }
}

/// Sends `command` to the server at `path` and returns its data.
pub fn call(path: &Path, command: &Command) -> Result<Value, CallError> {
    let stream = UnixStream::connect(path).map_err(CallError::NoServer)?;
    let broke =
        |e: std::io::Error| CallError::Protocol(format!("connection broke: {}", io_reason(&e)));
    stream.set_read_timeout(Some(TIMEOUT)).map_err(broke)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(broke)?;
    let mut w = &stream;
    writeln!(w, "{}", command.to_line()).map_err(broke)?;
    let mut line = String::new();
    BufReader::new(&stream)
        .take(MAX_RESPONSE)
        .read_line(&mut line)
        .map_err(broke)?;
    if line.is_empty() {
        return Err(CallError::Protocol(
            "the server closed the connection without an answer".to_owned(),
        ));
    }
    parse_response(line.trim())
        .map_err(CallError::Protocol)?
        .map_err(CallError::Server)
}
