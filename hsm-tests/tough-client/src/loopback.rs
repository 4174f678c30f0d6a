//! Plain HTTP/1.0 GET to a server on the loopback interface, as a tough [`Transport`].
//!
//! tough's own `HttpTransport` (feature `http`) brings reqwest, hyper and a platform
//! certificate verifier into the build; the tests only ever talk to a Python `http.server`
//! on 127.0.0.1, so a few lines of std networking do. Every check on the bytes (lengths,
//! hashes, signatures, versions, expiry) is tough's, whatever transport delivered them.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::Duration;

use tough::{async_trait, Bytes, Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

/// No response may exceed this; tough applies its own, smaller, per-role limits.
const MAX_RESPONSE: u64 = 256 * 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct LoopbackHttpTransport;

#[async_trait]
impl Transport for LoopbackHttpTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let body = get(&url)?;
        Ok(Box::pin(futures::stream::iter([Ok(Bytes::from(body))])))
    }
}

fn other(url: &Url, why: impl Into<String>) -> TransportError {
    TransportError::new_with_cause(TransportErrorKind::Other, url, why.into())
}

/// GET `url` over one HTTP/1.0 connection and return the body of a 200 response.
/// 403, 404 and 410 are "file not found", as for tough's own HTTP transport: that is how
/// a client learns that root N+1 does not exist.
fn get(url: &Url) -> Result<Vec<u8>, TransportError> {
    if url.scheme() != "http" {
        return Err(TransportError::new(
            TransportErrorKind::UnsupportedUrlScheme,
            url,
        ));
    }
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(other(
            url,
            "this test client only fetches from loopback (127.0.0.1, ::1, localhost)",
        ));
    }
    let port = url.port().unwrap_or(80);
    let mut stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .map_err(|e| other(url, format!("connect: {e}")))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| other(url, format!("socket: {e}")))?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: tufkey-tough-client\r\n\r\n"
    )
    .map_err(|e| other(url, format!("send: {e}")))?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .map_err(|e| other(url, format!("receive: {e}")))?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| other(url, "no end of HTTP headers in the response"))?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| other(url, format!("bad status line: {head:.80}")))?;
    match status {
        200 => Ok(response.split_off(head_end + 4)),
        403 | 404 | 410 => Err(TransportError::new_with_cause(
            TransportErrorKind::FileNotFound,
            url,
            format!("HTTP {status}"),
        )),
        _ => Err(other(url, format!("HTTP {status}"))),
    }
}
