//! `match --output FILE`: the records file written around the page cache
//! (direct I/O) by a writer thread, so that the cores match instead of
//! copying records into the kernel's cache.
//!
//! # Why
//!
//! At 100,000 realistic searches `match` writes ~1,950 bytes of records
//! per post, 447 MB for 229,491 posts. Written through the page cache,
//! even with drop-behind ([`DropBehind`]), every byte is copied into a
//! cache page by the thread that writes, and every page is then allocated,
//! tracked, written back and freed by the kernel: 0.4–0.6 s of system CPU
//! on a run whose matching takes about a second on two cores. With direct
//! I/O the disk reads the records from this process's memory, and the
//! thread that waits for it waits off the CPU. At 100,000 searches on two
//! cores the thread that reads and writes went from 12–24% of the CPU
//! samples of the matching phase to 5–8% (the writer thread 1–4%), and the
//! run's system CPU from a median of 0.63–0.67 s to 0.42–0.43 s; the
//! matching time's median went from 1.095 to 0.965 s in one spell and
//! stayed at 1.21 s in a slower one (alternating runs, BENCHMARKS.md,
//! tenth session).
//!
//! # How
//!
//! - The file is created as usual; if it is a regular file whose file
//!   system takes direct I/O (`fcntl(F_SETFL, O_DIRECT)` succeeds), bytes
//!   are gathered into [`BLOCK`]-sized blocks of page-aligned memory, and
//!   each full block is handed to the writer thread, which writes it at
//!   the file's position (so every write is aligned in memory, in the file
//!   and in length, as direct I/O requires).
//! - [`BLOCKS`] blocks circulate: one filling, the others being written.
//!   Blocks come back from the writer with the result of their write; an
//!   error (`ENOSPC`, `EIO`) is returned by the next `write` or the
//!   `flush`, never dropped. After one, nothing more is written (the
//!   writer stops, and every later `write` is refused), so no record lands
//!   after a gap: the file holds a prefix of the records.
//! - **The disk never makes the command slower than before.** Direct I/O
//!   waits for the disk, where a write into the page cache returns at
//!   once. If the thread filling blocks has waited for a free one more
//!   than [`LEAST_WAITING`] in all and more than [`MOST_WAITING_PERCENT`]
//!   of the time since it began (the disk is slower than the records
//!   come, not merely slow for a moment), direct writing ends: the blocks
//!   in flight are written first, `O_DIRECT` is cleared, and the rest goes
//!   through the page cache with drop-behind, as it did before. A writer
//!   that sees `EINVAL` (a file system that took the flag but refuses a
//!   write) clears `O_DIRECT` and writes on through the page cache.
//! - `flush` ends direct writing the same way, and writes the last partial
//!   block through the page cache (its length is no multiple of a page):
//!   it is meant for the end of the output. Dropping the writer flushes it
//!   and ignores errors, as `BufWriter` does.
//! - Anything but a regular file (`/dev/null`, a pipe), or a file system
//!   without direct I/O (where `fcntl` refuses), is written through a
//!   `BufWriter` and [`DropBehind`] as before.
//!
//! Only one thread writes at a time, in order, at the file's shared
//! position, so a command stopped half-way leaves a prefix of the records,
//! as before. Direct I/O does not make the file durable; as before,
//! nothing here calls `fsync`. Standard output keeps drop-behind alone: its
//! open file is shared with the shell, whose flags are not this command's
//! to change.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::drop_behind::DropBehind;

/// Bytes per block written at once (4 MiB).
pub const BLOCK: usize = 4 << 20;
/// Blocks in circulation: one being filled, the others being written.
pub const BLOCKS: usize = 4;
/// Time spent waiting for a free block past which, if it is also more
/// than [`MOST_WAITING_PERCENT`] of the time since direct writing began,
/// the disk is taken as slower than the records and direct writing ends.
pub const LEAST_WAITING: Duration = Duration::from_millis(100);
/// See [`LEAST_WAITING`].
pub const MOST_WAITING_PERCENT: u32 = 5;
/// Alignment of a block in memory and of every direct write's length.
const ALIGN: usize = 4096;
/// What the page-cache path buffers (as `match` always did).
const BUFFERED_CAPACITY: usize = 256 * 1024;

/// One page of a block: page-aligned memory without hand-made allocation.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; ALIGN]);

