//! meridian: a carrier-scale NTP server.
//!
//! See `docs/architecture.md` for the path of one request through these modules.
//!
//! Boundaries the compiler enforces: `unsafe` only in `io/` and `sys/` (every block with a
//! `// SAFETY:` comment, `clippy::undocumented_unsafe_blocks`); clocks are read only in `sys/`
//! and the thin shells that must (the backends' loops, the discipline thread, the runtime, the
//! query command), so the protocol core, the discipline core and the configuration get time
//! passed in (`clippy.toml` disallows `Instant::now`, `SystemTime::now` and `clock_gettime`
//! elsewhere).

#![deny(unsafe_code)]

pub mod clock;
pub mod config;
pub mod datapath;
pub mod discipline;
#[allow(unsafe_code, clippy::disallowed_methods)]
pub mod io;
pub mod proto;
#[allow(clippy::disallowed_methods)]
pub mod query;
#[allow(clippy::disallowed_methods)]
pub mod server;
#[allow(unsafe_code, clippy::disallowed_methods)]
pub mod sys;

#[cfg(test)]
pub(crate) mod test_support {
    /// Says why a test or part of one does not run here. With `MERIDIAN_REQUIRE_ALL=1` (set by
    /// `.ci/run`, where everything is installed) a skip is a failure instead.
    pub fn skip_notice(reason: &str) {
        let required = std::env::var_os("MERIDIAN_REQUIRE_ALL").is_some_and(|v| v == "1");
        assert!(
            !required,
            "MERIDIAN_REQUIRE_ALL=1, but this would be skipped: {reason}"
        );
        eprintln!("SKIP: {reason}");
    }
}
