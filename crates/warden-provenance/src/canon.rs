//! The one canonical form every text takes before its values are extracted, on both sides of
//! provenance (content as it is indexed, arguments as they are traced), so that a value the agent
//! re-typed, re-encoded or disguised still matches where it came from.
//!
//! What it undoes: Unicode compatibility forms (NFKC: full-width letters, ligatures, styled
//! mathematical letters), invisible characters (zero-width spaces and joiners, bidirectional
//! controls, soft hyphens: every default-ignorable code point), homoglyphs of ASCII letters and
//! digits (UTS #39 confusables: a Cyrillic `а` in `pаypal`), and URL percent-encoding. Case,
//! whitespace, URL schemes, `www.` and the punctuation of phone and account numbers are folded
//! per kind of value by the extractors.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;
use unicode_script::{Script, UnicodeScript};

/// The canonical form of a text. ASCII text without `%` escapes is returned as it is.
pub fn canonical(text: &str) -> Cow<'_, str> {
    let decoded = percent_decoded(text);
    if decoded.is_ascii() {
        return decoded;
    }
    let mut out = String::with_capacity(decoded.len());
    for c in decoded.nfkc() {
        // Latin letters with accents or ligatures (é, Æ, ß) are letters of their own, not
        // disguises of ASCII ones.
        if c.is_ascii() || c.script() == Script::Latin {
            out.push(c);
            continue;
        }
        // The UTS #39 skeleton of one character: empty for an invisible one, an ASCII prototype
        // for a homoglyph. A character with no ASCII look-alike (é, 東) stays as it is.
        let mut buf = [0u8; 4];
        let skeleton: String = unicode_security::skeleton(c.encode_utf8(&mut buf)).collect();
        if skeleton.is_ascii() {
            out.push_str(&skeleton);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `%XX` escapes decoded where they spell valid UTF-8 (`a%40b.org` → `a@b.org`); anything else is
/// kept as written.
fn percent_decoded(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disguises_fold_to_the_plain_value() {
        assert_eq!(canonical("p\u{430}yp\u{430}l.example"), "paypal.example");
        assert_eq!(
            canonical("ev\u{200b}e@mail\u{200d}.example"),
            "eve@mail.example"
        );
        assert_eq!(
            canonical("ｅｖｅ＠ｍａｉｌ．ｅｘａｍｐｌｅ"),
            "eve@mail.example"
        );
        assert_eq!(canonical("eve%40mail.example"), "eve@mail.example");
        assert_eq!(canonical("\u{202e}elpmaxe\u{202c}"), "elpmaxe");
    }

    #[test]
    fn ordinary_text_keeps_its_letters() {
        assert_eq!(canonical("Café Zürich 東京 Ærø"), "Café Zürich 東京 Ærø");
        assert_eq!(canonical("100% sure, 50%off"), "100% sure, 50%off");
        assert_eq!(canonical("%ff%fe"), "%ff%fe");
        assert!(matches!(canonical("plain ascii"), Cow::Borrowed(_)));
    }
}
