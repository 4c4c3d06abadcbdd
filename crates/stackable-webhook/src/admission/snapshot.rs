//! The object before and after a mutating handler, written once each as a compact token
//! stream of the tree `serde_json::to_value` would build, instead of as that tree: a string is
//! copied once (no `String` per key and value, no map node), a number is kept as its bits (no
//! formatting, nothing to parse back), and a list or an object records its length, so that
//! what the handler left alone is skipped without being read. [`Snapshot::value`] of a part
//! of it is exactly `to_value`'s tree of that part.
//!
//! The stream, one node after another: `null`, `false`, `true` (a tag byte); an unsigned or a
//! negative integer, a float (tag and 8 bytes: the `u64`, `i64` or `f64` bits); a string (tag,
//! `u32` length, UTF-8 bytes); a list (tag, `u32` length of its nodes, the nodes); an object
//! (tag, `u32` length, then each member as its key (`u32` length, UTF-8 bytes) and its node,
//! repeated keys kept as written: the reader keeps the last, as `to_value` does). Lengths are
//! little-endian.
//!
//! serde_json's private tokens (a `RawValue`, a `Number` with `arbitrary_precision`), which
//! `to_value` treats specially, are not written: the object is then taken with `to_value` as a
//! whole ([`Snapshot::Tree`]), as before.

use std::fmt::Display;

use serde::{
    Serialize,
    ser::{self, Impossible},
};
use serde_json::{Map, Number, Value};

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const UNSIGNED: u8 = 3;
const NEGATIVE: u8 = 4;
const FLOAT: u8 = 5;
const STRING: u8 = 6;
const LIST: u8 = 7;
const OBJECT: u8 = 8;

/// An object as `serde_json::to_value` sees it.
pub(super) enum Snapshot {
    /// The token stream of its tree (see the module docs).
    Tokens(Vec<u8>),
    /// Its tree, for an object holding serde_json's private tokens.
    Tree(Value),
}

impl Snapshot {
    /// `value` as `serde_json::to_value` sees it; its errors are `to_value`'s (same messages).
    pub(super) fn of<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        let mut out = Vec::with_capacity(2048);
        match value.serialize(Writer { out: &mut out }) {
            Ok(()) => Ok(Self::Tokens(out)),
            Err(error) if error.to_string().contains(PRIVATE_TOKEN) => {
                serde_json::to_value(value).map(Self::Tree)
            }
            Err(error) => Err(error),
        }
    }

    /// The whole tree (`to_value`'s).
    pub(super) fn to_value(&self) -> Option<Value> {
        match self {
            Self::Tokens(tokens) => value(tokens),
            Self::Tree(tree) => Some(tree.clone()),
        }
    }
}

/// The message of the error that makes [`Snapshot::of`] fall back to `to_value`.
const PRIVATE_TOKEN: &str = "$stackable_webhook::snapshot::private_token";

/// Names of the structs serde_json serialises its private types as.
fn is_private_token(name: &str) -> bool {
    name.starts_with("$serde_json::private::")
}

fn error(message: impl Display) -> serde_json::Error {
    <serde_json::Error as ser::Error>::custom(message)
}

fn out_of_range() -> serde_json::Error {
    error("number out of range")
}

fn key_must_be_a_string() -> serde_json::Error {
    error("key must be a string")
}

/// Writes the tokens of one node.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    fn tag(self, tag: u8) -> Result<(), serde_json::Error> {
        self.out.push(tag);
        Ok(())
    }

    fn eight(self, tag: u8, bytes: [u8; 8]) -> Result<(), serde_json::Error> {
        self.out.push(tag);
        self.out.extend_from_slice(&bytes);
        Ok(())
    }

    fn string(self, value: &str) -> Result<(), serde_json::Error> {
        self.out.push(STRING);
        write_text(self.out, value)
    }

    fn unsigned(self, value: u64) -> Result<(), serde_json::Error> {
        self.eight(UNSIGNED, value.to_le_bytes())
    }

    fn signed(self, value: i64) -> Result<(), serde_json::Error> {
        match u64::try_from(value) {
            Ok(value) => self.unsigned(value),
            Err(_) => self.eight(NEGATIVE, value.to_le_bytes()),
        }
    }

    fn float(self, value: f64) -> Result<(), serde_json::Error> {
        if value.is_finite() {
            self.eight(FLOAT, value.to_bits().to_le_bytes())
        } else {
            // `Value::from(f64)`: not a JSON number.
            self.tag(NULL)
        }
    }

    /// Opens a list or an object: its tag and a length to fill in by [`close`].
    fn open(self, tag: u8) -> Open<'a> {
        open(self.out, tag)
    }
}

