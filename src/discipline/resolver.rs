//! Name resolution off the discipline loop. `getaddrinfo` blocks for as long as DNS takes (a
//! hung resolver: tens of seconds), and the loop must republish the clock every second and keep
//! polling the sources it has. So names are resolved on a thread of their own
//! (`meridian-resolve`); the loop hands over a request and picks the answer up when it is
//! there. IP literals need no lookup and are answered at once.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

/// Turns a host and port into addresses (blocking); replaced in tests.
pub type Lookup = fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

/// The system resolver.
pub fn system_lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// The answer to one request: who asked (`key`) and what the name gave.
#[derive(Debug)]
pub struct Resolved {
    pub key: u64,
    pub host: String,
    pub result: std::io::Result<Vec<SocketAddr>>,
}

/// Requests go to the resolver thread; answers come back in order of completion.
pub struct Resolver {
    requests: Option<Sender<(u64, String, u16)>>,
    answers: Receiver<Resolved>,
    /// Answers for IP literals, given without the thread.
    ready: Vec<Resolved>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Resolver {
    /// Starts the resolver thread with `lookup`.
    pub fn start(lookup: Lookup) -> std::io::Result<Resolver> {
        let (req_tx, req_rx) = mpsc::channel::<(u64, String, u16)>();
        let (ans_tx, ans_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("meridian-resolve".into())
            .spawn(move || {
                for (key, host, port) in req_rx {
                    let result = lookup(&host, port);
                    if ans_tx.send(Resolved { key, host, result }).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Resolver {
            requests: Some(req_tx),
            answers: ans_rx,
            ready: Vec::new(),
            thread: Some(thread),
        })
    }

    /// Asks for `host`:`port` on behalf of `key`; never blocks.
    pub fn request(&mut self, key: u64, host: &str, port: u16) {
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.ready.push(Resolved {
                key,
                host: host.to_owned(),
                result: Ok(vec![SocketAddr::new(ip, port)]),
            });
            return;
        }
        let sent = self
            .requests
            .as_ref()
            .is_some_and(|r| r.send((key, host.to_owned(), port)).is_ok());
        if !sent {
            self.ready.push(Resolved {
                key,
                host: host.to_owned(),
                result: Err(std::io::Error::other("the resolver thread has stopped")),
            });
        }
    }

    /// The answers that have arrived; never blocks.
    pub fn answers(&mut self) -> Vec<Resolved> {
        let mut out = std::mem::take(&mut self.ready);
        loop {
            match self.answers.try_recv() {
                Ok(a) => out.push(a),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
            }
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // Closing the request channel ends the thread after its current lookup; a lookup that
        // hangs is not waited for (the thread is detached then).
        self.requests = None;
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn slow(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if host == "hang.test" {
            std::thread::sleep(Duration::from_secs(3600));
        }
        if host == "slow.test" {
            std::thread::sleep(Duration::from_millis(50));
            return Ok(vec![SocketAddr::from(([192, 0, 2, 7], port))]);
        }
        Err(std::io::Error::other("no such name"))
    }

    /// Waits (bounded) until `n` answers have arrived.
    fn collect(r: &mut Resolver, n: usize) -> Vec<Resolved> {
        let mut got = Vec::new();
        for _ in 0..500 {
            got.extend(r.answers());
            if got.len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        got
    }

    #[test]
    fn literals_at_once_names_later_and_a_hung_lookup_blocks_nobody() {
        let mut r = Resolver::start(slow).unwrap();
        r.request(1, "127.0.0.1", 123);
        r.request(2, "::1", 1123);
        let now = r.answers();
        assert_eq!(now.len(), 2, "literals need no lookup");
        assert_eq!(
            now[0].result.as_ref().unwrap(),
            &["127.0.0.1:123".parse().unwrap()]
        );
        assert_eq!(
            now[1].result.as_ref().unwrap(),
            &["[::1]:1123".parse().unwrap()]
        );
        // A name is answered by the thread; asking and collecting never block.
        r.request(3, "slow.test", 123);
        r.request(4, "missing.test", 123);
        let got = collect(&mut r, 2);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].key, 3);
        assert_eq!(
            got[0].result.as_ref().unwrap()[0],
            "192.0.2.7:123".parse().unwrap()
        );
        assert_eq!(got[1].key, 4);
        assert!(got[1].result.is_err());
        // A lookup that hangs: requests and answers still return immediately (counted, not
        // timed: the calls return whatever the thread has, which is nothing).
        r.request(5, "hang.test", 123);
        r.request(6, "10.0.0.1", 123);
        let got = r.answers();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].key, 6);
        drop(r); // does not wait for the hung lookup
    }
}
