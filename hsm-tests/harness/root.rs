//! Root metadata for tests: a version-1 root listing given keys, and `tufkey verify
//! --json` on it.

use serde_json::{json, Value};

use super::{next_year, run, tufkey, SoftHsm};

/// A key as a root lists it: its key id and its TUF key object. Implemented for what
/// [`super::generate`] returns (`(uri, keyid, key)`) and for `(keyid, &key)` pairs.
pub trait RootKey {
    fn keyid(&self) -> &str;
    fn key(&self) -> &Value;
}

impl RootKey for (String, String, Value) {
    fn keyid(&self) -> &str {
        &self.1
    }
    fn key(&self) -> &Value {
        &self.2
    }
}

impl RootKey for (&str, &Value) {
    fn keyid(&self) -> &str {
        self.0
    }
    fn key(&self) -> &Value {
        self.1
    }
}

/// The `signed` part of a version-1 root: `keys` sign root with `threshold`, the first
/// one also signs the other top-level roles. It carries an unknown `x-custom` field
/// (with a PEM block, newlines included) that signing must keep byte for byte.
pub fn root_body<K: RootKey>(keys: &[K], threshold: u64) -> Value {
    let ids: Vec<&str> = keys.iter().map(|k| k.keyid()).collect();
    json!({
        "_type": "root", "spec_version": "1.0.31", "version": 1, "expires": next_year(),
        "consistent_snapshot": true,
        "keys": keys.iter().map(|k| (k.keyid().to_string(), k.key().clone())).collect::<serde_json::Map<_, _>>(),
        "roles": {
            "root": {"keyids": ids, "threshold": threshold},
            "targets": {"keyids": [ids[0]], "threshold": 1},
            "snapshot": {"keyids": [ids[0]], "threshold": 1},
            "timestamp": {"keyids": [ids[0]], "threshold": 1},
        },
        "x-custom": {"note": "kept and signed", "pem": "-----BEGIN X-----\nAB\n-----END X-----\n"}
    })
}

/// `tufkey verify ARGS --json`: (exit code, report).
pub fn verify_json(hsm: Option<&SoftHsm>, args: &[&str]) -> (i32, Value) {
    let mut c = tufkey(hsm);
    c.arg("verify").args(args).arg("--json");
    let (code, out, err) = run(c);
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|_| panic!("verify --json printed no JSON: {out}{err}"));
    (code, v)
}
