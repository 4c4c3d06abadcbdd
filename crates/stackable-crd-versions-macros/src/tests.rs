//! Expansion snapshots (insta) of representative declarations, and the messages of rejected
//! ones. The compile-time behaviour of the expansions (that they build, what rustc reports at
//! which span) is tested with trybuild in `stackable-crd-versions`.

use proc_macro2::TokenStream;
use quote::quote;

use crate::expand::expand;

/// `#[versioned(attr)] item`, expanded and pretty-printed.
fn expanded(attr: TokenStream, item: TokenStream) -> String {
    match expand(attr, item) {
        Ok(tokens) => match syn::parse2::<syn::File>(tokens.clone()) {
            Ok(file) => prettyplease::unparse(&file),
            Err(error) => panic!("the expansion does not parse: {error}\n{tokens}"),
        },
        Err(error) => panic!("the declaration was refused: {error}"),
    }
}

/// The message of a refused declaration.
fn refused(attr: TokenStream, item: TokenStream) -> String {
    match expand(attr, item) {
        Ok(tokens) => panic!("the declaration was accepted:\n{tokens}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn crontab_kind_in_three_versions() {
    let expansion = expanded(
        quote!(
            version(v1beta1, storage, deprecated = "use v2"),
            version(v1),
            version(
                v2,
                kube(
                    printcolumn =
                        r#"{"name":"Policy","type":"string","jsonPath":".spec.concurrencyPolicy"}"#
                )
            )
        ),
        quote! {
            pub mod crontab {
                use super::*;

                /// The desired state.
                #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
                #[kube(group = "example.com", kind = "CronTab", namespaced, status = "CronTabStatus")]
                #[serde(rename_all = "camelCase")]
                pub struct CronTabSpec {
                    #[versioned(renamed(since = v1, from = cron_spec))]
                    pub schedule: String,
                    #[versioned(removed(since = v1, downgrade = join_host_port))]
                    pub host_port: String,
                    #[versioned(added(since = v1, try_upgrade = host_of))]
                    pub host: String,
                    #[versioned(added(since = v1))]
                    pub time_zone: Option<String>,
                    #[versioned(added(since = v2))]
                    pub concurrency_policy: ConcurrencyPolicy,
                }

                #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
                pub struct CronTabStatus {
                    #[versioned(renamed(since = v1, from = active), renamed(since = v2, from = active_jobs))]
                    pub running_jobs: Option<i32>,
                }

                #[versioned(added(since = v2))]
                #[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema)]
                pub enum ConcurrencyPolicy {
                    #[default]
                    Allow,
                    Forbid,
                }

                fn host_of(old: &v1beta1::CronTabSpec) -> Result<String, String> {
                    Ok(old.host_port.clone())
                }
                fn join_host_port(new: &v1::CronTabSpec) -> String {
                    new.host.clone()
                }
            }
        },
    );
    insta::assert_snapshot!(expansion);
}

#[test]
fn enum_variants_added_renamed_deprecated_removed() {
    let expansion = expanded(
        quote!(version(v1alpha1), version(v1beta1), version(v1)),
        quote! {
            #[derive(Clone, Debug)]
            #[serde(rename_all = "camelCase")]
            pub enum Part {
                Bolt,
                Nut { size: u32 },
                #[versioned(renamed(since = v1, from = Ring))]
                Washer(u8),
                #[versioned(added(since = v1beta1, downgrade_to = Bolt))]
                Spring,
                #[versioned(added(since = v1))]
                Sprocket,
                #[versioned(deprecated(since = v1beta1, note = "use Bolt"), removed(since = v1, upgrade_to = Bolt))]
                Rivet,
            }
        },
    );
    insta::assert_snapshot!(expansion);
}

#[test]
fn nested_types_in_containers_with_a_fallible_step() {
    let expansion = expanded(
        quote!(version(v1), version(v2)),
        quote! {
            pub(crate) mod shop {
                pub struct Order {
                    pub lines: Vec<Line>,
                    pub gift: Option<Box<Line>>,
                    pub by_sku: std::collections::BTreeMap<String, Vec<Line>>,
                    pub note: String,
                }
                pub struct Line {
                    #[versioned(changed(since = v2, from_name = qty, from_type = String, try_upgrade = parse_count, downgrade = u32_to_string))]
                    pub count: u32,
                }
            }
        },
    );
    insta::assert_snapshot!(expansion);
}

#[test]
fn one_generic_type_on_its_own() {
    let expansion = expanded(
        quote!(version(v1), version(v2)),
        quote! {
            #[derive(Clone, Debug, PartialEq)]
            struct Limits<T: Clone> where T: Default {
                pub max: T,
                #[versioned(added(since = v2, default = default_min))]
                pub min: T,
                #[versioned(deprecated(since = v2))]
                pub burst: Option<T>,
            }
        },
    );
    insta::assert_snapshot!(expansion);
}

#[test]
fn conversions_written_by_hand() {
    let expansion = expanded(
        quote!(version(v1), version(v2), convert_by_hand(since = v2)),
        quote! {
            pub struct Endpoint(pub String);
        },
    );
    insta::assert_snapshot!(expansion);
}

#[test]
fn refusals_name_the_problem() {
    let item = quote!(
        struct A {
            #[versioned(renamed(since = v3, from = b))]
            a: u8,
        }
    );
    assert_eq!(
        refused(quote!(version(v1), version(v2)), item),
        "unknown version `v3`; the declared versions are v1, v2"
    );

    let item = quote!(
        struct A {
            #[versioned(deprecated(since = v3), renamed(since = v2, from = b))]
            a: u8,
        }
    );
    assert!(
        refused(quote!(version(v1), version(v2), version(v3)), item).starts_with(
            "actions out of order: `renamed` in `v2` is written after `deprecated` in `v3`"
        )
    );

    let item = quote!(
        struct A {
            #[versioned(renamed(since = v2, from = b), deprecated(since = v2))]
            a: u8,
        }
    );
    assert!(
        refused(quote!(version(v1), version(v2)), item)
            .starts_with("two actions in version `v2`: `renamed` and `deprecated`")
    );

    let item = quote!(
        struct A {
            #[versioned(renamed(since = v2, from = b))]
            a: u8,
            b: u8,
        }
    );
    assert_eq!(
        refused(quote!(version(v1), version(v2)), item),
        "the name `b` collides in version `v1`: fields `a` and `b` are both called `b` there"
    );

    let item = quote!(
        struct A {
            #[versioned(changed(since = v2, from_type = String))]
            a: u8,
        }
    );
    assert_eq!(
        refused(quote!(version(v1), version(v2)), item),
        "a type change needs functions to convert values both ways: add `upgrade = path` (or `try_upgrade`) and `downgrade = path` (or `try_downgrade`)"
    );

    let item = quote!(
        struct A {
            #[versioned(added(since = v1))]
            a: u8,
        }
    );
    assert!(
        refused(quote!(version(v1), version(v2)), item)
            .starts_with("`added` since `v1`, the first version")
    );

    let item = quote!(
        enum E {
            #[versioned(added(since = v2, downgrade_to = Nope))]
            A,
            B,
        }
    );
    assert_eq!(
        refused(quote!(version(v1), version(v2)), item),
        "`E` has no variant `Nope` in version `v1`"
    );

    let item = quote!(
        #[kube(group = "g", kind = "K", version = "v1")]
        struct KSpec {}
    );
    assert!(
        refused(quote!(version(v1, storage)), item)
            .starts_with("`version` comes from the version list of #[versioned]")
    );

    let item = quote!(
        #[kube(group = "g", kind = "K")]
        struct KSpec {}
    );
    assert!(refused(quote!(version(v1)), item).starts_with("a CRD needs a storage version"));

    assert!(
        refused(
            quote!(version(v1), version(V2)),
            quote!(
                struct A;
            )
        )
        .starts_with("`V2` is not a Kubernetes version name")
    );
    assert_eq!(
        refused(
            quote!(version(v1), version(v1)),
            quote!(
                struct A;
            )
        ),
        "version `v1` is declared twice"
    );

    let item = quote!(
        struct A {
            a: (B, u8),
        }
    );
    let module = quote!(mod m { #item struct B; });
    assert!(
        refused(quote!(version(v1), version(v2)), module)
            .starts_with("cannot convert `(B , u8)` between versions")
    );
}