/// A block of page-aligned memory.
struct Block {
    pages: Box<[Page]>,
    /// Bytes used.
    len: usize,
}

impl Block {
    fn new(bytes: usize) -> Block {
        Block {
            pages: vec![Page([0; ALIGN]); bytes / ALIGN].into_boxed_slice(),
            len: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.pages.len() * ALIGN
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let n = self.capacity();
        // SAFETY: the pages are `n` contiguous initialized bytes (`Page`
        // is `repr(C)` over a byte array, so there is no padding), borrowed
        // mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.pages.as_mut_ptr().cast::<u8>(), n) }
    }

    fn filled(&self) -> &[u8] {
        // SAFETY: as in `bytes_mut`, for the first `len <= capacity` bytes.
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr().cast::<u8>(), self.len) }
    }
}

/// Blocks on their way to the disk (module doc).
struct Direct {
    /// The block being filled.
    filling: Block,
    /// Full blocks to the writer thread.
    to_writer: SyncSender<Block>,
    /// Written blocks back, with their write's result.
    written: Receiver<io::Result<Block>>,
    writer: JoinHandle<()>,
    /// Blocks made so far (up to `BLOCKS`).
    made: usize,
    /// When direct writing began.
    began: Instant,
    /// Time spent waiting for a free block.
    waited: Duration,
}

/// The records file of `match --output` (module doc).
pub struct DirectOutput {
    /// Where bytes go when not written directly: always, or once direct
    /// writing has ended.
    buffered: BufWriter<DropBehind<File>>,
    direct: Option<Direct>,
    /// Block size; [`BLOCK`] but in tests.
    block: usize,
    /// Set once a write failed: every later write is refused.
    failed: bool,
}

impl DirectOutput {
    /// Writes to `file`, directly if it is a regular file whose file
    /// system takes direct I/O. Its position must be 0 (as `File::create`
    /// leaves it) for direct writing to begin.
    pub fn new(file: File) -> DirectOutput {
        DirectOutput::with_block(file, BLOCK, None)
    }

    /// With blocks of `block` bytes, and the writer thread sleeping
    /// `slow_disk` before each write (tests: a disk slower than the
    /// records).
    fn with_block(file: File, block: usize, slow_disk: Option<Duration>) -> DirectOutput {
        let block = block.max(ALIGN) / ALIGN * ALIGN;
        let mut out = DirectOutput {
            buffered: BufWriter::with_capacity(BUFFERED_CAPACITY, DropBehind::new(file)),
            direct: None,
            block,
            failed: false,
        };
        out.direct = out.begin_direct(slow_disk);
        out
    }

