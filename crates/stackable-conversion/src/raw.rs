//! Borrowed views of JSON objects: an object's members as raw JSON text, and writing objects
//! from such members, so that metadata (`managedFields` above all) is carried through without
//! ever being parsed into a tree or serialised again.
//!
//! Reading a member list still scans every byte once (to find where each member ends and to check
//! that the JSON is valid), but allocates only the list itself.

use std::{borrow::Cow, fmt};

use serde::de::{Deserialize, Deserializer, Visitor};

/// A JSON string, borrowed from the input when it has no escapes.
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The value of a raw JSON string, or `None` when it is not a string.
pub(crate) fn text(json: &str) -> Option<Cow<'_, str>> {
    if let Some(inner) = json
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        && !inner.contains('\\')
    {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<Text<'_>>(json).ok().map(|t| t.0)
}

/// The members of a JSON object, in order, each value as raw JSON text.
#[derive(Default)]
pub(crate) struct Members<'a>(pub(crate) Vec<(Cow<'a, str>, &'a str)>);

impl<'a> Members<'a> {
    /// The members of the JSON object `json` (which must be valid JSON: what serde_json wrote,
    /// or a `RawValue`), or `None` when it is not an object.
    pub(crate) fn parse_bytes(json: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(json).ok()?;
        let mut members = Vec::new();
        Scanner::new(text).members(&mut members, |_, _| Ok(false))?;
        Some(Self(members))
    }

    /// The raw value of member `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The value of member `key` when it is a string.
    pub(crate) fn text(&self, key: &str) -> Option<Cow<'a, str>> {
        self.get(key).and_then(text)
    }

    /// The text of the JSON object these are all the members of, found around them in `outer`
    /// (valid JSON the members were read from): from the `{` before the first key to the `}`
    /// after the last value. `None` when there are no members, or the first key is not a slice
    /// of `outer` (a key read with escapes is a copy), or anything but whitespace stands
    /// between the members and the braces.
    pub(crate) fn enclosing_object(&self, outer: &'a str) -> Option<&'a str> {
        let (Some((Cow::Borrowed(first), _)), Some((_, last))) = (self.0.first(), self.0.last())
        else {
            return None;
        };
        let base = outer.as_ptr() as usize;
        let at = |inner: &str| {
            let start = (inner.as_ptr() as usize).checked_sub(base)?;
            (start + inner.len() <= outer.len()).then_some(start)
        };
        let bytes = outer.as_bytes();
        // Before the key (without its quotes): its quote, whitespace, the brace.
        let quote = at(first)?.checked_sub(1)?;
        let open = bytes
            .get(..quote)?
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())?;
        let end = at(last)? + last.len();
        let close = end
            + bytes
                .get(end..)?
                .iter()
                .position(|b| !b.is_ascii_whitespace())?;
        (bytes.get(quote) == Some(&b'"')
            && bytes.get(open) == Some(&b'{')
            && bytes.get(close) == Some(&b'}'))
        .then(|| outer.get(open..=close))
        .flatten()
    }
}

/// An object of a review in one pass: its members as raw JSON, except `metadata`, whose members
/// are read at once (so the largest member, with `managedFields`, is scanned only once).
#[derive(Default)]
pub(crate) struct Object<'a> {
    /// The members other than `metadata`, in order.
    pub(crate) members: Members<'a>,
    /// The members of `metadata`, when it is an object.
    pub(crate) metadata: Option<Members<'a>>,
}

impl<'a> Object<'a> {
    /// Reads the JSON object `json` (what serde_json wrote), or `None` when it is not one.
    #[cfg(test)]
    pub(crate) fn parse_bytes(json: &'a [u8]) -> Option<Self> {
        Self::parse_str(std::str::from_utf8(json).ok()?)
    }

    /// Reads the JSON object `json` (valid JSON), or `None` when it is not one.
    pub(crate) fn parse_str(json: &'a str) -> Option<Self> {
        let mut members = Members::default();
        let mut metadata = Members::default();
        let has_metadata = Self::read_into(json, &mut members, &mut metadata)?;
        Some(Object {
            members,
            metadata: has_metadata.then_some(metadata),
        })
    }