/// A `u32` length and the text.
fn write_text(out: &mut Vec<u8>, text: &str) -> Result<(), serde_json::Error> {
    let length = u32::try_from(text.len()).map_err(|_| error("string too long"))?;
    out.reserve(4 + text.len());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn open(out: &mut Vec<u8>, tag: u8) -> Open<'_> {
    out.push(tag);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    Open { out, at }
}

/// A list or an object being written.
struct Open<'a> {
    out: &'a mut Vec<u8>,
    /// Where its length goes.
    at: usize,
}

impl Open<'_> {
    fn node<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        value.serialize(Writer { out: self.out })
    }

    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), serde_json::Error> {
        key.serialize(KeyWriter { out: self.out })
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        write_text(self.out, key)?;
        self.node(value)
    }

    fn close(self) -> Result<(), serde_json::Error> {
        let length = self.out.len() - self.at - 4;
        let length = u32::try_from(length).map_err(|_| error("object too large"))?;
        self.out[self.at..self.at + 4].copy_from_slice(&length.to_le_bytes());
        Ok(())
    }
}

/// An enum variant with content: an object of one member, the variant, around a list or an
/// object.
struct Variant<'a> {
    outer: Open<'a>,
    inner_at: usize,
}

impl<'a> Variant<'a> {
    fn new(out: &'a mut Vec<u8>, variant: &str, tag: u8) -> Result<Self, serde_json::Error> {
        let outer = open(out, OBJECT);
        write_text(outer.out, variant)?;
        outer.out.push(tag);
        let inner_at = outer.out.len();
        outer.out.extend_from_slice(&[0; 4]);
        Ok(Self { outer, inner_at })
    }

    fn close(self) -> Result<(), serde_json::Error> {
        let Self { outer, inner_at } = self;
        Open {
            out: &mut *outer.out,
            at: inner_at,
        }
        .close()?;
        outer.close()
    }
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Open<'a>;
    type SerializeTuple = Open<'a>;
    type SerializeTupleStruct = Open<'a>;
    type SerializeTupleVariant = Variant<'a>;
    type SerializeMap = Open<'a>;
    type SerializeStruct = Open<'a>;
    type SerializeStructVariant = Variant<'a>;

    fn serialize_bool(self, value: bool) -> Result<(), serde_json::Error> {
        self.tag(if value { TRUE } else { FALSE })
    }

    fn serialize_i8(self, value: i8) -> Result<(), serde_json::Error> {
        self.signed(value.into())
    }

    fn serialize_i16(self, value: i16) -> Result<(), serde_json::Error> {
        self.signed(value.into())
    }

    fn serialize_i32(self, value: i32) -> Result<(), serde_json::Error> {
        self.signed(value.into())
    }

    fn serialize_i64(self, value: i64) -> Result<(), serde_json::Error> {
        self.signed(value)
    }

    fn serialize_i128(self, value: i128) -> Result<(), serde_json::Error> {
        match i64::try_from(value) {
            Ok(value) => self.signed(value),
            Err(_) => match u64::try_from(value) {
                Ok(value) => self.unsigned(value),
                Err(_) => Err(out_of_range()),
            },
        }
    }

    fn serialize_u8(self, value: u8) -> Result<(), serde_json::Error> {
        self.unsigned(value.into())
    }

    fn serialize_u16(self, value: u16) -> Result<(), serde_json::Error> {
        self.unsigned(value.into())
    }

    fn serialize_u32(self, value: u32) -> Result<(), serde_json::Error> {
        self.unsigned(value.into())
    }

    fn serialize_u64(self, value: u64) -> Result<(), serde_json::Error> {
        self.unsigned(value)
    }

    fn serialize_u128(self, value: u128) -> Result<(), serde_json::Error> {
        match u64::try_from(value) {
            Ok(value) => self.unsigned(value),
            Err(_) => Err(out_of_range()),
        }
    }

