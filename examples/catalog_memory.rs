//! Where the memory of a large catalog goes: reads a searches file, builds
//! the catalog and the matcher as `check` does, and prints the bytes live
//! after each step (counted by a global allocator that adds up what is
//! asked for, so malloc's own overhead is not in the figures) and per
//! search. BENCHMARKS.md ("A million searches, lean") cites its output.
//!
//! ```sh
//! cargo run --release --example catalog_memory -- searches.json
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use topic_matcher::engine::Matcher;
use topic_matcher::query::Limits;
use topic_matcher::searches::{Catalog, SearchesFile};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; only
// the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new) };
        if !q.is_null() {
            if new >= layout.size() {
                grew(new - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new, Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Prints the live bytes after `step` and the peak since the last step.
fn step(step: &str, searches: usize) {
    let (live, peak) = (LIVE.load(Relaxed), PEAK.load(Relaxed));
    println!(
        "{step:32} live {:>9.1} MB ({:>5} B per search)   peak during the step {:>9.1} MB",
        live as f64 / 1e6,
        live / searches.max(1),
        peak as f64 / 1e6
    );
    PEAK.store(live, Relaxed);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: catalog_memory SEARCHES.json")?;
    let bytes = std::fs::read(&path)?;
    let file: SearchesFile = serde_json::from_slice(&bytes)?;
    let n = file.topics.iter().map(|t| t.searches.len()).sum();
    step("file read and parsed", n);
    drop(bytes);
    step("file bytes dropped", n);
    let catalog = Catalog::from_file(&file, &Limits::default()).map_err(|e| e.render())?;
    step("catalog (parsed queries)", n);
    drop(file);
    step("parsed file dropped", n);
    let matcher = Matcher::new(&catalog)?;
    step("matcher compiled", n);
    drop(catalog);
    step("catalog dropped (matcher alone)", n);
    let s = matcher.stats();
    println!(
        "{} searches, {} leaves ({} distinct), {} terms; the matcher's own estimate: {:.1} MB",
        s.searches,
        s.leaves,
        s.distinct_leaves,
        s.terms,
        s.heap_bytes as f64 / 1e6
    );
    Ok(())
}
