//! JSON strings written as `serde_json` writes them: `"`, `\\` and the
//! control characters escaped, everything else as is. Records are
//! written field by field (`record`), and the catalog's ids are checked
//! once per compile (`engine::Matcher::ids_need_escapes`), so that a
//! record of ids that need none copies them without scanning each again.

/// `s` as a JSON string.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

/// `s` escaped for a JSON string, without the quotes: `"`, `\\` and the
/// control characters escaped as `serde_json` does, everything else as is.
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        // Nearly every id and time: one copy, after a scan a word at a
        // time (escape_into's byte loop was 12% of `match`'s instructions
        // on real posts, `valgrind --tool=callgrind`).
        out.extend_from_slice(bytes);
        return;
    }
    // The runs between bytes that need an escape are copied whole.
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[from..i]);
        from = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[from..]);
}

/// Whether `bytes` has a byte JSON escapes (`"`, `\\`, a control
/// character), tested eight bytes at a time: a word has a byte below
/// 0x20 when `(w - 0x20..) & !w & 0x80..` is not zero, and a byte equal
/// to `q` when the same test of `w ^ q..` for a zero byte is not (exact
/// for "any": a borrow only propagates past a byte that is itself a hit).
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let hit = |w: u64| {
        below(w, 0x20)
            | below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
    };
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        if hit(u64::from_le_bytes(w)) != 0 {
            return true;
        }
    }
    // The last bytes padded with spaces, which need no escape.
    let rest = words.remainder();
    let mut w = [b' '; 8];
    w[..rest.len()].copy_from_slice(rest);
    hit(u64::from_le_bytes(w)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_that_needs_an_escape_is_found_at_every_position() {
        // Words of eight bytes and a remainder, among ASCII and among
        // two-byte characters (bytes with the high bit set).
        for filler in ['a', 'ÿ'] {
            for len in 1..=20 {
                for pos in 0..len {
                    for b in 0..0x80u8 {
                        let mut chars = vec![filler; len];
                        chars[pos] = char::from(b);
                        let s: String = chars.into_iter().collect();
                        let mut out = Vec::new();
                        string(&mut out, &s);
                        assert_eq!(
                            String::from_utf8(out).unwrap(),
                            serde_json::to_string(&s).unwrap(),
                            "byte {b} at {pos} of {len} {filler:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "plain",
            "",
            "quote \" and \\ backslash",
            "tab\tnew\nline\r back\u{8} feed\u{c}",
            "\u{0}\u{1}\u{1f}\u{7f}",
            "émoji 😀 \u{2028} 日本",
            "twenty-four bytes long \"",
            "sixteen bytes!!\\ then more",
            "a control \u{1f} eight in",
            "~\u{7f}\u{80}ÿ twenty-four bytes  ",
        ] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }
}
