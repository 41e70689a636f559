//! Tests of the drain scheduler.

use super::*;

fn classes() -> Classes {
    Classes::new(vec![
        ("owned".into(), vec!["owned".into()], vec![]),
        (
            "dm".into(),
            vec![],
            vec![("type".into(), vec!["dm".into()])],
        ),
        ("rest".into(), vec![], vec![]),
    ])
    .unwrap()
}

fn jobs(policy: Policy) -> Jobs {
    let dir = std::env::temp_dir().join(format!("tm-jobs-{}", std::process::id()));
    Jobs::load(
        Vec::new(),
        classes(),
        CatchUp {
            policy,
            threshold: 10,
        },
        &dir,
        0,
    )
    .unwrap()
}

/// A catch-up job over `ranges`; its id.
fn catch_up(j: &mut Jobs, ranges: Vec<(TopicPartition, i64, i64)>) -> u64 {
    j.create(JobKind::CatchUp, ranges, None, None, None, 0).id
}

#[test]
fn a_topic_that_fixes_the_class_is_read_by_that_class_only() {
    let mut j = jobs(Policy::Strict);
    let id = catch_up(
        &mut j,
        vec![
            (TopicPartition::new("owned", 0), 100, 200),
            (TopicPartition::new("social", 0), 50, 80),
        ],
    );
    let job = j.running(id).unwrap();
    assert_eq!(job.ranges[0].cursors, vec![100, 200, 200]);
    assert_eq!(job.ranges[1].cursors, vec![80, 50, 50]);
    assert_eq!(job.current_classes(), vec![0]);
    // Strict: only the first class has lanes.
    let plan = j.lanes(|_, _| true).unwrap();
    assert_eq!(plan.classes.len(), 1);
    assert_eq!(
        plan.classes[0].1,
        vec![(TopicPartition::new("owned", 0), 100)]
    );
    // The group may only commit the lowest unfinished cursor.
    let lows = j.low_waters();
    assert_eq!(lows[&TopicPartition::new("owned", 0)], 100);
    assert_eq!(lows[&TopicPartition::new("social", 0)], 50);
}

#[test]
fn cursors_advance_classes_finish_in_turn_and_the_job_ends() {
    let mut j = jobs(Policy::Strict);
    let id = catch_up(&mut j, vec![(TopicPartition::new("social", 1), 0, 3)]);
    // Class 0 has nothing in this topic: done at once.
    assert!(j.running(id).unwrap().class_done(0));
    for class in [1, 2] {
        assert_eq!(j.running(id).unwrap().current_classes(), vec![class]);
        for offset in 0..3 {
            let Lookup::Take(r) = j.look(id, class, "social", 1, offset) else {
                panic!("offset {offset} not taken");
            };
            j.handled(id, r, class, offset, Some(1_000), offset == 1);
        }
        // A re-fetched message before the cursor is skipped.
        assert_eq!(j.look(id, class, "social", 1, 0), Lookup::Stale);
    }
    assert!(j.running(id).is_none(), "the job ended");
    // Read to the end, but in only once the output acknowledged it.
    assert!(j.status_json()[0]["finished_ms"].is_null());
    assert!(j.status_json()[0]["classes"][1]["finished_after_seconds"].is_null());
    let finishes = j.take_finishes();
    assert_eq!(finishes, vec![(id, Some(1)), (id, Some(2)), (id, None)]);
    assert!(!j.has_finishes());
    let stored = j.stamp(&finishes);
    assert_eq!(stored.len(), 1, "the stamped job, once");
    assert!(j.stamp(&finishes).is_empty(), "stamped once");
    let stored = j.status_json();
    assert!(stored[0]["finished_ms"].is_u64());
    assert!(stored[0]["classes"][2]["finished_after_seconds"].is_f64());
    assert_eq!(stored[0]["state"], "done");
    assert_eq!(stored[0]["classes"][1]["documents"], 1);
    assert!(j.low_waters().is_empty());
}

#[test]
fn weighted_serves_the_class_furthest_behind_its_weight() {
    let mut j = jobs(Policy::Weighted(vec![60, 30, 10]));
    let id = j
        .create(
            JobKind::Replay,
            vec![(TopicPartition::new("social", 0), 0, 1000)],
            Some((0, 1)),
            None,
            None,
            0,
        )
        .id;
    for (class, n) in [(1, 30), (2, 5)] {
        for offset in 0..n {
            let Lookup::Take(r) = j.look(id, class, "social", 0, offset) else {
                panic!()
            };
            j.handled(id, r, class, offset, None, true);
        }
    }
    // emitted / weight: dm 30/30 = 1, rest 5/10 = 0.5 → rest first;
    // dm is 0.5 × 40 = 20 weighted documents ahead.
    assert_eq!(j.pick(id, &[1, 2], 64), vec![2, 1]);
    assert_eq!(
        j.pick(id, &[1, 2], 10),
        vec![2],
        "dm waits until rest catches up"
    );
}

