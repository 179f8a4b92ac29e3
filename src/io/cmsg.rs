//! Control messages, parsed with bounds-checked byte reads (no pointer casts): of received
//! datagrams, the kernel receive timestamps (SCM_TIMESTAMPING / SCM_TIMESTAMPNS) and the
//! destination address (IP_PKTINFO / IPV6_PKTINFO); of the error queue, transmit-timestamp
//! reports ([`tx_report`]: SCM_TIMESTAMPING with a `sock_extended_err`). Also writes the
//! messages a reply is sent with: PKTINFO, so it leaves from the address the request was sent
//! to, and the request for its transmit timestamp under our own key ([`write_tx_request`]).
//! Shared by the UDP and io_uring backends.

use std::mem::size_of;

use crate::proto::UnixNanos;

/// What the control messages of one datagram said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// Software (kernel) receive timestamp.
    pub software: Option<UnixNanos>,
    /// Hardware receive timestamp (in the NIC's clock; mapping to system time is the caller's).
    pub hardware: Option<UnixNanos>,
    /// The datagram's destination address and arrival interface.
    pub dst: Option<PktInfo>,
}

/// A transmit-timestamp report read from a socket's error queue: the key the datagram was
/// sent with and its stamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxReport {
    /// The datagram's key: the SCM_TS_OPT_ID it was sent with (`ee_data`).
    pub id: u32,
    /// Software (kernel) stamp, in the system clock.
    pub software: Option<UnixNanos>,
    /// Hardware stamp (in the NIC's clock).
    pub hardware: Option<UnixNanos>,
}

/// `ee_origin` of a timestamping report in `struct sock_extended_err`.
const SO_EE_ORIGIN_TIMESTAMPING: u8 = 4;
/// `ee_info` of a report of the stamp taken when the datagram left (to the driver or NIC).
const SCM_TSTAMP_SND: u32 = 0;
/// `SCM_TS_OPT_ID` (asm-generic/socket.h, Linux ≥ 6.13): the timestamp key of one datagram,
/// in place of the socket's implicit counter. libc 0.2 lacks it.
pub const SCM_TS_OPT_ID: i32 = 81;

/// Destination address and interface of a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PktInfo {
    V4 { addr: [u8; 4], ifindex: i32 },
    V6 { addr: [u8; 16], ifindex: u32 },
}

// Linux cmsg layout: a header { len: size_t, level: int, type: int } padded to size_t
// alignment, then the data; each message padded to size_t alignment.
const ALIGN: usize = size_of::<usize>();
const HDR_LEN: usize = align(size_of::<usize>() + 2 * size_of::<i32>());

const fn align(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// Space one control message with `data_len` bytes of data takes (CMSG_SPACE).
pub const fn space(data_len: usize) -> usize {
    HDR_LEN + align(data_len)
}

/// Calls `f(level, type, data)` for each whole control message of `control` (as filled in by
/// recvmsg, `msg_controllen` bytes); stops at the first header that does not fit.
fn walk(control: &[u8], mut f: impl FnMut(i32, i32, &[u8])) {
    let mut pos = 0;
    while let Some(hdr) = control.get(pos..pos + HDR_LEN) {
        let len = read_usize(hdr, 0);
        let level = read_i32(hdr, size_of::<usize>());
        let kind = read_i32(hdr, size_of::<usize>() + 4);
        let Some(end) = pos
            .checked_add(len)
            .filter(|&e| len >= HDR_LEN && e <= control.len())
        else {
            break;
        };
        f(level, kind, &control[pos + HDR_LEN..end]);
        pos += align(len);
    }
}

/// Reads one control-message buffer (as filled in by recvmsg, `msg_controllen` bytes).
pub fn parse(control: &[u8]) -> RecvMeta {
    let mut meta = RecvMeta::default();
    walk(control, |level, kind, data| match (level, kind) {
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPING) => {
            // struct scm_timestamping { struct timespec ts[3]; }: [0] software, [2] raw HW.
            meta.software = read_timespec(data, 0);
            meta.hardware = read_timespec(data, 2 * size_of::<libc::timespec>());
        }
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS) => {
            meta.software = read_timespec(data, 0);
        }
        (libc::IPPROTO_IP, libc::IP_PKTINFO) if data.len() >= 12 => {
            // struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
            let ifindex = read_i32(data, 0);
            let mut addr = [0u8; 4];
            addr.copy_from_slice(&data[8..12]);
            meta.dst = Some(PktInfo::V4 { addr, ifindex });
        }
        (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if data.len() >= 20 => {
            // struct in6_pktinfo { in6_addr ipi6_addr; unsigned ipi6_ifindex; }
            let mut addr = [0u8; 16];
            addr.copy_from_slice(&data[..16]);
            let ifindex = read_i32(data, 16) as u32;
            meta.dst = Some(PktInfo::V6 { addr, ifindex });
        }
        _ => {}
    });
    meta
}

