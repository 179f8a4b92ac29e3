//! End to end: a real AF_XDP socket (copy mode, native XDP on veth) receives the served
//! UDP frames with the program's metadata in front of them, while other UDP still reaches
//! the kernel. This is the contract the AF_XDP backend relies on.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use meridian_bpf::{ifindex, RxMeta, XdpMode, XskMap};

const RING: u32 = 16;
const CHUNK: u32 = 2048;

struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(fd: Option<i32>, len: usize, offset: libc::off_t) -> Mapping {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping chosen by the kernel; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Mapping {
            ptr: ptr.cast(),
            len,
        }
    }

    fn u32_at(&self, off: u64) -> &AtomicU32 {
        assert!(off as usize + 4 <= self.len);
        // SAFETY: in bounds (checked), 4-byte aligned ring index shared with the kernel,
        // alive as long as `self`.
        unsafe { &*(self.ptr.add(off as usize) as *const AtomicU32) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A minimal AF_XDP receiver: UMEM, fill ring, RX ring, bound to one queue in copy mode.
struct XskRx {
    rx: Mapping,
    _fill: Mapping,
    umem: Mapping,
    offs: libc::xdp_mmap_offsets,
    fd: OwnedFd,
}

fn setsockopt<T>(fd: &OwnedFd, opt: i32, val: &T) {
    // SAFETY: `val` is a live value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {opt}: {}",
        std::io::Error::last_os_error()
    );
}

impl XskRx {
    fn bind(ifindex: u32, queue: u32) -> XskRx {
        // SAFETY: plain socket(2); checked below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            raw >= 0,
            "AF_XDP socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mapping::new(None, (RING * CHUNK) as usize, 0);
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr as u64,
            len: umem.len as u64,
            chunk_size: CHUNK,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::XDP_UMEM_REG, &reg);
        setsockopt(&fd, libc::XDP_UMEM_FILL_RING, &RING);
        setsockopt(&fd, libc::XDP_UMEM_COMPLETION_RING, &RING);
        setsockopt(&fd, libc::XDP_RX_RING, &RING);
        // SAFETY: all-zero is a valid xdp_mmap_offsets (plain integers).
        let mut offs: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of_val(&offs) as libc::socklen_t;
        // SAFETY: `offs` is writable for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut offs as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        };
        assert_eq!(
            rc,
            0,
            "XDP_MMAP_OFFSETS: {}",
            std::io::Error::last_os_error()
        );
        let fill = Mapping::new(
            Some(fd.as_raw_fd()),
            offs.fr.desc as usize + RING as usize * 8,
            libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
        );
        let rx = Mapping::new(
            Some(fd.as_raw_fd()),
            offs.rx.desc as usize + RING as usize * std::mem::size_of::<libc::xdp_desc>(),
            libc::XDP_PGOFF_RX_RING,
        );
        // Give every chunk to the kernel.
        for i in 0..RING {
            let slot = offs.fr.desc as usize + i as usize * 8;
            // SAFETY: slot i of the fill ring's descriptor array, inside the mapping.
            unsafe { (fill.ptr.add(slot) as *mut u64).write(u64::from(i * CHUNK)) };
        }
        fill.u32_at(offs.fr.producer).store(RING, Ordering::Release);
        // SAFETY: all-zero is a valid sockaddr_xdp before the fields are set.
        let mut sa: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
        sa.sxdp_family = libc::AF_XDP as u16;
        sa.sxdp_flags = libc::XDP_COPY;
        sa.sxdp_ifindex = ifindex;
        sa.sxdp_queue_id = queue;
        // SAFETY: `sa` is a valid sockaddr_xdp of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of_val(&sa) as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind AF_XDP: {}", std::io::Error::last_os_error());
        XskRx {
            rx,
            _fill: fill,
            umem,
            offs,
            fd,
        }
    }

    /// The next received frame: (metadata, packet bytes).
    fn try_recv(&self) -> Option<(Option<RxMeta>, Vec<u8>)> {
        let cons = self
            .rx
            .u32_at(self.offs.rx.consumer)
            .load(Ordering::Relaxed);
        let prod = self
            .rx
            .u32_at(self.offs.rx.producer)
            .load(Ordering::Acquire);
        if cons == prod {
            return None;
        }
        let at = self.offs.rx.desc as usize
            + (cons % RING) as usize * std::mem::size_of::<libc::xdp_desc>();
        // SAFETY: descriptor `cons` of the RX ring, published by the kernel (Acquire above).
        let desc = unsafe { (self.rx.ptr.add(at) as *const libc::xdp_desc).read() };
        // SAFETY: the UMEM mapping is alive and the kernel is done with this chunk.
        let umem = unsafe { std::slice::from_raw_parts(self.umem.ptr, self.umem.len) };
        let addr = desc.addr as usize;
        let meta = RxMeta::read_before(umem, addr);
        let frame = umem[addr..addr + desc.len as usize].to_vec();
        self.rx
            .u32_at(self.offs.rx.consumer)
            .store(cons + 1, Ordering::Release);
        Some((meta, frame))
    }
}

