//! Servers and pools: the [`SourceDriver`] for sources polled over UDP, the thin IO layer over
//! the sans-IO [`Lookup`], [`PollState`] and [`judge`]. Every address the name gives is a
//! member with its own [`UpstreamSocket`] and its own source in the core.
//!
//! Per poll: a random transmit timestamp (RFC 9109) that the reply must echo as its origin; t1
//! is the raw clock just before the send, t4 the kernel's receive stamp (user space only
//! without one). Kiss-o'-death RATE doubles the member's interval; DENY and RSTR drop it for
//! good (its address is banned; a pool looks for a replacement). A member of a kind that
//! replaces bad members ([`SourceKind::replaces_bad_members`]) is dropped and replaced after
//! [`REPLACE_AFTER_POLLS`] polls unreachable or a falseticker.
//!
//! [`SourceKind::replaces_bad_members`]: crate::config::SourceKind::replaces_bad_members

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

use super::lookup::Lookup;
use super::poll::{PollState, REPLACE_AFTER_POLLS};
use super::reply::{judge, Judged, VERSION};
use super::{state_name, Cx, SourceDriver, SourceStatus};
use crate::auth::upstream;
use crate::config::{SourceConfig, SourceKind};
use crate::discipline::{refid_for_addr, Discipline, SourceId, SourceParams, SourceReport};
use crate::io::upstream::UpstreamSocket;
use crate::proto::client::ReplyError;
use crate::proto::server::client_request;
use crate::proto::{HEADER_LEN, MAX_PACKET_LEN};
use crate::sys;

/// The reference id for a source address (IPv6: first four bytes of the MD5 of the address).
pub fn refid_of(addr: SocketAddr) -> [u8; 4] {
    use md5::{Digest, Md5};
    refid_for_addr(addr.ip(), |bytes| {
        let d = Md5::digest(bytes);
        [d[0], d[1], d[2], d[3]]
    })
}

/// One polled address.
struct Member {
    id: SourceId,
    sock: UpstreamSocket,
    poll: PollState,
}

/// A `server` or `pool` source.
pub struct NetworkSource {
    cfg: SourceConfig,
    lookup: Lookup,
    members: Vec<Member>,
    /// Report rows of members that were dropped (kept for the report).
    dropped: Vec<SourceStatus>,
}

/// The core's report for `id` as of the last update.
fn core_report(core: &Discipline, id: SourceId) -> Option<SourceReport> {
    core.sources().iter().find(|r| r.id == id).copied()
}

impl NetworkSource {
    /// The source for `cfg`, first looked up at `now`.
    pub fn new(cfg: &SourceConfig, now: Instant) -> NetworkSource {
        NetworkSource {
            cfg: cfg.clone(),
            lookup: Lookup::new(cfg, now),
            members: Vec::new(),
            dropped: Vec::new(),
        }
    }

