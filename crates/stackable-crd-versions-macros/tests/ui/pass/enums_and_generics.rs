//! Infallible conversions of enums with fallbacks, generic types and nested types in
//! containers: no runtime crate needed.
use std::collections::BTreeMap;

use stackable_crd_versions_macros::versioned;

#[versioned(version(v1), version(v2), version(v3))]
pub mod shop {
    use std::collections::BTreeMap;

    /// An order.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Order<T: Clone> {
        pub lines: Vec<Line>,
        pub gift: Option<Box<Line>>,
        pub by_sku: BTreeMap<String, Vec<Line>>,
        pub extra: T,
        #[versioned(added(since = v3, default = default_channel))]
        pub channel: Channel,
    }

    #[derive(Clone, Debug, PartialEq)]
    pub struct Line {
        #[versioned(renamed(since = v2, from = qty))]
        pub count: u32,
        pub kind: Kind,
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Kind {
        Item,
        #[versioned(added(since = v2, downgrade_to = Item))]
        Service,
        #[versioned(renamed(since = v3, from = Gift))]
        Present,
        #[versioned(removed(since = v3, upgrade_to = Item))]
        Sample,
    }

    #[versioned(added(since = v3))]
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Channel {
        Web,
        Shop,
    }

    fn default_channel() -> v3::Channel {
        v3::Channel::Web
    }
}

fn main() {
    use shop::{v1, v2, v3};
    let old = v1::Order {
        lines: vec![v1::Line { qty: 2, kind: v1::Kind::Sample }],
        gift: Some(Box::new(v1::Line { qty: 1, kind: v1::Kind::Gift })),
        by_sku: BTreeMap::from([("a".to_owned(), vec![v1::Line { qty: 3, kind: v1::Kind::Item }])]),
        extra: 7u8,
    };
    let new = v3::Order::from(v2::Order::from(old));
    assert_eq!(new.lines[0].kind, v3::Kind::Item);
    assert_eq!(new.gift.as_ref().map(|g| g.kind), Some(v3::Kind::Present));
    assert_eq!(new.by_sku["a"][0].count, 3);
    assert_eq!(new.channel, v3::Channel::Web);
    let service = v2::Line { count: 1, kind: v2::Kind::Service };
    assert_eq!(v1::Line::from(service).kind, v1::Kind::Item);
}
