//! `[auth]`: the symmetric keys (a key file in chrony's format, `crate::auth::keyfile`) and
//! whether clients must use them.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Problems, SourceConfig};
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
    /// weak key a warning, all under `auth.keys`; a source's `key` must be in it.
    pub(super) fn host_check(
        &self,
        sources: &[SourceConfig],
        errors: &mut Problems,
        warnings: &mut Problems,
    ) {
        match self.load() {
            Ok((auth, warned)) => {
                for w in warned {
                    warnings.add("auth.keys", w);
                }
                for (i, s) in sources.iter().enumerate() {
                    let Some(id) = s.key else { continue };
                    if auth.keys.get(id).is_none() {
                        let why = match &self.keys {
                            Some(path) => format!("key {id} is not in {}", path.display()),
                            None => format!("key {id} needs a key file: set auth.keys"),
                        };
                        errors.add(format!("source[{i}].key"), why);
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{err, parse, problems};

    #[test]
    fn auth_section_parses_and_checks_require() {
        let c =
            parse("[auth]\nkeys = \"/etc/k\"\nrequire = true\nrequire-action = \"kod\"\n").unwrap();
        assert_eq!(c.auth.keys.as_deref(), Some(std::path::Path::new("/etc/k")));
        assert!(c.auth.require);
        assert_eq!(c.auth.require_action, RequireAction::Kod);
        assert_eq!(parse("").unwrap().auth, AuthConfig::default());
        let p = problems("[auth]\nrequire = true\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "auth.require");
        assert_eq!(p[0].location, Some((2, 11)));
        let e = err("[auth]\nrequire-action = \"deny\"\n");
        assert!(
            e.starts_with("meridian.toml:2:18: auth.require-action: unknown variant `deny`"),
            "{e}"
        );
    }

    #[test]
    fn the_host_check_reads_the_key_file() {
        let dir = std::env::temp_dir().join(format!("meridian-cfg-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(
            &path,
            "1 SHA1 HEX:00112233445566778899aabb\n2 AES128 short\n",
        )
        .unwrap();
        let auth = AuthConfig {
            keys: Some(path.clone()),
            require: true,
            require_action: RequireAction::Drop,
        };
        let (mut errors, mut warnings) = (Problems::default(), Problems::default());
        auth.host_check(&[], &mut errors, &mut warnings);
        assert_eq!(errors.0.len(), 1, "{:?}", errors.0);
        assert_eq!(errors.0[0].key, "auth.keys");
        assert!(
            errors.0[0]
                .message
                .starts_with(&format!("{}:2: key 2: AES128", path.display())),
            "{:?}",
            errors.0
        );
        std::fs::write(&path, "1 SHA1 HEX:00112233445566778899aabb\n").unwrap();
        let (server, _) = auth.load().unwrap();
        // A source's key must be in the file.
        let mut source = SourceConfig::new("127.0.0.1:123");
        source.key = Some(2);
        let (mut errors, mut warnings) = (Problems::default(), Problems::default());
        auth.host_check(&[source.clone()], &mut errors, &mut warnings);
        assert_eq!(errors.0.len(), 1, "{:?}", errors.0);
        assert_eq!(errors.0[0].key, "source[0].key");
        assert!(
            errors.0[0].message.starts_with("key 2 is not in "),
            "{:?}",
            errors.0
        );
        source.key = Some(1);
        let (mut errors, mut warnings) = (Problems::default(), Problems::default());
        auth.host_check(&[source], &mut errors, &mut warnings);
        assert!(errors.0.is_empty(), "{:?}", errors.0);
        assert_eq!((server.keys.len(), server.require), (1, Require::Drop));
        std::fs::remove_dir_all(&dir).unwrap();
        let (mut errors, mut warnings) = (Problems::default(), Problems::default());
        auth.host_check(&[], &mut errors, &mut warnings);
        assert!(
            errors.0[0].message.starts_with("cannot read key file"),
            "{:?}",
            errors.0
        );
    }
}
