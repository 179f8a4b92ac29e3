//! Loading and attaching through `bpf(2)`: the XSKMAP, the program, the XDP link and
//! `BPF_PROG_TEST_RUN`. Every kernel object is held by an [`OwnedFd`]: dropping the
//! [`XdpLink`] (or the process dying) detaches the program.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::btf;
use crate::insn::{self, Insn};
use crate::program::{self, ProgramConfig, RxMeta, TimestampMode, XdpAction};
use crate::sys::{self, cmd};
use crate::Error;

/// The license string given to the kernel: GPL-compatible, as some helpers require.
pub const LICENSE: &str = "Dual MIT/GPL";

/// The program's name in `bpftool prog` / `ip link` output.
pub const PROGRAM_NAME: &str = "meridian_xdp";

const VERIFIER_LOG_SIZE: usize = 4 << 20;

/// How to attach the program to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native first, generic if the driver refuses native (a device-bound program: native only).
    Auto,
    /// Driver (native) XDP: `XDP_FLAGS_DRV_MODE`.
    Native,
    /// Generic (skb) XDP: `XDP_FLAGS_SKB_MODE`, works on any interface, slower.
    Generic,
}

impl XdpMode {
    fn link_flags(self) -> u32 {
        match self {
            XdpMode::Native => sys::XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => sys::XDP_FLAGS_SKB_MODE,
            XdpMode::Auto => 0,
        }
    }
}

/// Checks that this process may use `bpf(2)` for XDP (creates and drops a one-entry XSKMAP).
pub fn probe() -> Result<(), Error> {
    XskMap::create(1).map(drop)
}

/// The index of a network interface by name, in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32, Error> {
    let c =
        CString::new(name).map_err(|_| Error::InvalidConfig("interface name has a NUL".into()))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(Error::Io {
            op: "if_nametoindex",
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(idx)
    }
}

/// A `BPF_MAP_TYPE_XSKMAP`: slot *n* holds the AF_XDP socket of RX queue *n*.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
    max_entries: u32,
}

impl XskMap {
    /// Creates a map with one slot per RX queue (`queues` ≥ 1).
    pub fn create(queues: u32) -> Result<Self, Error> {
        if queues == 0 {
            return Err(Error::InvalidConfig(
                "an XSKMAP needs at least one queue".into(),
            ));
        }
        let mut attr = sys::MapCreateAttr {
            map_type: sys::MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: queues,
            map_name: sys::obj_name("meridian_xsks"),
            ..Default::default()
        };
        // SAFETY: the attribute holds no pointers.
        let fd = unsafe { sys::bpf_fd(cmd::MAP_CREATE, &mut attr) }.map_err(|source| {
            Error::Syscall {
                op: "BPF_MAP_CREATE",
                source,
            }
        })?;
        Ok(XskMap {
            fd,
            max_entries: queues,
        })
    }

    /// Number of slots (RX queues).
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Puts the AF_XDP socket `xsk` in slot `queue` (replacing any previous one). The socket
    /// should be bound to the same queue of the interface the program is attached to.
    pub fn insert(&self, queue: u32, xsk: BorrowedFd<'_>) -> Result<(), Error> {
        let key = queue;
        let value: u32 = xsk.as_raw_fd() as u32;
        let mut attr = sys::MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            flags: sys::BPF_ANY,
            ..Default::default()
        };
        // SAFETY: `key` and `value` are live u32s matching the map's key and value sizes.
        unsafe { sys::bpf(cmd::MAP_UPDATE_ELEM, &mut attr) }
            .map(drop)
            .map_err(|source| Error::Syscall {
                op: "BPF_MAP_UPDATE_ELEM",
                source,
            })
    }

    /// Empties slot `queue`; frames for that queue then go to the kernel (XDP_PASS).
    /// Removing an empty slot is not an error.
    pub fn remove(&self, queue: u32) -> Result<(), Error> {
        let key = queue;
        let mut attr = sys::MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            ..Default::default()
        };
        // SAFETY: `key` is a live u32 matching the map's key size.
        match unsafe { sys::bpf(cmd::MAP_DELETE_ELEM, &mut attr) } {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(source) => Err(Error::Syscall {
                op: "BPF_MAP_DELETE_ELEM",
                source,
            }),
        }
    }
}

impl AsFd for XskMap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Options for loading raw instructions.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Bind the program to this interface (`prog_ifindex` + `BPF_F_XDP_DEV_BOUND_ONLY`);
    /// required for the RX-metadata kfuncs.
    pub dev_bound_ifindex: Option<u32>,
}

