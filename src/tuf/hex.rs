//! Lower-case hex, as TUF writes signatures, hashes and key ids.

/// `bytes` in lower-case hex. `hex::encode` builds its string one `char` at a time,
/// which costs more than the SHA-256 it encodes; its `encode_to_slice` writes bytes,
/// and this is on every signature's path in the signer daemon.
pub fn lower(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    // The buffer is exactly twice as long, and only ASCII digits are written.
    if hex::encode_to_slice(bytes, &mut out).is_err() {
        return hex::encode(bytes);
    }
    String::from_utf8(out).unwrap_or_else(|_| hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_writes_what_the_hex_crate_writes() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(super::lower(&all), hex::encode(&all));
        assert_eq!(super::lower(&[]), "");
    }
}
