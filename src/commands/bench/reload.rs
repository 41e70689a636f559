//! `bench --reload`: what a searches change costs with many searches
//! loaded (docs/operations.md §5.6). Runs the service's own reload path
//! ([`SearchVersions`](crate::service::reload::SearchVersions), RocksDB versions
//! included) in process and measures:
//!
//! 1. **Start**: reading, validating, compiling and storing N searches.
//! 2. **One-search change → first match**: from submitting a document with
//!    one search added until a document containing only that search's term
//!    is matched by it. (In the service the pipeline picks the new version
//!    up at its next batch boundary, at most `batch_max_wait` later.)
//! 3. **Full reload**: a different set of N searches.
//! 4. **Batch latency during a reload**: one thread matches batches of
//!    documents continuously (as the pipeline does) while full reloads
//!    compile on the reload thread; p99 batch latency during reloads ÷ p99
//!    in the same run without one. Both cores are shared, as in the service.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::commands::Outcome;
use crate::config::SearchesConfig;
use crate::document::Document;
use crate::service::reload::SearchVersions;
use crate::state_store::StateStore;
use crate::workload;

/// Options of `bench --reload`.
#[derive(Clone, Debug)]
pub struct ReloadBenchOptions {
    /// Searches loaded.
    pub searches: usize,
    /// Seed of the generator.
    pub seed: u64,
    /// Repetitions of the one-search change.
    pub repeats: usize,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Adds a topic with one search for a term no generated document holds.
fn with_extra_search(json: &str, i: usize) -> (Vec<u8>, String) {
    let mut v: serde_json::Value = serde_json::from_str(json).expect("generated JSON");
    let term = format!("zqxbenchterm{i}");
    v["topics"]
        .as_array_mut()
        .expect("topics")
        .push(serde_json::json!({
            "id": format!("bench-extra-{i}"),
            "searches": [{"id": format!("bench-extra-{i}-s"), "query": term}]
        }));
    (v.to_string().into_bytes(), term)
}

/// Whether the active version matches the JSON document `probe` to
/// `topic`.
fn matches_topic(searches: &SearchVersions, probe: &str, topic: &str) -> anyhow::Result<bool> {
    let active = searches.current();
    let d = Document::parse(probe.as_bytes(), 1 << 20).expect("probe parses");
    let mut scratch = active.scratch();
    let mut hit = false;
    active.for_each_match(&d, &mut scratch, |matcher, m| {
        hit |= matcher.topic_id(m.topic) == topic;
    })?;
    Ok(hit)
}

/// Runs the benchmark.
///
/// # Errors
///
/// When the temporary state cannot be created or a change fails.
pub fn run(opts: &ReloadBenchOptions, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let dir = std::env::temp_dir().join(format!("tm-bench-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let base = workload::searches_json(opts.searches, opts.seed);
    let file = dir.join("searches.json");
    std::fs::write(&file, &base)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    writeln!(
        out,
        "reload benchmark: {} generated searches (seed {}), state in {}",
        opts.searches,
        opts.seed,
        dir.display()
    )?;

    // 1. Start.
    let t = Instant::now();
    let store = Arc::new(StateStore::open(&dir.join("state"))?);
    let mut config = SearchesConfig::file(&file);
    config.watch = false;
    let searches = SearchVersions::open(
        config,
        &crate::kafka_client::KafkaClients::default(),
        store,
        Arc::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let start = t.elapsed();
    let m = searches.current().meta.clone();
    writeln!(
        out,
        "start (read + validate + compile + store): {} ({} topics, {} searches)",
        ms(start),
        m.topics,
        m.searches
    )?;

    // 2. One search added, repeatedly (each on top of the base set).
    let mut change = Vec::new();
    for i in 0..opts.repeats {
        let (doc, term) = with_extra_search(&base, i);
        let probe = format!("{{\"id\":\"probe-{i}\",\"text\":\"news: {term} today\"}}");
        // Changes spaced as a person makes them: the previous one merged.
        while searches.current().delta.is_some() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let t = Instant::now();
        rt.block_on(searches.put(doc, false))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let hit = matches_topic(&searches, &probe, &format!("bench-extra-{i}"))?;
        change.push(t.elapsed());
        anyhow::ensure!(hit, "the new search did not match its probe document");
    }
    let mut sorted = change.clone();
    writeln!(
        out,
        "one-search change -> first match by the new version: median {}, max {} ({} changes)",
        ms(percentile(&mut sorted, 0.5)),
        ms(*sorted.last().unwrap_or(&Duration::ZERO)),
        opts.repeats
    )?;

    // 2b. One topic added through the per-topic path (`PUT
    // /searches/topics/{id}`), spaced the same way; 2c. the same back to
    // back: each arrives while the previous one's merge compiles (a delta
    // on the delta).
    for (name, what, wait_for_merge) in [
        ("topic", "one-topic change (PUT /searches/topics/ID)", true),
        (
            "next",
            "one-topic changes back to back (each during the previous one's merge)",
            false,
        ),
    ] {
        let (mut took, mut answered) = (Vec::new(), Vec::new());
        for i in 0..opts.repeats {
            let term = format!("zqxbench{name}{i}");
            let id = format!("bench-{name}-{i}");
            let topic = serde_json::json!({"id": id, "searches": [{"id": format!("{id}-s"), "query": term}]});
            let probe = format!("{{\"id\":\"probe-{name}{i}\",\"text\":\"news: {term} today\"}}");
            while wait_for_merge && searches.current().delta.is_some() {
                std::thread::sleep(Duration::from_millis(10));
            }
            let t = Instant::now();
            rt.block_on(searches.set_topic(&id, topic.to_string().as_bytes(), false))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            answered.push(t.elapsed());
            let hit = matches_topic(&searches, &probe, &id)?;
            took.push(t.elapsed());
            anyhow::ensure!(hit, "the new topic did not match its probe document");
        }
        writeln!(
            out,
            "{what} -> first match: median {}, max {} ({} changes; the request answered: median {}, max {})",
            ms(percentile(&mut took, 0.5)),
            ms(*took.last().unwrap_or(&Duration::ZERO)),
            opts.repeats,
            ms(percentile(&mut answered, 0.5)),
            ms(*answered.last().unwrap_or(&Duration::ZERO)),
        )?;
    }

    // 3. Full reload: another set of the same size (after the last small
    // change has been merged, as in step 2).
    let other = workload::searches_json(opts.searches, opts.seed + 1);
    while searches.current().delta.is_some() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    rt.block_on(searches.put(other.clone().into_bytes(), true))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let full = t.elapsed();
    writeln!(
        out,
        "full reload of {} new searches: {}",
        opts.searches,
        ms(full)
    )?;

    // 4. Batch latency with and without a reload compiling beside it.
    let docs: Vec<String> =
        workload::documents(2_000, workload::brand_groups(&base), false, opts.seed);
    let docs: Arc<Vec<String>> = Arc::new(docs);
    let measure = |reloading: bool| -> anyhow::Result<(Vec<Duration>, usize)> {
        let stop = Arc::new(AtomicBool::new(false));
        let reloads = if reloading {
            let s = searches.clone();
            let stop = stop.clone();
            let sets = [base.clone(), other.clone()];
            Some(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("runtime");
                let mut n = 0;
                while !stop.load(Relaxed) {
                    let _ = rt.block_on(s.put(sets[n % 2].clone().into_bytes(), true));
                    n += 1;
                }
                n
            }))
        } else {
            None
        };
        let mut lat = Vec::new();
        let until = Instant::now() + Duration::from_secs(4);
        let mut active = searches.current();
        let mut scratch = active.scratch();
        while Instant::now() < until {
            if !searches.is_current(&active) {
                active = searches.current();
                scratch = active.scratch();
            }
            let t = Instant::now();
            for chunk in docs.chunks(200) {
                for d in chunk {
                    if let Ok(doc) = Document::parse(d.as_bytes(), 1 << 20) {
                        let mut n = 0;
                        active.for_each_match(&doc, &mut scratch, |_, _| n += 1)?;
                        std::hint::black_box(n);
                    }
                }
            }
            lat.push(t.elapsed());
        }
        stop.store(true, Relaxed);
        let n = reloads.map_or(0, |h| h.join().unwrap_or(0));
        Ok((lat, n))
    };
    let (mut steady, _) = measure(false)?;
    let (mut during, n) = measure(true)?;
    let (p_steady, p_during) = (percentile(&mut steady, 0.99), percentile(&mut during, 0.99));
    writeln!(
        out,
        "batch latency (batches of {} documents): p99 steady {} ({} batches), p99 during {} full reloads {} ({} batches): ratio {:.2}",
        docs.len(),
        ms(p_steady),
        steady.len(),
        n,
        ms(p_during),
        during.len(),
        p_during.as_secs_f64() / p_steady.as_secs_f64().max(1e-9)
    )?;
    drop(searches);
    std::fs::remove_dir_all(&dir).context("cleaning up the temporary state")?;
    Ok(Outcome::Success)
}
