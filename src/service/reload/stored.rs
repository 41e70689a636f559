//! Versions in the store: whole, or as a patch of a whole version.
//!
//! A version made by the delta path (at most 64 topics differ from the
//! version its matcher was compiled from, the *base*) is stored as a
//! patch of that base: `{"topics":{"ID":TOPIC,"ID2":null}}`, every topic
//! that differs, `null` for a removed one. A one-topic change then writes
//! a few kilobytes instead of the whole document (10 MB at 100,000
//! searches, 25–90 ms synced). The base is always stored whole:
//!
//! * a version compiled whole by a change is stored whole;
//! * the merge that makes a delta version the next base first replaces
//!   its patch by its whole document ([`StateStore::make_whole`]), and a
//!   stored patch version compiled at start or by a rollback is made
//!   whole the same way;
//! * before writing a patch, the base is checked to be whole (else the
//!   version is stored whole);
//! * pruning keeps every base a kept patch names.
//!
//! Reading a patch version's document ([`document`]) applies the patch to
//! its base and writes the canonical document, as if it had been stored
//! whole.

use std::collections::BTreeMap;

use super::*;

/// The patch of a version whose topics `changed` differ from its base:
/// each of them from `topics` (the version's topics among them), `null`
/// where `topics` has none.
pub(super) fn patch_json(topics: &[Arc<TopicSpec>], changed: &[String]) -> Vec<u8> {
    let mut patch: BTreeMap<&str, Option<&TopicSpec>> =
        changed.iter().map(|id| (id.as_str(), None)).collect();
    for t in topics {
        if let Some(slot) = patch.get_mut(t.id.as_str()) {
            *slot = Some(&**t);
        }
    }
    serde_json::to_vec(&serde_json::json!({ "topics": patch })).expect("a patch serializes")
}

/// The canonical document of stored version `n` (version 0 holds no
/// topics): stored whole, or its base's with its patch applied.
///
/// # Errors
///
/// Unknown versions (never stored, or no longer kept), a patch whose base
/// is gone or that does not parse, and store errors.
pub(super) fn document(store: &StateStore, n: u64) -> Result<Vec<u8>, ReloadError> {
    if n == 0 {
        return Ok(SearchesFile::canonical_json([]));
    }
    if let Some(doc) = store.version_document(n)? {
        return Ok(doc);
    }
    let (base, patch) = store
        .version_patch(n)?
        .ok_or(ReloadError::UnknownVersion(n))?;
    let base_doc = store.version_document(base)?.ok_or_else(|| {
        ReloadError::Store(format!(
            "searches version {n} is stored as a patch of version {base}, which is gone"
        ))
    })?;
    let corrupt = |e: serde_json::Error| {
        ReloadError::Store(format!(
            "searches version {n}: stored patch unreadable: {e}"
        ))
    };
    let mut file: SearchesFile = serde_json::from_slice(&base_doc).map_err(corrupt)?;
    #[derive(serde::Deserialize)]
    struct Patch {
        topics: BTreeMap<String, Option<TopicSpec>>,
    }
    let patch: Patch = serde_json::from_slice(&patch).map_err(corrupt)?;
    file.topics.retain(|t| !patch.topics.contains_key(&t.id));
    file.topics
        .extend(patch.topics.into_values().flatten().map(Arc::new));
    Ok(SearchesFile::canonical_json(
        file.topics.iter().map(|t| &**t),
    ))
}

/// Whether stored version `n` can be the base of a patch: stored whole.
pub(super) fn is_whole(store: &StateStore, n: u64) -> Result<bool, ReloadError> {
    Ok(n != 0 && store.version_patch(n)?.is_none())
}

/// Replaces the patch of version `n` by `document` if it is stored as a
/// patch (a version about to become a base). Failures are logged: the
/// version stays a patch, and [`is_whole`] keeps patches off it.
pub(super) fn make_whole_if_patch(store: &StateStore, n: u64, document: impl FnOnce() -> Vec<u8>) {
    match store.version_patch(n) {
        Ok(None) => {}
        Ok(Some(_)) => match store.make_whole(n, &document()) {
            Ok(()) => tracing::debug!(version = n, "searches version stored whole"),
            Err(e) => {
                tracing::warn!(version = n, error = %e, "storing the searches version whole failed; it stays a patch")
            }
        },
        Err(e) => tracing::warn!(version = n, error = %e, "reading the searches version failed"),
    }
}

/// The versions among `kept` that some kept patch version is based on:
/// pruning must keep them.
pub(super) fn bases_of(store: &StateStore, kept: &[u64]) -> Vec<u64> {
    kept.iter()
        .filter_map(|&v| store.version_patch(v).ok().flatten().map(|(base, _)| base))
        .collect()
}
