//! Fake upstream NTP servers for the discipline tests: threads in the test, each on its own
//! 127.0.x.y address, serving the system clock shifted by a known offset.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ntp::ntp_now;

/// How a [`FakeUpstream`] answers.
#[derive(Clone, Copy, Debug)]
pub struct FakeBehaviour {
    /// Seconds added to the system clock in every timestamp it serves.
    pub offset: f64,
    /// Each reply's timestamps are shifted by a uniform random amount in ±jitter seconds.
    pub jitter: f64,
    /// Leap indicator served (0..=2).
    pub leap: u8,
    pub stratum: u8,
    /// Answer every request with this kiss-o'-death code instead of time.
    pub kiss: Option<[u8; 4]>,
}

impl FakeBehaviour {
    pub fn offset(offset: f64) -> Self {
        FakeBehaviour {
            offset,
            jitter: 0.0,
            leap: 0,
            stratum: 1,
            kiss: None,
        }
    }
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }
    pub fn leap(mut self, leap: u8) -> Self {
        self.leap = leap;
        self
    }
    pub fn kiss(mut self, code: &[u8; 4]) -> Self {
        self.kiss = Some(*code);
        self
    }
}

struct FakeState {
    behaviour: FakeBehaviour,
    silent: std::sync::atomic::AtomicBool,
    requests: Mutex<Vec<Instant>>,
}

/// A small NTP server in a thread on `ip`:random-port, answering with the system clock shifted
/// by a known offset. Stopped and joined when dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Binds `ip` (a 127.0.0.0/8 address) on a free port and starts answering.
    pub fn start(ip: Ipv4Addr, behaviour: FakeBehaviour) -> FakeUpstream {
        use std::sync::atomic::{AtomicBool, Ordering};
        let sock = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("binding {ip}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let state = Arc::new(FakeState {
            behaviour,
            silent: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ addr.port() as u64;
            let mut buf = [0u8; 2048];
            while !sp.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if n < 48 || buf[0] & 7 != 3 {
                    continue;
                }
                st.requests.lock().unwrap().push(Instant::now());
                if st.silent.load(Ordering::Relaxed) {
                    continue;
                }
                let b = st.behaviour;
                // xorshift64: a reproducible uniform value in [-1, 1).
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let u = (rng >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
                let shift = b.offset + b.jitter * u;
                let reply = fake_reply(&buf[..48], &b, shift);
                let _ = sock.send_to(&reply, from);
            }
        });
        FakeUpstream {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops (or resumes) answering; requests are still counted.
    pub fn set_silent(&self, silent: bool) {
        self.state
            .silent
            .store(silent, std::sync::atomic::Ordering::Relaxed);
    }

    /// When each request arrived.
    pub fn requests(&self) -> Vec<Instant> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }
}

/// `[[source]]` tables for `fakes`, each polled every 2^`poll` s, with `iburst` as given.
pub fn source_tables<'a>(
    fakes: impl IntoIterator<Item = &'a FakeUpstream>,
    poll: i8,
    iburst: bool,
) -> String {
    fakes
        .into_iter()
        .map(|f| {
            format!(
                "\n[[source]]\naddress = \"{}\"\niburst = {iburst}\nminpoll = {poll}\nmaxpoll = {poll}\n",
                f.addr
            )
        })
        .collect()
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Now plus `shift` seconds as an NTP timestamp.
fn ntp_now_shifted(shift: f64) -> u64 {
    let fixed = (shift * 4_294_967_296.0).round() as i64;
    ntp_now().wrapping_add(fixed as u64)
}

/// The reply of a fake server to `req` (a 48-byte client header).
fn fake_reply(req: &[u8], b: &FakeBehaviour, shift: f64) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    let version = (req[0] >> 3) & 7;
    p[2] = req[2];
    p[24..32].copy_from_slice(&req[40..48]);
    if let Some(code) = b.kiss {
        p[0] = (3 << 6) | (version << 3) | 4;
        p[1] = 0;
        p[12..16].copy_from_slice(&code);
        return p;
    }
    let rx = ntp_now_shifted(shift);
    p[0] = (b.leap << 6) | (version << 3) | 4;
    p[1] = b.stratum;
    p[3] = (-20i8) as u8;
    p[8..12].copy_from_slice(&16u32.to_be_bytes()); // root dispersion ≈ 0.24 ms
    p[12..16].copy_from_slice(b"GPS\0");
    p[16..24].copy_from_slice(&rx.wrapping_sub(1 << 32).to_be_bytes());
    p[32..40].copy_from_slice(&rx.to_be_bytes());
    p[40..48].copy_from_slice(&ntp_now_shifted(shift).to_be_bytes());
    p
}
