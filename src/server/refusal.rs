//! A request (or one document of a batch) that is answered with an error: its status,
//! reason code and message, and the JSON answer every refusal shares. A leaf, so that
//! the API, the per-document checks and the batch endpoint can all make refusals
//! without importing each other.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::store::StoreError;
use crate::audit::Event;
use crate::keys::{KeyError, Outcome};

/// Why a signature was not handed out.
pub enum Failed {
    /// Nothing was signed (no worker, the key failed): a version claim may be given back.
    Signing(Refusal),
    /// Signed, but the entry could not be made durable: the signature is withheld.
    Audit(Refusal),
}

/// A request that is answered with an error.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
    /// More fields for the JSON answer (a 413 for a batch names the limits, so a
    /// client can split and retry).
    pub extra: Option<Value>,
}

impl Refusal {
    /// `{"error": code, "message": …}` plus any extra fields.
    pub fn body(&self) -> Value {
        let mut v = json!({"error": self.code, "message": self.message});
        if let (Some(Value::Object(more)), Value::Object(map)) = (&self.extra, &mut v) {
            for (k, x) in more {
                map.insert(k.clone(), x.clone());
            }
        }
        v
    }

    /// Records this refusal in its audit entry: `error` for a server-side failure,
    /// `refused` otherwise, with the reason and the status.
    pub fn mark(&self, ev: &mut Event) {
        ev.result = if self.status.is_server_error() {
            "error"
        } else {
            "refused"
        }
        .into();
        ev.reason = Some(format!("{}: {}", self.code, self.message));
        ev.status = Some(self.status.as_u16());
    }

    /// The HTTP answer, with `Retry-After` when there is one.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut resp = json_response(self.status, &self.body());
        if let Some(s) = self.retry_after {
            if let Ok(v) = hyper::header::HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
        retry_after: None,
        extra: None,
    }
}

pub fn forbidden(code: &'static str, message: impl Into<String>) -> Refusal {
    refuse(StatusCode::FORBIDDEN, code, message)
}

pub fn bad_request(code: &'static str, message: impl Into<String>) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, code, message)
}

/// The store (PostgreSQL) did not answer: nothing is signed without it.
pub fn state_unavailable(e: StoreError) -> Refusal {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "state-unavailable",
        format!("the signer's state store is unavailable, so nothing is signed: {e}"),
    )
}

/// Every HSM worker stayed busy (or the body budget stayed spent) for the queue timeout.
pub fn busy(what: &str) -> Refusal {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        format!("{what} stayed busy for the queue timeout; retry later"),
    )
}

/// The signature was made but its audit entry could not be written.
pub fn audit_failed(e: impl std::fmt::Display) -> Refusal {
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "audit-failed",
        format!("the signature was made but could not be logged, so it is withheld: {e}"),
    )
}

/// A JSON answer with its status: compact (`jq` shows it pretty), one line.
pub fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    json_bytes_response(status, serde_json::to_vec(v).unwrap_or_default())
}

/// [`json_response`] for a body already written as JSON (from a typed answer).
pub fn json_bytes_response(status: StatusCode, mut body: Vec<u8>) -> Response<Full<Bytes>> {
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The answer to a signature the key backend could not make, chosen by the error's
/// [`Outcome`]: a device or service that is away (an HSM token, a YubiKey, pcscd) is a
/// 503 with `Retry-After`, since nothing in the request needs fixing and the backend
/// looks for the device again on the next request; anything else is the daemon's own
/// problem (its key configuration, a refused PIN, a faulty device), a 500.
pub fn key_refusal(e: &KeyError) -> Refusal {
    match e.outcome() {
        Outcome::Unavailable => Refusal {
            retry_after: Some(1),
            ..refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "hsm-unavailable",
                e.to_string(),
            )
        },
        Outcome::Refused | Outcome::Usage | Outcome::Internal => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "hsm-error",
            e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::CardProblem;

    #[test]
    fn a_stopped_pcscd_and_an_absent_yubikey_are_503_and_a_refused_pin_is_500() {
        let uri = "yubikey:serial=5437251;slot=9c".to_string();
        let stopped = key_refusal(&KeyError::Card {
            uri: uri.clone(),
            problem: CardProblem::ServiceNotRunning,
        });
        let absent = key_refusal(&KeyError::CardAbsent {
            uri: uri.clone(),
            reason: "YubiKey serial 5437251 is not inserted (none present)".into(),
        });
        for r in [&stopped, &absent] {
            assert_eq!(
                (r.status, r.code, r.retry_after),
                (StatusCode::SERVICE_UNAVAILABLE, "hsm-unavailable", Some(1))
            );
        }
        assert!(stopped.message.contains("pcscd is not running"));
        let wrong = key_refusal(&KeyError::ReloginRefused {
            token: "YubiKey 5437251".into(),
            uri,
            reason: "wrong PIN".into(),
        });
        assert_eq!(
            (wrong.status, wrong.retry_after),
            (StatusCode::INTERNAL_SERVER_ERROR, None)
        );
    }

    #[test]
    fn extra_fields_join_the_error_body() {
        let mut r = refuse(StatusCode::PAYLOAD_TOO_LARGE, "batch-too-large", "too many");
        r.extra = Some(json!({"max_documents": 3}));
        assert_eq!(
            r.body(),
            json!({"error": "batch-too-large", "message": "too many", "max_documents": 3})
        );
    }
}