    fn index(&self, id: SourceId) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    fn add_member(&mut self, addr: SocketAddr, now: Instant, cx: &mut Cx<'_>) {
        let sock = match UpstreamSocket::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("discipline: cannot open a socket to {addr}: {e}");
                return;
            }
        };
        let id = cx.new_id();
        cx.core.add_source(
            id,
            SourceParams {
                prefer: self.cfg.prefer,
                minpoll: self.cfg.minpoll,
                maxpoll: self.cfg.maxpoll,
                iburst: self.cfg.iburst,
                refid: refid_of(addr),
            },
        );
        tracing::info!(
            "discipline: source {addr} added (from {}, rx timestamps {})",
            self.cfg.address,
            sock.stamping().as_str()
        );
        self.members.push(Member {
            id,
            sock,
            poll: PollState::new(now),
        });
    }

    /// Sends member `i` its poll at `now`.
    fn send(&mut self, i: usize, now: Instant, core: &mut Discipline) {
        let m = &mut self.members[i];
        let nonce = sys::random::nonce();
        let poll = core_report(core, m.id).map_or(0, |r| r.poll);
        let mut req = [0u8; upstream::MAX_SIGNED_REQUEST];
        req[..HEADER_LEN].copy_from_slice(&client_request(VERSION, poll, nonce));
        let len = match self.cfg.key.map(|id| (id, upstream::key(id))) {
            None => HEADER_LEN,
            Some((_, Some(key))) => upstream::sign_request(&key, &mut req),
            Some((id, None)) => {
                // Checked at start-up and reload; a key file changed since lacks it.
                tracing::warn!("discipline: {}: key {id} is not loaded", m.sock.peer());
                core.on_unreachable(m.id);
                schedule(m, now, core);
                return;
            }
        };
        match m.sock.send(&req[..len]) {
            Ok(stamp) => {
                let interval = core.poll_interval(m.id).unwrap_or(1.0);
                m.poll.sent(nonce, stamp.raw, now, interval);
            }
            Err(e) => {
                tracing::debug!("discipline: send to {}: {e}", m.sock.peer());
                core.on_unreachable(m.id);
                schedule(m, now, core);
            }
        }
    }

    /// A poll of member `i`, sent at `sent`, that produced no usable sample.
    fn failed(&mut self, i: usize, sent: Instant, core: &mut Discipline) {
        let m = &mut self.members[i];
        core.on_unreachable(m.id);
        m.poll.completed();
        schedule(m, sent, core);
    }

    fn kiss(&mut self, i: usize, code: [u8; 4], sent: Instant, core: &mut Discipline) {
        let m = &mut self.members[i];
        let addr = m.sock.peer();
        match &code {
            b"RATE" => {
                let poll = core_report(core, m.id).map_or(self.cfg.minpoll, |r| r.poll);
                m.poll.rate_kiss(poll);
                tracing::info!(
                    "discipline: source {addr} sent kiss-o'-death RATE: polling it every {:.3} s",
                    m.poll.interval(core.poll_interval(m.id).unwrap_or(1.0))
                );
                core.on_unreachable(m.id);
                schedule(m, sent, core);
            }
            b"DENY" | b"RSTR" => {
                tracing::warn!(
                    "discipline: source {addr} sent kiss-o'-death {}: no longer using it",
                    String::from_utf8_lossy(&code)
                );
                self.drop_member(i, "denied", core);
            }
            _ => {
                tracing::debug!(
                    "discipline: source {addr} sent kiss-o'-death {}",
                    String::from_utf8_lossy(&code)
                );
                self.failed(i, sent, core);
            }
        }
    }

    /// Stops using member `i` for good: its address is banned, its row kept as `why`.
    fn drop_member(&mut self, i: usize, why: &'static str, core: &mut Discipline) {
        let mut row = self.status_row(&self.members[i], core);
        row.state = why;
        let m = self.members.remove(i);
        core.remove_source(m.id);
        self.lookup.ban(m.sock.peer());
        self.dropped.push(row);
    }

    fn status_row(&self, m: &Member, core: &Discipline) -> SourceStatus {
        let rep = core_report(core, m.id);
        let counts = m.poll.counts();
        SourceStatus {
            source: self.cfg.address.clone(),
            address: m.sock.peer(),
            state: m.poll.state().map_or("unreachable", state_name),
            reach: rep.map_or(0, |r| r.reach),
            poll: rep.map_or(self.cfg.minpoll, |r| r.poll) + m.poll.backoff(),
            offset: rep.map_or(0.0, |r| r.offset),
            delay: rep.map_or(0.0, |r| r.delay),
            jitter: rep.map_or(0.0, |r| r.jitter),
            root_distance: rep.map_or(0.0, |r| r.root_distance),
            stratum: rep.map_or(0, |r| r.stratum),
            requests: counts.requests,
            replies: counts.replies,
            kod_rate: counts.kod_rate,
            kind: match self.cfg.kind {
                SourceKind::Server => "server",
                SourceKind::Pool => "pool",
            },
            last_sample: core.source_detail(m.id).map(Into::into),
        }
    }
}

/// Sets the next poll of `m` from `from` (the send time of the poll just completed).
fn schedule(m: &mut Member, from: Instant, core: &Discipline) {
    if let Some(interval) = core.poll_interval(m.id) {
        m.poll.schedule(from, interval, sys::random::unit());
    }
}

