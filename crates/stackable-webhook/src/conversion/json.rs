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
//!
//! While it validates each object, the reader also notes where the object's top-level members
//! and the members of its `metadata` are ([`ReviewMembers`]), so that a converter need not read
//! the object again to find them. The notes are what serde_json would read into a map of raw
//! values at those two levels (the last `metadata` counts, as in serde_json; other repeated keys
//! are all noted, in order); an object with a key holding escapes at those levels, or that is
//! not an object, has no notes.

use std::{borrow::Cow, ops::Range};

/// A review read by [`review`]: its `apiVersion`, `kind` and request, each object as the JSON
/// text received, and the notes on the objects' members.
#[derive(Debug)]
pub(crate) struct Review<'a> {
    pub(crate) api_version: Cow<'a, str>,
    pub(crate) kind: Cow<'a, str>,
    pub(crate) uid: Cow<'a, str>,
    pub(crate) desired_api_version: Cow<'a, str>,
    pub(crate) objects: Vec<&'a str>,
    pub(crate) members: ReviewMembers<'a>,
}

/// One member noted by the reader: the byte offsets in the body of its key (without the quotes)
/// and of its value (without the whitespace around it). Offsets are `u32` to keep the notes
/// small (16 bytes a member); a body of 4 GiB or more gets no notes.
type Span = [u32; 4];

/// Kept notes (see [`crate::buffers`]): a large review's notes serve the next one.
static KEPT_NOTES: crate::buffers::Kept<Span> = crate::buffers::Kept::new(crate::buffers::KEEP);

/// Where the noted members of one object are in [`ReviewMembers::spans`].
#[derive(Debug, Clone)]
struct Noted {
    /// The top-level members but `metadata`.
    members: Range<usize>,
    /// The members of `metadata`, when its (last) value is an object.
    metadata: Option<Range<usize>>,
}

/// The members of the objects of a review, as the reader noted them while validating the
/// body (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct ReviewMembers<'a> {
    body: &'a str,
    spans: crate::buffers::Buffer<Span>,
    /// One entry per object, `None` for an object without notes.
    objects: Vec<Option<Noted>>,
}

impl<'a> ReviewMembers<'a> {
    /// The noted members of object `index`, `None` when it has none.
    pub(crate) fn object(&self, index: usize) -> Option<ObjectMembers<'_, 'a>> {
        let noted = self.objects.get(index)?.as_ref()?;
        Some(ObjectMembers {
            review: self,
            noted,
        })
    }
}

/// The members of one object of a review as the route's reader noted them while validating the
/// body (see [`RawConversionRequest::object_members`](crate::RawConversionRequest::object_members)):
/// each key (without its quotes; it holds no escapes) and value (the JSON text, without the
/// whitespace around it), borrowed from the body.
#[derive(Debug, Clone, Copy)]
pub struct ObjectMembers<'r, 'a> {
    review: &'r ReviewMembers<'a>,
    noted: &'r Noted,
}

impl<'r, 'a> ObjectMembers<'r, 'a> {
    /// The top-level members but `metadata`, in order (a key given twice is given twice).
    pub fn members(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'r {
        self.spans(self.noted.members.clone())
    }

