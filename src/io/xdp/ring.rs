//! The four AF_XDP rings (fill, completion, RX, TX), each an mmap'd region shared with the
//! kernel: a producer index, a consumer index, a flags word and a power-of-two array of
//! descriptors. One side produces, the other consumes; indices are free-running u32s.
//!
//! Ordering: a producer writes descriptors, then publishes the producer index with Release; a
//! consumer loads the producer index with Acquire before reading descriptors, and publishes its
//! consumer index with Release once it no longer needs them. We keep cached copies of both
//! indices so the shared cache lines are touched once per batch, not per descriptor.

use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

/// An mmap'd region, unmapped on drop.
pub(super) struct Mmap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread moves
// sole ownership (the kernel side is synchronised through the ring indices).
unsafe impl Send for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd` at `offset` (a ring), or anonymous memory when `fd` is `None`
    /// (the UMEM).
    pub fn new(fd: Option<RawFd>, len: usize, offset: i64) -> io::Result<Mmap> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
            ),
        };
        // SAFETY: a fresh mapping at an address the kernel chooses; nothing else is touched,
        // and the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: ptr.cast(),
            len,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `new` mapped; no reference into it outlives `self`
        // (rings and UMEM slices borrow from their owner).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Offsets of one ring's fields inside its mapping (from XDP_MMAP_OFFSETS).
#[derive(Clone, Copy, Debug)]
pub(super) struct RingLayout {
    pub producer: u64,
    pub consumer: u64,
    pub flags: u64,
    pub desc: u64,
}

impl From<libc::xdp_ring_offset> for RingLayout {
    fn from(o: libc::xdp_ring_offset) -> Self {
        RingLayout {
            producer: o.producer,
            consumer: o.consumer,
            flags: o.flags,
            desc: o.desc,
        }
    }
}

/// A mapped ring of `T` descriptors (`u64` addresses for fill/completion, `xdp_desc` for
/// RX/TX).
pub(super) struct Ring<T> {
    map: Mmap,
    layout: RingLayout,
    size: u32,
    /// Our producer index (producer rings) or the last producer index seen (consumer rings).
    cached_prod: u32,
    /// Our consumer index (consumer rings) or the last consumer index seen (producer rings).
    cached_cons: u32,
    _t: PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `size` entries (a power of two) at page offset `pgoff` of the socket.
    pub fn map(fd: RawFd, layout: RingLayout, size: u32, pgoff: i64) -> io::Result<Ring<T>> {
        debug_assert!(size.is_power_of_two());
        let len = layout.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mmap::new(Some(fd), len, pgoff)?;
        for off in [layout.producer, layout.consumer, layout.flags] {
            if off as usize + 4 > len || off % 4 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "XDP_MMAP_OFFSETS gave an index outside its ring",
                ));
            }
        }
        let mut ring = Ring {
            map,
            layout,
            size,
            cached_prod: 0,
            cached_cons: 0,
            _t: PhantomData,
        };
        ring.cached_prod = ring.index(layout.producer).load(Ordering::Acquire);
        ring.cached_cons = ring.index(layout.consumer).load(Ordering::Acquire);
        Ok(ring)
    }

    fn index(&self, off: u64) -> &AtomicU32 {
        // SAFETY: `off` was checked in `map` to be a 4-byte aligned offset inside the mapping,
        // which lives as long as `self`; the kernel accesses this word atomically too.
        unsafe { &*(self.map.as_ptr().add(off as usize) as *const AtomicU32) }
    }

    fn slot(&self, idx: u32) -> *mut T {
        let i = (idx & (self.size - 1)) as usize;
        // SAFETY: i < size, and the mapping holds `size` descriptors from `layout.desc`.
        unsafe {
            self.map
                .as_ptr()
                .add(self.layout.desc as usize)
                .cast::<T>()
                .add(i)
        }
    }

    /// Whether the kernel asked to be woken (XDP_RING_NEED_WAKEUP in the flags word).
    pub fn needs_wakeup(&self) -> bool {
        self.index(self.layout.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // -- producer side (fill, TX) --

    /// Free slots, up to `want` (refreshes the consumer index only when needed).
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return want;
        }
        self.cached_cons = self.index(self.layout.consumer).load(Ordering::Acquire);
        (self.size - self.cached_prod.wrapping_sub(self.cached_cons)).min(want)
    }

    /// Writes the `i`-th descriptor after the last published one (call `free` first).
    pub fn write(&mut self, i: u32, v: T) {
        // SAFETY: the slot is free (the caller reserved it with `free`), so the kernel does not
        // read it until the producer index is published; the pointer is in the mapping.
        unsafe { self.slot(self.cached_prod.wrapping_add(i)).write(v) }
    }

    /// Publishes `n` written descriptors.
    pub fn submit(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.index(self.layout.producer)
            .store(self.cached_prod, Ordering::Release);
    }

    /// Descriptors published but not yet taken by the kernel.
    pub fn unconsumed(&mut self) -> u32 {
        self.cached_cons = self.index(self.layout.consumer).load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    // -- consumer side (RX, completion) --

    /// Descriptors ready to read, up to `max`.
    pub fn available(&mut self, max: u32) -> u32 {
        let ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready >= max {
            return max;
        }
        self.cached_prod = self.index(self.layout.producer).load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons).min(max)
    }

    /// The `i`-th ready descriptor (call `available` first).
    pub fn read(&self, i: u32) -> T {
        // SAFETY: the kernel published this slot (Acquire in `available`) and will not reuse
        // it until we release it; the pointer is in the mapping.
        unsafe { self.slot(self.cached_cons.wrapping_add(i)).read() }
    }

    /// Gives `n` read descriptors back to the kernel.
    pub fn release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.index(self.layout.consumer)
            .store(self.cached_cons, Ordering::Release);
    }
}
