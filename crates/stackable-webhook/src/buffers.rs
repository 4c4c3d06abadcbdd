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

/// A buffer from [`buffer`]: a `Vec<u8>` (through `Deref`) that knows how much of it may be
/// resident.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    bytes: Vec<u8>,
    /// The most bytes it held in any of its uses: its pages up to there are resident.
    resident: usize,
}

impl std::ops::Deref for Buffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl Buffer {
    fn resident(&self) -> usize {
        self.resident.max(self.bytes.len())
    }

    /// The buffer as `Bytes`; a large buffer is kept when the last of them is dropped.
    pub(crate) fn into_bytes(self) -> Bytes {
        if self.bytes.capacity() >= LARGE {
            Bytes::from_owner(Returned {
                buffer: self,
                kept: &KEPT,
            })
        } else {
            Bytes::from(self.bytes)
        }
    }
}

/// An empty buffer with room for `len` bytes: a kept one when one is large enough, else a new
/// one reserved at [`capacity`]`(len)`.
pub(crate) fn buffer(len: usize) -> Buffer {
    KEPT.buffer(len)
}

/// Freed large buffers, each with when it was freed.
struct Kept {
    buffers: Mutex<Vec<(Buffer, Instant)>>,
    /// Whether the thread that frees them is running.
    sweeping: AtomicBool,
    keep: Duration,
}

/// A large buffer behind `Bytes`, kept when dropped.
struct Returned {
    buffer: Buffer,
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

    fn lock(&self) -> MutexGuard<'_, Vec<(Buffer, Instant)>> {
        // The lock guards no invariant a panic could break: a poisoned list is still a list.
        self.buffers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A kept buffer whose capacity fits and whose resident pages are at most about twice what
    /// is needed (a buffer that once held a far larger review is not pinned by smaller ones:
    /// it is freed in time); the one with the fewest resident pages, then the smallest. When none has the capacity,
    /// the kept ones too small for it are freed: reviews are this large now, and keeping them
    /// would add to the new buffers' memory.
    fn buffer(&self, len: usize) -> Buffer {
        let capacity = capacity(len);
        if capacity < LARGE {
            return Buffer {
                bytes: Vec::with_capacity(capacity),
                resident: 0,
            };
        }
        let mut kept = self.lock();
        let fitting = kept
            .iter()
            .enumerate()
            .filter(|(_, (buffer, _))| buffer.capacity() >= capacity)
            .filter(|(_, (buffer, _))| buffer.resident() <= len.saturating_mul(2) + LARGE)
            .min_by_key(|(_, (buffer, _))| (buffer.resident(), buffer.capacity()))
            .map(|(index, _)| index);
        if let Some(index) = fitting {
            let (mut buffer, _) = kept.swap_remove(index);
            drop(kept);
            buffer.resident = buffer.resident();
            buffer.bytes.clear();
            return buffer;
        }
        let too_small: Vec<(Buffer, Instant)>;
        (too_small, *kept) = std::mem::take(&mut *kept)
            .into_iter()
            .partition(|(buffer, _)| buffer.capacity() < capacity);
        drop(kept);
        // Unmapped outside the lock.
        drop(too_small);
        Buffer {
            bytes: Vec::with_capacity(capacity),
            resident: 0,
        }
    }

    fn keep(&'static self, buffer: Buffer) {
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

    fn as_bytes(kept: &'static Kept, buffer: Buffer) -> Bytes {
        Bytes::from_owner(Returned { buffer, kept })
    }

    fn with_capacity(capacity: usize, resident: usize) -> Buffer {
        Buffer {
            bytes: Vec::with_capacity(capacity),
            resident,
        }
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
        kept.keep(with_capacity(4_500, 0));
        assert!(kept.kept().is_empty());
        kept.keep(again);
        assert_eq!(kept.buffer(4_500).capacity(), 4_500);
        assert_eq!(kept.kept(), [33 << 20]);
    }

    #[test]
    fn a_buffer_too_small_is_left_and_the_smallest_fitting_one_is_taken() {
        let kept = leaked(Duration::from_secs(60));
        kept.keep(with_capacity(40 << 20, 0));
        kept.keep(with_capacity(33 << 20, 0));
        kept.keep(with_capacity(38 << 20, 0));
        assert_eq!(kept.buffer(36 << 20).capacity(), 38 << 20);
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
        kept.keep(big);
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
        kept.keep(again);
        assert_eq!(kept.lock()[0].0.resident(), 20 << 20);
    }

    #[test]
    fn at_most_four_are_kept_the_oldest_freed_first() {
        let kept = leaked(Duration::from_secs(60));
        for size in 40..46 {
            kept.keep(with_capacity(size << 20, 0));
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
        kept.keep(with_capacity(33 << 20, 0));
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
        quick.keep(with_capacity(33 << 20, 0));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !quick.kept().is_empty() || quick.sweeping.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "not freed within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
