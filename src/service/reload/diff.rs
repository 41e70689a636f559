//! `/searches/diff`: what changed between two stored versions, topic by
//! topic, from their stored documents.

use super::*;

impl SearchVersions {
    /// `/searches/diff`: the topics `to` added, removed and changed against
    /// `from` (ids, sorted; for a changed topic, the ids of the searches
    /// added, removed and changed).
    ///
    /// # Errors
    ///
    /// As [`SearchVersions::version_document`].
    pub fn diff(&self, from: u64, to: u64) -> Result<serde_json::Value, ReloadError> {
        let topics = |n: u64| -> Result<
            std::collections::BTreeMap<String, serde_json::Value>,
            ReloadError,
        > {
            let doc: serde_json::Value = serde_json::from_slice(&self.version_document(n)?)
                .map_err(|e| ReloadError::Store(format!("stored version {n}: {e}")))?;
            Ok(by_id(doc.get("topics")))
        };
        let (old, new) = (topics(from)?, topics(to)?);
        let mut changed = Vec::new();
        for (id, t) in &new {
            let Some(o) = old.get(id) else { continue };
            if o == t {
                continue;
            }
            let (os, ns) = (by_id(o.get("searches")), by_id(t.get("searches")));
            changed.push(serde_json::json!({
                "topic": id,
                "searches_added": ns.keys().filter(|k| !os.contains_key(*k)).collect::<Vec<_>>(),
                "searches_removed": os.keys().filter(|k| !ns.contains_key(*k)).collect::<Vec<_>>(),
                "searches_changed": ns.iter().filter(|(k, v)| os.get(*k).is_some_and(|o| o != *v)).map(|(k, _)| k).collect::<Vec<_>>(),
                "settings_changed": strip(o, "searches") != strip(t, "searches"),
            }));
        }
        Ok(serde_json::json!({
            "from": from,
            "to": to,
            "topics_added": new.keys().filter(|k| !old.contains_key(*k)).collect::<Vec<_>>(),
            "topics_removed": old.keys().filter(|k| !new.contains_key(*k)).collect::<Vec<_>>(),
            "topics_changed": changed,
        }))
    }
}

/// The objects of a JSON array by their `"id"`.
fn by_id(
    list: Option<&serde_json::Value>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    list.and_then(|l| l.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t.get("id")?.as_str()?.to_string(), t.clone())))
        .collect()
}

/// `v` without its key `key`.
fn strip(v: &serde_json::Value, key: &str) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove(key);
    }
    v
}
