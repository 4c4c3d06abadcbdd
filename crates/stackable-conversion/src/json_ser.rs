//! Writing the typed result of a step as JSON: byte for byte what `serde_json::to_writer` writes
//! (compact), but strings without characters to escape are copied eight bytes at a time instead
//! of byte by byte (serde_json's escaping was a tenth of the cost of converting an object).
//!
//! Whatever this writer does not handle the way serde_json does it without thinking twice (map
//! keys that are not strings, byte strings, 128-bit integers, serde_json's own `RawValue` and
//! `Number` tokens, errors raised by a `Serialize` impl) makes it give up: the text is then
//! written again by serde_json, which also gives the error, so answers and messages are
//! serde_json's.
//!
//! [`write_object`] also notes where the members of the written object and of its `metadata` are
//! (a [`Layout`]), so that the converted object need not be read again to find them.

use std::{fmt, ops::Range};

use serde::{
    Serialize,
    ser::{self, Impossible},
};

/// Writes `value` as compact JSON to `out`, as `serde_json::to_writer` does.
pub(crate) fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let mut layout = Layout::default();
    write_with(value, out, &mut layout, false)
}

/// Writes `value` (an object) into `out`, cleared first, as `serde_json::to_writer` does, and
/// notes in `layout` where its members and those of its `metadata` are (see
/// [`Layout::object`]).
pub(crate) fn write_object<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    layout: &mut Layout,
) -> serde_json::Result<()> {
    out.clear();
    write_with(value, out, layout, true)
}

fn write_with<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    layout: &mut Layout,
    record: bool,
) -> serde_json::Result<()> {
    let start = out.len();
    layout.clear();
    let mut writer = Writer {
        out,
        depth: 0,
        in_metadata: false,
        layout,
        record,
    };
    if value.serialize(&mut writer).is_ok() {
        layout.valid = record && layout.valid;
        return Ok(());
    }
    layout.clear();
    out.truncate(start);
    serde_json::to_writer(&mut *out, value)
}

/// A member noted by [`write_object`]: its key (without the quotes) and its value, as byte
/// ranges of the text written.
type Span = (Range<usize>, Range<usize>);

/// Where the members of an object written by [`write_object`] are: what
/// [`Object::parse_str`](crate::raw::Object::parse_str) would find in the text, without reading
/// it. Reused from object to object.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    /// Whether the spans describe the text (the value was an object, written by this writer,
    /// every key of the two levels without escapes, no enum variant among them).
    valid: bool,
    /// The top-level members but `metadata`.
    members: Vec<Span>,
    /// The members of `metadata`, when its (last) value is an object.
    metadata: Vec<Span>,
    has_metadata: bool,
}

impl Layout {
    fn clear(&mut self) {
        self.valid = false;
        self.members.clear();
        self.metadata.clear();
        self.has_metadata = false;
    }

    /// Forgets the spans (the text they describe was replaced).
    pub(crate) fn invalidate(&mut self) {
        self.clear();
    }

    /// Whether the spans describe the text [`write_object`] wrote last.
    pub(crate) fn is_valid(&self) -> bool {
        self.valid
    }