/// Reads the control messages of one error-queue message: a transmit-timestamp report when
/// they hold a `sock_extended_err` of origin SO_EE_ORIGIN_TIMESTAMPING for the send stamp
/// (SCM_TSTAMP_SND) and an SCM_TIMESTAMPING with at least one stamp; `None` for anything else
/// (an ICMP error, a scheduler or ACK stamp, a cut-short buffer).
pub fn tx_report(control: &[u8]) -> Option<TxReport> {
    let (mut id, mut stamps) = (None, None);
    walk(control, |level, kind, data| match (level, kind) {
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPING) => {
            stamps = Some((
                read_timespec(data, 0),
                read_timespec(data, 2 * size_of::<libc::timespec>()),
            ));
        }
        // struct sock_extended_err { u32 ee_errno; u8 ee_origin, ee_type, ee_code, ee_pad;
        // u32 ee_info; u32 ee_data; } (then the offender's address, unused here).
        (libc::SOL_IP, libc::IP_RECVERR) | (libc::SOL_IPV6, libc::IPV6_RECVERR)
            if data.len() >= 16
                && data[4] == SO_EE_ORIGIN_TIMESTAMPING
                && read_i32(data, 0) == libc::ENOMSG
                && read_i32(data, 8) as u32 == SCM_TSTAMP_SND =>
        {
            id = Some(read_i32(data, 12) as u32);
        }
        _ => {}
    });
    match (id, stamps) {
        (Some(id), Some((software, hardware))) if software.is_some() || hardware.is_some() => {
            Some(TxReport {
                id,
                software,
                hardware,
            })
        }
        _ => None,
    }
}

/// Writes the PKTINFO control message that sets a reply's source address (and, for IPv6, its
/// interface) into `out`; returns the bytes used (0 if `out` is too small).
pub fn write_pktinfo(info: &PktInfo, out: &mut [u8]) -> usize {
    let (level, kind, data_len) = match info {
        PktInfo::V4 { .. } => (libc::IPPROTO_IP, libc::IP_PKTINFO, 12),
        PktInfo::V6 { .. } => (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, 20),
    };
    let total = space(data_len);
    let Some(buf) = out.get_mut(..total) else {
        return 0;
    };
    let data = write_header(buf, level, kind, data_len);
    match info {
        PktInfo::V4 { addr, .. } => {
            // ipi_ifindex 0 (let routing choose); ipi_spec_dst = our source address (ip(7));
            // ipi_addr, ignored on send, carries the same address.
            data[4..8].copy_from_slice(addr);
            data[8..12].copy_from_slice(addr);
        }
        PktInfo::V6 { addr, ifindex } => {
            data[..16].copy_from_slice(addr);
            data[16..20].copy_from_slice(&ifindex.to_ne_bytes());
        }
    }
    total
}

/// Space [`write_tx_request`] takes.
pub const TX_REQUEST_SPACE: usize = 2 * space(4);

/// Writes the two control messages that ask for this one datagram's software transmit stamp
/// (SO_TIMESTAMPING with SOF_TIMESTAMPING_TX_SOFTWARE) and give its report the key `id`
/// (SCM_TS_OPT_ID) into `out`; returns the bytes used (0 if `out` is too small). The socket
/// must have SOF_TIMESTAMPING_OPT_ID set, or the kernel refuses the send (EINVAL).
pub fn write_tx_request(id: u32, out: &mut [u8]) -> usize {
    let Some(buf) = out.get_mut(..TX_REQUEST_SPACE) else {
        return 0;
    };
    let (first, second) = buf.split_at_mut(space(4));
    write_header(first, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, 4)
        .copy_from_slice(&libc::SOF_TIMESTAMPING_TX_SOFTWARE.to_ne_bytes());
    write_header(second, libc::SOL_SOCKET, SCM_TS_OPT_ID, 4).copy_from_slice(&id.to_ne_bytes());
    TX_REQUEST_SPACE
}