    /// [`parse_str`](Self::parse_str) into buffers reused from object to object (cleared
    /// first): the members but `metadata` into `members`, those of `metadata` into `metadata`;
    /// returns whether `metadata` is an object, or `None` when `json` is not one.
    pub(crate) fn read_into(
        json: &'a str,
        members: &mut Members<'a>,
        metadata: &mut Members<'a>,
    ) -> Option<bool> {
        members.0.clear();
        metadata.0.clear();
        let mut has_metadata = false;
        let mut scanner = Scanner::new(json);
        scanner.members(&mut members.0, |scanner, key| {
            if key != "metadata" {
                return Ok(false);
            }
            // As serde_json: the last `metadata` counts.
            metadata.0.clear();
            has_metadata = scanner.peek() == Some(b'{');
            if has_metadata {
                scanner
                    .members(&mut metadata.0, |_, _| Ok(false))
                    .ok_or(())?;
            } else {
                scanner.skip_value().ok_or(())?;
            }
            Ok(true)
        })?;
        Some(has_metadata)
    }
}

const QUOTE: u8 = 1;
const OPEN: u8 = 2;
const CLOSE: u8 = 3;

/// What matters to [`Scanner::skip_value`] inside a list or map: quotes and brackets.
static STRUCTURE: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'"' as usize] = QUOTE;
    table[b'{' as usize] = OPEN;
    table[b'[' as usize] = OPEN;
    table[b'}' as usize] = CLOSE;
    table[b']' as usize] = CLOSE;
    table
};

/// A reader of JSON text that is known to be valid (a `RawValue`, or what serde_json wrote):
/// it only finds where members and values begin and end, without checking the grammar again,
/// which is several times faster than parsing. Text that is not valid JSON gives a wrong
/// split or `None`, never a panic.
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.bytes.get(self.at) {
            if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    /// Past the string whose opening quote is at `start`: eight bytes at a time while none of
    /// them is a quote or a backslash.
    #[inline]
    fn string_end(&self, start: usize) -> Option<usize> {
        self.string_end_escaped(start).map(|(end, _)| end)
    }

    /// [`string_end`](Self::string_end), and whether the string holds escapes.
    #[inline(always)]
    fn string_end_escaped(&self, start: usize) -> Option<(usize, bool)> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        let bytes = self.bytes;
        let mut at = start + 1;
        let mut escaped = false;
        loop {
            while let Some(chunk) = bytes.get(at..at + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let word = u64::from_le_bytes(word);
                let quote = word ^ (ONES * u64::from(b'"'));
                let backslash = word ^ (ONES * u64::from(b'\\'));
                // A byte of `quote` or `backslash` is zero where the byte was one of the two.
                let found = ((quote.wrapping_sub(ONES) & !quote)
                    | (backslash.wrapping_sub(ONES) & !backslash))
                    & HIGHS;
                if found != 0 {
                    at += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                at += 8;
            }
            match *bytes.get(at)? {
                b'"' => return Some((at + 1, escaped)),
                // Skip the backslash and the escaped character.
                b'\\' => {
                    escaped = true;
                    at += 2;
                }
                _ => at += 1,
            }
        }
    }

    /// Skips the value at the current position; returns its text.
    fn skip_value(&mut self) -> Option<&'a str> {
        let first = self.peek()?;
        let start = self.at;
        let bytes = self.bytes;
        let end = match first {
            b'"' => self.string_end(start)?,
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut at = start;
                loop {
                    while bytes
                        .get(at)
                        .is_some_and(|&b| STRUCTURE[usize::from(b)] == 0)
                    {
                        at += 1;
                    }
                    match STRUCTURE[usize::from(*bytes.get(at)?)] {
                        QUOTE => at = self.string_end(at)?,
                        OPEN => {
                            depth += 1;
                            at += 1;
                        }
                        _ => {
                            depth -= 1;
                            at += 1;
                            if depth == 0 {
                                break at;
                            }
                        }
                    }
                }
            }
            _ => {
                let rest = bytes.get(start..)?;
                start
                    + rest
                        .iter()
                        .position(|&b| {
                            matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                        })
                        .unwrap_or(rest.len())
            }
        };
        if end == start {
            return None;
        }
        self.at = end;
        self.text.get(start..end)
    }

    /// Reads the object at the current position member by member, appending them to
    /// `members`. `nested` is called with each key before its value is read; it may read the
    /// value itself and return `true`, or return `false` to have it taken as raw text.
    fn members(
        &mut self,
        members: &mut Vec<(Cow<'a, str>, &'a str)>,
        mut nested: impl FnMut(&mut Self, &str) -> Result<bool, ()>,
    ) -> Option<()> {
        if self.peek()? != b'{' {
            return None;
        }
        self.at += 1;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let (key_end, escaped) = self.string_end_escaped(self.at)?;
            // Without escapes, the key is the text between the quotes.
            let key = if escaped {
                text(self.text.get(self.at..key_end)?)?
            } else {
                Cow::Borrowed(self.text.get(self.at + 1..key_end - 1)?)
            };
            self.at = key_end;
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.peek()?;
            if !nested(self, &key).ok()? {
                let value = self.skip_value()?;
                members.push((key, value));
            }
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
}

