//! The backends every test runs against.

use std::sync::OnceLock;

use meridian_testkit::skip_notice;

use super::server::{Server, ServerOpts};

static BACKENDS: OnceLock<Vec<&'static str>> = OnceLock::new();

/// The backends every test runs against: `udp` always, `io-uring` when this binary serves
/// with it (probed once per test binary; the reason is printed when it is left out). A portable
/// build (`--cfg meridian_portable`, no `linux_io`) has only `udp`.
pub fn backends() -> Vec<&'static str> {
    BACKENDS
        .get_or_init(|| {
            let mut v = vec!["udp"];
            if !cfg!(linux_io) {
                // Not a skip: io-uring does not exist in a portable build.
                return v;
            }
            match Server::start(&ServerOpts::new("io-uring")) {
                Ok(s) => {
                    let stopped = s.stop();
                    if stopped.status.success() {
                        v.push("io-uring");
                    } else {
                        skip_notice(&format!(
                            "backend io-uring: started but did not stop cleanly ({}): {}",
                            stopped.status, stopped.stderr
                        ));
                    }
                }
                Err(e) => skip_notice(&format!("backend io-uring not tested: {e}")),
            }
            v
        })
        .clone()
}

/// The name a server started with `--backend BACKEND` reports (start-up line and JSON report):
/// `--backend udp` is `udp-portable` in a portable build.
pub fn backend_name(backend: &str) -> &str {
    match backend {
        "udp" if !cfg!(linux_io) => "udp-portable",
        other => other,
    }
}
