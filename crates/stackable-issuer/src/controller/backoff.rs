//! Per-object exponential backoff after retryable errors (controller-runtime's per-item rate
//! limiter, which issuer-lib relies on): `initial`, doubling per consecutive failure, at most
//! `max`; forgotten when the object reaches any other outcome.

use std::{collections::HashMap, sync::Mutex, time::Duration};

#[derive(Debug)]
pub(crate) struct Backoffs {
    initial: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoffs {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoffs {
            initial,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The delay before the next attempt for `key`, counting this failure.
    pub(crate) fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(key.to_owned()).or_insert(0);
        let delay = self
            .initial
            .checked_mul(2u32.saturating_pow(*count))
            .unwrap_or(self.max)
            .min(self.max);
        *count = count.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key`.
    pub(crate) fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets_per_key() {
        let b = Backoffs::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<_> = (0..5).map(|_| b.next("a").as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(b.next("b").as_millis(), 100);
        b.reset("a");
        assert_eq!(b.next("a").as_millis(), 100);
        for _ in 0..100 {
            b.next("c");
        }
        assert_eq!(b.next("c").as_millis(), 500);
    }
}
