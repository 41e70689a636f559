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

pub(super) fn worker(searches: &Weak<SearchVersions>, jobs: &mpsc::Receiver<WorkerTask>) {
    yield_to_matching();
    loop {
        let job = match jobs.recv_timeout(Duration::from_millis(500)) {
            Ok(job) => Some(job),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let Some(s) = searches.upgrade() else { return };
        if let Some(job) = job {
            crate::service::components::fault_point("searches-worker");
            s.handle(job);
        }
        s.merge_delta();
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
            let _ = std::thread::Builder::new()
                .name("searches-free".into())
                .spawn(move || {
                    yield_to_matching();
                    drop(done);
                });
        }
    }
}
