//! Micro-benchmarks of the per-request hot path: parsing a request, writing the reply from a
//! clock snapshot, loading the snapshot, converting timestamps, and (Linux) the xdp backend's
//! whole per-frame step: Ethernet/IP/UDP validation, the answer written in place, checksums.
//!
//! `cargo bench --bench hot_path` (criterion, no plotting features).

// Integration tests and benchmarks run on real time.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meridian::clock::{ClockSnapshot, SharedClock};
use meridian::datapath::{Worker, WorkerConfig};
use meridian::proto::server::client_request;
use meridian::proto::{respond, NtpTimestamp, Request, UnixNanos, MAX_REPLY_LEN};

const NOW: UnixNanos = UnixNanos(1_763_700_000_123_456_789);

fn request() -> [u8; 48] {
    client_request(4, 6, NtpTimestamp::from_unix(NOW.add_nanos(-25_000)))
}

fn parse(c: &mut Criterion) {
    let req = request();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| b.iter(|| Request::parse(black_box(&req))));
    g.finish();
}

fn reply(c: &mut Criterion) {
    let req = Request::parse(&request()).expect("valid request");
    let snap = ClockSnapshot::local(2, -24, NOW.add_nanos(-1_000_000_000));
    let mut out = [0u8; MAX_REPLY_LEN];
    let mut g = c.benchmark_group("reply");
    g.throughput(Throughput::Elements(1));
    g.bench_function("write_reply", |b| {
        b.iter(|| {
            black_box(&req).write_reply(black_box(&snap), black_box(NOW), &mut out, || {
                black_box(NOW.add_nanos(1_500))
            })
        })
    });
    let raw = request();
    g.bench_function("parse_and_write", |b| {
        b.iter(|| {
            respond(
                black_box(&raw),
                black_box(&snap),
                black_box(NOW),
                &mut out,
                || black_box(NOW.add_nanos(1_500)),
            )
        })
    });
    g.finish();
}

/// Runs `f` while a writer publishes into `shared` at 1 kHz and `readers` other threads load
/// it in a loop (the workers of the other cores), then stops them.
fn with_writer_and_readers<T: Send + Sync>(
    shared: &T,
    publish: impl Fn(&T, i64) + Send + Sync,
    load: impl Fn(&T) + Send + Sync,
    readers: usize,
    f: impl FnOnce(),
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                publish(shared, n);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        for _ in 0..readers {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        load(shared);
                    }
                }
            });
        }
        f();
        stop.store(true, Ordering::Relaxed);
    });
}

fn snapshot(c: &mut Criterion) {
    let shared = SharedClock::new(ClockSnapshot::local(2, -24, NOW));
    let mut g = c.benchmark_group("clock");
    g.throughput(Throughput::Elements(1));
    g.bench_function("snapshot_load", |b| b.iter(|| black_box(&shared).load()));
    // The same while the discipline's writer publishes at 1 kHz (1000x its real rate) and
    // the other cores' workers load it too: readers must not slow down.
    let others = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1);
    let publish =
        |s: &SharedClock, n: i64| s.publish(ClockSnapshot::local(2, -24, NOW.add_nanos(n)));
    let load = |s: &SharedClock| {
        black_box(s.load());
    };
    with_writer_and_readers(&shared, publish, load, others, || {
        g.bench_function("snapshot_load_while_publishing_1khz", |b| {
            b.iter(|| black_box(&shared).load())
        });
    });
    // The publication it replaced, for the record: crossbeam's AtomicCell (a striped global
    // lock for a value this size; a racing reader takes it).
    let cell = crossbeam::atomic::AtomicCell::new(ClockSnapshot::local(2, -24, NOW));
    g.bench_function("atomiccell_load", |b| b.iter(|| black_box(&cell).load()));
    let publish = |s: &crossbeam::atomic::AtomicCell<ClockSnapshot>, n: i64| {
        s.store(ClockSnapshot::local(2, -24, NOW.add_nanos(n)))
    };
    let load = |s: &crossbeam::atomic::AtomicCell<ClockSnapshot>| {
        black_box(s.load());
    };
    with_writer_and_readers(&cell, publish, load, others, || {
        g.bench_function("atomiccell_load_while_publishing_1khz", |b| {
            b.iter(|| black_box(&cell).load())
        });
    });
    let snap = shared.load();
    g.bench_function("cook", |b| b.iter(|| black_box(&snap).cook(black_box(NOW))));
    g.finish();
}

fn timestamps(c: &mut Criterion) {
    let ts = NtpTimestamp::from_unix(NOW);
    let pivot = NOW.add_nanos(3_600_000_000_000);
    let mut g = c.benchmark_group("timestamp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("from_unix", |b| {
        b.iter(|| NtpTimestamp::from_unix(black_box(NOW)))
    });
    g.bench_function("to_unix_near", |b| {
        b.iter(|| black_box(ts).to_unix_near(black_box(pivot)))
    });
    g.finish();
}