    /// Whether bytes are still written directly.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    fn file(&self) -> &File {
        self.buffered.get_ref().get_ref()
    }

    /// Turns on `O_DIRECT` and starts the writer thread, if the file is a
    /// regular one at position 0 and its file system agrees.
    fn begin_direct(&mut self, slow_disk: Option<Duration>) -> Option<Direct> {
        use std::io::Seek;
        let file = self.file();
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        if !regular || (&*file).stream_position().ok()? != 0 {
            return None;
        }
        let mut disk = file.try_clone().ok()?;
        flags::set_direct(file.as_raw_fd(), true).ok()?;
        let (to_writer, from_filler) = mpsc::sync_channel::<Block>(BLOCKS);
        let (to_filler, written) = mpsc::sync_channel(BLOCKS);
        let spawned = std::thread::Builder::new()
            .name("records-writer".into())
            .spawn(move || {
                for block in from_filler {
                    if let Some(d) = slow_disk {
                        std::thread::sleep(d);
                    }
                    let result = write_block(&mut disk, block.filled()).map(|()| block);
                    // After a failed write, nothing more: no later block
                    // lands after a gap.
                    let failed = result.is_err();
                    if to_filler.send(result).is_err() || failed {
                        return;
                    }
                }
            });
        let Ok(writer) = spawned else {
            let _ = flags::set_direct(file.as_raw_fd(), false);
            return None;
        };
        Some(Direct {
            filling: Block::new(self.block),
            to_writer,
            written,
            writer,
            made: 1,
            began: Instant::now(),
            waited: Duration::ZERO,
        })
    }

    /// Hands the full block over and takes a free one: one written back,
    /// a new one while fewer than `BLOCKS` exist, or else the first to
    /// come back (a wait). After a failed write nothing more is written
    /// (module doc).
    fn hand_over(&mut self) -> io::Result<()> {
        let Some(d) = &mut self.direct else {
            return Ok(());
        };
        let free = match d.written.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) if d.made < BLOCKS => {
                d.made += 1;
                Ok(Block::new(self.block))
            }
            Err(TryRecvError::Empty) => {
                let since = Instant::now();
                let free = d.written.recv().unwrap_or_else(|_| Err(writer_gone()));
                d.waited += since.elapsed();
                if free.is_ok()
                    && d.waited > LEAST_WAITING
                    && d.waited * 100 > d.began.elapsed() * MOST_WAITING_PERCENT
                {
                    // The disk is slower than the records: through the
                    // page cache from here on (module doc).
                    tracing::info!(
                        waited_ms = d.waited.as_millis(),
                        "the disk is slower than the records: writing through the page cache from here on"
                    );
                    return self.end_direct();
                }
                free
            }
            Err(TryRecvError::Disconnected) => Err(writer_gone()),
        };
        let mut free = match free {
            Ok(block) => block,
            Err(e) => return Err(self.fail(e)),
        };
        free.len = 0;
        let full = std::mem::replace(&mut d.filling, free);
        if d.to_writer.send(full).is_err() {
            return Err(self.fail(writer_gone()));
        }
        Ok(())
    }

    /// After a failed write: stops the writer thread, and from then on
    /// refuses every write, so that no later byte lands after a gap.
    /// Returns the first error the writer met (`e` if none).
    fn fail(&mut self, e: io::Error) -> io::Error {
        self.failed = true;
        match self.stop_writer() {
            Some((_, Some(first))) => first,
            _ => e,
        }
    }

    /// Waits for the blocks in flight, clears `O_DIRECT` and writes what
    /// is left of the block being filled through the page cache.
    fn end_direct(&mut self) -> io::Result<()> {
        match self.stop_writer() {
            None => Ok(()),
            Some((_, Some(e))) => {
                self.failed = true;
                Err(e)
            }
            Some((filling, None)) => self.buffered.write_all(filling.filled()),
        }
    }

    /// Ends direct writing: lets the writer thread write the blocks it
    /// has and end, and clears `O_DIRECT`. Returns the block being filled
    /// and the writer's first error (`None` if direct writing had ended).
    fn stop_writer(&mut self) -> Option<(Block, Option<io::Error>)> {
        let d = self.direct.take()?;
        tracing::debug!(waited_ms = d.waited.as_millis(), "direct writing ends");
        drop(d.to_writer);
        let _ = d.writer.join();
        let mut first_error = d.written.try_iter().find_map(Result::err);
        if let Err(e) = flags::set_direct(self.file().as_raw_fd(), false) {
            first_error.get_or_insert(e);
        }
        Some((d.filling, first_error))
    }
}

/// Writes `bytes` whole at the file's position; on `EINVAL` (a file
/// system refusing this direct write) clears `O_DIRECT` and goes on
/// through the page cache.
fn write_block(disk: &mut File, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match disk.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                flags::set_direct(disk.as_raw_fd(), false)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn writer_gone() -> io::Error {
    io::Error::other("the records writer thread ended")
}

fn earlier_failure() -> io::Error {
    io::Error::other("an earlier write of the records file failed")
}

impl Write for DirectOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(earlier_failure());
        }
        let Some(d) = &mut self.direct else {
            return self.buffered.write(buf);
        };
        let at = d.filling.len;
        let n = buf.len().min(d.filling.capacity() - at);
        d.filling.bytes_mut()[at..at + n].copy_from_slice(&buf[..n]);
        d.filling.len += n;
        if d.filling.len == d.filling.capacity() {
            self.hand_over()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(earlier_failure());
        }
        self.end_direct()?;
        self.buffered.flush()
    }
}

impl Drop for DirectOutput {
    fn drop(&mut self) {
        let _ = self.end_direct();
    }
}

/// Setting and clearing `O_DIRECT` on an open file.
mod flags {
    use super::RawFd;
    use std::io;

