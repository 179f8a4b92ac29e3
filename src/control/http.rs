//! The HTTP listener of the management plane (axum, on the management thread's runtime): the
//! status page at `/` (its assets embedded in the binary, from `src/control/web/`), the control
//! protocol's commands as JSON under `/api/<command>`, and `/metrics`.
//!
//! `GET /api/<command>?arg=value` runs a read-only command (arguments as in the protocol:
//! `/api/clients?sort=drops&limit=5`); `POST /api/<command>` with an optional JSON object of
//! arguments runs any command, and a changing one (`serving`, `sync-now`, `reload`) only with
//! `Authorization: Bearer <token>` matching `[control] token-file`: without a token file every
//! changing request is refused. The answer is the protocol's response object, with an HTTP
//! status for its error code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::format::{ServerStats, SourceRow};
use super::metrics::{self, MetricsInput};
use super::protocol::{parse_request, response_line, Command, Failure, VERSION};
use super::socket::Handler;
use crate::config::ControlHttp;
use crate::discipline::tracking::Tracking;

/// The bound HTTP listener and the token changing requests need.
pub struct HttpListener {
    listener: std::net::TcpListener,
    token: Option<String>,
}

impl HttpListener {
    /// Binds what `setting` asks for: None when off, or when the default address is taken
    /// (one warning); an explicit address that cannot be bound, or a token file that cannot be
    /// read, is an error.
    pub fn open(
        setting: ControlHttp,
        token_file: Option<&Path>,
    ) -> anyhow::Result<Option<HttpListener>> {
        let token = match token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        let bind = |addr: SocketAddr| -> anyhow::Result<HttpListener> {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            tracing::info!(
                "control http on {} (/ the status page, /api/<command>, /metrics; changing \
                 requests {})",
                listener.local_addr().unwrap_or(addr),
                if token.is_some() {
                    "with the token"
                } else {
                    "refused: no token-file"
                }
            );
            Ok(HttpListener {
                listener,
                token: token.clone(),
            })
        };
        match setting {
            ControlHttp::Off => Ok(None),
            ControlHttp::Explicit(addr) => bind(addr)
                .map(Some)
                .with_context(|| format!("control http {addr}")),
            ControlHttp::Default(addr) => match bind(addr) {
                Ok(l) => Ok(Some(l)),
                Err(e) => {
                    tracing::warn!(
                        "control http {addr}: {e:#}; running without it (set [control] http or \
                         --http ADDR:PORT for another)"
                    );
                    Ok(None)
                }
            },
        }
    }

    /// Serves until the runtime stops.
    pub async fn serve(self, handler: Arc<Handler>) {
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("control http: {e}; not served");
                return std::future::pending().await;
            }
        };
        let state = Arc::new(Web {
            handler,
            token: self.token,
        });
        let app = Router::new()
            .route("/", get(page))
            .route("/app.js", get(script))
            .route("/style.css", get(style))
            .route("/metrics", get(metrics_page))
            .route("/api/{command}", get(api_get).post(api_post))
            .with_state(state);
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("control http: {e}");
        }
    }
}

/// The token: the file's first line, trimmed; an empty one is refused.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("control.token-file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        anyhow::bail!("control.token-file {}: empty", path.display());
    }
    Ok(token)
}

struct Web {
    handler: Arc<Handler>,
    token: Option<String>,
}