    /// The members of `metadata` when it is an object (the last `metadata`, when given twice),
    /// in order; `None` when there is no `metadata` or it is not an object.
    pub fn metadata(&self) -> Option<impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'r> {
        Some(self.spans(self.noted.metadata.clone()?))
    }

    fn spans(&self, range: Range<usize>) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'r {
        let body = self.review.body;
        // The spans are where the reader found keys and values in `body`: always in it, on
        // character boundaries.
        let at =
            move |start: u32, end: u32| body.get(start as usize..end as usize).unwrap_or_default();
        self.review
            .spans
            .get(range)
            .unwrap_or_default()
            .iter()
            .map(move |&[key, key_end, value, value_end]| (at(key, key_end), at(value, value_end)))
    }
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

    /// The offset `at` as a `u32` (bodies of 4 GiB or more are not noted).
    fn offset(at: usize) -> Option<u32> {
        u32::try_from(at).ok()
    }

    /// Reads the members of the object at the current position (after `{`) to its `}`, one
    /// level deep, as [`skip_value`](Self::skip_value) would; appends to `spans` each member
    /// but those that `nested` reads (it is called with the key when the key holds no escapes,
    /// after the colon, and returns whether it read the value). Returns whether every key was
    /// without escapes and every offset fits the notes.
    fn noted_members(
        &mut self,
        spans: &mut Vec<Span>,
        mut nested: impl FnMut(&mut Self, &[u8]) -> Option<bool>,
    ) -> Option<bool> {
        let mut plain = true;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(plain);
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key_start = self.at + 1;
            let escaped = self.string()?;
            let key_end = self.at - 1;
            self.expect(b':')?;
            self.peek()?;
            let value_start = self.at;
            let key = self.bytes.get(key_start..key_end)?;
            if escaped || !plain {
                plain = false;
                self.skip_value()?;
            } else if !nested(self, key)? {
                // Most values at these levels are strings: read them without the set-up of
                // `skip_value`.
                if self.bytes.get(self.at) == Some(&b'"') {
                    self.string()?;
                } else {
                    self.skip_value()?;
                }
                match (
                    Self::offset(key_start),
                    Self::offset(key_end),
                    Self::offset(value_start),
                    Self::offset(self.at),
                ) {
                    (Some(a), Some(b), Some(c), Some(d)) => spans.push([a, b, c, d]),
                    _ => plain = false,
                }
            }
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(plain);
                }
                _ => return None,
            }
        }
    }

    /// Reads the object at the current position (its `{`) as
    /// [`skip_value`](Self::skip_value) would, noting its members and those of its `metadata`
    /// into `notes`; `metadata` is a buffer reused from object to object.
    fn noted_object(
        &mut self,
        notes: &mut ReviewMembers<'a>,
        metadata: &mut Vec<Span>,
    ) -> Option<()> {
        self.at += 1;
        let first = notes.spans.len();
        metadata.clear();
        let mut has_metadata = false;
        let mut metadata_plain = true;
        let plain = self.noted_members(&mut notes.spans, |reader, key| {
            if key != b"metadata" {
                return Some(false);
            }
            // The last `metadata` counts, as in serde_json.
            metadata.clear();
            has_metadata = reader.peek()? == b'{';
            if has_metadata {
                reader.at += 1;
                metadata_plain = reader.noted_members(metadata, |_, _| Some(false))?;
            } else {
                metadata_plain = true;
                reader.skip_value()?;
            }
            Some(true)
        })?;
        let noted = if plain && metadata_plain {
            let members = first..notes.spans.len();
            let metadata = has_metadata.then(|| {
                notes.spans.extend_from_slice(metadata);
                members.end..notes.spans.len()
            });
            Some(Noted { members, metadata })
        } else {
            notes.spans.truncate(first);
            None
        };
        notes.objects.push(noted);
        Some(())
    }

    fn objects(&mut self, notes: &mut ReviewMembers<'a>) -> Option<Vec<&'a str>> {
        self.expect(b'[')?;
        let mut objects = Vec::new();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(objects);
        }
        let mut metadata = Vec::new();
        loop {
            self.whitespace();
            let start = self.at;
            if self.bytes.get(start) == Some(&b'{') {
                self.noted_object(notes, &mut metadata)?;
            } else {
                self.skip_value()?;
                notes.objects.push(None);
            }
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
        let mut notes = ReviewMembers {
            body: self.text,
            // A CronTab with `managedFields` has ~14 members at the two levels noted in ~900
            // bytes: reserving one note per 64 bytes spares the notes growing (and being copied)
            // while the objects are read. A MiB of notes or more is reserved and kept as the body
            // and the answer are (`buffers`): not resident in an arena after the review, and
            // taken by the next large review within two seconds.
            spans: KEPT_NOTES.buffer(self.text.len() / 64),
            objects: Vec::new(),
        };
        self.members(|reader, key| match key {
            "apiVersion" => Self::once(&mut api_version, reader.text()),
            "kind" => Self::once(&mut kind, reader.text()),
            "request" => {
                let (mut uid, mut desired, mut objects) = (None, None, None);
                let read = reader.members(|reader, key| match key {
                    "uid" => Self::once(&mut uid, reader.text()),
                    "desiredAPIVersion" => Self::once(&mut desired, reader.text()),
                    "objects" => Self::once(&mut objects, reader.objects(&mut notes)),
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
            members: notes,
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

    /// What a review read by [`review`] shares with serde_json's read of it.
    type Fields<'a> = (
        Cow<'a, str>,
        Cow<'a, str>,
        Cow<'a, str>,
        Cow<'a, str>,
        Vec<&'a str>,
    );

    fn fields<'a>(review: &Review<'a>) -> Fields<'a> {
        (
            review.api_version.clone(),
            review.kind.clone(),
            review.uid.clone(),
            review.desired_api_version.clone(),
            review.objects.clone(),
        )
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
    fn by_serde(body: &str) -> Option<Fields<'_>> {
        let review: super::super::ReviewIn<'_> = serde_json::from_str(body).ok()?;
        let request = review.request?;
        Some((
            review.api_version,
            review.kind,
            request.uid,
            request.desired_api_version,
            request.objects.iter().map(|o| o.get()).collect(),
        ))
    }

    #[test]
    fn a_review_reads_as_serde_json_reads_it() {
        let fast = review(REVIEW).unwrap();
        assert_eq!(Some(fields(&fast)), by_serde(REVIEW));
        crate::fuzzing::notes_agree(&fast).unwrap();
        let first = fast.members.object(0).unwrap();
        assert_eq!(
            first.members().collect::<Vec<_>>(),
            [
                ("apiVersion", r#""x.io/v1""#),
                ("kind", r#""K""#),
                ("spec", r#"{"n":-1.5e3,"l":[true,null,"\ud83d\ude00"]}"#)
            ]
        );
        assert_eq!(
            first.metadata().unwrap().collect::<Vec<_>>(),
            [
                ("name", r#""a""#),
                ("managedFields", r#"[{"f:spec":{".":{}}}]"#)
            ]
        );
        assert!(fast.members.object(1).unwrap().metadata().is_none());
        assert!(fast.members.object(2).is_none());
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
        assert_eq!(review(spaced).as_ref().map(fields), by_serde(spaced));
        assert_eq!(review(spaced).unwrap().desired_api_version, "a/b");
        assert!(review(spaced).unwrap().members.object(0).is_none());
    }

    #[test]
    fn the_notes_are_what_serde_json_reads() {
        let objects = [
            // Repeated keys: all noted; the last `metadata` counts.
            r#"{"a":1,"metadata":{"name":"x"},"a":2,"metadata":{"name":"y","name":"z"}}"#,
            r#"{"metadata":{"name":"x"},"metadata":null}"#,
            r#"{"metadata":[],"spec":{"metadata":{"name":"inner"}}}"#,
            " { \"kind\" : \"K\" ,\n\"metadata\" : { \"labels\" : { \"a\" : \"b\" } } , \"spec\" : [ 1 , 2 ] } ",
            r#"{}"#,
            r#"{"metadata":{}}"#,
            // Keys with escapes at the two levels noted: no notes.
            r#"{"k\u0041":1}"#,
            r#"{"metadata":{"n\"":1}}"#,
            // Below them, escapes do not matter.
            r#"{"spec":{"k\u0041":"\"v\""},"metadata":{"labels":{"\\":"x"}}}"#,
            r#"1"#,
            r#"[{"a":1}]"#,
            r#""{}""#,
        ];
        let body = format!(
            r#"{{"apiVersion":"v","kind":"K","request":{{"uid":"u","desiredAPIVersion":"a/b","objects":[{}]}}}}"#,
            objects.join(",")
        );
        let fast = review(&body).unwrap();
        assert_eq!(Some(fields(&fast)), by_serde(&body));
        crate::fuzzing::notes_agree(&fast).unwrap();
        let noted: Vec<bool> = (0..objects.len())
            .map(|index| fast.members.object(index).is_some())
            .collect();
        assert_eq!(
            noted,
            [
                true, true, true, true, true, true, false, false, true, false, false, false
            ]
        );
        let first = fast.members.object(0).unwrap();
        assert_eq!(
            first.members().collect::<Vec<_>>(),
            [("a", "1"), ("a", "2")]
        );
        assert_eq!(
            first.metadata().unwrap().collect::<Vec<_>>(),
            [("name", r#""y""#), ("name", r#""z""#)]
        );
        assert!(fast.members.object(1).unwrap().metadata().is_none());
        assert!(fast.members.object(2).unwrap().metadata().is_none());
        let spaced = fast.members.object(3).unwrap();
        assert_eq!(
            spaced.members().collect::<Vec<_>>(),
            [("kind", r#""K""#), ("spec", "[ 1 , 2 ]")]
        );
        assert_eq!(
            spaced.metadata().unwrap().collect::<Vec<_>>(),
            [("labels", r#"{ "a" : "b" }"#)]
        );
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
                if let Some(fast) = review(text) {
                    prop_assert_eq!(Some(fields(&fast)), by_serde(text), "{}", text);
                    let notes = crate::fuzzing::notes_agree(&fast);
                    prop_assert!(notes.is_ok(), "{:?}", notes);
                }
                prop_assert_eq!(is_json(text), serde_accepts(text), "{}", text);
            }
        }

        /// Arbitrary text: the validator agrees with serde_json.
        #[test]
        fn any_text_agrees_with_serde_json(text in "[\\[\\]{}\",:0-9eE+.\\\\u tfnrl a-]{0,24}") {
            prop_assert_eq!(is_json(&text), serde_accepts(&text), "{}", text);
            if let Some(fast) = review(&text) {
                prop_assert_eq!(Some(fields(&fast)), by_serde(&text));
                let notes = crate::fuzzing::notes_agree(&fast);
                prop_assert!(notes.is_ok(), "{:?}", notes);
            }
        }
    }
}