    /// The top-level members but `metadata` of `text` (what [`write_object`] wrote, the
    /// layout valid), each key (without its quotes, no escapes in it) and value as bytes of
    /// `text`.
    pub(crate) fn members<'a>(
        &self,
        text: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a, '_> {
        Self::spans(&self.members, text)
    }

    /// The value of the first member `key` of the `metadata` of `text` (see
    /// [`members`](Self::members)), as [`Members::get`](crate::raw::Members::get) finds it.
    pub(crate) fn metadata_member<'a>(&self, text: &'a [u8], key: &str) -> Option<&'a [u8]> {
        if !self.has_metadata {
            return None;
        }
        Self::spans(&self.metadata, text)
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, value)| value)
    }

    fn spans<'a, 's>(
        spans: &'s [Span],
        text: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a, 's> {
        spans.iter().filter_map(move |(key, value)| {
            Some((text.get(key.clone())?, text.get(value.clone())?))
        })
    }

    /// The object in `text` (what [`write_object`] wrote), as
    /// [`Object::parse_str`](crate::raw::Object::parse_str) reads it; `None` when the spans do
    /// not describe it.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn object<'a>(&self, text: &'a str) -> Option<crate::raw::Object<'a>> {
        if !self.valid {
            return None;
        }
        let members = |spans: &[Span]| -> Option<crate::raw::Members<'a>> {
            spans
                .iter()
                .map(|(key, value)| {
                    Some((
                        std::borrow::Cow::Borrowed(text.get(key.clone())?),
                        text.get(value.clone())?,
                    ))
                })
                .collect::<Option<Vec<_>>>()
                .map(crate::raw::Members)
        };
        Some(crate::raw::Object {
            members: members(&self.members)?,
            metadata: if self.has_metadata {
                Some(members(&self.metadata)?)
            } else {
                None
            },
        })
    }
}

/// `value` as compact JSON, as `serde_json::to_vec` writes it.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    write(value, &mut out)?;
    Ok(out)
}

/// This writer gives up (serde_json writes the value instead).
#[derive(Debug)]
struct GiveUp;

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("left to serde_json")
    }
}

impl std::error::Error for GiveUp {}

impl ser::Error for GiveUp {
    fn custom<T: fmt::Display>(_: T) -> Self {
        GiveUp
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether one of the eight bytes of `word` is a quote, a backslash or below 0x20.
#[inline(always)]
fn word_needs_escape(word: [u8; 8]) -> bool {
    let word = u64::from_le_bytes(word);
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    // A high bit is set where a byte is a quote, a backslash or below 0x20 (and maybe, by the
    // borrow, above such a byte: enough to say whether there is one).
    ((quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (word.wrapping_sub(ONES * 0x20) & !word))
        & HIGHS
        != 0
}

/// Whether `text` holds a byte that JSON strings escape (a quote, a backslash or a control
/// character), eight bytes at a time: the last eight bytes overlap the word before, a string
/// shorter than eight bytes is padded with spaces.
#[inline]
pub(crate) fn needs_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let Some(&last) = bytes.last_chunk::<8>() else {
        let mut padded = [b' '; 8];
        for (to, &from) in padded.iter_mut().zip(bytes) {
            *to = from;
        }
        return word_needs_escape(padded);
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if word_needs_escape(word) {
            return true;
        }
    }
    !chunks.remainder().is_empty() && word_needs_escape(last)
}

/// Writes `text` as a JSON string, escaped as serde_json escapes it; returns whether it holds
/// characters to escape.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) -> bool {
    if needs_escape(text) {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
        true
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        false
    }
}

fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, value.unsigned_abs());
}

struct Writer<'o> {
    out: &'o mut Vec<u8>,
    /// How many lists, maps and structs are open.
    depth: usize,
    /// Writing the value of the top-level member `metadata`.
    in_metadata: bool,
    layout: &'o mut Layout,
    /// Whether to note the layout.
    record: bool,
}

