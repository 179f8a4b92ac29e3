//! Access rules: which client addresses are served, decided by the most specific matching
//! prefix, in a lookup whose cost does not grow with the number of rules.
//!
//! * Rules are IPv4 or IPv6 prefixes (`10.0.0.0/8`, `2001:db8::/32`, or a bare address), each
//!   allowing or denying. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are IPv4, in rules and
//!   in lookups.
//! * The longest matching prefix decides; when an allow and a deny rule have the same prefix,
//!   deny wins. An address no rule matches is denied when any allow rule exists, else served.
//! * The rules are compiled into two tries of stride 8 (one per family) with the prefixes
//!   expanded into the slots they cover and each decision pushed down to the slots without a
//!   child: a lookup reads at most one node per address byte (4 for IPv4, 16 for IPv6),
//!   whether there is one rule or ten thousand, and a node is one cache line (two bitmaps of
//!   256 bits; a child is found by its rank, as in poptrie).
//!
//! Built once (at start-up or on reload), then only read, shared by every worker.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Slots per trie node (one address byte).
const FANOUT: usize = 256;
/// Node index meaning "no child" (the root is never anyone's child).
const NO_CHILD: u32 = 0;

/// An address prefix, IPv4 (mapped addresses are taken as IPv4) or IPv6, with its host bits
/// cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// The prefix of the first `len` bits of `addr` (at most 32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, PrefixError> {
        let addr = canonical(addr);
        let max = max_len(addr);
        if len > max {
            return Err(PrefixError::Length { len, max });
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(len))),
        };
        Ok(Prefix { addr, len })
    }

    /// The prefix's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Its length in bits.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for `/0` (every address of the family).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `ip` is in the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Prefix::new(ip, self.len).is_ok_and(|p| p == *self)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Why a text is not a prefix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?} is not an IP address or prefix (expected e.g. 192.0.2.0/24, 2001:db8::/32 or 192.0.2.7)")]
    Syntax(String),
    #[error("prefix length /{len} is longer than the address (at most /{max})")]
    Length { len: u8, max: u8 },
    #[error("{0} has bits set after the prefix length (did you mean {1}?)")]
    HostBits(String, Prefix),
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// `addr/len` or a bare address (a host prefix). Bits set past the length are refused,
    /// since they usually mean a mistyped rule.
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let syntax = || PrefixError::Syntax(s.to_owned());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => {
                let addr: IpAddr = a.trim().parse().map_err(|_| syntax())?;
                let l = l.trim();
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let len: u8 = l.parse().map_err(|_| PrefixError::Length {
                    len: u8::MAX,
                    max: max_len(canonical(addr)),
                })?;
                // A mapped address's length counts the 96 mapping bits.
                let len = match (addr, canonical(addr)) {
                    (IpAddr::V6(_), IpAddr::V4(_)) if len >= 96 => len - 96,
                    (IpAddr::V6(_), IpAddr::V4(_)) => return Err(syntax()),
                    _ => len,
                };
                (addr, len)
            }
            None => {
                let addr: IpAddr = s.trim().parse().map_err(|_| syntax())?;
                (addr, max_len(canonical(addr)))
            }
        };
        let p = Prefix::new(addr, len)?;
        if p.addr != canonical(addr) {
            return Err(PrefixError::HostBits(s.trim().to_owned(), p));
        }
        Ok(p)
    }
}

impl<'de> serde::Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Prefix, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// A slot's decision: prefix length + 1 (0: none) and whether it denies, packed so deny sorts
/// above allow at the same length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Mark(u16);

impl Mark {
    const NONE: Mark = Mark(0);

    fn new(len: u8, action: Action) -> Mark {
        Mark(((u16::from(len) + 1) << 1) | u16::from(action == Action::Deny))
    }

    fn is_some(self) -> bool {
        self.0 != 0
    }

    fn denies(self) -> bool {
        self.0 & 1 == 1
    }
}

