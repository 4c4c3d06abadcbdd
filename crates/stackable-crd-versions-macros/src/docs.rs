//! Doc comments for some versions only: `#[versioned(doc(v1beta1 = "…"))]` replaces the doc
//! comments of a type, field or variant in the versions it names (the CRD schema's descriptions
//! come from them); the other versions keep the doc comments as written.

use syn::{Attribute, Ident, LitStr, meta::ParseNestedMeta};

use crate::versions::Versions;

/// Doc overrides as written: (version, text).
pub(crate) type RawDocs = Vec<(Ident, LitStr)>;

/// The doc overrides of one type, field or variant, by version position.
#[derive(Default)]
pub(crate) struct VersionDocs(Vec<(usize, LitStr)>);

/// Parses the inside of `doc(v1beta1 = "…", v1 = "…")`.
pub(crate) fn parse(
    meta: &ParseNestedMeta<'_>,
    into: &mut Vec<(Ident, LitStr)>,
) -> syn::Result<()> {
    meta.parse_nested_meta(|entry| {
        let version = entry
            .path
            .get_ident()
            .cloned()
            .ok_or_else(|| entry.error("expected a version: `doc(v1 = \"…\")`"))?;
        let text: LitStr = entry.value()?.parse()?;
        into.push((version, text));
        Ok(())
    })
}

impl VersionDocs {
    /// Resolves the versions; an unknown or repeated version is an error at its name.
    pub(crate) fn resolve(raw: RawDocs, versions: &Versions) -> syn::Result<Self> {
        let mut docs: Vec<(usize, LitStr)> = Vec::new();
        for (ident, text) in raw {
            let v = versions.index_of(&ident)?;
            if docs.iter().any(|(seen, _)| *seen == v) {
                return Err(syn::Error::new(
                    ident.span(),
                    format!("two doc comments for version `{ident}`"),
                ));
            }
            docs.push((v, text));
        }
        Ok(Self(docs))
    }

    /// `attrs` for version `v`: with the doc comments replaced if `v` has its own.
    pub(crate) fn apply(&self, attrs: &[Attribute], v: usize) -> Vec<Attribute> {
        let Some((_, text)) = self.0.iter().find(|(seen, _)| *seen == v) else {
            return attrs.to_vec();
        };
        let mut out: Vec<Attribute> = attrs
            .iter()
            .filter(|a| !a.path().is_ident("doc"))
            .cloned()
            .collect();
        let lines = text.value();
        let docs = lines.lines().map(|line| {
            let line = format!(" {line}");
            let attr: Attribute = syn::parse_quote!(#[doc = #line]);
            attr
        });
        // Doc comments first, as they were written.
        out.splice(0..0, docs);
        out
    }
}
