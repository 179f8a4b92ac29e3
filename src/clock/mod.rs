//! The served clock: [`ClockSnapshot`], its lock-free single-writer publication, and "cooking"
//! raw clock readings into served time.
//!
//! Workers read a snapshot once per batch and never block; the one writer (the runtime's
//! `Server::tick` while the local clock is served, the discipline thread while sources are
//! followed) replaces it whole, through [`SharedClock`], a sequence lock whose readers only
//! read shared memory (see [`seqlock`]).

pub mod seqlock;

use seqlock::SeqLock;

use crate::proto::{Leap, NtpShort, UnixNanos};

pub use crate::proto::snapshot::{ClockSnapshot, Correction, DEFAULT_DISPERSION_RATE, LOCAL_REFID};

/// The single-writer, many-reader cell holding the current snapshot: a [`SeqLock`] over the
/// snapshot packed into eight words. A reader copies the words and checks the sequence number
/// around them, retrying only when a publication raced it; it never writes shared memory, so
/// readers on every core never contend with each other or slow the writer.
pub struct SharedClock {
    cell: SeqLock<SNAPSHOT_WORDS>,
}

/// Words of a packed [`ClockSnapshot`].
const SNAPSHOT_WORDS: usize = 8;

impl SharedClock {
    pub fn new(initial: ClockSnapshot) -> Self {
        SharedClock {
            cell: SeqLock::new(pack(&initial)),
        }
    }

    /// The current snapshot (never blocks; retries only if a publication raced the read).
    #[inline]
    pub fn load(&self) -> ClockSnapshot {
        unpack(&self.cell.read())
    }

    /// Publishes a new snapshot. Only one thread may publish (the clock has one writer).
    pub fn publish(&self, snap: ClockSnapshot) {
        self.cell.write(&pack(&snap));
    }
}

/// A snapshot as words, every field in full (unpacking gives the same value back).
fn pack(s: &ClockSnapshot) -> [u64; SNAPSHOT_WORDS] {
    let small = u64::from(s.synchronized)
        | (s.leap as u64) << 8
        | u64::from(s.stratum) << 16
        | u64::from(s.precision as u8) << 24
        | u64::from(s.epoch) << 32;
    [
        small,
        u64::from(s.root_delay.0) | u64::from(u32::from_be_bytes(s.reference_id)) << 32,
        s.root_dispersion_ns as u64,
        s.dispersion_rate.to_bits(),
        s.reference_time.0 as u64,
        s.correction.at.0 as u64,
        s.correction.offset_ns as u64,
        s.correction.freq.to_bits(),
    ]
}

fn unpack(w: &[u64; SNAPSHOT_WORDS]) -> ClockSnapshot {
    ClockSnapshot {
        synchronized: w[0] & 1 != 0,
        leap: Leap::from_bits((w[0] >> 8) as u8),
        stratum: (w[0] >> 16) as u8,
        precision: (w[0] >> 24) as u8 as i8,
        epoch: (w[0] >> 32) as u32,
        root_delay: NtpShort(w[1] as u32),
        reference_id: ((w[1] >> 32) as u32).to_be_bytes(),
        root_dispersion_ns: w[2] as i64,
        dispersion_rate: f64::from_bits(w[3]),
        reference_time: UnixNanos(w[4] as i64),
        correction: Correction {
            at: UnixNanos(w[5] as i64),
            offset_ns: w[6] as i64,
            freq: f64::from_bits(w[7]),
        },
    }
}

/// Where a timestamp came from, best first. Recorded per packet and reported at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimestampQuality {
    /// Taken by the NIC (PHC time, mapped to system time).
    Hardware,
    /// Taken by the XDP program in the driver, before the stack.
    Driver,
    /// Taken by the kernel network stack (SO_TIMESTAMPING software).
    Kernel,
    /// Read by the worker after the packet reached user space.
    User,
}

impl TimestampQuality {
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampQuality::Hardware => "hardware",
            TimestampQuality::Driver => "driver",
            TimestampQuality::Kernel => "kernel",
            TimestampQuality::User => "user",
        }
    }
}

/// A raw (uncooked) clock reading and how it was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawStamp {
    pub raw: UnixNanos,
    pub quality: TimestampQuality,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_survives_packing_whole() {
        let mut s = ClockSnapshot::local(3, -23, UnixNanos(1_700_000_000_123_456_789));
        s.leap = Leap::DelSecond;
        s.root_delay = NtpShort(0xdead_beef);
        s.root_dispersion_ns = -5;
        s.dispersion_rate = 1.5e-5;
        s.reference_id = [192, 0, 2, 1];
        s.correction = Correction {
            at: UnixNanos(-7),
            offset_ns: i64::MIN,
            freq: -3.25e-7,
        };
        s.epoch = u32::MAX;
        assert_eq!(unpack(&pack(&s)), s);
        let u = ClockSnapshot::unsynchronized(-128);
        assert_eq!(unpack(&pack(&u)), u);
        let shared = SharedClock::new(u);
        assert_eq!(shared.load(), u);
        shared.publish(s);
        assert_eq!(shared.load(), s);
    }

    #[test]
    fn cook_applies_offset_and_frequency() {
        let c = Correction {
            at: UnixNanos::from_parts(1000, 0),
            offset_ns: 200_000_000,
            freq: 10e-6,
        };
        assert_eq!(
            c.cook(UnixNanos::from_parts(1000, 0)),
            UnixNanos::from_parts(1000, 200_000_000)
        );
        // 100 s later the 10 ppm frequency adds 1 ms.
        assert_eq!(
            c.cook(UnixNanos::from_parts(1100, 0)),
            UnixNanos::from_parts(1100, 201_000_000)
        );
    }

    #[test]
    fn dispersion_grows_from_reference_time() {
        let mut s = ClockSnapshot::local(10, -20, UnixNanos::from_parts(1000, 0));
        s.root_dispersion_ns = 1_000_000;
        assert_eq!(
            s.root_dispersion_at(UnixNanos::from_parts(1000, 0)),
            NtpShort::from_nanos(1_000_000)
        );
        // 100 s at 15 ppm = 1.5 ms more.
        assert_eq!(
            s.root_dispersion_at(UnixNanos::from_parts(1100, 0)),
            NtpShort::from_nanos(2_500_000)
        );
        // A time before the reference never shrinks it.
        assert_eq!(
            s.root_dispersion_at(UnixNanos::from_parts(900, 0)),
            NtpShort::from_nanos(1_000_000)
        );
    }

    #[test]
    fn shared_clock_publishes_whole_snapshots() {
        let shared = SharedClock::new(ClockSnapshot::unsynchronized(-20));
        assert!(!shared.load().synchronized);
        let local = ClockSnapshot::local(10, -20, UnixNanos(5));
        shared.publish(local);
        assert_eq!(shared.load(), local);
    }

    #[test]
    fn concurrent_readers_never_see_torn_snapshots() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let shared = Arc::new(SharedClock::new(ClockSnapshot::local(1, -20, UnixNanos(0))));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (shared, stop) = (shared.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let s = shared.load();
                        // The writer keeps these three fields equal: a torn read would differ.
                        assert_eq!(s.reference_time.0, s.correction.offset_ns);
                        assert_eq!(s.reference_time.0 as u32, s.epoch);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for i in 0..200_000i64 {
            let mut s = ClockSnapshot::local(1, -20, UnixNanos(i));
            s.correction.offset_ns = i;
            s.epoch = i as u32;
            shared.publish(s);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    }
}
