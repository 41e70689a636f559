//! What each search costs in the running service: `GET /searches/cost` and
//! the slow-search log (docs/operations.md §6).
//!
//! # Design
//!
//! The pipeline's scratch counts per search (engine `cost` module: the
//! evaluations, matches and work units, and the wall time of every
//! evaluation on one document in [`SAMPLE_EVERY`]). Once a second, and
//! before a new searches version replaces the scratch, the pipeline moves
//! those counts into the [`CostBook`] under the search's id, so that a
//! search keeps its history across versions. The book is only touched
//! there and by `/searches/cost`: matching itself never takes its lock.
//!
//! Bounded: at most [`MAX_SEARCHES`] ids are kept (more are counted in
//! `searches_dropped`), far more than a catalog holds. A search with an
//! evaluation past `limits.slow_search_work` is logged (warn, with its id,
//! topic and work) at most once a minute per search; `slow_searches` counts
//! every such search seen.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::reload::{Active, ActiveScratch};
use crate::engine::SearchCost;

/// One document in this many has each of its evaluations timed.
pub const SAMPLE_EVERY: u32 = 64;

/// Most search ids the book keeps.
pub const MAX_SEARCHES: usize = 2_000_000;

/// How often one slow search is logged at most.
const SLOW_LOG_EVERY: Duration = Duration::from_secs(60);

/// What each search cost since the service started, by search id.
#[derive(Default)]
pub struct CostBook {
    inner: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    documents: u64,
    searches: HashMap<String, Entry>,
    dropped: u64,
    slow_searches: u64,
}

impl Book {
    /// Adds what `search` (of `topic`) cost; logs it when one evaluation
    /// spent more than `slow_work`.
    fn add(&mut self, search: &str, topic: &str, cost: &SearchCost, slow_work: u64, now: Instant) {
        if !self.searches.contains_key(search) && self.searches.len() >= MAX_SEARCHES {
            self.dropped += 1;
            return;
        }
        let e = self
            .searches
            .entry(search.to_string())
            .or_insert_with(|| Entry {
                topic: topic.to_string(),
                cost: SearchCost::default(),
                slow_logged: None,
            });
        topic.clone_into(&mut e.topic);
        e.cost.add(cost);
        if cost.max_work <= slow_work {
            return;
        }
        if e.slow_logged.is_none() {
            self.slow_searches += 1;
        }
        if e.slow_logged
            .is_none_or(|t| now.duration_since(t) >= SLOW_LOG_EVERY)
        {
            e.slow_logged = Some(now);
            tracing::warn!(
                search,
                topic,
                work = cost.max_work,
                slow_search_work = slow_work,
                evaluations = cost.evaluations,
                "slow search: one evaluation spent more work than limits.slow_search_work"
            );
        }
    }
}

struct Entry {
    topic: String,
    cost: SearchCost,
    slow_logged: Option<Instant>,
}

impl CostBook {
    /// Moves the counts of `scratch` (matching with `active`) into the
    /// book, logging the searches with an evaluation past `slow_work`.
    pub fn collect(&self, active: &Active, scratch: &mut ActiveScratch, slow_work: u64) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let documents = active.take_costs(scratch, |search, topic, cost| {
            b.add(search, topic, cost, slow_work, now);
        });
        b.documents += documents;
    }

    /// `/searches/cost`: the `top` searches by work (the deterministic cost
    /// measure; the sampled time is beside it) and by matches, with the
    /// totals.
    pub fn top_json(&self, top: usize) -> serde_json::Value {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .top_json(top)
    }
}

impl Book {
    fn top_json(&self, top: usize) -> serde_json::Value {
        let ranked = |key: fn(&SearchCost) -> (u64, u64)| -> Vec<serde_json::Value> {
            let mut v: Vec<(&String, &Entry)> = self.searches.iter().collect();
            let top = top.min(v.len());
            if top == 0 {
                return Vec::new();
            }
            // Largest first; ties by id, so the list is stable.
            let order = |a: &(&String, &Entry), z: &(&String, &Entry)| {
                key(&z.1.cost)
                    .cmp(&key(&a.1.cost))
                    .then_with(|| a.0.cmp(z.0))
            };
            v.select_nth_unstable_by(top - 1, order);
            v.truncate(top);
            v.sort_unstable_by(order);
            v.into_iter().map(|(id, e)| entry_json(id, e)).collect()
        };
        serde_json::json!({
            "documents": self.documents,
            "searches_counted": self.searches.len(),
            "searches_dropped": self.dropped,
            "slow_searches": self.slow_searches,
            "sample_every": SAMPLE_EVERY,
            "by_cost": ranked(|c| (c.work, c.evaluations)),
            "by_matches": ranked(|c| (c.matches, c.evaluations)),
        })
    }
}

fn entry_json(id: &str, e: &Entry) -> serde_json::Value {
    let c = &e.cost;
    serde_json::json!({
        "search": id,
        "topic": e.topic,
        "evaluations": c.evaluations,
        "matches": c.matches,
        "work": c.work,
        "max_work": c.max_work,
        "timed_evaluations": c.timed_evaluations,
        "mean_evaluation_us": c.mean_nanos() as f64 / 1e3,
        "estimated_seconds": c.estimated_nanos() as f64 / 1e9,
        "slow": e.slow_logged.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(evaluations: u64, matches: u64, work: u64, max_work: u64) -> SearchCost {
        SearchCost {
            evaluations,
            matches,
            work,
            max_work,
            timed_evaluations: 1,
            timed_nanos: 2_000,
        }
    }

    #[test]
    fn searches_add_up_by_id_rank_by_work_and_matches_and_slow_ones_count_once() {
        let mut b = Book::default();
        let now = Instant::now();
        b.add("a", "t1", &cost(10, 1, 500, 90), 100, now);
        b.add("b", "t1", &cost(5, 5, 50, 10), 100, now);
        // Under a new version `a` moved to another topic: one entry, the
        // newest topic.
        b.add("a", "t2", &cost(10, 2, 600, 150), 100, now);
        b.add("a", "t2", &cost(1, 0, 200, 200), 100, now);
        b.add("c", "t3", &cost(1, 0, 20, 20), 100, now);
        let j = b.top_json(2);
        let ids = |k: &str| -> Vec<String> {
            j[k].as_array()
                .unwrap()
                .iter()
                .map(|e| e["search"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids("by_cost"), ["a", "b"]);
        assert_eq!(ids("by_matches"), ["b", "a"]);
        let a = &j["by_cost"][0];
        assert_eq!(a["topic"], "t2");
        assert_eq!(
            (
                a["evaluations"].as_u64(),
                a["work"].as_u64(),
                a["max_work"].as_u64()
            ),
            (Some(21), Some(1300), Some(200))
        );
        assert_eq!(a["slow"], true);
        assert_eq!(j["by_cost"][1]["slow"], false);
        // `a` was slow twice: one slow search.
        assert_eq!(j["slow_searches"], 1);
        assert_eq!(j["searches_counted"], 3);
        assert_eq!(b.top_json(0)["by_cost"].as_array().map(Vec::len), Some(0));
        assert_eq!(b.top_json(50)["by_cost"].as_array().map(Vec::len), Some(3));
    }
}
