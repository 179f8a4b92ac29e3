//! `meridian query`: an SNTP client in the manner of `ntpdate -q` / `sntp`. Each request carries
//! a random transmit timestamp (RFC 9109 data minimisation: it reveals nothing of our clock and
//! doubles as a nonce); the reply must echo it, and the offset is computed from our own send time
//! and the kernel's receive stamp, through the same connected sockets the discipline thread uses
//! ([`UpstreamSocket`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::split_host_port;
use crate::io::upstream::UpstreamSocket;
use crate::proto::client::ReplyError;
use crate::proto::client::{check_reply, exchange, refid_text, root_distance_secs};
use crate::proto::server::client_request;
use crate::proto::{Leap, NtpTimestamp, MAX_PACKET_LEN};
use crate::sys;

/// How to query.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    pub samples: usize,
    pub interval: Duration,
    pub timeout: Duration,
    pub version: u8,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            samples: 4,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            version: 4,
        }
    }
}

/// One good answer.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sample {
    /// Server clock minus ours, seconds.
    pub offset: f64,
    /// Round-trip delay, seconds.
    pub delay: f64,
    pub stratum: u8,
    pub refid: String,
    pub leap: &'static str,
    pub precision: i8,
    /// Seconds.
    pub root_delay: f64,
    /// Seconds.
    pub root_dispersion: f64,
    /// root delay / 2 + root dispersion + delay / 2, seconds.
    pub root_distance: f64,
    pub version: u8,
    pub poll: i8,
}

/// The outcome of one request.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Ok(Sample),
    Error { error: String },
}

/// All samples from one server.
#[derive(Clone, Debug, Serialize)]
pub struct ServerResult {
    pub server: String,
    pub address: Option<SocketAddr>,
    pub samples: Vec<Outcome>,
    /// Index of the sample with the smallest delay.
    pub best: Option<usize>,
}

impl ServerResult {
    pub fn best_sample(&self) -> Option<&Sample> {
        match self.samples.get(self.best?) {
            Some(Outcome::Ok(s)) => Some(s),
            _ => None,
        }
    }
}

/// Resolves `HOST`, `HOST:PORT`, `IPv4[:PORT]`, `IPv6` or `[IPv6]:PORT` (default port 123),
/// the same forms a `[[source]]` address takes.
pub fn resolve(target: &str) -> std::io::Result<SocketAddr> {
    let (host, port) = split_host_port(target)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    (host.as_str(), port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{target}: no address found"),
            )
        })
}

fn leap_text(l: Leap) -> &'static str {
    match l {
        Leap::NoWarning => "none",
        Leap::AddSecond => "insert",
        Leap::DelSecond => "delete",
        Leap::Unsynchronized => "unsynchronised",
    }
}

/// Sends one request on a connected socket and waits for the matching reply.
fn one_sample(sock: &UpstreamSocket, opts: &QueryOptions) -> Outcome {
    let nonce = sys::random::nonce();
    let request = client_request(opts.version, 0, nonce);
    let t1 = match sock.send(&request) {
        Ok(stamp) => stamp.raw,
        Err(e) => {
            return Outcome::Error {
                error: format!("send: {e}"),
            }
        }
    };
    let deadline = Instant::now() + opts.timeout;
    let mut buf = [0u8; MAX_PACKET_LEN + 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (len, t4) = match sock.recv(&mut buf, left) {
            Ok(Some((len, stamp))) => (len, stamp.raw),
            Ok(None) => {
                return Outcome::Error {
                    error: "no reply (timeout)".into(),
                }
            }
            Err(e) => {
                return Outcome::Error {
                    error: format!("receive: {e}"),
                }
            }
        };
        let header = match check_reply(&buf[..len], opts.version, nonce) {
            Ok(h) => h,
            // A stale or foreign datagram: keep waiting for ours.
            Err(ReplyError::WrongOrigin) => continue,
            Err(e) => {
                return Outcome::Error {
                    error: e.to_string(),
                }
            }
        };
        let mut ex = exchange(&header, NtpTimestamp::from_unix(t4));
        ex.t1 = NtpTimestamp::from_unix(t1);
        let delay = ex.delay_nanos() as f64 / 1e9;
        return Outcome::Ok(Sample {
            offset: ex.offset_nanos() as f64 / 1e9,
            delay,
            stratum: header.stratum,
            refid: refid_text(header.stratum, header.reference_id),
            leap: leap_text(header.leap),
            precision: header.precision,
            root_delay: header.root_delay.as_secs_f64(),
            root_dispersion: header.root_dispersion.as_secs_f64(),
            root_distance: root_distance_secs(&header, delay),
            version: header.version,
            poll: header.poll,
        });
    }
}

