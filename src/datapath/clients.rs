//! The per-worker client table: what a worker remembers about each client address, in memory
//! fixed at start-up, with no allocation and no lock on the per-request path.
//!
//! * Keyed by IP address, never by port (RFC 9109: clients randomise source ports): two
//!   sockets of one host share a record. IPv4 addresses are stored IPv4-mapped.
//! * Open addressing in buckets of [`WAYS`] records (one bucket = 8 cache lines), two candidate
//!   buckets per address ("two choices": a newcomer goes to the less loaded one, which keeps
//!   evictions rare up to a nearly full table — under 1 % of a million clients at 90 % load); the
//!   buckets are chosen by a hash keyed with a per-table random seed, so a client cannot aim
//!   its addresses at one bucket without knowing it. When both are full, the least recently
//!   seen of their records is given to the newcomer, and the eviction is counted.
//! * One worker owns its table (clients are steered to one worker by source address), so it is
//!   plain memory: no atomics, no sharing. Readers elsewhere get copies ([`ClientTable::iter`])
//!   handed over by the worker between batches.
//!
//! A record is 64 bytes plus a 4-byte tag: 1,048,576 clients take 68 MiB.

use std::net::{IpAddr, Ipv6Addr};

use super::mailbox::ClientChunk;

/// Records per bucket.
pub const WAYS: usize = 8;

/// What the table knows about one client address (64 bytes, one cache line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Record {
    /// The address, IPv4-mapped for IPv4.
    addr: [u8; 16],
    /// Raw clock (ns) of the first and the last request; `last_seen == 0` marks a free slot.
    first_seen: i64,
    last_seen: i64,
    /// Requests seen (saturating).
    pub requests: u32,
    /// Requests dropped and kiss-o'-death replies sent (saturating).
    pub drops: u16,
    pub kods: u16,
    /// Moving average of log2 of the request interval in nanoseconds, in 1/256 units
    /// (0 until a second request).
    interval_log2_256: i16,
    /// Bit flags for the features that keep state here ([`FLAG_KOD_SENT`],
    /// [`FLAG_INTERLEAVES`]).
    pub flags: u8,
    /// Quality of `tx_sent` (a `TimestampQuality` index), when known.
    pub tx_quality: u8,
    /// Rate-limit tokens, in the rate limiter's fixed-point units.
    pub tokens: u32,
    /// Interleaved mode: the receive timestamp (NTP format, as sent) of the last reply to this
    /// client, and that reply's true transmit time once the backend reports it (0 until then).
    pub rx_sent: u64,
    pub tx_sent: u64,
}

/// Record flag: a KoD RATE was sent and no token has been spent since (the rate limiter's).
pub const FLAG_KOD_SENT: u8 = 1 << 0;
/// Record flag: the client has sent an interleaved request (RFC 9769), so the transmit stamps
/// of its replies are worth asking the kernel for.
pub const FLAG_INTERLEAVES: u8 = 1 << 1;

const EMPTY: Record = Record {
    addr: [0; 16],
    first_seen: 0,
    last_seen: 0,
    requests: 0,
    drops: 0,
    kods: 0,
    interval_log2_256: 0,
    flags: 0,
    tx_quality: 0,
    tokens: 0,
    rx_sent: 0,
    tx_sent: 0,
};

impl Default for Record {
    /// A free record.
    fn default() -> Record {
        EMPTY
    }
}

impl Record {
    /// The client's address.
    pub fn addr(&self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.addr);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }

    /// Raw clock (ns) of the first request.
    pub fn first_seen(&self) -> i64 {
        self.first_seen
    }

    /// Raw clock (ns) of the last request.
    pub fn last_seen(&self) -> i64 {
        self.last_seen
    }

    /// The client's typical interval between requests, nanoseconds (a moving geometric mean);
    /// `None` before its second request.
    pub fn interval_ns(&self) -> Option<f64> {
        (self.requests >= 2).then(|| 2f64.powf(f64::from(self.interval_log2_256) / 256.0))
    }
}

/// What [`ClientTable::touch_since`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A known client, its previous request this many nanoseconds ago (at least 1).
    Before(u64),
    /// A new client in a free record.
    New,
    /// A new client in the record of the least recently seen one (the table is full).
    Replaced,
}

