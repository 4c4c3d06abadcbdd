//! A validating reader of the `ConversionReview` body that finds where each object begins and
//! ends in the same pass, several times cheaper than serde_json's parse (which the route used to
//! find the objects and which is still what answers every body this reader does not take).
//!
//! The contract is one-sided: when [`review`] returns a review, serde_json would have read the
//! body into the same fields and the same object texts (`RawValue`s); when it returns `None`
//! (the body is not valid JSON, or not a plain `apiextensions` review: a field missing,
//! repeated or of another type, a key with escapes), the route parses the body with serde_json
//! as before, so answers and error messages stay serde_json's. It accepts no more than
//! serde_json: strings without control characters and with valid escapes (`\u` escapes inside
//! the objects are not checked for surrogate pairs, as serde_json does not check the values it
//! skips), numbers as RFC 8259 writes them, `null`/`true`/`false`, objects and lists nested to
//! any depth (serde_json's recursion limit does not apply to the values it skips), nothing but
//! whitespace after the review. The body must be UTF-8 (checked by the caller, once).

use std::borrow::Cow;

/// A review read by [`review`]: its `apiVersion`, `kind` and request, each object as the JSON
/// text received.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Review<'a> {
    pub(crate) api_version: Cow<'a, str>,
    pub(crate) kind: Cow<'a, str>,
    pub(crate) uid: Cow<'a, str>,
    pub(crate) desired_api_version: Cow<'a, str>,
    pub(crate) objects: Vec<&'a str>,
}

/// Reads `body` as a `ConversionReview` with a request, or `None` when serde_json must decide
/// (see the module docs).
pub(crate) fn review(body: &str) -> Option<Review<'_>> {
    let mut reader = Reader::new(body);
    let review = reader.review()?;
    reader.whitespace();
    (reader.at == reader.bytes.len()).then_some(review)
}

/// Whether `text` is one JSON value, as `serde_json::from_str::<IgnoredAny>` would take it
/// (whitespace around it allowed).
pub(crate) fn is_json(text: &str) -> bool {
    let mut reader = Reader::new(text);
    reader.skip_value().is_some() && {
        reader.whitespace();
        reader.at == reader.bytes.len()
    }
}

