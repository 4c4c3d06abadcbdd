//! The actions of a field, a variant or a whole type: `added`, `renamed`, `changed`,
//! `deprecated`, `removed` (and `convert_by_hand` for a type), parsed from `#[versioned(…)]` and
//! checked against the version list.
//!
//! Each action says what happened in the version named by `since`; the declaration shows the
//! field as it is in the newest version that has it, and the actions walk back from there.

use proc_macro2::Span;
use syn::{
    Attribute, Ident, LitStr, Path, Type, ext::IdentExt, meta::ParseNestedMeta, parse::ParseStream,
};

use crate::versions::Versions;

/// What an action is attached to; decides which options it takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Target {
    /// A struct field.
    Field,
    /// An enum variant.
    Variant,
    /// A whole struct or enum of a versioned module.
    Item,
}

/// A function a declaration points to.
#[derive(Clone)]
pub(crate) struct Func {
    /// Its path.
    pub(crate) path: Path,
    /// Written as `try_…`: it returns a `Result`.
    pub(crate) fallible: bool,
}

/// Where the value of a field or variant comes from when the other version does not have it.
#[derive(Clone)]
pub(crate) enum Fill {
    /// `Default::default()` (fields).
    Default,
    /// `default = path`: `path()` (fields).
    DefaultFn(Path),
    /// `upgrade = path` / `downgrade = path`: computed from the whole other value, by reference.
    Compute(Func),
    /// `downgrade_to = Variant` / `upgrade_to = Variant` (variants).
    Variant(Ident),
    /// No value: converting such a variant fails (variants).
    Fail,
}

/// `changed(since = …, from_name = …, from_type = …, upgrade = …, downgrade = …)`.
#[derive(Clone)]
pub(crate) struct Changed {
    /// The name before.
    pub(crate) from_name: Option<Ident>,
    /// The type before.
    pub(crate) from_type: Option<Type>,
    /// Old value -> new value.
    pub(crate) upgrade: Option<Func>,
    /// New value -> old value.
    pub(crate) downgrade: Option<Func>,
}

/// What happened.
#[derive(Clone)]
pub(crate) enum ActionKind {
    /// Did not exist before `since`; the fill gives its value on upgrade.
    Added(Fill),
    /// Does not exist from `since` on; the fill gives its value on downgrade.
    Removed(Fill),
    /// Had another name before `since`.
    Renamed { from: Ident },
    /// Had another type (and maybe name) before `since`, or its values changed meaning.
    Changed(Box<Changed>),
    /// Deprecated from `since` on.
    Deprecated { note: Option<LitStr> },
    /// The conversions between `since` and the version before are written by hand.
    ConvertByHand,
}

/// One action.
#[derive(Clone)]
pub(crate) struct Action {
    /// The action's keyword (`renamed`), where errors about the action point.
    pub(crate) keyword: Ident,
    /// The version as written.
    pub(crate) since: Ident,
    /// The version's position, set by [`resolve`].
    pub(crate) version: usize,
    /// What happened.
    pub(crate) kind: ActionKind,
}

impl Action {
    /// The keyword as written.
    pub(crate) fn name(&self) -> String {
        self.keyword.to_string()
    }
}

/// Parses `name`, `"name"`, or a keyword used as a name.
pub(crate) fn parse_ident(input: ParseStream<'_>) -> syn::Result<Ident> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        let mut ident: Ident = lit.parse_with(Ident::parse_any)?;
        ident.set_span(lit.span());
        Ok(ident)
    } else {
        input.call(Ident::parse_any)
    }
}

fn parse_path(input: ParseStream<'_>) -> syn::Result<Path> {
    if input.peek(LitStr) {
        input.parse::<LitStr>()?.parse()
    } else {
        input.parse()
    }
}

fn parse_type(input: ParseStream<'_>) -> syn::Result<Type> {
    if input.peek(LitStr) {
        input.parse::<LitStr>()?.parse()
    } else {
        input.parse()
    }
}

/// Is `attr` a `#[versioned(…)]`?
pub(crate) fn is_versioned(attr: &Attribute) -> bool {
    attr.path().is_ident("versioned")
}

/// The actions of every `#[versioned(…)]` among `attrs`, in the order written, and the
/// per-version doc comments (`doc(v1 = "…")`).
pub(crate) fn parse_attrs(
    attrs: &[Attribute],
    target: Target,
) -> syn::Result<(Vec<Action>, crate::docs::RawDocs)> {
    let mut actions = Vec::new();
    let mut docs = Vec::new();
    for attr in attrs.iter().filter(|a| is_versioned(a)) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("doc") {
                crate::docs::parse(&meta, &mut docs)
            } else {
                actions.push(parse_action(&meta, target)?);
                Ok(())
            }
        })?;
    }
    Ok((actions, docs))
}