impl Seen {
    /// Nanoseconds since the client's previous request, if it was known.
    pub fn since(self) -> Option<u64> {
        match self {
            Seen::Before(dt) => Some(dt),
            Seen::New | Seen::Replaced => None,
        }
    }
}

/// Where a client's record is, valid until the next [`ClientTable::touch`] of another
/// client may have evicted it (check with [`ClientTable::get`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot(u32);

impl Slot {
    /// The slot at `index` (as [`Slot::index`] gave it).
    pub(crate) fn from_index(index: u32) -> Slot {
        Slot(index)
    }

    /// The slot's index, e.g. to carry in a transmit-timestamp token.
    pub fn index(self) -> u32 {
        self.0
    }
}

/// One worker's client records.
pub struct ClientTable {
    records: Box<[Record]>,
    /// One tag per record, the records' order: a few bits of the address's hash, odd for a
    /// record in use and 0 for a free slot. A bucket's eight tags share one cache line, so a
    /// lookup reads one line per bucket and then only the record whose tag matches.
    tags: Box<[u32]>,
    /// Buckets - 1 (the bucket count is a power of two).
    mask: u64,
    seed: u64,
    occupied: usize,
    evictions: u64,
}

/// Where `key` may be: its two buckets (first record index of each) and its tag.
#[derive(Clone, Copy)]
struct Place {
    b1: usize,
    b2: usize,
    tag: u32,
}

impl ClientTable {
    /// A table for at least `capacity` clients (rounded up to a power-of-two number of
    /// buckets), hashing with `seed`. Allocates and touches all of its memory now (backed by
    /// huge pages where the kernel allows, so a large table costs few TLB entries).
    pub fn new(capacity: usize, seed: u64) -> ClientTable {
        let n = ClientTable::records_for(capacity);
        let mut records = Vec::with_capacity(n);
        crate::sys::mem::advise_huge_pages(&mut records);
        records.resize(n, EMPTY);
        let mut tags = Vec::with_capacity(n);
        crate::sys::mem::advise_huge_pages(&mut tags);
        tags.resize(n, 0u32);
        ClientTable {
            records: records.into_boxed_slice(),
            tags: tags.into_boxed_slice(),
            mask: (n / WAYS) as u64 - 1,
            seed,
            occupied: 0,
            evictions: 0,
        }
    }

    /// Records a table for `capacity` clients holds (a power-of-two number of buckets).
    pub fn records_for(capacity: usize) -> usize {
        capacity.div_ceil(WAYS).max(1).next_power_of_two() * WAYS
    }

    /// Bytes a table for `capacity` clients takes (records and tags).
    pub fn memory_for(capacity: usize) -> usize {
        ClientTable::records_for(capacity) * (std::mem::size_of::<Record>() + 4)
    }

    /// Records the table holds.
    pub fn capacity(&self) -> usize {
        self.records.len()
    }

    /// Records in use.
    pub fn len(&self) -> usize {
        self.occupied
    }

    pub fn is_empty(&self) -> bool {
        self.occupied == 0
    }