/// Zeroes `buf` (one message's whole space), writes a control-message header for `data_len`
/// bytes of (`level`, `kind`) data and returns those data bytes.
fn write_header(buf: &mut [u8], level: i32, kind: i32, data_len: usize) -> &mut [u8] {
    buf.fill(0);
    let len = HDR_LEN + data_len;
    buf[..size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
    buf[size_of::<usize>()..size_of::<usize>() + 4].copy_from_slice(&level.to_ne_bytes());
    buf[size_of::<usize>() + 4..size_of::<usize>() + 8].copy_from_slice(&kind.to_ne_bytes());
    &mut buf[HDR_LEN..len]
}

impl RecvMeta {
    /// The [`Arrival`](crate::datapath::Arrival) of a datagram from `src` received at `rx`,
    /// with the destination and interface these control messages give.
    pub fn arrival(
        &self,
        src: std::net::SocketAddr,
        rx: crate::clock::RawStamp,
    ) -> crate::datapath::Arrival {
        let (dst, ifindex) = self.dst.map_or((None, 0), |d| {
            let (a, i) = d.addr_and_ifindex();
            (Some(a), i)
        });
        crate::datapath::Arrival {
            src,
            dst,
            ifindex,
            rx,
        }
    }
}

impl PktInfo {
    /// The destination address and the interface index.
    pub fn addr_and_ifindex(&self) -> (std::net::IpAddr, u32) {
        match *self {
            PktInfo::V4 { addr, ifindex } => (addr.into(), ifindex.max(0) as u32),
            PktInfo::V6 { addr, ifindex } => (addr.into(), ifindex),
        }
    }
}

/// A socket address from the bytes of a `sockaddr_in` / `sockaddr_in6` as the kernel wrote it
/// (the `msg_name` of a received datagram); `None` for any other family or a short buffer.
pub fn sockaddr(b: &[u8]) -> Option<std::net::SocketAddr> {
    use std::net::{SocketAddrV4, SocketAddrV6};
    let family = i32::from(u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddrV4::new(ip.into(), port).into())
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
            Some(SocketAddrV6::new(ip.into(), port, flow, scope).into())
        }
        _ => None,
    }
}

fn read_usize(b: &[u8], at: usize) -> usize {
    let mut a = [0u8; size_of::<usize>()];
    a.copy_from_slice(&b[at..at + size_of::<usize>()]);
    usize::from_ne_bytes(a)
}

fn read_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_ne_bytes(a)
}

fn read_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_ne_bytes(a)
}

