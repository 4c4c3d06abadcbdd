//! The [`Fingerprint`] of a Rust value, computed while serialising it as serde_json would,
//! without writing any text: the way back of a round trip is compared with the original body
//! straight from the typed result.

use std::fmt;

use serde::{
    Serialize,
    ser::{self, Impossible},
};

use crate::fingerprint::{self, Fingerprint};

/// Serialising failed (a map key that is not a string or a number, as in serde_json).
#[derive(Debug)]
pub(crate) struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self(message.to_string())
    }
}

/// The fingerprint of the body of `object` (every top-level field but `apiVersion`, `kind` and
/// `metadata`), as [`fingerprint::of_body`] computes it from the object's JSON.
pub(crate) fn of_body<T: Serialize>(object: &T) -> Result<Fingerprint, Error> {
    object.serialize(Fingerprinter { body: true })
}

#[derive(Clone, Copy)]
struct Fingerprinter {
    /// At the top level of an object whose body alone counts.
    body: bool,
}

fn value<T: Serialize + ?Sized>(value: &T) -> Result<Fingerprint, Error> {
    value.serialize(Fingerprinter { body: false })
}

/// A map or struct being fingerprinted.
struct MapState {
    body: bool,
    sum: u64,
    any: bool,
    key: Option<String>,
}

impl MapState {
    fn member(&mut self, key: &str, value: Fingerprint) {
        if self.body && matches!(key, "apiVersion" | "kind" | "metadata") {
            return;
        }
        if !value.empty {
            self.sum = self.sum.wrapping_add(fingerprint::member(key, value));
            self.any = true;
        }
    }
    fn done(self) -> Fingerprint {
        fingerprint::map(self.sum, self.any)
    }
}

/// A list being fingerprinted.
struct SeqState {
    builder: fingerprint::SeqBuilder,
}

/// An enum variant wrapping a value: `{"Variant": value}`.
struct VariantState<S> {
    variant: &'static str,
    inner: S,
}

impl ser::Serializer for Fingerprinter {
    type Ok = Fingerprint;
    type Error = Error;
    type SerializeSeq = SeqState;
    type SerializeTuple = SeqState;
    type SerializeTupleStruct = SeqState;
    type SerializeTupleVariant = VariantState<SeqState>;
    type SerializeMap = MapState;
    type SerializeStruct = MapState;
    type SerializeStructVariant = VariantState<MapState>;

