//! Memory hints for the per-worker tables: a cache prefetch (so a batch's lookups overlap their
//! memory latency) and transparent huge pages (so a table of tens of MiB costs few TLB entries).
//! Both are hints: nothing here can fail or change what a program computes.

/// Asks the CPU to bring the cache line holding `value` closer, without waiting for it.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(all(target_arch = "x86_64", linux_io))]
    // SAFETY: PREFETCHT0 is a hint on a valid reference's address: it never faults, reads
    // nothing into the program, and SSE (which defines it) is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(all(target_arch = "x86_64", linux_io)))]
    let _ = value;
}

/// Asks the kernel to back `v`'s allocated capacity with transparent huge pages (Linux
/// `madvise(MADV_HUGEPAGE)`; for the `madvise` THP mode). Call it before the memory is first
/// touched. Returns whether the kernel took the advice; elsewhere a no-op returning false.
pub fn advise_huge_pages<T>(v: &mut Vec<T>) -> bool {
    #[cfg(linux_io)]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_mut_ptr() as usize;
        let end = start + v.capacity() * std::mem::size_of::<T>();
        // Only whole huge pages inside the allocation.
        let (first, last) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if last <= first {
            return false;
        }
        // SAFETY: [first, last) lies inside `v`'s own allocation (aligned inwards); MADV_HUGEPAGE
        // only changes how the kernel backs those pages, never their contents or validity.
        let r = unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            )
        };
        r == 0
    }
    #[cfg(not(linux_io))]
    {
        let _ = v;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_change_nothing() {
        let mut v: Vec<u64> = Vec::with_capacity(8 << 20);
        let advised = advise_huge_pages(&mut v);
        v.resize(8 << 20, 7);
        prefetch(&v[12345]);
        assert!(v.iter().all(|&x| x == 7));
        // Small allocations hold no whole huge page.
        assert!(!advise_huge_pages(&mut Vec::<u8>::with_capacity(100)));
        eprintln!("huge pages advised: {advised}");
    }
}
