use stackable_crd_versions_macros::versioned;

#[versioned(version(v1), version(v2))]
pub mod jobs {
    pub struct Job {
        pub steps: (Step, u8),
    }

    pub struct Step {
        #[versioned(added(since = v2))]
        pub retries: u8,
    }
}

fn main() {}
