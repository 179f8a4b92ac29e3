//! A spoofed flood against a rate-limited server, with a real client syncing through it.
//!
//! Two namespaces joined by a veth pair; `meridian serve --backend udp` in one, with rate
//! limiting on and a client table sized for the flood. From the other, the load generator's
//! AF_XDP transport sends from 100,000 source addresses nobody owns (10.204.0.0/15: the server
//! routes them back over the veth, where the generator's program takes the replies off the
//! wire), while chronyd, polling within the limit from its own address, takes its samples.
//!
//! Asserted, all on counts: chronyd got an answer to every request it sent and none of them
//! was a KoD, with sane offsets; the flood was limited (drops and KoD RATE counted) and
//! every datagram that reached the server's namespace is explained (answered, dropped by
//! reason, or dropped by the kernel for a full socket buffer, which the namespace's UDP
//! counters say); the server's resident memory stays within its client-table budget.
//!
//! Needs root, `ip`, bpf(2) and chronyd; skips with a printed reason otherwise.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

use common::netns::{start_server, Namespaces};
use common::{run_bounded, skip_notice, ChildGuard};
use meridian_testkit::netns;

const CHRONYD: &str = "/usr/sbin/chronyd";
const CHRONYC: &str = "/usr/bin/chronyc";
/// The spoofed sources: 131,070 hosts, of which the generator uses the first 100,000.
const SPOOFED: &str = "10.204.0.0/15";
const FLOOD_CLIENTS: &str = "100000";
/// Client records of the server (16 MiB of records at 64 bytes, rounded up per worker).
const TABLE: usize = 262_144;

fn skip_reason() -> Option<String> {
    if !meridian_testkit::is_root() {
        return Some("needs root (namespaces, AF_XDP, chronyd)".into());
    }
    if let Some(why) = netns::unavailable() {
        return Some(why);
    }
    if let Err(e) = meridian::io::xdp::probe() {
        return Some(e);
    }
    for bin in [CHRONYD, CHRONYC] {
        if !Path::new(bin).is_file() {
            return Some(format!("{bin} is missing (apt-get install chrony)"));
        }
    }
    None
}

/// The UDP counters of a namespace (`/proc/net/snmp`): InDatagrams and InErrors.
fn udp_counters(ns: &Namespaces) -> (u64, u64) {
    let text = ns.pair.server.output("cat", &["/proc/net/snmp"]);
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines
        .next()
        .expect("Udp header")
        .split_whitespace()
        .collect();
    let values: Vec<u64> = lines
        .next()
        .expect("Udp values")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let get = |n: &str| values[names.iter().position(|x| *x == n).unwrap() - 1];
    (get("InDatagrams"), get("InErrors"))
}

/// The server's report, through SIGUSR1 (the last JSON line of its log).
fn report(server: &ChildGuard, log: &Path) -> serde_json::Value {
    let before = std::fs::read_to_string(log).unwrap_or_default().len();
    server.signal(libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text[before.min(text.len())..]
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
        {
            return serde_json::from_str(line).expect("report JSON");
        }
        assert!(Instant::now() < deadline, "no report after SIGUSR1");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, p| &v[*p])
        .as_u64()
        .unwrap_or_else(|| panic!("no {path:?} in {v}"))
}

/// `Total TX` and `Total RX` of chronyd's one source, from `chronyc ntpdata`.
fn chronyd_tx_rx(ns: &Namespaces, socket: &Path) -> (u64, u64) {
    let sock = socket.to_string_lossy().into_owned();
    let out = ns.pair.client.run(
        CHRONYC,
        &["-h", &sock, "-n", "ntpdata"],
        Duration::from_secs(10),
    );
    assert!(out.success(), "chronyc ntpdata: {}", out.all());
    let field = |name: &str| -> u64 {
        out.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
    };
    (field("Total TX"), field("Total RX"))
}

