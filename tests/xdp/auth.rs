//! Symmetric keys on the xdp backend, where the reply is written over the request in the UMEM
//! frame: chronyd with a key file takes samples (the MAC checked before the frame is
//! overwritten, the reply signed after its transmit timestamp), and none with a wrong secret.

use std::path::PathBuf;
use std::time::Duration;

use meridian_testkit::{skip_notice, VethPair};

use crate::common::{chrony_offset, chronyd_keyed_args, counter, temp_file, CHRONYD};
use crate::server::XdpServer;

/// A key file chronyd's user can read.
fn key_file(name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = temp_file(name, text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if let Some((_, uid, gid)) = meridian_testkit::system_user(&["_chrony", "chrony"]) {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    }
    path
}

/// chronyd -Q from the client namespace with key `id` of `file`: the offset, if it got one.
fn chronyd_keyed(pair: &VethPair, host: &str, file: &std::path::Path, id: u32) -> Option<f64> {
    let pid_path = std::env::temp_dir().join(format!(
        "meridian-xdp-chronyd-{}-{id}-{}.pid",
        pair.client.name(),
        file.file_name().unwrap_or_default().to_string_lossy()
    ));
    let args = chronyd_keyed_args(host, 123, &pid_path, Some((file, id)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = pair.client.run(CHRONYD, &args, Duration::from_secs(25));
    chrony_offset(&format!("{}\n{}", out.stdout, out.stderr))
}

pub fn keyed_chronyd(mode: &str) {
    let pair = setup!();
    if !std::path::Path::new(CHRONYD).exists() {
        return skip_notice(&format!("xdp with keys: {CHRONYD} missing"));
    }
    let keys = key_file(
        "xdp-keys",
        "1 MD5 HEX:00112233445566778899aabbccddeeff\n\
         4 AES128 HEX:000102030405060708090a0b0c0d0e0f\n\
         5 SHA512 ASCII:a-sha512-key-for-meridian\n",
    );
    let wrong = key_file(
        "xdp-wrong",
        "4 AES128 HEX:ff0102030405060708090a0b0c0d0e0f\n",
    );
    let config = temp_file(
        "xdp-auth.toml",
        &format!("[auth]\nkeys = {:?}\n", keys.display()),
    );
    let config_s = config.display().to_string();
    let server = XdpServer::start_with(&pair, mode, &["10.203.0.1:123"], &["--config", &config_s])
        .unwrap_or_else(|e| panic!("xdp server ({mode}): {e}"));
    for id in [1, 4, 5] {
        let offset = chronyd_keyed(&pair, "10.203.0.1", &keys, id)
            .unwrap_or_else(|| panic!("{mode}: chronyd with key {id} took no sample"));
        assert!(offset.abs() < 0.05, "{mode}: key {id}: offset {offset}");
    }
    assert_eq!(
        chronyd_keyed(&pair, "10.203.0.1", &wrong, 4),
        None,
        "wrong secret"
    );
    let (report, _) = server.stop();
    assert_eq!(report["backend"], "xdp", "{report}");
    assert!(
        counter(&report, &["total", "authenticated"]) >= 3,
        "{report}"
    );
    assert!(counter(&report, &["total", "bad_mac"]) >= 1, "{report}");
    for p in [keys, wrong, config] {
        let _ = std::fs::remove_file(p);
    }
}