    /// Records given to a newcomer while still in use.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Bytes of memory the table takes.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.records) + std::mem::size_of_val(&*self.tags)
    }

    /// Starts bringing `ip`'s tag lines into the cache, without waiting: call it for every
    /// datagram of a batch before answering any, and the batch's lookups overlap their memory
    /// latency instead of paying it one after another.
    #[inline]
    pub fn prefetch(&self, ip: IpAddr) {
        let p = self.place(&key_of(ip));
        crate::sys::mem::prefetch(&self.tags[p.b1]);
        crate::sys::mem::prefetch(&self.tags[p.b2]);
    }

    /// The second stage after [`ClientTable::prefetch`]: reads `ip`'s tags (by now on their
    /// way into the cache) and starts fetching the record whose tag matches, if any.
    #[inline]
    pub fn prefetch_record(&self, ip: IpAddr) {
        let p = self.place(&key_of(ip));
        let tagged = |b: usize| (b..b + WAYS).find(|&i| self.tags[i] == p.tag);
        if let Some(i) = tagged(p.b1).or_else(|| tagged(p.b2)) {
            crate::sys::mem::prefetch(&self.records[i]);
        }
    }

    /// Counts a request from `ip` at raw time `now_ns` and returns its record, created (or
    /// taken from the least recently seen client of its two buckets) if it had none.
    #[inline]
    pub fn touch(&mut self, ip: IpAddr, now_ns: i64) -> (Slot, &mut Record) {
        let (slot, record, _) = self.touch_since(ip, now_ns);
        (slot, record)
    }

    /// [`ClientTable::touch`], also saying whether the client was known, and since when.
    #[inline]
    pub fn touch_since(&mut self, ip: IpAddr, now_ns: i64) -> (Slot, &mut Record, Seen) {
        let now = now_ns.max(1); // 0 marks a free slot
        let key = key_of(ip);
        let place = self.place(&key);
        let mut seen = Seen::New;
        let slot = match self.position(&key, place) {
            Some(slot) => {
                let r = &mut self.records[slot];
                let dt = now.saturating_sub(r.last_seen).max(1) as u64;
                seen = Seen::Before(dt);
                let sample = log2_256(dt);
                r.interval_log2_256 = if r.requests < 2 {
                    sample
                } else {
                    // Moving average with weight 1/8 for the new interval (rounded, so it
                    // reaches a steady interval instead of stopping short of it).
                    let avg = i32::from(r.interval_log2_256);
                    let step = i32::from(sample) - avg;
                    (avg + (step + 4 * step.signum()) / 8) as i16
                };
                r.requests = r.requests.saturating_add(1);
                r.last_seen = now;
                slot
            }
            None => {
                // The less loaded bucket takes a newcomer (balanced allocation); when both are
                // full, the least recently seen of the sixteen is replaced.
                let Place { b1, b2, tag } = place;
                let free = |b: usize| self.tags[b..b + WAYS].iter().filter(|&&t| t == 0).count();
                let (f1, f2) = (free(b1), free(b2));
                let victim = if f1 == 0 && f2 == 0 {
                    (b1..b1 + WAYS)
                        .chain(b2..b2 + WAYS)
                        .min_by_key(|&i| self.records[i].last_seen)
                        .unwrap_or(b1)
                } else {
                    let b = if f1 >= f2 { b1 } else { b2 };
                    (b..b + WAYS).find(|&i| self.tags[i] == 0).unwrap_or(b)
                };
                if self.tags[victim] == 0 {
                    self.occupied += 1;
                } else {
                    self.evictions += 1;
                    seen = Seen::Replaced;
                }
                self.tags[victim] = tag;
                self.records[victim] = Record {
                    addr: key,
                    first_seen: now,
                    last_seen: now,
                    requests: 1,
                    ..EMPTY
                };
                victim
            }
        };
        (Slot(slot as u32), &mut self.records[slot], seen)
    }

    /// The record of `ip`, if the table has one.
    pub fn find(&self, ip: IpAddr) -> Option<(Slot, &Record)> {
        let key = key_of(ip);
        let slot = self.position(&key, self.place(&key))?;
        Some((Slot(slot as u32), &self.records[slot]))
    }

    /// The record of `ip` to change, if the table has one.
    pub fn find_mut(&mut self, ip: IpAddr) -> Option<&mut Record> {
        let key = key_of(ip);
        let slot = self.position(&key, self.place(&key))?;
        Some(&mut self.records[slot])
    }

    /// The record at `slot` if it still belongs to `ip` (it may have been given to another
    /// client since the slot was handed out).
    #[inline]
    pub fn get_mut(&mut self, slot: Slot, ip: IpAddr) -> Option<&mut Record> {
        let key = key_of(ip);
        let i = slot.0 as usize;
        if self.tags.get(i).is_some_and(|&t| t != 0) && self.records[i].addr == key {
            Some(&mut self.records[i])
        } else {
            None
        }
    }

    /// The record in use at `slot`, whoever it belongs to now (the caller checks it is still
    /// the one it wants, e.g. by a timestamp it holds).
    #[inline]
    pub fn slot_mut(&mut self, slot: Slot) -> Option<&mut Record> {
        let i = slot.0 as usize;
        if self.tags.get(i).is_some_and(|&t| t != 0) {
            Some(&mut self.records[i])
        } else {
            None
        }
    }

    /// Index of the record with `key`, in either of its buckets: the tags first, then only the
    /// records whose tag matches.
    #[inline]
    fn position(&self, key: &[u8; 16], p: Place) -> Option<usize> {
        let hit = |b: usize| {
            (b..b + WAYS).find(|&i| self.tags[i] == p.tag && self.records[i].addr == *key)
        };
        hit(p.b1).or_else(|| if p.b2 != p.b1 { hit(p.b2) } else { None })
    }

    #[inline]
    fn place(&self, key: &[u8; 16]) -> Place {
        let h = hash(key, self.seed);
        Place {
            b1: (h & self.mask) as usize * WAYS,
            b2: ((h >> 32) & self.mask) as usize * WAYS,
            tag: (h.rotate_left(17) as u32) | 1,
        }
    }

    /// Copies the records in use from slot `chunk.from` on into `chunk.records`, up to its
    /// capacity (never allocating) and looking at no more than eight times as many slots,
    /// and says where to go on.
    pub fn copy_chunk(&self, chunk: &mut ClientChunk) {
        let room = chunk.records.capacity() - chunk.records.len();
        let end = self
            .records
            .len()
            .min(chunk.from.saturating_add(room.max(1).saturating_mul(8)));
        let mut i = chunk.from.min(end);
        while i < end && chunk.records.len() < chunk.records.capacity() {
            if self.tags[i] != 0 {
                chunk.records.push(self.records[i]);
            }
            i += 1;
        }
        chunk.next = (i < self.records.len()).then_some(i);
    }

    /// Every record in use (copies).
    pub fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        self.records
            .iter()
            .zip(self.tags.iter())
            .filter(|(_, &t)| t != 0)
            .map(|(r, _)| *r)
    }
}

