//! Unit tests of tokenizing and folding.

use super::*;

fn toks(text: &str) -> Vec<(TokenKind, String, &str)> {
    let mut t = Tokens::new();
    t.analyze(text);
    (0..t.len())
        .map(|i| {
            let tok = t.tokens[i];
            (
                tok.kind,
                t.folded_body(i).to_string(),
                &text[tok.start as usize..tok.end as usize],
            )
        })
        .collect()
}

/// Tokens, folded bodies and whether CJK was seen, by the full UAX #29
/// algorithm alone: the reference of the fast paths.
fn by_uax29(s: &str) -> (Vec<Token>, String, bool) {
    let (mut out, mut folded, mut cjk) = (Vec::new(), String::new(), false);
    tokenize_unicode(s, 0, &mut out, &mut folded, &mut cjk);
    (out, folded, cjk)
}

/// The same by `tokenize_into`, fast paths included.
fn by_fast_paths(s: &str) -> (Vec<Token>, String, bool) {
    let (mut out, mut folded, mut cjk) = (Vec::new(), String::new(), false);
    tokenize_into(s, &mut out, &mut folded, &mut cjk);
    (out, folded, cjk)
}

/// The same by the ASCII path alone (for ASCII `s`).
fn by_ascii_path(s: &str) -> (Vec<Token>, String, bool) {
    let (mut out, mut folded) = (Vec::new(), String::new());
    tokenize_ascii(s, 0, s.len(), &mut out, &mut folded);
    (out, folded, false)
}

#[test]
fn folding_matches_the_spec_examples() {
    assert_eq!(fold("Café"), fold("cafe"));
    assert_eq!(fold("CAFÉ"), "cafe");
    assert_eq!(fold("Straße"), "strasse");
    assert_eq!(fold("naïve"), "naive");
    assert_eq!(fold("ＡＣＭＥ"), "acme"); // full width, by NFKC
    assert_eq!(fold("ﬁle"), "file"); // ligature, by NFKC
    assert_eq!(fold("ΣΑΣ"), fold("σας")); // final sigma
    assert_eq!(fold("İstanbul"), "istanbul");
}

#[test]
fn folding_is_idempotent_on_samples() {
    for s in [
        "Ǆemal",
        "ᾈ",
        "Ωhm",
        "한국어",
        "ｶﾀｶﾅ",
        "e\u{301}te\u{301}",
        "ǅ",
    ] {
        let once = fold(s);
        assert_eq!(fold(&once), once, "{s}");
    }
}

#[test]
fn tokens_have_kinds_and_original_offsets() {
    let text = "Can't upload images in #acme today… @Jdoe $ACME e-mail 😡😡 x#no";
    let got = toks(text);
    let kinds: Vec<_> = got
        .iter()
        .map(|(k, b, raw)| (*k, b.as_str(), *raw))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (TokenKind::Word, "can't", "Can't"),
            (TokenKind::Word, "upload", "upload"),
            (TokenKind::Word, "images", "images"),
            (TokenKind::Word, "in", "in"),
            (TokenKind::Hashtag, "acme", "#acme"),
            (TokenKind::Word, "today", "today"),
            (TokenKind::Mention, "jdoe", "@Jdoe"),
            (TokenKind::Cashtag, "acme", "$ACME"),
            (TokenKind::Word, "e", "e"),
            (TokenKind::Word, "mail", "mail"),
            (TokenKind::Emoji, "😡", "😡"),
            (TokenKind::Emoji, "😡", "😡"),
            (TokenKind::Word, "x", "x"),
            (TokenKind::Word, "no", "no"),
        ]
    );
}

#[test]
fn emoji_variation_selectors_fold_away() {
    assert_eq!(fold("❤️"), fold("❤"));
    let got = toks("I ❤️ it");
    assert_eq!(got[1].0, TokenKind::Emoji);
}

#[test]
fn folded_field_maps_back() {
    let mut f = FoldedField::default();
    fold_with_offsets("Ｘ東京タワー", &mut f);
    let at = f.text.find("東京").unwrap();
    let (s, e) = f.original_range(at, at + "東京".len());
    assert_eq!(&"Ｘ東京タワー"[s as usize..e as usize], "東京");
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(3000))]
    #[test]
    fn ascii_fast_path_equals_uax29(s in "[a-cA-C0-2_:.',;#@$ \\-]{0,24}") {
        proptest::prop_assert_eq!(by_ascii_path(&s), by_uax29(&s));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(2000))]
    /// Texts long enough that tokens, joiners and sigils fall on every side
    /// of the 64-byte blocks the fast path classifies, and bodies longer
    /// than its 16-byte lower-casing.
    #[test]
    fn long_ascii_equals_uax29(parts in proptest::collection::vec(proptest::sample::select(vec![
        "a", "Z", "7", "_", "__", "'", ".", ",", ";", ":", "#", "@", "$", " ", "  ", "\t", "-", "!",
        "word", "Word", "WORDS", "3.14", "1,000", "can't", "e.g.", "a:b",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij", "x_y_z_0123456789_QRST_",
    ]), 0..120)) {
        let s: String = parts.concat();
        proptest::prop_assert_eq!(by_ascii_path(&s), by_uax29(&s));
    }
}

