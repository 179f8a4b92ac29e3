//! Who is at the other end of a Unix stream socket (SO_PEERCRED), for the control socket's
//! permission check. `std`'s `UnixStream::peer_cred` is not stable yet.

/// The credentials of a socket's peer, as the kernel recorded them at `connect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The peer of the connected Unix stream socket `sock`.
#[cfg(linux_io)]
pub fn peer_cred(sock: &impl std::os::fd::AsRawFd) -> std::io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable `struct ucred` and `len` holds its size; the kernel writes at
    // most `len` bytes into it and the new length into `len`. The descriptor stays open for
    // the call (borrowed from `sock`).
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Without `linux_io` the peer is unknown: callers treat it as nobody in particular.
#[cfg(all(unix, not(linux_io)))]
pub fn peer_cred(_sock: &impl std::os::fd::AsRawFd) -> std::io::Result<PeerCred> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "peer credentials are read only on Linux",
    ))
}

#[cfg(all(test, linux_io))]
mod tests {
    use super::*;

    #[test]
    fn a_socket_pair_sees_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let c = peer_cred(&a).unwrap();
        assert_eq!(c.pid, std::process::id() as i32);
        let me = std::fs::metadata("/proc/self").map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid()
        });
        assert_eq!(Ok(c.uid), me.map_err(|e| e.to_string()));
    }
}
