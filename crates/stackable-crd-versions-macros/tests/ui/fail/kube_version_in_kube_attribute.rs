use stackable_crd_versions_macros::versioned;

#[versioned(version(v1, storage), version(v2))]
#[kube(group = "example.com", kind = "Job", version = "v2")]
pub struct JobSpec {
    pub image: String,
}

fn main() {}
