//! Skipping a test (or part of one) that cannot run here.

/// Whether `MERIDIAN_REQUIRE_ALL=1` is set (by `.ci/run`, where everything is installed).
pub fn require_all() -> bool {
    std::env::var_os("MERIDIAN_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// Says why a test or part of one does not run here. With `MERIDIAN_REQUIRE_ALL=1` a skip is a
/// failure instead.
pub fn skip_notice(reason: &str) {
    assert!(
        !require_all(),
        "MERIDIAN_REQUIRE_ALL=1, but this would be skipped: {reason}"
    );
    eprintln!("SKIP: {reason}");
}
