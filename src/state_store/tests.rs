//! Unit tests of the state store: reopening, versions, jobs, and writes
//! that fail (injected, or on a full filesystem).

use super::*;

#[test]
fn checkpoints_survive_reopening() {
    let dir = std::env::temp_dir().join(format!("tm-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let a = TopicPartition::new("in", 0);
    let b = TopicPartition::new("in", 2);
    {
        let s = StateStore::open(&dir).unwrap();
        assert_eq!(s.get(&a).unwrap(), None);
        s.commit(&[(a.clone(), 10), (b.clone(), 7)], &[]).unwrap();
        s.commit(&[(a.clone(), 12)], std::slice::from_ref(&b))
            .unwrap();
    }
    let s = StateStore::open(&dir).unwrap();
    assert_eq!(s.get(&a).unwrap(), Some(12));
    assert_eq!(s.get(&b).unwrap(), None);
    assert_eq!(s.all().unwrap(), vec![(a, 12)]);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

fn meta(version: u64) -> VersionMeta {
    VersionMeta {
        version,
        hash: format!("h{version}"),
        created_at: "2026-01-01T00:00:00Z".into(),
        source: "api".into(),
        compile_ms: 1,
        topics: 1,
        searches: 2,
    }
}

#[test]
fn versions_are_kept_in_order_with_their_documents_and_the_active_one() {
    let dir = std::env::temp_dir().join(format!("tm-versions-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let s = StateStore::open(&dir).unwrap();
        assert_eq!(s.active_version().unwrap(), None);
        s.add_version(&meta(1), b"{one}").unwrap();
        s.add_version(&meta(300), b"{three hundred}").unwrap();
        s.add_version(&meta(2), b"{two}").unwrap();
        assert_eq!(s.active_version().unwrap(), Some(2));
        s.set_active_version(1).unwrap();
        s.commit(&[(TopicPartition::new("in", 0), 5)], &[]).unwrap();
    }
    let s = StateStore::open(&dir).unwrap();
    assert_eq!(s.active_version().unwrap(), Some(1));
    let v: Vec<u64> = s.versions().unwrap().iter().map(|m| m.version).collect();
    assert_eq!(v, vec![1, 2, 300]);
    assert_eq!(s.versions().unwrap()[2], meta(300));
    assert_eq!(
        s.version_document(300).unwrap().unwrap(),
        b"{three hundred}"
    );
    assert_eq!(s.version_document(4).unwrap(), None);
    drop(s);
    let r = StateStore::open_read_only(&dir).unwrap();
    assert_eq!(r.versions().unwrap().len(), 3);
    drop(r);
    let _ = std::fs::remove_dir_all(&dir);
}

mod full_disk {
    use crate::state_store::*;

    use crate::small_fs::small_fs;

    #[test]
    fn an_injected_write_failure_reopens_the_store_and_loses_no_earlier_write() {
        let dir = std::env::temp_dir().join(format!("tm-store-inject-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = StateStore::open(&dir).unwrap();
        let tp = TopicPartition::new("t", 0);
        s.commit(&[(tp.clone(), 10)], &[]).unwrap();
        s.inject_failures.store(2, Relaxed);
        assert!(matches!(
            s.commit(&[(tp.clone(), 11)], &[]),
            Err(StoreError::Injected)
        ));
        assert!(s.is_broken(), "a failed write marks the store broken");
        assert!(s.commit(&[(tp.clone(), 12)], &[]).is_err());
        // Reads still answer the last written value meanwhile.
        assert_eq!(s.get(&tp).unwrap(), Some(10));
        // The next write reopens the store (the RocksDB handle is replaced)
        // and succeeds.
        s.commit(&[(tp.clone(), 13)], &[]).unwrap();
        assert!(!s.is_broken());
        assert_eq!(s.get(&tp).unwrap(), Some(13));
        drop(s);
        let s = StateStore::open(&dir).unwrap();
        assert_eq!(s.get(&tp).unwrap(), Some(13), "durable after a restart");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_disk_fails_the_write_and_it_succeeds_once_space_is_back() {
        let Some(fs) = small_fs("full", 4) else {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        };
        let dir = fs.0.clone();
        let s = StateStore::open(&dir.join("state")).unwrap();
        let tp = TopicPartition::new("t", 0);
        s.commit(&[(tp.clone(), 1)], &[]).unwrap();
        // Fill the filesystem.
        let filler = fs.fill();
        let mut failed = None;
        let mut last_ok = 1;
        for i in 2..2000 {
            let big = vec![StoredJob {
                id: i as u64,
                bytes: vec![7u8; 4096],
            }];
            match s.commit_with_jobs(&[(tp.clone(), i)], &[], &big) {
                Ok(()) => last_ok = i,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let failed = failed.expect("a write fails once the filesystem is full");
        assert!(failed.to_string().contains("No space left"), "{failed}");
        assert!(s.is_broken());
        // Still full: the reopen or the write fails again, nothing panics.
        assert!(s.commit(&[(tp.clone(), 4000)], &[]).is_err());
        std::fs::remove_file(&filler).unwrap();
        // Space is back: the next write reopens the store and succeeds, and
        // every write before the failed one is there.
        let before = s.get(&tp);
        s.commit(&[(tp.clone(), 5000)], &[]).unwrap();
        assert!(!s.is_broken());
        assert_eq!(s.get(&tp).unwrap(), Some(5000), "(before: {before:?})");
        assert_eq!(
            s.jobs().unwrap().len() as i64 + 1,
            last_ok,
            "the jobs written before the failure"
        );
        drop(s);
        drop(fs);
    }
}
