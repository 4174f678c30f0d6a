//! The soak's figures: requests and signatures over time, answers by code (overall and
//! around each fault), recovery times and RSS per interval.

use std::collections::BTreeMap;

use super::clients::{Outcome, Record};
use super::faults::Fault;

/// Requests (a batch is one request), documents, signatures.
pub fn totals(records: &[Record], total: f64) {
    let mut requests = std::collections::HashSet::new();
    for r in records {
        requests.insert((r.client, r.t0.to_bits()));
    }
    let signed = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Signed { .. }))
        .count();
    let batch_signed = records
        .iter()
        .filter(|r| r.batch && matches!(r.outcome, Outcome::Signed { .. }))
        .count();
    println!(
        "\ntotals: {} requests, {} documents, {signed} signatures ({batch_signed} through /v1/sign-batch), {:.0} signatures/s over {total:.0} s",
        requests.len(),
        records.len(),
        signed as f64 / total
    );
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        *by.entry(r.code()).or_default() += 1;
    }
    let codes: Vec<String> = by.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    println!("answers per document: {}", codes.join(", "));
}

/// Signatures per second and failures per interval.
pub fn timeline(records: &[Record], total: f64, step: f64) {
    println!("\n| from s | signatures/s | other answers (per document) |\n|---|---|---|");
    let mut t = 0.0;
    while t < total {
        let inside: Vec<&Record> = records
            .iter()
            .filter(|r| r.t1 >= t && r.t1 < t + step)
            .collect();
        let signed = inside
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Signed { .. }))
            .count();
        let mut other: BTreeMap<String, usize> = BTreeMap::new();
        for r in inside
            .iter()
            .filter(|r| !matches!(r.outcome, Outcome::Signed { .. }))
        {
            *other.entry(r.code()).or_default() += 1;
        }
        let o: Vec<String> = other.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        println!(
            "| {t:.0} | {:.0} | {} |",
            signed as f64 / step,
            o.join(", ")
        );
        t += step;
    }
}

/// One row per fault: when, how long the daemon took to sign again, what clients saw
/// from the fault's start until the first signature after it.
pub fn faults(faults: &[Fault], records: &[Record], rec: &[Option<f64>]) {
    println!(
        "\n| fault | at s | out s | first failure after start, ms | signing again after restore, s | answers from start to recovery (per document) |\n|---|---|---|---|---|---|"
    );
    for (f, r) in faults.iter().zip(rec) {
        let until = f.restored + r.unwrap_or(0.0);
        let first_fail = records
            .iter()
            .filter(|x| {
                x.t1 >= f.start
                    && !x.probe
                    && !matches!(x.outcome, Outcome::Signed { .. })
                    && x.code() != "403 version-not-increasing"
            })
            .map(|x| x.t1 - f.start)
            .min_by(|a, b| a.total_cmp(b));
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for x in records.iter().filter(|x| x.t1 >= f.start && x.t1 <= until) {
            *by.entry(x.code()).or_default() += 1;
        }
        let codes: Vec<String> = by.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        println!(
            "| {} | {:.1} | {:.1} | {} | {} | {} |",
            f.kind.name(),
            f.start,
            f.restored - f.start,
            first_fail
                .map(|s| format!("{:.0}", s * 1000.0))
                .unwrap_or_else(|| "-".into()),
            r.map(|s| format!("{s:.2}"))
                .unwrap_or_else(|| "never".into()),
            codes.join(", ")
        );
    }
}

/// RSS minimum and maximum per interval, MiB.
pub fn rss(samples: &[(f64, u64)], total: f64, step: f64) {
    println!("\n| from s | RSS min MiB | RSS max MiB |\n|---|---|---|");
    let mut t = 0.0;
    while t < total {
        let v: Vec<u64> = samples
            .iter()
            .filter(|(s, _)| *s >= t && *s < t + step)
            .map(|(_, k)| *k)
            .collect();
        if let (Some(lo), Some(hi)) = (v.iter().min(), v.iter().max()) {
            println!(
                "| {t:.0} | {:.1} | {:.1} |",
                *lo as f64 / 1024.0,
                *hi as f64 / 1024.0
            );
        }
        t += step;
    }
}
