//! The object as received, read from the review body as JSON text: [`review_object`] finds
//! `request.object` in the body, and [`Members`] splits an object into its members (kept as
//! text), one level at a time, only where the handler changed something (see
//! [`super::patch::compute_patch_tokens`]).

use std::{borrow::Cow, sync::OnceLock};

use serde_json::{Map, Value};

use super::snapshot;

/// `request.object` as received: its JSON text and, when it is an object, its members (read in
/// the same pass that found it).
pub(super) struct RawObject<'a> {
    pub(super) text: &'a str,
    pub(super) members: Option<Members<'a, &'a str>>,
}

impl<'a> RawObject<'a> {
    /// `text` alone, its members read when needed.
    #[cfg(test)]
    pub(super) fn text(text: &'a str) -> Self {
        Self {
            text,
            members: None,
        }
    }
}

/// `request.object` of a review body (the last one of repeated keys, as serde_json reads it);
/// `None` when absent or `null`. `body` must be one JSON value (the route's decoder read it):
/// this reads only its structure (see [`Cursor`]).
pub(super) fn review_object(body: &str) -> Option<RawObject<'_>> {
    let mut cursor = Cursor::new(body);
    let mut object = None;
    cursor.members(|cursor, key| {
        if key != "request" {
            return cursor.skip_value();
        }
        // A later `request` replaces an earlier one as a whole.
        object = None;
        if cursor.peek()? != b'{' {
            return cursor.skip_value();
        }
        cursor.members(|cursor, key| {
            if key != "object" {
                return cursor.skip_value();
            }
            let first = cursor.peek()?;
            let start = cursor.at;
            let members = if first == b'{' {
                Some(Members::read_at(cursor)?)
            } else {
                cursor.skip_value()?;
                None
            };
            let text = cursor.text.get(start..cursor.at)?;
            object = Some(RawObject { text, members });
            Some(())
        })
    })?;
    cursor.at_end()?;
    object.filter(|object| object.text != "null")
}

/// A reader of the structure of a JSON text known to be valid (a body serde_json read, or
/// serde_json's output): it finds where values begin and end, and reads keys, without
/// checking what serde_json already checked (numbers, literals, escapes), so it runs through
/// strings eight bytes at a time and through everything else a byte at a time. On a text that
/// is not valid JSON it returns `None` or wrong boundaries, never panics.
struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    /// The next byte after whitespace (not consumed).
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        loop {
            match *self.bytes.get(self.at)? {
                b' ' | b'\n' | b'\r' | b'\t' => self.at += 1,
                byte => return Some(byte),
            }
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Only whitespace left.
    fn at_end(&mut self) -> Option<()> {
        match self.peek() {
            None => Some(()),
            Some(_) => None,
        }
    }

    /// Past the string whose opening quote is at `at`; whether it holds escapes.
    #[inline(always)]
    fn string(&mut self) -> Option<bool> {
        let bytes = self.bytes;
        let mut at = self.at + 1;
        let mut escaped = false;
        loop {
            at = crate::json_scan::skip_plain::<false>(bytes, at);
            match *bytes.get(at)? {
                b'"' => {
                    self.at = at + 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    at += 2;
                }
                _ => at += 1,
            }
        }
    }

    /// Past the value at the current position (after whitespace).
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.bytes.get(self.at)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                // A number or a literal: up to what may follow a value.
                while let Some(byte) = self.bytes.get(self.at) {
                    if matches!(byte, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    /// The text of the value at the current position (after whitespace).
    fn value(&mut self) -> Option<&'a str> {
        self.peek()?;
        let start = self.at;
        self.skip_value()?;
        self.text.get(start..self.at)
    }

    /// The key at the current position (after whitespace), unescaped as serde_json does.
    fn key(&mut self) -> Option<Cow<'a, str>> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at;
        let escaped = self.string()?;
        let quoted = self.text.get(start..self.at)?;
        if escaped {
            serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
        } else {
            quoted.get(1..quoted.len() - 1).map(Cow::Borrowed)
        }
    }

    /// Calls `member` with each key of the object at the current position; it reads the
    /// value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.key()?;
            self.expect(b':')?;
            member(self, &key)?;
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

/// One member of an object.
pub(super) struct Member<'a, V> {
    pub(super) key: Cow<'a, str>,
    /// The value (the last one of a repeated key): JSON text, or a snapshot's node.
    pub(super) value: V,
    /// Where the key first appears among the members.
    first: usize,
}

