//! What each search costs: counted per search while matching, when asked.
//!
//! # Design
//!
//! A [`Scratch`](super::Scratch) with costs on keeps counts per search of
//! its matcher and the list of searches touched since the last
//! [`CostCounters::take`], so that taking the counts visits only the
//! searches that were evaluated, not all of them. Counting adds a few
//! integer additions per *evaluated* search (candidates dropped by their
//! anchors or confirm groups cost nothing, since they cost nothing to
//! match either). At 100,000 searches and 77 evaluations per post the
//! counters' cache misses are what counting costs, so what every
//! evaluation touches is kept to 10 bytes per search in two arrays
//! (evaluations and work; the largest evaluation up to 65,535 units,
//! larger ones logged exactly on the side), and matches are in an array
//! only matching evaluations touch (16 bytes per search touched by every
//! evaluation cost 3.5%). The work units are those of the work budget (tokens,
//! occurrences and spans visited, window steps): deterministic, so two runs
//! rank searches alike. Wall time is sampled: on one document in
//! `sample_every`, each evaluation is timed with the monotonic clock (two
//! clock reads per evaluated search on that document only).
//!
//! The owner of the scratch takes the counts when it likes (the service
//! once a second and before a new searches version replaces the scratch;
//! `check --cost` at the end) and adds them up by search id
//! (ids survive versions; indices do not).

use std::time::Instant;

use crate::searches::SearchIdx;

/// What one search cost over the documents counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SearchCost {
    /// Times it was evaluated (a candidate that passed its anchors, confirm
    /// groups and filters).
    pub evaluations: u64,
    /// Of those, the ones that matched.
    pub matches: u64,
    /// Work units its evaluations spent.
    pub work: u64,
    /// The most work units one evaluation spent.
    pub max_work: u64,
    /// Evaluations that were timed (sampled documents).
    pub timed_evaluations: u64,
    /// Their wall time in nanoseconds.
    pub timed_nanos: u64,
}

impl SearchCost {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &SearchCost) {
        self.evaluations += other.evaluations;
        self.matches += other.matches;
        self.work += other.work;
        self.max_work = self.max_work.max(other.max_work);
        self.timed_evaluations += other.timed_evaluations;
        self.timed_nanos += other.timed_nanos;
    }

    /// Mean wall time of a timed evaluation, in nanoseconds (0 when none
    /// was timed).
    pub fn mean_nanos(&self) -> u64 {
        self.timed_nanos
            .checked_div(self.timed_evaluations)
            .unwrap_or(0)
    }

    /// Estimated wall time of all its evaluations, in nanoseconds: the
    /// timed mean times the evaluations (0 while none was timed).
    pub fn estimated_nanos(&self) -> u64 {
        self.mean_nanos().saturating_mul(self.evaluations)
    }
}

/// The counts every evaluation updates, kept small (8 bytes, eight to a
/// cache line): with 100,000 searches the array is 800 KB and each
/// evaluated candidate touches one entry, so what is counted per
/// evaluation is split by how often it is touched (module doc). Sums
/// saturate (the owner takes them often: the service once a second).
#[derive(Clone, Copy, Default)]
struct Hot {
    evaluations: u32,
    work: u32,
}

/// Per-search counters of one scratch (module doc).
pub(crate) struct CostCounters {
    hot: Vec<Hot>,
    /// Matches per search: touched by the evaluations that match.
    matches: Vec<u32>,
    /// The most work of one evaluation per search, up to `u16::MAX`
    /// (2 bytes: the array touched by every evaluation stays small);
    /// evaluations of more are logged in `large` with their exact work.
    max_work: Vec<u16>,
    /// (search, work) of the evaluations of at least `u16::MAX` units
    /// since the last take (rare: a tenth of a millisecond or more each).
    large: Vec<(u32, u32)>,
    /// (timed evaluations, nanoseconds) per search, touched on timed
    /// documents only.
    timed: Vec<(u32, u64)>,
    touched: Vec<u32>,
    sample_every: u32,
    /// Documents counted since the last take.
    documents: u64,
    /// Whether the current document is timed.
    timing: bool,
}

