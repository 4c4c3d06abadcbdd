//! Declare a CRD's versions once: `#[versioned]` turns one declaration into one Rust type per
//! version, the conversions between adjacent versions, the [`KindConverter`] that chains them and
//! the merged multi-version CRD, so that nothing has to be kept in agreement by hand.
//!
//! The declaration shows every type as it is in the newest version that has it; actions on
//! fields, variants and types say what was different before:
//!
//! ```
//! use kube::CustomResource;
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//! use stackable_crd_versions::versioned;
//!
//! #[versioned(
//!     version(v1beta1, storage, deprecated = "use example.com/v1"),
//!     version(v1),
//! )]
//! pub mod crontab {
//!     use super::*;
//!
//!     /// The desired state of a CronTab.
//!     #[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
//!     #[kube(group = "example.com", kind = "CronTab", namespaced, status = "CronTabStatus")]
//!     #[serde(rename_all = "camelCase")]
//!     pub struct CronTabSpec {
//!         /// The cron schedule.
//!         #[versioned(renamed(since = v1, from = cron_spec))]
//!         pub schedule: String,
//!         /// `host:port`, until v1 splits it.
//!         #[versioned(removed(since = v1, downgrade = join_host_port))]
//!         pub host_port: String,
//!         /// The host.
//!         #[versioned(added(since = v1, try_upgrade = host_of))]
//!         pub host: String,
//!         /// The port.
//!         #[versioned(added(since = v1, try_upgrade = port_of))]
//!         pub port: u16,
//!         /// The time zone, new in v1.
//!         #[versioned(added(since = v1))]
//!         #[serde(default, skip_serializing_if = "Option::is_none")]
//!         pub time_zone: Option<String>,
//!     }
//!
//!     /// The observed state of a CronTab.
//!     #[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
//!     #[serde(rename_all = "camelCase")]
//!     pub struct CronTabStatus {
//!         /// How many jobs run.
//!         #[versioned(renamed(since = v1, from = active))]
//!         pub active_jobs: Option<i32>,
//!     }
//!
//!     fn split(host_port: &str) -> Result<(&str, &str), String> {
//!         host_port
//!             .rsplit_once(':')
//!             .ok_or_else(|| format!("hostPort {host_port:?} is not host:port"))
//!     }
//!     fn host_of(old: &v1beta1::CronTabSpec) -> Result<String, String> {
//!         split(&old.host_port).map(|(host, _)| host.to_owned())
//!     }
//!     fn port_of(old: &v1beta1::CronTabSpec) -> Result<u16, String> {
//!         let (_, port) = split(&old.host_port)?;
//!         port.parse().map_err(|_| format!("no port number in {:?}", old.host_port))
//!     }
//!     fn join_host_port(new: &v1::CronTabSpec) -> String {
//!         format!("{}:{}", new.host, new.port)
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use crontab::{CronTabVersions, v1, v1beta1};
//! use stackable_conversion::WebhookTarget;
//!
//! // One Rust type per version, and the conversions between them.
//! let old = v1beta1::CronTabSpec { cron_spec: "@daily".into(), host_port: "db:5432".into() };
//! let new = v1::CronTabSpec::try_from(old)?;
//! assert_eq!((new.host.as_str(), new.port), ("db", 5432));
//! assert_eq!(v1beta1::CronTabSpec::from(new).host_port, "db:5432");
//!
//! // The converter the webhook serves, and the CRD to install, from the same declaration.
//! let router = CronTabVersions::router()?;
//! let crd = CronTabVersions::crd(WebhookTarget::service("crontab", "ops").path("/convert"))?;
//! assert_eq!(crd.spec.versions[0].deprecated, Some(true));
//! assert!(crd.spec.versions[0].storage);
//!
//! let converted = router.convert_objects(
//!     vec![serde_json::json!({
//!         "apiVersion": "example.com/v1", "kind": "CronTab",
//!         "metadata": {"name": "nightly", "namespace": "ops", "uid": "1"},
//!         "spec": {"schedule": "@daily", "host": "db", "port": 5432, "timeZone": "UTC"}
//!     })],
//!     "example.com/v1beta1",
//! )?;
//! assert_eq!(converted[0]["spec"]["hostPort"], "db:5432");
//! // timeZone cannot live in v1beta1: the stash keeps it for the way back.
//! assert!(converted[0]["metadata"]["annotations"]["conversion.stackable.tech/stash.v1"].is_string());
//! # Ok(())
//! # }
//! ```
//!
//! # The version list
//!
//! `#[versioned(version(…), …)]` lists the versions **oldest first**; each is a Kubernetes version
//! name (`v1`, `v1beta1`, `v2alpha3`), which is also the name of its Rust module. Options:
//!
//! | option                  | meaning                                                        |
//! |-------------------------|----------------------------------------------------------------|
//! | `storage`               | the CRD's storage version (exactly one when there is a `#[kube]` type) |
//! | `hub`                   | the converter goes through this version rather than along the chain (every other version must be next to it) |
//! | `served = false`        | the API server does not serve it                               |
//! | `deprecated`            | `deprecated: true` with the API server's default warning       |
//! | `deprecated = "…"`      | `deprecated: true` and `deprecationWarning: "…"`               |
//! | `kube(…)`               | extra `#[kube(…)]` arguments for this version only (e.g. `printcolumn`) |
//!
//! # What is versioned
//!
//! On a module (`mod name { … }`), every struct and enum of the module is versioned, together:
//! a field of type `Dimension` in `v1::Widget` is a `v1::Dimension`. Other items (functions,
//! `use`s, constants) stay in the module, and so does a struct or enum marked
//! `#[versioned(skip)]` (an error type, a helper). The module then holds `v1beta1`, `v1`, …,
//! the conversions, and `<Root>Versions` (below).
//!
//! On a single struct or enum, that type alone is versioned and the modules `v1beta1`, `v1`, …
//! are generated where it stands (so one module holds at most one such declaration).
//!
//! Put `#[versioned]` before the derives. Each version's module starts with `use super::*;`,
//! and visibilities are moved one module down, so that code around the declaration sees the
//! generated types as it saw the declared ones. Generic types keep their parameters in every
//! version. Tuple structs and unit structs are versioned as they are (no field actions).
//!
//! # Field actions
//!
//! `#[versioned(action(since = <version>, …), …)]` on a field, oldest version first, at most one
//! per version:
//!
//! | action | before `since` | options |
//! |--------|---------------|---------|
//! | `added` | the field does not exist | `default = path` (`path()`), `upgrade = path` or `try_upgrade = path` (`path(&older)`, computed from the whole older value); else `Default::default()` |
//! | `renamed` | it was called `from` | `from = name` |
//! | `changed` | it had another type and/or name, or its values meant something else | `from_type = Type`, `from_name = name`, and functions both ways: `upgrade`/`try_upgrade = path` (`fn(Old) -> New`) and `downgrade`/`try_downgrade = path` (`fn(New) -> Old`) |
//! | `deprecated` | it was not deprecated | `note = "…"`; a doc line *Deprecated since …* is added, and reaches the CRD schema's description |
//! | `removed` | it existed (from `since` on it does not) | `default = path`, `downgrade = path` or `try_downgrade = path` (`path(&newer)`) for the way back; else `Default::default()` |
//!
//! `try_…` functions return `Result<T, E>` with `E: Into<BoxError>`. A change the actions cannot
//! express (one field split into two) is written as plain functions the actions point to
//! (`added(try_upgrade = …)` and `removed(downgrade = …)`, as `hostPort` above), or as
//! whole conversions by hand: `#[versioned(convert_by_hand(since = v2))]` on the type, and your
//! own `From`/`TryFrom` impls both ways between `v1::Type` and `v2::Type`.
//!
//! # Variant actions
//!
//! | action | before `since` | options |
//! |--------|---------------|---------|
//! | `added` | the variant does not exist | `downgrade_to = Variant`: what it becomes in the older version; without it, downgrading the value fails |
//! | `renamed` | it was called `from` | `from = Name` |
//! | `deprecated` | it was not deprecated | `note = "…"` |
//! | `removed` | it existed | `upgrade_to = Variant`: what it becomes in the newer version; without it, upgrading the value fails |
//!
//! Variants may carry data (tuple or struct variants); their fields convert by type.
//!
//! # Doc comments per version
//!
//! Doc comments apply to every version (they become the descriptions of the CRD schema).
//! `#[versioned(doc(v1beta1 = "…"))]` on a type, field or variant replaces them in the versions
//! it names.
//!
//! # Type actions
//!
//! On a struct or enum of a module: `added(since = …)` and `removed(since = …)` (the type exists
//! only in some versions; the fields that hold it must say so too), `convert_by_hand(since = …)`.
//!
//! # Conversions
//!
//! For every type present in two adjacent versions, both directions are generated: `From` where
//! nothing can fail, `TryFrom<Error = ConversionError>` where something can (a `try_…` function,
//! a variant without counterpart, a type converted by hand, or a field whose type holds such a
//! type). A field whose type is another versioned type converts with that type's conversion, also
//! inside `Option`, `Vec`, `Box` and the values of `BTreeMap`, `HashMap` and `IndexMap`, to any
//! depth; any other type that holds a versioned type is a compile error asking for
//! `changed(…, upgrade = …, downgrade = …)`. A [`ConversionError`] names the field as JSON does
//! (`spec.parts[1]`), following `#[serde(rename_all)]` and `#[serde(rename)]`.
//!
//! A conversion loses exactly what the target version cannot hold: fields added later, removed
//! fields, values a `changed` function cannot carry back, variants mapped to another. The
//! [`ConversionRouter`] keeps what a conversion loses, and only that (as a JSON merge patch), in
//! the stash annotation of the version the object came from
//! (`conversion.stackable.tech/stash.<version>`, see [`stackable_conversion::stash`]) and puts it
//! back when the object converts into that version again, so round trips through the API server
//! are lossless.
//!
//! # The kind: `<Root>Versions`
//!
//! The struct with `#[kube(…)]` (and `#[derive(CustomResource)]`) is the kind's spec. Its
//! `#[kube]` arguments are forwarded unchanged to every version, which adds its `version`,
//! `storage`, `served` and `deprecated` arguments (so those four come from the version list, not
//! from `#[kube]`). The declaration then also generates, named after the root type (the kind, or
//! kube's `root = "…"`), e.g. `CronTabVersions`:
//!
//! - `VERSIONS` and `STORAGE_VERSION`;
//! - `converter()`: the [`KindConverter`] chaining the conversions of every pair of adjacent
//!   versions (v1beta1 - v1 - v2);
//! - `router()`: a [`ConversionRouter`] for this kind, to serve as the conversion webhook;
//! - `multi_version_crd()`: the [`MultiVersionCrd`] with every version and its flags;
//! - `crd(target)`: the CRD with webhook conversion to `target`.
//!
//! The conversions of the root object move `metadata` and convert `spec` and `status`.
//!
//! # Testing
//!
//! `stackable_conversion::testing::check_round_trip` (feature `testing`) checks A -> B -> A
//! through the router for arbitrary values; run it for every pair of versions.
//!
//! See `docs/versioned.md` for the same CRD written by hand and with operator-rs's `#[versioned]`,
//! and for what the macro costs at compile time.
//!
//! # Limits
//!
//! One kind per declaration. Type parameters are the same in every version. kube's structural
//! schema rewriter refuses enums that mix unit and data variants in a CRD.
//!
//! [`KindConverter`]: stackable_conversion::KindConverter
//! [`ConversionRouter`]: stackable_conversion::ConversionRouter
//! [`MultiVersionCrd`]: stackable_conversion::MultiVersionCrd

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod error;

pub use error::{BoxError, ConversionError, FieldPath};
pub use stackable_crd_versions_macros::versioned;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