/// Queries one server `opts.samples` times.
pub fn query_server(target: &str, opts: &QueryOptions) -> ServerResult {
    let mut result = ServerResult {
        server: target.to_string(),
        address: None,
        samples: Vec::new(),
        best: None,
    };
    let sock = resolve(target).and_then(|addr| {
        result.address = Some(addr);
        UpstreamSocket::connect(addr)
    });
    let sock = match sock {
        Ok(s) => s,
        Err(e) => {
            result.samples.push(Outcome::Error {
                error: e.to_string(),
            });
            return result;
        }
    };
    for i in 0..opts.samples.max(1) {
        if i > 0 {
            std::thread::sleep(opts.interval);
        }
        result.samples.push(one_sample(&sock, opts));
    }
    result.best = result
        .samples
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outcome::Ok(s) => Some((i, s.delay)),
            Outcome::Error { .. } => None,
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i);
    result
}

/// Formats seconds with sign and microsecond resolution.
fn secs(v: f64) -> String {
    format!("{v:+.6}")
}

/// The text report for one server (all samples, best marked).
pub fn render_server(r: &ServerResult) -> String {
    let mut out = String::new();
    let addr = r
        .address
        .map(|a| a.to_string())
        .unwrap_or_else(|| "?".into());
    out.push_str(&format!("server {} ({addr})\n", r.server));
    out.push_str("      #  offset (s)    delay (s)  stratum  refid            leap            root dist (s)\n");
    for (i, o) in r.samples.iter().enumerate() {
        let mark = if Some(i) == r.best { "*" } else { " " };
        match o {
            Outcome::Ok(s) => out.push_str(&format!(
                "    {mark} {:>2}  {:>11}  {:>10.6}  {:>7}  {:<15}  {:<14}  {:>.6}\n",
                i + 1,
                secs(s.offset),
                s.delay,
                s.stratum,
                s.refid,
                s.leap,
                s.root_distance
            )),
            Outcome::Error { error } => {
                out.push_str(&format!("      {:>2}  error: {error}\n", i + 1))
            }
        }
    }
    match r.best_sample() {
        Some(s) => out.push_str(&format!(
            "best: offset {} s, delay {:.6} s, stratum {}, refid {}, leap {}, root distance {:.6} s\n",
            secs(s.offset),
            s.delay,
            s.stratum,
            s.refid,
            s.leap,
            s.root_distance
        )),
        None => out.push_str("no valid answer\n"),
    }
    out
}

/// Side-by-side table of the best sample of each server.
pub fn render_compare(results: &[ServerResult]) -> String {
    let mut out = String::from(
        "server                          offset (s)    delay (s)  stratum  refid            leap            root dist (s)  ok\n",
    );
    for r in results {
        let ok = r
            .samples
            .iter()
            .filter(|o| matches!(o, Outcome::Ok(_)))
            .count();
        match r.best_sample() {
            Some(s) => out.push_str(&format!(
                "{:<30}  {:>11}  {:>10.6}  {:>7}  {:<15}  {:<14}  {:>13.6}  {ok}/{}\n",
                r.server,
                secs(s.offset),
                s.delay,
                s.stratum,
                s.refid,
                s.leap,
                s.root_distance,
                r.samples.len()
            )),
            None => {
                let why = r
                    .samples
                    .iter()
                    .find_map(|o| match o {
                        Outcome::Error { error } => Some(error.as_str()),
                        Outcome::Ok(_) => None,
                    })
                    .unwrap_or("no answer");
                out.push_str(&format!("{:<30}  no valid answer: {why}\n", r.server))
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_forms() {
        assert_eq!(
            resolve("127.0.0.1").unwrap(),
            "127.0.0.1:123".parse().unwrap()
        );
        assert_eq!(
            resolve("127.0.0.1:1123").unwrap(),
            "127.0.0.1:1123".parse().unwrap()
        );
        assert_eq!(resolve("::1").unwrap(), "[::1]:123".parse().unwrap());
        assert_eq!(resolve("[::1]").unwrap(), "[::1]:123".parse().unwrap());
        assert_eq!(resolve("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert_eq!(resolve("localhost:5").unwrap().port(), 5);
    }
}
