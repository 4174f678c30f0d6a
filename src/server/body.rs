//! Reading a signing request's body within the daemon's memory bound.
//!
//! Every body is limited on its own (`max_body`, `max_batch_body`), and all requests being
//! read, parsed and signed at one time share one budget (`body_memory`): a request
//! reserves [`PARSED_PER_BYTE`] times its declared `Content-Length` (or its limit, when
//! none is declared) before a byte is read, capped at the whole budget, and holds it
//! until it is answered. Many clients sending large bodies
//! at once therefore wait for each other (up to `queue_timeout`, then 503 `busy`)
//! instead of growing the daemon without bound (docs/signer.md, "Memory").

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::refusal::{bad_request, busy, refuse, Refusal};

/// The budget counts in KiB, so that a `u32` of permits covers any sane limit.
const UNIT: usize = 1024;

/// What a request holds in memory per byte of its body while it is handled: the body,
/// its parsed JSON (`serde_json::Value` is several times the text), the canonical
/// payload and the answer. Measured with benches/serve_batches.rs (64 clients, 0.92 MiB
/// targets documents): about 10 MiB of resident memory per request in flight.
pub const PARSED_PER_BYTE: usize = 12;

/// The bytes of request bodies the daemon holds at once.
pub struct BodyBudget {
    sem: Semaphore,
    units: u32,
}

/// A body and its share of the budget, given back when the request is answered.
pub struct Body<'a> {
    pub bytes: Bytes,
    _held: SemaphorePermit<'a>,
}

/// How one kind of request may send its body.
pub struct BodyLimits {
    /// Largest body accepted; larger ones get 413 `code`.
    pub max: usize,
    pub code: &'static str,
    /// Time to receive the whole body once the head arrived.
    pub timeout: Duration,
    /// Time to wait for the budget.
    pub queue_timeout: Duration,
}

impl BodyBudget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: usize) -> BodyBudget {
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .max(1);
        BodyBudget {
            sem: Semaphore::new(units as usize),
            units,
        }
    }

    /// Reads `req`'s body: 413 when it is (or says it is) over `limits.max`, 408 when it
    /// is too slow, 503 when the budget stays spent.
    pub async fn read(
        &self,
        req: Request<Incoming>,
        limits: &BodyLimits,
    ) -> Result<Body<'_>, Refusal> {
        let max = limits.max;
        let too_large = || {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                limits.code,
                format!("the request body is larger than the signer's limit of {max} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let want = declared
            .map_or(max, |n| n as usize)
            .saturating_mul(PARSED_PER_BYTE)
            .div_ceil(UNIT)
            .max(1);
        let want = u32::try_from(want).unwrap_or(u32::MAX).min(self.units);
        let held =
            match tokio::time::timeout(limits.queue_timeout, self.sem.acquire_many(want)).await {
                Ok(Ok(p)) => p,
                _ => return Err(busy("the signer's memory for request bodies")),
            };
        let body = Limited::new(req.into_body(), max);
        match tokio::time::timeout(limits.timeout, body.collect()).await {
            Err(_) => Err(refuse(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                format!(
                    "the request body did not arrive within {:?}",
                    limits.timeout
                ),
            )),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Ok(Err(e)) => Err(bad_request(
                "malformed",
                format!("cannot read the body: {e}"),
            )),
            Ok(Ok(c)) => Ok(Body {
                bytes: c.to_bytes(),
                _held: held,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_counted_in_whole_kib_and_never_empty() {
        assert_eq!(BodyBudget::new(0).units, 1);
        assert_eq!(BodyBudget::new(1025).units, 2);
        assert_eq!(BodyBudget::new(64 << 20).units, 64 << 10);
    }
}
