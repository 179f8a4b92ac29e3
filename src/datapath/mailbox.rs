//! The hand-over between a worker and the rest of the process, serviced by the worker
//! between two batches so it never waits on anyone: a new [`Policy`] to take up, and reads of
//! its client table in bounded chunks (the management plane lists clients without stopping
//! the worker).
//!
//! The worker's side costs one relaxed load per batch while nothing is asked; it only takes
//! the lock when something is, and never waits for it (`try_lock`). The asking side waits, with
//! a deadline, for the worker's next batch boundary (at most the backend's idle wake-up
//! interval, ~100 ms, when no traffic arrives).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::Duration;

use super::clients::Record;
use super::policy::Policy;

/// Client records copied per batch boundary: 1 MiB, a few tens of microseconds of copying.
pub const READ_CHUNK: usize = 16_384;

/// One worker's mailbox.
#[derive(Default)]
pub struct Mailbox {
    /// Something is asked (set and cleared under the lock; read without it).
    pending: AtomicBool,
    inbox: Mutex<Inbox>,
    answered: Condvar,
}

#[derive(Default)]
struct Inbox {
    policy: Option<Arc<Policy>>,
    read: Option<ClientChunk>,
    done: Option<ClientChunk>,
}

/// A chunk of a worker's client records: asked for from a slot index, answered with the
/// records in use from there on (at most the buffer's capacity) and where to go on.
#[derive(Debug, Default)]
pub struct ClientChunk {
    /// The first slot to look at.
    pub from: usize,
    /// The records copied (its capacity bounds the chunk; the worker never allocates).
    pub records: Vec<Record>,
    /// The slot after the last one looked at; `None`: the end of the table was reached.
    pub next: Option<usize>,
}

/// Why a read of a worker's table did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the worker did not answer within {0:?} (stopped or stuck)")]
    Timeout(Duration),
}

impl Mailbox {
    /// Asks the worker to take up `policy` at its next batch boundary (a newer one posted
    /// before that replaces it).
    pub fn post_policy(&self, policy: Arc<Policy>) {
        let mut inbox = self.lock();
        inbox.policy = Some(policy);
        self.pending.store(true, Ordering::Release);
    }

    /// Reads the worker's whole client table, chunk by chunk, handing each chunk's records to
    /// `visit`; each chunk waits at most `timeout` for the worker.
    pub fn read_clients(
        &self,
        timeout: Duration,
        mut visit: impl FnMut(&[Record]),
    ) -> Result<(), ReadError> {
        let mut chunk = ClientChunk {
            from: 0,
            records: Vec::with_capacity(READ_CHUNK),
            next: None,
        };
        loop {
            chunk.records.clear();
            chunk = self.ask(chunk, timeout)?;
            visit(&chunk.records);
            match chunk.next {
                Some(next) => chunk.from = next,
                None => return Ok(()),
            }
        }
    }

    /// Waits (at most `timeout`) for the worker's next batch boundary: once it returns, the
    /// worker has taken up every policy posted before and flushed its counters.
    pub fn barrier(&self, timeout: Duration) -> Result<(), ReadError> {
        let past_the_end = ClientChunk {
            from: usize::MAX,
            records: Vec::new(),
            next: None,
        };
        self.ask(past_the_end, timeout).map(drop)
    }

    /// Posts one chunk request and waits for the worker's answer.
    fn ask(&self, chunk: ClientChunk, timeout: Duration) -> Result<ClientChunk, ReadError> {
        let mut inbox = self.lock();
        inbox.done = None;
        inbox.read = Some(chunk);
        self.pending.store(true, Ordering::Release);
        let (mut inbox, _) = self
            .answered
            .wait_timeout_while(inbox, timeout, |i| i.done.is_none())
            .unwrap_or_else(|e| e.into_inner());
        match inbox.done.take() {
            Some(done) => Ok(done),
            None => {
                // Take the request back, so a late worker does not answer into nothing.
                inbox.read = None;
                Err(ReadError::Timeout(timeout))
            }
        }
    }

