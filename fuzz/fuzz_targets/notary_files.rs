//! Files a user brings from an old Notary server and client to `tufkey notary keys`,
//! `import-key` and `verify` (src/notary/). Four kinds of input:
//! - byte 1, a format byte and raw bytes: the bytes as the body of a key block of that
//!   format (legacy encrypted SEC1, plain SEC1, PKCS#1, Notary Ed25519, encrypted and plain
//!   PKCS#8) decrypted with the fixed passphrase `randompass` (Notary's fixtures'), or
//!   (format 6) as a DER certificate checked by Notary's root certificate rules;
//! - text with NUL bytes: a trust folder, `root.json` NUL `targets.json` NUL
//!   `snapshot.json` NUL `timestamp.json`, then any `NAME\nbytes` parts (`targets/x` is
//!   a delegation's metadata, `pinned` a pinned root certificate), checked by
//!   `notary::verify::verify` for GUN docker.com/notary0.3/samplerepo at 2017-01-01;
//! - a JSON object: a root.json's `signed.keys`, each read as Notary's key (ids, the TUF
//!   key id, the certificate and its problems);
//! - anything else: a key file's PEM text (headers and all) and a certificate's PEM.
//!
//! Checked beyond "no panic": a key that decrypts has a Notary id and a TUF id that
//! agree with each other's key; a report that verifies has every role ok.
#![no_main]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tufkey::keys::Secret;
use tufkey::notary::cert::NotaryCert;
use tufkey::notary::pemfile::{self, PemBlock};
use tufkey::notary::privkey;
use tufkey::notary::pubkey::NotaryKey;
use zeroize::Zeroizing;

const PASSPHRASE: &str = "randompass";
const GUN: &str = "docker.com/notary0.3/samplerepo";

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_483_228_800, 0).unwrap_or_default()
}

/// This process's trust folder. Folders left by earlier runs whose process is gone are
/// removed first (a fuzz run ends by exiting, which runs no destructor).
fn folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        let prefix = "tufkey-fuzz-notary-";
        for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.strip_prefix(prefix) {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tmp.join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        dir
    })
}

fn check_key(block: &PemBlock) {
    let _ = (
        privkey::format_name(block),
        privkey::is_known_kind(&block.kind),
    );
    let pass = Secret::new(PASSPHRASE.to_string());
    for p in [None, Some(&pass)] {
        if let Ok(key) = privkey::decrypt(block, p) {
            let notary = NotaryKey::of_private(&key);
            let tuf = notary
                .tuf_id()
                .unwrap_or_else(|e| panic!("a key that decrypted has no TUF id: {e}"));
            assert_eq!(tuf, key.public().to_tuf_key().key_id(), "TUF ids differ");
            assert_eq!(notary.canonical_id(), Ok(notary.notary_id()));
        }
    }
}

fn check_cert(cert: Result<NotaryCert, String>) {
    if let Ok(c) = cert {
        let _ = (c.public_key(), c.problems(GUN, at()));
    }
}

/// Raw DER as the body of a block of the chosen format.
fn raw_block(format: u8, body: &[u8]) {
    let (kind, encrypted) = match format % 7 {
        0 => ("EC PRIVATE KEY", true),
        1 => ("EC PRIVATE KEY", false),
        2 => ("RSA PRIVATE KEY", false),
        3 => ("ED25519 PRIVATE KEY", false),
        4 => ("ENCRYPTED PRIVATE KEY", false),
        5 => ("PRIVATE KEY", false),
        _ => return check_cert(NotaryCert::from_der(body)),
    };
    let mut headers = BTreeMap::new();
    let mut body = body;
    if encrypted {
        // The first 16 bytes are the IV of the DEK-Info header.
        let (iv, rest) = body.split_at(body.len().min(16));
        headers.insert("Proc-Type".to_string(), "4,ENCRYPTED".to_string());
        headers.insert(
            "DEK-Info".to_string(),
            format!("AES-256-CBC,{}", hex::encode(iv)),
        );
        body = rest;
    }
    check_key(&PemBlock {
        kind: kind.into(),
        headers,
        body: Zeroizing::new(body.to_vec()),
    });
}

/// A root.json's keys as `notary verify` reads them.
fn root_keys(v: &Value) {
    let keys = v.pointer("/signed/keys").or_else(|| v.get("keys"));
    for k in keys
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
    {
        if let Ok(key) = NotaryKey::from_value(k) {
            let _ = (
                key.notary_id(),
                key.canonical_id(),
                key.tuf_id(),
                key.is_x509(),
            );
            check_cert(key.certificate());
        }
    }
}

/// A trust folder written from NUL-separated parts, then verified.
fn trust_folder(parts: &[&[u8]]) {
    let dir = folder();
    let _ = std::fs::remove_dir_all(dir.join("targets"));
    let _ = std::fs::remove_dir_all(dir.join("trusted_certificates"));
    for (i, name) in ["root", "targets", "snapshot", "timestamp"]
        .iter()
        .enumerate()
    {
        let path = dir.join(format!("{name}.json"));
        match parts.get(i) {
            Some(bytes) => std::fs::write(&path, bytes),
            None => std::fs::remove_file(&path).or(Ok(())),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for part in parts.iter().skip(4) {
        let Some(nl) = part.iter().position(|b| *b == b'\n') else {
            continue;
        };
        let (name, bytes) = (&part[..nl], &part[nl + 1..]);
        let path = match name {
            b"pinned" => dir
                .join("trusted_certificates")
                .join(GUN)
                .join("pinned.crt"),
            _ => {
                let Some(role) = name.strip_prefix(b"targets/") else {
                    continue;
                };
                if role.is_empty() || !role.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                {
                    continue;
                }
                dir.join("targets")
                    .join(format!("{}.json", String::from_utf8_lossy(role)))
            }
        };
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&path, bytes);
    }
    if let Ok(report) = tufkey::notary::verify::verify(dir, Some(GUN), at()) {
        if report.verified() {
            assert!(
                report.roles.iter().all(|r| r.ok),
                "a verified report with a failed role: {report:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some((&1, rest)) = data.split_first() {
        if let Some((&format, body)) = rest.split_first() {
            raw_block(format, body);
        }
        return;
    }
    if data.contains(&0) {
        let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
        trust_folder(&parts);
        return;
    }
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        root_keys(&v);
        return;
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(block) = pemfile::parse(text) {
            check_key(&block);
        }
        check_cert(NotaryCert::from_pem(data));
    }
});