impl Writer<'_> {
    /// Whether a member written now is one [`Layout`] notes: of the top-level object, or of
    /// `metadata`.
    fn noted(&self) -> bool {
        self.record && (self.depth == 1 || (self.depth == 2 && self.in_metadata))
    }

    /// Notes the member whose key was written at `key` (with its quotes; `escaped` when it
    /// holds escapes) and whose value follows, then writes the value.
    fn member<T: Serialize + ?Sized>(
        &mut self,
        key: Range<usize>,
        escaped: bool,
        value: &T,
    ) -> Result<(), GiveUp> {
        if !self.noted() {
            return value.serialize(&mut *self);
        }
        if escaped {
            // The reader would unescape the key: leave the object to it.
            self.record = false;
            self.layout.valid = false;
            return value.serialize(&mut *self);
        }
        let key = key.start + 1..key.end - 1;
        let start = self.out.len();
        if self.depth == 2 {
            value.serialize(&mut *self)?;
            self.layout.metadata.push((key, start..self.out.len()));
            return Ok(());
        }
        let is_metadata = self.out.get(key.clone()) == Some(b"metadata".as_slice());
        if !is_metadata {
            value.serialize(&mut *self)?;
            self.layout.members.push((key, start..self.out.len()));
            return Ok(());
        }
        // As the reader: the last `metadata` counts, when it is an object.
        self.layout.metadata.clear();
        self.in_metadata = true;
        let written = value.serialize(&mut *self);
        self.in_metadata = false;
        written?;
        self.layout.has_metadata = self.out.get(start) == Some(&b'{');
        if !self.layout.has_metadata {
            self.layout.metadata.clear();
        }
        Ok(())
    }

    /// An enum variant written as `{"Variant": …}`: the layout does not follow it when it is
    /// the object or one of the members noted.
    fn variant_form(&mut self) {
        if self.depth <= 1 || (self.depth == 2 && self.in_metadata) {
            self.record = false;
            self.layout.valid = false;
        }
    }
}

/// A list, map or struct being written: whether an element was written yet.
struct Compound<'w, 'o> {
    writer: &'w mut Writer<'o>,
    first: bool,
    /// The last map key written (with its quotes), and whether it holds escapes.
    key: (Range<usize>, bool),
    /// What closes it: `]`, `}`, or `]}`/`}}` for the variant forms `{"Variant": …}`.
    close: &'static [u8],
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if !self.first {
            self.writer.out.push(b',');
        }
        self.first = false;
    }

    fn end(self) {
        self.writer.out.extend_from_slice(self.close);
        self.writer.depth -= 1;
    }
}

impl<'w, 'o> Writer<'o> {
    fn open(&'w mut self, open: &[u8], close: &'static [u8]) -> Compound<'w, 'o> {
        self.out.extend_from_slice(open);
        if self.depth == 0 && self.record {
            // The root: the layout holds when it is an object.
            self.layout.valid = open == b"{";
        }
        self.depth += 1;
        Compound {
            writer: self,
            first: true,
            key: (0..0, false),
            close,
        }
    }

    /// `{"variant":` and the rest of an enum variant's opening.
    fn variant(&'w mut self, variant: &str, open: &[u8], close: &'static [u8]) -> Compound<'w, 'o> {
        self.variant_form();
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        self.open(open, close)
    }
}

impl<'w, 'o> ser::Serializer for &'w mut Writer<'o> {
    type Ok = ();
    type Error = GiveUp;
    type SerializeSeq = Compound<'w, 'o>;
    type SerializeTuple = Compound<'w, 'o>;
    type SerializeTupleStruct = Compound<'w, 'o>;
    type SerializeTupleVariant = Compound<'w, 'o>;
    type SerializeMap = Compound<'w, 'o>;
    type SerializeStruct = Compound<'w, 'o>;
    type SerializeStructVariant = Compound<'w, 'o>;