    fn serialize_f32(self, value: f32) -> Result<(), serde_json::Error> {
        // `Value::from(f32)` widens it.
        self.float(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), serde_json::Error> {
        self.float(value)
    }

    fn serialize_char(self, value: char) -> Result<(), serde_json::Error> {
        self.string(value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, value: &str) -> Result<(), serde_json::Error> {
        self.string(value)
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<(), serde_json::Error> {
        let list = self.open(LIST);
        for byte in value {
            list.out.push(UNSIGNED);
            list.out.extend_from_slice(&u64::from(*byte).to_le_bytes());
        }
        list.close()
    }

    fn serialize_none(self) -> Result<(), serde_json::Error> {
        self.tag(NULL)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), serde_json::Error> {
        self.tag(NULL)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), serde_json::Error> {
        self.tag(NULL)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), serde_json::Error> {
        self.string(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let mut object = self.open(OBJECT);
        object.field(variant, value)?;
        object.close()
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Open<'a>, serde_json::Error> {
        Ok(open(self.out, LIST))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Open<'a>, serde_json::Error> {
        Ok(open(self.out, LIST))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Open<'a>, serde_json::Error> {
        Ok(open(self.out, LIST))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Variant<'a>, serde_json::Error> {
        Variant::new(self.out, variant, LIST)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Open<'a>, serde_json::Error> {
        Ok(open(self.out, OBJECT))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Open<'a>, serde_json::Error> {
        if is_private_token(name) {
            return Err(error(PRIVATE_TOKEN));
        }
        Ok(open(self.out, OBJECT))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Variant<'a>, serde_json::Error> {
        Variant::new(self.out, variant, OBJECT)
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<(), serde_json::Error> {
        self.string(&value.to_string())
    }
}

impl ser::SerializeSeq for Open<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_element<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.node(value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.close()
    }
}

impl ser::SerializeTuple for Open<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_element<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.node(value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Open<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.node(value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Variant<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.outer.node(value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.close()
    }
}

impl ser::SerializeMap for Open<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), serde_json::Error> {
        self.key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.node(value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.close()
    }
}

impl ser::SerializeStruct for Open<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Variant<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.outer.field(key, value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.close()
    }
}

/// Writes a map key as `to_value` makes one: a string, a number or a `bool` as its text, a
/// unit variant as its name; anything else is refused.
struct KeyWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl KeyWriter<'_> {
    fn text(self, text: &str) -> Result<(), serde_json::Error> {
        write_text(self.out, text)
    }

    /// A float key: finite, written as serde_json writes it.
    fn float<F: Serialize + Copy>(self, value: F, finite: bool) -> Result<(), serde_json::Error> {
        if !finite {
            return Err(error("float key must be finite (got NaN or +/-inf)"));
        }
        self.text(&serde_json::to_string(&value)?)
    }
}

impl<'a> ser::Serializer for KeyWriter<'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Impossible<(), serde_json::Error>;
    type SerializeTuple = Impossible<(), serde_json::Error>;
    type SerializeTupleStruct = Impossible<(), serde_json::Error>;
    type SerializeTupleVariant = Impossible<(), serde_json::Error>;
    type SerializeMap = Impossible<(), serde_json::Error>;
    type SerializeStruct = Impossible<(), serde_json::Error>;
    type SerializeStructVariant = Impossible<(), serde_json::Error>;

    fn serialize_bool(self, value: bool) -> Result<(), serde_json::Error> {
        self.text(if value { "true" } else { "false" })
    }

    fn serialize_i8(self, value: i8) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }

