//! The keyword search language of docs/query-language.md §3: lexer, parser, syntax tree and
//! errors with 1-based columns.
//!
//! ```
//! use topic_matcher::query::{parse, Expr, Limits};
//!
//! let q = parse(r#"("acme corp" OR #acme) NOT job*"#, &Limits::default()).unwrap();
//! assert!(matches!(q.expr, Expr::And(_)));
//!
//! let errors = parse("acme OR", &Limits::default()).unwrap_err();
//! assert_eq!(errors[0].column, 6);
//! ```
//!
//! Parsing stops at the first structural error (an unclosed quote makes
//! everything after it meaningless) but collects every leaf-level error
//! (wildcards, regexes) and the whole-query checks, so a user fixes them in
//! one round.

mod ast;
mod error;
mod lexer;
mod parser;

pub use ast::{
    accepts_kind, Expr, Fields, Leaf, LeafKind, MetaField, Near, Query, QueryToken, Reading, Span,
    TokensLeaf, Wildcard,
};
pub use error::{QueryError, QueryErrorKind, QueryWarning};
pub use parser::{MAX_DEPTH, MAX_SLOP_TOKENS};

/// Limits a query must respect (docs/query-language.md §3.5).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most characters in one query.
    pub max_query_chars: usize,
    /// Most leaves in one query.
    pub max_leaves: usize,
    /// Most bytes the compiled NFA of one regex leaf may take.
    pub regex_size_limit: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_query_chars: 4096,
            max_leaves: 1000,
            regex_size_limit: 256 * 1024,
        }
    }
}

