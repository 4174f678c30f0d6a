//! How many hashed bins a repository should have (PEP 458's trade-off): a client
//! downloads `snapshot.json` on every update, which grows by one line per bin, and the
//! bin of the target it wants, which shrinks as bins multiply; the signer re-signs every
//! bin when they expire or their key changes. The advice minimises what a client
//! downloads per update for the repository's actual number and size of target entries,
//! and shows the neighbouring counts with the roles each would re-sign.

use serde_json::Value;

use super::error::RepoError;
use super::targets::working_docs;
use super::verify::MAX_BINS;
use super::Repository;

/// A target entry's size when the repository has none to measure (a path, length and
/// SHA-256 in tufkey's pretty JSON).
const DEFAULT_ENTRY_BYTES: u64 = 150;
/// A metadata file's fixed part: header fields and one signature.
const FILE_OVERHEAD_BYTES: u64 = 450;

/// One bin count and what it costs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Choice {
    pub bins: u64,
    /// snapshot.json, fetched on every update.
    pub snapshot_bytes: u64,
    /// One bin, fetched when a target in it is wanted.
    pub bin_bytes: u64,
    /// Both: what one update that wants one target downloads besides timestamp.json.
    pub per_update_bytes: u64,
    /// Roles re-signed when every bin is (expiry bump, key rotation).
    pub resign_all: u64,
}

/// The advice.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Advice {
    pub targets: u64,
    /// Average bytes of one target entry (measured, or a default without targets).
    pub entry_bytes: u64,
    /// Bytes one bin adds to snapshot.json.
    pub snapshot_entry_bytes: u64,
    pub recommended: u64,
    /// The bins the repository has now, if any.
    pub current: Option<u64>,
    /// Without bins: top-level targets.json alone, fetched on every update it changes.
    pub unbinned_targets_bytes: u64,
    /// Whether bins save a client anything at this size.
    pub bins_worth_it: bool,
    /// The recommended count and its neighbours (a quarter to four times it).
    pub choices: Vec<Choice>,
    pub why: String,
}

/// What `count` bins cost at `targets` entries of `entry` bytes.
pub fn cost(count: u64, targets: u64, entry: u64, snapshot_entry: u64) -> Choice {
    let per_bin = targets.div_ceil(count);
    let snapshot_bytes = FILE_OVERHEAD_BYTES + count * snapshot_entry;
    let bin_bytes = FILE_OVERHEAD_BYTES + per_bin * entry;
    Choice {
        bins: count,
        snapshot_bytes,
        bin_bytes,
        per_update_bytes: snapshot_bytes + bin_bytes,
        resign_all: count,
    }
}

/// The power of two from 2 to 65,536 that minimises what a client downloads per update.
pub fn best_count(targets: u64, entry: u64, snapshot_entry: u64) -> u64 {
    (1..=MAX_BINS.trailing_zeros())
        .map(|b| 1u64 << b)
        .min_by_key(|n| {
            (
                cost(*n, targets, entry, snapshot_entry).per_update_bytes,
                *n,
            )
        })
        .unwrap_or(2)
}

/// Advice for `repo`'s targets (published and staged), with bins named `prefix`.
pub fn advise(repo: &Repository, prefix: &str) -> Result<Advice, RepoError> {
    let docs = working_docs(repo)?;
    let mut count = 0u64;
    let mut bytes = 0u64;
    for md in docs.values() {
        for (path, entry) in md
            .signed()
            .get("targets")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            count += 1;
            // The pretty form tufkey writes: the path, the entry, indentation.
            bytes += (path.len() + entry.to_string().len() + 24) as u64;
        }
    }
    let entry = bytes.checked_div(count).unwrap_or(DEFAULT_ENTRY_BYTES);
    let current = super::bins::current(&docs).map(|b| b.count());
    // `  "bins-0a3.json": {\n   "version": 12\n  },` and hashes when snapshot states them.
    let name_len = prefix.len() + 1 + 4 + ".json".len();
    let hashes = if repo.config.snapshot_meta_hashes {
        110
    } else {
        0
    };
    let snapshot_entry = (name_len + 36 + hashes) as u64;
    let recommended = best_count(count, entry, snapshot_entry);
    let choices = (0..=4)
        .map(|shift| (recommended << 2) >> shift)
        .filter(|n| (2..=MAX_BINS).contains(n))
        .rev()
        .map(|n| cost(n, count, entry, snapshot_entry))
        .collect::<Vec<_>>();
    let best = cost(recommended, count, entry, snapshot_entry);
    let unbinned = FILE_OVERHEAD_BYTES + count * entry;
    let worth = best.per_update_bytes < unbinned;
    let why = format!(
        "{count} targets of about {entry} bytes each. A client fetches snapshot.json on every update \
(about {snapshot_entry} bytes per bin) and the one bin holding the target it wants (about {entry} bytes \
per target in it): {recommended} bins make that sum smallest, {} per update against {} for targets.json \
without bins. More bins mean more roles to re-sign when all of them are (an expiry bump or a new key: \
{recommended} signatures) but no more per commit, which re-signs only the bins whose targets changed.{}",
        human_bytes(best.per_update_bytes),
        human_bytes(unbinned),
        if worth {
            ""
        } else {
            " At this size bins save clients nothing; keep targets in targets.json until the repository grows."
        }
    );
    Ok(Advice {
        targets: count,
        entry_bytes: entry,
        snapshot_entry_bytes: snapshot_entry,
        recommended,
        current,
        unbinned_targets_bytes: unbinned,
        bins_worth_it: worth,
        choices,
        why,
    })
}

/// `12.3 KB` style sizes for people.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 10 * 1024 * 1024 => format!("{:.1} MB", n as f64 / (1024.0 * 1024.0)),
        n if n >= 10 * 1024 => format!("{:.1} KB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_targets_need_more_bins_and_the_count_is_a_power_of_two() {
        let small = best_count(100, 150, 50);
        let drupal = best_count(165_000, 150, 50);
        let pypi = best_count(5_000_000, 150, 50);
        assert!(small < drupal && drupal < pypi, "{small} {drupal} {pypi}");
        for n in [small, drupal, pypi] {
            assert!(n.is_power_of_two() && (2..=MAX_BINS).contains(&n));
        }
        // sqrt(165,000 × 150 / 50) ≈ 704: between 512 and 1,024.
        assert!(drupal == 512 || drupal == 1024, "{drupal}");
        assert_eq!(best_count(u64::MAX / 1_000_000, 150, 50), MAX_BINS);
    }

    #[test]
    fn the_cost_splits_into_snapshot_and_one_bin() {
        let c = cost(1024, 10_240, 100, 50);
        assert_eq!(c.snapshot_bytes, FILE_OVERHEAD_BYTES + 1024 * 50);
        assert_eq!(c.bin_bytes, FILE_OVERHEAD_BYTES + 10 * 100);
        assert_eq!(c.resign_all, 1024);
    }
}