    fn serialize_i16(self, value: i16) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }

    fn serialize_i32(self, value: i32) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }

    fn serialize_i64(self, value: i64) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }

    fn serialize_i128(self, value: i128) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }

    fn serialize_u8(self, value: u8) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }

    fn serialize_u16(self, value: u16) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }

    fn serialize_u32(self, value: u32) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }

    fn serialize_u64(self, value: u64) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }

    fn serialize_u128(self, value: u128) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }

    fn serialize_f32(self, value: f32) -> Result<(), serde_json::Error> {
        self.float(value, value.is_finite())
    }

    fn serialize_f64(self, value: f64) -> Result<(), serde_json::Error> {
        self.float(value, value.is_finite())
    }

    fn serialize_char(self, value: char) -> Result<(), serde_json::Error> {
        self.text(value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, value: &str) -> Result<(), serde_json::Error> {
        self.text(value)
    }

    fn serialize_bytes(self, _value: &[u8]) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_none(self) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit(self) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), serde_json::Error> {
        self.text(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<(), serde_json::Error> {
        self.text(&value.to_string())
    }
}

// Reading.

fn u32_at(tokens: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = tokens.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

fn u64_at(tokens: &[u8], at: usize) -> Option<[u8; 8]> {
    tokens.get(at..at + 8)?.try_into().ok()
}

/// The end of the node at `at`.
pub(super) fn node_end(tokens: &[u8], at: usize) -> Option<usize> {
    match *tokens.get(at)? {
        NULL | FALSE | TRUE => Some(at + 1),
        UNSIGNED | NEGATIVE | FLOAT => Some(at + 9),
        STRING | LIST | OBJECT => Some(at + 5 + u32_at(tokens, at + 1)?),
        _ => None,
    }
}

/// A text (a key or a string) at `at`, and where it ends.
fn text_at(tokens: &[u8], at: usize) -> Option<(&str, usize)> {
    let end = at + 4 + u32_at(tokens, at)?;
    let text = std::str::from_utf8(tokens.get(at + 4..end)?).ok()?;
    Some((text, end))
}

/// Whether `node` (one node) is an object.
pub(super) fn is_object(node: &[u8]) -> bool {
    node.first() == Some(&OBJECT)
}

/// Calls `member` with each key of the object `node` (one node) and its node, as written;
/// `None` when `node` is not an object.
pub(super) fn each_member<'a>(
    node: &'a [u8],
    mut member: impl FnMut(&'a str, &'a [u8]),
) -> Option<()> {
    if node.first() != Some(&OBJECT) {
        return None;
    }
    let end = 5 + u32_at(node, 1)?;
    let mut at = 5;
    while at < end {
        let (key, value_at) = text_at(node, at)?;
        let value_end = node_end(node, value_at)?;
        member(key, node.get(value_at..value_end)?);
        at = value_end;
    }
    Some(())
}

/// The members of the object `node` (one node), each key with its node, as written.
#[cfg(test)]
fn members(node: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    let mut members = Vec::new();
    each_member(node, |key, value| members.push((key, value)))?;
    Some(members)
}

/// The tree of `node` (one node): `to_value`'s.
pub(super) fn value(node: &[u8]) -> Option<Value> {
    let (value, end) = read(node, 0)?;
    (end == node.len()).then_some(value)
}

fn read(tokens: &[u8], at: usize) -> Option<(Value, usize)> {
    let end = node_end(tokens, at)?;
    let value = match *tokens.get(at)? {
        NULL => Value::Null,
        FALSE => Value::Bool(false),
        TRUE => Value::Bool(true),
        UNSIGNED => Value::Number(u64::from_le_bytes(u64_at(tokens, at + 1)?).into()),
        NEGATIVE => Value::Number(i64::from_le_bytes(u64_at(tokens, at + 1)?).into()),
        FLOAT => {
            let float = f64::from_bits(u64::from_le_bytes(u64_at(tokens, at + 1)?));
            Value::Number(Number::from_f64(float)?)
        }
        STRING => Value::String(text_at(tokens, at + 1)?.0.to_owned()),
        LIST => {
            let mut list = Vec::new();
            let mut next = at + 5;
            while next < end {
                let (value, value_end) = read(tokens, next)?;
                list.push(value);
                next = value_end;
            }
            Value::Array(list)
        }
        OBJECT => {
            let mut map = Map::new();
            let mut next = at + 5;
            while next < end {
                let (key, value_at) = text_at(tokens, next)?;
                let (value, value_end) = read(tokens, value_at)?;
                // As `to_value`: the last of repeated keys wins.
                map.insert(key.to_owned(), value);
                next = value_end;
            }
            Value::Object(map)
        }
        _ => return None,
    };
    Some((value, end))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use serde::Serialize;
    use serde_json::json;

    use super::*;

    fn tokens(snapshot: &Snapshot) -> &[u8] {
        match snapshot {
            Snapshot::Tokens(tokens) => tokens,
            Snapshot::Tree(_) => panic!("a tree"),
        }
    }

    fn same_as_to_value<T: Serialize>(value: &T) {
        let expected = serde_json::to_value(value);
        match Snapshot::of(value) {
            Ok(snapshot) => {
                assert_eq!(snapshot.to_value(), Some(expected.unwrap()));
            }
            Err(error) => assert_eq!(error.to_string(), expected.unwrap_err().to_string()),
        }
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(i8, String),
        Struct { a: Option<f32>, b: char },
    }

    #[derive(Serialize)]
    struct Newtype(i32);

    #[derive(Serialize)]
    struct UnitStruct;

    #[derive(Serialize)]
    struct Everything {
        shapes: Vec<Shape>,
        newtype: Newtype,
        unit: (),
        unit_struct: UnitStruct,
        tuple: (u16, bool, f64),
        #[serde(with = "serde_bytes_as_bytes")]
        bytes: Vec<u8>,
        floats: Vec<f64>,
        singles: Vec<f32>,
        wide: (i128, u128),
        int_keys: BTreeMap<i64, &'static str>,
        bool_keys: BTreeMap<bool, u8>,
        char_keys: HashMap<char, u8>,
        unit_keys: BTreeMap<Key, u8>,
        float_keys: Vec<(f64, u8)>,
        value: Value,
        #[serde(flatten)]
        repeated: BTreeMap<String, u8>,
    }

    #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
    enum Key {
        First,
        Second,
    }

    mod serde_bytes_as_bytes {
        pub(super) fn serialize<S: serde::Serializer>(
            bytes: &[u8],
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(bytes)
        }
    }

    #[test]
    fn every_form_as_to_value_builds_it() {
        let everything = Everything {
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-3, "t".to_owned()),
                Shape::Struct {
                    a: Some(0.1),
                    b: 'é',
                },
                Shape::Struct { a: None, b: '"' },
            ],
            newtype: Newtype(-1),
            unit: (),
            unit_struct: UnitStruct,
            tuple: (2, true, -0.0),
            bytes: vec![0, 255],
            floats: vec![
                0.1,
                f64::NAN,
                f64::INFINITY,
                1e300,
                -3.165_361_488_614_61e-15,
            ],
            singles: vec![0.1, f32::NAN, 3.4e38],
            wide: (i128::from(i64::MIN), u128::from(u64::MAX)),
            int_keys: BTreeMap::from([(-1, "a"), (10, "b")]),
            bool_keys: BTreeMap::from([(true, 1), (false, 0)]),
            char_keys: HashMap::from([('x', 1)]),
            unit_keys: BTreeMap::from([(Key::First, 1), (Key::Second, 2)]),
            float_keys: vec![(1.5, 1)],
            value: json!({"a": [1, -2, 2.5, "s", null, true, {"b": {}}], "c": []}),
            // `shapes` again: written twice, the last one wins.
            repeated: BTreeMap::from([("shapes".to_owned(), 1), ("other".to_owned(), 2)]),
        };
        same_as_to_value(&everything);
        assert!(matches!(Snapshot::of(&everything), Ok(Snapshot::Tokens(_))));
        // Float keys of a map (not a list of pairs).
        #[derive(Serialize)]
        struct FloatKeys(#[serde(serialize_with = "float_map")] ());
        fn float_map<S: serde::Serializer>(_: &(), serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = serializer.serialize_map(None)?;
            map.serialize_entry(&0.1f64, &1)?;
            map.serialize_entry(&0.1f32, &2)?;
            map.end()
        }
        same_as_to_value(&FloatKeys(()));
    }

    #[test]
    fn refusals_as_to_value_refuses() {
        same_as_to_value(&u128::MAX);
        same_as_to_value(&i128::MIN);
        same_as_to_value(&BTreeMap::from([(vec![1], 1)]));
        same_as_to_value(&BTreeMap::from([((), 1)]));
        #[derive(Serialize)]
        struct NanKey(#[serde(serialize_with = "nan_key")] ());
        fn nan_key<S: serde::Serializer>(_: &(), serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = serializer.serialize_map(None)?;
            map.serialize_entry(&f64::NAN, &1)?;
            map.end()
        }
        same_as_to_value(&NanKey(()));
    }

    #[test]
    fn serde_json_private_types_fall_back_to_to_value() {
        let raw =
            serde_json::value::RawValue::from_string(r#"{"a": 0.1, "b": [1]}"#.to_owned()).unwrap();
        same_as_to_value(&json!({"x": 1}));
        let snapshot = Snapshot::of(&raw).unwrap();
        assert!(matches!(snapshot, Snapshot::Tree(_)));
        assert_eq!(
            snapshot.to_value(),
            Some(serde_json::to_value(&raw).unwrap())
        );
    }

    #[test]
    fn members_and_nodes() {
        let snapshot = Snapshot::of(&json!({"b": [1, "x"], "a": {"c": null}})).unwrap();
        let node = tokens(&snapshot);
        assert!(is_object(node));
        let read = members(node).unwrap();
        let keys: Vec<&str> = read.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(value(read[0].1), Some(json!({"c": null})));
        assert_eq!(value(read[1].1), Some(json!([1, "x"])));
        assert!(!is_object(read[1].1));
        assert_eq!(node_end(node, 0), Some(node.len()));
        assert!(members(&node[..node.len() - 1]).is_none());
    }

    /// Any JSON tree.
    fn tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            any::<f32>().prop_map(|n| json!(n)),
            "[a-c\"\\\\\u{e9}\u{1}/]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c\"\\\\]{0,2}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn trees_come_back_as_they_were(tree in tree(), single in any::<f32>(), double in any::<f64>(), wide in any::<i128>()) {
            let snapshot = Snapshot::of(&tree).unwrap();
            prop_assert_eq!(value(tokens(&snapshot)), Some(tree.clone()));
            same_as_to_value(&single);
            same_as_to_value(&double);
            same_as_to_value(&wide);
        }
    }
}
