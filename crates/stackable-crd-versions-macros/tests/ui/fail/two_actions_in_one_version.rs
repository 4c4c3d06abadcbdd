use stackable_crd_versions_macros::versioned;

#[versioned(version(v1), version(v2))]
pub struct Job {
    #[versioned(renamed(since = v2, from = command), deprecated(since = v2))]
    pub args: Vec<String>,
}

fn main() {}
