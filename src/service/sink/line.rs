//! The JSONL output: a file (appended, synced) or stdout.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[cfg(test)]
use super::open;
use super::{Sink, SinkError};
#[cfg(test)]
use crate::config::Target;

/// JSONL to a file (appended, synced at each seal or flush) or to stdout:
/// written records are acknowledged records.
///
/// # Data flow
///
/// `send` appends to a buffer; `seal` hands the buffer, as one numbered
/// group, to a writer thread, which writes and syncs groups in order and
/// acknowledges each once it is synced. So the pipeline thread goes on
/// matching while a batch is written (at 100,000 searches a batch of real
/// posts is tens of MB of records). `flush` hands over what was sent since
/// the last seal and waits until everything is acknowledged, or until the
/// writer reports a failure.
///
/// A failed write (a full disk, an I/O error) is cut back: the file is
/// truncated to its length before the write, so it never holds a partial
/// line, and the group stays with the writer, unacknowledged. The writer
/// tries it again only when asked (the next `flush` or `seal`): the
/// pipeline then pauses and retries with backoff as for a Kafka outage
/// (docs/operations.md §5.5). A file whose last line was cut by a crash is
/// cut back to its last complete line when opened (those records come again:
/// they were after the last checkpoint).
pub(super) struct LineSink {
    /// Records sent since the last seal, and how many.
    buf: Vec<u8>,
    records: usize,
    /// The last group handed to the writer.
    sealed: u64,
    shared: Arc<Shared>,
    to_writer: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

/// What the writer thread is asked to do.
enum Job {
    /// Write and sync this group (its bytes, its number of records).
    Write(u64, Vec<u8>, usize),
    /// Try the failed group again.
    Retry,
}

/// What the writer thread tells the sink.
#[derive(Default)]
struct WriterState {
    /// The last group written and synced.
    written: u64,
    /// Bytes and records handed over and not yet written.
    in_flight: usize,
    in_flight_records: usize,
    /// Failed attempts so far, and the last one's error.
    failures: u64,
    error: Option<(std::io::ErrorKind, String)>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<WriterState>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer thread's end: the file (`None`: stdout) and the length of
/// its complete records.
struct Writer {
    file: Option<File>,
    /// Bytes of complete records in the file.
    len: u64,
    /// A write failed and its part may still be in the file.
    cut_pending: bool,
}

impl Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => {
                if self.cut_pending {
                    f.set_len(self.len)?;
                    self.cut_pending = false;
                }
                let written = f.write_all(bytes).and_then(|()| f.sync_data());
                if let Err(e) = written {
                    // No partial line: back to the last complete record.
                    self.cut_pending = f.set_len(self.len).is_err();
                    return Err(e);
                }
                self.len += bytes.len() as u64;
            }
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the groups in order; a failed group stays first and is tried
    /// again at the next job (a `Retry`, or the next group). Ends when the
    /// sink is dropped.
    fn run(mut self, jobs: Receiver<Job>, shared: Arc<Shared>) {
        let mut queue = std::collections::VecDeque::<(u64, Vec<u8>, usize)>::new();
        while let Ok(job) = jobs.recv() {
            for job in std::iter::once(job).chain(std::iter::from_fn(|| jobs.try_recv().ok())) {
                if let Job::Write(group, bytes, records) = job {
                    queue.push_back((group, bytes, records));
                }
            }
            while let Some((group, bytes, records)) = queue.front() {
                let written = self.write(bytes);
                let mut s = shared.lock();
                match written {
                    Ok(()) => {
                        s.written = *group;
                        s.in_flight -= bytes.len();
                        s.in_flight_records -= records;
                        s.error = None;
                        queue.pop_front();
                    }
                    Err(e) => {
                        s.failures += 1;
                        s.error = Some((e.kind(), e.to_string()));
                    }
                }
                let failed = s.error.is_some();
                drop(s);
                shared.changed.notify_all();
                if failed {
                    break;
                }
            }
        }
    }
}

impl LineSink {
    pub(super) fn stdout() -> LineSink {
        LineSink::with_writer(Writer {
            file: None,
            len: 0,
            cut_pending: false,
        })
    }

    pub(super) fn file(path: &std::path::Path) -> Result<LineSink, SinkError> {
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let len = complete_length(&mut f)?;
        if len < f.metadata()?.len() {
            tracing::warn!(path = %path.display(), kept = len, "the output file ended in a partial line (a crash while writing); cut back to its last complete record");
            f.set_len(len)?;
        }
        Ok(LineSink::with_writer(Writer {
            file: Some(f),
            len,
            cut_pending: false,
        }))
    }

    fn with_writer(writer: Writer) -> LineSink {
        let shared = Arc::new(Shared::default());
        let (to_writer, jobs) = channel();
        let for_writer = shared.clone();
        let handle = std::thread::Builder::new()
            .name("output-writer".into())
            .spawn(move || writer.run(jobs, for_writer));
        let writer = match handle {
            Ok(h) => Some(h),
            Err(e) => {
                // Nothing is acknowledged: the pipeline pauses and says so.
                tracing::error!(error = %e, "cannot start the output writer thread");
                None
            }
        };
        LineSink {
            buf: Vec::new(),
            records: 0,
            sealed: 0,
            shared,
            to_writer: Some(to_writer),
            writer,
        }
    }

