//! Priority classes (docs/operations.md §5.2): which class a document belongs to, and the
//! drain policy of a catch-up (docs/operations.md §5.3).
//!
//! Classes are ordered, highest first. A class has optional rules: input
//! `topics` (every message of those topics) and `when` (a document field —
//! `source`, `type`, `lang`, `country`, `author` — in a list of values). A
//! document goes to the first class all of whose given rules hold; a class
//! without rules takes everything that reaches it, so the last class is the
//! default (one is added, named `default`, when the last configured class
//! has rules).
//!
//! With no classes configured there is one implicit class and match records
//! carry no `class`.
//!
//! [`Classes::static_class`] answers whether every message of an input
//! topic lands in one class whatever its content: such partitions are
//! drained once, not once per class.

use crate::document::Document;
use crate::query::MetaField;

/// One class as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct Class {
    /// Its name (record field `class`, metric label).
    pub name: String,
    /// Input topics whose messages it takes; empty means any topic.
    pub topics: Vec<String>,
    /// Field rules, all of which must hold; values lower-cased.
    pub when: Vec<(MetaField, Vec<String>)>,
}

impl Class {
    fn has_rules(&self) -> bool {
        !self.topics.is_empty() || !self.when.is_empty()
    }

    fn admits(&self, topic: &str, doc: &Document<'_>) -> bool {
        (self.topics.is_empty() || self.topics.iter().any(|t| t == topic))
            && self
                .when
                .iter()
                .all(|(field, values)| values.iter().any(|v| doc.meta_matches(*field, v)))
    }
}

/// The ordered classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Classes {
    classes: Vec<Class>,
    /// Whether classes were configured (records carry `class`).
    named: bool,
}

impl Default for Classes {
    fn default() -> Classes {
        Classes {
            classes: vec![Class {
                name: "default".into(),
                topics: vec![],
                when: vec![],
            }],
            named: false,
        }
    }
}

/// The field names a `when` rule may use.
pub const WHEN_FIELDS: [&str; 5] = ["source", "type", "lang", "country", "author"];

/// One `[[classes]]` entry as configured: name, topics, and field →
/// accepted values.
pub type ConfiguredClass = (String, Vec<String>, Vec<(String, Vec<String>)>);

impl Classes {
    /// Validates configured classes: unique non-empty names, known fields,
    /// non-empty value lists. Adds a rule-less `default` class at the end
    /// when the last one has rules.
    ///
    /// # Errors
    ///
    /// The first problem, naming the class.
    pub fn new(configured: Vec<ConfiguredClass>) -> Result<Classes, String> {
        if configured.is_empty() {
            return Ok(Classes::default());
        }
        let mut classes: Vec<Class> = Vec::new();
        for (name, topics, when) in configured {
            let name = name.trim().to_string();
            if name.is_empty() {
                return Err("classes: a class has an empty name".into());
            }
            if classes.iter().any(|c| c.name == name) {
                return Err(format!("classes: `{name}` is declared twice"));
            }
            let mut rules = Vec::new();
            for (field, values) in when {
                let f = match field.as_str() {
                    "source" => MetaField::Source,
                    "type" => MetaField::Type,
                    "lang" => MetaField::Lang,
                    "country" => MetaField::Country,
                    "author" => MetaField::Author,
                    other => {
                        return Err(format!(
                            "classes.{name}.when: unknown field `{other}` (one of {})",
                            WHEN_FIELDS.join(", ")
                        ))
                    }
                };
                if values.is_empty() {
                    return Err(format!("classes.{name}.when.{field}: the list is empty"));
                }
                let values = values
                    .iter()
                    .map(|v| {
                        let v = v.trim().to_lowercase();
                        match f {
                            MetaField::Author => v.trim_start_matches('@').to_string(),
                            _ => v,
                        }
                    })
                    .collect();
                rules.push((f, values));
            }
            classes.push(Class {
                name,
                topics,
                when: rules,
            });
        }
        if classes.last().is_some_and(Class::has_rules) {
            if classes.iter().any(|c| c.name == "default") {
                return Err(
                    "classes: the last class has rules, so a class `default` is added after it; rename the class called `default` or give the last class no rules"
                        .into(),
                );
            }
            classes.push(Class {
                name: "default".into(),
                topics: vec![],
                when: vec![],
            });
        }
        Ok(Classes {
            classes,
            named: true,
        })
    }

    /// How many classes (at least one).
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Never true: there is always a default class.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The class names, highest priority first.
    pub fn names(&self) -> Vec<&str> {
        self.classes.iter().map(|c| c.name.as_str()).collect()
    }

