//! Mutations: byte-level edits (AFL's "havoc"), and edits that understand the layers outside
//! input comes in — JSON (a review, a Secret, the rotation state), base64 inside a JSON string
//! (a Secret's `data`), PEM armour around DER, and DER's tag-length-value structure — so that a
//! mutation reaches the inner parser instead of only breaking the outer one.

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Map, Value};

use crate::rng::Rng;

/// Bytes that break parsers: JSON structure, quotes and escapes, PEM armour, DER tags and
/// lengths, extremes.
const INTERESTING_BYTES: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff, b'"', b'\\', b'{', b'}', b'[', b']', b',',
    b':', b'-', b'0', b'9', b'\n', b'\r', b' ', b'=', b'/', b'+', 0x30, 0x02, 0x03, 0x04, 0x05,
    0x06, 0xa0, 0xa3,
];

/// Numbers and words that break what reads them.
const INTERESTING_TEXT: &[&str] = &[
    "0",
    "-1",
    "-0",
    "1e999",
    "-1e999",
    "1.5",
    "4294967296",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "NaN",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "2562047h47m16.854775807s",
    "99999999999999999999h",
];

/// One mutated input from `input`; `corpus` supplies splices, `dictionary` tokens.
pub(crate) fn mutate(
    rng: &mut Rng,
    input: &[u8],
    corpus: &[Vec<u8>],
    dictionary: &[&str],
    max_len: usize,
) -> Vec<u8> {
    let mut data = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        data = mutate_layered(rng, &data, corpus, dictionary, 0);
    }
    data.truncate(max_len);
    data
}

/// One mutation at the outermost layer `data` has, or at a layer inside it.
fn mutate_layered(
    rng: &mut Rng,
    data: &[u8],
    corpus: &[Vec<u8>],
    dictionary: &[&str],
    depth: usize,
) -> Vec<u8> {
    if depth < 4 && rng.below(10) < 7 {
        if let Some(value) = json_of(data) {
            return mutate_json(rng, value, corpus, dictionary, depth);
        }
        if data.windows(11).any(|w| w == b"-----BEGIN ")
            && let Some(mutated) = mutate_pem(rng, data, corpus, dictionary, depth)
        {
            return mutated;
        }
    }
    let mut data = data.to_vec();
    havoc(rng, &mut data, corpus, dictionary);
    data
}

/// `data` as JSON, when it is an object or an array (scalars are left to byte edits).
fn json_of(data: &[u8]) -> Option<Value> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' && *first != b'[' {
        return None;
    }
    serde_json::from_slice(data).ok()
}

// === JSON ===

/// JSON pointers of the nodes of `value` (at most `limit`), the root first.
fn pointers(value: &Value, limit: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut index = 0;
    while index < out.len() && out.len() < limit {
        let pointer = out[index].clone();
        index += 1;
        match value.pointer(&pointer) {
            Some(Value::Object(map)) => {
                for key in map.keys() {
                    out.push(format!(
                        "{pointer}/{}",
                        key.replace('~', "~0").replace('/', "~1")
                    ));
                }
            }
            Some(Value::Array(items)) => {
                for i in 0..items.len() {
                    out.push(format!("{pointer}/{i}"));
                }
            }
            _ => {}
        }
    }
    out.truncate(limit);
    out
}

fn mutate_json(
    rng: &mut Rng,
    mut value: Value,
    corpus: &[Vec<u8>],
    dictionary: &[&str],
    depth: usize,
) -> Vec<u8> {
    let all = pointers(&value, 1024);
    let pointer = rng.pick(&all).cloned().unwrap_or_default();
    // A value from elsewhere: this document, or another input of the corpus.
    let donor = if rng.one_in(2) {
        rng.pick(&all)
            .and_then(|p| value.pointer(p))
            .cloned()
            .unwrap_or(Value::Null)
    } else {
        rng.pick(corpus)
            .and_then(|other| json_of(other))
            .map(|other| {
                let theirs = pointers(&other, 256);
                rng.pick(&theirs)
                    .and_then(|p| other.pointer(p))
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .unwrap_or(Value::Null)
    };
    let replacement = match rng.below(12) {
        0 => Some(Value::Null),
        1 => Some(Value::Bool(rng.one_in(2))),
        2 => Some(interesting_number(rng)),
        3 => rng
            .pick(dictionary)
            .map(|token| Value::String((*token).to_owned())),
        4 => Some(Value::String("x".repeat(rng.small_len(100_000)))),
        5 => Some(if rng.one_in(2) {
            Value::Array(Vec::new())
        } else {
            Value::Object(Map::new())
        }),
        6 => Some(nested(rng.small_len(300))),
        7 => Some(donor),
        8 => {
            // A string's content, mutated in its own layer (base64, PEM, a duration, a name).
            if let Some(Value::String(text)) = value.pointer(&pointer) {
                Some(Value::String(mutate_string(
                    rng, text, corpus, dictionary, depth,
                )))
            } else {
                None
            }
        }
        9 => {
            // Grow a list or a map: a copy of an element (more objects in a review).
            match value.pointer_mut(&pointer) {
                Some(Value::Array(items)) if !items.is_empty() => {
                    let copy = items[rng.below(items.len())].clone();
                    let times = rng.small_len(16);
                    for _ in 0..times {
                        items.push(copy.clone());
                    }
                }
                Some(Value::Object(map)) => {
                    let key = rng.pick(dictionary).copied().unwrap_or("x").to_owned();
                    map.insert(key, donor);
                }
                _ => {}
            }
            None
        }
        10 => {
            // Remove a member or an element.
            remove(&mut value, &pointer);
            None
        }
        _ => {
            // Swap the type keeping the text: "80" <-> 80, true <-> "true".
            match value.pointer(&pointer) {
                Some(Value::String(text)) => {
                    Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())))
                }
                Some(other) => Some(Value::String(other.to_string())),
                None => None,
            }
        }
    };
    if let Some(replacement) = replacement
        && let Some(slot) = value.pointer_mut(&pointer)
    {
        *slot = replacement;
    }
    let mut out = serde_json::to_vec(&value).unwrap_or_default();
    if rng.one_in(8) {
        // And a byte edit on the result (duplicate keys, broken syntax, odd whitespace).
        havoc(rng, &mut out, corpus, dictionary);
    }
    out
}

