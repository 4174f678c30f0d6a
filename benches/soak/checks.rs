//! What must hold after the soak, each printed as PASS or FAIL: the clients' records
//! against the audit chain the daemon wrote to PostgreSQL, the chain itself, memory and
//! recovery.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::clients::{Outcome, Record};
use super::faults::Fault;

pub struct Check {
    pub name: &'static str,
    pub pass: bool,
    pub detail: String,
}

fn check(name: &'static str, pass: bool, detail: String) -> Check {
    Check { name, pass, detail }
}

/// (repository, role, version): what may be signed once.
type Slot = (String, String, u64);

/// The audit entries of signatures (`sign` and `sign-batch`, result `signed`).
fn audited_signatures(entries: &[Value]) -> HashMap<Slot, Vec<String>> {
    let mut m: HashMap<Slot, Vec<String>> = HashMap::new();
    for e in entries {
        let action = e["action"].as_str().unwrap_or_default();
        if !matches!(action, "sign" | "sign-batch") || e["result"] != "signed" {
            continue;
        }
        let slot = (
            e["repository"].as_str().unwrap_or_default().to_string(),
            e["role"].as_str().unwrap_or_default().to_string(),
            e["version"].as_u64().unwrap_or(0),
        );
        let sha = e["payload_sha256"].as_str().unwrap_or_default().to_string();
        m.entry(slot).or_default().push(sha);
    }
    m
}

fn slot(r: &Record) -> Slot {
    (r.doc.repo.clone(), r.doc.role.to_string(), r.doc.version)
}

fn first_few<T: std::fmt::Debug>(v: &[T]) -> String {
    let shown: Vec<String> = v.iter().take(3).map(|x| format!("{x:?}")).collect();
    format!(
        "{}{}",
        shown.join("; "),
        if v.len() > 3 { "; …" } else { "" }
    )
}

/// The checks on signatures and the audit chain's content.
pub fn signatures(records: &[Record], entries: &[Value]) -> Vec<Check> {
    let audited = audited_signatures(entries);
    let signed: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Signed { .. }))
        .collect();
    let mut out = Vec::new();

    let bad: Vec<String> = signed
        .iter()
        .filter(|r| {
            !matches!(
                r.outcome,
                Outcome::Signed {
                    verified: true,
                    hash_matches: true,
                    ..
                }
            )
        })
        .map(|r| format!("{:?}", slot(r)))
        .collect();
    out.push(check(
        "every signature a client received verifies (key id, signature over the client's own canonical payload, payload_sha256)",
        !signed.is_empty() && bad.is_empty(),
        format!("{} signatures, {} bad {}", signed.len(), bad.len(), first_few(&bad)),
    ));

    let missing: Vec<Slot> = signed
        .iter()
        .filter(|r| {
            !audited
                .get(&slot(r))
                .is_some_and(|v| v.contains(&r.doc.sha))
        })
        .map(|r| slot(r))
        .collect();
    out.push(check(
        "every signature a client received has its audit entry (repository, role, version, payload_sha256)",
        !signed.is_empty() && missing.is_empty(),
        format!(
            "{} received, {} audited signatures, {} without an entry {}",
            signed.len(),
            audited.values().map(Vec::len).sum::<usize>(),
            missing.len(),
            first_few(&missing)
        ),
    ));

    let twice_audit: Vec<(&Slot, &Vec<String>)> =
        audited.iter().filter(|(_, v)| v.len() > 1).collect();
    let mut seen = HashSet::new();
    let twice_client: Vec<Slot> = signed
        .iter()
        .map(|r| slot(r))
        .filter(|s| !seen.insert(s.clone()))
        .collect();
    out.push(check(
        "no (repository, role, version) signed twice (audit chain and client answers)",
        twice_audit.is_empty() && twice_client.is_empty(),
        format!(
            "{} versions signed; signed twice: {} in the audit chain {}, {} in answers {}",
            audited.len(),
            twice_audit.len(),
            first_few(&twice_audit),
            twice_client.len(),
            first_few(&twice_client)
        ),
    ));

    let probes: Vec<&Record> = records.iter().filter(|r| r.probe).collect();
    let probe_signed = probes
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Signed { .. }))
        .count();
    let probe_refused = probes
        .iter()
        .filter(|r| r.code() == "403 version-not-increasing")
        .count();
    out.push(check(
        "replay probes (a signed version again, another payload) are never signed",
        !probes.is_empty() && probe_signed == 0,
        format!(
            "{} probes: {probe_refused} refused 403 version-not-increasing, {probe_signed} signed, {} other (fault)",
            probes.len(),
            probes.len() - probe_refused - probe_signed
        ),
    ));

    // An audited signature nobody received is fine only where a client got no answer for
    // exactly that document (the entry was committed, then the answer was lost), or 500
    // `audit-failed` (the commit's answer was lost: the daemon cannot know it landed, so
    // it withholds the signature and keeps the version claimed).
    let received: HashSet<(Slot, &str)> = signed
        .iter()
        .map(|r| (slot(r), r.doc.sha.as_str()))
        .collect();
    let unanswered: HashSet<(Slot, &str)> = records
        .iter()
        .filter(|r| match &r.outcome {
            Outcome::NoAnswer(_) => true,
            Outcome::Answered { status: 500, code } => code == "audit-failed",
            _ => false,
        })
        .map(|r| (slot(r), r.doc.sha.as_str()))
        .collect();
    let mut lost = 0;
    let mut unexplained = Vec::new();
    for (s, hashes) in &audited {
        for h in hashes {
            let k = (s.clone(), h.as_str());
            if received.contains(&k) {
                continue;
            }
            if unanswered.contains(&k) {
                lost += 1;
            } else {
                unexplained.push(s.clone());
            }
        }
    }
    out.push(check(
        "every audited signature reached its client, or that client got no answer (or 500 audit-failed) for exactly that document",
        unexplained.is_empty(),
        format!(
            "{lost} audited signatures whose answer was lost or withheld, {} unexplained {}",
            unexplained.len(),
            first_few(&unexplained)
        ),
    ));

    out.extend(refusals_audited(records, entries));
    out
}

