//! Where the matcher's randomly read arrays are, for the caller to place
//! them better in memory (2 MiB pages: `huge_pages` in the crate root).
//!
//! At 100,000 searches a document's matching reads a few dozen places at
//! random in tens of megabytes: the term table, the posting lists and
//! their gates, the confirm lists, the searches' nodes and leaves, and
//! the per-feature and per-leaf arrays of a [`Scratch`]. The engine does
//! not decide how memory is paged (it stays free of operating-system
//! calls); it only lists those arrays, as byte ranges, with
//! [`Matcher::hot_memory`] and [`Scratch::hot_memory`].

use super::{Matcher, Scratch};

/// A byte range of memory: its first byte's address and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes {
    /// Address of the first byte.
    pub start: usize,
    /// Length in bytes.
    pub len: usize,
}

/// The bytes `items` occupy.
pub(crate) fn bytes_of<T>(items: &[T]) -> Bytes {
    Bytes {
        start: items.as_ptr() as usize,
        len: std::mem::size_of_val(items),
    }
}

impl Matcher {
    /// The compiled arrays a document's matching reads at random (module
    /// doc); empty ones included.
    #[must_use]
    pub fn hot_memory(&self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.c.hot_arrays(&mut out);
        out
    }
}

impl Scratch {
    /// This scratch space's arrays kept per feature, search or leaf (module
    /// doc).
    #[must_use]
    pub fn hot_memory(&self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.hot_arrays(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::Matcher;
    use crate::query::Limits;
    use crate::searches::Catalog;

    #[test]
    fn the_hot_memory_covers_the_term_table_and_the_posting_lists() {
        let catalog = Catalog::from_json(
            br#"{"topics":[{"id":"t","searches":[{"id":"s","query":"acme AND (rocket OR lov*)"}]}]}"#,
            &Limits::default(),
        )
        .unwrap();
        let m = Matcher::new(&catalog).unwrap();
        let ranges = m.hot_memory();
        let total: usize = ranges.iter().map(|b| b.len).sum();
        assert!(ranges.len() >= 20, "{ranges:?}");
        // Three terms' slots (16 bytes each, 16 slots at least) alone.
        assert!(total >= 16 * 16, "{total}");
        let scratch = m.scratch();
        assert!(scratch.hot_memory().iter().any(|b| b.len > 0));
    }
}