impl CostCounters {
    pub(crate) fn new(searches: usize, sample_every: u32) -> CostCounters {
        CostCounters {
            hot: vec![Hot::default(); searches],
            matches: vec![0; searches],
            max_work: vec![0; searches],
            large: Vec::new(),
            timed: vec![(0, 0); searches],
            touched: Vec::new(),
            sample_every: sample_every.max(1),
            documents: 0,
            timing: false,
        }
    }

    /// A document begins; says whether its evaluations are timed.
    #[inline]
    pub(crate) fn begin_document(&mut self) {
        self.timing = self.documents.is_multiple_of(u64::from(self.sample_every));
        self.documents += 1;
    }

    /// The clock reading before an evaluation, on timed documents.
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        self.timing.then(Instant::now)
    }

    /// One evaluation of search `s`: its work, whether it matched, and the
    /// clock reading [`CostCounters::start`] gave.
    #[inline]
    pub(crate) fn record(&mut self, s: u32, work: u64, matched: bool, started: Option<Instant>) {
        let i = s as usize;
        let h = &mut self.hot[i];
        if h.evaluations == 0 {
            self.touched.push(s);
        }
        let work = u32::try_from(work).unwrap_or(u32::MAX);
        h.evaluations = h.evaluations.saturating_add(1);
        h.work = h.work.saturating_add(work);
        let small = u16::try_from(work).unwrap_or(u16::MAX);
        if small > self.max_work[i] {
            self.max_work[i] = small;
            if small == u16::MAX {
                self.large.push((s, work));
            }
        } else if small == u16::MAX {
            self.large.push((s, work));
        }
        if matched {
            self.matches[i] += 1;
        }
        if let Some(t) = started {
            let timed = &mut self.timed[i];
            timed.0 += 1;
            timed.1 += t.elapsed().as_nanos() as u64;
        }
    }

    /// Calls `f` with every search evaluated since the last take and its
    /// counts, resets them, and returns the documents counted.
    pub(crate) fn take(&mut self, mut f: impl FnMut(SearchIdx, &SearchCost)) -> u64 {
        let mut large: rustc_hash::FxHashMap<u32, u32> = rustc_hash::FxHashMap::default();
        for &(s, work) in &self.large {
            let m = large.entry(s).or_default();
            *m = (*m).max(work);
        }
        self.large.clear();
        for &s in &self.touched {
            let i = s as usize;
            let h = std::mem::take(&mut self.hot[i]);
            let (timed_evaluations, timed_nanos) = std::mem::take(&mut self.timed[i]);
            let max_work = large
                .get(&s)
                .copied()
                .unwrap_or(u32::from(std::mem::take(&mut self.max_work[i])));
            self.max_work[i] = 0;
            f(
                SearchIdx(s),
                &SearchCost {
                    evaluations: u64::from(h.evaluations),
                    matches: u64::from(std::mem::take(&mut self.matches[i])),
                    work: u64::from(h.work),
                    max_work: u64::from(max_work),
                    timed_evaluations: u64::from(timed_evaluations),
                    timed_nanos,
                },
            );
        }
        self.touched.clear();
        std::mem::take(&mut self.documents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(c: &mut CostCounters) -> Vec<(u32, SearchCost)> {
        let mut out = Vec::new();
        c.take(|s, cost| out.push((s.0, *cost)));
        out.sort_by_key(|(s, _)| *s);
        out
    }

    #[test]
    fn counts_add_up_and_the_largest_evaluation_is_exact_beyond_u16() {
        let mut c = CostCounters::new(3, 1_000_000);
        c.begin_document();
        c.record(0, 10, true, None);
        c.record(0, 70_000, false, None);
        c.record(0, 20, true, None);
        c.record(2, 65_535, false, None);
        c.record(2, 65_534, true, None);
        let got = taken(&mut c);
        assert_eq!(got.len(), 2, "search 1 was not evaluated");
        assert_eq!(
            got[0].1,
            SearchCost {
                evaluations: 3,
                matches: 2,
                work: 70_030,
                max_work: 70_000,
                timed_evaluations: 0,
                timed_nanos: 0,
            }
        );
        assert_eq!((got[1].1.max_work, got[1].1.matches), (65_535, 1));
        // Taken means reset: the next take sees only what came after.
        c.begin_document();
        c.record(0, 7, false, None);
        let got = taken(&mut c);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].1.evaluations, got[0].1.max_work, got[0].1.matches),
            (1, 7, 0)
        );
    }
}
