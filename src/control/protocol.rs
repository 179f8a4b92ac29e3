//! The control protocol, version 1: one JSON object per line each way (see docs/control.md).
//!
//! ```text
//! → {"version":1,"command":"clients","sort":"drops","limit":10}
//! ← {"version":1,"ok":true,"data":{...}}
//! ← {"version":1,"ok":false,"error":{"code":"denied","message":"..."}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::server::ClientSort;

/// The protocol version this build speaks.
pub const VERSION: u64 = 1;
/// Longest request line accepted, bytes.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Rows `clients` returns when the request does not say.
pub const DEFAULT_CLIENTS: usize = 20;
/// Lines `log` returns when the request does not say.
pub const DEFAULT_LOG_LINES: usize = 50;

/// A request's command and its arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// The sources, with their last samples and statistics.
    Sources,
    /// The same rows (the CLI shows the statistics columns).
    Sourcestats,
    /// The system's tracking values.
    Tracking,
    /// The busiest clients of the merged client tables.
    Clients {
        #[serde(default)]
        sort: ClientSort,
        #[serde(default = "default_limit")]
        limit: usize,
    },
    /// The counters, in total and per worker.
    Serverstats,
    /// Starts or stops answering NTP requests.
    Serving { on: bool },
    /// Polls every source now with a burst of quick polls.
    SyncNow,
    /// Reloads the configuration file (as SIGHUP).
    Reload,
    /// The last `n` lines of the ring of recent log lines, oldest first.
    Log {
        #[serde(default = "default_log_lines")]
        n: usize,
    },
}

/// Every command's name.
pub const NAMES: [&str; 9] = [
    "sources",
    "sourcestats",
    "tracking",
    "clients",
    "serverstats",
    "serving",
    "sync-now",
    "reload",
    "log",
];

fn default_limit() -> usize {
    DEFAULT_CLIENTS
}

fn default_log_lines() -> usize {
    DEFAULT_LOG_LINES
}

impl Command {
    /// The command's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Sources => "sources",
            Command::Sourcestats => "sourcestats",
            Command::Tracking => "tracking",
            Command::Clients { .. } => "clients",
            Command::Serverstats => "serverstats",
            Command::Serving { .. } => "serving",
            Command::SyncNow => "sync-now",
            Command::Reload => "reload",
            Command::Log { .. } => "log",
        }
    }

    /// True for a command that changes the server: only the socket's owner (or root) may
    /// send it.
    pub fn changes(&self) -> bool {
        matches!(
            self,
            Command::Serving { .. } | Command::SyncNow | Command::Reload
        )
    }

    /// The request line for this command (without the newline).
    pub fn to_line(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("version".into(), VERSION.into());
        }
        v.to_string()
    }
}

/// Why a request failed: a stable code for scripts and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `bad-request`, `unsupported-version`, `unknown-command`, `denied`, `unavailable` or
    /// `failed`.
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: &str, message: impl Into<String>) -> Failure {
        Failure {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// The command of one request line, or why it is not one.
pub fn parse_request(line: &str) -> Result<Command, Failure> {
    let mut v: Value = serde_json::from_str(line)
        .map_err(|e| Failure::new("bad-request", format!("not a JSON object: {e}")))?;
    let Some(map) = v.as_object_mut() else {
        return Err(Failure::new("bad-request", "not a JSON object"));
    };
    match map.remove("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        Some(other) => {
            return Err(Failure::new(
                "unsupported-version",
                format!("version {other} is not spoken here; this server speaks version {VERSION}"),
            ))
        }
        None => {
            return Err(Failure::new(
                "bad-request",
                format!("no \"version\" (this server speaks version {VERSION})"),
            ))
        }
    }
    let name = match map.get("command") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Failure::new("bad-request", "\"command\" is not a string")),
        None => return Err(Failure::new("bad-request", "no \"command\"")),
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    let command = serde_json::from_value::<Command>(v).map_err(|e| {
        let message = e.to_string();
        if !NAMES.contains(&name.as_str()) {
            Failure::new("unknown-command", format!("unknown command {name:?}"))
        } else {
            Failure::new("bad-request", format!("{name}: {message}"))
        }
    })?;
    // A misspelt argument is an error, not a default (serde cannot deny unknown fields of
    // an internally tagged unit variant): every key must be one the command has.
    let known = serde_json::to_value(&command).unwrap_or(Value::Null);
    if let Some(k) = keys.iter().find(|k| known.get(k.as_str()).is_none()) {
        return Err(Failure::new(
            "bad-request",
            format!("{name}: unknown field `{k}`"),
        ));
    }
    Ok(command)
}