#[test]
fn a_spoofed_flood_is_limited_and_a_real_client_keeps_every_answer() {
    if let Some(why) = skip_reason() {
        return skip_notice(&format!("spoofed flood: {why}"));
    }
    let ns = Namespaces::up("lgf");
    let server_ip = ns.pair.server4();
    let client_ip = ns.pair.client4();
    // chronyd's own address (the readiness probes come from the client's first one).
    let chronyd_ip = ns.pair.spec().addr4(100);
    // Replies to the spoofed sources go back over the veth, to the client namespace.
    ns.pair
        .server
        .ip(&["route", "add", SPOOFED, "via", &client_ip.to_string()]);
    let dir = std::env::temp_dir().join(format!("loadgen-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = 123;
    // One request per 4 s may be kept up, 2 back to back; chronyd polls every 8 s.
    let config = dir.join("meridian.toml");
    std::fs::write(
        &config,
        format!(
            "[clients]\nmax = {TABLE}\n[rate-limit]\nenabled = true\ninterval = 2\nburst = 2\n\
             leak = 2\nkod = true\n"
        ),
    )
    .unwrap();
    let log = dir.join("server.log");
    let config_s = config.to_string_lossy().into_owned();
    // chronyd asks on a port of its own: the generator's program takes every reply from
    // `port` off the client's link.
    let chronyd_port = 124;
    let also = format!("{server_ip}:{chronyd_port}");
    let server = start_server(
        &ns,
        "udp",
        port,
        &log,
        &["--config", &config_s, "--listen", &also],
    );
    let before = report(&server, &log);
    let (_, errors_before) = udp_counters(&ns);

    // chronyd from the client's own address, with a command socket for its counters.
    let (_, uid, gid) = meridian_testkit::system_user(&["_chrony", "chrony"]).expect("_chrony");
    let cdir = dir.join("chronyd");
    std::fs::create_dir_all(&cdir).unwrap();
    std::os::unix::fs::chown(&cdir, Some(uid), Some(gid)).unwrap();
    // chronyd opens its command socket only in a directory others cannot enter.
    std::fs::set_permissions(&cdir, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let socket = cdir.join("chronyd.sock");
    let conf = cdir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "server {server_ip} port {chronyd_port} minpoll 3 maxpoll 3\nbindacqaddress {chronyd_ip}\n\
             logdir {d}\nlog measurements\npidfile {d}/chronyd.pid\ncmdport 0\n\
             bindcmdaddress {s}\n",
            d = cdir.display(),
            s = socket.display()
        ),
    )
    .unwrap();
    let chronyd = ns
        .pair
        .client
        .command(CHRONYD)
        .args(["-x", "-d", "-f"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("chronyd.log")).unwrap())
        .spawn()
        .expect("chronyd");
    let mut chronyd = ChildGuard::terminating(chronyd, "chronyd");

    // The flood: 60,000 requests/s for 12 s from 100,000 addresses (0.6 per address per
    // second against 0.25 allowed).
    let json = dir.join("flood.json");
    let mut c = ns.in_cli(Path::new(env!("CARGO_BIN_EXE_meridian-loadgen")));
    c.args([
        "--target",
        &format!("{server_ip}:{port}"),
        "--transport",
        "xdp",
    ])
    .args(["--interface", &format!("{}-c0", ns.name)])
    .args(["--source-cidr", SPOOFED, "--clients", FLOOD_CLIENTS])
    .args(["--rate", "60000", "--duration", "12", "--quiet"])
    .args(["--max-loss", "1", "--timeout-ms", "1000", "--json"])
    .arg(&json);
    let out = run_bounded(c, Duration::from_secs(120));
    let flood: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json).unwrap_or_else(|_| panic!("no --json output: {out:?}")),
    )
    .unwrap();
    let run = &flood["runs"][0];
    let sent = count(run, &["sent"]);
    assert!(sent > 0, "{run}");
    // Give chronyd's last request time to be answered, then read its counters.
    std::thread::sleep(Duration::from_secs(2));
    let (tx, rx) = chronyd_tx_rx(&ns, &socket);
    chronyd.stop();
    let after = report(&server, &log);
    let (_, errors_after) = udp_counters(&ns);
    let measurements = std::fs::read_to_string(cdir.join("measurements.log")).unwrap_or_default();
    let chronyd_log = std::fs::read_to_string(dir.join("chronyd.log")).unwrap_or_default();

    // chronyd: every request answered, no KoD, sane offsets.
    assert!(tx >= 2, "chronyd sent {tx}: {chronyd_log}");
    assert_eq!(
        rx, tx,
        "chronyd got an answer to every request:\n{chronyd_log}"
    );
    assert!(!chronyd_log.contains("KoD"), "{chronyd_log}");
    let offsets: Vec<f64> = measurements
        .lines()
        .filter(|l| l.starts_with("20"))
        .filter_map(|l| l.split_whitespace().nth(11)?.parse().ok())
        .collect();
    assert!(!offsets.is_empty(), "no measurement: {measurements}");
    for o in &offsets {
        assert!(o.abs() < 0.005, "chronyd offset {o} s: {measurements}");
    }

    // The flood was limited, and every datagram that reached the namespace is explained.
    let total = |r: &serde_json::Value, k: &[&str]| {
        let mut path = vec!["total"];
        path.extend_from_slice(k);
        count(r, &path)
    };
    let received = total(&after, &["received"]) - total(&before, &["received"]);
    let answered = total(&after, &["answered"]) - total(&before, &["answered"]);
    let dropped = total(&after, &["dropped_total"]) - total(&before, &["dropped_total"]);
    let limited = total(&after, &["dropped", "rate_limited"]);
    let kods = total(&after, &["kod_rate"]);
    let kernel_drops = errors_after - errors_before;
    assert_eq!(received, answered + dropped, "{after}");
    assert!(limited > 0 && kods > 0, "the flood was limited: {after}");
    assert_eq!(
        received + kernel_drops,
        sent + tx,
        "flood ({sent}) + chronyd ({tx}) = received by meridian ({received}) + dropped by \
         the kernel ({kernel_drops}): {after}"
    );
    assert_eq!(total(&after, &["clients_evicted"]), 0, "{after}");
    assert!(
        total(&after, &["clients_added"]) >= 50_000,
        "the flood's addresses got records: {after}"
    );

    // Memory: the table's budget plus a small constant.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("status");
    let rss_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("VmRSS");
    let budget_kib = (TABLE as u64 * 68) / 1024 + 48 * 1024;
    assert!(
        rss_kib <= budget_kib,
        "resident {rss_kib} KiB over the table's budget ({budget_kib} KiB)"
    );
    eprintln!(
        "flood: sent {sent}, meridian received {received} (kernel dropped {kernel_drops}), \
         answered {answered}, rate-limited {limited}, KoD RATE {kods}; chronyd {rx}/{tx} \
         answered, offsets {offsets:?}; resident {rss_kib} KiB"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