/// The refusal code of an audit entry: `reason` is `<code>: <message>`.
fn entry_code(e: &Value) -> String {
    e["reason"]
        .as_str()
        .and_then(|r| r.split(':').next())
        .unwrap_or("?")
        .to_string()
}

/// The answers a daemon gives when its PostgreSQL store (which holds the audit chain too)
/// does not answer: their refusal entries cannot be written to that store.
const STORE_DOWN: [&str; 2] = ["503 state-unavailable", "500 audit-failed"];

/// Every refusal a single-document client was answered must be in the chain: counted per
/// (status, code), the chain may hold more (refusals whose answer was lost), never fewer.
/// Two checks: the refusals while the store was up, and those the store outage caused.
fn refusals_audited(records: &[Record], entries: &[Value]) -> Vec<Check> {
    let mut seen: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.batch) {
        if let Outcome::Answered { status, code } = &r.outcome {
            seen.entry(format!("{status} {code}")).or_default().0 += 1;
        }
    }
    for e in entries {
        if e["action"] == "sign" && matches!(e["result"].as_str(), Some("refused" | "error")) {
            let k = format!("{} {}", e["status"].as_u64().unwrap_or(0), entry_code(e));
            seen.entry(k).or_default().1 += 1;
        }
    }
    let judge = |outage: bool| {
        let part: Vec<(&String, &(usize, usize))> = seen
            .iter()
            .filter(|(k, _)| STORE_DOWN.contains(&k.as_str()) == outage)
            .collect();
        let short: Vec<String> = part
            .iter()
            .filter(|(_, (c, a))| a < c)
            .map(|(k, (c, a))| format!("{k}: {c} answered, {a} audited"))
            .collect();
        let all: Vec<String> = part
            .iter()
            .map(|(k, (c, a))| format!("{k}: {c}/{a}"))
            .collect();
        (
            short.is_empty(),
            if short.is_empty() {
                all.join(", ")
            } else {
                format!("missing: {}; all: {}", short.join(", "), all.join(", "))
            },
        )
    };
    let (up_ok, up) = judge(false);
    let (down_ok, down) = judge(true);
    vec![
        check(
            "every refusal of /v1/sign a client was answered is in the audit chain (per status and code: answered/audited)",
            up_ok,
            up,
        ),
        check(
            "refusals answered while PostgreSQL (the audit store) was down are in the audit chain too",
            down_ok,
            down,
        ),
    ]
}

/// The window for "first minute" and "last minute": a minute, or a quarter of a short run.
pub fn rss_window(total: f64) -> f64 {
    (total / 4.0).min(60.0)
}

/// Flat memory: the last window's highest RSS at most `bound` times the first window's.
pub fn rss_flat(samples: &[(f64, u64)], total: f64, bound: f64) -> Check {
    let w = rss_window(total);
    let max_in = |lo: f64, hi: f64| {
        samples
            .iter()
            .filter(|(t, _)| *t >= lo && *t < hi)
            .map(|(_, k)| *k)
            .max()
    };
    let (first, last) = (max_in(0.0, w), max_in(total - w, total + 1.0));
    let (pass, detail) = match (first, last) {
        (Some(f), Some(l)) => (
            (l as f64) <= f as f64 * bound,
            format!(
                "highest RSS in the first {w:.0} s {:.1} MiB, in the last {w:.0} s {:.1} MiB ({:+.1} %; bound ×{bound})",
                f as f64 / 1024.0,
                l as f64 / 1024.0,
                (l as f64 / f as f64 - 1.0) * 100.0
            ),
        ),
        _ => (false, format!("{} RSS samples: too few", samples.len())),
    };
    check(
        "memory flat: RSS at the end within the bound of the start",
        pass,
        detail,
    )
}

/// Seconds from each fault's end to the first signature answered after it (None: none).
pub fn recoveries(faults: &[Fault], records: &[Record]) -> Vec<Option<f64>> {
    faults
        .iter()
        .map(|f| {
            records
                .iter()
                .filter(|r| r.t1 >= f.restored && matches!(r.outcome, Outcome::Signed { .. }))
                .map(|r| r.t1 - f.restored)
                .min_by(|a, b| a.total_cmp(b))
        })
        .collect()
}

/// The daemon signed again after every fault, within `bound` seconds.
pub fn recovered(faults: &[Fault], rec: &[Option<f64>], bound: f64) -> Check {
    let slow: Vec<String> = faults
        .iter()
        .zip(rec)
        .filter(|(_, r)| !r.is_some_and(|s| s <= bound))
        .map(|(f, r)| format!("{} at {:.0} s: {r:?}", f.kind.name(), f.start))
        .collect();
    let mut got: Vec<f64> = rec.iter().flatten().copied().collect();
    got.sort_by(|a, b| a.total_cmp(b));
    let med = got.get(got.len() / 2).copied().unwrap_or(f64::NAN);
    check(
        "the daemon signed again after every fault (within the bound)",
        !faults.is_empty() && slow.is_empty(),
        format!(
            "{} faults; recovery median {med:.2} s, max {:.2} s (bound {bound} s){}",
            faults.len(),
            got.last().copied().unwrap_or(f64::NAN),
            if slow.is_empty() {
                String::new()
            } else {
                format!("; not recovered: {}", slow.join(", "))
            }
        ),
    )
}

pub fn command(name: &'static str, ok: bool, detail: String) -> Check {
    check(name, ok, detail)
}