/// Parses one action, `keyword(since = …, …)`.
pub(crate) fn parse_action(meta: &ParseNestedMeta<'_>, target: Target) -> syn::Result<Action> {
    let keyword = meta.path.get_ident().cloned().ok_or_else(|| {
        meta.error("expected an action: added, renamed, changed, deprecated or removed")
    })?;
    let name = keyword.to_string();
    let allowed: &[&str] = match target {
        Target::Field => &["added", "renamed", "changed", "deprecated", "removed"],
        Target::Variant => &["added", "renamed", "deprecated", "removed"],
        Target::Item => &["added", "removed", "convert_by_hand"],
    };
    if !allowed.contains(&name.as_str()) {
        let what = match target {
            Target::Field => "a field",
            Target::Variant => "a variant",
            Target::Item => "a type",
        };
        let hint = if target == Target::Variant && name == "changed" {
            "; a variant's payload cannot change type: add a new variant and remove the old one"
        } else {
            ""
        };
        return Err(syn::Error::new(
            keyword.span(),
            format!(
                "unknown action `{name}` for {what}; expected one of: {}{hint}",
                allowed.join(", ")
            ),
        ));
    }

    let mut since = None;
    let mut from = None;
    let mut changed = Changed {
        from_name: None,
        from_type: None,
        upgrade: None,
        downgrade: None,
    };
    let mut fill = None;
    let mut note = None;
    let set_fill = |slot: &mut Option<Fill>, value: Fill, key: &Ident| {
        if slot.is_some() {
            return Err(syn::Error::new(
                key.span(),
                "only one of `default`, `upgrade`/`try_upgrade` (for `added`) or `downgrade`/`try_downgrade` (for `removed`) gives the value",
            ));
        }
        *slot = Some(value);
        Ok(())
    };
    meta.parse_nested_meta(|arg| {
        let key = arg
            .path
            .get_ident()
            .cloned()
            .ok_or_else(|| arg.error("expected an option name"))?;
        let key_name = key.to_string();
        let func = |fallible| -> syn::Result<Func> {
            Ok(Func {
                path: parse_path(arg.value()?)?,
                fallible,
            })
        };
        match (name.as_str(), key_name.as_str(), target) {
            (_, "since", _) => since = Some(parse_ident(arg.value()?)?),
            ("renamed", "from", _) => from = Some(parse_ident(arg.value()?)?),
            ("changed", "from_name", _) => changed.from_name = Some(parse_ident(arg.value()?)?),
            ("changed", "from_type", _) => changed.from_type = Some(parse_type(arg.value()?)?),
            ("changed", "upgrade" | "try_upgrade", _) => {
                changed.upgrade = Some(func(key_name.starts_with("try_"))?);
            }
            ("changed", "downgrade" | "try_downgrade", _) => {
                changed.downgrade = Some(func(key_name.starts_with("try_"))?);
            }
            ("deprecated", "note", _) => note = Some(arg.value()?.parse::<LitStr>()?),
            ("added" | "removed", "default", Target::Field) => {
                set_fill(&mut fill, Fill::DefaultFn(parse_path(arg.value()?)?), &key)?;
            }
            ("added", "upgrade" | "try_upgrade", Target::Field)
            | ("removed", "downgrade" | "try_downgrade", Target::Field) => {
                set_fill(
                    &mut fill,
                    Fill::Compute(func(key_name.starts_with("try_"))?),
                    &key,
                )?;
            }
            ("added", "downgrade_to", Target::Variant)
            | ("removed", "upgrade_to", Target::Variant) => {
                set_fill(&mut fill, Fill::Variant(parse_ident(arg.value()?)?), &key)?;
            }
            _ => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "`{name}` has no option `{key_name}`{}",
                        options_hint(&name, target)
                    ),
                ));
            }
        }
        Ok(())
    })?;

    let since = since.ok_or_else(|| {
        syn::Error::new(
            keyword.span(),
            format!("`{name}` needs `since = <version>`: the version in which it happened"),
        )
    })?;
    let default_fill = match target {
        Target::Variant => Fill::Fail,
        _ => Fill::Default,
    };
    let kind = match name.as_str() {
        "added" => ActionKind::Added(fill.unwrap_or(default_fill)),
        "removed" => ActionKind::Removed(fill.unwrap_or(default_fill)),
        "renamed" => ActionKind::Renamed {
            from: from.ok_or_else(|| {
                syn::Error::new(
                    keyword.span(),
                    "`renamed` needs `from = <old name>`: the name before this version",
                )
            })?,
        },
        "changed" => ActionKind::Changed(Box::new(changed)),
        "deprecated" => ActionKind::Deprecated { note },
        _ => ActionKind::ConvertByHand,
    };
    Ok(Action {
        keyword,
        since,
        version: 0,
        kind,
    })
}

