use stackable_crd_versions_macros::versioned;

#[versioned(version(v1), version(v2))]
pub struct Job {
    #[versioned(changed(since = v2, from_type = String))]
    pub timeout_seconds: u32,
}

fn main() {}