/// A node of the trie being built, sparse (a big rule set must not cost 1.5 KiB a node while
/// it is compiled): the rules ending in it as (first slot, slots covered, decision), and its
/// children by slot, sorted.
#[derive(Default)]
struct BuildNode {
    marks: Vec<(u8, u16, Mark)>,
    children: Vec<(u8, u32)>,
}

/// A stride-8 trie over the bytes of one address family, as the rules are added;
/// [`Builder::compile`] turns it into the [`Trie`] the workers read.
struct Builder {
    nodes: Vec<BuildNode>,
    /// The `/0` rule of the family, if any.
    root_mark: Mark,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            nodes: vec![BuildNode::default()],
            root_mark: Mark::NONE,
        }
    }

    /// Adds the prefix of `len` bits of `bytes`.
    fn insert(&mut self, bytes: &[u8], len: u8, action: Action) {
        let mark = Mark::new(len, action);
        if len == 0 {
            self.root_mark = self.root_mark.max(mark);
            return;
        }
        // The prefix ends in the node of byte `depth`, covering 2^(8 - bits) of its slots.
        let depth = usize::from(len - 1) / 8;
        let bits = u32::from(len) - 8 * depth as u32;
        let mut node = 0usize;
        for &b in &bytes[..depth] {
            let next = self.nodes.len() as u32;
            let children = &mut self.nodes[node].children;
            node = match children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => children[i].1 as usize,
                Err(i) => {
                    children.insert(i, (b, next));
                    self.nodes.push(BuildNode::default());
                    next as usize
                }
            };
        }
        let span = 1u16 << (8 - bits);
        let first = bytes[depth] & !((span - 1) as u8);
        self.nodes[node].marks.push((first, span, mark));
    }

    /// The decisions of one built node's slots (its rules over what its ancestors decided:
    /// deeper nodes hold longer prefixes; within a node the longer or, at the same length, the
    /// denying rule keeps the slot) and its children by slot.
    fn slots(&self, id: usize, inherited: Mark) -> ([Mark; FANOUT], [u32; FANOUT]) {
        let built = &self.nodes[id];
        let mut marks = [inherited; FANOUT];
        for &(first, span, mark) in &built.marks {
            let first = usize::from(first);
            for m in &mut marks[first..first + usize::from(span)] {
                *m = (*m).max(mark);
            }
        }
        let mut children = [NO_CHILD; FANOUT];
        for &(slot, child) in &built.children {
            children[usize::from(slot)] = child;
        }
        (marks, children)
    }

    /// The read-only trie. The first two address bytes index one flat table (every /16 at
    /// once, as DIR-24-8 and poptrie's direct pointing do: one read for most addresses however
    /// many rules there are); below it, nodes of stride 8. Every slot without a child holds
    /// the final decision of the longest prefix above it (pushed down from its ancestors, or
    /// the default when none matches), so a lookup reads no decision but the last slot's; the
    /// children of a node are stored side by side, breadth first, so a node names them by one
    /// index and a rank.
    fn compile(&self, default_denies: bool) -> Trie {
        let decide = |m: Mark| {
            if m.is_some() {
                m.denies()
            } else {
                default_denies
            }
        };
        if self.root_mark == Mark::NONE
            && self.nodes[0].marks.is_empty()
            && self.nodes[0].children.is_empty()
        {
            // No rule of this family: no table, every address gets the default.
            return Trie {
                top: Vec::new(),
                nodes: Vec::new(),
                bases: Vec::new(),
                default_denies,
            };
        }
        let mut top = vec![0u32; FANOUT * FANOUT];
        // (node being built, the best mark of its ancestors), in the order they are stored.
        let mut queue = std::collections::VecDeque::new();
        let (marks0, children0) = self.slots(0, self.root_mark);
        for (b0, (&m0, &c0)) in marks0.iter().zip(&children0).enumerate() {
            let (marks1, children1) = match c0 {
                NO_CHILD => ([m0; FANOUT], [NO_CHILD; FANOUT]),
                c => self.slots(c as usize, m0),
            };
            for (b1, (&m1, &c1)) in marks1.iter().zip(&children1).enumerate() {
                top[b0 << 8 | b1] = match c1 {
                    NO_CHILD => LEAF | u32::from(decide(m1)),
                    c => {
                        queue.push_back((c as usize, m1));
                        queue.len() as u32 - 1
                    }
                };
            }
        }
        let mut nodes = Vec::with_capacity(queue.len());
        let mut bases = Vec::with_capacity(queue.len() * 4);
        let mut stored = queue.len() as u32;
        while let Some((id, inherited)) = queue.pop_front() {
            let (marks, children) = self.slots(id, inherited);
            let mut node = Node::default();
            for slot in 0..FANOUT {
                let bit = 1u64 << (slot % 64);
                if slot % 64 == 0 {
                    bases.push(stored);
                }
                match children[slot] {
                    NO_CHILD => {
                        if decide(marks[slot]) {
                            node.words[4 + slot / 64] |= bit;
                        }
                    }
                    child => {
                        node.words[slot / 64] |= bit;
                        queue.push_back((child as usize, marks[slot]));
                        stored += 1;
                    }
                }
            }
            nodes.push(node);
        }
        Trie {
            top,
            nodes,
            bases,
            default_denies,
        }
    }
}

