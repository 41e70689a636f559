//! The project's reference documents stay true and reachable: every
//! *checked* example of `docs/query-language.md` is run against the real
//! matcher, and every `docs/<file>.md §N` cited in the code, the README and
//! `--help` names a section that exists.

use std::path::{Path, PathBuf};

use topic_matcher::document::Document;
use topic_matcher::engine::Matcher;
use topic_matcher::query::{parse, Limits};
use topic_matcher::searches::Catalog;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Rows of the tables that follow a line starting with "Checked" (up to
/// the next heading) whose first cell is a backticked query: the cells.
fn example_rows(doc: &str) -> Vec<Vec<String>> {
    let mut checked = false;
    let mut rows = Vec::new();
    for l in doc.lines() {
        if l.starts_with("Checked") {
            checked = true;
        } else if l.starts_with('#') {
            checked = false;
        } else if checked && l.starts_with("| `") {
            rows.push(
                l.trim_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().to_string())
                    .collect(),
            );
        }
    }
    rows
}

#[test]
fn every_checked_example_of_the_query_language_holds() {
    let doc = std::fs::read_to_string(repo("docs/query-language.md")).unwrap();
    let (mut matches, mut errors) = (0, 0);
    for row in example_rows(&doc) {
        let query = row[0].trim_matches('`');
        match row.len() {
            // | query | text | yes/no |
            3 if row[2] == "yes" || row[2] == "no" => {
                let json = serde_json::json!({"topics": [{"id": "t", "searches": [{"id": "s", "query": query}]}]})
                    .to_string();
                let c = Catalog::from_json(json.as_bytes(), &Limits::default())
                    .unwrap_or_else(|e| panic!("{query}: {}", e.render()));
                let m = Matcher::new(&c).unwrap();
                let mut s = m.scratch();
                let got = !m
                    .match_document(&Document::with_text("d", &row[1]), &mut s)
                    .is_empty();
                assert_eq!(got, row[2] == "yes", "{query} on {:?}", row[1]);
                matches += 1;
            }
            // | query | error text |
            2 => {
                let e = parse(query, &Limits::default()).expect_err(query);
                let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
                assert!(
                    text.iter().any(|t| t.contains(row[1].as_str())),
                    "{query}: {text:?} lacks {:?}",
                    row[1]
                );
                errors += 1;
            }
            _ => panic!("a checked row has 2 or 3 cells: {row:?}"),
        }
    }
    assert!(
        matches >= 30 && errors >= 8,
        "{matches} match and {errors} error examples"
    );
}

/// Every `docs/NAME.md §N[.M]` in the sources, README and `--help` names
/// an existing document with a heading `## N[.M] …`.
#[test]
fn every_docs_citation_resolves() {
    let mut files = vec![repo("README.md")];
    let mut stack = vec![repo("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut cited = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("docs/") {
            rest = &rest[i + 5..];
            let Some(end) = rest.find(".md") else { break };
            let name = &rest[..end];
            if name.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
                continue;
            }
            let doc = std::fs::read_to_string(repo(&format!("docs/{name}.md")))
                .unwrap_or_else(|_| panic!("{}: docs/{name}.md does not exist", f.display()));
            let after = &rest[end + 3..];
            if let Some(sec) = after.strip_prefix(" §") {
                let num: String = sec
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let num = num.trim_end_matches('.');
                assert!(
                    doc.lines().any(|l| {
                        let h = l.trim_start_matches('#').trim_start();
                        l.starts_with('#')
                            && (h.starts_with(&format!("{num} "))
                                || h.starts_with(&format!("{num}.")))
                    }),
                    "{}: docs/{name}.md has no section {num}",
                    f.display()
                );
            }
            cited += 1;
        }
    }
    assert!(cited > 20, "only {cited} citations found");
}
