//! Backs the matcher's randomly read arrays with 2 MiB pages
//! (transparent huge pages), once they are built.
//!
//! # Why
//!
//! At 100,000 searches and more, matching a post is a few dozen random
//! reads into tens of megabytes (`engine::memory` lists the arrays). With
//! 4 KiB pages nearly each of them also misses the TLB, whose entries
//! cover a few megabytes, and waits for a page walk; 2 MiB pages cover the
//! same arrays with a few dozen entries. BENCHMARKS.md has the figures.
//!
//! # How
//!
//! Most kernels back memory with huge pages only where a process asks
//! (`/sys/kernel/mm/transparent_hugepage/enabled` is `madvise`), and only
//! for memory not yet touched; the arrays are built, so touched, by then.
//! [`back_with_huge_pages`] therefore asks, for each 2 MiB-aligned range
//! that holds part of an array, with `MADV_COLLAPSE` (Linux 6.1): copy its
//! pages into one huge page now, synchronously. (`MADV_HUGEPAGE` is not
//! needed for that, and is not used: it marks the range, which splits the
//! heap's mapping in two more pieces at each call, and a service that
//! reloads its searches for months would pile them up.) The ranges are
//! the arrays rounded out to 2 MiB, so an array smaller than a huge page
//! is collapsed with its neighbours in the heap: those are memory of this
//! process too, and a collapse only changes how the range is paged, never
//! what it holds. Resident memory grows by at most the untouched pages of
//! those ranges.
//!
//! The call is a hint: where the kernel lacks it, refuses it (THP
//! `never`, no free huge page, a range not all mapped) or the target is
//! not Linux with the GNU C library (whose `libc` bindings name the
//! advice), nothing changes but the speed. Its results are counted, not
//! treated as errors.
//!
//! # What it costs, and who waits
//!
//! The kernel copies each range into new memory: here 0.1 s for the
//! 50 MiB of 100,000 realistic searches, 0.6 s for the 270 MiB of a
//! million (BENCHMARKS.md). `match` and `bench` wait for it while loading
//! (logged with the load, not the matching); the service moves a new
//! version's matcher on a thread of its own once the version is built, so
//! a change is live as soon as before and readers see the pages swapped
//! whole. A scratch space's arrays are moved only by `match` and `bench`
//! (once per thread); the service makes one per version change, which
//! must stay fast.
//!
//! # Why not a different allocator
//!
//! Serving every allocation of 2 MiB and more from 2 MiB-aligned mappings
//! advised before first touch (a global allocator, tried first) gave the
//! same speed and costs no copy, but backed every large array built while
//! compiling with whole huge pages: `check` of a million searches peaked
//! at 1.63 GiB instead of 1.46 GiB. Setting the C library's own switch
//! (`glibc.malloc.hugetlb=1`) does the same to every allocation and can
//! only be set in the environment before the process starts. Collapsing
//! afterwards touches only what matching reads, only where matching
//! happens (not `check`).

use crate::engine::memory::Bytes;

/// Size (and alignment) of a transparent huge page on x86-64 and arm64
/// with 4 KiB base pages.
pub const HUGE_PAGE: usize = 2 << 20;

/// What [`back_with_huge_pages`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backed {
    /// Bytes of the 2 MiB ranges the kernel collapsed into huge pages.
    pub collapsed: usize,
    /// Bytes of the ranges it did not collapse (not supported, refused).
    pub refused: usize,
}

/// The 2 MiB-aligned ranges holding any byte of `arrays`, merged, in
/// address order, as (start, length).
#[must_use]
pub fn huge_ranges(arrays: &[Bytes]) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = arrays
        .iter()
        .filter(|b| b.len > 0)
        .filter_map(|b| {
            let first = b.start & !(HUGE_PAGE - 1);
            let end = b.start.checked_add(b.len)?.checked_add(HUGE_PAGE - 1)? & !(HUGE_PAGE - 1);
            Some((first, end))
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (first, end) in ranges {
        match merged.last_mut() {
            Some(last) if first <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((first, end)),
        }
    }
    merged
        .into_iter()
        .map(|(first, end)| (first, end - first))
        .collect()
}

/// Asks the kernel to back the 2 MiB ranges holding `arrays` with huge
/// pages now (module doc). Only the pages' placement changes; the memory
/// must stay allocated while it is in use anyway.
#[must_use]
pub fn back_with_huge_pages(arrays: &[Bytes]) -> Backed {
    let mut backed = Backed::default();
    // A page at a time, so that the count is true: a call over a range
    // whose first page lies before the heap (arrays are rounded out) fails
    // as a whole. One call per range instead took as long (the time is the
    // kernel's copy, BENCHMARKS.md).
    for (start, len) in huge_ranges(arrays) {
        for page in (start..start + len).step_by(HUGE_PAGE) {
            if collapse(page) {
                backed.collapsed += HUGE_PAGE;
            } else {
                backed.refused += HUGE_PAGE;
            }
        }
    }
    backed
}

/// Collapses the huge page at `start`; whether the kernel did.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn collapse(start: usize) -> bool {
    let at = start as *mut libc::c_void;
    // SAFETY: `MADV_COLLAPSE` changes how the kernel backs the range,
    // never its contents, and fails (changing nothing) for addresses that
    // are not mapped; the range is the process's own.
    unsafe { libc::madvise(at, HUGE_PAGE, libc::MADV_COLLAPSE) == 0 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn collapse(_start: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::{back_with_huge_pages, huge_ranges, HUGE_PAGE};
    use crate::engine::memory::Bytes;

    fn b(start: usize, len: usize) -> Bytes {
        Bytes { start, len }
    }

    #[test]
    fn arrays_round_out_to_huge_pages_and_merge() {
        let h = HUGE_PAGE;
        assert_eq!(huge_ranges(&[b(h + 10, 100)]), vec![(h, h)]);
        assert_eq!(huge_ranges(&[b(h - 1, 2)]), vec![(0, 2 * h)]);
        // Two arrays in one page, one in the next, one far: two ranges.
        let got = huge_ranges(&[b(10 * h, 5), b(h + 5, 10), b(h + 100, h), b(h, 1)]);
        assert_eq!(got, vec![(h, 2 * h), (10 * h, h)]);
        // Empty arrays and ranges past the address space are left out.
        assert_eq!(huge_ranges(&[b(3 * h, 0), b(usize::MAX - 5, 10)]), vec![]);
    }

    #[test]
    fn backing_leaves_the_contents_as_they_were() {
        let data: Vec<u64> = (0..(3 * HUGE_PAGE / 8) as u64).collect();
        let backed = back_with_huge_pages(&[crate::engine::memory::Bytes {
            start: data.as_ptr() as usize,
            len: std::mem::size_of_val(data.as_slice()),
        }]);
        assert!(backed.collapsed + backed.refused >= 3 * HUGE_PAGE);
        assert!(data.iter().enumerate().all(|(i, &v)| v == i as u64));
        // Where the kernel has transparent huge pages and `MADV_COLLAPSE`
        // (Linux 6.1), the two whole pages inside the array's own mapping
        // are collapsed.
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut numbers = release.split(|c: char| !c.is_ascii_digit());
        let version = numbers
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
            * 1000
            + numbers
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0);
        if thp.is_ok_and(|t| !t.contains("[never]")) && version >= 6001 {
            assert!(backed.collapsed >= 2 * HUGE_PAGE, "{backed:?}");
        }
    }
}