/// Whether JSON text is `null`, `{}` or `[]` (whitespace aside).
pub(crate) fn is_blank_text(json: &[u8]) -> bool {
    let mut compact = json.iter().copied().filter(|b| !b.is_ascii_whitespace());
    let mut head = [0u8; 5];
    let mut len = 0;
    for byte in compact.by_ref() {
        if len == head.len() {
            return false;
        }
        head[len] = byte;
        len += 1;
    }
    matches!(&head[..len], b"null" | b"{}" | b"[]")
}

/// Where [`ObjectWriter`] writes: bytes, or a `String` (which the typed steps then read as
/// text without checking again that it is UTF-8).
pub(crate) trait JsonOut {
    /// Appends an ASCII byte (a quote, a colon, a comma or a brace).
    fn ascii(&mut self, byte: u8);
    /// Appends text.
    fn text(&mut self, text: &str);
    /// Appends `text` as a JSON string.
    fn string(&mut self, text: &str);
}

impl JsonOut for Vec<u8> {
    fn ascii(&mut self, byte: u8) {
        self.push(byte);
    }
    fn text(&mut self, text: &str) {
        self.extend_from_slice(text.as_bytes());
    }
    fn string(&mut self, text: &str) {
        crate::json_ser::write_str(self, text);
    }
}

impl JsonOut for String {
    fn ascii(&mut self, byte: u8) {
        debug_assert!(byte.is_ascii());
        self.push(char::from(byte));
    }
    fn text(&mut self, text: &str) {
        self.push_str(text);
    }
    fn string(&mut self, text: &str) {
        if crate::json_ser::needs_escape(text) {
            // Rare (keys and the apiVersion): serde_json escapes it; writing a `&str` cannot
            // fail.
            if let Ok(json) = serde_json::to_string(text) {
                self.push_str(&json);
            }
        } else {
            self.push('"');
            self.push_str(text);
            self.push('"');
        }
    }
}

/// Writes JSON objects member by member.
pub(crate) struct ObjectWriter<'o, O: JsonOut = Vec<u8>> {
    out: &'o mut O,
    first: bool,
}

impl<'o, O: JsonOut> ObjectWriter<'o, O> {
    /// Opens an object.
    pub(crate) fn open(out: &'o mut O) -> Self {
        out.ascii(b'{');
        Self { out, first: true }
    }

    /// Writes the comma before the next member, if any.
    fn comma(&mut self) {
        if !self.first {
            self.out.ascii(b',');
        }
        self.first = false;
    }

    /// Writes the key of the next member.
    fn key(&mut self, key: &str) {
        self.comma();
        self.out.string(key);
        self.out.ascii(b':');
    }

    /// A member whose value is raw JSON text.
    pub(crate) fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.text(json);
    }

    /// A member read by [`Members`]: its key is copied without looking for characters to escape
    /// when it is borrowed (read from valid JSON without a backslash, so it holds no quote and no
    /// control character), and its value is raw JSON text.
    #[expect(
        clippy::ptr_arg,
        reason = "whether the key is borrowed is what tells it needs no escaping"
    )]
    pub(crate) fn member(&mut self, key: &Cow<'_, str>, json: &str) {
        match key {
            Cow::Borrowed(key) => {
                self.comma();
                self.out.ascii(b'"');
                self.out.text(key);
                self.out.text("\":");
                self.out.text(json);
            }
            Cow::Owned(key) => self.raw(key, json),
        }
    }

    /// A member whose value is an object, written with the returned writer (close it before
    /// writing the next member here).
    pub(crate) fn nested(&mut self, key: &str) -> ObjectWriter<'_, O> {
        self.key(key);
        ObjectWriter::open(self.out)
    }

    /// A member whose value is a string.
    pub(crate) fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.string(value);
    }

    /// Closes the object.
    pub(crate) fn close(self) {
        self.out.ascii(b'}');
    }
}

