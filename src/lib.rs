//! meridian: a carrier-scale NTP server.
//!
//! See `docs/architecture.md` for the path of one request through these modules.

pub mod clock;
pub mod config;
pub mod discipline;
pub mod io;
pub mod proto;
pub mod query;
pub mod server;
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
