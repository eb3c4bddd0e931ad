//! Lower-case hexadecimal encoding and strict decoding (no_std).
//!
//! Encoding always produces lower-case digits; decoding accepts either case
//! and rejects anything that is not exactly two hex digits per byte.

use alloc::string::String;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Error from [`decode_into`]: wrong length or a non-hex character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HexError;

impl core::fmt::Display for HexError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("invalid hex (wrong length or non-hex character)")
    }
}
crate::std_error!(HexError);

/// Encodes `bytes` as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Writes the lower-case hex of `bytes` into `out` (which must be exactly
/// `2 * bytes.len()` long) without allocating; returns it as `&str`.
pub fn encode_to_slice<'a>(bytes: &[u8], out: &'a mut [u8]) -> Result<&'a str, HexError> {
    if out.len() != bytes.len() * 2 {
        return Err(HexError);
    }
    for (i, &b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    core::str::from_utf8(out).map_err(|_| HexError)
}

fn nibble(c: u8) -> Result<u8, HexError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(HexError),
    }
}

/// Decodes `s` (exactly `2 * out.len()` hex digits, either case) into `out`.
pub fn decode_into(s: &str, out: &mut [u8]) -> Result<(), HexError> {
    let b = s.as_bytes();
    if b.len() != out.len() * 2 {
        return Err(HexError);
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
    }
    Ok(())
}

/// Decodes exactly `N` bytes from `s`.
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let mut out = [0u8; N];
    decode_into(s, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(encode(&[0x00, 0xab, 0xff, 0x10]), "00abff10");
        assert_eq!(decode_array::<2>("aBcD"), Ok([0xab, 0xcd]));
        assert_eq!(decode_array::<2>("abc"), Err(HexError));
        assert_eq!(decode_array::<2>("abcde"), Err(HexError));
        assert_eq!(decode_array::<1>("g0"), Err(HexError));
        assert_eq!(decode_array::<1>("+1"), Err(HexError));
        let mut buf = [0u8; 4];
        assert_eq!(encode_to_slice(&[1, 0xfe], &mut buf), Ok("01fe"));
        assert_eq!(encode_to_slice(&[1], &mut buf), Err(HexError));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = encode(&bytes);
            let mut out = std::vec![0u8; bytes.len()];
            decode_into(&s, &mut out).unwrap();
            prop_assert_eq!(out, bytes);
        }
    }
}
