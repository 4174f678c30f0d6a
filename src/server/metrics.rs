//! Prometheus text exposition of the daemon's counters. A handful of labelled
//! counters and one histogram do not justify a metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::policy::TOP_LEVEL;

/// Role labels of `tufkey_signatures_total` per key before delegated roles share one.
pub const MAX_ROLE_LABELS: usize = 256;
/// The label they share.
pub const OTHER_DELEGATED: &str = "other-delegated";

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    /// Key id → role label → signatures.
    signatures: BTreeMap<String, BTreeMap<String, u64>>,
    refusals: BTreeMap<String, u64>,
    hsm_errors: u64,
    audit_entries: u64,
    tls_failures: u64,
    latency_buckets: Vec<u64>,
    latency_sum: f64,
    latency_count: u64,
}

/// The daemon's counters.
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            inner: Mutex::new(Inner {
                latency_buckets: vec![0; BUCKETS.len()],
                ..Default::default()
            }),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One answered request: its route (not its raw path, to bound the label set),
    /// status and time.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let mut m = self.lock();
        *m.requests.entry((route.to_string(), status)).or_default() += 1;
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                m.latency_buckets[i] += 1;
            }
        }
        m.latency_sum += secs;
        m.latency_count += 1;
    }

    /// One signature. A key's first [`MAX_ROLE_LABELS`] role labels are their own; after
    /// that, delegated roles share `role="other-delegated"`: a repository
    /// with 16,384 hashed bins would otherwise put 16,384 series per key in every
    /// scrape (and in the daemon's memory). Known labels are counted without
    /// allocating.
    pub fn signature(&self, key_id: &str, role: &str) {
        let mut m = self.lock();
        let roles = match m.signatures.get_mut(key_id) {
            Some(roles) => roles,
            None => m.signatures.entry(key_id.to_string()).or_default(),
        };
        if let Some(n) = roles.get_mut(role) {
            *n += 1;
            return;
        }
        // The top-level roles and raw signing always keep their own label.
        let fixed = TOP_LEVEL.contains(&role) || role == "raw";
        let label = if roles.len() >= MAX_ROLE_LABELS && !fixed {
            OTHER_DELEGATED
        } else {
            role
        };
        *roles.entry(label.to_string()).or_default() += 1;
    }

    pub fn refusal(&self, reason: &str) {
        *self.lock().refusals.entry(reason.to_string()).or_default() += 1;
    }

    pub fn hsm_error(&self) {
        self.lock().hsm_errors += 1;
    }

    pub fn tls_failure(&self) {
        self.lock().tls_failures += 1;
    }

    pub fn set_audit_entries(&self, n: u64) {
        let mut m = self.lock();
        m.audit_entries = m.audit_entries.max(n);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut o = String::new();
        let _ = writeln!(o, "# HELP tufkey_requests_total HTTP requests answered, by route and status.\n# TYPE tufkey_requests_total counter");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                o,
                "tufkey_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let _ = writeln!(o, "# HELP tufkey_signatures_total Signatures made, by key id and role.\n# TYPE tufkey_signatures_total counter");
        for (key, roles) in &m.signatures {
            for (role, n) in roles {
                let _ = writeln!(
                    o,
                    "tufkey_signatures_total{{key_id=\"{}\",role=\"{}\"}} {n}",
                    escape(key),
                    escape(role)
                );
            }
        }
        let _ = writeln!(o, "# HELP tufkey_refusals_total Requests refused, by reason.\n# TYPE tufkey_refusals_total counter");
        for (reason, n) in &m.refusals {
            let _ = writeln!(
                o,
                "tufkey_refusals_total{{reason=\"{}\"}} {n}",
                escape(reason)
            );
        }
        let _ = writeln!(o, "# HELP tufkey_hsm_errors_total Signing calls the HSM (or key backend) failed.\n# TYPE tufkey_hsm_errors_total counter\ntufkey_hsm_errors_total {}", m.hsm_errors);
        let _ = writeln!(o, "# HELP tufkey_tls_handshake_failures_total TLS handshakes refused (no, foreign or expired client certificate).\n# TYPE tufkey_tls_handshake_failures_total counter\ntufkey_tls_handshake_failures_total {}", m.tls_failures);
        let _ = writeln!(o, "# HELP tufkey_audit_entries Entries in the audit log.\n# TYPE tufkey_audit_entries gauge\ntufkey_audit_entries {}", m.audit_entries);
        let _ = writeln!(o, "# HELP tufkey_request_duration_seconds Time from request head to response.\n# TYPE tufkey_request_duration_seconds histogram");
        for (b, n) in BUCKETS.iter().zip(&m.latency_buckets) {
            let _ = writeln!(
                o,
                "tufkey_request_duration_seconds_bucket{{le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "tufkey_request_duration_seconds_bucket{{le=\"+Inf\"}} {c}\ntufkey_request_duration_seconds_sum {s}\ntufkey_request_duration_seconds_count {c}",
            c = m.latency_count,
            s = m.latency_sum
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(m: &Metrics) -> Vec<String> {
        m.render()
            .lines()
            .filter(|l| l.starts_with("tufkey_signatures_total{"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn delegated_roles_share_one_label_once_a_key_has_many() {
        let m = Metrics::default();
        m.signature("k1", "timestamp");
        for i in 0..1000 {
            m.signature("k1", &format!("bin-{i:03x}"));
        }
        // Top-level roles and labels seen before the cap keep their own series.
        m.signature("k1", "snapshot");
        m.signature("k1", "bin-000");
        m.signature("k2", "bin-3e7");
        let s = series(&m);
        assert_eq!(s.len(), MAX_ROLE_LABELS + 3, "{:?}", &s[..4]);
        assert!(s.contains(&r#"tufkey_signatures_total{key_id="k1",role="bin-000"} 2"#.to_string()));
        assert!(
            s.contains(&r#"tufkey_signatures_total{key_id="k1",role="snapshot"} 1"#.to_string())
        );
        assert!(
            s.contains(&r#"tufkey_signatures_total{key_id="k1",role="timestamp"} 1"#.to_string())
        );
        assert!(s.contains(&r#"tufkey_signatures_total{key_id="k2",role="bin-3e7"} 1"#.to_string()));
        // k1's first 256 labels are timestamp and 255 bins; the other 745 bins share one.
        assert!(s.contains(&format!(
            r#"tufkey_signatures_total{{key_id="k1",role="{OTHER_DELEGATED}"}} {}"#,
            1000 - (MAX_ROLE_LABELS - 1)
        )));
    }
}
