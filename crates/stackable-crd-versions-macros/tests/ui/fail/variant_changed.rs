use stackable_crd_versions_macros::versioned;

#[versioned(version(v1), version(v2))]
pub enum Restart {
    Always,
    #[versioned(changed(since = v2, from_type = u8))]
    OnFailure(u32),
}

fn main() {}