/// The response line (without the newline) for a result.
pub fn response_line(result: &Result<Value, Failure>) -> String {
    let v = match result {
        Ok(data) => serde_json::json!({"version": VERSION, "ok": true, "data": data}),
        Err(f) => serde_json::json!({"version": VERSION, "ok": false, "error": f}),
    };
    v.to_string()
}

/// A response line read back: the data, or the server's failure.
pub fn parse_response(line: &str) -> Result<Result<Value, Failure>, String> {
    #[derive(Deserialize)]
    struct Response {
        version: u64,
        ok: bool,
        #[serde(default)]
        data: Value,
        error: Option<Failure>,
    }
    let r: Response =
        serde_json::from_str(line).map_err(|e| format!("not a control response ({e})"))?;
    if r.version != VERSION {
        return Err(format!(
            "the server speaks control protocol version {}, this command {VERSION}",
            r.version
        ));
    }
    Ok(if r.ok {
        Ok(r.data)
    } else {
        Err(r
            .error
            .unwrap_or_else(|| Failure::new("failed", "no reason given")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for c in [
            Command::Sources,
            Command::Sourcestats,
            Command::Tracking,
            Command::Clients {
                sort: ClientSort::Drops,
                limit: 5,
            },
            Command::Serverstats,
            Command::Serving { on: false },
            Command::SyncNow,
            Command::Reload,
            Command::Log { n: 7 },
        ] {
            let line = c.to_line();
            assert!(line.contains("\"version\":1"), "{line}");
            assert!(
                line.contains(&format!("\"command\":\"{}\"", c.name())),
                "{line}"
            );
            assert!(NAMES.contains(&c.name()));
            assert_eq!(parse_request(&line), Ok(c));
        }
        assert_eq!(
            parse_request(r#"{"version":1,"command":"clients"}"#),
            Ok(Command::Clients {
                sort: ClientSort::Hits,
                limit: DEFAULT_CLIENTS
            })
        );
        assert_eq!(
            parse_request(r#"{"version":1,"command":"log"}"#),
            Ok(Command::Log {
                n: DEFAULT_LOG_LINES
            })
        );
    }

    #[test]
    fn bad_requests_are_named_never_a_panic() {
        let code = |line: &str| parse_request(line).unwrap_err().code;
        assert_eq!(code(""), "bad-request");
        assert_eq!(code("[1]"), "bad-request");
        assert_eq!(code("{\"command\":\"tracking\"}"), "bad-request");
        assert_eq!(
            code("{\"version\":2,\"command\":\"tracking\"}"),
            "unsupported-version"
        );
        assert_eq!(
            code("{\"version\":\"1\",\"command\":\"tracking\"}"),
            "unsupported-version"
        );
        assert_eq!(code("{\"version\":1}"), "bad-request");
        assert_eq!(code("{\"version\":1,\"command\":7}"), "bad-request");
        assert_eq!(
            code("{\"version\":1,\"command\":\"shutdown\"}"),
            "unknown-command"
        );
        let e = parse_request("{\"version\":1,\"command\":\"serving\"}").unwrap_err();
        assert_eq!(e.code, "bad-request");
        assert!(e.message.contains("missing field `on`"), "{e}");
        assert_eq!(
            code("{\"version\":1,\"command\":\"clients\",\"sort\":\"size\"}"),
            "bad-request"
        );
        assert_eq!(
            code("{\"version\":1,\"command\":\"tracking\",\"x\":1}"),
            "bad-request"
        );
        assert_eq!(
            code("{\"version\":1,\"command\":\"clients\",\"limit\":-1}"),
            "bad-request"
        );
        let e = parse_request("{\"version\":1,\"command\":\"clients\",\"limt\":3}");
        assert_eq!(e.unwrap_err().message, "clients: unknown field `limt`");
    }

    #[test]
    fn only_serving_sync_and_reload_change_anything() {
        assert!(Command::Serving { on: true }.changes());
        assert!(Command::SyncNow.changes() && Command::Reload.changes());
        assert!(!Command::Tracking.changes() && !Command::Serverstats.changes());
    }

    #[test]
    fn responses_round_trip() {
        let ok = Ok(serde_json::json!({"a": 1}));
        let line = response_line(&ok);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["version"].as_u64(), v["ok"].as_bool()),
            (Some(1), Some(true))
        );
        assert_eq!(parse_response(&line), Ok(ok));
        let err = Err(Failure::new("denied", "no"));
        assert_eq!(parse_response(&response_line(&err)), Ok(err));
        assert!(parse_response("nonsense").is_err());
        assert!(parse_response(r#"{"version":9,"ok":true}"#).is_err());
    }
}