    fn serialize_bool(self, v: bool) -> Result<(), GiveUp> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), GiveUp> {
        write_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), GiveUp> {
        write_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), GiveUp> {
        write_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), GiveUp> {
        write_i64(self.out, v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), GiveUp> {
        write_u64(self.out, u64::from(v));
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), GiveUp> {
        write_u64(self.out, u64::from(v));
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), GiveUp> {
        write_u64(self.out, u64::from(v));
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), GiveUp> {
        write_u64(self.out, v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), GiveUp> {
        // serde_json's own float formatting (and `null` for NaN and infinities).
        serde_json::to_writer(&mut *self.out, &v).map_err(|_| GiveUp)
    }
    fn serialize_f64(self, v: f64) -> Result<(), GiveUp> {
        serde_json::to_writer(&mut *self.out, &v).map_err(|_| GiveUp)
    }
    fn serialize_char(self, v: char) -> Result<(), GiveUp> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), GiveUp> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_none(self) -> Result<(), GiveUp> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), GiveUp> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), GiveUp> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), GiveUp> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), GiveUp> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        self.variant_form();
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'w, 'o>, GiveUp> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'w, 'o>, GiveUp> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'w, 'o>, GiveUp> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'w, 'o>, GiveUp> {
        Ok(self.variant(variant, b"[", b"]}"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'w, 'o>, GiveUp> {
        Ok(self.open(b"{", b"}"))
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Compound<'w, 'o>, GiveUp> {
        // serde_json's `RawValue` and `Number` (with `arbitrary_precision`) are written as
        // tokens by serde_json only.
        if name.starts_with("$serde_json::") {
            return Err(GiveUp);
        }
        Ok(self.open(b"{", b"}"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'w, 'o>, GiveUp> {
        Ok(self.variant(variant, b"{", b"}}"))
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        self.comma();
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), GiveUp> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), GiveUp> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), GiveUp> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), GiveUp> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), GiveUp> {
        self.comma();
        let start = self.writer.out.len();
        let mut escaped = false;
        key.serialize(KeyWriter {
            out: self.writer.out,
            escaped: &mut escaped,
        })?;
        self.key = (start..self.writer.out.len(), escaped);
        self.writer.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        let (key, escaped) = self.key.clone();
        self.writer.member(key, escaped, value)
    }
    fn end(self) -> Result<(), GiveUp> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        self.comma();
        let start = self.writer.out.len();
        let escaped = write_str(self.writer.out, key);
        let key = start..self.writer.out.len();
        self.writer.out.push(b':');
        self.writer.member(key, escaped, value)
    }
    fn end(self) -> Result<(), GiveUp> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<(), GiveUp> {
        Compound::end(self);
        Ok(())
    }
}

/// A map key: strings (and what serde_json writes as one without converting: a `char`, a unit
/// variant, a newtype around a string) are written; anything else is left to serde_json.
struct KeyWriter<'o> {
    out: &'o mut Vec<u8>,
    escaped: &'o mut bool,
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = GiveUp;
    type SerializeSeq = Impossible<(), GiveUp>;
    type SerializeTuple = Impossible<(), GiveUp>;
    type SerializeTupleStruct = Impossible<(), GiveUp>;
    type SerializeTupleVariant = Impossible<(), GiveUp>;
    type SerializeMap = Impossible<(), GiveUp>;
    type SerializeStruct = Impossible<(), GiveUp>;
    type SerializeStructVariant = Impossible<(), GiveUp>;

    fn serialize_str(self, v: &str) -> Result<(), GiveUp> {
        *self.escaped = write_str(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), GiveUp> {
        *self.escaped = write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), GiveUp> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        value.serialize(self)
    }
    fn serialize_bool(self, _: bool) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i8(self, _: i8) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i16(self, _: i16) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i32(self, _: i32) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i64(self, _: i64) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u8(self, _: u8) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u16(self, _: u16) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u32(self, _: u32) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u64(self, _: u64) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_f32(self, _: f32) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_f64(self, _: f64) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_none(self) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_unit(self) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, GiveUp> {
        Err(GiveUp)
    }
}