    /// Hands the buffer to the writer as the next group.
    fn hand_over(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.sealed += 1;
        let bytes = std::mem::take(&mut self.buf);
        let records = std::mem::take(&mut self.records);
        {
            let mut s = self.shared.lock();
            s.in_flight += bytes.len();
            s.in_flight_records += records;
        }
        if let Some(tx) = &self.to_writer {
            let _ = tx.send(Job::Write(self.sealed, bytes, records));
        }
    }
}

impl Drop for LineSink {
    fn drop(&mut self) {
        // The writer ends when its channel closes. It is waited for a few
        // seconds at most: a write blocked for good (stdout into a reader
        // that stopped reading) must not hold the process. What it has not
        // written is not acknowledged, so it is read again after a restart,
        // and a line cut by the exit is cut back when the file is opened.
        self.to_writer = None;
        if let Some(w) = self.writer.take() {
            let until = Instant::now() + Duration::from_secs(5);
            while !w.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if w.is_finished() {
                let _ = w.join();
            } else {
                tracing::warn!("the output writer is still writing; not waiting for it");
            }
        }
    }
}

/// The length of `f` up to and including its last newline (0 when it has
/// none).
fn complete_length(f: &mut File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut end = f.metadata()?.len();
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl Sink for LineSink {
    fn send(
        &mut self,
        _key: &[u8],
        value: &[u8],
        _headers: &[(&str, &[u8])],
    ) -> Result<(), SinkError> {
        self.buf.extend_from_slice(value);
        if !value.ends_with(b"\n") {
            self.buf.push(b'\n');
        }
        self.records += 1;
        Ok(())
    }

    fn flush(&mut self, timeout: Duration) -> Result<(), SinkError> {
        let failures = self.shared.lock().failures;
        self.hand_over();
        if let Some(tx) = &self.to_writer {
            let _ = tx.send(Job::Retry);
        }
        let until = Instant::now() + timeout;
        let mut s = self.shared.lock();
        loop {
            if s.written >= self.sealed {
                return Ok(());
            }
            if s.failures > failures {
                let (kind, message) = s
                    .error
                    .clone()
                    .unwrap_or((std::io::ErrorKind::Other, "write failed".into()));
                return Err(SinkError::Io(std::io::Error::new(kind, message)));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SinkError::Timeout(timeout, s.in_flight_records));
            }
            s = self
                .shared
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn pending_bytes(&self) -> usize {
        self.buf.len() + self.shared.lock().in_flight
    }

    fn seal(&mut self) -> Result<u64, SinkError> {
        // An empty group is acknowledged with the one before it.
        if self.buf.is_empty() {
            return Ok(self.sealed);
        }
        self.hand_over();
        Ok(self.sealed)
    }

    fn is_acked(&mut self, id: u64) -> Result<bool, SinkError> {
        Ok(id <= self.shared.lock().written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn file_sink_appends_and_syncs_on_flush() {
        let p = std::env::temp_dir().join(format!("tm-sink-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let mut s = open(&Target::File(p.clone()), &Default::default()).unwrap();
        s.send(b"k", b"{\"a\":1}", &[]).unwrap();
        assert_eq!(s.pending_bytes(), 8);
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        s.flush(Duration::from_secs(1)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n");
        assert_eq!(s.pending_bytes(), 0);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn groups_are_written_in_order_by_the_writer_and_acknowledged_once_synced() {
        let p = std::env::temp_dir().join(format!("tm-sink-order-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let mut s = open(&Target::File(p.clone()), &Default::default()).unwrap();
        let mut groups = Vec::new();
        for g in 0..50 {
            for r in 0..20 {
                s.send(b"k", format!("{{\"g\":{g},\"r\":{r}}}").as_bytes(), &[])
                    .unwrap();
            }
            groups.push(s.seal().unwrap());
        }
        assert_eq!(groups, (1..=50).collect::<Vec<u64>>());
        // Nothing sent since the last seal: the same group again.
        assert_eq!(s.seal().unwrap(), 50);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.is_acked(50).unwrap() {
            assert!(
                Instant::now() < deadline,
                "the writer acknowledges every group"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(s.pending_bytes(), 0);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(*line, format!("{{\"g\":{},\"r\":{}}}", i / 20, i % 20));
        }
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_file_cut_by_a_crash_is_cut_back_to_its_last_complete_line() {
        let p = std::env::temp_dir().join(format!("tm-sink-cut-{}.jsonl", std::process::id()));
        std::fs::write(&p, b"{\"a\":1}\n{\"b\":").unwrap();
        let mut s = open(&Target::File(p.clone()), &Default::default()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n");
        s.send(b"k", b"{\"b\":2}", &[]).unwrap();
        s.flush(Duration::from_secs(1)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_full_disk_leaves_no_partial_line_and_the_batch_unacknowledged_until_space_is_back() {
        let Some(fs) = crate::small_fs::small_fs("sinkfull", 1) else {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        };
        let p = fs.0.join("out.jsonl");
        let mut s = open(&Target::File(p.clone()), &Default::default()).unwrap();
        s.send(b"k", b"{\"first\":1}", &[]).unwrap();
        let g1 = s.seal().unwrap();
        s.flush(Duration::from_secs(5)).unwrap();
        assert!(s.is_acked(g1).unwrap());
        let filler = fs.fill();
        // A batch larger than what is left: the write fails part way.
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000));
        for _ in 0..3 {
            s.send(b"k", big.as_bytes(), &[]).unwrap();
        }
        let g2 = s.seal().unwrap();
        assert!(
            !s.is_acked(g2).unwrap(),
            "a batch not written is not acknowledged"
        );
        assert!(s.flush(Duration::from_secs(1)).is_err());
        let text = std::fs::read(&p).unwrap();
        assert_eq!(text, b"{\"first\":1}\n", "no partial line, nothing twice");
        std::fs::remove_file(&filler).unwrap();
        s.flush(Duration::from_secs(1)).unwrap();
        assert!(s.is_acked(g2).unwrap());
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    }
}