/// A `struct timespec` at `at`, or None when absent or all zero (the kernel leaves unused
/// slots of scm_timestamping zeroed).
fn read_timespec(data: &[u8], at: usize) -> Option<UnixNanos> {
    // 64-bit Linux: time_t and long are both 8 bytes.
    const _: () = assert!(size_of::<libc::timespec>() == 16);
    let b = data.get(at..at + 16)?;
    let (secs, nanos) = (read_i64(b, 0), read_i64(b, 8));
    if (secs == 0 && nanos == 0) || !(0..1_000_000_000).contains(&nanos) {
        return None;
    }
    Some(UnixNanos::from_parts(secs, nanos as u32))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn socket_addresses_from_kernel_bytes() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&1123u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[192, 0, 2, 1]);
        assert_eq!(sockaddr(&v4), Some("192.0.2.1:1123".parse().unwrap()));
        let mut v6 = [0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&123u16.to_be_bytes());
        v6[8..24].copy_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        assert_eq!(sockaddr(&v6), Some("[2001:db8::7]:123".parse().unwrap()));
        assert_eq!(sockaddr(&v6[..20]), None, "short");
        assert_eq!(sockaddr(&[0u8; 16]), None, "AF_UNSPEC");
        assert_eq!(sockaddr(&[]), None);
    }

    fn msg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; space(data.len())];
        let len = HDR_LEN + data.len();
        v[..8].copy_from_slice(&len.to_ne_bytes());
        v[8..12].copy_from_slice(&level.to_ne_bytes());
        v[12..16].copy_from_slice(&kind.to_ne_bytes());
        v[HDR_LEN..HDR_LEN + data.len()].copy_from_slice(data);
        v
    }

    fn timespec(secs: i64, nanos: i64) -> Vec<u8> {
        [secs.to_ne_bytes(), nanos.to_ne_bytes()].concat()
    }

    #[test]
    fn parses_timestamping_and_pktinfo() {
        let mut ts = timespec(1_700_000_000, 123);
        ts.extend(timespec(0, 0));
        ts.extend(timespec(0, 0));
        let mut buf = msg(libc::SOL_SOCKET, libc::SO_TIMESTAMPING, &ts);
        let mut pi = vec![0u8; 12];
        pi[..4].copy_from_slice(&3i32.to_ne_bytes());
        pi[8..12].copy_from_slice(&[127, 0, 0, 9]);
        buf.extend(msg(libc::IPPROTO_IP, libc::IP_PKTINFO, &pi));
        let m = parse(&buf);
        assert_eq!(m.software, Some(UnixNanos::from_parts(1_700_000_000, 123)));
        assert_eq!(m.hardware, None);
        assert_eq!(
            m.dst,
            Some(PktInfo::V4 {
                addr: [127, 0, 0, 9],
                ifindex: 3
            })
        );
    }

    #[test]
    fn truncated_or_garbage_buffers_are_harmless() {
        let ts = timespec(5, 6);
        let buf = msg(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &ts);
        for cut in 0..buf.len() {
            let m = parse(&buf[..cut]);
            assert_eq!(m.software, None, "cut at {cut}");
        }
        assert_eq!(parse(&buf).software, Some(UnixNanos::from_parts(5, 6)));
        let mut bad = buf.clone();
        bad[..8].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(parse(&bad), RecvMeta::default());
        assert_eq!(parse(&[0xff; 100]), RecvMeta::default());
    }

    /// A `sock_extended_err` (with a zeroed IPv4 offender address after it, as the kernel
    /// sends it) of `origin` and stamp type `info`, carrying key `id`.
    pub(crate) fn extended_err(origin: u8, info: u32, id: u32) -> Vec<u8> {
        let mut e = vec![0u8; 32];
        e[0..4].copy_from_slice(&(libc::ENOMSG as u32).to_ne_bytes());
        e[4] = origin;
        e[8..12].copy_from_slice(&info.to_ne_bytes());
        e[12..16].copy_from_slice(&id.to_ne_bytes());
        e
    }

    /// The control messages of one error-queue report: SCM_TIMESTAMPING with `software` in
    /// ts[0] and `hardware` in ts[2], then the extended error at (`level`, `kind`).
    pub(crate) fn report(
        software: (i64, i64),
        hardware: (i64, i64),
        level: i32,
        kind: i32,
        err: &[u8],
    ) -> Vec<u8> {
        let ts = [
            timespec(software.0, software.1),
            timespec(0, 0),
            timespec(hardware.0, hardware.1),
        ]
        .concat();
        let mut buf = msg(libc::SOL_SOCKET, libc::SO_TIMESTAMPING, &ts);
        buf.extend(msg(level, kind, err));
        buf
    }

    /// The kernel's report of the send stamp `software` of the datagram sent with key `id`, on
    /// an IPv4 socket.
    pub(crate) fn send_report(id: u32, software: (i64, i64)) -> Vec<u8> {
        let err = extended_err(SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SND, id);
        report(software, (0, 0), libc::SOL_IP, libc::IP_RECVERR, &err)
    }

    #[test]
    fn a_transmit_timestamp_report_gives_its_key_and_stamp() {
        let good = send_report(77, (1_700_000_000, 5));
        assert_eq!(
            tx_report(&good),
            Some(TxReport {
                id: 77,
                software: Some(UnixNanos::from_parts(1_700_000_000, 5)),
                hardware: None,
            })
        );
        // The IPv6 form, and a hardware stamp in ts[2].
        let v6 = report(
            (0, 0),
            (42, 7),
            libc::SOL_IPV6,
            libc::IPV6_RECVERR,
            &extended_err(SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SND, u32::MAX),
        );
        let r = tx_report(&v6).unwrap();
        assert_eq!((r.id, r.software), (u32::MAX, None));
        assert_eq!(r.hardware, Some(UnixNanos::from_parts(42, 7)));
        // The extended error first, the stamps after it: the order does not matter.
        let mut swapped = msg(
            libc::SOL_IP,
            libc::IP_RECVERR,
            &extended_err(SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SND, 9),
        );
        swapped.extend(msg(
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            &[timespec(3, 4), timespec(0, 0), timespec(0, 0)].concat(),
        ));
        assert_eq!(tx_report(&swapped).map(|r| r.id), Some(9));
    }

    #[test]
    fn anything_but_a_send_stamp_report_is_no_report() {
        let with = |err: Vec<u8>| report((5, 6), (0, 0), libc::SOL_IP, libc::IP_RECVERR, &err);
        // An ICMP error (origin 2) carrying a time is no timestamp report.
        assert_eq!(tx_report(&with(extended_err(2, SCM_TSTAMP_SND, 1))), None);
        // A scheduler (1) or ACK (2) stamp is not the send stamp.
        assert_eq!(
            tx_report(&with(extended_err(SO_EE_ORIGIN_TIMESTAMPING, 1, 1))),
            None
        );
        assert_eq!(
            tx_report(&with(extended_err(SO_EE_ORIGIN_TIMESTAMPING, 2, 1))),
            None
        );
        // Another errno.
        let mut e = extended_err(SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SND, 1);
        e[0..4].copy_from_slice(&(libc::ECONNREFUSED as u32).to_ne_bytes());
        assert_eq!(tx_report(&with(e)), None);
        // No stamps at all (all zero), or no extended error, or no SCM_TIMESTAMPING.
        let zero = report(
            (0, 0),
            (0, 0),
            libc::SOL_IP,
            libc::IP_RECVERR,
            &extended_err(SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SND, 1),
        );
        assert_eq!(tx_report(&zero), None);
        let ts_only = msg(
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            &[timespec(5, 6), timespec(0, 0), timespec(0, 0)].concat(),
        );
        assert_eq!(tx_report(&ts_only), None);
        let err_only = msg(
            libc::SOL_IP,
            libc::IP_RECVERR,
            &extended_err(SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SND, 1),
        );
        assert_eq!(tx_report(&err_only), None);
        // A receive-side parse never mistakes a report for receive metadata beyond its stamp.
        assert_eq!(parse(&with(extended_err(4, 0, 1))).dst, None);
    }

    #[test]
    fn a_cut_short_report_is_no_report_and_reads_nothing_past_its_end() {
        let good = send_report(77, (1_700_000_000, 5));
        for cut in 0..good.len() {
            // Every cut loses the extended error's key or the stamps (the last message's
            // padding is the only slack, and a message must fit whole).
            let r = tx_report(&good[..cut]);
            assert!(r.is_none(), "cut at {cut}: {r:?}");
        }
        // An extended error shorter than the struct, whole as a message: ignored.
        let short = report(
            (5, 6),
            (0, 0),
            libc::SOL_IP,
            libc::IP_RECVERR,
            &extended_err(4, 0, 1)[..15],
        );
        assert_eq!(tx_report(&short), None);
        // A header claiming more than the buffer holds, or an absurd length.
        let mut lying = good.clone();
        lying[..8].copy_from_slice(&(good.len() + 1).to_ne_bytes());
        assert_eq!(tx_report(&lying), None);
        lying[..8].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(tx_report(&lying), None);
        assert_eq!(tx_report(&[0xff; 200]), None);
    }

    #[test]
    fn the_transmit_request_asks_for_a_software_stamp_under_our_key() {
        let mut out = [0xaau8; 128];
        let n = write_tx_request(0x1234_5678, &mut out);
        assert_eq!(n, TX_REQUEST_SPACE);
        let mut seen = Vec::new();
        walk(&out[..n], |level, kind, data| {
            seen.push((level, kind, data.to_vec()))
        });
        assert_eq!(
            seen,
            vec![
                (
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPING,
                    libc::SOF_TIMESTAMPING_TX_SOFTWARE.to_ne_bytes().to_vec()
                ),
                (
                    libc::SOL_SOCKET,
                    SCM_TS_OPT_ID,
                    0x1234_5678u32.to_ne_bytes().to_vec()
                ),
            ]
        );
        // Each message is exactly CMSG_LEN(4) long, as the kernel requires.
        assert_eq!(read_usize(&out, 0), HDR_LEN + 4);
        assert_eq!(write_tx_request(1, &mut [0u8; TX_REQUEST_SPACE - 1]), 0);
        // After PKTINFO in one buffer, as a reply on a wildcard socket carries both.
        let info = PktInfo::V4 {
            addr: [127, 0, 0, 2],
            ifindex: 0,
        };
        let mut both = [0u8; 128];
        let a = write_pktinfo(&info, &mut both);
        let b = write_tx_request(5, &mut both[a..]);
        assert_eq!(parse(&both[..a + b]).dst, Some(info));
    }

    #[test]
    fn pktinfo_roundtrip() {
        for info in [
            PktInfo::V6 {
                addr: [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                ifindex: 7,
            },
            PktInfo::V4 {
                addr: [10, 1, 2, 3],
                ifindex: 0,
            },
        ] {
            let mut out = [0u8; 64];
            let n = write_pktinfo(&info, &mut out);
            assert!(n > 0);
            assert_eq!(parse(&out[..n]).dst, Some(info));
        }
        assert_eq!(
            write_pktinfo(
                &PktInfo::V4 {
                    addr: [0; 4],
                    ifindex: 0
                },
                &mut [0u8; 8]
            ),
            0
        );
    }
}
