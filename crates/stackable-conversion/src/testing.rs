//! Test helpers (feature `testing`): property-based round-trip checks of a user's versions.
//!
//! [`check_round_trip`] generates arbitrary objects of version A with proptest, sends each to
//! the router as a `ConversionReview` to version B and back to A, checks every response with
//! [`check_response_strict`](crate::check_response_strict) (the API server's rules and untouched
//! metadata), and asserts that the object
//! that comes back is the object that went out, metadata and all, with no stash annotation left.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#writing-reading-and-updating-versioned-customresourcedefinition-objects>.

use std::fmt::Debug;

use kube::core::{
    Resource,
    conversion::{ConversionRequest, ConversionResponse},
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{ConversionRouter, check_response_strict};

/// Adds the metadata the API server sets (uid, resourceVersion, generation, creationTimestamp,
/// managedFields, and an unknown key) to an object, unless present, so round trips prove that
/// metadata is carried through untouched.
pub fn with_server_metadata(mut object: Value) -> Value {
    let defaults = json!({
        "uid": "0b9b6d8e-2f4c-4e0c-9a51-2d3c1d7f4e21",
        "resourceVersion": "12345",
        "generation": 3,
        "creationTimestamp": "2024-01-02T03:04:05Z",
        "managedFields": [{
            "apiVersion": "example.com/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {".": {}, "f:x": {}}},
            "manager": "kubectl",
            "operation": "Update",
            "time": "2024-01-02T03:04:05Z"
        }],
        "someFutureField": {"nested": [1, 2.5, "three", null]}
    });
    if let Some(metadata) = object
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        && let Value::Object(defaults) = defaults
    {
        for (key, value) in defaults {
            metadata.entry(key).or_insert(value);
        }
    }
    object
}

/// Sends one review and checks the answer with [`check_response_strict`] (the API server's
/// rules and this crate's promise of untouched metadata).
pub fn convert_checked(
    router: &ConversionRouter,
    objects: Vec<Value>,
    desired_api_version: &str,
) -> ConversionResponse {
    let request = ConversionRequest {
        types: None,
        uid: "7d1fdb53-1a1e-4f4b-b9d4-5b9a7c1e2f30".to_owned(),
        desired_api_version: desired_api_version.to_owned(),
        objects,
    };
    let response = router.convert_request(request.clone());
    if let Err(violation) = check_response_strict(&request, &response) {
        panic!("the API server would reject this response: {violation}\n{response:#?}");
    }
    response
}

/// Checks with `cases` arbitrary objects from `strategy` that A -> B -> A gives back exactly the
/// object that went in (with server-set metadata added by [`with_server_metadata`]). Panics with
/// the minimal failing input.
pub fn check_round_trip<A, B>(
    router: &ConversionRouter,
    strategy: impl Strategy<Value = A>,
    cases: u32,
) where
    A: Resource<DynamicType = ()> + Serialize + Debug,
    B: Resource<DynamicType = ()>,
{
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let there = B::api_version(&()).into_owned();
    let back = A::api_version(&()).into_owned();
    let result = runner.run(&strategy, |a| {
        let original = with_server_metadata(
            serde_json::to_value(&a).map_err(|e| TestCaseError::fail(e.to_string()))?,
        );
        let response = convert_checked(router, vec![original.clone()], &there);
        prop_assert!(
            response.result.is_success(),
            "{} -> {there} failed: {}",
            back,
            response.result.message
        );
        let response = convert_checked(router, response.converted_objects, &back);
        prop_assert!(
            response.result.is_success(),
            "{there} -> {back} failed: {}",
            response.result.message
        );
        prop_assert_eq!(&response.converted_objects, &vec![original]);
        Ok(())
    });
    if let Err(error) = result {
        panic!("round trip {back} -> {there} -> {back} is not lossless: {error}");
    }
}