/// A list or an object, on the stack of open values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    List,
    Object,
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// The lists and objects open around the current position (reused from value to value).
    open: Vec<Open>,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            at: 0,
            open: Vec::new(),
        }
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace (not consumed).
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        // Compact JSON first: every whitespace byte is at most a space.
        let byte = *self.bytes.get(self.at)?;
        if byte > b' ' {
            return Some(byte);
        }
        self.whitespace();
        self.bytes.get(self.at).copied()
    }

    /// Consumes `byte` after whitespace, or `None`.
    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Reads the string whose opening quote is at the current position; returns whether it
    /// holds escapes. Eight bytes at a time while none is a quote, a backslash or a control
    /// character.
    #[inline(always)]
    fn string(&mut self) -> Option<bool> {
        let bytes = self.bytes;
        let mut at = self.at + 1;
        let mut escaped = false;
        loop {
            at = crate::json_scan::skip_plain::<true>(bytes, at);
            match *bytes.get(at)? {
                b'"' => {
                    self.at = at + 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match *bytes.get(at + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                        b'u' => {
                            let hex = bytes.get(at + 2..at + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            at += 6;
                        }
                        _ => return None,
                    }
                }
                0..0x20 => return None,
                _ => at += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at - start
    }

    /// Reads a number (RFC 8259) at the current position.
    fn number(&mut self) -> Option<()> {
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match *self.bytes.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// Reads a key and its colon, after whitespace.
    #[inline(always)]
    fn key(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.expect(b':')
    }

    /// Reads one value (after whitespace) to its end, nested to any depth.
    fn skip_value(&mut self) -> Option<()> {
        self.open.clear();
        loop {
            match self.peek()? {
                b'{' => {
                    self.at += 1;
                    if self.peek()? == b'}' {
                        self.at += 1;
                    } else {
                        self.open.push(Open::Object);
                        self.key()?;
                        continue;
                    }
                }
                b'[' => {
                    self.at += 1;
                    if self.peek()? == b']' {
                        self.at += 1;
                    } else {
                        self.open.push(Open::List);
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b'n' => self.literal(b"null")?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                _ => return None,
            }
            // A value ended: close what ends with it, up to the next element or member.
            loop {
                let Some(&open) = self.open.last() else {
                    return Some(());
                };
                match (self.peek()?, open) {
                    (b',', Open::List) => {
                        self.at += 1;
                        break;
                    }
                    (b',', Open::Object) => {
                        self.at += 1;
                        self.key()?;
                        break;
                    }
                    (b']', Open::List) | (b'}', Open::Object) => {
                        self.at += 1;
                        self.open.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// Reads a key without escapes and its colon; returns the key.
    fn plain_key(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at;
        if self.string()? {
            return None;
        }
        let key = self.text.get(start + 1..self.at - 1)?;
        self.expect(b':')?;
        Some(key)
    }

    /// Reads a string value as serde_json reads a `Cow<str>`: borrowed when it has no escapes.
    fn text(&mut self) -> Option<Cow<'a, str>> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at;
        let escaped = self.string()?;
        let quoted = self.text.get(start..self.at)?;
        if escaped {
            // Rare: serde_json decodes it (and refuses what it refuses, lone surrogates).
            serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
        } else {
            quoted.get(1..quoted.len() - 1).map(Cow::Borrowed)
        }
    }

    /// Calls `member` with each key of the object at the current position; it reads the value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.plain_key()?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Sets `slot` once (serde refuses a field given twice).
    fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
        if slot.is_some() {
            return None;
        }
        *slot = Some(value?);
        Some(())
    }

    fn objects(&mut self) -> Option<Vec<&'a str>> {
        self.expect(b'[')?;
        let mut objects = Vec::new();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(objects);
        }
        loop {
            self.whitespace();
            let start = self.at;
            self.skip_value()?;
            objects.push(self.text.get(start..self.at)?);
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(objects);
                }
                _ => return None,
            }
        }
    }

    fn review(&mut self) -> Option<Review<'a>> {
        let (mut api_version, mut kind, mut request) = (None, None, None);
        self.members(|reader, key| match key {
            "apiVersion" => Self::once(&mut api_version, reader.text()),
            "kind" => Self::once(&mut kind, reader.text()),
            "request" => {
                let (mut uid, mut desired, mut objects) = (None, None, None);
                let read = reader.members(|reader, key| match key {
                    "uid" => Self::once(&mut uid, reader.text()),
                    "desiredAPIVersion" => Self::once(&mut desired, reader.text()),
                    "objects" => Self::once(&mut objects, reader.objects()),
                    _ => reader.skip_value(),
                });
                read?;
                Self::once(&mut request, Some((uid?, desired?, objects?)))
            }
            _ => reader.skip_value(),
        })?;
        let (uid, desired_api_version, objects) = request?;
        Some(Review {
            api_version: api_version?,
            kind: kind?,
            uid,
            desired_api_version,
            objects,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::de::IgnoredAny;

    use super::*;

    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<IgnoredAny>(text).is_ok()
    }

    #[test]
    fn values_as_serde_json_takes_them() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let deep_object = format!("{}1{}", r#"{"a":"#.repeat(300), "}".repeat(300));
        for (text, valid) in [
            ("0", true),
            ("-0", true),
            ("-0.5e-7", true),
            ("1E+2", true),
            ("12.25", true),
            ("01", false),
            ("-", false),
            ("1.", false),
            (".5", false),
            ("1e", false),
            ("1e+", false),
            ("+1", false),
            ("0x1", false),
            ("1.5.", false),
            (r#""a\"b\\c\/d\b\f\n\r\t""#, true),
            (r#""\u00e9\uD800\uDC00\uDEAD""#, true),
            (r#""\u12""#, false),
            (r#""\u12g4""#, false),
            (r#""\x""#, false),
            ("\"a\tb\"", false),
            ("\"a\u{7f}b\u{e9}\"", true),
            ("\"unterminated", false),
            ("\"ends in a backslash\\", false),
            ("null", true),
            ("nul", false),
            ("nulll", false),
            ("true false", false),
            ("[1,2,]", false),
            ("[,]", false),
            ("[1 2]", false),
            (r#"{"a":1,}"#, false),
            (r#"{"a" 1}"#, false),
            (r#"{1:1}"#, false),
            (r#"{"a":1,"a":2}"#, true),
            (r#" { "a" : [ { } , [ ] , "" ] } "#, true),
            ("{", false),
            ("[", false),
            ("]", false),
            ("", false),
            ("  ", false),
            (deep.as_str(), true),
            (deep_object.as_str(), true),
            (&deep[..deep.len() - 1], false),
        ] {
            assert_eq!(is_json(text), valid, "{text:.60}");
            assert_eq!(serde_accepts(text), valid, "serde_json on {text:.60}");
        }
    }

    const REVIEW: &str = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{"uid":"7d3-\u00e9","desiredAPIVersion":"x.io/v2","objects":[{"apiVersion":"x.io/v1","kind":"K","metadata":{"name":"a","managedFields":[{"f:spec":{".":{}}}]},"spec":{"n":-1.5e3,"l":[true,null,"\ud83d\ude00"]}} , {"kind":"K"}],"extra":{"x":[1]}},"more":null}"#;

    /// The review as serde_json reads it into the route's own `ReviewIn` (what the route falls
    /// back to for every body [`review`] does not take).
    fn by_serde(body: &str) -> Option<Review<'_>> {
        let review: super::super::ReviewIn<'_> = serde_json::from_str(body).ok()?;
        let request = review.request?;
        Some(Review {
            api_version: review.api_version,
            kind: review.kind,
            uid: request.uid,
            desired_api_version: request.desired_api_version,
            objects: request.objects.iter().map(|o| o.get()).collect(),
        })
    }

    #[test]
    fn a_review_reads_as_serde_json_reads_it() {
        let fast = review(REVIEW).unwrap();
        assert_eq!(Some(&fast), by_serde(REVIEW).as_ref());
        assert_eq!(fast.uid, "7d3-é");
        assert_eq!(fast.objects.len(), 2);
        assert_eq!(fast.objects[1], r#"{"kind":"K"}"#);
        assert!(matches!(fast.api_version, Cow::Borrowed(_)));
        // What the fast path leaves to serde_json: it either fails there too or reads the same.
        for body in [
            r#"{"kind":"ConversionReview","request":{"uid":"u","desiredAPIVersion":"a/b","objects":[]}}"#,
            r#"{"apiVersion":"v","kind":"K","kind":"K","request":{"uid":"u","desiredAPIVersion":"a/b","objects":[]}}"#,
            r#"{"apiVersion":"v","kind":"K","request":{"uid":"u","desiredAPIVersion":"a/b","objects":[],"uid":"v"}}"#,
            r#"{"apiVersion":"v","kind":"K","request":null}"#,
            r#"{"apiVersion":"v","kind":"K"}"#,
            r#"{"apiVersion":"v","kind":"K","request":{"uid":1,"desiredAPIVersion":"a/b","objects":[]}}"#,
            r#"{"apiVersion":"v","kind":"K","request":{"uid":"\ud800","desiredAPIVersion":"a/b","objects":[]}}"#,
            r#"{"api\u0056ersion":"v","kind":"K","request":{"uid":"u","desiredAPIVersion":"a/b","objects":[]}}"#,
            r#"["v","K",{"uid":"u","desiredAPIVersion":"a/b","objects":[]}]"#,
            r#"{"apiVersion":"v","kind":"K","request":{"uid":"u","desiredAPIVersion":"a/b","objects":[{]}}"#,
            r#"{"apiVersion":"v","kind":"K","request":{"uid":"u","desiredAPIVersion":"a/b","objects":[]}} x"#,
        ] {
            let fast = review(body);
            assert!(fast.is_none(), "{body}");
        }
        let spaced = " {\n\"apiVersion\" : \"v\" , \"kind\":\"K\",\"request\":{\"objects\":[ 1 , [] ],\"uid\":\"u\",\"desiredAPIVersion\":\"a\\/b\"}}\t";
        assert_eq!(review(spaced), by_serde(spaced));
        assert_eq!(review(spaced).unwrap().desired_api_version, "a/b");
    }

    /// Bytes that change what JSON means when put anywhere.
    const EDITS: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b" ",
        b"0",
        b"-",
        b".",
        b"e",
        b"+",
        b"\\u",
        b"\\ud800",
        b"\x01",
        b"\t",
        b"null",
        b"tru",
        b"\"a\":",
        b"1e5",
        b"01",
        b"\xc3\xa9",
    ];

    fn edit(base: &[u8], edits: &[(usize, usize, usize)]) -> Vec<u8> {
        let mut bytes = base.to_vec();
        for &(at, cut, insert) in edits {
            let at = at % (bytes.len() + 1);
            let cut = cut.min(bytes.len() - at);
            bytes.splice(at..at + cut, EDITS[insert % EDITS.len()].iter().copied());
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Random edits of a review: whatever the fast path reads, serde_json reads the same;
        /// and the validator agrees with serde_json on every value.
        #[test]
        fn edits_agree_with_serde_json(
            edits in proptest::collection::vec((0usize..2000, 0usize..3, 0usize..64), 1..4)
        ) {
            let bytes = edit(REVIEW.as_bytes(), &edits);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let fast = review(text);
                if fast.is_some() {
                    prop_assert_eq!(fast, by_serde(text), "{}", text);
                }
                prop_assert_eq!(is_json(text), serde_accepts(text), "{}", text);
            }
        }

        /// Arbitrary text: the validator agrees with serde_json.
        #[test]
        fn any_text_agrees_with_serde_json(text in "[\\[\\]{}\",:0-9eE+.\\\\u tfnrl a-]{0,24}") {
            prop_assert_eq!(is_json(&text), serde_accepts(&text), "{}", text);
            if let Some(fast) = review(&text) {
                prop_assert_eq!(Some(fast), by_serde(&text));
            }
        }
    }
}
