//! The JSON names serde gives fields and variants (`rename_all`, `rename`), so that a failed
//! conversion names the field as the user wrote it in YAML (`spec.hostPort`, not `host_port`).
//!
//! Best effort: only used in error messages; attributes it does not understand are ignored.
//! The rules are serde's (<https://serde.rs/container-attrs.html#rename_all>).

use syn::{Attribute, LitStr};

/// The value of `key = "…"` (or `key(deserialize = "…")`) inside `#[serde(…)]`.
fn serde_string(attrs: &[Attribute], key: &str) -> Option<String> {
    let mut found = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident(key) {
                if meta.input.peek(syn::Token![=]) {
                    found = Some(meta.value()?.parse::<LitStr>()?.value());
                } else {
                    meta.parse_nested_meta(|inner| {
                        if inner.path.is_ident("deserialize") {
                            found = Some(inner.value()?.parse::<LitStr>()?.value());
                        } else {
                            let _ = inner.value()?.parse::<LitStr>()?;
                        }
                        Ok(())
                    })?;
                }
            } else if meta.input.peek(syn::Token![=]) {
                let _ = meta.value()?.parse::<syn::Expr>()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _ = meta.input.parse::<proc_macro2::TokenTree>()?;
            }
            Ok(())
        });
    }
    found
}

/// `#[serde(rename_all = "…")]` of a container.
pub(crate) fn rename_all(attrs: &[Attribute]) -> Option<String> {
    serde_string(attrs, "rename_all")
}

/// `#[serde(rename = "…")]` of a field or variant.
pub(crate) fn rename(attrs: &[Attribute]) -> Option<String> {
    serde_string(attrs, "rename")
}

fn words_of_snake(name: &str) -> Vec<String> {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn words_of_pascal(name: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for c in name.chars() {
        if c.is_uppercase() || words.is_empty() {
            words.push(String::new());
        }
        if let Some(word) = words.last_mut() {
            word.extend(c.to_lowercase());
        }
    }
    words
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn join(words: &[String], rule: &str) -> Option<String> {
    Some(match rule {
        "lowercase" => words.concat(),
        "UPPERCASE" => words.concat().to_uppercase(),
        "PascalCase" => words.iter().map(|w| capitalised(w)).collect(),
        "camelCase" => {
            let mut out = words.first().cloned().unwrap_or_default();
            out.extend(words.iter().skip(1).map(|w| capitalised(w)));
            out
        }
        "snake_case" => words.join("_"),
        "SCREAMING_SNAKE_CASE" => words.join("_").to_uppercase(),
        "kebab-case" => words.join("-"),
        "SCREAMING-KEBAB-CASE" => words.join("-").to_uppercase(),
        _ => return None,
    })
}

/// The JSON name of a field called `rust` (snake_case) in Rust.
pub(crate) fn field_name(rust: &str, rename: Option<&str>, rule: Option<&str>) -> String {
    let rust = rust.strip_prefix("r#").unwrap_or(rust);
    if let Some(rename) = rename {
        return rename.to_owned();
    }
    match rule {
        // serde leaves field names as written for these two.
        Some("lowercase") | Some("snake_case") | None => rust.to_owned(),
        Some(rule) => join(&words_of_snake(rust), rule).unwrap_or_else(|| rust.to_owned()),
    }
}

/// The JSON name of a variant called `rust` (PascalCase) in Rust.
pub(crate) fn variant_name(rust: &str, rename: Option<&str>, rule: Option<&str>) -> String {
    let rust = rust.strip_prefix("r#").unwrap_or(rust);
    if let Some(rename) = rename {
        return rename.to_owned();
    }
    match rule {
        Some("PascalCase") | None => rust.to_owned(),
        Some(rule) => join(&words_of_pascal(rust), rule).unwrap_or_else(|| rust.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_serde() {
        assert_eq!(field_name("host_port", None, Some("camelCase")), "hostPort");
        assert_eq!(
            field_name("host_port", None, Some("PascalCase")),
            "HostPort"
        );
        assert_eq!(
            field_name("host_port", None, Some("kebab-case")),
            "host-port"
        );
        assert_eq!(
            field_name("host_port", None, Some("SCREAMING_SNAKE_CASE")),
            "HOST_PORT"
        );
        assert_eq!(field_name("host_port", None, None), "host_port");
        assert_eq!(field_name("r#type", None, Some("camelCase")), "type");
        assert_eq!(field_name("x", Some("y"), Some("camelCase")), "y");
    }

    #[test]
    fn variants_follow_serde() {
        assert_eq!(
            variant_name("OnFailure", None, Some("camelCase")),
            "onFailure"
        );
        assert_eq!(
            variant_name("OnFailure", None, Some("snake_case")),
            "on_failure"
        );
        assert_eq!(
            variant_name("OnFailure", None, Some("lowercase")),
            "onfailure"
        );
        assert_eq!(variant_name("OnFailure", None, None), "OnFailure");
    }
}
