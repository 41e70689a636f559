//! A long output file written front to back whose pages leave the page
//! cache soon after they are written ("drop-behind"), for `match --output`
//! and `match > FILE`.
//!
//! # Why
//!
//! At 100,000 realistic searches `match` writes ~1,950 bytes of records
//! per post: 447 MB for 229,491 posts. Written the usual way, every 4 KiB
//! of it takes a fresh page of the page cache, and the pages stay dirty
//! until the kernel writes them back after the command has ended. Fresh
//! pages are what costs: on a virtual machine whose free memory the host
//! takes back (free page reporting, ballooning) each one is a fault into
//! the host as well. Here copying the 447 MB into the cache cost 0.32–0.46
//! s of CPU written plainly and 0.06–0.13 s with drop-behind, which keeps
//! re-using the same few dozen MiB of pages; the run's system CPU halved
//! (BENCHMARKS.md, ninth session).
//! The output also no longer pushes the rest of the page cache out, and
//! never piles up hundreds of MiB of dirty pages for a later `sync`.
//!
//! # How
//!
//! The scheme kernel developers recommend for streaming writes, without
//! its waits. Each time another [`WINDOW`] of bytes has been written:
//!
//! 1. `sync_file_range(SYNC_FILE_RANGE_WRITE)` over that window starts its
//!    writeback now, and does not wait for it;
//! 2. `posix_fadvise(POSIX_FADV_DONTNEED)` over the windows [`LAG`] to
//!    `LAG + RETRIES` windows back (32–64 MiB behind the end) lets their
//!    pages go. The kernel drops clean pages only: one still being
//!    written stays, is asked again at the next windows (each window is
//!    asked [`RETRIES`] times), and after that is left to the kernel's
//!    usual reclaim.
//!
//! Nothing waits for the disk, so a slow disk leaves more pages cached
//! (as without drop-behind) instead of slowing the command. The ranges
//! come from the file's position after each window, read through a
//! duplicate of its descriptor (which shares the position), so a file
//! opened for appending (`>>`) is handled too.
//!
//! Only regular files get this (the duplicate's metadata); a pipe, a
//! terminal or `/dev/null` is written as before. The advice is a hint and
//! its errors are ignored; an error from starting writeback (`EIO`,
//! `ENOSPC`) is the disk's and is returned by the next `write`, before any
//! of its bytes are written. Where the call does not exist (not Linux, a
//! file system refusing it) drop-behind turns itself off and the bytes are
//! written as before.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, AsRawFd};

/// Bytes written between two hand-overs to the kernel (8 MiB).
pub const WINDOW: u64 = 8 << 20;
/// Windows kept in the cache behind the end before they are let go.
pub const LAG: u64 = 4;
/// Times each window is asked to leave the cache.
pub const RETRIES: u64 = 4;

/// A writer over a file whose written pages leave the page cache soon
/// (module doc). Put a `BufWriter` in front of it, not behind it: it must
/// see the writes as they reach the file.
#[derive(Debug)]
pub struct DropBehind<W: Write + AsFd> {
    inner: W,
    /// Bytes per window; [`WINDOW`] but in tests.
    window: u64,
    /// Bytes written since the last window was handed over.
    pending: u64,
    /// The same open file as `inner` (a duplicate of its descriptor, so
    /// it shares the position), asked where the file ends; `None` for
    /// anything but a regular file, and once the kernel refused.
    file: Option<File>,
    /// The end of the range last advised to leave the cache.
    advised_through: u64,
}

impl<W: Write + AsFd> DropBehind<W> {
    /// Wraps `inner`: drop-behind if it is a regular file.
    pub fn new(inner: W) -> DropBehind<W> {
        DropBehind::with_window(inner, WINDOW)
    }

    /// With windows of `window` bytes instead of [`WINDOW`].
    pub(crate) fn with_window(inner: W, window: u64) -> DropBehind<W> {
        let file = inner
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .ok()
            .filter(|f| cfg!(target_os = "linux") && f.metadata().is_ok_and(|m| m.is_file()));
        DropBehind {
            inner,
            window: window.max(1),
            pending: 0,
            file,
            advised_through: 0,
        }
    }

    /// Whether the pages written are let go (a regular file whose kernel
    /// has not refused so far).
    pub fn is_on(&self) -> bool {
        self.file.is_some()
    }

    /// The end of the range last advised to leave the cache (0: none yet).
    pub fn advised_through(&self) -> u64 {
        self.advised_through
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Starts the writeback of the window just filled and lets the
    /// windows `LAG..LAG + RETRIES` back go (module doc).
    fn hand_over(&mut self) -> io::Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        let fd = file.as_raw_fd();
        let Ok(end) = file.stream_position() else {
            self.file = None;
            return Ok(());
        };
        let start = end.saturating_sub(self.pending);
        self.pending = 0;
        match kernel::start_writeback(fd, start, end - start) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::ENOSPC)) => return Err(e),
            Err(_) => {
                self.file = None;
                return Ok(());
            }
        }
        let through = end.saturating_sub(LAG * self.window);
        let from = end.saturating_sub((LAG + RETRIES) * self.window);
        if through > from {
            kernel::let_go(fd, from, through - from);
            self.advised_through = through;
        }
        Ok(())
    }
}

