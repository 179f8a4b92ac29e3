//! The crate's error type.

use std::fmt;
use std::io;

use crate::btf::BtfError;
use crate::insn::AsmError;
use crate::loader::XdpMode;

/// Everything that can go wrong while building, loading or attaching the program.
#[derive(Debug)]
pub enum Error {
    /// A `bpf(2)` command failed (`op` names it, e.g. `BPF_MAP_CREATE`).
    Syscall {
        /// The command.
        op: &'static str,
        /// The errno.
        source: io::Error,
    },
    /// Other I/O (reading BTF, resolving an interface name).
    Io {
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// `BPF_PROG_LOAD` was refused; `log` is the verifier's output (may be truncated).
    Verifier {
        /// The errno (usually EACCES or EINVAL).
        source: io::Error,
        /// The verifier log.
        log: String,
    },
    /// Attaching to an interface failed in every mode that was tried.
    Attach {
        /// The interface index.
        ifindex: u32,
        /// Each mode tried, with its errno.
        tried: Vec<(XdpMode, io::Error)>,
    },
    /// The program configuration is out of range.
    InvalidConfig(String),
    /// `/sys/kernel/btf/vmlinux` could not be parsed.
    Btf(BtfError),
    /// The kernel has no kfunc of this name in its BTF.
    KfuncMissing(&'static str),
    /// Label resolution failed (a bug in the program builder).
    Asm(AsmError),
}

impl Error {
    /// The errno behind the error, if there is one (for attach errors, the last mode's).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Syscall { source, .. }
            | Error::Io { source, .. }
            | Error::Verifier { source, .. } => source.raw_os_error(),
            Error::Attach { tried, .. } => tried.last().and_then(|(_, e)| e.raw_os_error()),
            _ => None,
        }
    }

    /// Whether the error means missing privileges (EPERM / EACCES outside the verifier).
    pub fn is_permission_denied(&self) -> bool {
        !matches!(self, Error::Verifier { .. })
            && matches!(self.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Syscall { op, source } => write!(f, "bpf({op}) failed: {source}"),
            Error::Io { op, source } => write!(f, "{op} failed: {source}"),
            Error::Verifier { source, log } => {
                write!(f, "the kernel rejected the XDP program: {source}")?;
                if log.trim().is_empty() {
                    write!(f, " (no verifier log)")
                } else {
                    write!(f, "\nverifier log:\n{}", log.trim_end())
                }
            }
            Error::Attach { ifindex, tried } => {
                write!(f, "cannot attach the XDP program to ifindex {ifindex}:")?;
                for (mode, e) in tried {
                    write!(f, " {mode:?} mode: {e};")?;
                }
                Ok(())
            }
            Error::InvalidConfig(msg) => write!(f, "invalid XDP program configuration: {msg}"),
            Error::Btf(e) => write!(f, "cannot read kernel BTF: {e}"),
            Error::KfuncMissing(name) => write!(f, "the kernel has no kfunc {name}"),
            Error::Asm(e) => write!(f, "XDP program assembly failed: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Syscall { source, .. }
            | Error::Io { source, .. }
            | Error::Verifier { source, .. } => Some(source),
            Error::Btf(e) => Some(e),
            Error::Asm(e) => Some(e),
            _ => None,
        }
    }
}

impl From<BtfError> for Error {
    fn from(e: BtfError) -> Self {
        Error::Btf(e)
    }
}

impl From<AsmError> for Error {
    fn from(e: AsmError) -> Self {
        Error::Asm(e)
    }
}