impl SourceDriver for NetworkSource {
    fn config(&self) -> &SourceConfig {
        &self.cfg
    }

    fn next_due(&self) -> Option<Instant> {
        let polls = self.members.iter().map(|m| m.poll.next_due());
        polls.chain(self.lookup.next_due(self.members.len())).min()
    }

    fn poll(&mut self, now: Instant, cx: &mut Cx<'_>) {
        if self.lookup.due(self.members.len(), now) {
            self.lookup.asked();
            let (host, port) = self.lookup.host_port();
            cx.lookup(host, port);
        }
        for i in 0..self.members.len() {
            if self.members[i].poll.due(now) {
                self.send(i, now, cx.core);
            }
        }
        for i in 0..self.members.len() {
            if let Some(sent) = self.members[i].poll.overdue(now) {
                self.failed(i, sent, cx.core);
            }
        }
    }

    fn on_resolved(
        &mut self,
        answer: std::io::Result<Vec<SocketAddr>>,
        in_use: &HashSet<SocketAddr>,
        now: Instant,
        cx: &mut Cx<'_>,
    ) {
        let resolved = answer.unwrap_or_else(|e| {
            tracing::warn!("discipline: cannot resolve {}: {e}", self.cfg.address);
            Vec::new()
        });
        let fresh = self
            .lookup
            .answered(resolved, in_use, self.members.len(), now);
        for addr in fresh {
            self.add_member(addr, now, cx);
        }
    }

    fn sockets<'a>(&'a self, out: &mut Vec<(SourceId, &'a UpstreamSocket)>) {
        out.extend(self.members.iter().map(|m| (m.id, &m.sock)));
    }

    fn on_readable(&mut self, id: SourceId, cx: &mut Cx<'_>) {
        let mut buf = [0u8; MAX_PACKET_LEN + 1];
        // Until nothing is queued; a kiss may drop the member meanwhile.
        while let Some(i) = self.index(id) {
            let m = &mut self.members[i];
            let (len, stamp) = match m.sock.try_recv(&mut buf) {
                Ok(Some(got)) => got,
                Ok(None) => return,
                Err(e) => {
                    // ICMP port unreachable and the like: this poll failed.
                    tracing::debug!("discipline: {}: {e}", m.sock.peer());
                    if let Some(req) = m.poll.take_in_flight() {
                        self.failed(i, req.sent, cx.core);
                    }
                    continue;
                }
            };
            let Some(req) = m.poll.in_flight().copied() else {
                continue; // nothing asked: late or unsolicited
            };
            let max_distance = cx.core.config().max_distance;
            let mut judged = judge(&buf[..len], &req, stamp.raw, cx.timebase, max_distance);
            if matches!(judged, Judged::Stale) {
                continue; // stale or forged: keep waiting
            }
            // With a key, only a reply signed with it counts (a KoD included).
            if let Some(id) = self.cfg.key {
                if !upstream::key(id).is_some_and(|k| upstream::reply_is_signed(&k, &buf[..len])) {
                    judged = Judged::Rejected(ReplyError::Unauthenticated);
                }
            }
            m.poll.take_in_flight();
            if judged.is_reply() {
                m.poll.replied();
            }
            match judged {
                Judged::Stale => {} // taken care of above
                Judged::Kiss(code) => self.kiss(i, code, req.sent, cx.core),
                Judged::Rejected(e) => {
                    tracing::debug!("discipline: {}: {e}", m.sock.peer());
                    self.failed(i, req.sent, cx.core);
                }
                Judged::TooFar(distance) => {
                    tracing::debug!(
                        "discipline: {}: root distance {distance:.3} s is too large",
                        m.sock.peer()
                    );
                    self.failed(i, req.sent, cx.core);
                }
                Judged::NearLeap => schedule(m, req.sent, cx.core),
                Judged::Sample(sample) => {
                    cx.core.on_sample(id, sample);
                    m.poll.completed();
                    schedule(m, req.sent, cx.core);
                }
            }
        }
    }