impl<W: Write + AsFd> Write for DropBehind<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending >= self.window && self.file.is_some() {
            self.hand_over()?;
        }
        let n = self.inner.write(buf)?;
        self.pending += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The two system calls the standard library lacks (Linux only: off it,
/// drop-behind is never on).
#[cfg(target_os = "linux")]
mod kernel {
    use std::io;
    use std::os::fd::RawFd;

    pub(super) fn start_writeback(fd: RawFd, start: u64, len: u64) -> io::Result<()> {
        let (Ok(start), Ok(len)) = (i64::try_from(start), i64::try_from(len)) else {
            return Ok(());
        };
        // SAFETY: starts writing back the file's dirty pages in the range;
        // reads and writes no memory of this process.
        let r = unsafe { libc::sync_file_range(fd, start, len, libc::SYNC_FILE_RANGE_WRITE) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) fn let_go(fd: RawFd, start: u64, len: u64) {
        let (Ok(start), Ok(len)) = (i64::try_from(start), i64::try_from(len)) else {
            return;
        };
        // SAFETY: a hint about the file's cached pages; the kernel drops
        // clean ones only, so no written byte is lost.
        unsafe { libc::posix_fadvise(fd, start, len, libc::POSIX_FADV_DONTNEED) };
    }
}

#[cfg(not(target_os = "linux"))]
mod kernel {
    use std::io;
    use std::os::fd::RawFd;

    pub(super) fn start_writeback(_fd: RawFd, _start: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    pub(super) fn let_go(_fd: RawFd, _start: u64, _len: u64) {}
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::{DropBehind, LAG, RETRIES};
    use std::fs::File;
    use std::io::Write;

    pub(crate) const PAGE: usize = 4096;

    /// How many of the file's pages in `from..to` (page-aligned) are in
    /// the page cache.
    pub(crate) fn resident_pages(file: &File, from: usize, to: usize) -> usize {
        use std::os::fd::AsRawFd;
        let len = to - from;
        // SAFETY: a read-only shared mapping of the file's range, which is
        // only passed to `mincore` (never read, so no page is brought in)
        // and unmapped before returning.
        unsafe {
            let at = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                from as libc::off_t,
            );
            assert_ne!(at, libc::MAP_FAILED, "mmap");
            let mut vec = vec![0u8; len / PAGE];
            assert_eq!(libc::mincore(at, len, vec.as_mut_ptr()), 0, "mincore");
            libc::munmap(at, len);
            vec.iter().filter(|&&b| b & 1 == 1).count()
        }
    }

    /// Checks that the file at `path` holds exactly `expected`, and
    /// removes it.
    pub(crate) fn assert_file_holds_then_remove(path: &std::path::Path, expected: &[u8]) {
        assert!(std::fs::read(path).unwrap() == expected, "the file differs");
        std::fs::remove_file(path).unwrap();
    }

    /// Whether `dir` is a tmpfs, whose pages are the file itself and never
    /// leave memory.
    pub(crate) fn is_tmpfs(dir: &std::path::Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: `statfs` fills in plain data for a valid C string.
        unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            libc::statfs(path.as_ptr(), &mut st) == 0 && st.f_type == libc::TMPFS_MAGIC
        }
    }

    #[test]
    fn written_windows_leave_the_cache_and_every_byte_reaches_the_file() {
        let dir = std::env::temp_dir();
        if is_tmpfs(&dir) {
            eprintln!(
                "skipped: {} is a tmpfs, whose pages never leave memory",
                dir.display()
            );
            return;
        }
        let path = dir.join(format!("tm-drop-behind-{}", std::process::id()));
        let window = 16 * PAGE;
        let mut out = DropBehind::with_window(File::create(&path).unwrap(), window as u64);
        assert!(out.is_on(), "a regular file gets drop-behind");
        let piece: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut expected = Vec::new();
        let put = |out: &mut DropBehind<File>, expected: &mut Vec<u8>, upto: usize| {
            while expected.len() < upto {
                out.write_all(&piece).unwrap();
                expected.extend_from_slice(&piece);
            }
        };
        // Sixteen windows, made clean on disk; then eight more, whose
        // hand-overs advise the clean ones to go.
        put(&mut out, &mut expected, 16 * window);
        out.get_ref().sync_data().unwrap();
        let synced = expected.len();
        put(&mut out, &mut expected, 24 * window);
        out.flush().unwrap();
        let advised = out.advised_through() as usize;
        let first_advised = advised - (LAG + RETRIES) as usize * window;
        assert!(advised > 16 * window, "advised through {advised}");

        let file = File::open(&path).unwrap();
        // The clean windows that were advised are gone from the cache ...
        let clean_to = synced / PAGE * PAGE;
        let gone_from = first_advised.div_ceil(PAGE) * PAGE;
        assert!(clean_to > gone_from + 4 * PAGE);
        assert_eq!(resident_pages(&file, gone_from, clean_to), 0);
        // ... while the last windows, never advised, are still there (so
        // the check above can see a cached page).
        let end = expected.len() / PAGE * PAGE;
        assert!(resident_pages(&file, advised.div_ceil(PAGE) * PAGE, end) > 0);
        // Every byte reached the file, in order.
        assert_file_holds_then_remove(&path, &expected);
    }

    #[test]
    fn a_pipe_or_device_is_written_as_is() {
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        let mut out = DropBehind::with_window(null, 4096);
        assert!(!out.is_on());
        for _ in 0..10 {
            out.write_all(&[7; 5000]).unwrap();
        }
        assert_eq!(out.advised_through(), 0);
    }
}