/// A loaded XDP program (not attached yet).
#[derive(Debug)]
pub struct XdpProgram {
    fd: OwnedFd,
    dev_bound_ifindex: Option<u32>,
    insn_count: usize,
}

/// The outcome of one `BPF_PROG_TEST_RUN`.
#[derive(Clone, Debug)]
pub struct TestRun {
    /// The program's verdict.
    pub action: XdpAction,
    /// The metadata area the program left in front of the frame (empty if none).
    pub meta: Vec<u8>,
    /// The frame after the program ran.
    pub frame: Vec<u8>,
}

impl TestRun {
    /// The metadata decoded as [`RxMeta`], if exactly that much was written.
    pub fn rx_meta(&self) -> Option<RxMeta> {
        let bytes: &[u8; RxMeta::SIZE] = self.meta.as_slice().try_into().ok()?;
        Some(RxMeta::from_bytes(bytes))
    }
}

impl XdpProgram {
    /// Builds meridian's program for `config` around `map` and loads it. For
    /// [`TimestampMode::Hardware`] the kfunc's BTF id is looked up in
    /// `/sys/kernel/btf/vmlinux` and the program is bound to the configured interface.
    pub fn load(config: &ProgramConfig, map: &XskMap) -> Result<Self, Error> {
        let (kfunc, dev_bound_ifindex) = match config.timestamp {
            TimestampMode::SoftwareTai => (None, None),
            TimestampMode::Hardware { ifindex } => {
                let id = btf::vmlinux_func_id(btf::RX_TIMESTAMP_KFUNC)?
                    .ok_or(Error::KfuncMissing(btf::RX_TIMESTAMP_KFUNC))?;
                (Some(id), Some(ifindex))
            }
        };
        let insns = program::build(config, map.fd.as_raw_fd(), kfunc)?;
        Self::load_insns(&insns, &LoadOptions { dev_bound_ifindex })
    }