    fn after_update(&mut self, now: Instant, cx: &mut Cx<'_>) {
        // One log line per state change.
        for m in &mut self.members {
            let Some(r) = core_report(cx.core, m.id) else {
                continue;
            };
            if m.poll.set_state(r.state) != r.state {
                let name = state_name(r.state);
                let line = format!(
                    "discipline: source {} {name} (offset {:+.6} s, delay {:.6} s, stratum {}, reach {:03o})",
                    m.sock.peer(),
                    r.offset,
                    r.delay,
                    r.stratum,
                    r.reach
                );
                // A falseticker is an alert (docs/operations.md); other changes are news.
                if name == "falseticker" {
                    tracing::warn!(event = "falseticker", "{line}");
                } else {
                    tracing::info!("{line}");
                }
            }
        }
        if !self.cfg.kind.replaces_bad_members() {
            return;
        }
        while let Some(i) = self.members.iter().position(|m| m.poll.worn_out()) {
            let m = &self.members[i];
            tracing::info!(
                "discipline: pool member {} replaced ({} for {REPLACE_AFTER_POLLS} polls)",
                m.sock.peer(),
                m.poll.state().map_or("unreachable", state_name)
            );
            self.lookup.again(now);
            self.drop_member(i, "replaced", cx.core);
        }
    }

    fn sync_now(&mut self, now: Instant, core: &mut Discipline) {
        for m in &mut self.members {
            core.start_burst(m.id);
            m.poll.poll_now(now);
        }
    }

    fn report(&self, core: &Discipline, out: &mut Vec<SourceStatus>) {
        out.extend(self.members.iter().map(|m| self.status_row(m, core)));
        out.extend(self.dropped.iter().cloned());
    }

