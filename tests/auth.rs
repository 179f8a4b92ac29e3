//! Symmetric keys against real clients: chronyd with a key file (`server … key N`) takes
//! samples from meridian for every key type it supports and none with a wrong key or a key
//! meridian does not have; raw requests show the crypto-NAK, the reply lengths, `[auth]
//! require`, and a SIGHUP that changes the keys; `meridian validate` reports bad key files
//! with their line.
//!
//! chronyd checks our replies' MACs with its own code (nettle or gnutls), so a sample means
//! the reply was signed right; verdicts do not depend on timing (chronyd's query waits up to
//! 10 s, far longer than an answer takes on loopback).

// Tests are shells: they may read the clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    backends, chrony_offset, chronyd_query_keyed, counter, ntp_now, recv_timeout, request,
    run_meridian, skip_notice, temp_file, Server, ServerOpts, CHRONYD,
};
use meridian::auth::{Key, KeySet, MacKind};

/// The keys meridian serves (and chronyd's file, but for key 3 and 9 in the wrong one).
const KEYS: &str = "# meridian's and chronyd's keys\n\
    1 MD5 HEX:00112233445566778899aabbccddeeff\n\
    2 SHA1 HEX:00112233445566778899aabbccddeeff00112233\n\
    3 SHA256 HEX:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\
    4 AES128 HEX:000102030405060708090a0b0c0d0e0f\n\
    5 SHA512 ASCII:a-sha512-key-for-meridian\n\
    6 AES256 HEX:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

/// chronyd's file for the failing cases: key 3 with another secret, key 9 meridian lacks.
const WRONG: &str =
    "3 SHA256 HEX:ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\
    9 MD5 HEX:00112233445566778899aabbccddeeff\n";

/// A key file only chronyd's user (and root) may read.
fn key_file(name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = temp_file(name, text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if let Some((_, uid, gid)) = meridian_testkit::system_user(&["_chrony", "chrony"]) {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    }
    path
}

fn server(backend: &str, auth: &str) -> (Server, PathBuf) {
    let path = temp_file("auth.toml", &format!("[auth]\n{auth}"));
    let mut opts = ServerOpts::new(backend);
    opts.extra = vec!["--config".into(), path.display().to_string()];
    (Server::must_start(&opts), path)
}

fn chronyd_missing() -> Option<&'static str> {
    if !Path::new(CHRONYD).is_file() {
        return Some("chronyd with keys: chronyd is not installed (apt-get install chrony)");
    }
    if !meridian_testkit::is_root() {
        return Some("chronyd with keys: needs root (chronyd drops to its own user)");
    }
    None
}

/// chronyd -Q with key `id` of `file` against `target`: the offset it measured, if any.
fn chronyd_offset(target: SocketAddr, file: &Path, id: u32) -> (Option<f64>, String) {
    let out = chronyd_query_keyed(target, Some((file, id)));
    (chrony_offset(&out.all()), out.all())
}

