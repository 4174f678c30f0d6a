//! Lower-case hex, as TUF writes signatures, hashes and key ids.

/// `bytes` in lower-case hex. The `hex` crate builds its string one `char` at a time,
/// which costs more than the SHA-256 it encodes; this is on every signature's path in
/// the signer daemon.
pub fn lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
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