/// A fixed pseudo-random sequence (xorshift64) from `seed`.
fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    std::iter::successors(Some(seed), |&x| {
        let x = x ^ (x << 13);
        let x = x ^ (x >> 7);
        Some(x ^ (x << 17))
    })
    .skip(1)
}

/// Client addresses: `n` pseudo-random IPv4 addresses (a fixed sequence).
fn client_addrs(n: usize) -> Vec<std::net::SocketAddr> {
    xorshift(0x2545_f491_4f6c_dd1d)
        .take(n)
        .map(|x| std::net::SocketAddr::from(((x as u32).to_be_bytes(), 40000)))
        .collect()
}

/// The client table alone, and the whole per-datagram step with and without it, at a million
/// clients sending in random order (so nearly every lookup misses the CPU caches).
fn datapath(c: &mut Criterion) {
    use meridian::clock::{RawStamp, TimestampQuality};
    use meridian::datapath::clients::ClientTable;
    use meridian::datapath::Arrival;
    const CLIENTS: usize = 1 << 20;
    let addrs = client_addrs(CLIENTS);
    let mut g = c.benchmark_group("clients");
    g.throughput(Throughput::Elements(1));
    let mut table = ClientTable::new(CLIENTS, 7);
    for (i, a) in addrs.iter().enumerate() {
        table.touch(a.ip(), i as i64 + 1);
    }
    let mut i = 0usize;
    let mut now = CLIENTS as i64;
    g.bench_function("touch_1m_random", |b| {
        b.iter(|| {
            i = (i + 1) & (CLIENTS - 1);
            now += 1;
            black_box(table.touch(black_box(addrs[i].ip()), now).0)
        })
    });
    // A batch of 32 as the backends hand it over: every record prefetched first.
    g.throughput(Throughput::Elements(32));
    g.bench_function("touch_1m_random_batch32_prefetched", |b| {
        b.iter(|| {
            let start = i;
            for k in 0..32 {
                table.prefetch(addrs[(start + k) & (CLIENTS - 1)].ip());
            }
            for k in 0..32 {
                table.prefetch_record(addrs[(start + k) & (CLIENTS - 1)].ip());
            }
            for k in 0..32 {
                now += 1;
                black_box(table.touch(addrs[(start + k) & (CLIENTS - 1)].ip(), now).0);
            }
            i = (start + 32) & (CLIENTS - 1);
        })
    });
    g.throughput(Throughput::Elements(1));
    drop(table);
    let snap = ClockSnapshot::local(2, -24, NOW.add_nanos(-1_000_000_000));
    let req = request();
    let mut out = [0u8; MAX_REPLY_LEN];
    // (name, table size, interleaved mode, clients sending): the 1k cases keep the table in
    // the CPU caches and show the cost of the work itself; the 1m cases add memory latency.
    for (name, clients, interleaved, sending) in [
        ("on_datagram_no_table", 0, false, CLIENTS),
        ("on_datagram_1k_table_basic", 1024, false, 1024),
        ("on_datagram_1k_table_interleaved", 1024, true, 1024),
        ("on_datagram_1m_table_basic", CLIENTS, false, CLIENTS),
        ("on_datagram_1m_table_interleaved", CLIENTS, true, CLIENTS),
    ] {
        let mut worker = Worker::new(WorkerConfig {
            clients,
            seed: 7,
            interleaved,
        });
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & (sending - 1);
                let arrival = Arrival {
                    src: addrs[i],
                    dst: None,
                    ifindex: 0,
                    rx: RawStamp {
                        raw: NOW,
                        quality: TimestampQuality::Kernel,
                    },
                };
                worker.on_datagram(&arrival, black_box(&req), &mut out, &snap, || {
                    black_box(NOW.add_nanos(1_500))
                })
            })
        });
    }
    g.finish();
}

/// `n` random IPv4 prefixes of lengths /12 to /32 (10,000 of them cover about a tenth of the
/// address space).
fn random_prefixes(n: usize) -> Vec<meridian::datapath::access::Prefix> {
    xorshift(0x9e37_79b9_7f4a_7c15)
        .take(n)
        .map(|x| {
            let addr = std::net::IpAddr::from((x as u32).to_be_bytes());
            let len = 12 + ((x >> 40) % 21) as u8;
            meridian::datapath::access::Prefix::new(addr, len).expect("length within 32")
        })
        .collect()
}