/// The 16-byte key of an address (IPv4-mapped for IPv4).
#[inline]
fn key_of(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A keyed 64-bit hash of the address: each half goes through a full avalanche mix (the
/// 64-bit finaliser of MurmurHash3) with the seed, so addresses that differ in a few bits land
/// in unrelated buckets. Not cryptographic: it only has to spread addresses and keep the
/// bucket of an address unpredictable without the seed.
#[inline]
fn hash(key: &[u8; 16], seed: u64) -> u64 {
    let (hi, lo) = key.split_at(8);
    let a = u64::from_le_bytes(hi.try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(lo.try_into().expect("8 bytes"));
    mix(a ^ mix(b ^ seed))
}

#[inline]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// log2(x) in 1/256 units: the exponent and the next eight bits of the mantissa (a linear
/// approximation of log2 between powers of two).
#[inline]
fn log2_256(x: u64) -> i16 {
    let lz = x.max(1).leading_zeros();
    let exp = 63 - lz;
    let frac = ((x << lz) >> 55) & 0xFF;
    (exp * 256 + frac as u32) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_record_is_one_cache_line_and_a_million_fit_in_68_mib() {
        assert_eq!(std::mem::size_of::<Record>(), 64);
        assert_eq!(std::mem::align_of::<Record>(), 64);
        let t = ClientTable::new(1 << 20, 7);
        assert_eq!(t.capacity(), 1 << 20);
        assert_eq!(t.memory_bytes(), 68 << 20, "records and their tags");
        assert_eq!(ClientTable::memory_for(1 << 20), 68 << 20);
        // Capacities round up to whole power-of-two bucket counts.
        assert_eq!(ClientTable::new(1, 0).capacity(), WAYS);
        assert_eq!(ClientTable::new(100, 0).capacity(), 128);
    }

    #[test]
    fn one_record_per_address_whatever_the_port_and_family() {
        let mut t = ClientTable::new(64, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let (s1, r) = t.touch(a, 10 * SEC);
        assert_eq!(
            (r.requests, r.first_seen(), r.last_seen()),
            (1, 10 * SEC, 10 * SEC)
        );
        // A second socket of the same host (another source port) is the same client, and so
        // is its IPv4-mapped form.
        let (s2, r) = t.touch(a, 12 * SEC);
        assert_eq!(
            (s1, r.requests, r.first_seen(), r.last_seen()),
            (s2, 2, 10 * SEC, 12 * SEC)
        );
        assert_eq!(t.touch(mapped, 13 * SEC).0, s1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.find(a).unwrap().1.addr(), a);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let (s3, _) = t.touch(v6, 14 * SEC);
        assert_ne!(s3, s1);
        assert_eq!(t.find(v6).unwrap().1.addr(), v6);
        assert_eq!(t.len(), 2);
        assert!(t.find("2001:db8::2".parse().unwrap()).is_none());
    }

    #[test]
    fn the_interval_estimate_follows_the_client() {
        let mut t = ClientTable::new(64, 1);
        let a = v4(1);
        assert_eq!(t.touch(a, SEC).1.interval_ns(), None);
        for k in 2..40 {
            t.touch(a, k * 64 * SEC);
        }
        let i = t.find(a).unwrap().1.interval_ns().unwrap() / 1e9;
        assert!((60.0..68.0).contains(&i), "a 64 s poller: {i} s");
        // It moves towards a faster rate, not in one jump.
        let last = 39 * 64 * SEC;
        let i1 = t.touch(a, last + SEC).1.interval_ns().unwrap() / 1e9;
        assert!(i1 > 20.0, "{i1}");
    }

    #[test]
    fn a_full_bucket_gives_its_least_recently_seen_record_away_and_counts_it() {
        // One bucket only (both choices are the same bucket): WAYS clients fill it.
        let mut t = ClientTable::new(WAYS, 3);
        for n in 0..WAYS as u32 {
            t.touch(v4(n), (i64::from(n) + 1) * SEC);
        }
        assert_eq!((t.len(), t.evictions()), (WAYS, 0));
        // Client 0 comes back: now client 1 is the least recently seen.
        t.touch(v4(0), 100 * SEC);
        let (slot, r) = t.touch(v4(99), 101 * SEC);
        assert_eq!((r.requests, r.first_seen()), (1, 101 * SEC));
        assert_eq!((t.len(), t.evictions()), (WAYS, 1));
        assert!(t.find(v4(1)).is_none(), "the least recently seen went");
        assert!(t.find(v4(0)).is_some());
        // A slot handed out for client 1 no longer reaches a record of client 1.
        assert!(t.get_mut(slot, v4(1)).is_none());
        assert!(t.get_mut(slot, v4(99)).is_some());
    }

    #[test]
    fn an_evicted_record_takes_nothing_with_it_to_the_newcomer() {
        let mut t = ClientTable::new(WAYS, 5);
        let (_, r) = t.touch(v4(0), SEC);
        r.rx_sent = 0x1234;
        r.tx_sent = 0x5678;
        r.kods = 3;
        r.tokens = 9;
        for n in 1..=WAYS as u32 {
            t.touch(v4(n), (i64::from(n) + 1) * SEC);
        }
        assert!(t.find(v4(0)).is_none());
        let r = t.iter().find(|r| r.addr() == v4(WAYS as u32)).unwrap();
        assert_eq!((r.rx_sent, r.tx_sent, r.kods, r.tokens), (0, 0, 0, 0));
    }

    #[test]
    fn a_million_clients_spread_over_the_buckets() {
        let mut t = ClientTable::new(1 << 20, 0x5eed);
        // Consecutive addresses (the worst case for a weak hash), 90 % of capacity.
        let n = (1u32 << 20) * 9 / 10;
        for k in 0..n {
            t.touch(v4(k), i64::from(k) + 1);
        }
        let lost = t.evictions();
        assert!(
            lost * 100 < u64::from(n),
            "{lost} evictions for {n} clients"
        );
        assert_eq!(t.len() as u64 + lost, u64::from(n));
        // A different seed puts them elsewhere.
        let a = ClientTable::new(1 << 20, 1);
        let b = ClientTable::new(1 << 20, 2);
        let key = key_of(v4(1));
        let (pa, pb) = (a.place(&key), b.place(&key));
        assert_ne!((pa.b1, pa.b2), (pb.b1, pb.b2));
    }

    #[test]
    fn log2_in_256ths() {
        assert_eq!(log2_256(1), 0);
        assert_eq!(log2_256(2), 256);
        assert_eq!(log2_256(3), 256 + 128);
        assert_eq!(log2_256(1 << 30), 30 * 256);
        assert_eq!(log2_256(u64::MAX), 63 * 256 + 255);
        assert_eq!(log2_256(0), 0);
    }
}