    /// Loads arbitrary XDP instructions. On refusal the verifier log is in the error.
    pub fn load_insns(insns: &[Insn], opts: &LoadOptions) -> Result<Self, Error> {
        let license = CString::new(LICENSE).expect("no NUL in license");
        let image = insn::to_bytes(insns);
        let mut attr = sys::ProgLoadAttr {
            prog_type: sys::PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: image.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: sys::obj_name(PROGRAM_NAME),
            // BPF_XDP is the expected attach type of every XDP program (0 works too).
            expected_attach_type: sys::ATTACH_TYPE_XDP,
            ..Default::default()
        };
        if let Some(ifindex) = opts.dev_bound_ifindex {
            attr.prog_ifindex = ifindex;
            attr.prog_flags = sys::F_XDP_DEV_BOUND_ONLY;
        }
        // SAFETY: `image` and `license` outlive the call; no log buffer is given.
        let first = unsafe { sys::bpf_fd(cmd::PROG_LOAD, &mut attr) };
        let err = match first {
            Ok(fd) => {
                return Ok(XdpProgram {
                    fd,
                    dev_bound_ifindex: opts.dev_bound_ifindex,
                    insn_count: insns.len(),
                })
            }
            Err(e) => e,
        };
        if err.raw_os_error() == Some(libc::EPERM) {
            return Err(Error::Syscall {
                op: "BPF_PROG_LOAD",
                source: err,
            });
        }
        // Load again with a log buffer to say why.
        let mut log = vec![0u8; VERIFIER_LOG_SIZE];
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
        // SAFETY: as above, plus `log` is a writable buffer of `log_size` bytes.
        match unsafe { sys::bpf_fd(cmd::PROG_LOAD, &mut attr) } {
            // Accepted the second time (unlikely): take it.
            Ok(fd) => Ok(XdpProgram {
                fd,
                dev_bound_ifindex: opts.dev_bound_ifindex,
                insn_count: insns.len(),
            }),
            Err(_) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                Err(Error::Verifier {
                    source: err,
                    log: String::from_utf8_lossy(&log[..end]).into_owned(),
                })
            }
        }
    }

    /// Number of instructions loaded.
    pub fn insn_count(&self) -> usize {
        self.insn_count
    }

    /// The interface a device-bound program is tied to.
    pub fn dev_bound_ifindex(&self) -> Option<u32> {
        self.dev_bound_ifindex
    }

    /// The kernel's id of the program (what `ip link` shows as `prog/xdp id N`).
    pub fn id(&self) -> Result<u32, Error> {
        // struct bpf_prog_info starts with `__u32 type; __u32 id;`.
        let mut info = [0u32; 2];
        let mut attr = sys::InfoAttr {
            bpf_fd: self.fd.as_raw_fd() as u32,
            info_len: std::mem::size_of_val(&info) as u32,
            info: info.as_mut_ptr() as u64,
        };
        // SAFETY: `info` is writable for `info_len` bytes; the kernel writes at most that.
        unsafe { sys::bpf(cmd::OBJ_GET_INFO_BY_FD, &mut attr) }.map_err(|source| {
            Error::Syscall {
                op: "BPF_OBJ_GET_INFO_BY_FD",
                source,
            }
        })?;
        Ok(info[1])
    }

    /// Attaches to `ifindex` through a BPF link. The program stays attached while the
    /// returned [`XdpLink`] (or a dup of its fd) lives.
    pub fn attach(&self, ifindex: u32, mode: XdpMode) -> Result<XdpLink, Error> {
        let modes: &[XdpMode] = match (mode, self.dev_bound_ifindex) {
            // Device-bound programs cannot run in generic mode.
            (XdpMode::Auto, Some(_)) => &[XdpMode::Native],
            (XdpMode::Auto, None) => &[XdpMode::Native, XdpMode::Generic],
            (XdpMode::Native, _) => &[XdpMode::Native],
            (XdpMode::Generic, _) => &[XdpMode::Generic],
        };
        let mut tried = Vec::new();
        for &m in modes {
            let mut attr = sys::LinkCreateAttr {
                prog_fd: self.fd.as_raw_fd() as u32,
                target_ifindex: ifindex,
                attach_type: sys::ATTACH_TYPE_XDP,
                flags: m.link_flags(),
            };
            // SAFETY: the attribute holds no pointers.
            match unsafe { sys::bpf_fd(cmd::LINK_CREATE, &mut attr) } {
                Ok(fd) => {
                    return Ok(XdpLink {
                        fd,
                        ifindex,
                        mode: m,
                    })
                }
                Err(e) => tried.push((m, e)),
            }
        }
        Err(Error::Attach { ifindex, tried })
    }

    /// Runs the program once on `frame` with `BPF_PROG_TEST_RUN` (nothing is sent anywhere;
    /// a redirect is only reported). The frame must be at least 14 bytes long.
    /// Device-bound programs (hardware timestamps) cannot be test-run: the kernel returns
    /// EINVAL. With an empty XSKMAP slot a served frame reports XDP_PASS and carries the
    /// metadata; with a socket in the slot it reports XDP_REDIRECT.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun, Error> {
        let mut out = vec![0u8; frame.len() + 256];
        let mut ctx_in = sys::XdpMd {
            data_end: frame.len() as u32,
            ..Default::default()
        };
        let mut ctx_out = sys::XdpMd::default();
        let mut attr = sys::TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ctx_size_in: std::mem::size_of::<sys::XdpMd>() as u32,
            ctx_size_out: std::mem::size_of::<sys::XdpMd>() as u32,
            ctx_in: &mut ctx_in as *mut sys::XdpMd as u64,
            ctx_out: &mut ctx_out as *mut sys::XdpMd as u64,
            ..Default::default()
        };
        // SAFETY: input buffers are readable and output buffers writable for the sizes
        // given; all live across the call.
        unsafe { sys::bpf(cmd::PROG_TEST_RUN, &mut attr) }.map_err(|source| Error::Syscall {
            op: "BPF_PROG_TEST_RUN",
            source,
        })?;
        let total = (attr.data_size_out as usize).min(out.len());
        // ctx_out is relative to data_meta: data_meta = 0, data = metadata length.
        let meta_len = (ctx_out.data.saturating_sub(ctx_out.data_meta) as usize).min(total);
        Ok(TestRun {
            action: XdpAction::from_code(attr.retval),
            meta: out[..meta_len].to_vec(),
            frame: out[meta_len..total].to_vec(),
        })
    }
}

impl AsFd for XdpProgram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An attached program. Dropping it detaches the program from the interface.
#[derive(Debug)]
pub struct XdpLink {
    fd: OwnedFd,
    ifindex: u32,
    mode: XdpMode,
}

impl XdpLink {
    /// The interface.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mode actually in use ([`XdpMode::Native`] or [`XdpMode::Generic`]).
    pub fn mode(&self) -> XdpMode {
        self.mode
    }
}

impl AsFd for XdpLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