/// The access rules' lookup with one rule, 10,000 and 100,000 (random addresses), and the
/// whole per-datagram step with the policy on (10,000 rules, rate limiting with every client
/// under its limit) and off, side by side.
fn policy(c: &mut Criterion) {
    use meridian::clock::{RawStamp, TimestampQuality};
    use meridian::datapath::access::AccessRules;
    use meridian::datapath::ratelimit::RateLimit;
    use meridian::datapath::{Arrival, Policy};
    use std::sync::Arc;
    const CLIENTS: usize = 1 << 20;
    let addrs = client_addrs(CLIENTS);
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(1));
    for (name, n) in [
        ("access_1_rule", 1),
        ("access_10k_rules", 10_000),
        ("access_100k_rules", 100_000),
    ] {
        let rules = AccessRules::new(&[], &random_prefixes(n));
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & (CLIENTS - 1);
                rules.allows(black_box(addrs[i].ip()))
            })
        });
    }
    let snap = ClockSnapshot::local(2, -24, NOW.add_nanos(-1_000_000_000));
    let req = request();
    let mut out = [0u8; MAX_REPLY_LEN];
    let rules = Arc::new(AccessRules::new(&[], &random_prefixes(10_000)));
    // The clients are ones the rules serve: the cost measured is the lookup's, not a KoD's.
    let served: Vec<_> = addrs
        .iter()
        .copied()
        .filter(|a| rules.allows(a.ip()))
        .take(1024)
        .collect();
    let on = Policy {
        access: rules,
        // One request per 8 s, burst 8: the clients below send one per ~10 s.
        rate_limit: Some(RateLimit::new(3, 8, 2, true)),
        ..Policy::default()
    };
    for (name, policy) in [
        ("on_datagram_1k_policy_off", Policy::default()),
        ("on_datagram_1k_policy_on", on),
    ] {
        // Room for four times the clients, so none is evicted: an eviction is a cost of the
        // table, not of the policy.
        let mut worker = Worker::new(WorkerConfig {
            clients: 4096,
            seed: 7,
            interleaved: true,
        });
        worker.set_policy(&policy);
        let (mut i, mut now) = (0usize, NOW);
        g.bench_function(name, |b| {
            b.iter(|| {
                // 1,024 clients in turn, 10 ms apart: each sends every ~10 s.
                i = (i + 1) & 1023;
                now = now.add_nanos(10_000_000);
                let arrival = Arrival {
                    src: served[i],
                    dst: None,
                    ifindex: 0,
                    rx: RawStamp {
                        raw: now,
                        quality: TimestampQuality::Kernel,
                    },
                };
                let v = worker.on_datagram(&arrival, black_box(&req), &mut out, &snap, || {
                    black_box(now.add_nanos(1_500))
                });
                debug_assert!(matches!(v, meridian::datapath::Verdict::Reply { .. }));
                v
            })
        });
        let t = *worker.tally();
        use meridian::datapath::counters::Counter;
        assert_eq!(
            t.get(Counter::Answered),
            t.get(Counter::Received),
            "{name}: every request answered"
        );
        assert_eq!(
            t.get(Counter::KodDeny) + t.get(Counter::KodRate),
            0,
            "{name}: with replies, not KoDs (no client denied or over its limit)"
        );
        assert_eq!(
            t.get(Counter::ClientsEvicted),
            0,
            "{name}: every client kept"
        );
    }
    g.finish();
}

