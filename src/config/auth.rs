//! `[auth]`: the symmetric keys (a key file in chrony's format, `crate::auth::keyfile`) and
//! whether clients must use them.

use std::path::PathBuf;

use serde::Deserialize;

use super::Problems;
use crate::auth::{KeyFile, KeyFileError, Require, ServerAuth};

/// `[auth]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// The key file (`ID TYPE KEY` lines), read at start-up and on every SIGHUP.
    pub keys: Option<PathBuf>,
    /// Answer only requests with a valid MAC.
    pub require: bool,
    /// What a request without a MAC gets when `require` is on.
    pub require_action: RequireAction,
}

/// `auth.require-action`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RequireAction {
    /// Nothing (as ntpd's `restrict … notrust`): the default.
    #[default]
    Drop,
    /// A kiss-o'-death CRYP.
    Kod,
}

impl AuthConfig {
    pub(super) fn check(&self, p: &mut Problems) {
        if self.require && self.keys.is_none() {
            p.add(
                "auth.require",
                "needs auth.keys: without keys no request could be answered".to_owned(),
            );
        }
    }

    /// Reads the key file (this host's check): every bad line is an error, an open file or a
    /// weak key a warning, all under `auth.keys`.
    pub(super) fn host_check(&self, errors: &mut Problems, warnings: &mut Problems) {
        match self.load() {
            Ok((_, warned)) => {
                for w in warned {
                    warnings.add("auth.keys", w);
                }
            }
            Err(KeyFileError::Invalid { path, problems }) => {
                for (line, message) in problems {
                    errors.add("auth.keys", format!("{path}:{line}: {message}"));
                }
            }
            Err(e) => errors.add("auth.keys", e.to_string()),
        }
    }

    /// What the workers get: the keys of the file (none without one) and the require rule;
    /// with the file's warnings.
    pub fn load(&self) -> Result<(ServerAuth, Vec<String>), KeyFileError> {
        let file = match &self.keys {
            Some(path) => KeyFile::load(path)?,
            None => KeyFile::default(),
        };
        let require = match (self.require, self.require_action) {
            (false, _) => Require::Off,
            (true, RequireAction::Drop) => Require::Drop,
            (true, RequireAction::Kod) => Require::Kod,
        };
        Ok((
            ServerAuth {
                keys: file.keys,
                require,
            },
            file.warnings,
        ))
    }
}
