//! Buffers of a MiB or more: the body, the answer and the route's notes on the objects' members
//! of a conversion review of a LIST (megabytes).
//!
//! Such a buffer is reserved at no less than 33 MiB of address space ([`capacity`]), so that
//! glibc's malloc maps it on its own and unmaps it when it is freed: resident memory goes back to
//! idle after a review, and the buffers of the next reviews are not carved from an arena that
//! keeps them resident (`docs/conversion.md` § 8). The price is paid in page faults: every page of
//! a fresh mapping is faulted in and zeroed by the kernel when first written, ~4,500 faults for a
//! 10,000-object review (9 MB body, 9 MB answer; the notes 2.2 MB more), a sixth of the CPU the
//! review costs.
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

/// How many freed large buffers of a kind (bytes, notes) are kept at most (two reviews at once:
/// two bodies and two answers).
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

/// The process's kept byte buffers (bodies and answers).
static KEPT: Kept<u8> = Kept::new(KEEP);

/// An empty byte buffer with room for `len` bytes: a kept one when one is large enough, else a
/// new one reserved at [`capacity`]`(len)`.
pub(crate) fn buffer(len: usize) -> Buffer<u8> {
    KEPT.buffer(len)
}

/// A buffer from [`Kept::buffer`]: a `Vec<T>` (through `Deref`) that knows how much of it may be
/// resident, and goes back to its [`Kept`] when dropped.
#[derive(Debug)]
pub(crate) struct Buffer<T: Send + 'static> {
    items: Vec<T>,
    /// The most bytes it held in any of its uses: its pages up to there are resident.
    resident: usize,
    /// Where it goes when dropped (`None`: freed).
    kept: Option<&'static Kept<T>>,
}

impl<T: Send + 'static> Default for Buffer<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            resident: 0,
            kept: None,
        }
    }
}

impl<T: Send + 'static> std::ops::Deref for Buffer<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.items
    }
}

impl<T: Send + 'static> std::ops::DerefMut for Buffer<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.items
    }
}

impl<T: Send + 'static> Drop for Buffer<T> {
    fn drop(&mut self) {
        if let Some(kept) = self.kept {
            let resident = self.resident();
            kept.keep(std::mem::take(&mut self.items), resident);
        }
    }
}

impl AsRef<[u8]> for Buffer<u8> {
    fn as_ref(&self) -> &[u8] {
        &self.items
    }
}

impl<T: Send + 'static> Buffer<T> {
    fn resident(&self) -> usize {
        self.resident
            .max(self.items.len().saturating_mul(size_of::<T>()))
    }
}

impl Buffer<u8> {
    /// The buffer as `Bytes`; a large buffer is kept when the last of them is dropped.
    pub(crate) fn into_bytes(mut self) -> Bytes {
        if self.kept.is_some() {
            Bytes::from_owner(self)
        } else {
            Bytes::from(std::mem::take(&mut self.items))
        }
    }
}

/// Freed large buffers of `T`, each with the bytes resident in it and when it was freed.
#[derive(Debug)]
pub(crate) struct Kept<T: 'static> {
    buffers: Mutex<Vec<(Vec<T>, usize, Instant)>>,
    /// Whether the thread that frees them is running.
    sweeping: AtomicBool,
    keep: Duration,
}

