//! `[[source]]`: upstream servers and pools, and the `HOST[:PORT]` address forms.

use std::net::SocketAddr;

use serde::Deserialize;

use super::Problems;

/// `[[source]]`: one upstream server, or a pool of them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// `HOST`, `HOST:PORT`, `IPv4[:PORT]`, `IPv6` or `[IPv6]:PORT` (default port 123).
    pub address: String,
    /// `server` (one address) or `pool` (a name resolving to several).
    #[serde(default)]
    pub kind: SourceKind,
    /// Start with a burst of quick polls.
    #[serde(default)]
    pub iburst: bool,
    /// Shortest poll interval, log2 seconds (-6..=17).
    #[serde(default = "default_minpoll")]
    pub minpoll: i8,
    /// Longest poll interval, log2 seconds (minpoll..=17).
    #[serde(default = "default_maxpoll")]
    pub maxpoll: i8,
    /// Prefer this source when it survives selection.
    #[serde(default)]
    pub prefer: bool,
    /// Pools: how many of the resolved addresses are used at once (default 4).
    #[serde(default)]
    pub max_sources: Option<usize>,
    /// The id of a key in `[auth] keys`: requests are signed with it and only replies signed
    /// with it are used.
    #[serde(default)]
    pub key: Option<u32>,
}

/// `source.kind`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    #[default]
    Server,
    Pool,
}

/// How the discipline treats each kind of source: the one place its behaviour differs, so a
/// new kind (reference clocks, peers) is a new variant and its answers here.
impl SourceKind {
    /// Resolved again after one of its addresses was dropped (DENY/RSTR, or replaced)? A pool
    /// looks for another member; a server's one address stays dropped.
    pub fn resolves_again_after_a_drop(self) -> bool {
        match self {
            SourceKind::Server => false,
            SourceKind::Pool => true,
        }
    }

    /// Are members that stay unreachable or falseticking replaced by fresh addresses?
    pub fn replaces_bad_members(self) -> bool {
        match self {
            SourceKind::Server => false,
            SourceKind::Pool => true,
        }
    }
}

fn default_minpoll() -> i8 {
    DEFAULT_MINPOLL
}

fn default_maxpoll() -> i8 {
    DEFAULT_MAXPOLL
}

/// Default `minpoll` (64 s).
pub const DEFAULT_MINPOLL: i8 = 6;
/// Default `maxpoll` (1024 s).
pub const DEFAULT_MAXPOLL: i8 = 10;
/// Poll exponents accepted (1/64 s ..= 36 h).
pub const POLL_RANGE: std::ops::RangeInclusive<i8> = -6..=17;
/// The NTP port, used when an address has none.
pub const NTP_PORT: u16 = 123;
/// Default `max-sources` of a pool.
pub const DEFAULT_POOL_SOURCES: usize = 4;
/// Upper bound of `max-sources` and `min-sources`.
pub const MAX_SOURCES: usize = 16;

impl SourceConfig {
    /// A source with every default but its address.
    pub fn new(address: &str) -> SourceConfig {
        SourceConfig {
            address: address.to_owned(),
            kind: SourceKind::Server,
            iburst: false,
            minpoll: DEFAULT_MINPOLL,
            maxpoll: DEFAULT_MAXPOLL,
            prefer: false,
            max_sources: None,
            key: None,
        }
    }

    /// The host (a name or an IP literal, without brackets) and port of `address`.
    pub fn host_port(&self) -> Result<(String, u16), String> {
        split_host_port(&self.address)
    }

    /// How many addresses this source contributes at most: 1 for a server.
    pub fn max_sources(&self) -> usize {
        match self.kind {
            SourceKind::Server => 1,
            SourceKind::Pool => self.max_sources.unwrap_or(DEFAULT_POOL_SOURCES),
        }
    }
}

/// Splits `HOST`, `HOST:PORT`, `IPv4[:PORT]`, `IPv6` or `[IPv6]:PORT` (default port 123).
pub fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let a = address.trim();
    if a.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port()));
    }
    if let Ok(ip) = a
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return Ok((ip.to_string(), NTP_PORT));
    }
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) => {
            let port =
                p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                    format!("invalid port {p:?} in {address:?}, expected 1..=65535")
                })?;
            (h, port)
        }
        None => (a, NTP_PORT),
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !name_ok {
        return Err(format!(
            "invalid address {address:?}, expected HOST, HOST:PORT, IP, IP:PORT or [IPv6]:PORT"
        ));
    }
    Ok((host.to_owned(), port))
}

