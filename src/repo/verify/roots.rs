//! The root chain, as a client updates it: from the trusted root, `N+1.root.json` while
//! it exists, each signed by a threshold of the previous root's keys and of its own,
//! each exactly one version up; the last one must not be expired.

use super::load::Loaded;
use super::options::VerifyError;
use super::walk::Walk;
use crate::tuf::Delegator;

/// The newest root reached: what timestamp, snapshot and targets are checked against.
pub(super) struct FinalRoot {
    pub keys: Delegator,
    /// `root v12`, for messages.
    pub label: String,
    pub consistent_snapshot: bool,
}

pub(super) fn chain(walk: &mut Walk) -> Result<FinalRoot, VerifyError> {
    let (path, file) = match &walk.options.trusted_root {
        Some(p) => {
            let inside = p
                .strip_prefix(&walk.dir)
                .ok()
                .map(|r| r.display().to_string());
            (p.clone(), inside.unwrap_or_else(|| p.display().to_string()))
        }
        None => walk.metadata_file("1.root.json"),
    };
    let trusted = super::load::read_trusted(&path, &file)
        .map_err(|reason| VerifyError::TrustedRoot(path.clone(), reason))?;
    let mut keys = Delegator::from_metadata(&trusted.md)
        .map_err(|e| VerifyError::TrustedRoot(path.clone(), e.to_string()))?;
    walk.report.trusted_root = file.clone();
    walk.report.trusted_root_version = Some(trusted.version);
    // A client trusts its first root, but still checks that it is signed by itself.
    let r = walk.check_signatures(&trusted, &keys, "itself", "root");
    walk.role_line("root", &trusted, "itself (trusted)", r.as_ref());

    let mut current = trusted;
    loop {
        let next = current.version + 1;
        let name = format!("{next}.root.json");
        if !walk.metadata_file(&name).0.exists() {
            break;
        }
        let Some(new) = walk.load(&name, "root") else {
            break;
        };
        if new.version != next {
            walk.problem(
                &new.file,
                format!(
                    "says version {}, but a client fetching root version {next} expects exactly {next}: root versions must go up by one",
                    new.version
                ),
            );
        }
        let old_label = format!("root v{}", current.version);
        walk.check_signatures(&new, &keys, &old_label, "root");
        let new_keys = match Delegator::from_metadata(&new.md) {
            Ok(k) => k,
            Err(e) => {
                walk.problem(&new.file, format!("cannot be used as a root: {e}"));
                break;
            }
        };
        let r = walk.check_signatures(&new, &new_keys, "itself", "root");
        walk.role_line("root", &new, &format!("{old_label} and itself"), r.as_ref());
        keys = new_keys;
        // The chain goes on from the file's place in it, so one bad file is one problem.
        current = Loaded {
            version: next,
            ..new
        };
    }
    orphans(walk, current.version);
    walk.check_expiry(&current);
    let consistent_snapshot = current
        .md
        .signed()
        .get("consistent_snapshot")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Ok(FinalRoot {
        keys,
        label: format!("root v{}", current.version),
        consistent_snapshot,
    })
}

/// Roots published above a missing version: a client never sees them.
fn orphans(walk: &mut Walk, last: u64) {
    let Ok(entries) = std::fs::read_dir(walk.dir.join("metadata")) else {
        return;
    };
    let mut later: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".root.json")?.parse::<u64>().ok()
        })
        .filter(|v| *v > last + 1)
        .collect();
    later.sort_unstable();
    for v in later {
        walk.problem(
            &format!("metadata/{v}.root.json"),
            format!(
                "is published, but {}.root.json is missing: clients stop at root version {last} and never see it; root versions must be consecutive",
                last + 1
            ),
        );
    }
}
