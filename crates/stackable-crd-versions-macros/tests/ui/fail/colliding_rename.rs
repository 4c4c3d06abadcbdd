use stackable_crd_versions_macros::versioned;

#[versioned(version(v1), version(v2))]
pub struct Job {
    #[versioned(renamed(since = v2, from = image))]
    pub container_image: String,
    pub image: String,
}

fn main() {}