fn remove(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&key);
        }
        Some(Value::Array(items)) => {
            if let Ok(index) = key.parse::<usize>()
                && index < items.len()
            {
                items.remove(index);
            }
        }
        _ => {}
    }
}

fn interesting_number(rng: &mut Rng) -> Value {
    let numbers = [
        Value::from(0),
        Value::from(-1),
        Value::from(i64::MIN),
        Value::from(i64::MAX),
        Value::from(u64::MAX),
        Value::from(i32::MAX),
        Value::from(u32::MAX),
        Value::from(65_536),
        Value::from(1.5),
        Value::from(-1e300),
        Value::from(1e300),
    ];
    numbers[rng.below(numbers.len())].clone()
}

/// `depth` nested arrays (beyond serde_json's recursion limit of 128 when deep enough).
fn nested(depth: usize) -> Value {
    let mut value = Value::Null;
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

/// A string mutated in its own layer: base64 (a Secret's data) is decoded, mutated and encoded
/// again; anything else is mutated as bytes (a PEM inside a JSON string, a duration, a name).
fn mutate_string(
    rng: &mut Rng,
    text: &str,
    corpus: &[Vec<u8>],
    dictionary: &[&str],
    depth: usize,
) -> String {
    if text.len() >= 4
        && let Ok(decoded) = STANDARD.decode(text)
    {
        let mutated = mutate_layered(rng, &decoded, corpus, dictionary, depth + 1);
        return STANDARD.encode(mutated);
    }
    let mutated = mutate_layered(rng, text.as_bytes(), corpus, dictionary, depth + 1);
    String::from_utf8_lossy(&mutated).into_owned()
}

// === PEM and DER ===

fn mutate_pem(
    rng: &mut Rng,
    data: &[u8],
    corpus: &[Vec<u8>],
    dictionary: &[&str],
    depth: usize,
) -> Option<Vec<u8>> {
    let mut blocks = pem::parse_many(data).ok()?;
    if blocks.is_empty() {
        return None;
    }
    match rng.below(8) {
        0 => {
            // Drop, duplicate or reorder blocks.
            let i = rng.below(blocks.len());
            match rng.below(3) {
                0 => {
                    blocks.remove(i);
                }
                1 => {
                    let copy = blocks[i].clone();
                    blocks.push(copy);
                }
                _ => {
                    let j = rng.below(blocks.len());
                    blocks.swap(i, j);
                }
            }
        }
        1 => {
            // Another label: a key where a certificate is expected, and so on.
            let labels = [
                "CERTIFICATE",
                "PRIVATE KEY",
                "RSA PRIVATE KEY",
                "EC PRIVATE KEY",
                "CERTIFICATE REQUEST",
                "NEW CERTIFICATE REQUEST",
                "PUBLIC KEY",
                "X509 CRL",
                "",
            ];
            let i = rng.below(blocks.len());
            let label = labels[rng.below(labels.len())];
            blocks[i] = pem::Pem::new(label, blocks[i].contents().to_vec());
        }
        _ => {
            let i = rng.below(blocks.len());
            let mut der = blocks[i].contents().to_vec();
            if rng.one_in(2) {
                mutate_der(rng, &mut der);
            } else {
                der = mutate_layered(rng, &der, corpus, dictionary, depth + 1);
            }
            blocks[i] = pem::Pem::new(blocks[i].tag(), der);
        }
    }
    let config = pem::EncodeConfig::new().set_line_ending(if rng.one_in(4) {
        pem::LineEnding::CRLF
    } else {
        pem::LineEnding::LF
    });
    Some(pem::encode_many_config(&blocks, config).into_bytes())
}

/// DER edits at a tag-length-value header: the length made short, long, indefinite or huge,
/// the tag changed, or the element's value cut or grown.
fn mutate_der(rng: &mut Rng, der: &mut Vec<u8>) {
    // Offsets of plausible headers: a constructed or primitive universal tag and a length.
    let headers: Vec<usize> = (0..der.len().saturating_sub(1))
        .filter(|&i| matches!(der[i], 0x01..=0x06 | 0x0c | 0x13 | 0x17 | 0x18 | 0x30 | 0x31 | 0xa0..=0xa3))
        .collect();
    let Some(&at) = rng.pick(&headers) else {
        return;
    };
    let length_at = at + 1;
    match rng.below(6) {
        0 => der[length_at] = 0x80, // indefinite (not DER)
        1 => der[length_at] = 0x00,
        2 => {
            // A long-form length claiming gigabytes.
            let huge = [0x84, 0xff, 0xff, 0xff, 0xf0];
            der.splice(length_at..length_at + 1, huge);
        }
        3 => der[length_at] = der[length_at].wrapping_add(1 + rng.below(3) as u8),
        4 => der[at] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())],
        _ => {
            let cut = length_at + 1 + rng.below(der.len().saturating_sub(length_at));
            der.truncate(cut.min(der.len()));
        }
    }
}

