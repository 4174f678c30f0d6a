//! timestamp.json and the snapshot it states, checked against the final root.

use serde_json::{Map, Value};

use super::load::Loaded;
use super::roots::FinalRoot;
use super::walk::Walk;

/// The snapshot a client would trust, with the `meta` it states for targets roles.
pub(super) struct Snapshot {
    pub file: String,
    pub meta: Map<String, Value>,
}

/// Checks `timestamp.json`; returns its `meta["snapshot.json"]` when it has one.
pub(super) fn timestamp(walk: &mut Walk, root: &FinalRoot) -> Option<Value> {
    let ts = walk.load("timestamp.json", "timestamp")?;
    let r = walk.check_signatures(&ts, &root.keys, &root.label, "timestamp");
    walk.role_line("timestamp", &ts, &root.label, r.as_ref());
    walk.check_expiry(&ts);
    let entry = ts
        .md
        .signed()
        .get("meta")
        .and_then(Value::as_object)
        .and_then(|m| m.get("snapshot.json"));
    match entry {
        Some(e)
            if e.get("version")
                .and_then(Value::as_u64)
                .is_some_and(|v| v >= 1) =>
        {
            Some(e.clone())
        }
        _ => {
            walk.problem(
                &ts.file,
                "`meta` must state `snapshot.json` with a `version` of at least 1",
            );
            None
        }
    }
}

/// Checks the snapshot the timestamp states (by version, length and hashes).
pub(super) fn snapshot(
    walk: &mut Walk,
    root: &FinalRoot,
    stated: Option<&Value>,
) -> Option<Snapshot> {
    let version = stated
        .and_then(|s| s.get("version"))
        .and_then(Value::as_u64);
    let name = match (root.consistent_snapshot, version) {
        (true, Some(v)) => format!("{v}.snapshot.json"),
        (true, None) => return None,
        (false, _) => "snapshot.json".to_owned(),
    };
    let snap = walk.load(&name, "snapshot")?;
    if let Some(info) = stated {
        walk.check_stated(&snap, info, "metadata/timestamp.json");
    }
    let r = walk.check_signatures(&snap, &root.keys, &root.label, "snapshot");
    walk.role_line("snapshot", &snap, &root.label, r.as_ref());
    check_version(walk, &snap, version, "metadata/timestamp.json");
    walk.check_expiry(&snap);
    let Some(meta) = snap.md.signed().get("meta").and_then(Value::as_object) else {
        walk.problem(&snap.file, "`meta` must be an object listing targets roles");
        return None;
    };
    Some(Snapshot {
        file: snap.file.clone(),
        meta: meta.clone(),
    })
}

/// The version a file has against the one its parent states for it.
pub(super) fn check_version(walk: &mut Walk, loaded: &Loaded, stated: Option<u64>, by: &str) {
    if let Some(want) = stated {
        if loaded.version != want {
            walk.problem(
                &loaded.file,
                format!(
                    "is version {}, but {by} states version {want}",
                    loaded.version
                ),
            );
        }
    }
}
