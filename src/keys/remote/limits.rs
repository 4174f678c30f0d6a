//! What one `POST /v1/sign-batch` may carry, and how a client cuts its work to fit: a
//! leaf, so that the remote signer and its batch code share it without importing each
//! other.

use serde_json::Value;

/// Documents per request when the signer did not say (an older signer; the first
/// request then finds out whether it has the endpoint at all).
pub(super) const DEFAULT_DOCUMENTS: usize = 64;
/// Bytes per request when the signer did not say: the daemon's default `max_body`.
pub(super) const DEFAULT_BYTES: usize = 1 << 20;
/// Room for the request's own fields around the documents.
const ENVELOPE: usize = 512;

/// What one batch request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_documents: usize,
    pub max_bytes: usize,
}

impl BatchLimits {
    /// From `{"max_documents", "max_bytes"}` (the keys answer, or a 413's body).
    pub fn from_value(v: &Value) -> Option<BatchLimits> {
        let n = |k: &str| v[k].as_u64().and_then(|n| usize::try_from(n).ok());
        Some(BatchLimits {
            max_documents: n("max_documents").filter(|n| *n > 0)?,
            max_bytes: n("max_bytes").filter(|n| *n > ENVELOPE)?,
        })
    }
}

impl Default for BatchLimits {
    fn default() -> BatchLimits {
        BatchLimits {
            max_documents: DEFAULT_DOCUMENTS,
            max_bytes: DEFAULT_BYTES,
        }
    }
}

/// Consecutive runs of `sizes` with at most `limits.max_documents` items and
/// `limits.max_bytes` bytes (plus the envelope) each; an item too large on its own
/// is a run of one, which the signer then refuses with its reason.
pub fn chunks(sizes: &[usize], limits: BatchLimits) -> Vec<std::ops::Range<usize>> {
    let room = limits.max_bytes.saturating_sub(ENVELOPE);
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, size) in sizes.iter().enumerate() {
        let full = i - start >= limits.max_documents || (i > start && bytes + size + 1 > room);
        if full {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size + 1;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunks_respect_the_document_count_and_the_byte_limit() {
        let limits = BatchLimits {
            max_documents: 3,
            max_bytes: ENVELOPE + 100,
        };
        assert_eq!(chunks(&[10; 7], limits), vec![0..3, 3..6, 6..7]);
        // 40 + 40 fit in 100 bytes (with a separator each), a third does not.
        assert_eq!(chunks(&[40, 40, 40, 40], limits), vec![0..2, 2..4]);
        // A document over the limit alone goes alone: the signer says why it refuses.
        assert_eq!(chunks(&[500, 10], limits), vec![0..1, 1..2]);
        assert!(chunks(&[], limits).is_empty());
    }

    #[test]
    fn limits_come_from_the_signers_answer() {
        let v = json!({"max_documents": 16, "max_bytes": 65536});
        assert_eq!(
            BatchLimits::from_value(&v),
            Some(BatchLimits {
                max_documents: 16,
                max_bytes: 65536
            })
        );
        assert_eq!(BatchLimits::from_value(&json!({"max_documents": 0})), None);
    }
}
