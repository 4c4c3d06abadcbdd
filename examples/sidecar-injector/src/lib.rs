//! The webhooks of the sidecar-injector example: a mutating admission webhook that injects a
//! logging sidecar into Pods labelled `example.com/inject-logging: "true"`, and a validating
//! webhook that refuses such Pods when a container has no resource limits.
//!
//! See <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::core::v1::{
        Container, EmptyDirVolumeSource, Pod, ResourceRequirements, Volume, VolumeMount,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, LabelSelectorRequirement},
    },
};
use kube::core::admission::{AdmissionRequest, Operation};
use stackable_webhook::{
    Mutation, Registration, Rule, Validation, WebhookServerBuilder, registration::Scope,
};

/// The label that asks for a logging sidecar.
pub const INJECT_LABEL: &str = "example.com/inject-logging";
/// The name of the injected container.
pub const SIDECAR_NAME: &str = "log-shipper";
/// The shared log volume.
pub const LOG_VOLUME: &str = "app-logs";
/// Where every container sees the shared log volume.
pub const LOG_PATH: &str = "/var/log/app";

/// The name of both webhook configurations in `deploy/webhooks.yaml`.
pub const CONFIGURATION_NAME: &str = "sidecar-injector";

/// Settings of the webhooks.
#[derive(Clone, Debug)]
pub struct InjectorConfig {
    /// Image of the sidecar.
    pub sidecar_image: String,
    /// The injector's own namespace: the webhooks are not called for Pods there (nor in
    /// `kube-system`), so a broken injector cannot block its own restart.
    pub namespace: String,
}

/// Only labelled Pods, outside the injector's namespace and `kube-system`.
fn registration(name: &str, config: &InjectorConfig, operations: &[Operation]) -> Registration {
    Registration::new(name)
        .rule(Rule::for_resource::<Pod>(operations.iter().cloned()).scope(Scope::Namespaced))
        .object_selector(LabelSelector {
            match_labels: Some([(INJECT_LABEL.to_owned(), "true".to_owned())].into()),
            ..LabelSelector::default()
        })
        .namespace_selector(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".to_owned(),
                operator: "NotIn".to_owned(),
                values: Some(vec![config.namespace.clone(), "kube-system".to_owned()]),
            }]),
            ..LabelSelector::default()
        })
        .timeout(Duration::from_secs(5))
}

fn wants_injection(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(INJECT_LABEL))
        .is_some_and(|value| value == "true")
}

fn quantity(value: &str) -> Quantity {
    Quantity(value.to_owned())
}

/// Whether the Pod already runs the sidecar (a container named [`SIDECAR_NAME`]).
pub fn has_sidecar(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .is_some_and(|spec| spec.containers.iter().any(|c| c.name == SIDECAR_NAME))
}

