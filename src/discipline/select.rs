//! Source selection (RFC 5905 §11.2): intersection, clustering and combining.
//!
//! 1. [`intersect`]: every candidate claims the true offset lies in
//!    `[offset − root distance, offset + root distance]`. Marzullo's algorithm finds the
//!    sub-interval contained in the most claims. In RFC 5905 terms it allows `f` falsetickers,
//!    `f = 0, 1, …` while `2f < n`, and stops at the first `f` for which some interval is
//!    contained in `n − f` claims; that is the same as asking that the deepest overlap holds a
//!    strict majority. The candidates whose interval contains that intersection are the
//!    truechimers, the rest falsetickers. (Like chrony, and unlike the RFC's reference code,
//!    the midpoints are not required to fall inside the intersection.)
//! 2. [`cluster`]: while more than `min_survivors` truechimers remain, the one with the largest
//!    selection jitter (RMS distance of the others' offsets to its own) is dropped as an
//!    outlier, unless that jitter is already below the smallest peer jitter, at which point
//!    dropping more could not improve anything.
//! 3. [`combine`]: the survivors' offsets are averaged with weights `1 / root distance`; the
//!    system peer is the `prefer` survivor, or else the survivor with the least root distance.
//!    When any survivor is marked `prefer`, only the `prefer` survivors are averaged (as chrony
//!    does). The leap indicator is the one announced by a majority of the survivors.

use crate::proto::Leap;

/// Root distances below this (seconds) are raised to it when weighting, so that a source
/// claiming zero distance cannot take all the weight.
pub const MIN_WEIGHT_DISTANCE: f64 = 1e-6;

/// One source as selection sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Offset of the source relative to the local raw clock, projected to the selection
    /// instant, seconds.
    pub offset: f64,
    /// Root distance (half-width of the correctness interval), seconds (> 0).
    pub root_distance: f64,
    /// The source's filter jitter, seconds.
    pub jitter: f64,
    /// The source's stratum (1..=15).
    pub stratum: u8,
    /// The leap indicator the source announces.
    pub leap: Leap,
    /// Configured `prefer`.
    pub prefer: bool,
}

/// What selection concluded about one candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The system peer.
    SystemPeer,
    /// A survivor combined into the system offset.
    Combined,
    /// A survivor not combined (a `prefer` survivor exists and this one is not `prefer`).
    Survivor,
    /// A truechimer dropped by clustering.
    Outlier,
    /// Outside the majority's intersection.
    Falseticker,
}

/// Selection parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectParams {
    /// Minimum number of agreeing sources (truechimers) needed to select at all
    /// (`min-sources`, default 1).
    pub min_sources: usize,
    /// Clustering stops at this many survivors (RFC 5905 NMIN, default 3).
    pub min_survivors: usize,
}

impl Default for SelectParams {
    fn default() -> Self {
        SelectParams {
            min_sources: 1,
            min_survivors: 3,
        }
    }
}

/// Why nothing was selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// No candidates.
    NoCandidates,
    /// No interval is contained in a strict majority of the candidates' intervals.
    NoMajority {
        /// The deepest overlap found.
        agreeing: usize,
        /// Number of candidates.
        candidates: usize,
    },
    /// A majority agrees but has fewer members than `min_sources`.
    TooFewAgreeing {
        /// Number of truechimers.
        agreeing: usize,
        /// `min_sources`.
        required: usize,
    },
}

/// Result of the intersection algorithm.
#[derive(Clone, Debug, PartialEq)]
pub struct Intersection {
    /// Lower end of the intersection interval, seconds.
    pub lo: f64,
    /// Upper end of the intersection interval, seconds.
    pub hi: f64,
    /// Indices (into the candidate slice) of the truechimers, ascending.
    pub truechimers: Vec<usize>,
}

/// Marzullo's intersection over `[offset − root distance, offset + root distance]`. Returns the
/// intersection and the truechimers when a strict majority of the candidates agree.
pub fn intersect(cands: &[Candidate]) -> Result<Intersection, SelectError> {
    let n = cands.len();
    if n == 0 {
        return Err(SelectError::NoCandidates);
    }
    // (value, +1 for a lower end, -1 for an upper end); at equal values lower ends first, so
    // intervals that merely touch still count as overlapping.
    let mut ends: Vec<(f64, i32)> = Vec::with_capacity(2 * n);
    for c in cands {
        let d = c.root_distance.abs();
        ends.push((c.offset - d, 1));
        ends.push((c.offset + d, -1));
    }
    ends.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let (mut depth, mut best, mut lo, mut hi) = (0i32, 0i32, 0.0, 0.0);
    for (i, &(v, kind)) in ends.iter().enumerate() {
        depth += kind;
        if kind > 0 && depth > best {
            best = depth;
            lo = v;
            // Every lower end is followed by some upper end, so i + 1 exists.
            hi = ends[i + 1].0;
        }
    }
    let agreeing = best as usize;
    // Allowing f = n - agreeing falsetickers must leave a majority: 2f < n.
    if 2 * (n - agreeing) >= n {
        return Err(SelectError::NoMajority {
            agreeing,
            candidates: n,
        });
    }
    let truechimers = cands
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let d = c.root_distance.abs();
            c.offset - d <= lo && c.offset + d >= hi
        })
        .map(|(i, _)| i)
        .collect();
    Ok(Intersection {
        lo,
        hi,
        truechimers,
    })
}

