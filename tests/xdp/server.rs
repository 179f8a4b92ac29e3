//! The server in its namespace: `meridian serve --backend xdp` on `va`, killed by PID on drop.

use std::time::Duration;

use meridian_testkit::VethPair;

use crate::common::{ServerProcess, MERIDIAN};

/// `meridian serve --backend xdp` inside the server namespace, killed by PID on drop.
pub struct XdpServer {
    process: ServerProcess,
}

impl XdpServer {
    pub fn start(pair: &VethPair, mode: &str, listen: &[&str]) -> Result<XdpServer, String> {
        Self::start_with(pair, mode, listen, &[])
    }

    /// [`XdpServer::start`] with further arguments (`--config FILE`).
    pub fn start_with(
        pair: &VethPair,
        mode: &str,
        listen: &[&str],
        extra: &[&str],
    ) -> Result<XdpServer, String> {
        let mut args = vec![
            "serve",
            "--backend",
            "xdp",
            "--interface",
            "va",
            "--xdp-mode",
            mode,
            "--log-level",
            "info",
        ];
        for l in listen {
            args.extend(["--listen", l]);
        }
        args.extend(extra);
        let mut cmd = pair.server.command(MERIDIAN);
        cmd.args(&args);
        let (process, _) = ServerProcess::spawn(&mut cmd, Duration::from_secs(15))?;
        Ok(XdpServer { process })
    }

    pub fn must_start(pair: &VethPair, mode: &str, listen: &[&str]) -> XdpServer {
        Self::start(pair, mode, listen).unwrap_or_else(|e| panic!("xdp server ({mode}): {e}"))
    }

    /// SIGKILL: the kernel detaches the program and closes the socket when the process dies.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, wait (5 s at most), a successful exit, and the JSON report from stdout with
    /// the logs.
    pub fn stop(self) -> (serde_json::Value, String) {
        let stopped = self.process.stop_with(libc::SIGTERM);
        let err = stopped.stderr;
        assert!(
            stopped.status.success(),
            "server exit status {}: {err}",
            stopped.status
        );
        (stopped.report, err)
    }
}
