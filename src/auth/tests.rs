//! Known-answer tests of every MAC type, the length rules, and the key file.
//!
//! The expected digests were computed with OpenSSL 3 over the same bytes, not with this code:
//! for the hash types `openssl dgst -sha256 -hex < key_then_packet.bin` (the key's bytes
//! followed by the packet's), for AES `openssl mac -cipher AES-128-CBC -macopt
//! hexkey:000102030405060708090a0b0c0d0e0f -in packet.bin CMAC` (and AES-256-CBC with
//! hexkey:00..1f). OpenSSL's CMAC gives RFC 4493's vector for the empty message
//! (bb1d6929e95937287fa37d129b756746 under 2b7e1516…), checked as well.

use super::*;

/// The packet the vectors cover: an NTPv4 client request, poll 6, transmit
/// 0x0123456789abcdef.
fn packet() -> [u8; 48] {
    let mut p = [0u8; 48];
    p[..4].copy_from_slice(&[0x23, 0, 6, 0]);
    p[40..].copy_from_slice(&0x0123_4567_89ab_cdef_u64.to_be_bytes());
    p
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// (id, kind, key, full digest of `packet()`).
fn vectors() -> Vec<(u32, MacKind, Vec<u8>, Vec<u8>)> {
    vec![
        (
            1,
            MacKind::Md5,
            b"meridian-md5-key".to_vec(),
            hex("dc9e1f01ae10999d016a1e653b2e50fb"),
        ),
        (
            2,
            MacKind::Sha1,
            b"sha1 key: twenty b.".to_vec(),
            hex("f810de7d50510ea8c463336ba7a8340d2c3ff09f"),
        ),
        (
            3,
            MacKind::Sha256,
            (0u8..32).collect(),
            hex("24c31da505bb4bdb700641f2e719ca44fbc236ad8dbeba8c096d1bc098eb6984"),
        ),
        (
            4,
            MacKind::Sha384,
            b"sha384-key".to_vec(),
            hex(
                "8d36225dbc5ca1b108b28d6dc8d66108a79c85608810317f2f15e98200b66e17\
                 acfbcde34e024f092b8faed8608aaeb3",
            ),
        ),
        (
            5,
            MacKind::Sha512,
            b"a rather long sha512 key for the test".to_vec(),
            hex(
                "61207b416695b5e6c5773a60deebc37cba109cb9dc038cf3267f6c1f636b734e\
                 1643a760fba5f80c7654b9ea5a1c22902a17e7a99397a66f8d31b71f159d9494",
            ),
        ),
        (
            6,
            MacKind::Aes128,
            (0u8..16).collect(),
            hex("61fe7209ed03cc9c541b19890b60be40"),
        ),
        (
            7,
            MacKind::Aes256,
            (0u8..32).collect(),
            hex("6842fdd93039114f7fcb4d94a7b68efb"),
        ),
    ]
}

fn key(id: u32, kind: MacKind, secret: &[u8]) -> Key {
    Key::new(id, kind, secret).unwrap()
}

#[test]
fn every_type_gives_openssls_digest() {
    for (id, kind, secret, want) in vectors() {
        let k = key(id, kind, &secret);
        let mut out = [0u8; MAX_DIGEST_LEN];
        let n = k.digest(&packet(), &mut out);
        assert_eq!(n, kind.digest_len(), "{kind}");
        assert_eq!(&out[..n], &want[..], "{kind}");
    }
}

#[test]
fn cmac_gives_the_rfc_4493_vector() {
    let k = key(1, MacKind::Aes128, &hex("2b7e151628aed2a6abf7158809cf4f3c"));
    let mut out = [0u8; MAX_DIGEST_LEN];
    let n = k.digest(&[], &mut out);
    assert_eq!(&out[..n], &hex("bb1d6929e95937287fa37d129b756746")[..]);
}

#[test]
fn signing_appends_the_key_id_and_the_digest_cut_for_ntpv4() {
    for (id, kind, secret, want) in vectors() {
        let k = key(id, kind, &secret);
        for version in [4u8, 3] {
            let mut buf = [0u8; 48 + 4 + MAX_DIGEST_LEN];
            buf[..48].copy_from_slice(&packet());
            let d = k.digest_len_for(version);
            let expected = if version == 4 {
                kind.digest_len().min(20)
            } else {
                kind.digest_len()
            };
            assert_eq!(d, expected, "{kind} v{version}");
            let len = k.sign(&mut buf, 48, d).unwrap();
            assert_eq!(len, 52 + d, "{kind} v{version}");
            assert_eq!(&buf[48..52], &id.to_be_bytes(), "{kind}");
            assert_eq!(&buf[52..len], &want[..d], "{kind} v{version}");
            // And it checks.
            let set = KeySet::new([k.clone()]);
            let ok = set.check(&buf[..48], id, &buf[52..len], version);
            assert!(
                matches!(ok, Check::Valid { digest_len, .. } if digest_len == d),
                "{kind} v{version}: {ok:?}"
            );
        }
    }
}

#[test]
fn signing_never_writes_past_the_buffer() {
    let k = key(1, MacKind::Sha1, b"0123456789");
    let mut buf = [0u8; 71]; // one byte short of 48 + 4 + 20
    buf[..48].copy_from_slice(&packet());
    assert_eq!(k.sign(&mut buf, 48, 20), None);
    assert!(buf[48..].iter().all(|&b| b == 0));
    // A digest longer than the type's is refused too.
    let mut big = [0u8; 200];
    assert_eq!(k.sign(&mut big, 48, 21), None);
    assert_eq!(k.sign(&mut big, usize::MAX, 20), None);
}

#[test]
fn bad_macs_unknown_keys_and_wrong_lengths_are_refused() {
    let set = KeySet::new(vectors().into_iter().map(|(id, k, s, _)| key(id, k, &s)));
    let p = packet();
    for (id, kind, _, want) in vectors() {
        let d = kind.digest_len().min(20);
        let good = &want[..d];
        assert!(
            matches!(set.check(&p, id, good, 4), Check::Valid { .. }),
            "{kind}"
        );
        // One bit off.
        let mut bad = good.to_vec();
        bad[d - 1] ^= 1;
        assert!(
            matches!(set.check(&p, id, &bad, 4), Check::BadMac),
            "{kind}"
        );
        // The packet changed (a transmit timestamp rewritten on the way).
        let mut q = p;
        q[47] ^= 0x80;
        assert!(
            matches!(set.check(&q, id, good, 4), Check::BadMac),
            "{kind}"
        );
        // Truncated: fewer digest bytes than the type and version call for.
        assert!(
            matches!(set.check(&p, id, &good[..d - 4], 4), Check::BadMac),
            "{kind}"
        );
        assert!(matches!(set.check(&p, id, &[], 4), Check::BadMac), "{kind}");
        // Too long for NTPv4 (whole SHA-2 digests), or cut in NTPv3, which carries all.
        if kind.digest_len() > 20 {
            assert!(
                matches!(set.check(&p, id, &want, 4), Check::BadMac),
                "{kind}"
            );
            assert!(
                matches!(set.check(&p, id, good, 3), Check::BadMac),
                "{kind}"
            );
            assert!(
                matches!(set.check(&p, id, &want, 3), Check::Valid { .. }),
                "{kind}"
            );
        }
        // Another key's id.
        assert!(
            matches!(set.check(&p, 99, good, 4), Check::UnknownKey),
            "{kind}"
        );
    }
    // A crypto-NAK (key id 0, no digest) names no key.
    assert!(matches!(set.check(&p, 0, &[], 4), Check::UnknownKey));
}

#[test]
fn key_types_by_name_and_cipher_lengths() {
    assert_eq!(MacKind::from_name("sha256"), Some(MacKind::Sha256));
    assert_eq!(MacKind::from_name("AES128"), Some(MacKind::Aes128));
    assert_eq!(MacKind::from_name("SHA3-256"), None);
    assert!(Key::new(1, MacKind::Aes128, &[0; 15]).is_none());
    assert!(Key::new(1, MacKind::Aes256, &[0; 16]).is_none());
    assert!(Key::new(1, MacKind::Md5, &[0; 1]).is_some());
}

#[test]
fn debug_never_shows_the_secret() {
    let k = key(9, MacKind::Md5, b"SECRETSECRET");
    let text = format!("{k:?} {:?}", KeySet::new([k.clone()]));
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("12 bytes"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// The key file
// ---------------------------------------------------------------------------------------------

#[test]
fn the_key_file_reads_chronys_format() {
    let text = b"# chrony.keys\n\
        \n\
        1 MD5 meridian-md5-key\n\
        2 SHA1 HEX:73686131206b65793a207477656e747920622e\n\
        \x20\x20! another comment\n\
        3 sha256 HEX:000102030405060708090A0B0C0D0E0F101112131415161718191a1b1c1d1e1f\n\
        4\tSHA384\tASCII:sha384-key\n\
        ; and % are comments too\n\
        5 SHA512 a#rather#long#sha512#key#for#the#test\n\
        6 AES128 HEX:000102030405060708090a0b0c0d0e0f\n\
        7 AES256 HEX:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\
        8 plain-md5-key\n";
    let file = KeyFile::parse(text, "chrony.keys").unwrap();
    assert_eq!(file.keys.len(), 8);
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    let p = packet();
    for (id, kind, _, want) in vectors() {
        let k = file.keys.get(id).unwrap();
        assert_eq!(k.kind(), kind);
        let mut out = [0u8; MAX_DIGEST_LEN];
        let n = k.digest(&p, &mut out);
        // Key 5 spells its spaces as '#' (a key is one word): not the vector's key.
        if id == 5 {
            assert_ne!(&out[..n], &want[..]);
        } else {
            assert_eq!(&out[..n], &want[..], "{kind}");
        }
    }
    let plain = file.keys.get(8).unwrap();
    assert_eq!((plain.kind(), plain.secret_len()), (MacKind::Md5, 13));
}

#[test]
fn bad_lines_are_reported_with_file_and_line_and_without_the_key() {
    let text = b"1 MD5 goodkey-goodkey\n\
        x MD5 abcdefghijk\n\
        0 MD5 abcdefghijk\n\
        3 TIGER abcdefghijk\n\
        4 AES128 HEX:00112233\n\
        5 AES256 HEX:000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f00\n\
        6 SHA1 HEX:abc\n\
        7 SHA1 HEX:zz11223344556677889900\n\
        1 SHA1 again-again-again\n\
        8 MD5 two words\n\
        9\n\
        10 AES128 ASCII:\n";
    let e = KeyFile::parse(text, "/etc/meridian.keys").unwrap_err();
    let msg = e.to_string();
    let lines: Vec<&str> = msg.lines().collect();
    let want = [
        "/etc/meridian.keys:2: key id `x` is not a number from 1 to 4294967295",
        "/etc/meridian.keys:3: key id 0 is reserved",
        "/etc/meridian.keys:4: key 3: type `TIGER` is not supported",
        "/etc/meridian.keys:5: key 4: AES128 keys are 16 bytes (128 bits), this one is 4 bytes: too short",
        "/etc/meridian.keys:6: key 5: AES256 keys are 32 bytes (256 bits), this one is 33 bytes: too long",
        "/etc/meridian.keys:7: key 6: a HEX: key needs an even number",
        "/etc/meridian.keys:8: key 7: a HEX: key may hold only hexadecimal digits",
        "/etc/meridian.keys:9: key 1 is already defined at line 1",
        "/etc/meridian.keys:10: expected `ID [TYPE] KEY` (2 or 3 words), got 4 words",
        "/etc/meridian.keys:11: expected `ID [TYPE] KEY` (2 or 3 words), got 1 words",
        "/etc/meridian.keys:12: key 10: the key is empty",
    ];
    assert_eq!(lines.len(), want.len(), "{msg}");
    for (got, want) in lines.iter().zip(want) {
        assert!(
            got.starts_with(want),
            "{got:?} does not start with {want:?}"
        );
    }
    for secret in ["goodkey", "abcdefghijk", "00112233", "again"] {
        assert!(!msg.contains(secret), "{msg}");
    }
}

#[test]
fn short_hash_keys_are_a_warning() {
    let file = KeyFile::parse(b"1 MD5 short\n2 SHA1 HEX:00112233445566778899\n", "k").unwrap();
    assert_eq!(file.keys.len(), 2);
    assert_eq!(file.warnings.len(), 1, "{:?}", file.warnings);
    assert!(file.warnings[0].starts_with("k:1: key 1 is 5 bytes, shorter than 80 bits"));
}

#[cfg(unix)]
#[test]
fn an_open_key_file_is_a_warning_and_a_missing_one_an_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("meridian-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys");
    std::fs::write(&path, "1 SHA1 HEX:00112233445566778899aabb\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = KeyFile::load(&path).unwrap();
    assert_eq!(file.keys.len(), 1);
    assert_eq!(file.warnings.len(), 1, "{:?}", file.warnings);
    assert!(
        file.warnings[0].contains("mode 0644"),
        "{:?}",
        file.warnings
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(KeyFile::load(&path).unwrap().warnings.is_empty());
    let missing = dir.join("nope");
    let e = KeyFile::load(&missing).unwrap_err().to_string();
    assert!(e.starts_with("cannot read key file "), "{e}");
    assert!(e.contains("nope"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_later_key_with_the_same_id_replaces_the_earlier_in_a_set() {
    let set = KeySet::new([
        key(1, MacKind::Md5, b"first-key!"),
        key(1, MacKind::Sha1, b"second-key"),
    ]);
    assert_eq!(set.len(), 1);
    assert_eq!(set.get(1).unwrap().kind(), MacKind::Sha1);
    assert!(set.get(2).is_none());
}

#[test]
fn the_in_place_state_gives_the_same_macs_every_time() {
    for (id, kind, secret, want) in vectors() {
        let mut k = key(id, kind, &secret);
        let mut out = [0u8; MAX_DIGEST_LEN];
        // Twice: the CMAC state is reset to the keyed start after each MAC.
        for _ in 0..2 {
            let n = k.digest_mut(&packet(), &mut out);
            assert_eq!(&out[..n], &want[..], "{kind}");
            assert!(k.verify_mut(&packet(), &want[..kind.digest_len().min(20)], 4));
        }
        let mut a = [0u8; 48 + 4 + MAX_DIGEST_LEN];
        let mut b = a;
        a[..48].copy_from_slice(&packet());
        b[..48].copy_from_slice(&packet());
        let d = k.digest_len_for(3);
        assert_eq!(k.sign_mut(&mut a, 48, d), k.sign(&mut b, 48, d), "{kind}");
        assert_eq!(a, b, "{kind}");
        let mut set = KeySet::new([k]);
        assert_eq!(
            set.check_mut(&packet(), id, &want, 3),
            Check::Valid {
                digest_len: want.len()
            }
        );
        assert_eq!(
            set.check_mut(&packet(), id + 100, &want, 3),
            Check::UnknownKey
        );
    }
}
