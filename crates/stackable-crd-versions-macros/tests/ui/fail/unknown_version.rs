use stackable_crd_versions_macros::versioned;

#[versioned(version(v1), version(v2))]
pub struct Job {
    #[versioned(renamed(since = v3, from = command))]
    pub args: Vec<String>,
}

fn main() {}
