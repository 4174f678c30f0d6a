//! Minimal BER-TLV helpers (PIV tags are 1-3 bytes, lengths up to 0x82 form).

/// Splits `input` into (tag, value, rest).
pub fn parse(input: &[u8]) -> Option<(u32, &[u8], &[u8])> {
    let mut i = 0;
    let first = *input.first()?;
    let mut tag = u32::from(first);
    i += 1;
    if first & 0x1F == 0x1F {
        loop {
            let b = *input.get(i)?;
            tag = (tag << 8) | u32::from(b);
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            if i > 3 {
                return None;
            }
        }
    }
    let l0 = *input.get(i)?;
    i += 1;
    let len = match l0 {
        0..=0x7F => usize::from(l0),
        0x81 => {
            let v = usize::from(*input.get(i)?);
            i += 1;
            v
        }
        0x82 => {
            let v = usize::from(*input.get(i)?) << 8 | usize::from(*input.get(i + 1)?);
            i += 2;
            v
        }
        _ => return None,
    };
    let value = input.get(i..i + len)?;
    Some((tag, value, &input[i + len..]))
}

/// Finds the first value with `tag` at the top level of `input`.
pub fn find(mut input: &[u8], tag: u32) -> Option<&[u8]> {
    while !input.is_empty() {
        let (t, v, rest) = parse(input)?;
        if t == tag {
            return Some(v);
        }
        input = rest;
    }
    None
}

pub fn encode_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

/// Appends tag (1-3 bytes, big-endian, leading zero bytes dropped), length and value.
pub fn put(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    let bytes = tag.to_be_bytes();
    let skip = bytes.iter().take(3).take_while(|b| **b == 0).count();
    out.extend_from_slice(&bytes[skip..]);
    encode_len(value.len(), out);
    out.extend_from_slice(value);
}

/// DER TLV with a one-byte tag.
pub fn der(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    encode_len(value.len(), &mut out);
    out.extend_from_slice(value);
    out
}

/// A DER INTEGER holding the unsigned big-endian `bytes`.
pub fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().take_while(|b| **b == 0).count();
    let trimmed = &bytes[start.min(bytes.len().saturating_sub(1))..];
    let mut v = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(trimmed);
    der(0x02, &v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let mut out = Vec::new();
        put(&mut out, 0x7F49, &[0x86, 0x01, 0x04]);
        put(&mut out, 0x5FFF01, &[0u8; 300]);
        let (t, v, rest) = parse(&out).unwrap();
        assert_eq!((t, v), (0x7F49, &[0x86, 0x01, 0x04][..]));
        let (t, v, rest) = parse(rest).unwrap();
        assert_eq!((t, v.len(), rest.len()), (0x5FFF01, 300, 0));
        assert_eq!(der_uint(&[0, 0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(der_uint(&[1, 0, 1]), vec![2, 3, 1, 0, 1]);
    }
}
