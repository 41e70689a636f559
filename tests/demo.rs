//! The main job as a new user runs it: `demo` on its embedded Kafka, with
//! an outage in the middle.

mod common;

use std::process::Command;

use common::assert_ok;

/// `(class, documents, seconds after which it was in)` from the drain
/// report's summary lines.
fn classes(out: &str) -> Vec<(String, u64, f64)> {
    out.lines()
        .skip_while(|l| !l.starts_with("drain report:"))
        .skip(1)
        .take_while(|l| l.contains("documents, in after"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (
                w[0].to_string(),
                w[1].parse().unwrap(),
                w[5].parse().unwrap(),
            )
        })
        .collect()
}

fn count(out: &str, label: &str) -> u64 {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{out}"))
}

#[test]
fn the_demo_goes_down_comes_back_drains_by_class_and_loses_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_topic-matcher"))
        .args(["demo", "--duration", "12", "--outage", "4"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_ok(&out, "demo");
    for phase in [
        "*** the matcher goes down for 4 s",
        "MATCHER DOWN",
        "*** the matcher is back",
        "chart of the backlog per class:",
        "nothing lost",
    ] {
        assert!(text.contains(phase), "no `{phase}` in:\n{text}");
    }
    // The backlog drained class by class, in order, each with documents.
    let cls = classes(&text);
    let names: Vec<&str> = cls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["critical", "high", "low"], "{text}");
    assert!(
        cls.iter().all(|c| c.1 > 0),
        "a class without documents: {cls:?}"
    );
    assert!(
        cls[0].2 <= cls[1].2 && cls[1].2 <= cls[2].2,
        "classes finished out of order: {cls:?}"
    );
    let produced = count(&text, "documents produced");
    assert!(produced > 10_000, "{text}");
    assert_eq!(count(&text, "documents consumed"), produced, "{text}");
}