    #[cfg(target_os = "linux")]
    pub(super) fn set_direct(fd: RawFd, on: bool) -> io::Result<()> {
        // SAFETY: reads and sets the open file's status flags; touches no
        // memory of this process.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 {
                return Err(io::Error::last_os_error());
            }
            let want = if on {
                flags | libc::O_DIRECT
            } else {
                flags & !libc::O_DIRECT
            };
            if want != flags && libc::fcntl(fd, libc::F_SETFL, want) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn set_direct(_fd: RawFd, on: bool) -> io::Result<()> {
        if on {
            Err(io::ErrorKind::Unsupported.into())
        } else {
            Ok(())
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::DirectOutput;
    use crate::drop_behind::tests::{
        assert_file_holds_then_remove, is_tmpfs, resident_pages, PAGE,
    };
    use std::fs::File;
    use std::io::Write;
    use std::path::PathBuf;

    /// A new file's path in the temporary directory, or `None` (test
    /// skipped) where that is a tmpfs: its pages are the file itself.
    fn scratch_file(name: &str) -> Option<PathBuf> {
        let dir = std::env::temp_dir();
        if is_tmpfs(&dir) {
            eprintln!("skipped: {} is a tmpfs", dir.display());
            return None;
        }
        Some(dir.join(format!("tm-direct-{name}-{}", std::process::id())))
    }

    /// Writes pieces of every length from 1 to 9,000 bytes (so that they
    /// straddle the blocks' ends) until `total` bytes; returns them.
    fn write_pieces(out: &mut DirectOutput, total: usize) -> Vec<u8> {
        let mut expected = Vec::with_capacity(total);
        let mut len = 1;
        while expected.len() < total {
            let piece: Vec<u8> = (0..len)
                .map(|i| ((expected.len() + i) % 251) as u8)
                .collect();
            out.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
            len = len % 9_000 + 997;
        }
        expected
    }

    #[test]
    fn blocks_go_around_the_page_cache_and_every_byte_reaches_the_file() {
        let Some(path) = scratch_file("blocks") else {
            return;
        };
        let block = 16 * PAGE;
        let mut out = DirectOutput::with_block(File::create(&path).unwrap(), block, None);
        assert!(out.is_direct(), "a regular file on this file system");
        let expected = write_pieces(&mut out, 20 * block + 1234);
        out.flush().unwrap();
        assert!(!out.is_direct(), "flush ends direct writing");
        drop(out);

        let file = File::open(&path).unwrap();
        // The whole blocks were written around the cache: none of their
        // pages is in it; the partial last block went through it (so the
        // check can see a cached page).
        assert_eq!(resident_pages(&file, 0, 20 * block), 0);
        assert!(resident_pages(&file, 20 * block, 20 * block + PAGE) > 0);
        assert_file_holds_then_remove(&path, &expected);
    }

    #[test]
    fn a_disk_slower_than_the_records_turns_direct_writing_off_and_loses_nothing() {
        let Some(path) = scratch_file("slow") else {
            return;
        };
        let block = 4 * PAGE;
        let slow = Some(std::time::Duration::from_millis(5));
        let mut out = DirectOutput::with_block(File::create(&path).unwrap(), block, slow);
        assert!(out.is_direct());
        let mut expected = write_pieces(&mut out, 2 * block);
        assert!(out.is_direct(), "two blocks fit in those circulating");
        expected.extend(write_pieces(&mut out, 80 * block));
        assert!(
            !out.is_direct(),
            "waiting for the disk ended direct writing"
        );
        expected.extend(write_pieces(&mut out, 3 * block));
        out.flush().unwrap();
        drop(out);
        assert_file_holds_then_remove(&path, &expected);
    }

    #[test]
    fn a_failed_disk_write_is_returned_not_lost() {
        let Some(path) = scratch_file("fails") else {
            return;
        };
        File::create(&path).unwrap();
        // Open for reading only: every write of the writer thread fails.
        let read_only = File::open(&path).unwrap();
        let mut out = DirectOutput::with_block(read_only, 4 * PAGE, None);
        assert!(out.is_direct());
        let piece = [7u8; 1000];
        let mut failed = None;
        for _ in 0..200 {
            if let Err(e) = out.write_all(&piece) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.or_else(|| out.flush().err()).expect("the failure");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
        // Nothing more is written after a failure.
        assert!(out.write_all(&piece).is_err());
        assert!(out.flush().is_err());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_device_is_written_through_the_page_cache_path() {
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        let mut out = DirectOutput::with_block(null, 4 * PAGE, None);
        assert!(!out.is_direct());
        write_pieces(&mut out, 100_000);
        out.flush().unwrap();
    }
}
