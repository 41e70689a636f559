//! What each search costs: counted per search while matching, when asked.
//!
//! # Design
//!
//! A [`Scratch`](super::Scratch) with costs on keeps 16 bytes of counts
//! per search of its matcher and the list of searches touched since the
//! last [`CostCounters::take`], so that taking the counts visits only the
//! searches that were evaluated, not all of them. Counting adds a few
//! integer additions per *evaluated* search (candidates dropped by their
//! anchors or confirm groups cost nothing, since they cost nothing to
//! match either). The work units are those of the work budget (tokens,
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

/// The counts of one search between two takes, kept small (16 bytes, four
/// to a cache line): with 100,000 searches the array is 1.6 MB and each
/// evaluated candidate touches one entry. Sums saturate (the owner takes
/// them often: the service once a second).
#[derive(Clone, Copy, Default)]
struct Hot {
    evaluations: u32,
    matches: u32,
    work: u32,
    max_work: u32,
}

/// Per-search counters of one scratch (module doc).
pub(crate) struct CostCounters {
    hot: Vec<Hot>,
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

    /// An evaluation of search `s` begins: asks the CPU to bring its
    /// counts into cache while the search is evaluated (with 100,000
    /// searches the counters, 1.6 MB, do not stay in cache, and
    /// [`CostCounters::record`] would wait for the miss after the
    /// evaluation); returns the clock reading, on timed documents.
    #[inline]
    pub(crate) fn start(&self, s: u32) -> Option<Instant> {
        if let Some(h) = self.hot.get(s as usize) {
            super::prefetch(h);
        }
        self.timing.then(Instant::now)
    }

    /// One evaluation of search `s`: its work, whether it matched, and the
    /// clock reading [`CostCounters::start`] gave.
    #[inline]
    pub(crate) fn record(&mut self, s: u32, work: u64, matched: bool, started: Option<Instant>) {
        let h = &mut self.hot[s as usize];
        if h.evaluations == 0 {
            self.touched.push(s);
        }
        let work = u32::try_from(work).unwrap_or(u32::MAX);
        h.evaluations = h.evaluations.saturating_add(1);
        h.matches += u32::from(matched);
        h.work = h.work.saturating_add(work);
        h.max_work = h.max_work.max(work);
        if let Some(t) = started {
            let timed = &mut self.timed[s as usize];
            timed.0 += 1;
            timed.1 += t.elapsed().as_nanos() as u64;
        }
    }

    /// Calls `f` with every search evaluated since the last take and its
    /// counts, resets them, and returns the documents counted.
    pub(crate) fn take(&mut self, mut f: impl FnMut(SearchIdx, &SearchCost)) -> u64 {
        for &s in &self.touched {
            let h = std::mem::take(&mut self.hot[s as usize]);
            let (timed_evaluations, timed_nanos) = std::mem::take(&mut self.timed[s as usize]);
            f(
                SearchIdx(s),
                &SearchCost {
                    evaluations: u64::from(h.evaluations),
                    matches: u64::from(h.matches),
                    work: u64::from(h.work),
                    max_work: u64::from(h.max_work),
                    timed_evaluations: u64::from(timed_evaluations),
                    timed_nanos,
                },
            );
        }
        self.touched.clear();
        std::mem::take(&mut self.documents)
    }
}
