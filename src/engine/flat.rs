//! Lists and strings packed into flat arrays, read at random while
//! matching: a feature's posting list ([`PostEntry`]), lists of `u32` per
//! key ([`Postings`]) and ids ([`Ids`]). Each is one or two allocations
//! however many keys it has, so that the matcher's arrays can be moved to
//! 2 MiB pages (`engine::memory`) and a lookup touches few cache lines.

/// One entry of a feature's posting list, 16 bytes: a search it anchors,
/// that search's gate (`confirm::gate`) and where its confirm branches
/// start in `Compiled::confirm`. The gate is read for every entry a
/// document wakes (~125 per post at 100,000 searches from real posts'
/// words), the rest only when it opens: then the search's confirm
/// branches are fetched at once, with no read of where they are first
/// (that dependent read was a cache miss per candidate). In two arrays,
/// the start of each list woken was two cache misses instead of one
/// (BENCHMARKS.md, eleventh session).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PostEntry {
    pub gate: u64,
    pub search: u32,
    pub confirm_at: u32,
}

/// Ids (of topics, of searches) in one string, each where the one before
/// ends: at 100,000 searches a record reads its topic's and its search's
/// ids at random, and as a separate allocation each (`Box<str>`) they were
/// scattered over the heap's 4 KiB pages, a cache miss and often a page
/// walk each, most of the time spent writing records (`perf annotate`,
/// BENCHMARKS.md, eleventh session). Here they are packed, and read in
/// 2 MiB pages where the system gives them (`engine::memory`); an id
/// costs its bytes and 4 more instead of 16 and a heap block.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ids {
    text: String,
    /// `off[i]..off[i + 1]`: id `i` in `text`.
    off: Vec<u32>,
}

impl Ids {
    /// `ids` packed; `None` when they are longer together than 4 GiB.
    pub(super) fn of<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> Option<Ids> {
        let mut off = Vec::with_capacity(ids.len() + 1);
        off.push(0);
        let mut text = String::new();
        for id in ids {
            text.push_str(id);
            off.push(u32::try_from(text.len()).ok()?);
        }
        Some(Ids { text, off })
    }

    /// Id `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &str {
        &self.text[self.off[i] as usize..self.off[i + 1] as usize]
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.off.len() - 1
    }

    /// Brings where id `i` is into cache: no read, so it cannot stall
    /// (the bytes themselves with [`Ids::prefetch`], once this is in).
    #[inline]
    pub fn prefetch_key(&self, i: usize) {
        prefetch_nth(&self.off, i);
    }

    /// Brings id `i`'s first bytes into cache.
    #[inline]
    pub fn prefetch(&self, i: usize) {
        if let Some(&o) = self.off.get(i) {
            prefetch_nth(self.text.as_bytes(), o as usize);
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.text.len() + self.off.len() * 4
    }

    /// Its arrays, as byte ranges (`engine::memory`).
    pub(super) fn hot_arrays(&self, out: &mut Vec<super::memory::Bytes>) {
        use super::memory::bytes_of;
        out.extend([bytes_of(self.text.as_bytes()), bytes_of(&self.off)]);
    }
}

/// Lists of `u32` per key in one flat array (compressed sparse rows).
#[derive(Clone, Debug, Default)]
pub(crate) struct Postings {
    off: Vec<u32>,
    items: Vec<u32>,
}

impl Postings {
    pub(super) fn from_lists(lists: &[Vec<u32>]) -> Postings {
        let mut p = Postings::with_capacity(lists.len(), 0);
        for l in lists {
            p.push(l);
        }
        p
    }

    /// Empty, with room for `keys` lists of `items` items in all.
    pub(super) fn with_capacity(keys: usize, items: usize) -> Postings {
        let mut off = Vec::with_capacity(keys + 1);
        off.push(0);
        Postings {
            off,
            items: Vec::with_capacity(items),
        }
    }

    /// Appends the list of the next key.
    pub(super) fn push(&mut self, list: &[u32]) {
        self.items.extend_from_slice(list);
        self.off.push(self.items.len() as u32);
    }

    /// Appends every list of `other`, as keys after this one's.
    pub(super) fn append(&mut self, other: &Postings) {
        let base = self.items.len() as u32;
        self.items.extend_from_slice(&other.items);
        self.off.extend(other.off[1..].iter().map(|&o| base + o));
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.off.len() - 1
    }

    /// The list of key `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u32] {
        &self.items[self.off[i] as usize..self.off[i + 1] as usize]
    }

    pub(super) fn heap_bytes(&self) -> usize {
        (self.off.len() + self.items.len()) * 4
    }

    /// Its arrays, as byte ranges (`engine::memory`).
    pub(super) fn hot_arrays(&self, out: &mut Vec<super::memory::Bytes>) {
        use super::memory::bytes_of;
        out.extend([bytes_of(&self.off), bytes_of(&self.items)]);
    }

    /// Where key `i`'s list starts in the items.
    pub fn start(&self, i: usize) -> u32 {
        self.off[i]
    }

    /// Brings the item at `at` (a list's [`Postings::start`]) into cache.
    #[inline]
    pub fn prefetch_at(&self, at: u32) {
        prefetch_nth(&self.items, at as usize);
    }

    /// Brings where key `i`'s list starts into cache ([`super::prefetch`]).
    #[inline]
    pub fn prefetch_key(&self, i: usize) {
        prefetch_nth(&self.off, i);
    }

    /// Brings the start of key `i`'s list into cache.
    #[inline]
    pub fn prefetch_list(&self, i: usize) {
        if let Some(&o) = self.off.get(i) {
            prefetch_nth(&self.items, o as usize);
        }
    }
}

/// Brings `items[n]` into cache, if there is one ([`super::prefetch`]).
#[inline]
fn prefetch_nth<T>(items: &[T], n: usize) {
    if let Some(item) = items.get(n) {
        super::prefetch(item);
    }
}

#[cfg(test)]
mod tests {
    use super::{Ids, Postings};

    #[test]
    fn ids_give_back_each_id_packed_one_after_another() {
        let ids = Ids::of(["rt1", "", "r1-0", "é\"x"].into_iter()).unwrap();
        assert_eq!(ids.len(), 4);
        let back: Vec<&str> = (0..ids.len()).map(|i| ids.get(i)).collect();
        assert_eq!(back, ["rt1", "", "r1-0", "é\"x"]);
        assert_eq!(ids.text, "rt1r1-0é\"x");
        assert_eq!(ids.heap_bytes(), ids.text.len() + 5 * 4);
        let none = Ids::of(std::iter::empty()).unwrap();
        assert_eq!(none.len(), 0);
    }

    #[test]
    fn a_list_starts_where_its_items_are() {
        let p = Postings::from_lists(&[vec![7, 8], vec![], vec![9]]);
        assert_eq!(p.len(), 3);
        for i in 0..p.len() {
            let at = p.start(i) as usize;
            assert_eq!(&p.items[at..at + p.get(i).len()], p.get(i));
        }
        assert_eq!(p.get(2), [9]);
    }
}