#[test]
fn chronyd_gets_samples_with_each_key_type_and_none_with_a_wrong_key() {
    if let Some(why) = chronyd_missing() {
        return skip_notice(why);
    }
    let ours = key_file("keys", KEYS);
    let wrong = key_file("wrong-keys", WRONG);
    for backend in backends() {
        let (server, config) = server(backend, &format!("keys = {:?}\n", ours.display()));
        let target = server.addr4();
        let good: Vec<(u32, MacKind)> = (1..=6)
            .map(|id| (id, KEYS.lines().nth(id as usize).unwrap()))
            .map(|(id, line)| {
                (
                    id,
                    MacKind::from_name(line.split(' ').nth(1).unwrap()).unwrap(),
                )
            })
            .collect();
        // In parallel: each query is its own chronyd, from its own port.
        let (ours, wrong) = (ours.as_path(), wrong.as_path());
        let results: Vec<_> = std::thread::scope(|s| {
            let runs: Vec<_> = good
                .iter()
                .map(|&(id, kind)| {
                    (
                        kind.name(),
                        s.spawn(move || chronyd_offset(target, ours, id)),
                    )
                })
                .chain([3, 9].map(|id| {
                    let name = if id == 3 {
                        "wrong SHA256 secret"
                    } else {
                        "unknown key 9"
                    };
                    (name, s.spawn(move || chronyd_offset(target, wrong, id)))
                }))
                .collect();
            runs.into_iter()
                .map(|(name, h)| (name, h.join().unwrap()))
                .collect()
        });
        for (name, (offset, log)) in &results[..good.len()] {
            let offset = offset.unwrap_or_else(|| panic!("{backend} {name}: no sample: {log}"));
            assert!(offset.abs() < 0.05, "{backend} {name}: offset {offset}");
            eprintln!("{backend}: chronyd with a {name} key: offset {offset:+.6} s");
        }
        for (name, (offset, log)) in &results[good.len()..] {
            assert_eq!(
                *offset, None,
                "{backend} {name}: chronyd took a sample: {log}"
            );
        }
        let stopped = server.stop();
        let r = &stopped.report;
        let authenticated = counter(r, &["total", "authenticated"]);
        assert!(authenticated >= good.len() as u64, "{backend}: {r}");
        assert!(counter(r, &["total", "bad_mac"]) >= 1, "{backend}: {r}");
        assert!(counter(r, &["total", "unknown_key"]) >= 1, "{backend}: {r}");
        assert_eq!(
            counter(r, &["total", "received"]),
            counter(r, &["total", "answered"]) + counter(r, &["total", "dropped_total"]),
            "{backend}: every datagram answered or counted as dropped: {r}"
        );
        let _ = std::fs::remove_file(&config);
    }
    let _ = std::fs::remove_file(&ours);
    let _ = std::fs::remove_file(&wrong);
}

/// The keys of `KEYS`, to sign raw requests with.
fn keys() -> KeySet {
    meridian::auth::KeyFile::parse(KEYS.as_bytes(), "KEYS")
        .unwrap()
        .keys
}

/// A client request (NTP `version`, transmit `t`) signed with key `id`.
fn signed(keys: &KeySet, version: u8, id: u32, t: u64) -> Vec<u8> {
    let key: &Key = keys.get(id).unwrap();
    let mut buf = request(version, 3, t);
    buf.resize(48 + 4 + 64, 0);
    let len = key.sign(&mut buf, 48, key.digest_len_for(version)).unwrap();
    buf.truncate(len);
    buf
}

/// Sends `datagram` from a fresh socket; the answer (its origin = our transmit field).
fn ask(target: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(target).unwrap();
    s.send(datagram).unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let b = recv_timeout(&s, deadline.saturating_duration_since(Instant::now()))?;
        assert!(
            b.len() <= datagram.len(),
            "reply {} > request {}",
            b.len(),
            datagram.len()
        );
        if b.len() >= 48 && b[24..32] == datagram[40..48] {
            return Some(b);
        }
    }
}

/// The reply carries a valid MAC of key `id`.
fn assert_signed(keys: &KeySet, reply: &[u8], id: u32, version: u8) {
    assert!(reply.len() > 52, "not signed: {} bytes", reply.len());
    assert_eq!(&reply[48..52], &id.to_be_bytes());
    let check = keys.check(&reply[..48], id, &reply[52..], version);
    assert!(
        matches!(check, meridian::auth::Check::Valid { .. }),
        "{check:?}"
    );
}

