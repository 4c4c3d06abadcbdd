use stackable_crd_versions_macros::versioned;

#[versioned(version(v1), version(v2))]
#[kube(group = "example.com", kind = "Job")]
pub struct JobSpec {
    pub image: String,
}

fn main() {}
