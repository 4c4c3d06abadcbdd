//! A streaming fingerprint of what JSON *means*, to compare two texts without building trees or
//! serialising anything again.
//!
//! Two texts equivalent in the sense of [`semantic`](crate::semantic) (`null`, empty collections
//! and absent fields are one, numbers compare by value, map keys in any order) have the same
//! fingerprint; texts that differ have different ones except with probability about 2^-64. The
//! hash of a map is the wrapping sum of its members' hashes, so key order does not matter; list
//! elements are chained in order. The stash uses it to tell a lossless round trip at a glance;
//! when fingerprints differ, the exact comparison runs.

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The fingerprint of one JSON value; `empty` for `null`, `[]`, `{}` or maps of such.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub(crate) hash: u64,
    pub(crate) empty: bool,
}

const EMPTY: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's finaliser: a good 64-bit mix.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A hash of bytes, eight at a time, with a tag.
fn bytes_hash(tag: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash = tag.wrapping_mul(K) ^ (bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    mix(hash)
}

fn full(hash: u64) -> Fingerprint {
    Fingerprint { hash, empty: false }
}

pub(crate) fn boolean(value: bool) -> Fingerprint {
    full(bytes_hash(1, &[u8::from(value)]))
}

pub(crate) fn integer(value: i128) -> Fingerprint {
    full(bytes_hash(2, &value.to_le_bytes()))
}

pub(crate) fn string(value: &str) -> Fingerprint {
    full(bytes_hash(4, value.as_bytes()))
}

/// Chains the elements of a list in order.
pub(crate) struct SeqBuilder {
    hash: u64,
    any: bool,
}

impl Default for SeqBuilder {
    fn default() -> Self {
        Self {
            hash: 0x243f_6a88_85a3_08d3,
            any: false,
        }
    }
}

impl SeqBuilder {
    pub(crate) fn push(&mut self, element: Fingerprint) {
        self.hash = mix(self.hash ^ element.hash);
        self.any = true;
    }

    pub(crate) fn done(self) -> Fingerprint {
        if self.any {
            full(self.hash)
        } else {
            map(0, false)
        }
    }
}

pub(crate) fn float(value: f64) -> Fingerprint {
    // Integral floats are the integer they equal (`1.0` is `1`).
    if value.fract() == 0.0 && value.abs() < 1.8e19 {
        integer(value as i128)
    } else {
        full(bytes_hash(3, &value.to_bits().to_le_bytes()))
    }
}

/// The hash of a map member (zero for an empty value, so it adds nothing).
pub(crate) fn member(key: &str, value: Fingerprint) -> u64 {
    if value.empty {
        0
    } else {
        mix(bytes_hash(5, key.as_bytes()) ^ value.hash.rotate_left(17))
    }
}

/// The fingerprint of a map from the wrapping sum of its [`member`] hashes.
pub(crate) fn map(sum: u64, any: bool) -> Fingerprint {
    if any {
        full(mix(sum ^ 0x6a09_e667_f3bc_c908))
    } else {
        Fingerprint {
            hash: EMPTY,
            empty: true,
        }
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FingerprintVisitor)
    }
}

struct FingerprintVisitor;

