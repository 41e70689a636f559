//! The JSONL output: a file (appended, synced) or stdout.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::Duration;

#[cfg(test)]
use super::open;
use super::{Sink, SinkError};
#[cfg(test)]
use crate::config::Target;

/// JSONL to a file (appended, synced at each seal or flush) or to stdout:
/// written records are acknowledged records.
///
/// A failed write (a full disk, an I/O error) is cut back: the file is
/// truncated to its length before the write, so it never holds a partial
/// line, and the records stay buffered. The batch is then not acknowledged,
/// and the pipeline pauses and retries as for a Kafka outage
/// (docs/operations.md §5.5). A file whose last line was cut by a crash is
/// cut back to its last complete line when opened (those records come again:
/// they were after the last checkpoint).
pub(super) struct LineSink {
    /// `None` writes to stdout.
    file: Option<File>,
    /// Bytes of complete records in the file.
    len: u64,
    /// A write failed and its part may still be in the file.
    cut_pending: bool,
    buf: Vec<u8>,
    /// The last group handed out by `seal`, and the last one written.
    sealed: u64,
    written: u64,
}

impl LineSink {
    pub(super) fn stdout() -> LineSink {
        LineSink {
            file: None,
            len: 0,
            cut_pending: false,
            buf: Vec::new(),
            sealed: 0,
            written: 0,
        }
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
        Ok(LineSink {
            file: Some(f),
            len,
            ..LineSink::stdout()
        })
    }

    fn write_buffered(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => {
                if self.cut_pending {
                    f.set_len(self.len)?;
                    self.cut_pending = false;
                }
                let written = f.write_all(&self.buf).and_then(|()| f.sync_data());
                if let Err(e) = written {
                    // No partial line: back to the last complete record.
                    self.cut_pending = f.set_len(self.len).is_err();
                    return Err(e);
                }
                self.len += self.buf.len() as u64;
            }
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf)?;
                out.flush()?;
            }
        }
        self.buf.clear();
        Ok(())
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
        Ok(())
    }

    fn flush(&mut self, _timeout: Duration) -> Result<(), SinkError> {
        if !self.buf.is_empty() {
            self.write_buffered()?;
        }
        self.written = self.sealed;
        Ok(())
    }

    fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    fn seal(&mut self) -> Result<u64, SinkError> {
        self.sealed += 1;
        // A failed write leaves the group unacknowledged: the pipeline
        // stalls on it and retries through `flush`.
        if self.write_buffered().is_ok() {
            self.written = self.sealed;
        }
        Ok(self.sealed)
    }

    fn is_acked(&mut self, id: u64) -> Result<bool, SinkError> {
        Ok(id <= self.written)
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
