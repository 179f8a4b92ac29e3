//! A sequence lock for one writer and many readers, in safe Rust: the value is `N` words kept in
//! atomics, so a racing read is never undefined behaviour, only a torn copy that the sequence
//! check throws away.
//!
//! Writer: make the sequence odd, store the words, make it even again (release). Reader: load
//! the sequence (acquire), copy the words, fence (acquire), load the sequence again; if it is
//! the same even number the copy is one whole publication, otherwise copy again. Readers only
//! load: they never write a shared cache line, so any number of them on any cores neither slow
//! each other nor the writer (unlike `crossbeam::atomic::AtomicCell` for a value this size, a
//! global striped lock whose reader takes the lock when its optimistic read races a write).
//! The orderings follow H.-J. Boehm, "Can seqlocks get along with programming language memory
//! models?" (MSPC 2012): relaxed data accesses bracketed by release/acquire fences.

use std::sync::atomic::{fence, AtomicU64, Ordering};

/// `N` words published as one value. Exactly one thread may call [`SeqLock::write`].
pub struct SeqLock<const N: usize> {
    seq: AtomicU64,
    words: [AtomicU64; N],
}

impl<const N: usize> SeqLock<N> {
    pub fn new(value: [u64; N]) -> Self {
        SeqLock {
            seq: AtomicU64::new(0),
            words: value.map(AtomicU64::new),
        }
    }

    /// A consistent copy of the last publication. Spins only while a publication is under way
    /// (a few stores long).
    #[inline]
    pub fn read(&self) -> [u64; N] {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let copy: [u64; N] = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return copy;
                }
            }
            std::hint::spin_loop();
        }
    }

    /// Publishes `value`. Only one thread may write (the clock's single writer).
    pub fn write(&self, value: &[u64; N]) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (w, v) in self.words.iter().zip(value) {
            w.store(*v, Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn reads_what_was_written() {
        let l = SeqLock::new([1, 2, 3]);
        assert_eq!(l.read(), [1, 2, 3]);
        l.write(&[4, 5, 6]);
        assert_eq!(l.read(), [4, 5, 6]);
    }

    /// Every word of a publication carries the same number: a torn read would mix two.
    #[test]
    fn readers_never_see_a_torn_value_while_the_writer_races_them() {
        let lock = Arc::new(SeqLock::new([0u64; 8]));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (lock, stop) = (lock.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    let mut last = 0;
                    loop {
                        let done = stop.load(Ordering::Relaxed);
                        let v = lock.read();
                        assert!(v.iter().all(|&w| w == v[0]), "torn read {v:?}");
                        assert!(v[0] >= last, "went back from {last} to {}", v[0]);
                        last = v[0];
                        reads += 1;
                        if done {
                            return reads;
                        }
                    }
                })
            })
            .collect();
        for n in 1..=200_000u64 {
            lock.write(&[n; 8]);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        assert_eq!(lock.read(), [200_000; 8]);
    }
}
