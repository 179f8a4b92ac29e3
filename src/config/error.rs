//! What can be wrong with a configuration, and how it is worded: `file:line:col: key: message`.

/// A configuration that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (the OS error is part of the message, not a source, so it
    /// is printed once).
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// Anything else, already formatted.
    #[error("{0}")]
    Invalid(String),
    /// The text is not TOML, or does not fit the schema (unknown key, wrong type, ...).
    #[error("{}", located(file, Some((*line, *column)), key.as_deref(), message))]
    Parse {
        /// The file name given to [`Config::parse`].
        file: String,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// Dotted key path (`server.workers`, `server.listen[1]`), when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The file parsed but some values are out of range; every problem is listed, one per line.
    #[error("{}", problems_to_string(file.as_deref(), problems))]
    Validation {
        /// The file name, when the configuration came from a file.
        file: Option<String>,
        /// Every rule that failed, in key order.
        problems: Vec<Problem>,
    },
}

/// One failed validation rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `server.batch-size`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
    /// 1-based line and column of the value in the file, when it came from one.
    pub location: Option<(usize, usize)>,
}

pub(super) fn located(
    file: &str,
    location: Option<(usize, usize)>,
    key: Option<&str>,
    message: &str,
) -> String {
    let mut out = String::from(file);
    if let Some((line, column)) = location {
        out.push_str(&format!(":{line}:{column}"));
    }
    if let Some(key) = key {
        out.push_str(": ");
        out.push_str(key);
    }
    out.push_str(": ");
    out.push_str(message);
    out
}

pub(super) fn problems_to_string(file: Option<&str>, problems: &[Problem]) -> String {
    let file = file.unwrap_or("configuration");
    problems
        .iter()
        .map(|p| located(file, p.location, Some(&p.key), &p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// serde names the Rust type it wanted (`expected usize`); operators read "a whole number".
pub(super) fn plain_words(message: &str) -> String {
    const TYPES: [(&str, &str); 10] = [
        ("usize", "a whole number (0 or more)"),
        ("u64", "a whole number (0 or more)"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u16", "a whole number from 0 to 65535"),
        ("u8", "a whole number from 0 to 255"),
        ("i64", "a whole number"),
        ("i32", "a whole number"),
        ("i8", "a whole number from -128 to 127"),
        ("f64", "a number"),
        ("f32", "a number"),
    ];
    for (rust, words) in TYPES {
        let needle = format!("expected {rust}");
        if let Some(rest) = message.strip_suffix(needle.as_str()) {
            return format!("{rest}expected {words}");
        }
    }
    message.to_owned()
}

/// Problems collected by the rules of every section, in key order.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records that `key` breaks a rule.
    pub fn add(&mut self, key: impl Into<String>, message: String) {
        self.0.push(Problem {
            key: key.into(),
            message,
            location: None,
        });
    }
}

/// 1-based line and column (counted in characters) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_type_names_become_words() {
        assert_eq!(
            plain_words("invalid type: string \"two\", expected usize"),
            "invalid type: string \"two\", expected a whole number (0 or more)"
        );
        assert_eq!(
            plain_words("invalid value: integer `300`, expected u8"),
            "invalid value: integer `300`, expected a whole number from 0 to 255"
        );
        assert_eq!(
            plain_words("invalid type: string \"x\", expected f64"),
            "invalid type: string \"x\", expected a number"
        );
        assert_eq!(plain_words("expected a boolean"), "expected a boolean");
    }

    #[test]
    fn line_col_counts_characters() {
        let text = "ab\nçd\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 2), (1, 3));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 5), (2, 2));
        assert_eq!(line_col(text, 4), (2, 1)); // inside 'ç': rounds down
        assert_eq!(line_col(text, 100), (3, 1));
    }
}
