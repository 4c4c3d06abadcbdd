//! Buffers of a MiB or more: the body and the answer of a conversion review of a LIST (megabytes).
//!
//! Such a buffer is reserved at no less than 33 MiB of address space ([`capacity`]), so that
//! glibc's malloc maps it on its own and unmaps it when it is freed: resident memory goes back to
//! idle after a review, and the buffers of the next reviews are not carved from an arena that
//! keeps them resident (`docs/conversion.md` § 8). The price is paid in page faults: every page of
//! a fresh mapping is faulted in and zeroed by the kernel when first written, ~4,500 faults for a
//! 10,000-object review (9 MB body, 9 MB answer), a sixth of the CPU the review costs.
//!
//! So a freed large buffer is **kept** for [`KEEP`] (two seconds): the next large review within
//! that time (reviews of a re-list come in bursts) takes it with its pages already resident. At
//! most [`KEPT_MAX`] are kept; a thread of its own (`webhook-buffers`, running only while buffers
//! are kept) frees them once they have not been used for [`KEEP`], so resident memory is back at
//! idle two to three seconds after the last large review.

use std::{
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;

/// From this size on a buffer is large.
pub(crate) const LARGE: usize = 1 << 20;

/// glibc's malloc maps a block of 32 MiB or more on its own whatever its mapping threshold.
const MAPPED_ALONE: usize = 33 << 20;

/// How long a freed large buffer is kept for the next review.
pub(crate) const KEEP: Duration = Duration::from_secs(2);

/// How many freed large buffers are kept at most (two reviews at once: two bodies, two answers).
pub(crate) const KEPT_MAX: usize = 4;

/// The capacity to reserve for a buffer that will hold `len` bytes: `len`, or for a buffer of
/// a MiB or more (the body or the answer of a conversion review of a LIST) at least 33 MiB.
///
/// glibc's malloc maps a block of 32 MiB or more on its own and unmaps it on free; a smaller large
/// block is mapped too at first, but freeing it raises malloc's mapping threshold to its size, so
/// the next reviews' buffers come from an arena, which keeps the freed memory resident, and with
/// reviews back to back fragments it: resident memory settled at 3.2× the body instead of the 2.2×
/// that is live (`docs/conversion.md` § 8). Only the pages written become resident: the rest of
/// the reservation is address space, returned whole when the buffer is dropped.
pub(crate) fn capacity(len: usize) -> usize {
    if len >= LARGE {
        len.max(MAPPED_ALONE)
    } else {
        len
    }
}

/// The process's kept buffers.
static KEPT: Kept = Kept::new(KEEP);

/// An empty buffer with room for `len` bytes: a kept one when one is large enough, else a new
/// one reserved at [`capacity`]`(len)`.
pub(crate) fn buffer(len: usize) -> Vec<u8> {
    KEPT.buffer(len)
}

/// `buffer` as `Bytes`; a large buffer is kept when the last of them is dropped.
pub(crate) fn into_bytes(buffer: Vec<u8>) -> Bytes {
    if buffer.capacity() >= LARGE {
        Bytes::from_owner(Returned {
            buffer,
            kept: &KEPT,
        })
    } else {
        Bytes::from(buffer)
    }
}

/// Freed large buffers, each with when it was freed.
struct Kept {
    buffers: Mutex<Vec<(Vec<u8>, Instant)>>,
    /// Whether the thread that frees them is running.
    sweeping: AtomicBool,
    keep: Duration,
}

/// A large buffer behind `Bytes`, kept when dropped.
struct Returned {
    buffer: Vec<u8>,
    kept: &'static Kept,
}

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        self.kept.keep(std::mem::take(&mut self.buffer));
    }
}

