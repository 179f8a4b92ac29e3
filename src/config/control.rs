//! `[control]`: the management plane's control socket.

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

    /// The `[control]` rules.
    pub(super) fn check(&self, p: &mut Problems) {
        if let Some(path) = &self.socket {
            if let Err(m) = check_socket_path(path) {
                p.add("control.socket", m);
            }
        }
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
    }
}
