//! The user's issuer kinds: [`IssuerResource`] and [`AnyIssuer`].
//!
//! An issuer kind is a custom resource whose `status` is an
//! [`IssuerStatus`](crate::api::IssuerStatus) (issuer-lib's `v1alpha1.Issuer` interface); every
//! kind derived with `#[kube(status = "IssuerStatus")]` is one.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::{Resource, core::object::HasStatus};
use serde::{Serialize, de::DeserializeOwned};

use crate::api::IssuerStatus;

/// A kind of issuer the controllers serve.
pub trait IssuerResource:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The issuer's status, if it has one yet.
    fn issuer_status(&self) -> Option<&IssuerStatus>;

    /// The `Ready` condition, if any.
    fn ready_condition(&self) -> Option<&Condition> {
        self.issuer_status().and_then(IssuerStatus::ready)
    }
}

impl<K> IssuerResource for K
where
    K: Resource<DynamicType = ()>
        + HasStatus<Status = IssuerStatus>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    fn issuer_status(&self) -> Option<&IssuerStatus> {
        self.status()
    }
}

/// An issuer of either kind, as `check` and `sign` receive it.
#[derive(Debug)]
pub enum AnyIssuer<'a, I, C> {
    /// A namespaced issuer.
    Issuer(&'a I),
    /// A cluster-scoped issuer.
    ClusterIssuer(&'a C),
}

impl<I, C> Clone for AnyIssuer<'_, I, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, C> Copy for AnyIssuer<'_, I, C> {}

impl<'a, I: IssuerResource, C: IssuerResource> AnyIssuer<'a, I, C> {
    /// The issuer's metadata.
    pub fn metadata(&self) -> &'a ObjectMeta {
        match self {
            AnyIssuer::Issuer(i) => i.meta(),
            AnyIssuer::ClusterIssuer(c) => c.meta(),
        }
    }

    /// The issuer's name.
    pub fn name(&self) -> &'a str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The namespace of a namespaced issuer.
    pub fn namespace(&self) -> Option<&'a str> {
        self.metadata().namespace.as_deref()
    }

    /// The issuer's kind.
    pub fn kind(&self) -> String {
        match self {
            AnyIssuer::Issuer(_) => I::kind(&()).into_owned(),
            AnyIssuer::ClusterIssuer(_) => C::kind(&()).into_owned(),
        }
    }

    /// The issuer's status.
    pub fn issuer_status(&self) -> Option<&'a IssuerStatus> {
        match self {
            AnyIssuer::Issuer(i) => i.issuer_status(),
            AnyIssuer::ClusterIssuer(c) => c.issuer_status(),
        }
    }
}