/// Panics unless `noted` holds the members [`Object::parse_str`](crate::raw::Object::parse_str)
/// reads from `text` (a check of the layout in debug builds and tests).
#[cfg(any(test, debug_assertions))]
pub(crate) fn assert_same_members(noted: &crate::raw::Object<'_>, text: &str) {
    let pairs = |members: &crate::raw::Members<'_>| -> Vec<(String, String)> {
        members
            .0
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).to_owned()))
            .collect()
    };
    let Some(read) = crate::raw::Object::parse_str(text) else {
        panic!("the layout describes text that is not an object: {text}");
    };
    assert_eq!(pairs(&noted.members), pairs(&read.members), "{text}");
    assert_eq!(
        noted.metadata.as_ref().map(pairs),
        read.metadata.as_ref().map(pairs),
        "{text}"
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::json;

    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    enum Shape {
        Unit,
        Newtype(i32),
        Tuple(u8, String),
        Struct { side: f64 },
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Newtype(String);

    #[derive(Serialize)]
    struct Pair(i8, u16);

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct All {
        b: bool,
        small: (i8, i16, i32, i64, u8, u16, u32, u64),
        extremes: [i64; 2],
        max: u64,
        floats: (f32, f64, f64, f64, f64, f64),
        nan: f64,
        c: char,
        escaped: String,
        unicode: String,
        none: Option<u8>,
        some: Option<String>,
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        pair: Pair,
        shapes: Vec<Shape>,
        map: BTreeMap<String, Vec<u8>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        #[serde(flatten)]
        flat: BTreeMap<String, String>,
        value: serde_json::Value,
        empty: Vec<u8>,
        empty_map: BTreeMap<String, u8>,
        #[serde(rename = "key with \"quotes\"")]
        key_with_quotes: u8,
    }

    fn same_as_serde_json<T: Serialize + ?Sized>(value: &T) {
        let mut ours = b"prefix".to_vec();
        let theirs = serde_json::to_vec(value);
        match (write(value, &mut ours), theirs) {
            (Ok(()), Ok(theirs)) => assert_eq!(
                String::from_utf8_lossy(&ours[6..]),
                String::from_utf8_lossy(&theirs)
            ),
            (Err(ours), Err(theirs)) => assert_eq!(ours.to_string(), theirs.to_string()),
            (ours, theirs) => panic!("{ours:?} vs {theirs:?}"),
        }
    }

    #[test]
    fn it_writes_what_serde_json_writes() {
        let all = All {
            b: true,
            small: (-8, -16, -32, i64::MIN, 8, 16, 32, u64::MAX),
            extremes: [i64::MAX, 0],
            max: 10_000_000_000_000_000_000,
            floats: (1.5, 0.1, 1e300, -0.0, 1.0, 123_456_789.012_345_68),
            nan: f64::NAN,
            c: '"',
            escaped:
                "a\"b\\c\n\t\r\u{8}\u{c}\u{1}\u{1f}\u{7f}/ long enough to take the fast path \u{0}"
                    .to_owned(),
            unicode: "Grüße, 世界 🦀 and no escapes at all here".to_owned(),
            none: None,
            some: Some("eight by".to_owned()),
            unit: (),
            unit_struct: Unit,
            newtype: Newtype("n".to_owned()),
            pair: Pair(-1, 2),
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(-3),
                Shape::Tuple(1, "t".to_owned()),
                Shape::Struct { side: 2.5 },
            ],
            map: [("k\u{2}".to_owned(), vec![1, 2]), ("x".to_owned(), vec![])]
                .into_iter()
                .collect(),
            skipped: None,
            flat: [("flat".to_owned(), "f".to_owned())].into_iter().collect(),
            value: json!({"a": [1, -2, 3.5, null, true, {"b": "c\"d"}], "e": {}}),
            empty: vec![],
            empty_map: BTreeMap::new(),
            key_with_quotes: 1,
        };
        same_as_serde_json(&all);
        for text in [
            "",
            "a",
            "1234567",
            "12345678",
            "123456789",
            "123456789\"",
            "\u{1f}2345678",
            "\"2345678",
            "1234567\"",
            "123456781234567\n",
            "12345678abc\\",
            "1234567812345678",
            "Grüße, 世界 🦀",
        ] {
            same_as_serde_json(text);
        }
    }

    #[test]
    fn it_leaves_to_serde_json_what_it_does_not_write() {
        // Keys that are not strings: serde_json writes some, refuses others.
        same_as_serde_json(&[(1u8, 2u8)].into_iter().collect::<BTreeMap<_, _>>());
        same_as_serde_json(&[(true, 2u8)].into_iter().collect::<BTreeMap<_, _>>());
        same_as_serde_json(&[((1, 2), 2u8)].into_iter().collect::<BTreeMap<_, _>>());
        same_as_serde_json(&[(Some("a"), 2u8)].into_iter().collect::<BTreeMap<_, _>>());
        same_as_serde_json(serde_bytes_like());
        same_as_serde_json(&(i128::MIN, u128::MAX));
        let raw = serde_json::value::RawValue::from_string("{ \"a\" : 1 }".to_owned()).unwrap();
        same_as_serde_json(&vec![raw]);
        // An error raised by a Serialize impl: serde_json's error.
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(ser::Error::custom("no"))
            }
        }
        same_as_serde_json(&(1, Fails));
    }

    /// Writes `value` with its layout: the same text as serde_json, and the members the reader
    /// finds (or no layout, when `noted` is false).
    fn layout_agrees<T: Serialize>(value: &T, noted: bool) {
        let mut out = b"stale".to_vec();
        let mut layout = Layout::default();
        write_object(value, &mut out, &mut layout).unwrap();
        assert_eq!(out, serde_json::to_vec(value).unwrap());
        let text = std::str::from_utf8(&out).unwrap();
        match layout.object(text) {
            Some(object) => {
                assert!(noted, "{text}");
                assert_same_members(&object, text);
            }
            None => assert!(!noted, "{text}"),
        }
    }

    #[test]
    fn the_layout_is_what_the_reader_finds() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Object {
            api_version: &'static str,
            kind: &'static str,
            metadata: ObjectMeta,
            spec: BTreeMap<String, serde_json::Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<Shape>,
        }
        let object = |status| Object {
            api_version: "example.com/v1",
            kind: "CronTab",
            metadata: ObjectMeta {
                name: Some("n".to_owned()),
                labels: Some([("a\"b".to_owned(), "c".to_owned())].into_iter().collect()),
                ..ObjectMeta::default()
            },
            spec: [
                ("metadata".to_owned(), json!({"x": [1, {"y": 2}]})),
                ("s".to_owned(), json!("t")),
            ]
            .into_iter()
            .collect(),
            status,
        };
        layout_agrees(&object(None), true);
        layout_agrees(&object(Some(Shape::Unit)), true);
        // Enum variants written as objects, at the top or as a member: no layout.
        layout_agrees(&object(Some(Shape::Struct { side: 1.0 })), false);
        layout_agrees(&Shape::Newtype(1), false);
        layout_agrees(&Shape::Struct { side: 1.0 }, false);
        // Maps: keys with escapes at the two levels noted give no layout; deeper they do not
        // matter. The last `metadata` counts; one that is not an object is none.
        layout_agrees(
            &json!({"a": 1, "metadata": {"b": {"c\n": 1}, "d": []}}),
            true,
        );
        layout_agrees(&json!({"a\"": 1}), false);
        layout_agrees(&json!({"metadata": {"b\t": 1}}), false);
        layout_agrees(&json!({"metadata": [{"a": 1}], "z": null}), true);
        layout_agrees(&json!({"metadata": null}), true);
        layout_agrees(&json!({}), true);
        #[derive(Serialize)]
        struct Twice {
            metadata: BTreeMap<&'static str, u8>,
            #[serde(rename = "metadata")]
            again: Vec<u8>,
        }
        layout_agrees(
            &Twice {
                metadata: [("a", 1)].into_iter().collect(),
                again: vec![],
            },
            true,
        );
        // Not an object: no layout.
        layout_agrees(&json!([{"a": 1}]), false);
        layout_agrees(&json!("text"), false);
        layout_agrees(&Newtype("n".to_owned()), false);
        // Left to serde_json: no layout.
        layout_agrees(&[(1u8, 2u8)].into_iter().collect::<BTreeMap<_, _>>(), false);
    }

    fn serde_bytes_like() -> &'static impl Serialize {
        struct Bytes;
        impl Serialize for Bytes {
            fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(b"\x00\xff")
            }
        }
        &Bytes
    }
}