fn options_hint(action: &str, target: Target) -> &'static str {
    match (action, target) {
        ("added", Target::Field) => {
            "; expected `since`, and one of `default = path`, `upgrade = path` or `try_upgrade = path`"
        }
        ("removed", Target::Field) => {
            "; expected `since`, and one of `default = path`, `downgrade = path` or `try_downgrade = path`"
        }
        ("added", Target::Variant) => "; expected `since` and `downgrade_to = Variant`",
        ("removed", Target::Variant) => "; expected `since` and `upgrade_to = Variant`",
        ("renamed", _) => "; expected `since` and `from`",
        ("changed", _) => {
            "; expected `since`, `from_name`, `from_type`, `upgrade`/`try_upgrade`, `downgrade`/`try_downgrade`"
        }
        ("deprecated", _) => "; expected `since` and `note`",
        _ => "; expected `since`",
    }
}

/// Sets each action's version position, failing on an unknown version.
pub(crate) fn resolve(actions: &mut [Action], versions: &Versions) -> syn::Result<()> {
    for action in actions {
        action.version = versions.index_of(&action.since)?;
    }
    Ok(())
}

/// Checks one member's (or type's) resolved actions: oldest version first, one per version,
/// `added` first and `removed` last, nothing "since" the first version, and a type change with
/// functions both ways.
pub(crate) fn check(actions: &[Action], versions: &Versions) -> syn::Result<()> {
    let name_of = |i: usize| versions.list[i].name();
    for (i, action) in actions.iter().enumerate() {
        if action.version == 0 {
            return Err(syn::Error::new(
                action.since.span(),
                format!(
                    "`{}` since `{}`, the first version: there is no earlier version it changes from",
                    action.name(),
                    name_of(0)
                ),
            ));
        }
        if let Some(previous) = i.checked_sub(1).map(|p| &actions[p]) {
            if previous.version == action.version {
                return Err(syn::Error::new(
                    action.keyword.span(),
                    format!(
                        "two actions in version `{}`: `{}` and `{}`; one action per version (a rename with a type change is one `changed(from_name = …, from_type = …)`)",
                        name_of(action.version),
                        previous.name(),
                        action.name()
                    ),
                ));
            }
            if previous.version > action.version {
                return Err(syn::Error::new(
                    action.keyword.span(),
                    format!(
                        "actions out of order: `{}` in `{}` is written after `{}` in `{}`; list actions oldest version first",
                        action.name(),
                        name_of(action.version),
                        previous.name(),
                        name_of(previous.version)
                    ),
                ));
            }
        }
        let last = i + 1 == actions.len();
        match &action.kind {
            ActionKind::Added(_) if i != 0 => {
                return Err(syn::Error::new(
                    action.keyword.span(),
                    "`added` must be the first action: nothing happens before it exists",
                ));
            }
            ActionKind::Removed(_) if !last => {
                return Err(syn::Error::new(
                    action.keyword.span(),
                    "`removed` must be the last action: nothing happens after it is gone",
                ));
            }
            ActionKind::Changed(changed) => check_changed(action, changed)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_changed(action: &Action, changed: &Changed) -> syn::Result<()> {
    let has_functions = changed.upgrade.is_some() || changed.downgrade.is_some();
    if changed.from_name.is_none() && changed.from_type.is_none() && !has_functions {
        return Err(syn::Error::new(
            action.keyword.span(),
            "`changed` without a change: give `from_name`, `from_type` and/or functions `upgrade`/`downgrade`",
        ));
    }
    if (changed.from_type.is_some() || has_functions)
        && (changed.upgrade.is_none() || changed.downgrade.is_none())
    {
        let missing = match (&changed.upgrade, &changed.downgrade) {
            (None, None) => {
                "`upgrade = path` (or `try_upgrade`) and `downgrade = path` (or `try_downgrade`)"
            }
            (None, Some(_)) => "`upgrade = path` (or `try_upgrade`)",
            _ => "`downgrade = path` (or `try_downgrade`)",
        };
        let what = if changed.from_type.is_some() {
            "a type change"
        } else {
            "a changed value"
        };
        return Err(syn::Error::new(
            action.keyword.span(),
            format!("{what} needs functions to convert values both ways: add {missing}"),
        ));
    }
    Ok(())
}

/// The span of the first `#[versioned]` attribute among `attrs`, or the call site.
pub(crate) fn attrs_span(attrs: &[Attribute]) -> Span {
    attrs
        .iter()
        .find(|a| is_versioned(a))
        .map_or_else(Span::call_site, |a| a.pound_token.span)
}

/// `#[versioned(…)]` on something that takes no actions.
pub(crate) fn refuse_attrs(attrs: &[Attribute], what: &str) -> syn::Result<()> {
    match attrs.iter().find(|a| is_versioned(a)) {
        Some(attr) => Err(syn::Error::new_spanned(
            attr,
            format!("{what} takes no `#[versioned]` actions"),
        )),
        None => Ok(()),
    }
}