impl Kept {
    const fn new(keep: Duration) -> Self {
        Self {
            buffers: Mutex::new(Vec::new()),
            sweeping: AtomicBool::new(false),
            keep,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Vec<u8>, Instant)>> {
        // The lock guards no invariant a panic could break: a poisoned list is still a list.
        self.buffers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn buffer(&self, len: usize) -> Vec<u8> {
        let capacity = capacity(len);
        if capacity >= LARGE {
            let mut kept = self.lock();
            // The smallest that is large enough.
            let fitting = kept
                .iter()
                .enumerate()
                .filter(|(_, (buffer, _))| buffer.capacity() >= capacity)
                .min_by_key(|(_, (buffer, _))| buffer.capacity())
                .map(|(index, _)| index);
            if let Some(index) = fitting {
                let (mut buffer, _) = kept.swap_remove(index);
                drop(kept);
                buffer.clear();
                return buffer;
            }
        }
        Vec::with_capacity(capacity)
    }

    fn keep(&'static self, buffer: Vec<u8>) {
        if buffer.capacity() < LARGE {
            return;
        }
        let evicted = {
            let mut kept = self.lock();
            let evicted = (kept.len() >= KEPT_MAX).then(|| kept.remove(0));
            kept.push((buffer, Instant::now()));
            evicted
        };
        // Unmapped outside the lock.
        drop(evicted);
        self.sweep_later();
    }

    /// Starts the thread that frees buffers kept for longer than `keep`, unless it runs; it
    /// stops when none are left.
    fn sweep_later(&'static self) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("webhook-buffers".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(self.keep / 4);
                    if self.sweep(Instant::now()) {
                        break;
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::debug!(%error, "cannot start the thread that frees kept buffers; freeing them now");
            self.sweeping.store(false, Ordering::Release);
            let all = std::mem::take(&mut *self.lock());
            drop(all);
        }
    }

    /// Frees the buffers kept for `keep` or longer at `now`; whether none are left (the
    /// sweeping stops then, under the lock, so that a buffer kept after it starts another).
    fn sweep(&self, now: Instant) -> bool {
        let mut kept = self.lock();
        let (expired, fresh): (Vec<_>, Vec<_>) = std::mem::take(&mut *kept)
            .into_iter()
            .partition(|(_, at)| now.saturating_duration_since(*at) >= self.keep);
        *kept = fresh;
        let done = kept.is_empty();
        if done {
            self.sweeping.store(false, Ordering::Release);
        }
        drop(kept);
        drop(expired);
        done
    }

    #[cfg(test)]
    fn kept(&self) -> Vec<usize> {
        self.lock()
            .iter()
            .map(|(buffer, _)| buffer.capacity())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_reserved_past_mallocs_own_mapping_size() {
        assert_eq!(capacity(0), 0);
        assert_eq!(capacity(4_500), 4_500);
        assert_eq!(capacity((1 << 20) - 1), (1 << 20) - 1);
        assert_eq!(capacity(1 << 20), 33 << 20);
        assert_eq!(capacity(9_898_046), 33 << 20);
        assert_eq!(capacity(50 << 20), 50 << 20);
    }

    fn leaked(keep: Duration) -> &'static Kept {
        Box::leak(Box::new(Kept::new(keep)))
    }

    fn as_bytes(kept: &'static Kept, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Returned { buffer, kept })
    }

    #[test]
    fn a_large_buffer_is_taken_again_once_its_bytes_are_dropped() {
        let kept = leaked(Duration::from_secs(60));
        let mut buffer = kept.buffer(2 << 20);
        assert_eq!(buffer.capacity(), 33 << 20);
        buffer.extend_from_slice(b"review");
        let address = buffer.as_ptr();
        let bytes = as_bytes(kept, buffer);
        let clone = bytes.clone();
        drop(bytes);
        assert!(kept.kept().is_empty(), "kept while a clone lives");
        assert_eq!(&clone[..], b"review");
        drop(clone);
        assert_eq!(kept.kept(), [33 << 20]);

        let again = kept.buffer(3 << 20);
        assert_eq!(again.as_ptr(), address, "the kept buffer is taken");
        assert!(again.is_empty(), "and cleared");
        assert!(kept.kept().is_empty());
        // Small buffers are never kept nor taken from the kept ones.
        kept.keep(Vec::with_capacity(4_500));
        assert!(kept.kept().is_empty());
        kept.keep(again);
        assert_eq!(kept.buffer(4_500).capacity(), 4_500);
        assert_eq!(kept.kept(), [33 << 20]);
    }

    #[test]
    fn a_buffer_too_small_is_left_and_the_smallest_fitting_one_is_taken() {
        let kept = leaked(Duration::from_secs(60));
        kept.keep(Vec::with_capacity(40 << 20));
        kept.keep(Vec::with_capacity(33 << 20));
        assert_eq!(kept.buffer(36 << 20).capacity(), 40 << 20);
        assert_eq!(kept.kept(), [33 << 20]);
        let new = kept.buffer(50 << 20);
        assert_eq!(new.capacity(), 50 << 20, "none fits: a new one");
        assert_eq!(kept.kept(), [33 << 20]);
    }

    #[test]
    fn at_most_four_are_kept_the_oldest_freed_first() {
        let kept = leaked(Duration::from_secs(60));
        for size in 40..46 {
            kept.keep(Vec::with_capacity(size << 20));
        }
        assert_eq!(
            kept.kept(),
            [42 << 20, 43 << 20, 44 << 20, 45 << 20],
            "the four last kept"
        );
    }

    #[test]
    fn kept_buffers_are_freed_after_keep_and_the_sweeping_stops() {
        let kept = leaked(Duration::from_secs(60));
        let start = Instant::now();
        kept.keep(Vec::with_capacity(33 << 20));
        assert!(kept.sweeping.load(Ordering::Acquire));
        assert!(!kept.sweep(start), "fresh: kept");
        assert_eq!(kept.kept().len(), 1);
        assert!(
            kept.sweep(start + Duration::from_secs(61)),
            "expired: freed"
        );
        assert!(kept.kept().is_empty());
        assert!(!kept.sweeping.load(Ordering::Acquire), "stopped");

        // The thread does it by itself.
        let quick = leaked(Duration::from_millis(40));
        quick.keep(Vec::with_capacity(33 << 20));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !quick.kept().is_empty() || quick.sweeping.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "not freed within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