/// Selection jitter of member `i` of `set`: RMS of the others' offsets relative to its own.
fn selection_jitter(cands: &[Candidate], set: &[usize], i: usize) -> f64 {
    if set.len() < 2 {
        return 0.0;
    }
    let own = cands[i].offset;
    let sum: f64 = set.iter().map(|&j| (cands[j].offset - own).powi(2)).sum();
    (sum / (set.len() - 1) as f64).sqrt()
}

/// RFC 5905 clustering: returns `(survivors, outliers)` (indices into `cands`). Survivors are
/// ordered by increasing root distance.
pub fn cluster(
    cands: &[Candidate],
    truechimers: &[usize],
    min_survivors: usize,
) -> (Vec<usize>, Vec<usize>) {
    let mut survivors = truechimers.to_vec();
    survivors.sort_by(|&a, &b| cands[a].root_distance.total_cmp(&cands[b].root_distance));
    let mut outliers = Vec::new();
    while survivors.len() > min_survivors.max(1) {
        let (worst_pos, worst_jitter) = survivors
            .iter()
            .enumerate()
            .map(|(p, &i)| (p, selection_jitter(cands, &survivors, i)))
            .fold(
                (0, f64::NEG_INFINITY),
                |acc, x| if x.1 > acc.1 { x } else { acc },
            );
        let min_peer_jitter = survivors
            .iter()
            .map(|&i| cands[i].jitter)
            .fold(f64::INFINITY, f64::min);
        if worst_jitter < min_peer_jitter {
            break;
        }
        outliers.push(survivors.remove(worst_pos));
    }
    outliers.sort_unstable();
    (survivors, outliers)
}

/// The combined system values.
#[derive(Clone, Debug, PartialEq)]
pub struct Combined {
    /// Weighted mean offset of the combined survivors, seconds.
    pub offset: f64,
    /// Index of the system peer.
    pub system_peer: usize,
    /// Indices actually averaged (all survivors, or the `prefer` ones when there are any).
    pub combined: Vec<usize>,
    /// Weighted RMS of the combined offsets relative to the system peer's, seconds.
    pub selection_jitter: f64,
    /// System jitter: `sqrt(peer jitter² + selection jitter²)`, seconds.
    pub jitter: f64,
    /// The leap indicator announced by a strict majority of survivors, else no warning.
    pub leap: Leap,
}

/// Weight of a candidate in the average: `1 / root distance`.
pub fn weight(c: &Candidate) -> f64 {
    1.0 / c.root_distance.abs().max(MIN_WEIGHT_DISTANCE)
}

/// Combines the survivors (non-empty, indices into `cands`).
pub fn combine(cands: &[Candidate], survivors: &[usize]) -> Combined {
    assert!(!survivors.is_empty(), "combine needs at least one survivor");
    let prefer: Vec<usize> = survivors
        .iter()
        .copied()
        .filter(|&i| cands[i].prefer)
        .collect();
    let combined = if prefer.is_empty() {
        survivors.to_vec()
    } else {
        prefer
    };
    let by_distance = |&a: &usize, &b: &usize| {
        cands[a]
            .root_distance
            .total_cmp(&cands[b].root_distance)
            .then(a.cmp(&b))
    };
    let system_peer = combined
        .iter()
        .copied()
        .min_by(by_distance)
        .expect("non-empty");
    let (mut sw, mut swo) = (0.0, 0.0);
    for &i in &combined {
        let w = weight(&cands[i]);
        sw += w;
        swo += w * cands[i].offset;
    }
    let offset = swo / sw;
    let peer_offset = cands[system_peer].offset;
    let sj = (combined
        .iter()
        .map(|&i| weight(&cands[i]) * (cands[i].offset - peer_offset).powi(2))
        .sum::<f64>()
        / sw)
        .sqrt();
    let jitter = (cands[system_peer].jitter.powi(2) + sj.powi(2)).sqrt();
    Combined {
        offset,
        system_peer,
        combined,
        selection_jitter: sj,
        jitter,
        leap: leap_majority(survivors.iter().map(|&i| cands[i].leap)),
    }
}