/// The whole per-datagram step for a plain request and for requests signed with each key
/// type (the MAC checked, the reply written and signed), side by side: the symmetric-key goal
/// is ≥ 0.8× the plain rate.
fn auth(c: &mut Criterion) {
    use meridian::auth::{Key, KeySet, MacKind, Require, ServerAuth};
    use meridian::clock::{RawStamp, TimestampQuality};
    use meridian::datapath::{Arrival, Policy, Verdict};
    use std::sync::Arc;
    let addrs = client_addrs(1024);
    let keys = KeySet::new(MacKind::ALL.iter().enumerate().map(|(i, &kind)| {
        let secret: Vec<u8> = (0..kind.cipher_key_len().unwrap_or(20) as u8).collect();
        Key::new(i as u32 + 1, kind, &secret).expect("a key")
    }));
    let policy = Policy {
        auth: Arc::new(ServerAuth {
            keys: keys.clone(),
            require: Require::Off,
        }),
        ..Policy::default()
    };
    let snap = ClockSnapshot::local(2, -24, NOW.add_nanos(-1_000_000_000));
    let mut g = c.benchmark_group("auth");
    g.throughput(Throughput::Elements(1));
    // One MAC of a 48-byte header with each key type.
    let header = request();
    for key in keys.iter() {
        let mut out = [0u8; meridian::auth::MAX_DIGEST_LEN];
        let name = format!("mac_{}", key.kind().name().to_lowercase());
        g.bench_function(&name, |b| {
            b.iter(|| key.digest(black_box(&header), &mut out))
        });
        // On the key's own state, as a worker computes it (differs for CMAC only).
        let mut own = key.clone();
        g.bench_function(format!("{name}_in_place"), |b| {
            b.iter(|| own.digest_mut(black_box(&header), &mut out))
        });
    }
    // (name, NTP version, key id): the plain request first.
    let mut cases = vec![("on_datagram_plain".to_owned(), 4u8, None)];
    for (i, kind) in MacKind::ALL.iter().enumerate() {
        let version = if kind.digest_len() > 20 { 3 } else { 4 };
        let name = format!("on_datagram_{}_v{version}", kind.name().to_lowercase());
        cases.push((name, version, Some(i as u32 + 1)));
    }
    for (name, version, key) in cases {
        let mut req = vec![0u8; MAX_REPLY_LEN];
        req[..48].copy_from_slice(&client_request(
            version,
            6,
            NtpTimestamp::from_unix(NOW.add_nanos(-25_000)),
        ));
        let len = match key.and_then(|id| keys.get(id)) {
            Some(k) => k
                .sign(&mut req, 48, k.digest_len_for(version))
                .expect("fits"),
            None => 48,
        };
        req.truncate(len);
        let mut worker = Worker::new(WorkerConfig {
            clients: 1024,
            seed: 7,
            interleaved: true,
        });
        worker.set_policy(&policy);
        let mut out = [0u8; MAX_REPLY_LEN];
        let (mut i, mut now) = (0usize, NOW);
        g.bench_function(&name, |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                now = now.add_nanos(10_000_000);
                let arrival = Arrival {
                    src: addrs[i],
                    dst: None,
                    ifindex: 0,
                    rx: RawStamp {
                        raw: now,
                        quality: TimestampQuality::Kernel,
                    },
                };
                worker.on_datagram(&arrival, black_box(&req), &mut out, &snap, || {
                    black_box(now.add_nanos(1_500))
                })
            })
        });
        let v = worker.on_datagram(
            &Arrival {
                src: addrs[0],
                dst: None,
                ifindex: 0,
                rx: RawStamp {
                    raw: now,
                    quality: TimestampQuality::Kernel,
                },
            },
            &req,
            &mut out,
            &snap,
            || now,
        );
        assert!(
            matches!(v, Verdict::Reply { len: n, .. } if n == len),
            "{name}: answered, signed, as long as the request: {v:?}"
        );
        let t = *worker.tally();
        let authenticated = t.get(meridian::datapath::counters::Counter::Authenticated);
        let received = t.get(meridian::datapath::counters::Counter::Received);
        assert_eq!(
            authenticated,
            if key.is_some() { received } else { 0 },
            "{name}"
        );
    }
    g.finish();
}

#[cfg(linux_io)]
fn xdp_frame(c: &mut Criterion) {
    use meridian::clock::{RawStamp, TimestampQuality};
    use meridian::io::xdp::frame::{answer_in_place, AddrFilter};
    use meridian::wire::{build_udp, UdpFrameSpec};
    use std::net::SocketAddr;

    let server: SocketAddr = "10.201.0.1:123".parse().expect("literal");
    let client: SocketAddr = "10.201.0.2:40000".parse().expect("literal");
    let spec = UdpFrameSpec {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        src: client,
        dst: server,
    };
    let mut request_frame = [0u8; 256];
    let len = build_udp(&mut request_frame, &spec, &request()).expect("frame fits");
    let filter = AddrFilter::new(&[server]);
    let snap = ClockSnapshot::local(2, -24, NOW.add_nanos(-1_000_000_000));
    let rx = RawStamp {
        raw: NOW,
        quality: TimestampQuality::Driver,
    };
    let mut frame = [0u8; 256];
    let mut worker = Worker::new(WorkerConfig {
        clients: 1 << 20,
        seed: 1,
        interleaved: true,
    });
    frame[..len].copy_from_slice(&request_frame[..len]);
    assert!(
        answer_in_place(&mut frame[..len], &filter, &snap, rx, &mut worker).is_some(),
        "the benchmark must measure the answering path, not a drop"
    );
    let mut g = c.benchmark_group("xdp");
    g.throughput(Throughput::Elements(1));
    // Each iteration answers a fresh copy of the request frame (the answer overwrites it).
    g.bench_function("answer_in_place_ipv4", |b| {
        b.iter(|| {
            frame[..len].copy_from_slice(&request_frame[..len]);
            answer_in_place(
                &mut frame[..len],
                &filter,
                black_box(&snap),
                rx,
                &mut worker,
            )
        })
    });
    g.finish();
}

#[cfg(not(linux_io))]
fn xdp_frame(_: &mut Criterion) {}

criterion_group!(hot_path, parse, reply, snapshot, timestamps, datapath, policy, auth, xdp_frame);
criterion_main!(hot_path);