impl ObjectWriter<'_> {
    /// A member whose value is raw JSON bytes.
    pub(crate) fn raw_bytes(&mut self, key: &str, json: &[u8]) {
        self.key(key);
        self.out.extend_from_slice(json);
    }

    /// A member whose key (without its quotes) and value are bytes of JSON text that
    /// [`json_ser::write_object`](crate::json_ser::write_object) wrote and noted: the key holds
    /// no character to escape.
    pub(crate) fn plain_member(&mut self, key: &[u8], json: &[u8]) {
        self.comma();
        self.out.push(b'"');
        self.out.extend_from_slice(key);
        self.out.extend_from_slice(b"\":");
        self.out.extend_from_slice(json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_around_its_members() {
        let json = r#"{"a":1, "metadata" : { "name":"x" ,"labels":{"k":"v"}  } ,"z":[]}"#;
        let mut members = Members::default();
        let mut metadata = Members::default();
        Object::read_into(json, &mut members, &mut metadata).unwrap();
        assert_eq!(
            metadata.enclosing_object(json),
            Some(r#"{ "name":"x" ,"labels":{"k":"v"}  }"#)
        );
        // Not slices of the text: no answer.
        assert_eq!(metadata.enclosing_object(r#"{"name":"x"}"#), None);
        // No members: nothing to find it by.
        let empty = r#"{"metadata":{}}"#;
        Object::read_into(empty, &mut members, &mut metadata).unwrap();
        assert_eq!(metadata.enclosing_object(empty), None);
        // A first key read with escapes is a copy.
        let escaped = r#"{"metadata":{"n\u0061me":"x"}}"#;
        Object::read_into(escaped, &mut members, &mut metadata).unwrap();
        assert_eq!(metadata.enclosing_object(escaped), None);
    }

    #[test]
    fn members_borrow_their_values_and_keys() {
        let json = r#"{"a": {"x": [1, 2]}, "b\n": "t\"x", "c": null}"#;
        let members = Members::parse_bytes(json.as_bytes()).unwrap();
        assert_eq!(members.0.len(), 3);
        assert!(matches!(members.0[0].0, Cow::Borrowed("a")));
        assert_eq!(members.get("a").unwrap(), r#"{"x": [1, 2]}"#);
        assert_eq!(members.text("b\n").unwrap(), "t\"x");
        assert!(members.text("a").is_none());
        assert!(is_blank_text(members.get("c").unwrap().as_bytes()));
        assert!(!is_blank_text(members.get("a").unwrap().as_bytes()));
        assert!(is_blank_text(b" { } "));
        assert!(!is_blank_text(b"nulll"));
        assert!(!is_blank_text(b"\"\""));
        assert!(Members::parse_bytes(b"[1]").is_none());
        assert!(Members::parse_bytes(b"{\"a\": }").is_none());
    }

    #[test]
    fn the_scanner_agrees_with_serde_json() {
        for json in [
            r#"{"apiVersion":"x/v1","kind":"K","metadata":{"name":"n","labels":{"a":"b"},"managedFields":[{"f:x":{".":{},"f:\"q\\":{}}}]},"spec":{"s":"]}\\","n":-1.5e3,"t":true,"z":null,"l":[1,[2,{}]]}}"#,
            " { \"metadata\" : null , \"spec\" : { } , \"k\\u0041\" : \"\\\"\" } ",
            r#"{"metadata":{}}"#,
            r#"{}"#,
        ] {
            let object = Object::parse_bytes(json.as_bytes()).unwrap();
            let mut expected: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(json).unwrap();
            let metadata = expected.remove("metadata");
            let read = |members: &Members<'_>| -> serde_json::Map<String, serde_json::Value> {
                members
                    .0
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::from_str(v).unwrap()))
                    .collect()
            };
            assert_eq!(read(&object.members), expected, "{json}");
            match metadata {
                Some(serde_json::Value::Object(map)) => {
                    assert_eq!(read(object.metadata.as_ref().unwrap()), map, "{json}");
                }
                _ => assert!(object.metadata.is_none(), "{json}"),
            }
        }
        assert!(Object::parse_bytes(b"[1]").is_none());
        assert!(Object::parse_bytes(b"{\"a\":1").is_none());
        assert!(Object::parse_bytes(b"{\"a\":\"1}").is_none());
        assert_eq!(text(r#""a\u0041""#).unwrap(), "aA");
        assert!(text("1").is_none());
    }

    #[test]
    fn the_writer_writes_valid_json() {
        let mut out = Vec::new();
        let mut object = ObjectWriter::open(&mut out);
        object.string("k\"ey", "v\u{1}");
        object.raw("n", "[1,{\"a\":2}]");
        object.raw_bytes("r", b"{}");
        object.plain_member(b"p", b"[]");
        object.member(&Cow::Borrowed("b"), "true");
        object.member(&Cow::Owned("o\"k".to_owned()), "null");
        object.close();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"k\"ey": "v\u{1}", "n": [1, {"a": 2}], "r": {}, "p": [], "b": true, "o\"k": null})
        );
    }
}
