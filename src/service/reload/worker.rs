//! The reload worker: one thread that applies changes one at a time and
//! frees replaced versions on a thread of their own, both at low priority.

use super::*;

/// Lowers the calling thread's scheduling priority (nice 10): compiling
/// and freeing searches yield the cores to the pipeline, so matching
/// latency holds while a version is built.
pub(super) fn yield_to_matching() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority on the calling thread only change its
    // scheduling priority; no memory is touched.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// Drops `value` on a low-priority thread of its own: freeing a large
/// structure (a replaced version, an id index) must not hold up the worker
/// or the pipeline. Dropped here if no thread can be started.
pub(super) fn free_later<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("searches-free".into())
        .spawn(move || {
            yield_to_matching();
            drop(value);
        });
}

/// A merge compiling on its own thread: the version it merges and the
/// compile's result.
type Merging = (
    Arc<Active>,
    Instant,
    std::thread::JoinHandle<Option<(Active, apply::BaseIds)>>,
);

pub(super) fn worker(searches: &Weak<SearchVersions>, jobs: &mpsc::Receiver<WorkerTask>) {
    yield_to_matching();
    let mut merging: Option<Merging> = None;
    loop {
        // While a merge compiles, look at it often.
        let wait = Duration::from_millis(if merging.is_some() { 50 } else { 500 });
        let job = match jobs.recv_timeout(wait) {
            Ok(job) => Some(job),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let Some(s) = searches.upgrade() else { return };
        if let Some(job) = job {
            crate::service::components::fault_point("searches-worker");
            s.handle(job);
        }
        merging = merge_step(&s, merging);
        // Free replaced versions that only this list still holds.
        let mut done = Vec::new();
        s.retired.lock().expect("retired lock").retain(|a| {
            if Arc::strong_count(a) == 1 {
                done.push(a.clone());
                false
            } else {
                true
            }
        });
        if !done.is_empty() {
            // Freeing is slow too; keep the worker free for the next change.
            free_later(done);
        }
    }
}

/// Merges a delta away from the worker thread, so that a change arriving
/// meanwhile is applied at once (as a delta on the delta) instead of
/// waiting for a whole compile: finishes a merge that is done, and starts
/// one when the active version has a delta and none runs.
fn merge_step(s: &SearchVersions, merging: Option<Merging>) -> Option<Merging> {
    if let Some((of, started, handle)) = merging {
        if !handle.is_finished() {
            return Some((of, started, handle));
        }
        if let Ok(Some(merged)) = handle.join() {
            s.finish_merge(&of, merged, started.elapsed());
        }
    }
    let cur = s.current();
    cur.delta.as_ref()?;
    let (of, limits, store) = (cur.clone(), s.limits.clone(), s.store.clone());
    let spawned = std::thread::Builder::new()
        .name("searches-merge".into())
        .spawn(move || {
            yield_to_matching();
            apply::merged(&cur, &limits, &store)
        });
    match spawned {
        Ok(handle) => Some((of, Instant::now(), handle)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the thread that merges the searches delta");
            None
        }
    }
}
