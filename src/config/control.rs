//! `[control]`: the management plane's control socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Problems;

/// Where the control socket is when the file does not say.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/meridian/control.sock";

/// `[control]`: the management plane.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ControlConfig {
    /// The Unix control socket; unset: [`DEFAULT_CONTROL_SOCKET`] (and if that cannot be
    /// used, a warning and none); `""`: none.
    pub socket: Option<PathBuf>,
    /// The HTTP listener (JSON API and `/metrics`): `ADDR:PORT`; unset:
    /// [`DEFAULT_CONTROL_HTTP`] (and if that cannot be bound, a warning and none); `""`: none.
    pub http: Option<String>,
    /// A file holding the bearer token HTTP changing requests must carry; without it they
    /// are refused.
    pub token_file: Option<PathBuf>,
}

/// Where the HTTP listener is when the file does not say.
pub const DEFAULT_CONTROL_HTTP: &str = "127.0.0.1:8123";

/// Which HTTP address to listen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlHttp {
    /// None asked for: the default, which may be left out with a warning.
    Default(SocketAddr),
    /// Given in the file or with `--http`: failing to bind it is a start-up error.
    Explicit(SocketAddr),
    /// `http = ""`.
    Off,
}

/// Which control socket to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlSocket {
    /// None asked for; the default path, which may be left out with a warning.
    Default(PathBuf),
    /// Given in the file or with `--control`: failing to open it is a start-up error.
    Explicit(PathBuf),
    /// `socket = ""`.
    Off,
}

impl ControlConfig {
    /// The socket to open.
    pub fn socket(&self) -> ControlSocket {
        match &self.socket {
            None => ControlSocket::Default(PathBuf::from(DEFAULT_CONTROL_SOCKET)),
            Some(p) if p.as_os_str().is_empty() => ControlSocket::Off,
            Some(p) => ControlSocket::Explicit(p.clone()),
        }
    }

    /// The HTTP address to listen on (an unparsable one, refused by [`ControlConfig::check`],
    /// counts as off).
    pub fn http(&self) -> ControlHttp {
        match self.http.as_deref() {
            None => ControlHttp::Default(
                DEFAULT_CONTROL_HTTP
                    .parse()
                    .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8123))),
            ),
            Some("") => ControlHttp::Off,
            Some(a) => a.parse().map_or(ControlHttp::Off, ControlHttp::Explicit),
        }
    }

    /// The `[control]` rules.
    pub(super) fn check(&self, p: &mut Problems) {
        if let Some(a) = self.http.as_deref() {
            if let Err(m) = check_http(a) {
                p.add("control.http", m);
            }
        }
        if self
            .token_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            p.add(
                "control.token-file",
                "is empty: name a file, or leave it out".to_owned(),
            );
        }
        if let Some(path) = &self.socket {
            if let Err(m) = check_socket_path(path) {
                p.add("control.socket", m);
            }
        }
    }
}

/// `http` must be `IP:PORT` (or empty).
pub fn check_http(a: &str) -> Result<(), String> {
    if a.is_empty() || a.parse::<SocketAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!(
            "expected IP:PORT such as 127.0.0.1:8123 (names are not resolved), or \"\" for none; got {a:?}"
        ))
    }
}

/// A Unix socket path must fit `sun_path` (107 bytes and a NUL) and name a file.
pub fn check_socket_path(path: &Path) -> Result<(), String> {
    let len = path.as_os_str().len();
    if len == 0 {
        return Ok(());
    }
    if len > 107 {
        return Err(format!(
            "is {len} bytes long; a Unix socket path may have at most 107: {}",
            path.display()
        ));
    }
    if path.file_name().is_none() {
        return Err(format!("does not name a file: {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{err, parse};

    #[test]
    fn the_socket_is_default_explicit_or_off() {
        let c = parse("").unwrap();
        assert_eq!(
            c.control.socket(),
            ControlSocket::Default(DEFAULT_CONTROL_SOCKET.into())
        );
        let c = parse("[control]\nsocket = \"/tmp/m.sock\"\n").unwrap();
        assert_eq!(
            c.control.socket(),
            ControlSocket::Explicit("/tmp/m.sock".into())
        );
        let c = parse("[control]\nsocket = \"\"\n").unwrap();
        assert_eq!(c.control.socket(), ControlSocket::Off);
        let long = format!("[control]\nsocket = \"/{}\"\n", "x".repeat(120));
        assert!(
            err(&long).contains("control.socket: is 121 bytes long"),
            "{}",
            err(&long)
        );
        assert!(err("[control]\nsocket = \"/tmp/\"\nx = 1\n").contains("unknown field `x`"));
        let c = parse("").unwrap();
        assert_eq!(
            c.control.http(),
            ControlHttp::Default("127.0.0.1:8123".parse().unwrap())
        );
        let c = parse("[control]\nhttp = \"[::1]:9000\"\ntoken-file = \"/etc/t\"\n").unwrap();
        assert_eq!(
            c.control.http(),
            ControlHttp::Explicit("[::1]:9000".parse().unwrap())
        );
        assert_eq!(c.control.token_file, Some("/etc/t".into()));
        assert_eq!(
            parse("[control]\nhttp = \"\"\n").unwrap().control.http(),
            ControlHttp::Off
        );
        assert!(
            err("[control]\nhttp = \"localhost:80\"\n").contains("control.http: expected IP:PORT")
        );
        assert!(err("[control]\ntoken-file = \"\"\n").contains("control.token-file: is empty"));
    }
}