/// The leap indicator announced by a strict majority, or [`Leap::NoWarning`].
pub fn leap_majority(leaps: impl Iterator<Item = Leap>) -> Leap {
    let (mut n, mut add, mut del) = (0usize, 0usize, 0usize);
    for l in leaps {
        n += 1;
        match l {
            Leap::AddSecond => add += 1,
            Leap::DelSecond => del += 1,
            _ => {}
        }
    }
    if 2 * add > n {
        Leap::AddSecond
    } else if 2 * del > n {
        Leap::DelSecond
    } else {
        Leap::NoWarning
    }
}

/// A complete selection.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// One verdict per candidate, in candidate order.
    pub verdicts: Vec<Verdict>,
    /// The intersection interval `(lo, hi)`, seconds.
    pub interval: (f64, f64),
    /// The combined values.
    pub combined: Combined,
}

/// Intersection, clustering and combining in one call.
pub fn select(cands: &[Candidate], params: &SelectParams) -> Result<Selection, SelectError> {
    let inter = intersect(cands)?;
    if inter.truechimers.len() < params.min_sources.max(1) {
        return Err(SelectError::TooFewAgreeing {
            agreeing: inter.truechimers.len(),
            required: params.min_sources.max(1),
        });
    }
    let (survivors, outliers) = cluster(cands, &inter.truechimers, params.min_survivors);
    let combined = combine(cands, &survivors);
    let mut verdicts = vec![Verdict::Falseticker; cands.len()];
    for &i in &outliers {
        verdicts[i] = Verdict::Outlier;
    }
    for &i in &survivors {
        verdicts[i] = Verdict::Survivor;
    }
    for &i in &combined.combined {
        verdicts[i] = Verdict::Combined;
    }
    verdicts[combined.system_peer] = Verdict::SystemPeer;
    Ok(Selection {
        verdicts,
        interval: (inter.lo, inter.hi),
        combined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(offset: f64, root_distance: f64) -> Candidate {
        Candidate {
            offset,
            root_distance,
            jitter: 1e-3,
            stratum: 2,
            leap: Leap::NoWarning,
            prefer: false,
        }
    }

    #[test]
    fn three_agree_one_far_off_is_a_falseticker() {
        let cands = [
            c(0.2005, 0.020),
            c(-3.0, 0.020),
            c(0.1995, 0.030),
            c(0.2000, 0.025),
        ];
        let sel = select(&cands, &SelectParams::default()).unwrap();
        assert_eq!(sel.verdicts[1], Verdict::Falseticker);
        for i in [0, 2, 3] {
            assert_ne!(sel.verdicts[i], Verdict::Falseticker);
        }
        assert_eq!(sel.verdicts[0], Verdict::SystemPeer);
        assert!(
            (sel.combined.offset - 0.2).abs() < 1e-3,
            "{}",
            sel.combined.offset
        );
        // The intersection lies where all three good intervals overlap.
        assert!(sel.interval.0 <= 0.2 && sel.interval.1 >= 0.2);
    }

    #[test]
    fn two_disjoint_pairs_have_no_majority() {
        let cands = [c(0.0, 0.01), c(0.001, 0.01), c(1.0, 0.01), c(1.001, 0.01)];
        assert_eq!(
            select(&cands, &SelectParams::default()),
            Err(SelectError::NoMajority {
                agreeing: 2,
                candidates: 4
            })
        );
    }

    #[test]
    fn two_disagreeing_sources_have_no_majority() {
        let cands = [c(0.0, 0.01), c(1.0, 0.01)];
        assert!(matches!(
            intersect(&cands),
            Err(SelectError::NoMajority { agreeing: 1, .. })
        ));
    }

    #[test]
    fn nested_and_overlapping_intervals() {
        // A wide interval containing two narrow overlapping ones, and one overlapping only the
        // wide one.
        let cands = [
            c(0.0, 1.0),   // [-1, 1]
            c(0.1, 0.05),  // [0.05, 0.15]
            c(0.12, 0.05), // [0.07, 0.17]
            c(0.9, 0.05),  // [0.85, 0.95]
        ];
        let inter = intersect(&cands).unwrap();
        assert_eq!(inter.truechimers, vec![0, 1, 2]);
        assert!((inter.lo - 0.07).abs() < 1e-12);
        assert!((inter.hi - 0.15).abs() < 1e-12);
        let sel = select(&cands, &SelectParams::default()).unwrap();
        assert_eq!(sel.verdicts[3], Verdict::Falseticker);
        // Weighted toward the narrow ones.
        assert!(sel.combined.offset > 0.09 && sel.combined.offset < 0.12);
    }

    #[test]
    fn touching_intervals_overlap() {
        let cands = [c(0.0, 0.5), c(1.0, 0.5), c(0.5, 0.01)];
        let inter = intersect(&cands).unwrap();
        assert_eq!(inter.truechimers, vec![0, 1, 2]);
        assert_eq!((inter.lo, inter.hi), (0.5, 0.5));
    }

    #[test]
    fn all_identical_sources() {
        let cands = [c(0.25, 0.01); 5];
        let sel = select(&cands, &SelectParams::default()).unwrap();
        // Clustering never drops identical sources: their selection jitter is zero.
        assert!(sel
            .verdicts
            .iter()
            .all(|v| matches!(v, Verdict::SystemPeer | Verdict::Combined)));
        assert!((sel.combined.offset - 0.25).abs() < 1e-15);
        assert_eq!(sel.combined.selection_jitter, 0.0);
        assert_eq!(sel.combined.system_peer, 0);
    }

    #[test]
    fn single_source() {
        let cands = [c(-0.05, 0.02)];
        let sel = select(&cands, &SelectParams::default()).unwrap();
        assert_eq!(sel.verdicts, vec![Verdict::SystemPeer]);
        assert_eq!(sel.combined.offset, -0.05);
        assert!((sel.combined.jitter - 1e-3).abs() < 1e-15);
        // min-sources 2 refuses a lone source.
        let strict = SelectParams {
            min_sources: 2,
            ..SelectParams::default()
        };
        assert_eq!(
            select(&cands, &strict),
            Err(SelectError::TooFewAgreeing {
                agreeing: 1,
                required: 2
            })
        );
        assert_eq!(select(&[], &strict), Err(SelectError::NoCandidates));
    }

    #[test]
    fn half_the_root_distance_gets_twice_the_weight() {
        // Offsets 0 and 0.003; distances 0.01 and 0.02: weights 2:1, mean 0.001.
        let cands = [c(0.0, 0.01), c(0.003, 0.02)];
        let comb = combine(&cands, &[0, 1]);
        assert!((comb.offset - 0.001).abs() < 1e-12, "{}", comb.offset);
        assert_eq!(comb.system_peer, 0);
        assert!((weight(&cands[0]) / weight(&cands[1]) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn prefer_picks_the_system_peer_and_the_average() {
        let mut cands = [c(0.0, 0.01), c(0.003, 0.02), c(0.004, 0.03)];
        cands[2].prefer = true;
        let sel = select(&cands, &SelectParams::default()).unwrap();
        assert_eq!(sel.combined.system_peer, 2);
        assert_eq!(sel.combined.offset, 0.004);
        assert_eq!(
            sel.verdicts,
            vec![Verdict::Survivor, Verdict::Survivor, Verdict::SystemPeer]
        );
    }

    #[test]
    fn clustering_drops_the_worst_until_min_survivors() {
        // Five truechimers (wide intervals), one far from the others' cluster.
        let mut cands: Vec<Candidate> = [0.0, 0.0002, -0.0001, 0.0001, 0.04]
            .iter()
            .map(|&o| c(o, 0.5))
            .collect();
        for x in cands.iter_mut() {
            x.jitter = 1e-4;
        }
        let params = SelectParams {
            min_sources: 1,
            min_survivors: 3,
        };
        let sel = select(&cands, &params).unwrap();
        assert_eq!(sel.verdicts[4], Verdict::Outlier);
        let outliers = sel
            .verdicts
            .iter()
            .filter(|v| **v == Verdict::Outlier)
            .count();
        assert!((1..=2).contains(&outliers));
        assert!(sel.combined.offset.abs() < 2e-4);
        // Large peer jitter: nothing to gain from clustering, nothing dropped.
        for x in cands.iter_mut() {
            x.jitter = 0.1;
        }
        let sel = select(&cands, &params).unwrap();
        assert!(!sel.verdicts.contains(&Verdict::Outlier));
    }

    #[test]
    fn leap_by_majority() {
        use Leap::*;
        assert_eq!(
            leap_majority([AddSecond, AddSecond, NoWarning].into_iter()),
            AddSecond
        );
        assert_eq!(
            leap_majority([AddSecond, NoWarning, NoWarning].into_iter()),
            NoWarning
        );
        assert_eq!(leap_majority([AddSecond, DelSecond].into_iter()), NoWarning);
        assert_eq!(leap_majority([DelSecond].into_iter()), DelSecond);
        let mut cands = [c(0.0, 0.01), c(0.0, 0.01), c(0.0, 0.01)];
        cands[0].leap = AddSecond;
        cands[2].leap = AddSecond;
        assert_eq!(
            select(&cands, &SelectParams::default())
                .unwrap()
                .combined
                .leap,
            AddSecond
        );
    }
}