#[test]
fn messages_deleted_before_a_class_read_them_are_skipped_and_counted_once() {
    let mut j = jobs(Policy::Strict);
    let id = catch_up(&mut j, vec![(TopicPartition::new("social", 0), 100, 200)]);
    // dm read up to 130, then the log start moved to 150.
    for offset in 100..130 {
        let Lookup::Take(r) = j.look(id, 1, "social", 0, offset) else {
            panic!("offset {offset} not taken");
        };
        j.handled(id, r, 1, offset, None, false);
    }
    assert_eq!(
        j.skip_deleted(id, 1, "social", 0, 150),
        Some((130, 150, 20))
    );
    assert_eq!(j.cursor(id, 1, "social", 0), Some(150));
    // Not behind the log start: nothing to skip.
    assert_eq!(j.skip_deleted(id, 1, "social", 0, 140), None);
    // The next class missed [100, 160): 40 of them not counted yet.
    assert_eq!(
        j.skip_deleted(id, 2, "social", 0, 160),
        Some((100, 160, 40))
    );
    assert_eq!(j.status_json()[0]["deleted_by_retention"], 60);
    assert_eq!(j.low_waters()[&TopicPartition::new("social", 0)], 150);
    // A log start past the range's end finishes the class there.
    assert_eq!(
        j.skip_deleted(id, 1, "social", 0, 500),
        Some((150, 200, 40))
    );
    assert!(j.running(id).unwrap().class_done(1));
    assert_eq!(j.status_json()[0]["deleted_by_retention"], 100);
}

#[test]
fn ranges_of_revoked_partitions_are_dropped() {
    let mut j = jobs(Policy::Strict);
    let id = catch_up(
        &mut j,
        vec![
            (TopicPartition::new("social", 0), 0, 100),
            (TopicPartition::new("social", 1), 0, 100),
        ],
    );
    let kept = TopicPartition::new("social", 1);
    let stored = j.drop_partitions(|tp| *tp == kept);
    assert_eq!(stored.len(), 1);
    assert_eq!(j.running(id).unwrap().ranges.len(), 1);
    assert!(j.catching_up(&kept));
    assert!(!j.catching_up(&TopicPartition::new("social", 0)));
    j.drop_partitions(|_| false);
    assert!(j.running(id).is_none(), "a job without ranges is cancelled");
}

#[test]
fn a_catch_up_cannot_be_cancelled_a_replay_can() {
    let mut j = jobs(Policy::Strict);
    let tp = TopicPartition::new("social", 0);
    let catch = catch_up(&mut j, vec![(tp.clone(), 0, 100)]);
    assert_eq!(j.cancel(catch), Err(CancelRefused::CatchUp));
    assert!(j.running(catch).is_some(), "the catch-up still runs");
    let replay = j
        .create(
            JobKind::Replay,
            vec![(tp, 0, 100)],
            Some((0, 1)),
            None,
            None,
            0,
        )
        .id;
    let stored = j.cancel(replay).unwrap();
    assert_eq!(stored.id, replay);
    let stored: Job = serde_json::from_slice(&stored.bytes).unwrap();
    assert_eq!(stored.state, JobState::Cancelled);
    assert_eq!(j.cancel(replay), Err(CancelRefused::NotRunning));
    assert_eq!(j.cancel(999), Err(CancelRefused::NotRunning));
}

#[test]
fn a_stored_job_that_cannot_be_decoded_stops_the_load_naming_it() {
    let mut j = jobs(Policy::Strict);
    let tp = TopicPartition::new("social", 0);
    let good = j.create(JobKind::CatchUp, vec![(tp, 0, 100)], None, None, None, 0);
    let err = Jobs::load(
        vec![
            (1, good.bytes),
            (7, b"{\"id\": 7, \"kind\": \"catch_up\"".to_vec()),
        ],
        classes(),
        CatchUp::default(),
        &std::env::temp_dir(),
        0,
    )
    .err()
    .expect("an unreadable job is an error");
    assert_eq!(err.id, 7);
    assert!(err.to_string().contains("drain job 7"), "{err}");
    assert!(err.to_string().contains("backlog would be lost"), "{err}");
}