/// Parses and validates one query.
///
/// # Errors
///
/// Every error found, each with its column; see [`QueryErrorKind`].
pub fn parse(query: &str, limits: &Limits) -> Result<Query, Vec<QueryError>> {
    let chars = query.chars().count();
    if chars > limits.max_query_chars {
        return Err(vec![QueryError::new(
            limits.max_query_chars + 1,
            chars - limits.max_query_chars,
            QueryErrorKind::TooLong {
                chars,
                limit: limits.max_query_chars,
            },
        )]);
    }
    if query.trim().is_empty() {
        return Err(vec![QueryError::new(1, 1, QueryErrorKind::Empty)]);
    }
    let lexemes = lexer::lex(query).map_err(|e| vec![e])?;
    let mut parser = parser::Parser::new(query, lexemes, limits);
    let mut expr = match parser.parse() {
        Ok(e) => e,
        Err(e) => {
            let mut errors = parser.errors;
            errors.push(e);
            errors.sort_by_key(|e| e.column);
            return Err(errors);
        }
    };
    let mut errors = parser.errors;
    let leaves = expr.leaf_count();
    if leaves > limits.max_leaves {
        errors.push(QueryError::new(
            1,
            chars,
            QueryErrorKind::TooManyLeaves {
                leaves,
                limit: limits.max_leaves,
            },
        ));
    }
    if !expr.requires_positive_text() {
        errors.push(QueryError::new(1, chars, QueryErrorKind::NothingPositive));
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.column);
        return Err(errors);
    }
    expr.shrink_to_fit();
    Ok(Query {
        expr,
        warnings: parser.warnings.into_boxed_slice(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> Query {
        parse(q, &Limits::default()).unwrap_or_else(|e| panic!("{q}: {e:?}"))
    }

    fn err(q: &str) -> QueryError {
        let mut e = parse(q, &Limits::default()).expect_err(q);
        e.remove(0)
    }

    #[test]
    fn precedence_is_the_usual_logical_one() {
        let reading = |q: &str| ok(q).expr.reading(q).to_string();
        assert_eq!(reading("a OR b NOT c"), "a OR (b AND NOT c)");
        let q = ok("a OR b NOT c");
        assert_eq!(q.warnings.len(), 1, "mixing OR with NOT warns");
        assert!(ok("a OR (b NOT c)").warnings.is_empty());
        assert_eq!(reading("a b OR c"), "(a AND b) OR c");
        assert_eq!(reading("a b NEAR/3 c"), "a AND b NEAR/3 c");
        assert_eq!(reading("-a b"), "NOT a AND b");
    }

    #[test]
    fn near_forms() {
        let q = ok("acme NEAR/3 (down OR outage OR \"not working\")");
        let Expr::Near(n) = q.expr else { panic!() };
        assert_eq!(
            (n.left.len(), n.right.len(), n.max_gap, n.ordered),
            (1, 3, 3, false)
        );
        let Expr::Near(n) = ok("a NEAR/2f b").expr else {
            panic!()
        };
        assert!(n.ordered);
        let Expr::Near(n) = ok("a ONEAR/2 b").expr else {
            panic!()
        };
        assert!(n.ordered);
    }

    #[test]
    fn words_become_phrases() {
        let Expr::Leaf(l) = ok("e-mail").expr else {
            panic!()
        };
        let LeafKind::Tokens(t) = l.kind else {
            panic!()
        };
        assert_eq!(t.tokens.len(), 2);
    }

    #[test]
    fn errors_have_columns() {
        type Case = (&'static str, usize, fn(&QueryErrorKind) -> bool);
        let cases: &[Case] = &[
            ("acme OR", 6, |k| {
                matches!(k, QueryErrorKind::MissingOperand { .. })
            }),
            ("AND acme", 1, |k| {
                matches!(k, QueryErrorKind::MissingOperand { .. })
            }),
            ("(acme OR b", 1, |k| *k == QueryErrorKind::UnclosedParen),
            ("acme) b", 5, |k| *k == QueryErrorKind::UnopenedParen),
            ("x \"acme", 3, |k| *k == QueryErrorKind::UnclosedQuote),
            ("x {acme", 3, |k| *k == QueryErrorKind::UnclosedBrace),
            ("x /acme", 3, |k| *k == QueryErrorKind::UnclosedSlash),
            ("x ab*", 3, |k| {
                matches!(k, QueryErrorKind::WildcardTooShort { .. })
            }),
            ("x a*b*c*d*e*f", 3, |k| {
                matches!(k, QueryErrorKind::TooManyWildcards { .. })
            }),
            ("x /(a/", 3, |k| {
                matches!(k, QueryErrorKind::BadRegex { .. })
            }),
            ("x /a*/", 3, |k| *k == QueryErrorKind::RegexMatchesEmpty),
            ("NOT acme", 1, |k| *k == QueryErrorKind::NothingPositive),
            ("lang:en", 1, |k| *k == QueryErrorKind::NothingPositive),
            ("a OR NOT b", 1, |k| *k == QueryErrorKind::NothingPositive),
            ("(a b) NEAR/2 c", 1, |k| {
                *k == QueryErrorKind::BadNearOperand
            }),
            ("a NEAR/2 b NEAR/2 c", 12, |k| {
                *k == QueryErrorKind::BadNearOperand
            }),
            ("a - b", 3, |k| *k == QueryErrorKind::DanglingMinus),
            ("a !!!", 3, |k| {
                matches!(k, QueryErrorKind::NothingToMatch { .. })
            }),
            ("title:lang:en a", 1, |k| {
                matches!(k, QueryErrorKind::FieldOnMeta { .. })
            }),
        ];
        for (q, col, pred) in cases {
            let e = err(q);
            assert!(pred(&e.kind), "{q}: {e:?}");
            assert_eq!(e.column, *col, "{q}: {e:?}");
        }
    }

    #[test]
    fn limits() {
        let long = "a ".repeat(3000);
        assert!(matches!(err(&long).kind, QueryErrorKind::TooLong { .. }));
        let many = vec!["ab"; 1001].join(" ");
        assert!(matches!(
            err(&many).kind,
            QueryErrorKind::TooManyLeaves { .. }
        ));
    }

    #[test]
    fn all_leaf_errors_are_reported_together() {
        let e = parse("ab* OR /(/ OR cd?", &Limits::default()).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
    }

    #[test]
    fn field_restrictions() {
        let q = ok("title:(a OR b) OR c");
        let mut seen = Vec::new();
        q.expr.for_each_leaf(true, &mut |l, _| {
            seen.push((l.source("title:(a OR b) OR c").to_string(), l.fields))
        });
        assert_eq!(
            seen,
            vec![
                ("a".into(), Fields::TITLE),
                ("b".into(), Fields::TITLE),
                ("c".into(), Fields::BOTH)
            ]
        );
    }
}