/// The mutation: adds the sidecar, the shared volume and its mount. Idempotent, so a
/// reinvocation (`reinvocationPolicy: IfNeeded`) changes nothing.
pub fn inject(mut pod: Pod, config: &InjectorConfig) -> Mutation<Pod> {
    if !wants_injection(&pod) || has_sidecar(&pod) {
        return Mutation::unchanged();
    }
    let Some(spec) = pod.spec.as_mut() else {
        return Mutation::unchanged();
    };
    let mount = VolumeMount {
        name: LOG_VOLUME.to_owned(),
        mount_path: LOG_PATH.to_owned(),
        ..VolumeMount::default()
    };
    for container in &mut spec.containers {
        let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
        if !mounts.iter().any(|m| m.name == LOG_VOLUME) {
            mounts.push(mount.clone());
        }
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == LOG_VOLUME) {
        volumes.push(Volume {
            name: LOG_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    let limits = [
        ("cpu".to_owned(), quantity("100m")),
        ("memory".to_owned(), quantity("64Mi")),
    ];
    spec.containers.push(Container {
        name: SIDECAR_NAME.to_owned(),
        image: Some(config.sidecar_image.clone()),
        args: Some(vec![
            "-i".to_owned(),
            "tail".to_owned(),
            "-p".to_owned(),
            format!("path={LOG_PATH}/*.log"),
            "-o".to_owned(),
            "stdout".to_owned(),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            read_only: Some(true),
            ..mount
        }]),
        resources: Some(ResourceRequirements {
            limits: Some(limits.clone().into_iter().collect()),
            requests: Some(limits.into_iter().collect()),
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    });
    Mutation::patched(pod).with_warning(format!("injected the {SIDECAR_NAME} sidecar"))
}

/// Mounts both webhooks (`/mutate`, `/validate`) on a server builder, each with the rules the
/// API server needs to call it (rendered by
/// [`WebhookServerBuilder::admission_configurations`]; `deploy/webhooks.yaml` is generated from
/// them by `cargo xtask gen-crds`).
pub fn mount(builder: WebhookServerBuilder, config: InjectorConfig) -> WebhookServerBuilder {
    let mutate = registration(
        "inject.sidecar-injector.example.com",
        &config,
        &[Operation::Create],
    )
    .reinvoke_if_needed();
    let limits = registration(
        "limits.sidecar-injector.example.com",
        &config,
        &[Operation::Create, Operation::Update],
    );
    let config = Arc::new(config);
    builder
        .mutating_registered("/mutate", mutate, move |request: AdmissionRequest<Pod>| {
            let config = config.clone();
            async move {
                match request.object {
                    Some(pod) => inject(pod, &config),
                    None => Mutation::unchanged(),
                }
            }
        })
        .validating_registered(
            "/validate",
            limits,
            |request: AdmissionRequest<Pod>| async move { validate(&request) },
        )
}

/// The validation: labelled Pods must set CPU and memory limits on every container.
pub fn validate(request: &AdmissionRequest<Pod>) -> Validation {
    if request.operation == Operation::Delete {
        return Validation::allow();
    }
    let Some(pod) = request.object.as_ref() else {
        return Validation::allow();
    };
    if !wants_injection(pod) {
        return Validation::allow();
    }
    let containers = pod.spec.iter().flat_map(|spec| spec.containers.iter());
    let missing: Vec<&str> = containers
        .filter(|container| {
            let limits = container
                .resources
                .as_ref()
                .and_then(|resources| resources.limits.as_ref());
            !limits
                .is_some_and(|limits| limits.contains_key("cpu") && limits.contains_key("memory"))
        })
        .map(|container| container.name.as_str())
        .collect();
    if missing.is_empty() {
        Validation::allow()
    } else {
        Validation::deny(format!(
            "Pods labelled {INJECT_LABEL}=true need cpu and memory limits on every container; missing on: {}",
            missing.join(", ")
        ))
        .with_code(422)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(pod: serde_json::Value) -> AdmissionRequest<Pod> {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "name": "p", "namespace": "default", "operation": "CREATE",
                "userInfo": {}, "object": pod
            }
        });
        let review: kube::core::admission::AdmissionReview<Pod> =
            serde_json::from_value(review).unwrap();
        review.try_into().unwrap()
    }

    fn labelled_pod(limits: bool) -> serde_json::Value {
        let resources = if limits {
            json!({"limits": {"cpu": "1", "memory": "1Gi"}})
        } else {
            json!({})
        };
        json!({
            "metadata": {"name": "p", "labels": {INJECT_LABEL: "true"}},
            "spec": {"containers": [{"name": "app", "image": "app", "resources": resources}]}
        })
    }

    #[test]
    fn injects_once() {
        let config = InjectorConfig {
            sidecar_image: "fluent-bit".to_owned(),
            namespace: "sidecar-injector".to_owned(),
        };
        let pod: Pod = serde_json::from_value(labelled_pod(true)).unwrap();
        let first = inject(pod.clone(), &config);
        let expected = {
            let mut pod = pod.clone();
            let spec = pod.spec.as_mut().unwrap();
            assert!(spec.containers.iter().all(|c| c.name != SIDECAR_NAME));
            pod
        };
        assert_ne!(first, Mutation::unchanged());
        assert_ne!(first, Mutation::patched(expected));
        // Feed the injected pod back in: nothing more to do.
        let injected = {
            let mut pod = pod;
            let spec = pod.spec.as_mut().unwrap();
            spec.containers.push(Container {
                name: SIDECAR_NAME.to_owned(),
                ..Container::default()
            });
            pod
        };
        assert_eq!(inject(injected, &config), Mutation::unchanged());
    }

    #[test]
    fn unlabelled_pods_are_left_alone() {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}))
                .unwrap();
        let config = InjectorConfig {
            sidecar_image: "x".to_owned(),
            namespace: "sidecar-injector".to_owned(),
        };
        assert_eq!(inject(pod, &config), Mutation::unchanged());
    }

    #[test]
    fn limits_are_required_on_labelled_pods() {
        assert!(validate(&request(labelled_pod(true))).is_allowed());
        assert!(!validate(&request(labelled_pod(false))).is_allowed());
    }
}