// === bytes ===

/// AFL-style byte edits.
fn havoc(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&str]) {
    let len = data.len();
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
        }
        2 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next_u64() as u8;
        }
        3 => {
            let at = rng.below(len + 1);
            let count = rng.small_len(32);
            let bytes: Vec<u8> = (0..count).map(|_| rng.next_u64() as u8).collect();
            data.splice(at..at, bytes);
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let end = (at + rng.small_len(len - at)).min(len);
            data.drain(at..end);
        }
        5 if len > 0 => {
            // Duplicate a range (repeated members, a repeated PEM block).
            let at = rng.below(len);
            let end = (at + rng.small_len(len - at)).min(len);
            let chunk = data[at..end].to_vec();
            let to = rng.below(data.len() + 1);
            data.splice(to..to, chunk);
        }
        6 if len > 0 => data.truncate(rng.below(len)),
        7 => {
            let token = if rng.one_in(2) {
                rng.pick(dictionary).copied()
            } else {
                rng.pick(INTERESTING_TEXT).copied()
            };
            if let Some(token) = token {
                let at = rng.below(len + 1);
                data.splice(at..at, token.bytes());
            }
        }
        8 => {
            // Splice: our head, another input's tail.
            if let Some(other) = rng.pick(corpus) {
                let head = rng.below(len + 1);
                let tail = rng.below(other.len() + 1);
                data.truncate(head);
                data.extend_from_slice(&other[tail..]);
            }
        }
        9 => {
            // Overwrite with a chunk of another input.
            if let Some(other) = rng.pick(corpus)
                && !other.is_empty()
                && len > 0
            {
                let from = rng.below(other.len());
                let count = rng.small_len(other.len() - from);
                let to = rng.below(len);
                let end = (to + count).min(len);
                data[to..end].copy_from_slice(&other[from..from + (end - to)]);
            }
        }
        _ if len > 0 => {
            // Flip the case or the sign of a run: "True", "-80".
            let i = rng.below(len);
            data[i] = match data[i] {
                b'a'..=b'z' => data[i].to_ascii_uppercase(),
                b'A'..=b'Z' => data[i].to_ascii_lowercase(),
                b'0'..=b'9' => b'-',
                other => other.wrapping_add(1),
            };
        }
        _ => data.push(rng.next_u64() as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_pem_layers_are_mutated_inside_and_stay_parseable_often() {
        let mut rng = Rng::new(7);
        let json = br#"{"a":{"b":[1,2,3],"c":"hello"},"d":"aGVsbG8gd29ybGQ="}"#;
        let mut parseable = 0;
        let mut changed = 0;
        for _ in 0..1000 {
            let out = mutate(&mut rng, json, &[json.to_vec()], &["kind"], 1 << 20);
            parseable += usize::from(serde_json::from_slice::<Value>(&out).is_ok());
            changed += usize::from(out != json);
        }
        // JSON-aware edits keep a good share of outputs JSON (1 to 4 stacked edits, a third of
        // them byte edits; measured 400 of 1000), so the parser behind JSON is reached.
        assert!(parseable > 250, "{parseable} of 1000 parseable");
        assert!(changed > 900, "{changed} of 1000 changed");
    }

    #[test]
    fn der_length_edits_claim_huge_lengths() {
        let mut rng = Rng::new(1);
        let mut saw_huge = false;
        for _ in 0..200 {
            let mut der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
            mutate_der(&mut rng, &mut der);
            saw_huge |= der.windows(4).any(|w| w == [0x84, 0xff, 0xff, 0xff]);
        }
        assert!(saw_huge);
    }
}
