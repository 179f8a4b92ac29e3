//! The key file, in chrony's format: one key a line, `ID [TYPE] KEY`.
//!
//! * `ID` is a key id from 1 to 4294967295 (0 is the crypto-NAK's);
//! * `TYPE` is MD5 (the default when only two words are given), SHA1, SHA256, SHA384, SHA512,
//!   AES128 or AES256 (case-insensitive);
//! * `KEY` is `HEX:` and the key in hexadecimal, or `ASCII:` and the key itself, or (no
//!   prefix) the key itself; AES128 keys are 16 bytes, AES256 keys 32;
//! * blank lines and lines whose first character is `#`, `!`, `;` or `%` are comments.
//!
//! Every bad line is reported with the file and its line number (never with the key); a key
//! file others may read, or a hash key shorter than 80 bits, is a warning. The bytes read
//! are wiped from memory once parsed.

use std::path::Path;

use zeroize::Zeroizing;

use super::{Key, KeySet, MacKind};

/// Keys shorter than this (80 bits) are weak: a warning, as chrony's.
pub const MIN_SECURE_KEY_LEN: usize = 10;

/// A parsed key file.
#[derive(Clone, Debug, Default)]
pub struct KeyFile {
    pub keys: KeySet,
    /// What was worth a warning, worded `file[:line]: message`.
    pub warnings: Vec<String>,
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// Lines that are not keys, each `file:line: message`.
    #[error("{}", .problems.iter().map(|(line, m)| format!("{path}:{line}: {m}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        /// 1-based line number and what is wrong, in file order.
        problems: Vec<(usize, String)>,
    },
}

impl KeyFile {
    /// Reads and parses the key file at `path`; warns when users other than its owner and
    /// group may read or write it.
    pub fn load(path: &Path) -> Result<KeyFile, KeyFileError> {
        let name = path.display().to_string();
        let io = |error| KeyFileError::Io {
            path: name.clone(),
            error,
        };
        let text = Zeroizing::new(std::fs::read(path).map_err(io)?);
        let mut file = KeyFile::parse(&text, &name)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o007 != 0 {
                file.warnings.insert(
                    0,
                    format!(
                        "{name}: the key file is open to every user (mode {:04o}): \
                         chmod 600 (or 640 with a group) so only meridian can read the keys",
                        mode & 0o7777
                    ),
                );
            }
        }
        Ok(file)
    }

    /// Parses key-file text; `name` is used in messages.
    pub fn parse(text: &[u8], name: &str) -> Result<KeyFile, KeyFileError> {
        let mut keys: Vec<(usize, Key)> = Vec::new();
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some(key)) => {
                    if let Some((first, _)) = keys.iter().find(|(_, k)| k.id() == key.id()) {
                        problems.push((
                            n,
                            format!("key {} is already defined at line {first}", key.id()),
                        ));
                        continue;
                    }
                    if key.kind().cipher_key_len().is_none()
                        && key.secret_len() < MIN_SECURE_KEY_LEN
                    {
                        warnings.push(format!(
                            "{name}:{n}: key {} is {} bytes, shorter than 80 bits: easy to guess",
                            key.id(),
                            key.secret_len()
                        ));
                    }
                    keys.push((n, key));
                }
                Err(message) => problems.push((n, message)),
            }
        }
        if !problems.is_empty() {
            return Err(KeyFileError::Invalid {
                path: name.to_owned(),
                problems,
            });
        }
        Ok(KeyFile {
            keys: KeySet::new(keys.into_iter().map(|(_, k)| k)),
            warnings,
        })
    }
}

/// One line: a key, nothing (blank or comment), or what is wrong with it.
fn parse_line(line: &[u8]) -> Result<Option<Key>, String> {
    let words: Vec<&[u8]> = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let Some(first) = words.first() else {
        return Ok(None);
    };
    if matches!(first[0], b'#' | b'!' | b';' | b'%') {
        return Ok(None);
    }
    let (id, kind, value) = match words[..] {
        [id, value] => (id, None, value),
        [id, kind, value] => (id, Some(kind), value),
        _ => {
            return Err(format!(
                "expected `ID [TYPE] KEY` (2 or 3 words), got {} words",
                words.len()
            ))
        }
    };
    let id_text = String::from_utf8_lossy(id);
    let id: u32 = id_text
        .parse()
        .map_err(|_| format!("key id `{id_text}` is not a number from 1 to 4294967295"))?;
    if id == 0 {
        return Err("key id 0 is reserved (it is the crypto-NAK's)".to_owned());
    }
    let kind = match kind {
        None => MacKind::Md5,
        Some(k) => {
            let name = String::from_utf8_lossy(k);
            MacKind::from_name(&name).ok_or_else(|| {
                let known: Vec<_> = MacKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "key {id}: type `{name}` is not supported (one of {})",
                    known.join(", ")
                )
            })?
        }
    };
    let secret = decode(value).map_err(|m| format!("key {id}: {m}"))?;
    if secret.is_empty() {
        return Err(format!("key {id}: the key is empty"));
    }
    if let Some(want) = kind.cipher_key_len() {
        if secret.len() != want {
            let what = if secret.len() < want {
                "too short"
            } else {
                "too long"
            };
            return Err(format!(
                "key {id}: {kind} keys are {want} bytes ({} bits), this one is {} bytes: {what}",
                want * 8,
                secret.len()
            ));
        }
    }
    Key::new(id, kind, &secret)
        .map(Some)
        .ok_or_else(|| format!("key {id}: not a usable {kind} key"))
}

/// The bytes of a `KEY` value: `HEX:…`, `ASCII:…` or plain ASCII.
fn decode(value: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    if let Some(hex) = value.strip_prefix(b"HEX:") {
        if hex.len() % 2 != 0 {
            return Err("a HEX: key needs an even number of hexadecimal digits".to_owned());
        }
        let digit = |b: u8| (b as char).to_digit(16);
        let mut out = Zeroizing::new(Vec::with_capacity(hex.len() / 2));
        for pair in hex.chunks_exact(2) {
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err("a HEX: key may hold only hexadecimal digits".to_owned()),
            }
        }
        return Ok(out);
    }
    let ascii = value.strip_prefix(b"ASCII:").unwrap_or(value);
    Ok(Zeroizing::new(ascii.to_vec()))
}