    fn retire(&mut self, core: &mut Discipline) {
        for m in self.members.drain(..) {
            core.remove_source(m.id);
            tracing::info!("discipline: source {} no longer polled", m.sock.peer());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::*;
    use crate::discipline::resolver::{self, Resolver};
    use crate::discipline::sources::{Sources, Timebase};
    use crate::discipline::testutil::virtual_epoch;
    use crate::discipline::CoreConfig;
    use crate::proto::{Header, Leap, Mode, NtpShort, NtpTimestamp, UnixNanos};

    #[test]
    fn refids() {
        assert_eq!(refid_of("192.0.2.7:123".parse().unwrap()), [192, 0, 2, 7]);
        // RFC 5905: first four bytes of the MD5 of the IPv6 address.
        use md5::{Digest, Md5};
        let a: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d = Md5::digest(a.octets());
        assert_eq!(
            refid_of(SocketAddr::new(a.into(), 123)),
            [d[0], d[1], d[2], d[3]]
        );
        assert_eq!(
            refid_of("[::ffff:10.1.2.3]:123".parse().unwrap()),
            [10, 1, 2, 3]
        );
    }

    /// Virtual mode, no leap second.
    struct Free;

    impl Timebase for Free {
        fn free(&self, os: UnixNanos) -> UnixNanos {
            os
        }
        fn leap_fix(&self, _at: UnixNanos) -> Option<f64> {
            Some(0.0)
        }
    }

    /// A fake upstream on loopback that answers each request as told.
    struct Upstream(UdpSocket);

    impl Upstream {
        fn start() -> Upstream {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            Upstream(s)
        }

        /// Takes one request and answers it: 1 s ahead at stratum 2, or with a kiss code.
        fn answer(&self, kiss: Option<&[u8; 4]>) {
            let mut buf = [0u8; 128];
            let (n, from) = self.0.recv_from(&mut buf).expect("a request");
            let req = Header::parse(&buf[..n]).unwrap();
            assert_eq!((req.mode, req.version), (Mode::Client, 4));
            let ahead = NtpTimestamp::from_unix(sys::clock::now().add_nanos(1_000_000_000));
            let mut h = Header {
                leap: Leap::NoWarning,
                version: 4,
                mode: Mode::Server,
                stratum: 2,
                poll: req.poll,
                precision: -20,
                root_delay: NtpShort::from_secs_f64(0.001),
                root_dispersion: NtpShort::from_secs_f64(0.001),
                reference_id: [192, 0, 2, 1],
                reference_ts: ahead,
                origin_ts: req.transmit_ts,
                receive_ts: ahead,
                transmit_ts: ahead,
            };
            if let Some(code) = kiss {
                h.stratum = 0;
                h.reference_id = *code;
            }
            self.0.send_to(&h.to_bytes(), from).unwrap();
        }

        fn asked(&self) -> bool {
            self.0
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            self.0.recv_from(&mut [0u8; 128]).is_ok()
        }
    }

    /// Waits (bounded, in real time) until the report's first row satisfies `done`.
    fn wait_for(
        sources: &mut Sources,
        core: &mut Discipline,
        done: impl Fn(&SourceStatus) -> bool,
    ) -> SourceStatus {
        for _ in 0..200 {
            sources.wait(Duration::from_millis(10), core, &Free);
            let rows = sources.report(core);
            if done(&rows[0]) {
                return rows[0].clone();
            }
        }
        panic!("not reached: {:?}", sources.report(core));
    }

    /// A server on loopback through the runner's interface, on virtual time: added from its
    /// literal address, polled, its sample given to the core, backed off by RATE, dropped for
    /// good by DENY and never looked up again.
    #[test]
    fn a_server_is_polled_fed_to_the_core_backed_off_and_denied() {
        let up = Upstream::start();
        let cfg = SourceConfig::new(&up.0.local_addr().unwrap().to_string());
        let t0 = virtual_epoch();
        let mut core = Discipline::new(CoreConfig::default());
        let resolver = Resolver::start(resolver::system_lookup).unwrap();
        let mut sources = Sources::new(std::slice::from_ref(&cfg), resolver, t0);
        assert_eq!(sources.next_due(), Some(t0), "looked up at once");

        // The literal is answered at once: one member, first polled now.
        sources.poll(t0, &mut core, &Free);
        assert_eq!(core.source_ids(), vec![SourceId(0)]);
        assert_eq!(sources.next_due(), Some(t0));
        sources.poll(t0, &mut core, &Free);
        // In flight: woken at the deadline (1 s at most).
        assert_eq!(sources.next_due(), Some(t0 + Duration::from_secs(1)));
        up.answer(None);
        let row = wait_for(&mut sources, &mut core, |r| r.replies == 1);
        assert_eq!((row.requests, row.state), (1, "unreachable"));
        core.update(sys::clock::now());
        let row = &sources.report(&core)[0];
        assert_eq!((row.reach, row.stratum), (1, 2));
        assert!((row.offset - 1.0).abs() < 0.05, "{row:?}");
        // The next poll minpoll (64 s) after the send, up to 5 % later.
        let next = sources.next_due().unwrap();
        let wait = next.duration_since(t0).as_secs_f64();
        assert!((64.0..=64.0 * 1.05).contains(&wait), "{wait}");

        // A RATE kiss doubles the interval.
        sources.poll(next, &mut core, &Free);
        up.answer(Some(b"RATE"));
        let row = wait_for(&mut sources, &mut core, |r| r.kod_rate == 1);
        assert_eq!((row.poll, row.requests, row.replies), (7, 2, 1));
        let after = sources.next_due().unwrap();
        let wait = after.duration_since(next).as_secs_f64();
        assert!((128.0..=128.0 * 1.05).contains(&wait), "{wait}");

        // DENY: dropped for good, reported as denied, not looked up again.
        sources.poll(after, &mut core, &Free);
        up.answer(Some(b"DENY"));
        let row = wait_for(&mut sources, &mut core, |r| r.state == "denied");
        assert_eq!(row.requests, 3);
        assert!(core.source_ids().is_empty());
        assert_eq!(sources.next_due(), None);
        sources.poll(after + Duration::from_secs(7200), &mut core, &Free);
        assert!(!up.asked(), "a denied server is not polled");
        assert_eq!(sources.report(&core).len(), 1);
    }
}
