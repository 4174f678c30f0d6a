//! PEM blocks as Notary (Go's `encoding/pem`) writes them: a `-----BEGIN TYPE-----` line,
//! optional `Key: value` headers (`Proc-Type`, `DEK-Info`, and Notary's own `role` and
//! `gun`), a blank line after headers, base64 lines, `-----END TYPE-----`. The RustCrypto
//! PEM readers refuse headers (RFC 7468), so Notary's files are read here.

use std::collections::BTreeMap;

use base64::Engine;
use zeroize::Zeroizing;

/// One PEM block: its type, headers and decoded body (zeroized on drop: it may be a key).
pub struct PemBlock {
    pub kind: String,
    pub headers: BTreeMap<String, String>,
    pub body: Zeroizing<Vec<u8>>,
}

/// Shows the type and headers, never the body.
impl std::fmt::Debug for PemBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemBlock")
            .field("kind", &self.kind)
            .field("headers", &self.headers)
            .field("body", &format_args!("{} bytes", self.body.len()))
            .finish()
    }
}

/// The first PEM block in `text`, or why there is none.
pub fn parse(text: &str) -> Result<PemBlock, String> {
    let mut lines = text.lines().map(str::trim_end);
    let kind = loop {
        let Some(line) = lines.next() else {
            return Err(
                "no PEM block (no `-----BEGIN …-----` line); this is not a key file Notary wrote"
                    .into(),
            );
        };
        if let Some(k) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|r| r.strip_suffix("-----"))
        {
            break k.to_string();
        }
    };
    let end = format!("-----END {kind}-----");
    let mut headers = BTreeMap::new();
    let mut b64 = Zeroizing::new(String::new());
    let mut in_headers = true;
    let mut ended = false;
    for line in lines.by_ref() {
        if line == end {
            ended = true;
            break;
        }
        if in_headers {
            if line.is_empty() {
                in_headers = false;
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_string(), v.trim().to_string());
                continue;
            }
            in_headers = false;
        }
        b64.push_str(line.trim());
    }
    if !ended {
        return Err(format!(
            "the PEM block `{kind}` has no `{end}` line: the file is cut short"
        ));
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| {
            format!(
                "the body of the PEM block `{kind}` is not valid base64 ({e}): the file is damaged"
            )
        })?;
    Ok(PemBlock {
        kind,
        headers,
        body: Zeroizing::new(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_body_of_a_notary_key_are_read() {
        let b = parse("-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\nrole: root\n\nAAEC\n-----END EC PRIVATE KEY-----\n").unwrap();
        assert_eq!(b.kind, "EC PRIVATE KEY");
        assert_eq!(b.headers["role"], "root");
        assert_eq!(b.headers["DEK-Info"], "AES-256-CBC,00");
        assert_eq!(&b.body[..], &[0, 1, 2]);
    }

    #[test]
    fn a_cut_file_and_garbage_are_refused_with_a_reason() {
        assert!(parse("-----BEGIN PRIVATE KEY-----\nAAEC\n")
            .unwrap_err()
            .contains("cut short"));
        assert!(parse("hello").unwrap_err().contains("no PEM block"));
        assert!(
            parse("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----")
                .unwrap_err()
                .contains("base64")
        );
    }
}