    /// The name of class `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.classes[i].name
    }

    /// The index of a class by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c.name == name)
    }

    /// Whether classes were configured (records then carry `class`).
    pub fn named(&self) -> bool {
        self.named
    }

    /// The class of a document read from `topic`: the first whose rules all
    /// hold.
    pub fn classify(&self, topic: &str, doc: &Document<'_>) -> usize {
        self.classes
            .iter()
            .position(|c| c.admits(topic, doc))
            .unwrap_or(self.classes.len() - 1)
    }

    /// Whether class `class` can hold messages of `topic`: its topic rule
    /// admits it and the topic's class is not fixed to another one.
    pub fn reads(&self, class: usize, topic: &str) -> bool {
        let c = &self.classes[class];
        (c.topics.is_empty() || c.topics.iter().any(|t| t == topic))
            && self.static_class(topic).is_none_or(|s| s == class)
    }

    /// The last class that reads `topic` (see [`Classes::reads`]): in a
    /// catch-up, its lane sends the topic's bad messages to the dead
    /// letters, once.
    pub fn last_reader(&self, topic: &str) -> usize {
        (0..self.classes.len())
            .rev()
            .find(|&c| self.reads(c, topic))
            .unwrap_or(self.classes.len() - 1)
    }

    /// The class every message of `topic` lands in, if that does not depend
    /// on the content: the first class that may take the topic has no
    /// field rules.
    pub fn static_class(&self, topic: &str) -> Option<usize> {
        for (i, c) in self.classes.iter().enumerate() {
            if !c.topics.is_empty() && !c.topics.iter().any(|t| t == topic) {
                continue; // never takes this topic
            }
            return if c.when.is_empty() { Some(i) } else { None };
        }
        Some(self.classes.len() - 1)
    }
}

/// How the backlog's classes share the drain (docs/operations.md §5.3).
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// Class k starts when every class before it is drained.
    Strict,
    /// Every class advances, in proportion to its weight (one per class,
    /// positive).
    Weighted(Vec<u32>),
}

impl Policy {
    /// The policy's name, without its weights.
    pub fn name(&self) -> PolicyName {
        match self {
            Policy::Strict => PolicyName::Strict,
            Policy::Weighted(_) => PolicyName::Weighted,
        }
    }
}

/// The name of a [`Policy`], as configured (`catch_up.policy`), stored in a
/// drain job and shown in `/status` and the drain reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyName {
    /// `strict`.
    Strict,
    /// `weighted`.
    Weighted,
}

impl PolicyName {
    /// `strict` or `weighted`.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::Strict => "strict",
            PolicyName::Weighted => "weighted",
        }
    }
}

impl std::fmt::Display for PolicyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PolicyName {
    type Err = String;

    fn from_str(s: &str) -> Result<PolicyName, String> {
        match s {
            "strict" => Ok(PolicyName::Strict),
            "weighted" => Ok(PolicyName::Weighted),
            other => Err(format!("`{other}` is not \"strict\" or \"weighted\"")),
        }
    }
}

/// `[catch_up]`, validated against the classes.
#[derive(Clone, Debug, PartialEq)]
pub struct CatchUp {
    /// The drain policy.
    pub policy: Policy,
    /// Backlog messages of a partition that start a catch-up.
    pub threshold: i64,
}

impl Default for CatchUp {
    fn default() -> CatchUp {
        CatchUp {
            policy: Policy::Strict,
            threshold: 10_000,
        }
    }
}