impl<T: Send + 'static> Kept<T> {
    /// Nothing kept; a freed buffer is kept for `keep`.
    pub(crate) const fn new(keep: Duration) -> Self {
        Self {
            buffers: Mutex::new(Vec::new()),
            sweeping: AtomicBool::new(false),
            keep,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Vec<T>, usize, Instant)>> {
        // The lock guards no invariant a panic could break: a poisoned list is still a list.
        self.buffers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty buffer with room for `len` items, reserved at [`capacity`] of their size: for a
    /// large one, a kept buffer whose capacity fits and whose resident pages are at most about
    /// twice what is needed (a buffer that once held a far larger review is not pinned by
    /// smaller ones: it is freed in time), the one with the fewest resident pages, then the
    /// smallest. When none has the capacity, the kept ones too small for it are freed: reviews are
    /// this large now, and keeping them would add to the new buffer's memory.
    pub(crate) fn buffer(&'static self, len: usize) -> Buffer<T> {
        let size = size_of::<T>().max(1);
        let bytes = len.saturating_mul(size);
        let capacity = capacity(bytes);
        if capacity < LARGE {
            return Buffer {
                items: Vec::with_capacity(len),
                resident: 0,
                kept: None,
            };
        }
        let fits = |items: &Vec<T>| items.capacity().saturating_mul(size) >= capacity;
        let mut kept = self.lock();
        let fitting = kept
            .iter()
            .enumerate()
            .filter(|(_, (items, resident, _))| {
                fits(items) && *resident <= bytes.saturating_mul(2) + LARGE
            })
            .min_by_key(|(_, (items, resident, _))| (*resident, items.capacity()))
            .map(|(index, _)| index);
        if let Some(index) = fitting {
            let (mut items, resident, _) = kept.swap_remove(index);
            drop(kept);
            items.clear();
            return Buffer {
                items,
                resident,
                kept: Some(self),
            };
        }
        let too_small: Vec<_>;
        (too_small, *kept) = std::mem::take(&mut *kept)
            .into_iter()
            .partition(|(items, _, _)| !fits(items));
        drop(kept);
        // Unmapped outside the lock.
        drop(too_small);
        Buffer {
            items: Vec::with_capacity(capacity / size),
            resident: 0,
            kept: Some(self),
        }
    }

    fn keep(&'static self, items: Vec<T>, resident: usize) {
        if items.capacity().saturating_mul(size_of::<T>()) < LARGE {
            return;
        }
        let evicted = {
            let mut kept = self.lock();
            let evicted = (kept.len() >= KEPT_MAX).then(|| kept.remove(0));
            kept.push((items, resident, Instant::now()));
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
            .partition(|(_, _, at)| now.saturating_duration_since(*at) >= self.keep);
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
            .map(|(items, _, _)| items.capacity() * size_of::<T>())
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

    fn leaked(keep: Duration) -> &'static Kept<u8> {
        Box::leak(Box::new(Kept::new(keep)))
    }

    /// A buffer of `capacity` bytes with `resident` bytes resident, freed into `kept`.
    fn keep(kept: &'static Kept<u8>, capacity: usize, resident: usize) {
        drop(Buffer {
            items: Vec::with_capacity(capacity),
            resident,
            kept: Some(kept),
        });
    }

    #[test]
    fn a_large_buffer_is_taken_again_once_its_bytes_are_dropped() {
        let kept = leaked(Duration::from_secs(60));
        let mut buffer = kept.buffer(2 << 20);
        assert_eq!(buffer.capacity(), 33 << 20);
        buffer.extend_from_slice(b"review");
        let address = buffer.as_ptr();
        let bytes = buffer.into_bytes();
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
        keep(kept, 4_500, 0);
        assert!(kept.kept().is_empty());
        drop(again);
        assert_eq!(kept.buffer(4_500).capacity(), 4_500);
        assert_eq!(kept.kept(), [33 << 20]);
    }

    #[test]
    fn a_buffer_too_small_is_left_and_the_smallest_fitting_one_is_taken() {
        let kept = leaked(Duration::from_secs(60));
        keep(kept, 40 << 20, 0);
        keep(kept, 33 << 20, 0);
        keep(kept, 38 << 20, 0);
        let taken = kept.buffer(36 << 20);
        assert_eq!(taken.capacity(), 38 << 20);
        assert_eq!(kept.kept(), [40 << 20, 33 << 20]);
        let new = kept.buffer(50 << 20);
        assert_eq!(new.capacity(), 50 << 20, "none fits: a new one");
        assert!(
            kept.kept().is_empty(),
            "and the kept ones, too small, are freed"
        );
    }

    #[test]
    fn a_buffer_that_held_far_more_is_not_pinned_by_a_small_review() {
        let kept = leaked(Duration::from_secs(60));
        let mut big = kept.buffer(20 << 20);
        big.resize(20 << 20, b' ');
        drop(big);
        // 2 MiB needed: 20 MiB resident is more than twice that and a MiB.
        let small = kept.buffer(2 << 20);
        assert_eq!(small.resident(), 0, "a new buffer");
        assert_eq!(
            kept.kept(),
            [33 << 20],
            "the big one stays kept, to be freed in time"
        );
        // 10 MiB needed: it is taken, and remembers what is resident.
        let mut again = kept.buffer(10 << 20);
        assert_eq!(again.resident(), 20 << 20);
        again.extend_from_slice(b"short");
        drop(again);
        assert_eq!(kept.lock()[0].1, 20 << 20);
    }

    #[test]
    fn at_most_four_are_kept_the_oldest_freed_first() {
        let kept = leaked(Duration::from_secs(60));
        for size in 40..46 {
            keep(kept, size << 20, 0);
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
        keep(kept, 33 << 20, 0);
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
        keep(quick, 33 << 20, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !quick.kept().is_empty() || quick.sweeping.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "not freed within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
