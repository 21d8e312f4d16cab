//! Identifier shapes: access keys, unique ids, UUIDs, request ids.

use crate::rng::mix;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HEX: &[u8; 16] = b"0123456789abcdef";
const ALNUM: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Fills `out` with base-32 characters (A–Z, 2–7) derived from `h`, as AWS key and unique ids look.
fn base32(out: &mut [u8], h: u64) {
    let mut x = 0;
    for (i, c) in out.iter_mut().enumerate() {
        if i % 12 == 0 {
            x = mix(h.wrapping_add(i as u64));
        }
        *c = BASE32[(x & 31) as usize];
        x >>= 5;
    }
}

/// `ASIA…` / `AKIA…`: 4-letter prefix and 16 base-32 characters.
pub(crate) fn access_key(prefix: &[u8; 4], h: u64) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..4].copy_from_slice(prefix);
    base32(&mut k[4..], h);
    k
}

/// `AROA…` / `AIDA…`: 4-letter prefix and 17 base-32 characters.
pub(crate) fn unique_id(prefix: &str, h: u64) -> String {
    let mut k = [0u8; 17];
    base32(&mut k, h);
    let mut s = String::with_capacity(21);
    s.push_str(prefix);
    s.extend(k.iter().map(|&b| b as char));
    s
}

/// Bytes that are ASCII by construction, as a `String`.
pub(crate) fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// `n` lowercase hex digits.
pub(crate) fn hex(n: usize, h: u64) -> String {
    let mut s = String::with_capacity(n);
    let mut x = 0;
    for i in 0..n {
        if i % 16 == 0 {
            x = mix(h.wrapping_add(i as u64));
        }
        s.push(HEX[(x & 15) as usize] as char);
        x >>= 4;
    }
    s
}

/// A version-4-shaped UUID. All 64 bits of `a` land in it, so distinct `a` give distinct UUIDs.
pub(crate) fn write_uuid(buf: &mut Vec<u8>, a: u64, b: u64) {
    let mut n = [0u8; 32];
    let mut x = a;
    for (i, slot) in n.iter_mut().enumerate() {
        // Positions 12 (version) and 16 (variant) come from `b`; 0..12, 13..16, 17 hold `a`.
        if i == 12 || i == 16 || i > 17 {
            continue;
        }
        *slot = (x & 15) as u8;
        x >>= 4;
    }
    let mut y = b;
    for (i, slot) in n.iter_mut().enumerate() {
        if i > 17 {
            *slot = (y & 15) as u8;
            y >>= 4;
        }
    }
    n[12] = 4;
    n[16] = 8 | ((b >> 62) as u8 & 3);
    for (i, &d) in n.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            buf.push(b'-');
        }
        buf.push(HEX[d as usize]);
    }
}

/// S3-style request id: 16 uppercase hex-like characters.
pub(crate) fn write_s3_request_id(buf: &mut Vec<u8>, h: u64) {
    let mut x = h;
    for _ in 0..16 {
        buf.push(b"0123456789ABCDEF"[(x & 15) as usize]);
        x >>= 4;
    }
}

/// `n` characters of `[0-9A-Za-z]`, as in trail file names and `x-amz-id-2`.
pub(crate) fn write_alnum(buf: &mut Vec<u8>, n: usize, h: u64) {
    let mut x = h;
    for i in 0..n {
        if i % 8 == 0 {
            x = mix(h.wrapping_add(i as u64));
        }
        buf.push(ALNUM[(x % 62) as usize]);
        x /= 62;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_aws_shapes() {
        let k = ascii(&access_key(b"ASIA", 7));
        assert_eq!(k.len(), 20);
        assert!(k.starts_with("ASIA") && k[4..].bytes().all(|b| BASE32.contains(&b)));
        assert_eq!(unique_id("AROA", 1).len(), 21);
        let mut u = Vec::new();
        write_uuid(&mut u, 1, 2);
        let u = String::from_utf8(u).unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn uuids_from_distinct_words_differ() {
        let mut seen = std::collections::HashSet::new();
        for a in 0..10_000u64 {
            let mut u = Vec::new();
            write_uuid(&mut u, mix(a), 0);
            assert!(seen.insert(u));
        }
    }
}