impl CatchUp {
    /// Validates `[catch_up]`: a known policy, and for `weighted` a positive
    /// weight per class (the added `default` class may be left out: weight 1).
    ///
    /// # Errors
    ///
    /// The first problem, naming the key.
    pub fn new(
        policy: Option<&str>,
        weights: &std::collections::BTreeMap<String, u32>,
        threshold: Option<i64>,
        classes: &Classes,
    ) -> Result<CatchUp, String> {
        for name in weights.keys() {
            if classes.index(name).is_none() {
                return Err(format!(
                    "catch_up.weights: `{name}` is not a class (classes: {})",
                    classes.names().join(", ")
                ));
            }
        }
        let name = policy
            .unwrap_or("strict")
            .parse::<PolicyName>()
            .map_err(|e| format!("catch_up.policy: {e}"))?;
        let policy = match name {
            PolicyName::Strict => Policy::Strict,
            PolicyName::Weighted => {
                let mut w = Vec::new();
                for name in classes.names() {
                    match weights.get(name) {
                        Some(0) => {
                            return Err(format!(
                                "catch_up.weights.{name} must be positive (a class may not starve)"
                            ))
                        }
                        Some(&v) => w.push(v),
                        None if name == "default" || !classes.named() => w.push(1),
                        None => {
                            return Err(format!(
                            "catch_up.weights: class `{name}` has no weight (policy \"weighted\")"
                        ))
                        }
                    }
                }
                Policy::Weighted(w)
            }
        };
        let threshold = threshold.unwrap_or(10_000);
        if threshold < 1 {
            return Err("catch_up.threshold must be at least 1".into());
        }
        Ok(CatchUp { policy, threshold })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_classes() -> Classes {
        Classes::new(vec![
            (
                "critical".into(),
                vec!["social.owned".into()],
                vec![("type".into(), vec!["dm".into(), "mention".into()])],
            ),
            (
                "high".into(),
                vec![],
                vec![(
                    "source".into(),
                    vec!["twitter".into(), "facebook".into(), "Instagram".into()],
                )],
            ),
            ("low".into(), vec![], vec![]),
        ])
        .unwrap()
    }

    fn doc<'a>(source: &'a str, kind: &'a str) -> Document<'a> {
        let mut d = Document::with_text("x", "text");
        d.source = Some(source.into());
        d.kind = Some(kind.into());
        d
    }

    #[test]
    fn first_class_whose_rules_all_hold_wins() {
        let c = spec_classes();
        assert_eq!(c.names(), ["critical", "high", "low"]);
        assert_eq!(c.classify("social.owned", &doc("twitter", "dm")), 0);
        // critical needs both its topic and its type
        assert_eq!(c.classify("social.twitter", &doc("twitter", "dm")), 1);
        assert_eq!(c.classify("social.owned", &doc("instagram", "post")), 1);
        assert_eq!(c.classify("social.owned", &doc("news", "article")), 2);
        assert!(c.named());
    }

    #[test]
    fn a_default_class_follows_a_last_class_with_rules() {
        let c = Classes::new(vec![("owned".into(), vec!["social.owned".into()], vec![])]).unwrap();
        assert_eq!(c.names(), ["owned", "default"]);
        assert_eq!(c.classify("social.owned", &doc("x", "y")), 0);
        assert_eq!(c.classify("other", &doc("x", "y")), 1);
        assert_eq!(c.static_class("social.owned"), Some(0));
        assert_eq!(c.static_class("other"), Some(1));
    }

    #[test]
    fn static_class_only_when_content_cannot_matter() {
        let c = spec_classes();
        assert_eq!(c.static_class("social.owned"), None);
        assert_eq!(c.static_class("social.news"), None); // `high` looks at source
        assert!(
            !c.reads(0, "social.news"),
            "critical takes only social.owned"
        );
        assert!(c.reads(1, "social.news") && c.reads(2, "social.news"));
        let owned = Classes::new(vec![("owned".into(), vec!["owned".into()], vec![])]).unwrap();
        assert_eq!(
            owned.last_reader("owned"),
            0,
            "only `owned` reads its topic"
        );
        assert_eq!(owned.last_reader("other"), 1);
        let d = Classes::default();
        assert_eq!(d.static_class("any"), Some(0));
        assert!(!d.named());
    }

    #[test]
    fn bad_classes_are_named() {
        let e = Classes::new(vec![(
            "a".into(),
            vec![],
            vec![("mood".into(), vec!["x".into()])],
        )])
        .unwrap_err();
        assert!(e.contains("mood"), "{e}");
        let e = Classes::new(vec![
            ("a".into(), vec![], vec![]),
            ("a".into(), vec![], vec![]),
        ])
        .unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn weighted_needs_a_positive_weight_per_class() {
        let c = spec_classes();
        let mut w = std::collections::BTreeMap::new();
        w.insert("critical".to_string(), 60);
        w.insert("high".to_string(), 30);
        let e = CatchUp::new(Some("weighted"), &w, None, &c).unwrap_err();
        assert!(e.contains("low"), "{e}");
        w.insert("low".to_string(), 10);
        let ok = CatchUp::new(Some("weighted"), &w, Some(5), &c).unwrap();
        assert_eq!(ok.policy, Policy::Weighted(vec![60, 30, 10]));
        assert_eq!(ok.threshold, 5);
        w.insert("nope".to_string(), 1);
        assert!(CatchUp::new(Some("weighted"), &w, None, &c).is_err());
        assert!(CatchUp::new(Some("fast"), &Default::default(), None, &c).is_err());
    }
}