impl<'de> Visitor<'de> for FingerprintVisitor {
    type Value = Fingerprint;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<Fingerprint, E> {
        Ok(map(0, false))
    }
    fn visit_bool<E>(self, value: bool) -> Result<Fingerprint, E> {
        Ok(boolean(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Fingerprint, E> {
        Ok(integer(i128::from(value)))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Fingerprint, E> {
        Ok(integer(i128::from(value)))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Fingerprint, E> {
        Ok(float(value))
    }
    fn visit_str<E>(self, value: &str) -> Result<Fingerprint, E> {
        Ok(string(value))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fingerprint, A::Error> {
        let mut builder = SeqBuilder::default();
        while let Some(element) = seq.next_element::<Fingerprint>()? {
            builder.push(element);
        }
        Ok(builder.done())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Fingerprint, A::Error> {
        let mut sum = 0u64;
        let mut any = false;
        while let Some(key) = access.next_key::<crate::raw::Text<'de>>()? {
            let value: Fingerprint = access.next_value()?;
            if !value.empty {
                sum = sum.wrapping_add(member(&key.0, value));
                any = true;
            }
        }
        Ok(map(sum, any))
    }
}

/// The fingerprint of JSON text (`None` when it is not JSON).
pub(crate) fn of(json: &str) -> Option<Fingerprint> {
    serde_json::from_str(json).ok()
}

/// The fingerprint of the *body* of the object in `json` (every member but `apiVersion`, `kind`
/// and `metadata`, which are skipped unread), as the map of those members.
pub(crate) fn of_body(json: &[u8]) -> Option<Fingerprint> {
    struct Body(Fingerprint);
    impl<'de> Deserialize<'de> for Body {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct BodyVisitor;
            impl<'de> Visitor<'de> for BodyVisitor {
                type Value = Body;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Body, A::Error> {
                    let mut sum = 0u64;
                    let mut any = false;
                    while let Some(key) = access.next_key::<crate::raw::Text<'de>>()? {
                        if matches!(key.0.as_ref(), "apiVersion" | "kind" | "metadata") {
                            access.next_value::<IgnoredAny>()?;
                            continue;
                        }
                        let value: Fingerprint = access.next_value()?;
                        if !value.empty {
                            sum = sum.wrapping_add(member(&key.0, value));
                            any = true;
                        }
                    }
                    Ok(Body(map(sum, any)))
                }
            }
            deserializer.deserialize_map(BodyVisitor)
        }
    }
    serde_json::from_slice::<Body>(json).ok().map(|body| body.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(json: &str) -> Fingerprint {
        of(json).unwrap()
    }

    #[test]
    fn equivalent_texts_have_one_fingerprint() {
        assert_eq!(
            fp(r#"{"a":1,"b":{"c":[1,2]}}"#),
            fp(r#"{ "b": {"c": [1, 2.0]}, "a": 1.0 }"#)
        );
        assert_eq!(
            fp(r#"{"a":1,"x":null,"y":[],"z":{"w":{}}}"#),
            fp(r#"{"a":1}"#)
        );
        assert_eq!(fp("null"), fp("{}"));
        assert!(fp(r#"{"a":null}"#).empty);
        assert_eq!(fp(r#"[{}]"#), fp(r#"[null]"#));
        assert_eq!(fp(r#""\u0041""#), fp(r#""A""#));
    }

    #[test]
    fn different_texts_differ() {
        for (a, b) in [
            (r#"{"a":1}"#, r#"{"a":2}"#),
            (r#"{"a":1}"#, r#"{"b":1}"#),
            (r#"[1,2]"#, r#"[2,1]"#),
            (r#"[1]"#, r#"[1,null]"#),
            (r#"{"a":"1"}"#, r#"{"a":1}"#),
            (r#"{"a":""}"#, r#"{}"#),
            (r#"{"a":0}"#, r#"{}"#),
            (r#"{"a":false}"#, r#"{}"#),
            (r#"{"a":{"b":1},"c":2}"#, r#"{"a":{"c":2},"b":1}"#),
            (r#"1.5"#, r#"1"#),
        ] {
            assert_ne!(fp(a), fp(b), "{a} vs {b}");
        }
    }

    #[test]
    fn a_body_skips_type_and_metadata() {
        let a =
            of_body(br#"{"apiVersion":"x/v1","kind":"K","metadata":{"name":"n"},"spec":{"a":1}}"#);
        let b = of_body(br#"{"spec":{"a":1.0},"status":{}}"#);
        assert_eq!(a, b);
        assert_eq!(a, Some(fp(r#"{"spec":{"a":1}}"#)));
    }
}
