//! The target files under `targets/`: each one present must have the length and
//! hashes its role states. Absent ones are counted, not failed: a target may be
//! recorded for an artifact stored elsewhere, or this copy may not mirror it.

use super::delegations::Listed;
use super::files::{safe_target_path, target_file_names, Stated};
use super::walk::Walk;

pub(super) fn check_files(walk: &mut Walk, listed: &[Listed]) {
    let consistent = walk.report.consistent_snapshot;
    let mut jobs = Vec::new();
    for t in listed {
        if let Err(e) = safe_target_path(&t.path) {
            walk.problem(&t.role_file, format!("target `{}`: {e}", t.path));
            continue;
        }
        let stated = match Stated::from_info(&t.info, true) {
            Ok(s) => s,
            Err(e) => {
                walk.problem(&t.role_file, format!("target `{}`: {e}", t.path));
                continue;
            }
        };
        let (present, missing): (Vec<String>, Vec<String>) =
            target_file_names(&t.path, &stated, consistent)
                .into_iter()
                .partition(|n| walk.dir.join("targets").join(n).is_file());
        if present.is_empty() {
            walk.report.targets.absent.push(t.path.clone());
        } else if !missing.is_empty() {
            // Which hash a client builds the name from is its choice (ngclient: the
            // first one listed), so a missing copy can break some clients.
            for m in missing {
                walk.note(
                    &format!("targets/{m}"),
                    format!(
                        "target `{}` is published under another of its hashes but not this one; clients that name the file by this hash will not find it",
                        t.path
                    ),
                );
            }
        }
        for name in present {
            jobs.push((t, stated.clone(), name));
        }
    }
    let total: u64 = jobs
        .iter()
        .filter_map(|(_, _, n)| std::fs::metadata(walk.dir.join("targets").join(n)).ok())
        .map(|m| m.len())
        .sum();
    let progress = walk.options.progress.clone();
    let done = std::sync::atomic::AtomicU64::new(0);
    let on_bytes = |n: u64| {
        let so_far = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        if let Some(p) = &progress {
            p(so_far, total);
        }
    };
    let mut verified = std::collections::BTreeSet::new();
    for (t, stated, name) in jobs {
        let file = format!("targets/{name}");
        let path = walk.dir.join("targets").join(&name);
        match stated.check_file(&path, &t.role_file, &on_bytes) {
            Ok(problems) if problems.is_empty() => {
                verified.insert(t.path.clone());
            }
            Ok(problems) => {
                for p in problems {
                    walk.problem(&file, format!("target `{}`: {p}", t.path));
                }
            }
            Err(e) => walk.problem(&file, format!("cannot be read: {e}")),
        }
    }
    walk.report.targets.verified = verified.len();
}