/// A top-table entry that is a decision (bit 0: denied), not the index of a node.
const LEAF: u32 = 1 << 31;

/// One node of the compiled trie below the top table, one cache line: which of its 256 slots
/// have a child (words 0–3) and, for the others, whether the address is denied (words 4–7).
/// Where the children are is in [`Trie::bases`], 16 bytes a node.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Node {
    words: [u64; 8],
}

/// The compiled trie of one address family: a 256 KiB table for the first 16 bits (none when
/// the family has no rule), then 64 bytes a node (10,000 random IPv4 prefixes of /12 to /32
/// add about 0.7 MiB).
#[derive(Clone)]
struct Trie {
    /// Empty when the family has no rule.
    top: Vec<u32>,
    nodes: Vec<Node>,
    /// Index of the first child in each quarter (64 slots) of each node: `4 × node + quarter`
    /// (a node's children follow one another in slot order).
    bases: Vec<u32>,
    /// What an address no rule matches gets (used here only when there is no table).
    default_denies: bool,
}

impl Trie {
    /// True when the longest prefix holding `bytes` (or the default) denies it.
    #[inline]
    fn denies(&self, bytes: &[u8]) -> bool {
        if self.top.is_empty() {
            return self.default_denies;
        }
        let entry = self.top[usize::from(bytes[0]) << 8 | usize::from(bytes[1])];
        if entry & LEAF != 0 {
            return entry & 1 == 1;
        }
        let mut n = entry as usize;
        for &b in &bytes[2..] {
            let (w, bit) = (usize::from(b >> 6), u64::from(b & 63));
            let words = &self.nodes[n].words;
            let children = words[w];
            if children >> bit & 1 == 0 {
                return words[4 + w] >> bit & 1 == 1;
            }
            // The child's index: the first of its quarter's, plus the children below it there.
            let below = (children & ((1u64 << bit) - 1)).count_ones();
            n = (self.bases[4 * n + w] + below) as usize;
        }
        // A child below the last byte cannot exist: prefixes are at most the address long.
        unreachable_denies()
    }

    fn memory_bytes(&self) -> usize {
        self.top.len() * 4 + self.nodes.len() * std::mem::size_of::<Node>() + self.bases.len() * 4
    }
}

/// The end of an address reached with a child still to read; the builder never makes one
/// (a prefix ends inside the node of its last byte), so this is never reached.
#[cold]
fn unreachable_denies() -> bool {
    true
}

/// Compiled access rules.
#[derive(Clone)]
pub struct AccessRules {
    v4: Trie,
    v6: Trie,
    rules: usize,
}

