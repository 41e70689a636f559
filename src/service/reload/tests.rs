//! Tests of the reload module: versions, rejection, the delta path.

use super::*;
use std::path::Path;

fn doc(topics: &[(&str, &str)]) -> String {
    let t: Vec<serde_json::Value> = topics
        .iter()
        .map(|(id, q)| {
            serde_json::json!({"id": id, "searches": [{"id": format!("{id}-s"), "query": q}]})
        })
        .collect();
    serde_json::json!({ "topics": t }).to_string()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tm-reload-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The state store of `d`, once no other instance holds it: a dropped
/// instance's worker may still hold it for the length of a merge.
fn store(d: &Path) -> StateStore {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match StateStore::open(&d.join("state")) {
            Ok(s) => break s,
            Err(e) if Instant::now() > until => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Drops an instance and waits until its worker has let go of the state
/// store: a test process that exits while another thread still closes
/// RocksDB aborts ("pthread lock: Invalid argument").
fn close(s: Arc<SearchVersions>, d: &Path) {
    drop(s);
    drop(store(d));
}

fn open(d: &Path, watch: bool) -> Result<Arc<SearchVersions>, ReloadError> {
    let store = Arc::new(store(d));
    let mut config = SearchesConfig::file(d.join("searches.json"));
    config.watch = watch;
    config.debounce = Duration::from_millis(50);
    SearchVersions::open(config, &Default::default(), store, Arc::default())
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

fn topics_of(s: &SearchVersions) -> Vec<String> {
    s.current()
        .catalog
        .topics
        .iter()
        .map(|t| t.id.clone())
        .collect()
}

#[test]
fn a_broken_file_is_rejected_with_its_errors_and_the_running_version_stays() {
    let d = dir("broken");
    std::fs::write(
        d.join("searches.json"),
        doc(&[("a", "alpha"), ("b", "beta")]),
    )
    .unwrap();
    let s = open(&d, false).unwrap();
    assert_eq!(s.current().meta.version, 1);
    std::fs::write(
        d.join("searches.json"),
        doc(&[("a", "alpha AND"), ("b", "beta")]),
    )
    .unwrap();
    let err = block(s.reload(false)).unwrap_err();
    let ReloadError::Invalid { problems, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("column"), "{}", problems[0]);
    assert_eq!(s.current().meta.version, 1);
    assert_eq!(err.http_status(), 422);
    let status = s.status_json();
    assert_eq!(status["version"], 1);
    assert_eq!(status["last_error"]["error"], "invalid");
    // Fixed: a new version, the error cleared.
    std::fs::write(
        d.join("searches.json"),
        doc(&[("a", "alpha OR gamma"), ("b", "beta")]),
    )
    .unwrap();
    let c = block(s.reload(false)).unwrap();
    assert_eq!(
        (c.outcome, c.active.version, c.previous_version),
        (ChangeOutcome::Activated, 2, 1)
    );
    assert!(s.status_json()["last_error"].is_null());
    // Reformatting the file is not a new version: the canonical form is.
    let pretty: serde_json::Value =
        serde_json::from_str(&doc(&[("b", "beta"), ("a", "alpha OR gamma")])).unwrap();
    std::fs::write(
        d.join("searches.json"),
        serde_json::to_string_pretty(&pretty).unwrap(),
    )
    .unwrap();
    assert_eq!(
        block(s.reload(false)).unwrap().outcome,
        ChangeOutcome::Unchanged
    );
    close(s, &d);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_query_that_used_to_panic_is_refused_by_put_and_the_worker_goes_on() {
    let d = dir("negated-near");
    std::fs::write(d.join("searches.json"), doc(&[("a", "alpha")])).unwrap();
    let s = open(&d, false).unwrap();
    for q in [
        "acme NEAR/2 NOT outage",
        "acme ONEAR/2 -outage",
        &"(".repeat(2000),
    ] {
        let err = block(s.put(doc(&[("a", "alpha"), ("b", q)]).into_bytes(), false)).unwrap_err();
        assert_eq!(err.http_status(), 422, "{q}: {err:?}");
        assert_eq!(s.current().meta.version, 1);
    }
    // The reload worker is alive: the next change is applied.
    let c = block(s.put(doc(&[("a", "alpha"), ("b", "beta")]).into_bytes(), false)).unwrap();
    assert_eq!((c.outcome, c.active.version), (ChangeOutcome::Activated, 2));
    close(s, &d);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_restart_uses_the_last_good_version_when_the_file_is_broken() {
    let d = dir("restart");
    std::fs::write(d.join("searches.json"), doc(&[("a", "alpha")])).unwrap();
    close(open(&d, false).unwrap(), &d);
    std::fs::write(d.join("searches.json"), "{\"topics\": [").unwrap();
    let s = open(&d, false).unwrap();
    assert_eq!(s.current().meta.version, 1);
    assert_eq!(topics_of(&s), vec!["a"]);
    assert_eq!(s.status_json()["last_error"]["error"], "invalid");
    close(s, &d);
    // With no stored version to fall back on, invalid searches stop the start.
    let e = dir("restart-fresh");
    std::fs::write(e.join("searches.json"), doc(&[("a", "alpha NEAR/x beta")])).unwrap();
    assert!(matches!(open(&e, false), Err(ReloadError::Invalid { .. })));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&e);
}

#[test]
fn rollback_returns_to_the_previous_version_and_survives_a_restart() {
    let d = dir("rollback");
    std::fs::write(d.join("searches.json"), doc(&[("a", "alpha")])).unwrap();
    let s = open(&d, false).unwrap();
    let v2 = block(s.put(doc(&[("a", "alpha"), ("b", "beta")]).into_bytes(), false)).unwrap();
    assert_eq!(v2.active.version, 2);
    assert_eq!(v2.active.source, "api");
    let back = block(s.rollback(None)).unwrap();
    assert_eq!((back.active.version, back.previous_version), (1, 2));
    assert_eq!(topics_of(&s), vec!["a"]);
    assert!(matches!(
        block(s.rollback(None)),
        Err(ReloadError::NoPrevious(1))
    ));
    assert!(matches!(
        block(s.rollback(Some(9))),
        Err(ReloadError::UnknownVersion(9))
    ));
    let h: Vec<u64> = s.history().unwrap().iter().map(|m| m.version).collect();
    assert_eq!(h, vec![1, 2]);
    close(s, &d);
    let s = open(&d, false).unwrap();
    assert_eq!(
        s.current().meta.version,
        1,
        "the rollback survives a restart"
    );
    // Forward again by number.
    assert_eq!(block(s.rollback(Some(2))).unwrap().active.version, 2);
    assert_eq!(topics_of(&s), vec!["a", "b"]);
    close(s, &d);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_drastic_shrink_needs_force() {
    let d = dir("shrink");
    let all: Vec<(String, &str)> = (0..10).map(|i| (format!("t{i}"), "alpha")).collect();
    let all: Vec<(&str, &str)> = all.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    std::fs::write(d.join("searches.json"), doc(&all)).unwrap();
    let s = open(&d, false).unwrap();
    let truncated = doc(&all[..3]).into_bytes();
    let e = block(s.put(truncated.clone(), false)).unwrap_err();
    assert!(
        matches!(
            e,
            ReloadError::Shrink {
                from: 10,
                to: 3,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.http_status(), 409);
    assert_eq!(s.current().meta.topics, 10);
    // Half may go without force; more needs it.
    assert_eq!(
        block(s.put(doc(&all[..5]).into_bytes(), false))
            .unwrap()
            .active
            .topics,
        5
    );
    assert_eq!(block(s.put(truncated, true)).unwrap().active.topics, 3);
    close(s, &d);
    let _ = std::fs::remove_dir_all(&d);
}

/// `active` (with its delta) matches each text as its searches compiled
/// whole do.
fn assert_matches_as_compiled_whole(active: &Active, texts: &[&str]) {
    let full =
        Matcher::new(&Catalog::from_file(&active.file, &Limits::default()).unwrap()).unwrap();
    let mut scratch = active.scratch();
    let mut full_scratch = full.scratch();
    for text in texts {
        let json = format!("{{\"id\":\"x\",\"text\":\"{text}\"}}");
        let docu = crate::document::Document::parse(json.as_bytes(), 1 << 20).unwrap();
        let mut got = Vec::new();
        active
            .for_each_match(&docu, &mut scratch, |m, t| {
                let ids: Vec<&str> = t.searches.iter().map(|x| m.search_id(*x)).collect();
                got.push(format!("{}:{}", m.topic_id(t.topic), ids.join(",")));
            })
            .unwrap();
        let mut want: Vec<String> = full
            .match_document(&docu, &mut full_scratch)
            .iter()
            .map(|t| {
                let ids: Vec<&str> = t.searches.iter().map(|x| full.search_id(*x)).collect();
                format!("{}:{}", full.topic_id(t.topic), ids.join(","))
            })
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{text}");
    }
}

#[test]
fn a_small_change_matches_as_a_full_compile_would() {
    let d = dir("delta");
    std::fs::write(
        d.join("searches.json"),
        doc(&[("a", "alpha"), ("b", "beta"), ("c", "gamma")]),
    )
    .unwrap();
    let s = open(&d, false).unwrap();
    let prev = s.current();
    // b changed, c removed, d added; a untouched.
    let next = doc(&[("a", "alpha"), ("b", "beta OR kappa"), ("d", "delta")]);
    let c = Candidate::parse("api", next.as_bytes()).unwrap();
    let (delta, topics, searches) = s.try_delta(&c, true, &prev).unwrap().expect("delta path");
    assert_eq!((topics, searches), (3, 3));
    let active = Active {
        matcher: prev.matcher.clone(),
        catalog: prev.catalog.clone(),
        file: Arc::new(c.file),
        digests: c.digests,
        delta: Some(delta),
        meta: prev.meta.clone(),
    };
    assert_matches_as_compiled_whole(
        &active,
        &[
            "alpha beta gamma delta kappa",
            "gamma",
            "kappa",
            "beta",
            "alpha delta",
            "nothing",
        ],
    );
    // A change hint relative to a version that is not the active one is
    // not trusted: every topic is compared (b changed, c removed, d added).
    let mut hinted = Candidate::parse("api", next.as_bytes()).unwrap();
    hinted.changed = Some(("not the active version".into(), vec!["a".into()]));
    let (stale_hint, _, _) = s
        .try_delta(&hinted, true, &prev)
        .unwrap()
        .expect("delta path");
    let mut found = stale_hint.changed.clone();
    found.sort();
    assert_eq!(found, ["b", "c", "d"]);
    // Relative to the active version, it is trusted as given.
    hinted.changed = Some((
        prev.meta.hash.clone(),
        vec!["b".into(), "c".into(), "d".into()],
    ));
    let (trusted, _, _) = s
        .try_delta(&hinted, true, &prev)
        .unwrap()
        .expect("delta path");
    assert_eq!(trusted.changed, ["b", "c", "d"]);
    assert_eq!(trusted.matcher.search_count(), 2, "b and d compiled");
    // A change on top of the unmerged delta (a merge still compiling) is a
    // delta against the same base: both changes' topics, compiled together.
    let active = Arc::new(active);
    let next = doc(&[
        ("a", "alpha OR omega"),
        ("b", "beta OR kappa"),
        ("d", "delta"),
        ("e", "eps"),
    ]);
    let c = Candidate::parse("api", next.as_bytes()).unwrap();
    let (delta, topics, _) = s
        .try_delta(&c, true, &active)
        .unwrap()
        .expect("delta on a delta");
    assert_eq!(topics, 4);
    assert_eq!(
        delta.matcher.search_count(),
        4,
        "a, b, d and e against the base"
    );
    let second = Active {
        matcher: active.matcher.clone(),
        catalog: active.catalog.clone(),
        file: Arc::new(c.file),
        digests: c.digests,
        delta: Some(delta),
        meta: prev.meta.clone(),
    };
    assert_matches_as_compiled_whole(
        &second,
        &[
            "alpha beta gamma delta kappa eps",
            "omega",
            "gamma",
            "kappa",
            "eps",
            "beta",
            "nothing",
        ],
    );
    // A small change is validated like a whole one: its queries, and
    // ids across the whole file.
    let bad = doc(&[("a", "alpha"), ("b", "beta AND"), ("c", "gamma")]);
    let c = Candidate::parse("api", bad.as_bytes()).unwrap();
    assert!(matches!(
        s.try_delta(&c, true, &prev),
        Err(ReloadError::Invalid { .. })
    ));
    let mut dup: serde_json::Value = serde_json::from_str(&doc(&[
        ("a", "alpha"),
        ("b", "beta"),
        ("c", "gamma"),
        ("e", "eps"),
    ]))
    .unwrap();
    dup["topics"][3]["searches"][0]["id"] = "a-s".into();
    let c = Candidate::parse("api", dup.to_string().as_bytes()).unwrap();
    let Err(ReloadError::Invalid { problems, .. }) = s.try_delta(&c, true, &prev) else {
        panic!("a repeated search id was accepted")
    };
    assert!(problems[0].contains("\"a-s\""), "{problems:?}");
    close(s, &d);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_watcher_sees_a_file_replaced_by_rename() {
    let d = dir("watch");
    let path = d.join("searches.json");
    std::fs::write(&path, doc(&[("a", "alpha")])).unwrap();
    let s = open(&d, true).unwrap();
    // An editor's save: write a temporary file, rename it over.
    let tmp = d.join(".searches.json.swp");
    std::fs::write(&tmp, doc(&[("a", "alpha"), ("c", "gamma")])).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while s.current().meta.version != 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.current().meta.version, 2);
    assert_eq!(s.current().meta.source, format!("file:{}", path.display()));
    // A broken save is reported and changes nothing.
    std::fs::write(&path, doc(&[("a", "(alpha")])).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while s.status_json()["last_error"].is_null() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.status_json()["last_error"]["error"], "invalid");
    assert_eq!(s.current().meta.version, 2);
    close(s, &d);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn stored_versions_are_pruned_but_never_the_active_one_or_its_rollback_target() {
    let d = dir("prune");
    std::fs::write(d.join("searches.json"), doc(&[("a", "alpha")])).unwrap();
    let store = Arc::new(store(&d));
    let mut config = SearchesConfig::file(d.join("searches.json"));
    config.watch = false;
    config.keep_versions = 3;
    let s = SearchVersions::open(config, &Default::default(), store, Arc::default()).unwrap();
    for i in 0..6 {
        let body = doc(&[("a", "alpha"), ("b", &format!("beta{i}"))]);
        let c = block(s.put(body.into_bytes(), false)).unwrap();
        assert_eq!(c.outcome, ChangeOutcome::Activated);
    }
    // Small changes are stored as patches of the version their matcher
    // was compiled from: that version is kept while they are.
    let kept: Vec<u64> = s.history().unwrap().iter().map(|m| m.version).collect();
    for &v in &kept {
        s.version_document(v)
            .expect("every kept version reads back");
    }
    // At most one more: the base of the oldest kept patch (a merge may
    // have stored that patch whole since; it is pruned at a later change).
    let extra =
        |kept: &[u64], newest: [u64; 3]| kept.iter().filter(|v| !newest.contains(v)).count();
    assert!(
        [5, 6, 7].iter().all(|v| kept.contains(v)) && extra(&kept, [5, 6, 7]) <= 1,
        "the newest three and the base of patches: {kept:?}"
    );
    // The rollback target is still there.
    let c = block(s.rollback(None)).unwrap();
    assert_eq!(c.active.version, 6);
    // After a rollback, the next change keeps the version it rolled back
    // from only while it is the rollback target.
    let c = block(s.put(doc(&[("z", "zeta")]).into_bytes(), true)).unwrap();
    assert_eq!(c.active.version, 8);
    let kept: Vec<u64> = s.history().unwrap().iter().map(|m| m.version).collect();
    assert!(kept.contains(&8) && kept.contains(&6), "{kept:?}");
    assert!(extra(&kept, [6, 7, 8]) <= 1, "{kept:?}");
    close(s, &d);
}

fn meta(version: u64, c: &Candidate) -> VersionMeta {
    VersionMeta {
        version,
        hash: c.hash.clone(),
        created_at: now_rfc3339(),
        source: "test".into(),
        compile_ms: 0,
        topics: c.file.topics.len(),
        searches: c.file.topics.len(),
    }
}

#[test]
fn a_version_stored_as_a_patch_reads_back_whole_and_is_made_whole() {
    let d = dir("patch");
    let st = store(&d);
    let base = Candidate::parse(
        "t",
        doc(&[("a", "alpha"), ("b", "beta"), ("c", "gamma")]).as_bytes(),
    )
    .unwrap();
    let base_doc = base.canonical.clone().unwrap();
    st.add_version(&meta(1, &base), &base_doc).unwrap();
    // b changed, c removed, d added.
    let next = Candidate::parse(
        "t",
        doc(&[("a", "alpha"), ("b", "beta OR kappa"), ("d", "delta")]).as_bytes(),
    )
    .unwrap();
    let next_doc = next.canonical.clone().unwrap();
    let changed = ["b".to_string(), "c".to_string(), "d".to_string()];
    let patch = stored::patch_json(&next.file.topics, &changed);
    assert!(
        !String::from_utf8_lossy(&patch).contains("alpha"),
        "a is not in the patch"
    );
    st.add_version_patch(&meta(2, &next), 1, &patch).unwrap();
    assert!(stored::is_whole(&st, 1).unwrap());
    assert!(!stored::is_whole(&st, 2).unwrap());
    assert_eq!(stored::document(&st, 2).unwrap(), next_doc, "base + patch");
    assert_eq!(stored::bases_of(&st, &[1, 2]), vec![1]);
    // Made whole (the merge): same document, no longer a patch.
    stored::make_whole_if_patch(&st, 2, || next_doc.clone());
    assert!(stored::is_whole(&st, 2).unwrap());
    assert_eq!(stored::document(&st, 2).unwrap(), next_doc);
    assert!(stored::bases_of(&st, &[1, 2]).is_empty());
    // A patch whose base is gone is an error that says so, not a panic.
    st.add_version_patch(&meta(3, &next), 1, &patch).unwrap();
    st.delete_versions(&[1]).unwrap();
    let e = stored::document(&st, 3).unwrap_err().to_string();
    assert!(e.contains("patch of version 1, which is gone"), "{e}");
    assert!(matches!(
        stored::document(&st, 9),
        Err(ReloadError::UnknownVersion(9))
    ));
    drop(st);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn one_topic_changes_hash_and_store_as_the_whole_document_would_and_survive_a_restart() {
    let d = dir("one-topic");
    std::fs::write(
        d.join("searches.json"),
        doc(&[("a", "alpha"), ("b", "beta")]),
    )
    .unwrap();
    let s = open(&d, false).unwrap();
    let body = br#"{"id":"c","searches":[{"id":"c-s","query":"gamma"}]}"#;
    let set = block(s.set_topic("c", body, false)).unwrap();
    assert_eq!(set.active.version, 2);
    let whole = Candidate::parse(
        "t",
        doc(&[("a", "alpha"), ("b", "beta"), ("c", "gamma")]).as_bytes(),
    )
    .unwrap();
    assert_eq!(set.active.hash, whole.hash, "the hash of the same topics");
    assert_eq!(
        (set.active.topics, set.active.searches),
        (3, 3),
        "the counts kept with the digests"
    );
    assert_eq!(s.document().unwrap(), whole.canonical.clone().unwrap());
    let deleted = block(s.delete_topic("a", false)).unwrap();
    assert_eq!(deleted.active.version, 3);
    let after = Candidate::parse("t", doc(&[("b", "beta"), ("c", "gamma")]).as_bytes()).unwrap();
    assert_eq!(deleted.active.hash, after.hash);
    assert_eq!((deleted.active.topics, deleted.active.searches), (2, 2));
    assert_eq!(s.document().unwrap(), after.canonical.clone().unwrap());
    // Back to the first topics by two one-topic changes: the hash of
    // version 1 again.
    block(s.delete_topic("c", false)).unwrap();
    let back = block(s.set_topic(
        "a",
        br#"{"id":"a","searches":[{"id":"a-s","query":"alpha"}]}"#,
        false,
    ))
    .unwrap();
    assert_eq!(back.active.version, 1, "the stored version with that hash");
    // Every version reads back; a restart (whatever the merges had
    // stored whole by then) compiles the active one from the store.
    let docs: Vec<(u64, Vec<u8>)> = s
        .history()
        .unwrap()
        .iter()
        .map(|m| (m.version, s.version_document(m.version).unwrap()))
        .collect();
    assert_eq!(docs.len(), 4);
    close(s, &d);
    let s = open(&d, false).unwrap();
    assert_eq!(s.current().meta.version, 1);
    assert_eq!(topics_of(&s), vec!["a", "b"]);
    for (v, want) in &docs {
        assert_eq!(&s.version_document(*v).unwrap(), want);
    }
    // A restart on a version stored as a patch compiles it from its base
    // and the patch.
    let v5 = block(s.set_topic(
        "d",
        br#"{"id":"d","searches":[{"id":"d-s","query":"delta"}]}"#,
        false,
    ))
    .unwrap();
    assert_eq!(v5.active.version, 5);
    close(s, &d);
    let s = open(&d, false).unwrap();
    assert_eq!(s.current().meta.hash, v5.active.hash);
    assert_eq!(topics_of(&s), vec!["a", "b", "d"]);
    close(s, &d);
    let _ = std::fs::remove_dir_all(&d);
}