impl Web {
    /// May this request change the server?
    fn may_change(&self, headers: &HeaderMap) -> Result<(), Failure> {
        let Some(token) = &self.token else {
            return Err(Failure::new(
                "denied",
                "changes the server: over HTTP only with a token, and no [control] token-file \
                 is set",
            ));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(g) if same(g.as_bytes(), token.as_bytes()) => Ok(()),
            _ => Err(Failure::new(
                "denied",
                "changes the server: send Authorization: Bearer <the token of [control] \
                 token-file>",
            )),
        }
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The HTTP status of a result.
fn status(result: &Result<Value, Failure>) -> StatusCode {
    match result {
        Ok(_) => StatusCode::OK,
        Err(f) => match f.code.as_str() {
            "bad-request" | "unsupported-version" => StatusCode::BAD_REQUEST,
            "unknown-command" => StatusCode::NOT_FOUND,
            "denied" => StatusCode::FORBIDDEN,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "method" => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

fn respond(result: Result<Value, Failure>) -> Response {
    (
        status(&result),
        [(header::CONTENT_TYPE, "application/json")],
        response_line(&result) + "\n",
    )
        .into_response()
}

/// The protocol request for `command` with `args`.
fn request(command: &str, mut args: serde_json::Map<String, Value>) -> Result<Command, Failure> {
    args.insert("version".into(), VERSION.into());
    args.insert("command".into(), command.into());
    parse_request(&Value::Object(args).to_string())
}

async fn api_get(
    State(web): State<Arc<Web>>,
    UrlPath(command): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // A query value is JSON when it parses as such (`limit=5`, `on=true`), else a string.
    let args = query
        .into_iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(&v).unwrap_or(Value::String(v));
            (k, value)
        })
        .collect();
    let result = match request(&command, args) {
        Ok(c) if c.changes() => Err(Failure::new(
            "method",
            format!("{} changes the server: use POST", c.name()),
        )),
        Ok(c) => web.handler.run(&c, &Err(denied_get()), "http").await,
        Err(f) => Err(f),
    };
    respond(result)
}

fn denied_get() -> Failure {
    Failure::new("denied", "changes the server: use POST")
}

async fn api_post(
    State(web): State<Arc<Web>>,
    UrlPath(command): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let args = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(serde_json::Map::new())
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(Failure::new("bad-request", "the body is not a JSON object")),
            Err(e) => Err(Failure::new("bad-request", format!("the body: {e}"))),
        }
    };
    let result = match args.and_then(|a| request(&command, a)) {
        Ok(c) => web.handler.run(&c, &web.may_change(&headers), "http").await,
        Err(f) => Err(f),
    };
    respond(result)
}

/// The status page and its assets, compiled in: nothing is read or fetched at run time.
const PAGE: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/style.css");

/// An embedded asset. `no-cache`: a browser revalidates, so an upgraded binary's page is seen.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    let mut r = asset("text/html; charset=utf-8", PAGE);
    // Everything the page needs comes from this origin: no inline script, no other host.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    r
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn metrics_page(State(web): State<Arc<Web>>) -> Response {
    match metrics_text(&web.handler).await {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(f) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{f}\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(handler: &Handler) -> Result<String, Failure> {
    let read_only = Err(denied_get());
    let decode = |e: serde_json::Error| Failure::new("failed", format!("decoding: {e}"));
    let stats: ServerStats = serde_json::from_value(
        handler
            .run(&Command::Serverstats, &read_only, "http")
            .await?,
    )
    .map_err(decode)?;
    let tracking: Tracking =
        serde_json::from_value(handler.run(&Command::Tracking, &read_only, "http").await?)
            .map_err(decode)?;
    let sources: Vec<SourceRow> =
        serde_json::from_value(handler.run(&Command::Sources, &read_only, "http").await?)
            .map_err(decode)?;
    Ok(metrics::render(&MetricsInput {
        version: env!("CARGO_PKG_VERSION"),
        stats: &stats,
        tracking: &tracking,
        sources: &sources,
        serving: handler.serving(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_statuses() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"abcd"));
        assert_eq!(status(&Ok(Value::Null)), StatusCode::OK);
        let code = |c: &str| status(&Err(Failure::new(c, "")));
        assert_eq!(code("denied"), StatusCode::FORBIDDEN);
        assert_eq!(code("unknown-command"), StatusCode::NOT_FOUND);
        assert_eq!(code("bad-request"), StatusCode::BAD_REQUEST);
        assert_eq!(code("failed"), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn query_arguments_become_protocol_arguments() {
        let mut args = serde_json::Map::new();
        args.insert("limit".into(), 5.into());
        args.insert("sort".into(), "drops".into());
        assert_eq!(
            request("clients", args),
            Ok(Command::Clients {
                sort: crate::server::ClientSort::Drops,
                limit: 5
            })
        );
        assert_eq!(
            request("nope", serde_json::Map::new()).unwrap_err().code,
            "unknown-command"
        );
    }

    #[test]
    fn the_page_needs_nothing_from_elsewhere() {
        // Its assets are the routes served here; no URL names another host (the SVG namespace
        // is a name, never fetched), protocol-relative ones included.
        assert!(PAGE.contains("src=\"/app.js\"") && PAGE.contains("href=\"/style.css\""));
        for (name, text) in [
            ("index.html", PAGE),
            ("app.js", SCRIPT),
            ("style.css", STYLE),
        ] {
            let svg = text.matches("\"http://www.w3.org/2000/svg\"").count();
            assert_eq!(text.matches("://").count(), svg, "{name}");
            for relative in ["\"//", "'//", "(//"] {
                assert!(!text.contains(relative), "{name}: {relative}");
            }
        }
    }

    #[test]
    fn the_token_is_the_first_line() {
        let dir = std::env::temp_dir().join(format!("meridian-token-{}", std::process::id()));
        std::fs::write(&dir, "  s3cret \nignored\n").unwrap();
        assert_eq!(read_token(&dir).unwrap(), "s3cret");
        std::fs::write(&dir, "\n").unwrap();
        assert!(read_token(&dir).unwrap_err().to_string().ends_with("empty"));
        let _ = std::fs::remove_file(&dir);
        assert!(read_token(&dir).is_err());
    }
}
