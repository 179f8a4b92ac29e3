//! Logging: the ring of recent lines that the control plane serves (`log`, `/api/log`, the
//! web page), and the `tracing` layer that feeds it.
//!
//! The ring is a `Mutex<VecDeque>`: a line is formatted before the lock is taken, so the
//! critical section is a push and perhaps a pop. Log lines are not on the per-packet path.

mod output;

pub use output::{LogTimer, LogWriter};

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Lines the process-wide ring keeps.
pub const RING_LINES: usize = 500;

/// The process-wide ring of recent lines, fed by [`RingLayer`].
pub static RECENT: LogRing = LogRing::new(RING_LINES);

/// One log line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// UTC, RFC 3339 with milliseconds: `2026-12-04T21:58:51.123Z`.
    pub time: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The module that logged it (`meridian::discipline`).
    pub target: String,
    pub message: String,
    /// The other fields, in the order they were given (`event="sync_lost"`).
    #[serde(default)]
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// The value of the field `name`, if the line has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Display for LogLine {
    /// `TIME LEVEL target: message key=value ...`, one line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:>5} {}: {}",
            self.time, self.level, self.target, self.message
        )?;
        for (k, v) in &self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// A bounded ring of the last lines.
pub struct LogRing {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: usize,
}

impl LogRing {
    /// An empty ring that keeps the last `capacity` lines (at least one).
    pub const fn new(capacity: usize) -> LogRing {
        LogRing {
            lines: Mutex::new(VecDeque::new()),
            capacity: if capacity == 0 { 1 } else { capacity },
        }
    }

    /// Adds a line, dropping the oldest when full.
    pub fn push(&self, line: LogLine) {
        // A poisoned lock still holds whole lines: a push or a copy cannot leave it half done.
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() >= self.capacity {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `n` lines (all when fewer), oldest first.
    pub fn last(&self, n: usize) -> Vec<LogLine> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).cloned().collect()
    }

    /// The most lines it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The `tracing` layer that copies each event it is given into a ring. Put it under the
/// subscriber's filter, so the ring gets what the configured level lets through.
pub struct RingLayer {
    ring: &'static LogRing,
}

impl RingLayer {
    /// A layer feeding `ring` ([`RECENT`] in the server).
    pub fn new(ring: &'static LogRing) -> RingLayer {
        RingLayer { ring }
    }
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.ring.push(LogLine {
            time: rfc3339(SystemTime::now()),
            level: meta.level().to_string(),
            target: meta.target().to_owned(),
            message: fields.message,
            fields: fields.others,
        });
    }
}

/// An event's fields: `message` apart, the others as text.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.others
                .push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.others
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

/// `t` as UTC RFC 3339 with milliseconds (`1970-01-01T00:00:00.000Z` for a time before 1970).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let day = (secs / 86_400) as i64;
    let s = secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        crate::discipline::leap::date_string(day),
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    fn line(message: &str) -> LogLine {
        LogLine {
            time: String::new(),
            level: "INFO".into(),
            target: "t".into(),
            message: message.into(),
            fields: Vec::new(),
        }
    }

    #[test]
    fn log_ring_keeps_the_last_lines_oldest_first() {
        let ring = LogRing::new(3);
        assert!(ring.last(10).is_empty());
        for i in 0..5 {
            ring.push(line(&i.to_string()));
        }
        let text = |v: Vec<LogLine>| v.into_iter().map(|l| l.message).collect::<Vec<_>>();
        assert_eq!(text(ring.last(10)), ["2", "3", "4"]);
        assert_eq!(text(ring.last(2)), ["3", "4"]);
        assert!(ring.last(0).is_empty());
        assert_eq!(LogRing::new(0).capacity(), 1);
    }

    #[test]
    fn log_layer_records_level_target_message_and_fields() {
        static RING: LogRing = LogRing::new(10);
        let subscriber = tracing_subscriber::registry().with(RingLayer::new(&RING));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(event = "sync_lost", offset = 0.5, "lost sync: {}", "why");
            tracing::info!(target: "other", "plain");
        });
        let lines = RING.last(10);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].level, "WARN");
        assert_eq!(lines[0].target, module_path!());
        assert_eq!(lines[0].message, "lost sync: why");
        assert_eq!(lines[0].field("event"), Some("sync_lost"));
        assert_eq!(lines[0].field("offset"), Some("0.5"));
        assert!(lines[0]
            .to_string()
            .ends_with("lost sync: why event=sync_lost offset=0.5"));
        assert_eq!(
            (lines[1].target.as_str(), lines[1].fields.len()),
            ("other", 0)
        );
        assert_eq!(lines[1].time.len(), "2026-12-04T21:58:51.123Z".len());
    }

    #[test]
    fn log_times_are_utc_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_421_531_042);
        assert_eq!(rfc3339(t), "2026-12-04T21:58:51.042Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