/// The members of an object, as a `serde_json::Map` holds them: the last value of a repeated
/// key, in the map's order.
pub(super) struct Members<'a, V> {
    /// By key.
    sorted: Vec<Member<'a, V>>,
}

impl<'a> Members<'a, &'a str> {
    /// The members of `text`, a valid JSON object (whitespace around it allowed; see
    /// [`Cursor`]); `None` when it is not an object.
    pub(super) fn read(text: &'a str) -> Option<Self> {
        let mut cursor = Cursor::new(text);
        let members = Self::read_at(&mut cursor)?;
        cursor.at_end()?;
        Some(members)
    }

    /// The members of the object at the cursor (after whitespace); the cursor ends after it.
    fn read_at(cursor: &mut Cursor<'a>) -> Option<Self> {
        let mut all = Vec::new();
        cursor.expect(b'{')?;
        if cursor.peek()? == b'}' {
            cursor.at += 1;
        } else {
            loop {
                let key = cursor.key()?;
                cursor.expect(b':')?;
                let value = cursor.value()?;
                let first = all.len();
                all.push(Member { key, value, first });
                match cursor.peek()? {
                    b',' => cursor.at += 1,
                    b'}' => {
                        cursor.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        Some(Self::new(all))
    }
}

impl<'a> Members<'a, &'a [u8]> {
    /// The members of a snapshot's object node; `None` when it is not an object.
    pub(super) fn of_node(node: &'a [u8]) -> Option<Self> {
        let mut all = Vec::new();
        snapshot::each_member(node, |key, value| {
            let first = all.len();
            all.push(Member {
                key: Cow::Borrowed(key),
                value,
                first,
            });
        })?;
        Some(Self::new(all))
    }
}

impl<'a, V: Copy> Members<'a, V> {
    /// `all` in the order they came in (`first` their index).
    fn new(mut all: Vec<Member<'a, V>>) -> Self {
        // Stable: a repeated key's members stay in the order they came in.
        all.sort_by(|a, b| a.key.cmp(&b.key));
        // The last value wins; the key keeps its first place.
        all.dedup_by(|later, kept| {
            let repeated = later.key == kept.key;
            if repeated {
                kept.value = later.value;
            }
            repeated
        });
        Self { sorted: all }
    }

    /// The value of `key` (a binary search; [`Members::lookup`] for many keys).
    #[cfg(test)]
    pub(super) fn get(&self, key: &str) -> Option<V> {
        self.sorted
            .binary_search_by(|member| member.key.as_ref().cmp(key))
            .ok()
            .map(|index| self.sorted[index].value)
    }

    /// A lookup of keys that come in increasing order (another object's members in map order,
    /// when the map sorts its keys): each key is looked for from where the last one was, one
    /// comparison per member passed, instead of a binary search from the start.
    pub(super) fn lookup(&self) -> Lookup<'_, 'a, V> {
        Lookup {
            sorted: &self.sorted,
            next: 0,
        }
    }

    /// The members in the order a `serde_json::Map` built from them iterates them: by key,
    /// or, with serde_json's `preserve_order` feature, where each key first appears.
    pub(super) fn in_map_order(&self) -> InMapOrder<'_, 'a, V> {
        if map_sorts_keys() {
            InMapOrder::Sorted(self.sorted.iter())
        } else {
            let mut members: Vec<&Member<'a, V>> = self.sorted.iter().collect();
            members.sort_by_key(|member| member.first);
            InMapOrder::ByFirst(members.into_iter())
        }
    }
}

/// Keys looked up in increasing order (see [`Members::lookup`]).
pub(super) struct Lookup<'m, 'a, V> {
    sorted: &'m [Member<'a, V>],
    /// Every member before it has a key below the last key looked up.
    next: usize,
}

impl<V: Copy> Lookup<'_, '_, V> {
    /// The value of `key` (the last value of a repeated key), whatever the order of the keys: a
    /// key that is not above the member before `next` is looked for by binary search.
    pub(super) fn get(&mut self, key: &str) -> Option<V> {
        let passed = self
            .next
            .checked_sub(1)
            .and_then(|last| self.sorted.get(last));
        if passed.is_some_and(|member| member.key.as_ref() >= key) {
            return match self
                .sorted
                .binary_search_by(|member| member.key.as_ref().cmp(key))
            {
                Ok(index) => {
                    self.next = index + 1;
                    Some(self.sorted[index].value)
                }
                Err(index) => {
                    self.next = index;
                    None
                }
            };
        }
        while let Some(member) = self.sorted.get(self.next) {
            match member.key.as_ref().cmp(key) {
                std::cmp::Ordering::Less => self.next += 1,
                std::cmp::Ordering::Equal => {
                    self.next += 1;
                    return Some(member.value);
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

/// The members in a map's order (see [`Members::in_map_order`]).
pub(super) enum InMapOrder<'m, 'a, V> {
    Sorted(std::slice::Iter<'m, Member<'a, V>>),
    ByFirst(std::vec::IntoIter<&'m Member<'a, V>>),
}

impl<'m, 'a, V> Iterator for InMapOrder<'m, 'a, V> {
    type Item = &'m Member<'a, V>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Sorted(members) => members.next(),
            Self::ByFirst(members) => members.next(),
        }
    }
}

/// Whether `serde_json::Map` iterates its keys sorted (a `BTreeMap`), as it does unless some
/// crate of the build enables serde_json's `preserve_order` feature.
fn map_sorts_keys() -> bool {
    static SORTED: OnceLock<bool> = OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut map = Map::new();
        map.insert("b".to_owned(), Value::Null);
        map.insert("a".to_owned(), Value::Null);
        map.keys().next().is_some_and(|key| key == "a")
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_object_of_a_review() {
        let body = r#" {"kind": "AdmissionReview", "request": {"uid": "u", "object": {"a": [1, {"b": "}\\\""}]}, "oldObject": null}} "#;
        assert_eq!(
            review_object(body).map(|object| object.text),
            Some(r#"{"a": [1, {"b": "}\\\""}]}"#)
        );
        // The last of repeated keys, as serde_json reads them.
        let body = r#"{"request": {"object": {"a": 1}, "object": {"a": 2}}}"#;
        assert_eq!(
            review_object(body).map(|object| object.text),
            Some(r#"{"a": 2}"#)
        );
        let body = r#"{"request": {"object": {"a": 1}}, "request": {"uid": "u"}}"#;
        assert!(review_object(body).is_none());
        let body = r#"{"requ\u0065st": {"object": {"a": 1}}}"#;
        assert_eq!(
            review_object(body).map(|object| object.text),
            Some(r#"{"a": 1}"#)
        );
        assert!(review_object(r#"{"request": {"object": null}}"#).is_none());
        assert!(review_object(r#"{"request": {"object": {}}"#).is_none());
        assert!(review_object(r#"{"request": {"object": {}}} x"#).is_none());
        let object = review_object(r#"{"request": {"object": {"b": 1, "a": [2]}}}"#).unwrap();
        let members = object.members.unwrap();
        assert_eq!(
            (members.get("a"), members.get("b")),
            (Some("[2]"), Some("1"))
        );
        let object = review_object(r#"{"request": {"object": "text"}}"#).unwrap();
        assert!(object.members.is_none());
    }

    #[test]
    fn a_lookup_finds_what_get_finds_in_any_order() {
        let members = Members::read(r#"{"d": 4, "b": 2, "f": 6, "a": 1, "b": 3}"#).unwrap();
        let keys = ["", "a", "b", "c", "d", "e", "f", "g"];
        // Increasing, decreasing, repeated and jumping back and forth.
        let orders: [&[usize]; 4] = [
            &[0, 1, 2, 3, 4, 5, 6, 7],
            &[7, 6, 5, 4, 3, 2, 1, 0],
            &[2, 2, 4, 4, 1, 1, 6, 3],
            &[6, 1, 7, 0, 5, 2, 4, 3],
        ];
        for order in orders {
            let mut lookup = members.lookup();
            for &index in order {
                let key = keys[index];
                assert_eq!(lookup.get(key), members.get(key), "{key:?} in {order:?}");
            }
        }
        assert_eq!(members.get("b"), Some("3"));
    }

    #[test]
    fn members_as_a_map_holds_them() {
        let text = r#" { "b" : 1, "a": {"x": [2]}, "b": "two", "c\u0031": null } "#;
        let members = Members::read(text).unwrap();
        assert_eq!(members.get("b"), Some(r#""two""#));
        assert_eq!(members.get("a"), Some(r#"{"x": [2]}"#));
        assert_eq!(members.get("c1"), Some("null"));
        assert_eq!(members.get("c"), None);
        let keys: Vec<&str> = members
            .in_map_order()
            .map(|member| member.key.as_ref())
            .collect();
        let map: Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(keys, map.keys().map(String::as_str).collect::<Vec<_>>());
        assert!(Members::read("[1]").is_none());
        assert!(Members::read(r#"{"a": 1} {}"#).is_none());
        assert!(Members::read(r#"{"a" 1}"#).is_none());
    }

    /// Any JSON tree, with escapes in keys and strings.
    fn tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            "[a-c\"\\\\\u{e9}\u{1}/{}\\[\\],:]{0,4}".prop_map(Value::String),
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
        /// On text that is not JSON (the reader's contract is valid JSON) it answers `None` or
        /// wrong boundaries, and never panics: brackets, quotes and escapes cut anywhere.
        #[test]
        fn any_text_is_read_without_panicking(
            text in "[\\[\\]{}\",:\\\\a1 ]{0,48}",
            json in tree(),
        ) {
            let _ = Members::read(&text);
            let _ = review_object(&text);
            let whole = serde_json::to_string(&json).unwrap();
            for cut in (0..=whole.len()).filter(|&cut| whole.is_char_boundary(cut)) {
                let _ = Members::read(&whole[..cut]);
                let body = format!(r#"{{"request": {{"object": {}"#, &whole[..cut]);
                let _ = review_object(&body);
            }
        }

        /// Each member's text is the text serde_json reads as that member, compact or pretty.
        #[test]
        fn members_read_as_serde_json_reads_them(tree in tree()) {
            let Value::Object(map) = &tree else { return Ok(()) };
            for text in [serde_json::to_string(&tree).unwrap(), serde_json::to_string_pretty(&tree).unwrap()] {
                let members = Members::read(&text).unwrap();
                let keys: Vec<&str> = members.in_map_order().map(|member| member.key.as_ref()).collect();
                prop_assert_eq!(keys, map.keys().map(String::as_str).collect::<Vec<_>>());
                // serde_json's reading of the whole text (its floats may differ from the tree's).
                let parsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
                for (key, expected) in &parsed {
                    let text = members.get(key).unwrap();
                    prop_assert_eq!(&serde_json::from_str::<Value>(text).unwrap(), expected);
                }
                let body = format!(r#"{{"request": {{"object": {text}}}}}"#);
                let object = review_object(&body).unwrap();
                prop_assert_eq!(object.text, text.trim());
                let from_body = object.members.unwrap();
                prop_assert_eq!(
                    from_body.in_map_order().map(|member| (member.key.as_ref(), member.value)).collect::<Vec<_>>(),
                    members.in_map_order().map(|member| (member.key.as_ref(), member.value)).collect::<Vec<_>>()
                );
            }
        }
    }
}