#[test]
fn the_block_masks_classify_every_byte_at_every_position() {
    for c in 0..=255u8 {
        for at in 0..64 {
            let mut block = [b' '; 64];
            block[at] = c;
            assert_eq!(
                ascii::masks(&block),
                ascii::masks_by_table(&block),
                "byte {c} at {at}"
            );
            let mut block = [b'q'; 64];
            block[at] = c;
            assert_eq!(
                ascii::masks(&block),
                ascii::masks_by_table(&block),
                "byte {c} at {at}"
            );
        }
    }
}

#[test]
fn tokens_across_blocks_keep_their_offsets() {
    // A token from byte 60 to 70 and a joiner at byte 64, then a body of 100
    // bytes: both cross the fast path's 64-byte blocks.
    let long = "Q".repeat(100);
    let text = format!("{}abcd.EFGHIJ {}", " ".repeat(60), long);
    let t = toks(&text);
    assert_eq!(t.len(), 2);
    assert_eq!((t[0].1.as_str(), t[0].2), ("abcd.efghij", "abcd.EFGHIJ"));
    assert_eq!(t[1].1, long.to_lowercase());
    let mut tokens = Tokens::new();
    tokens.analyze(&text);
    assert_eq!((tokens.tokens[0].start, tokens.tokens[0].end), (60, 71));
    assert_eq!((tokens.tokens[1].start, tokens.tokens[1].end), (72, 172));
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(3000))]
    #[test]
    fn chunked_tokenizing_equals_uax29(parts in proptest::collection::vec(proptest::sample::select(vec![
        "a", "B", "1", "_", "'", ".", ",", ":", "#", "@", "$", " ", "  ", "\t", "\n", "-", "é", "e\u{301}",
        "\u{301}", "\u{903}", "😡", "\u{200d}", "❤\u{fe0f}", "東", "タ", "ß", "\u{ff21}", "🇧🇪",
    ]), 0..16)) {
        let s: String = parts.concat();
        proptest::prop_assert_eq!(by_fast_paths(&s), by_uax29(&s));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(4000))]
    /// Chunks of plain letters (and letters that are not: Hebrew, marks,
    /// a middle dot, Katakana) and emoji with and without spaces around
    /// them: whichever path a chunk takes, the tokens are UAX #29's.
    #[test]
    fn simple_chunks_equal_uax29(parts in proptest::collection::vec(proptest::sample::select(vec![
        "a", "Z", "1", "_", "'", "\"", ".", ",", ":", "#", "@", " ", "\t", "\n", "-",
        "é", "È", "ß", "ñ", "Ω", "ж", "Ж", "ª", "µ", "\u{2bc}", "\u{5d0}", "\u{5f3}", "\u{301}", "·",
        "\u{387}", "\u{660}", "\u{a0}", "\u{ad}", "タ", "😀", "❤", "\u{fe0f}", "\u{200d}", "\u{1f3fb}",
        "©", "🇧", "Straße", "crème",
    ]), 0..20)) {
        let s: String = parts.concat();
        proptest::prop_assert_eq!(by_fast_paths(&s), by_uax29(&s));
    }
}

#[test]
fn plain_letters_and_lone_emoji_take_the_shadow() {
    // Taken: the chunk is tokenized, offsets are the original's, bodies
    // folded from it.
    for text in [
        "Straße",
        "ok crème brûlée",
        "#ñandú",
        "l'école",
        "😀",
        "a ❤\u{fe0f} b",
        "Ωμέγα",
    ] {
        let (mut out, mut folded) = (Vec::new(), String::new());
        assert!(
            simple_chunk::tokenize_simple_chunk(text, 0, text.len(), &mut out, &mut folded),
            "{text}"
        );
        assert_eq!((out, folded, false), by_uax29(text), "{text}");
    }
    // Left to the full algorithm: a mark, Hebrew, an emoji glued to a word
    // or to a modifier, CJK.
    for text in [
        "e\u{301}",
        "\u{5d0}'",
        "a😀",
        "😀\u{1f3fb}",
        "東京",
        "\u{ad}x",
    ] {
        let (mut out, mut folded) = (Vec::new(), String::new());
        assert!(
            !simple_chunk::tokenize_simple_chunk(text, 0, text.len(), &mut out, &mut folded),
            "{text}"
        );
        assert!(out.is_empty() && folded.is_empty());
    }
}

#[test]
fn uax29_joins_seen_in_ascii() {
    let bodies = |s: &str| toks(s).into_iter().map(|t| t.1).collect::<Vec<_>>();
    assert_eq!(
        bodies("can't e.g. 3.14 1,000 a:b x_y a.1 #a.b"),
        ["can't", "e.g", "3.14", "1,000", "a:b", "x_y", "a", "1", "a.b"]
    );
}

#[test]
fn cjk_is_detected() {
    let mut t = Tokens::new();
    t.analyze("hello 東京");
    assert!(t.has_cjk);
    t.analyze("hello world");
    assert!(!t.has_cjk);
}

#[test]
fn the_first_non_ascii_byte_is_found_at_every_position() {
    assert_eq!(first_non_ascii(b""), None);
    for len in 0..20 {
        let mut b = vec![b'a'; len];
        assert_eq!(first_non_ascii(&b), None, "{len}");
        for at in 0..len {
            b[at] = 0xC3;
            assert_eq!(first_non_ascii(&b), Some(at), "{len} {at}");
            if at + 1 < len {
                // A later one does not hide it.
                b[len - 1] = 0xA9;
                assert_eq!(first_non_ascii(&b), Some(at), "{len} {at}");
                b[len - 1] = b'a';
            }
            b[at] = b'a';
        }
    }
}