#[test]
fn raw_requests_signed_replies_crypto_naks_and_required_authentication() {
    let keys = keys();
    let file = key_file("raw-keys", KEYS);
    for backend in backends() {
        let (server, config) = server(
            backend,
            &format!(
                "keys = {:?}\nrequire = true\nrequire-action = \"kod\"\n",
                file.display()
            ),
        );
        let target = server.addr4();
        // Signed with each key, NTPv4 (digests cut to 20 bytes) and NTPv3 (whole digests).
        for (version, id) in [(4, 1), (4, 2), (4, 3), (4, 4), (4, 6), (3, 3), (3, 5)] {
            let req = signed(&keys, version, id, ntp_now());
            let reply = ask(target, &req).unwrap_or_else(|| panic!("{backend}: no reply"));
            assert_eq!(reply.len(), req.len(), "{backend} v{version} key {id}");
            assert_eq!(reply[0] & 7, 4, "mode 4");
            assert_ne!(&reply[40..48], &[0; 8], "{backend}: it carries time");
            assert_signed(&keys, &reply, id, version);
        }
        // A bad MAC: a crypto-NAK, and (authentication required) no time in it.
        let mut bad = signed(&keys, 4, 2, ntp_now());
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let reply = ask(target, &bad).expect("a crypto-NAK");
        assert_eq!(reply.len(), 52, "{backend}");
        assert_eq!(&reply[48..52], &[0; 4], "{backend}: key id 0");
        assert_eq!(&reply[12..16], b"CRYP", "{backend}");
        // An MD5 key's id with a 20-byte digest (the wrong length for MD5): a bad MAC too.
        let mut wrong_len = signed(&keys, 4, 1, ntp_now());
        wrong_len.extend_from_slice(&[0; 4]);
        let reply = ask(target, &wrong_len).expect("a crypto-NAK");
        assert_eq!(
            (reply.len(), &reply[48..52]),
            (52, &[0u8; 4][..]),
            "{backend}"
        );
        // No MAC: KoD CRYP, 48 bytes.
        let plain = request(4, 3, ntp_now());
        let reply = ask(target, &plain).expect("a KoD");
        assert_eq!(
            (reply.len(), &reply[12..16]),
            (48, &b"CRYP"[..]),
            "{backend}"
        );
        let stopped = server.stop();
        let r = &stopped.report;
        assert_eq!(counter(r, &["total", "authenticated"]), 7, "{backend}: {r}");
        assert_eq!(counter(r, &["total", "bad_mac"]), 2, "{backend}: {r}");
        assert_eq!(counter(r, &["total", "kod_cryp"]), 3, "{backend}: {r}");
        let _ = std::fs::remove_file(&config);
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
fn require_drop_answers_nothing_unauthenticated() {
    let keys = keys();
    let file = key_file("drop-keys", KEYS);
    let (server, config) = server(
        "udp",
        &format!("keys = {:?}\nrequire = true\n", file.display()),
    );
    let target = server.addr4();
    assert_eq!(ask(target, &request(4, 3, ntp_now())), None);
    let reply = ask(target, &signed(&keys, 4, 1, ntp_now())).expect("answered");
    assert_signed(&keys, &reply, 1, 4);
    let r = server.stop().report;
    assert_eq!(
        counter(&r, &["total", "dropped", "unauthenticated"]),
        1,
        "{r}"
    );
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn sighup_reads_the_key_file_again() {
    let keys = keys();
    let file = key_file("reload-keys", KEYS);
    let (server, config) = server("udp", &format!("keys = {:?}\n", file.display()));
    let target = server.addr4();
    let reply = ask(target, &signed(&keys, 4, 1, ntp_now())).unwrap();
    assert_signed(&keys, &reply, 1, 4);
    // Key 1 gets a new secret; the configuration itself is unchanged.
    let renewed = KEYS.replace(
        "1 MD5 HEX:00112233445566778899aabbccddeeff",
        "1 MD5 HEX:ffeeddccbbaa99887766554433221100",
    );
    std::fs::write(&file, &renewed).unwrap();
    let before = server
        .stderr_text()
        .matches("keys handed to the workers")
        .count();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server
        .stderr_text()
        .matches("keys handed to the workers")
        .count()
        == before
    {
        assert!(
            Instant::now() < deadline,
            "no reload: {}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Taken up at the worker's next batch boundary (it wakes at least every 100 ms).
    let renewed_keys = meridian::auth::KeyFile::parse(renewed.as_bytes(), "renewed")
        .unwrap()
        .keys;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = ask(target, &signed(&renewed_keys, 4, 1, ntp_now())).unwrap();
        if reply.len() > 52 {
            assert_signed(&renewed_keys, &reply, 1, 4);
            break;
        }
        assert!(Instant::now() < deadline, "the new key was never taken up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let old = ask(target, &signed(&keys, 4, 1, ntp_now())).unwrap();
    assert_eq!(
        (old.len(), &old[48..52]),
        (52, &[0u8; 4][..]),
        "old secret: crypto-NAK"
    );
    // A broken file on the next SIGHUP keeps the running keys.
    std::fs::write(&file, "1 AES128 HEX:0011\n").unwrap();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr_text().contains("not applied") {
        assert!(
            Instant::now() < deadline,
            "no error: {}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = server.stderr_text();
    assert!(
        logs.contains(":1: key 1: AES128 keys are 16 bytes"),
        "{logs}"
    );
    let reply = ask(target, &signed(&renewed_keys, 4, 1, ntp_now())).unwrap();
    assert_signed(&renewed_keys, &reply, 1, 4);
    server.stop();
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn validate_reports_bad_key_files_by_line_and_open_ones_as_a_warning() {
    let bad = key_file(
        "bad-keys",
        "1 MD5 HEX:00112233445566778899\n\n7 AES128 tooshort\n",
    );
    let config = temp_file("bad.toml", &format!("[auth]\nkeys = {:?}\n", bad.display()));
    let out = run_meridian(
        &["validate", "--config", &config.display().to_string()],
        Duration::from_secs(10),
    );
    assert!(!out.success(), "{}", out.all());
    let want = format!(
        "{}:3: key 7: AES128 keys are 16 bytes (128 bits), this one is 8 bytes",
        bad.display()
    );
    assert!(out.all().contains(&want), "{}", out.all());
    assert!(
        out.all().contains(":2:") && out.all().contains("auth.keys"),
        "{}",
        out.all()
    );
    assert!(
        !out.all().contains("tooshort"),
        "the key is never printed: {}",
        out.all()
    );

    let open = temp_file("open-keys", "1 SHA1 HEX:00112233445566778899aabb\n");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let config2 = temp_file(
        "open.toml",
        &format!("[auth]\nkeys = {:?}\n", open.display()),
    );
    let out = run_meridian(
        &["validate", "--config", &config2.display().to_string()],
        Duration::from_secs(10),
    );
    assert!(out.success(), "{}", out.all());
    assert!(out.all().contains("mode 0644"), "{}", out.all());

    let config3 = temp_file("require.toml", "[auth]\nrequire = true\n");
    let out = run_meridian(
        &["validate", "--config", &config3.display().to_string()],
        Duration::from_secs(10),
    );
    assert!(!out.success(), "{}", out.all());
    assert!(
        out.all().contains("auth.require: needs auth.keys"),
        "{}",
        out.all()
    );
    for p in [bad, config, open, config2, config3] {
        let _ = std::fs::remove_file(p);
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream sources with a key
// ---------------------------------------------------------------------------------------------

/// chronyd serving local stratum 1 on 127.0.0.1:`port` with the keys of `keys` (`-x`: the
/// clock untouched), answering once it does; killed by PID when the guard drops.
fn chronyd_server(keys: &Path, port: u16) -> (common::ChildGuard, PathBuf) {
    let dir = common::chronyd_dir(&format!("auth-{port}")).expect("a _chrony (or chrony) user");
    let conf = dir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 1\nkeyfile {}\n\
             pidfile {d}/chronyd.pid\ncmdport 0\nbindcmdaddress /\n",
            keys.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(CHRONYD)
        .args(["-x", "-d", "-f"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning chronyd");
    let guard = common::ChildGuard::new(child);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until it answers (refused while it starts: the probe's errors are not failures).
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.connect(target).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 128];
    while probe
        .send(&request(4, 3, ntp_now()))
        .and_then(|_| probe.recv(&mut buf))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chronyd does not answer on {target}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (guard, dir)
}

/// meridian with one `[[source]]` at `upstream` using key `key` of `keys`, polled 4 times a
/// second.
fn meridian_upstream(keys: &Path, upstream: SocketAddr, key: u32) -> (Server, PathBuf) {
    server(
        "udp",
        &format!(
            "keys = {:?}\n[clock]\nmin-sources = 1\n[[source]]\naddress = \"{upstream}\"\n\
             key = {key}\niburst = true\nminpoll = -2\nmaxpoll = -2\n",
            keys.display()
        ),
    )
}

/// The report's row of the one source: (state, requests, replies).
fn source_row(server: &Server) -> (String, u64, u64) {
    let r = server.report_now();
    let s = &r["sources"][0];
    (
        s["state"].as_str().unwrap_or("?").to_owned(),
        s["requests"].as_u64().unwrap_or(0),
        s["replies"].as_u64().unwrap_or(0),
    )
}

#[test]
fn an_upstream_chronyd_with_the_key_is_followed_and_without_it_is_not() {
    if let Some(why) = chronyd_missing() {
        return skip_notice(why);
    }
    let keys = key_file("upstream-keys", KEYS);
    let port = common::free_port(true, false).expect("a free port");
    let (_chronyd, dir) = chronyd_server(&keys, port);
    let upstream: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Two meridians at once: one with a key chronyd has (SHA256, cut to 20 bytes in NTPv4),
    // one with a key chronyd lacks (9: only in meridian's file).
    let ours = key_file(
        "upstream-ours",
        &format!("{KEYS}9 AES128 HEX:0f0e0d0c0b0a09080706050403020100\n"),
    );
    let (good, good_cfg) = meridian_upstream(&ours, upstream, 3);
    let (bad, bad_cfg) = meridian_upstream(&ours, upstream, 9);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (state, requests, replies) = source_row(&good);
        if state == "selected" && replies >= 3 {
            assert!(requests >= replies);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the keyed source was never selected ({state}, {requests} requests, {replies} \
             replies): {}",
            good.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Synchronised to it: stratum 2 behind chronyd's stratum 1.
    let reply = ask(good.addr4(), &request(4, 3, ntp_now())).expect("an answer");
    assert_eq!((reply[0] >> 6, reply[1]), (0, 2), "LI 0, stratum 2");
    // chronyd answers no request with a key it lacks: never a reply, never synchronised.
    let deadline = Instant::now() + Duration::from_secs(10);
    while source_row(&bad).1 < 3 {
        assert!(
            Instant::now() < deadline,
            "not polled: {}",
            bad.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (state, _, replies) = source_row(&bad);
    assert_eq!((state.as_str(), replies), ("unreachable", 0));
    let reply = ask(bad.addr4(), &request(4, 3, ntp_now())).expect("an answer");
    assert_eq!(reply[0] >> 6, 3, "still unsynchronised");
    drop((good, bad));
    for p in [keys, ours, good_cfg, bad_cfg] {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unsigned_replies_from_a_keyed_source_are_not_used() {
    let keys = key_file("fake-keys", KEYS);
    // A fake upstream that answers every request, without a MAC.
    let fake = common::FakeUpstream::start(
        std::net::Ipv4Addr::new(127, 0, 31, 1),
        common::FakeBehaviour::offset(0.0),
    );
    let (server, cfg) = meridian_upstream(&keys, fake.addr, 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.request_count() < 4 || source_row(&server).1 < 4 {
        assert!(
            Instant::now() < deadline,
            "never polled: {}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (state, requests, replies) = source_row(&server);
    assert!(requests >= 4);
    assert_eq!(
        (state.as_str(), replies),
        ("unreachable", 0),
        "unsigned replies are no replies"
    );
    let reply = ask(server.addr4(), &request(4, 3, ntp_now())).expect("an answer");
    assert_eq!(reply[0] >> 6, 3, "unsynchronised");
    drop(server);
    let _ = std::fs::remove_file(cfg);
    let _ = std::fs::remove_file(keys);
}