    /// The worker's side, at a batch boundary: a read of the client table asked for is
    /// handed to `fill` (which copies records into the chunk), and a new policy is returned
    /// for the worker to take up. Returns at once when nothing is asked, or when the asking
    /// side holds the lock (it is tried again next batch).
    #[inline]
    pub fn service(&self, fill: impl FnOnce(&mut ClientChunk)) -> Option<Arc<Policy>> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        self.service_slow(fill)
    }

    #[cold]
    fn service_slow(&self, fill: impl FnOnce(&mut ClientChunk)) -> Option<Arc<Policy>> {
        let mut inbox = match self.inbox.try_lock() {
            Ok(inbox) => inbox,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if let Some(mut chunk) = inbox.read.take() {
            fill(&mut chunk);
            inbox.done = Some(chunk);
            self.answered.notify_all();
        }
        self.pending.store(false, Ordering::Release);
        inbox.policy.take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inbox> {
        // A panic elsewhere while holding the lock leaves plain data: keep using it.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ClockSnapshot, RawStamp, TimestampQuality};
    use crate::datapath::counters::WorkerCounters;
    use crate::datapath::{Arrival, Worker, WorkerConfig};
    use crate::proto::server::client_request;
    use crate::proto::{NtpTimestamp, UnixNanos, MAX_REPLY_LEN};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::atomic::AtomicBool;

    /// A worker thread that answers `clients` distinct addresses once, then only ends
    /// batches (as an idle backend does) until `stop`.
    fn spawn_worker(
        clients: u32,
        mailbox: Arc<Mailbox>,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut w = Worker::new(WorkerConfig {
                clients: 4096,
                seed: 7,
                interleaved: false,
            });
            let snap = ClockSnapshot::local(2, -20, UnixNanos(1));
            let req = client_request(4, 4, NtpTimestamp(1));
            let mut out = [0u8; MAX_REPLY_LEN];
            let counters = WorkerCounters::default();
            for i in 0..clients {
                let meta = Arrival {
                    src: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 123),
                    dst: None,
                    ifindex: 0,
                    rx: RawStamp {
                        raw: UnixNanos(i64::from(i) + 1),
                        quality: TimestampQuality::User,
                    },
                };
                w.on_datagram(&meta, &req, &mut out, &snap, || UnixNanos(1));
                if i % 64 == 0 {
                    w.end_batch(&counters, &mailbox);
                }
            }
            while !stop.load(Ordering::Relaxed) {
                w.end_batch(&counters, &mailbox);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    }

    #[test]
    fn a_reader_gets_every_record_in_chunks_from_a_running_worker() {
        let mailbox = Arc::new(Mailbox::default());
        let stop = Arc::new(AtomicBool::new(false));
        let t = spawn_worker(3000, mailbox.clone(), stop.clone());
        // Read until the worker has taken all 3000 (it may still be answering at first).
        let mut got = Vec::new();
        for _ in 0..1000 {
            got.clear();
            let mut chunks = 0;
            mailbox
                .read_clients(Duration::from_secs(10), |c| {
                    chunks += 1;
                    assert!(c.len() <= READ_CHUNK);
                    got.extend(c.iter().map(|r| r.addr()));
                })
                .unwrap();
            assert!(chunks >= 1);
            if got.len() == 3000 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 3000, "every client once");
    }

    #[test]
    fn a_worker_that_never_answers_is_a_timeout_not_a_hang() {
        let mailbox = Mailbox::default();
        let r = mailbox.read_clients(Duration::from_millis(50), |_| {});
        assert_eq!(r, Err(ReadError::Timeout(Duration::from_millis(50))));
        // The request was taken back: a late worker answers nothing.
        let mut filled = false;
        assert!(mailbox.service(|_| filled = true).is_none());
        assert!(!filled);
    }

    #[test]
    fn a_barrier_returns_once_the_policy_is_taken_up() {
        let mailbox = Arc::new(Mailbox::default());
        assert_eq!(
            mailbox.barrier(Duration::from_millis(20)),
            Err(ReadError::Timeout(Duration::from_millis(20)))
        );
        mailbox.post_policy(Arc::new(Policy {
            serving: false,
            ..Policy::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (mailbox.clone(), stop.clone());
        let worker = std::thread::spawn(move || {
            let mut taken = None;
            while !s.load(Ordering::Relaxed) {
                if let Some(p) = m.service(|c| c.next = None) {
                    taken = Some(p.serving);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            taken
        });
        assert_eq!(mailbox.barrier(Duration::from_secs(10)), Ok(()));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(
            worker.join().unwrap(),
            Some(false),
            "taken before the barrier returned"
        );
    }

    #[test]
    fn the_newest_policy_wins() {
        let mailbox = Mailbox::default();
        assert!(mailbox.service(|_| {}).is_none(), "nothing asked");
        mailbox.post_policy(Arc::new(Policy {
            serving: false,
            ..Policy::default()
        }));
        mailbox.post_policy(Arc::new(Policy::default()));
        let p = mailbox.service(|_| {}).expect("a policy");
        assert!(p.serving);
        assert!(mailbox.service(|_| {}).is_none(), "taken once");
    }
}
