//! The inner loop of the readers of review bodies ([`crate::conversion::json`], the admission
//! route's reader of `request.object`): passing over the plain bytes of a JSON string eight at a
//! time.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The position of the first byte at or after `at` that is a quote or a backslash (with
/// `CONTROLS`, also a control character, below 0x20), looked for eight bytes at a time; or the
/// position where fewer than eight bytes are left, for the caller to go on byte by byte.
#[inline(always)]
pub(crate) fn skip_plain<const CONTROLS: bool>(bytes: &[u8], mut at: usize) -> usize {
    while let Some(chunk) = bytes.get(at..at.saturating_add(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // High bit set in the lowest byte that is one of those (bytes above it may be flagged
        // wrongly by the borrow; only the lowest counts).
        let mut found =
            (quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash);
        if CONTROLS {
            found |= word.wrapping_sub(ONES * 0x20) & !word;
        }
        let found = found & HIGHS;
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::skip_plain;

    #[test]
    fn stops_at_the_first_special_byte_or_where_eight_are_not_left() {
        let text = br#"abcdefghijklmnop"qrst"#;
        assert_eq!(skip_plain::<false>(text, 0), 16);
        assert_eq!(skip_plain::<false>(text, 3), 16);
        assert_eq!(skip_plain::<false>(br#"abcdefgh\ijklmnop"#, 0), 8);
        assert_eq!(skip_plain::<false>(b"abcdefgh\x01ijklmno", 0), 16);
        assert_eq!(skip_plain::<true>(b"abcdefgh\x01ijklmno", 0), 8);
        assert_eq!(skip_plain::<true>(b"abc\x1fdefghijk", 0), 3);
        assert_eq!(skip_plain::<true>(b"abc defghijk\x7f\xc3\xa9xx", 0), 16);
        // Fewer than eight bytes left: the caller reads them.
        assert_eq!(skip_plain::<true>(b"ab\"", 0), 0);
        assert_eq!(skip_plain::<true>(b"abcdefghij\"", 0), 8);
        // A quote right after a byte that borrows (0x00) is still found at its place.
        assert_eq!(skip_plain::<true>(b"a\"\x00bcdefgh", 0), 1);
        assert_eq!(skip_plain::<false>(b"a\x00\"bcdefgh", 0), 2);
    }
}