impl fmt::Debug for AccessRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessRules")
            .field("rules", &self.rules)
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl AccessRules {
    /// Compiles `allow` and `deny` prefixes.
    pub fn new(allow: &[Prefix], deny: &[Prefix]) -> AccessRules {
        let (mut v4, mut v6) = (Builder::new(), Builder::new());
        let tagged = allow
            .iter()
            .map(|p| (p, Action::Allow))
            .chain(deny.iter().map(|p| (p, Action::Deny)));
        for (p, action) in tagged {
            match p.addr {
                IpAddr::V4(a) => v4.insert(&a.octets(), p.len, action),
                IpAddr::V6(a) => v6.insert(&a.octets(), p.len, action),
            }
        }
        let default_denies = !allow.is_empty();
        AccessRules {
            v4: v4.compile(default_denies),
            v6: v6.compile(default_denies),
            rules: allow.len() + deny.len(),
        }
    }

    /// True when no rule is configured (everyone is served).
    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }

    /// Number of rules compiled.
    pub fn len(&self) -> usize {
        self.rules
    }

    /// Bytes the compiled tries take.
    pub fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes() + self.v6.memory_bytes()
    }

    /// True when `ip` may be served.
    #[inline]
    pub fn allows(&self, ip: IpAddr) -> bool {
        !match canonical(ip) {
            IpAddr::V4(a) => self.v4.denies(&a.octets()),
            IpAddr::V6(a) => self.v6.denies(&a.octets()),
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
#[inline]
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rules(allow: &[&str], deny: &[&str]) -> AccessRules {
        let a: Vec<Prefix> = allow.iter().map(|s| p(s)).collect();
        let d: Vec<Prefix> = deny.iter().map(|s| p(s)).collect();
        AccessRules::new(&a, &d)
    }

    #[test]
    fn prefixes_parse_and_are_checked() {
        assert_eq!(p("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(p(" 192.0.2.7 ").to_string(), "192.0.2.7/32");
        assert_eq!(p("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(p("::1").to_string(), "::1/128");
        assert_eq!(p("0.0.0.0/0").len(), 0);
        // Mapped addresses are IPv4, their length counted without the 96 mapping bits.
        assert_eq!(p("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(p("::ffff:192.0.2.1").to_string(), "192.0.2.1/32");
        for bad in [
            "",
            "10.0.0.0/",
            "10/8",
            "10.0.0.0/8/8",
            "example.org",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "::ffff:10.0.0.0/90",
        ] {
            assert!(
                matches!(bad.parse::<Prefix>(), Err(PrefixError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::Length { len: 33, max: 32 })
        );
        assert!(matches!(
            "2001:db8::/129".parse::<Prefix>(),
            Err(PrefixError::Length { len: 129, max: 128 })
        ));
        assert!(matches!(
            "10.0.0.0/999".parse::<Prefix>(),
            Err(PrefixError::Length { .. })
        ));
        let e = "10.1.2.3/8".parse::<Prefix>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "10.1.2.3/8 has bits set after the prefix length (did you mean 10.0.0.0/8?)"
        );
        assert!(p("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(p("10.0.0.0/8").contains(ip("::ffff:10.1.1.1")));
        assert!(!p("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(!p("10.0.0.0/8").contains(ip("2001:db8::1")));
    }

    #[test]
    fn no_rules_serve_everyone() {
        let r = rules(&[], &[]);
        assert!(r.is_empty());
        assert!(r.allows(ip("192.0.2.1")) && r.allows(ip("2001:db8::1")));
    }

    #[test]
    fn only_denies_serve_the_rest() {
        let r = rules(&[], &["10.66.0.0/16", "2001:db8:bad::/48"]);
        assert!(!r.allows(ip("10.66.1.2")));
        assert!(!r.allows(ip("::ffff:10.66.1.2")), "mapped is IPv4");
        assert!(r.allows(ip("10.67.0.1")));
        assert!(!r.allows(ip("2001:db8:bad::7")));
        assert!(r.allows(ip("2001:db8:bae::7")));
    }

    #[test]
    fn the_most_specific_prefix_decides() {
        let r = rules(
            &["10.0.0.0/8", "10.66.7.0/24", "2001:db8::/32", "192.0.2.9"],
            &["10.66.0.0/16", "2001:db8:1::/48", "192.0.2.0/24"],
        );
        assert!(r.allows(ip("10.1.2.3")));
        assert!(!r.allows(ip("10.66.1.2")));
        assert!(
            r.allows(ip("10.66.7.200")),
            "the /24 allow inside the /16 deny"
        );
        assert!(!r.allows(ip("10.66.8.1")));
        assert!(r.allows(ip("192.0.2.9")), "host allow inside a denied /24");
        assert!(!r.allows(ip("192.0.2.10")));
        assert!(r.allows(ip("2001:db8:2::1")));
        assert!(!r.allows(ip("2001:db8:1::1")));
        // An allow rule exists: what no rule matches is denied.
        assert!(!r.allows(ip("11.0.0.1")));
        assert!(!r.allows(ip("2001:db9::1")));
        // Families never mix: an IPv4 rule says nothing of IPv6 and the other way round.
        assert!(
            !r.allows(ip("::a00:1")),
            "::10.0.0.1 is IPv6 (compatible, not mapped)"
        );
    }

    #[test]
    fn ties_deny_and_odd_lengths_cover_exactly_their_range() {
        let r = rules(&["10.0.0.0/8"], &["10.0.0.0/8"]);
        assert!(!r.allows(ip("10.0.0.1")), "same prefix: deny wins");
        // A /13 covers 10.0.0.0-10.7.255.255; a /27 32 addresses.
        let r = rules(&[], &["10.0.0.0/13", "192.0.2.32/27", "2001:db8:8000::/33"]);
        assert!(!r.allows(ip("10.7.255.255")));
        assert!(r.allows(ip("10.8.0.0")));
        assert!(r.allows(ip("192.0.2.31")));
        assert!(!r.allows(ip("192.0.2.32")) && !r.allows(ip("192.0.2.63")));
        assert!(r.allows(ip("192.0.2.64")));
        assert!(!r.allows(ip("2001:db8:ffff::1")));
        assert!(r.allows(ip("2001:db8:7fff::1")));
        // /0 of one family, with a longer allow.
        let r = rules(&["2001:db8::/32"], &["::/0"]);
        assert!(r.allows(ip("2001:db8::1")));
        assert!(!r.allows(ip("2001:db9::1")));
        assert!(
            !r.allows(ip("192.0.2.1")),
            "an allow rule exists: unmatched IPv4 denied"
        );
    }

    /// The trie against the definition (longest match, deny on ties, unmatched denied when an
    /// allow rule exists) over random rules and addresses drawn near them by `addr`.
    fn check_against_linear_scan(addr: impl Fn(u64, u64) -> IpAddr, max_len: u64) {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for with_allow in [true, false] {
            let mut allow = Vec::new();
            let mut deny = Vec::new();
            for _ in 0..300 {
                let pre = Prefix::new(addr(next(), next()), (next() % (max_len + 1)) as u8);
                if with_allow && next() % 3 == 0 {
                    allow.push(pre.unwrap());
                } else {
                    deny.push(pre.unwrap());
                }
            }
            let r = AccessRules::new(&allow, &deny);
            for _ in 0..20_000 {
                let a = addr(next(), next());
                let best = allow
                    .iter()
                    .map(|p| (p.len(), false, p))
                    .chain(deny.iter().map(|p| (p.len(), true, p)))
                    .filter(|(_, _, p)| p.contains(a))
                    .max_by_key(|(len, deny, _)| (*len, *deny));
                let want = match best {
                    Some((_, deny, _)) => !deny,
                    None => allow.is_empty(),
                };
                assert_eq!(r.allows(a), want, "{a}");
            }
        }
    }

    #[test]
    fn matches_a_linear_scan_on_random_rules() {
        check_against_linear_scan(
            |x, _| IpAddr::V4(Ipv4Addr::from((x as u32) & 0xff0f_ffff)),
            32,
        );
        // IPv6: few distinct high bits so prefixes nest and overlap, lengths up to /128.
        check_against_linear_scan(
            |hi, lo| {
                let a = (u128::from(hi & 0x2001_0db8_0003_00ff) << 64) | u128::from(lo & 0xff0f);
                IpAddr::V6(Ipv6Addr::from(a))
            },
            128,
        );
    }
}
