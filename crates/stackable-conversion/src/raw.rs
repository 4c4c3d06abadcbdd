//! Borrowed views of JSON objects: an object's members as raw JSON text, and writing objects
//! from such members, so that metadata (`managedFields` above all) is carried through without
//! ever being parsed into a tree or serialised again.
//!
//! Reading a member list still scans every byte once (to find where each member ends and to check
//! that the JSON is valid), but allocates only the list itself.

use std::{borrow::Cow, fmt};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

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
pub(crate) fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Text<'_>>(raw.get())
        .ok()
        .map(|t| t.0)
}

/// The members of a JSON object, in order, each value as raw JSON.
#[derive(Default)]
pub(crate) struct Members<'a>(pub(crate) Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// The members of the JSON object `json`, or `None` when it is not one.
    pub(crate) fn parse_bytes(json: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(json).ok()
    }

    /// The raw value of member `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The value of member `key` when it is a string.
    pub(crate) fn text(&self, key: &str) -> Option<Cow<'a, str>> {
        self.get(key).and_then(text)
    }
}

/// Reads a map into [`Members`].
struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(12));
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            members.push((key.0, value));
        }
        Ok(Members(members))
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
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
    /// Reads `raw`, or `None` when it is not an object.
    pub(crate) fn of(raw: &'a RawValue) -> Option<Self> {
        serde_json::from_str(raw.get()).ok()
    }

    /// Reads the JSON object `json`, or `None` when it is not one.
    pub(crate) fn parse_bytes(json: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(json).ok()
    }
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut object = Object::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if key.0 == "metadata" {
                        object.metadata = map.next_value::<MetadataMembers<'de>>()?.0;
                    } else {
                        let value: &'de RawValue = map.next_value()?;
                        object.members.0.push((key.0, value));
                    }
                }
                Ok(object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The members of `metadata` read in place (no second scan); `None` when it is not an object.
struct MetadataMembers<'a>(Option<Members<'a>>);

impl<'de> Deserialize<'de> for MetadataMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetadataVisitor;
        impl<'de> Visitor<'de> for MetadataVisitor {
            type Value = MetadataMembers<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("metadata")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                let members = MembersVisitor.visit_map(map)?;
                Ok(MetadataMembers(Some(members)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MetadataMembers(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MetadataMembers(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MetadataMembers(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MetadataMembers(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MetadataMembers(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MetadataMembers(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(MetadataMembers(None))
            }
        }
        deserializer.deserialize_any(MetadataVisitor)
    }
}

/// Whether JSON text is `null`, `{}` or `[]` (whitespace aside).
pub(crate) fn is_blank_text(json: &str) -> bool {
    let mut compact = json.bytes().filter(|b| !b.is_ascii_whitespace());
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

/// Writes JSON objects member by member.
pub(crate) struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    /// Opens an object.
    pub(crate) fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Writes the key of the next member.
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_string(self.out, key);
        self.out.push(b':');
    }

    /// A member whose value is raw JSON text.
    pub(crate) fn raw(&mut self, key: &str, json: impl AsRef<[u8]>) {
        self.key(key);
        self.out.extend_from_slice(json.as_ref());
    }

    /// A member whose value is an object, written with the returned writer (close it before
    /// writing the next member here).
    pub(crate) fn nested(&mut self, key: &str) -> ObjectWriter<'_> {
        self.key(key);
        ObjectWriter::open(self.out)
    }

    /// A member whose value is a string.
    pub(crate) fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        write_string(self.out, value);
    }

    /// Closes the object.
    pub(crate) fn close(self) {
        self.out.push(b'}');
    }
}

/// Writes `text` as a JSON string.
pub(crate) fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_borrow_their_values_and_keys() {
        let json = r#"{"a": {"x": [1, 2]}, "b\n": "t\"x", "c": null}"#;
        let members = Members::parse_bytes(json.as_bytes()).unwrap();
        assert_eq!(members.0.len(), 3);
        assert!(matches!(members.0[0].0, Cow::Borrowed("a")));
        assert_eq!(members.get("a").unwrap().get(), r#"{"x": [1, 2]}"#);
        assert_eq!(members.text("b\n").unwrap(), "t\"x");
        assert!(members.text("a").is_none());
        assert!(is_blank_text(members.get("c").unwrap().get()));
        assert!(!is_blank_text(members.get("a").unwrap().get()));
        assert!(is_blank_text(" { } "));
        assert!(!is_blank_text("nulll"));
        assert!(!is_blank_text("\"\""));
        assert!(Members::parse_bytes(b"[1]").is_none());
        assert!(Members::parse_bytes(b"{\"a\": }").is_none());
    }

    #[test]
    fn the_writer_writes_valid_json() {
        let mut out = Vec::new();
        let mut object = ObjectWriter::open(&mut out);
        object.string("k\"ey", "v\u{1}");
        object.raw("n", "[1,{\"a\":2}]");
        object.close();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"k\"ey": "v\u{1}", "n": [1, {"a": 2}]})
        );
    }
}