/// The `[[source]]` rules (addresses, poll bounds, pool sizes).
pub(super) fn check(sources: &[SourceConfig], p: &mut Problems) {
    for (i, s) in sources.iter().enumerate() {
        let key = |k: &str| format!("source[{i}].{k}");
        if let Err(message) = s.host_port() {
            p.add(key("address"), message);
        } else if sources[..i]
            .iter()
            .any(|o| o.address.trim() == s.address.trim())
        {
            p.add(key("address"), format!("duplicate source {:?}", s.address));
        }
        for (name, v) in [("minpoll", s.minpoll), ("maxpoll", s.maxpoll)] {
            if !POLL_RANGE.contains(&v) {
                p.add(
                    key(name),
                    format!(
                        "must be in {}..={} (log2 seconds), got {v}",
                        POLL_RANGE.start(),
                        POLL_RANGE.end()
                    ),
                );
            }
        }
        if s.minpoll > s.maxpoll {
            p.add(
                key("maxpoll"),
                format!(
                    "must be at least minpoll ({}), got {}",
                    s.minpoll, s.maxpoll
                ),
            );
        }
        match (s.kind, s.max_sources) {
            (SourceKind::Server, Some(_)) => p.add(
                key("max-sources"),
                "applies only to kind = \"pool\"".to_owned(),
            ),
            (SourceKind::Pool, Some(n)) if !(1..=MAX_SOURCES).contains(&n) => p.add(
                key("max-sources"),
                format!("must be in 1..={MAX_SOURCES}, got {n}"),
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::err;

    #[test]
    fn source_address_forms() {
        for (a, host, port) in [
            ("192.0.2.1", "192.0.2.1", 123),
            ("192.0.2.1:1123", "192.0.2.1", 1123),
            ("2001:db8::1", "2001:db8::1", 123),
            ("[2001:db8::1]", "2001:db8::1", 123),
            ("[2001:db8::1]:9", "2001:db8::1", 9),
            ("ntp.example.net", "ntp.example.net", 123),
            ("ntp.example.net:4123", "ntp.example.net", 4123),
            ("localhost", "localhost", 123),
        ] {
            assert_eq!(split_host_port(a), Ok((host.to_owned(), port)), "{a}");
        }
        for bad in [
            "",
            "host:",
            "host:0",
            "host:99999",
            "a b",
            "ho/st",
            "[::1]:x",
            "a:b:c",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }
    #[test]
    fn source_errors_name_the_table_and_line() {
        let text = "[[source]]\naddress = \"192.0.2.1\"\n\n[[source]]\naddress = \"a b\"\n\
                    minpoll = 9\nmaxpoll = 18\n";
        assert_eq!(
            err(text),
            "meridian.toml:5:11: source[1].address: invalid address \"a b\", expected HOST, \
             HOST:PORT, IP, IP:PORT or [IPv6]:PORT\n\
             meridian.toml:7:11: source[1].maxpoll: must be in -6..=17 (log2 seconds), got 18"
        );
        assert_eq!(
            err("[[source]]\naddress = \"h\"\nminpoll = 8\nmaxpoll = 7\n"),
            "meridian.toml:4:11: source[0].maxpoll: must be at least minpoll (8), got 7"
        );
        assert_eq!(
            err("[[source]]\naddress = \"h\"\nmax-sources = 2\n"),
            "meridian.toml:3:15: source[0].max-sources: applies only to kind = \"pool\""
        );
        assert_eq!(
            err("[[source]]\naddress = \"p\"\nkind = \"pool\"\nmax-sources = 0\n"),
            "meridian.toml:4:15: source[0].max-sources: must be in 1..=16, got 0"
        );
        assert_eq!(
            err("[[source]]\naddress = \"h\"\n[[source]]\naddress = \"h\"\n"),
            "meridian.toml:4:11: source[1].address: duplicate source \"h\""
        );
        let e = err("[[source]]\naddress = \"h\"\nburst = true\n");
        assert!(
            e.starts_with(
                "meridian.toml:3:1: unknown field `burst` in [source[0]], expected one of"
            ),
            "{e}"
        );
        let e = err("[[source]]\nkind = \"pool\"\n");
        assert!(e.contains("missing field `address`"), "{e}");
        let e = err("[[source]]\naddress = \"h\"\nkind = \"peer\"\n");
        assert!(
            e.starts_with("meridian.toml:3:8: source[0].kind: unknown variant `peer`"),
            "{e}"
        );
    }
}
