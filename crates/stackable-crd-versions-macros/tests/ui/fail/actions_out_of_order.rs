use stackable_crd_versions_macros::versioned;

#[versioned(version(v1), version(v2), version(v3))]
pub struct Job {
    #[versioned(deprecated(since = v3), renamed(since = v2, from = command))]
    pub args: Vec<String>,
}

fn main() {}