fn now_tai_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_TAI, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn afxdp_receives(test: &str, tag: &str, hardware: bool) {
    if skip_without_bpf(test) {
        return;
    }
    let Some(pair) = veth_pair(test, tag, [10, 201, 0], [0xfd00, 0x6d63, 0, 0]) else {
        return;
    };
    let (sname, cname) = (pair.server.name().to_owned(), pair.client.name().to_owned());
    let test = test.to_string();
    on_own_thread(move || {
        enter_netns(&sname);
        let ifx = ifindex("va").unwrap();
        let map = XskMap::create(1).unwrap();
        let Some(prog) = load_test_program(&test, &map, ifx, hardware) else {
            return;
        };
        let _link = prog.attach(ifx, XdpMode::Native).unwrap();
        let xsk = XskRx::bind(ifx, 0);
        map.insert(0, xsk.fd.as_fd()).unwrap();
        let other: SocketAddr = "10.201.0.1:12301".parse().unwrap();
        let kernel_sock = UdpSocket::bind(other).unwrap();
        kernel_sock
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();

        enter_netns(&cname);
        let client4 = UdpSocket::bind("10.201.0.2:0").unwrap();
        let client6 = UdpSocket::bind("[fd00:6d63::2]:0").unwrap();
        for (client, dst, ipv6) in [
            (&client4, "10.201.0.1:12300", false),
            (&client6, "[fd00:6d63::1]:12300", true),
        ] {
            let dst: SocketAddr = dst.parse().unwrap();
            let payload = format!("ntp request to {dst}");
            let before = now_tai_ns();
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut got = None;
            while got.is_none() && Instant::now() < deadline {
                client.send_to(payload.as_bytes(), dst).unwrap();
                let until = Instant::now() + Duration::from_millis(100);
                while Instant::now() < until {
                    if let Some(f) = xsk.try_recv() {
                        got = Some(f);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let (meta, frame) =
                got.unwrap_or_else(|| panic!("{dst}: nothing on the AF_XDP socket"));
            let meta = meta.expect("metadata in front of the frame");
            eprintln!("{dst}: {meta:?}");
            assert!(meta.is_valid(), "{meta:?}");
            assert_eq!(meta.is_ipv6(), ipv6, "{meta:?}");
            assert!(!meta.has_vlan());
            let at = meta.udp_offset();
            assert_eq!(at, if ipv6 { 54 } else { 34 });
            let udp = udp_at(&frame, at);
            assert_eq!(udp.dst_port(), 12300);
            assert_eq!(udp.payload(), payload.as_bytes());
            assert_eq!(
                at + usize::from(udp.len()),
                frame.len(),
                "the datagram ends the frame"
            );
            if meta.kind == RxMeta::KIND_SOFTWARE_TAI {
                let after = now_tai_ns();
                assert!(
                    (before..=after).contains(&meta.timestamp_ns),
                    "TAI stamp {} outside [{before}, {after}]",
                    meta.timestamp_ns
                );
                // veth has no hardware stamp: the hardware variant must say it fell back.
                assert_eq!(
                    meta.flags & RxMeta::FLAG_HW_FALLBACK != 0,
                    hardware,
                    "{meta:?}"
                );
            } else {
                assert!(hardware && meta.timestamp_ns != 0, "{meta:?}");
            }
        }
        // Other UDP to the same host still goes to the kernel, not to the socket.
        let mut buf = [0u8; 64];
        let received = (0..30).any(|_| {
            client4.send_to(b"other", other).unwrap();
            kernel_sock.recv_from(&mut buf).is_ok()
        });
        assert!(received, "UDP to a non-served port reaches the kernel");
        while let Some((_, frame)) = xsk.try_recv() {
            assert!(
                !frame.ends_with(b"other"),
                "non-served UDP leaked to AF_XDP"
            );
        }
    });
    drop(pair);
}

#[test]
fn afxdp_socket_receives_served_frames_with_software_stamp() {
    afxdp_receives(
        "afxdp_socket_receives_served_frames_with_software_stamp",
        "xs",
        false,
    );
}

#[test]
fn afxdp_socket_receives_served_frames_with_hardware_variant() {
    afxdp_receives(
        "afxdp_socket_receives_served_frames_with_hardware_variant",
        "xh",
        true,
    );
}