    fn serialize_bool(self, v: bool) -> Result<Fingerprint, Error> {
        Ok(fingerprint::boolean(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Fingerprint, Error> {
        Ok(fingerprint::integer(i128::from(v)))
    }
    fn serialize_i16(self, v: i16) -> Result<Fingerprint, Error> {
        Ok(fingerprint::integer(i128::from(v)))
    }
    fn serialize_i32(self, v: i32) -> Result<Fingerprint, Error> {
        Ok(fingerprint::integer(i128::from(v)))
    }
    fn serialize_i64(self, v: i64) -> Result<Fingerprint, Error> {
        Ok(fingerprint::integer(i128::from(v)))
    }
    fn serialize_i128(self, v: i128) -> Result<Fingerprint, Error> {
        Ok(fingerprint::integer(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Fingerprint, Error> {
        Ok(fingerprint::integer(i128::from(v)))
    }
    fn serialize_u16(self, v: u16) -> Result<Fingerprint, Error> {
        Ok(fingerprint::integer(i128::from(v)))
    }
    fn serialize_u32(self, v: u32) -> Result<Fingerprint, Error> {
        Ok(fingerprint::integer(i128::from(v)))
    }
    fn serialize_u64(self, v: u64) -> Result<Fingerprint, Error> {
        Ok(fingerprint::integer(i128::from(v)))
    }
    fn serialize_f32(self, v: f32) -> Result<Fingerprint, Error> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Fingerprint, Error> {
        // serde_json writes NaN and infinities as null.
        Ok(if v.is_finite() {
            fingerprint::float(v)
        } else {
            fingerprint::map(0, false)
        })
    }
    fn serialize_char(self, v: char) -> Result<Fingerprint, Error> {
        Ok(fingerprint::string(v.encode_utf8(&mut [0; 4])))
    }
    fn serialize_str(self, v: &str) -> Result<Fingerprint, Error> {
        Ok(fingerprint::string(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Fingerprint, Error> {
        let mut seq = fingerprint::SeqBuilder::default();
        for byte in v {
            seq.push(fingerprint::integer(i128::from(*byte)));
        }
        Ok(seq.done())
    }
    fn serialize_none(self) -> Result<Fingerprint, Error> {
        Ok(fingerprint::map(0, false))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Fingerprint, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Fingerprint, Error> {
        Ok(fingerprint::map(0, false))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Fingerprint, Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Fingerprint, Error> {
        Ok(fingerprint::string(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Fingerprint, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Fingerprint, Error> {
        let value = value(v)?;
        Ok(fingerprint::map(
            fingerprint::member(variant, value),
            !value.empty,
        ))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<SeqState, Error> {
        Ok(SeqState {
            builder: fingerprint::SeqBuilder::default(),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqState, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqState, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantState<SeqState>, Error> {
        Ok(VariantState {
            variant,
            inner: self.serialize_seq(Some(len))?,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapState, Error> {
        Ok(MapState {
            body: self.body,
            sum: 0,
            any: false,
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<MapState, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantState<MapState>, Error> {
        Ok(VariantState {
            variant,
            inner: Fingerprinter { body: false }.serialize_map(Some(len))?,
        })
    }
}

impl ser::SerializeSeq for SeqState {
    type Ok = Fingerprint;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.builder.push(value(v)?);
        Ok(())
    }
    fn end(self) -> Result<Fingerprint, Error> {
        Ok(self.builder.done())
    }
}

impl ser::SerializeTuple for SeqState {
    type Ok = Fingerprint;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Fingerprint, Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for SeqState {
    type Ok = Fingerprint;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Fingerprint, Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleVariant for VariantState<SeqState> {
    type Ok = Fingerprint;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(&mut self.inner, v)
    }
    fn end(self) -> Result<Fingerprint, Error> {
        let inner = ser::SerializeSeq::end(self.inner)?;
        Ok(fingerprint::map(
            fingerprint::member(self.variant, inner),
            !inner.empty,
        ))
    }
}

impl ser::SerializeMap for MapState {
    type Ok = Fingerprint;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        let key = self.key.take().unwrap_or_default();
        let value = value(v)?;
        self.member(&key, value);
        Ok(())
    }
    fn end(self) -> Result<Fingerprint, Error> {
        Ok(self.done())
    }
}

impl ser::SerializeStruct for MapState {
    type Ok = Fingerprint;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        if self.body && matches!(key, "apiVersion" | "kind" | "metadata") {
            return Ok(());
        }
        let value = value(v)?;
        self.member(key, value);
        Ok(())
    }
    fn end(self) -> Result<Fingerprint, Error> {
        Ok(self.done())
    }
}

impl ser::SerializeStructVariant for VariantState<MapState> {
    type Ok = Fingerprint;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, v)
    }
    fn end(self) -> Result<Fingerprint, Error> {
        let inner = self.inner.done();
        Ok(fingerprint::map(
            fingerprint::member(self.variant, inner),
            !inner.empty,
        ))
    }
}

/// Map keys as serde_json writes them: strings, and numbers and booleans as strings.
struct KeySerializer;

fn unsupported() -> Error {
    Error("key must be a string".to_owned())
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = Impossible<String, Error>;
    type SerializeTuple = Impossible<String, Error>;
    type SerializeTupleStruct = Impossible<String, Error>;
    type SerializeTupleVariant = Impossible<String, Error>;
    type SerializeMap = Impossible<String, Error>;
    type SerializeStruct = Impossible<String, Error>;
    type SerializeStructVariant = Impossible<String, Error>;

    fn serialize_bool(self, v: bool) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _: f32) -> Result<String, Error> {
        Err(unsupported())
    }
    fn serialize_f64(self, _: f64) -> Result<String, Error> {
        Err(unsupported())
    }
    fn serialize_char(self, v: char) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_owned())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Error> {
        Err(unsupported())
    }
    fn serialize_none(self) -> Result<String, Error> {
        Err(unsupported())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Error> {
        Err(unsupported())
    }
    fn serialize_unit(self) -> Result<String, Error> {
        Err(unsupported())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Error> {
        Err(unsupported())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<String, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Error> {
        Err(unsupported())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(unsupported())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(unsupported())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(unsupported())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(unsupported())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(unsupported())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(unsupported())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(unsupported())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::json;

    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Object {
        api_version: String,
        kind: String,
        metadata: BTreeMap<String, String>,
        spec: Spec,
        status: Option<Status>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Spec {
        host: String,
        port: u16,
        ratio: f64,
        tags: Vec<String>,
        mode: Mode,
        zone: Option<String>,
        extra: BTreeMap<u32, bool>,
        bytes: Vec<u8>,
    }

    #[derive(Serialize)]
    struct Status {
        ok: Option<bool>,
    }

    #[derive(Serialize)]
    enum Mode {
        Fast,
        #[allow(dead_code)]
        Slow(u8),
    }

    #[test]
    fn a_typed_body_has_the_fingerprint_of_its_json() {
        let object = Object {
            api_version: "x/v1".into(),
            kind: "K".into(),
            metadata: BTreeMap::from([("name".into(), "n".into())]),
            spec: Spec {
                host: "db".into(),
                port: 80,
                ratio: 2.0,
                tags: vec!["a".into()],
                mode: Mode::Fast,
                zone: None,
                extra: BTreeMap::from([(7, true)]),
                bytes: vec![1, 2],
            },
            status: Some(Status { ok: None }),
        };
        let json = serde_json::to_vec(&object).unwrap();
        assert_eq!(
            of_body(&object).unwrap(),
            crate::fingerprint::of_body(&json).unwrap()
        );
        assert_eq!(
            of_body(&object).unwrap(),
            crate::fingerprint::of(
                json!({"spec": {"host": "db", "port": 80, "ratio": 2, "tags": ["a"], "mode": "Fast",
                                "extra": {"7": true}, "bytes": [1, 2]}})
                .to_string()
                .as_str()
            )
            .unwrap()
        );
    }
}
