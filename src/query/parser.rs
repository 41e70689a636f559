//! Recursive-descent parser: lexemes → [`Expr`].
//!
//! Grammar, loosest first (docs/query-language.md §3.3):
//! ```text
//! or      := and ("OR" and)*
//! and     := unary (("AND" | <adjacent>) unary | "NOT" unary)*
//! unary   := "NOT" unary | "-" near | near
//! near    := primary (NEAR/n primary)?
//! primary := "(" or ")" | ("title:" | "text:") primary | leaf
//! ```
//!
//! # Safety on any input
//!
//! Every lexeme sequence gives an [`Expr`] or a [`QueryError`]; no input
//! reaches a panic. Two rules make that hold:
//!
//! * A NEAR/ONEAR operand is a positive leaf or an OR-group of leaves.
//!   `a NEAR/2 NOT b` and `a NEAR/2 -b` are rejected with
//!   [`QueryErrorKind::NegatedNearOperand`] (the matcher has no "near but
//!   not" operator; `a NOT (a NEAR/2 b)` says that).
//! * Nesting — parentheses, `NOT`/`-` chains and field prefixes — is at most
//!   [`MAX_DEPTH`] levels ([`QueryErrorKind::TooDeep`]). The parser, the
//!   compiler and the reference evaluator recurse over the tree; the bound
//!   keeps them far inside the 2 MiB stacks of the reload and parse threads.

use super::ast::*;
use super::error::{QueryError, QueryErrorKind, QueryWarning};
use super::lexer::{Lex, Lexeme};
use super::Limits;
use crate::text::{self, TokenKind, Tokens};

/// Most nesting levels (parentheses, `NOT`/`-`, field prefixes) in a query.
pub const MAX_DEPTH: usize = 32;

/// Most tokens in a proximity phrase `"…"~n`: the engine tracks which
/// phrase tokens a window covers in one 64-bit mask.
pub const MAX_SLOP_TOKENS: usize = 64;

/// An expression and whether it was written in parentheses (for the
/// mixed-precedence warning and for NEAR operands).
struct Parsed {
    expr: Expr,
    parens: bool,
    column: usize,
}

pub(crate) struct Parser<'a> {
    /// The query being parsed (the leaves' spans point into it).
    query: &'a str,
    lexemes: Vec<Lexeme>,
    pos: usize,
    limits: &'a Limits,
    pub(crate) warnings: Vec<QueryWarning>,
    /// Errors that do not stop parsing (bad wildcards, regexes, …).
    pub(crate) errors: Vec<QueryError>,
    tokens: Tokens,
    /// Nesting levels open at the current position.
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(query: &'a str, lexemes: Vec<Lexeme>, limits: &'a Limits) -> Parser<'a> {
        Parser {
            query,
            lexemes,
            pos: 0,
            limits,
            warnings: Vec::new(),
            errors: Vec::new(),
            tokens: Tokens::new(),
            depth: 0,
        }
    }

    fn peek(&self) -> Option<&Lex> {
        self.lexemes.get(self.pos).map(|l| &l.lex)
    }

    fn next(&mut self) -> Option<Lexeme> {
        let l = self.lexemes.get(self.pos).cloned();
        self.pos += 1;
        l
    }

    pub(crate) fn parse(&mut self) -> Result<Expr, QueryError> {
        let p = self.parse_or()?;
        if let Some(l) = self.lexemes.get(self.pos) {
            // Only a stray `)` can stop the top level early.
            return Err(QueryError::new(
                l.column,
                l.width,
                QueryErrorKind::UnopenedParen,
            ));
        }
        Ok(p.expr)
    }

    /// Enters one nesting level opened by `at`.
    fn enter(&mut self, at: &Lexeme) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::new(
                at.column,
                at.width,
                QueryErrorKind::TooDeep { limit: MAX_DEPTH },
            ));
        }
        Ok(())
    }

    /// The error for an operator whose right operand is missing.
    fn missing_right(&self, op: &Lexeme) -> QueryError {
        QueryError::new(
            op.column,
            op.width,
            QueryErrorKind::MissingOperand {
                op: op.text.clone(),
                side: "a right",
            },
        )
    }

    fn starts_operand(lex: Option<&Lex>) -> bool {
        matches!(
            lex,
            Some(
                Lex::LParen
                    | Lex::Not
                    | Lex::Minus
                    | Lex::FieldPrefix(..)
                    | Lex::Word(_)
                    | Lex::Quoted { .. }
                    | Lex::Braced(_)
                    | Lex::Regex(_)
                    | Lex::Meta(..)
            )
        )
    }

    fn parse_or(&mut self) -> Result<Parsed, QueryError> {
        let column = self.lexemes.get(self.pos).map_or(1, |l| l.column);
        let mut branches = vec![self.parse_and()?];
        while let Some(Lex::Or) = self.peek() {
            let op = self.next().expect("peeked");
            if !Self::starts_operand(self.peek()) {
                return Err(self.missing_right(&op));
            }
            branches.push(self.parse_and()?);
        }
        if branches.len() == 1 {
            return Ok(branches.pop().expect("one"));
        }
        let mixed = branches
            .iter()
            .any(|b| !b.parens && matches!(b.expr, Expr::And(_) | Expr::Not(_)));
        let expr = Expr::Or(branches.into_iter().map(|b| b.expr).collect());
        if mixed {
            self.warnings.push(QueryWarning {
                column,
                message: "OR is mixed with AND/NOT at one level without parentheses",
                reading: expr.reading(self.query).to_string(),
            });
        }
        Ok(Parsed {
            expr,
            parens: false,
            column,
        })
    }

    fn parse_and(&mut self) -> Result<Parsed, QueryError> {
        let column = self.lexemes.get(self.pos).map_or(1, |l| l.column);
        let mut parts = vec![self.parse_unary()?];
        loop {
            match self.peek() {
                Some(Lex::And) => {
                    let op = self.next().expect("peeked");
                    if !Self::starts_operand(self.peek()) {
                        return Err(self.missing_right(&op));
                    }
                    parts.push(self.parse_unary()?);
                }
                // Juxtaposition is AND; `a NOT b` is `a AND NOT b` (the
                // unary parse takes the NOT).
                l if Self::starts_operand(l) => parts.push(self.parse_unary()?),
                _ => break,
            }
        }
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one"));
        }
        let mut flat = Vec::with_capacity(parts.len());
        for p in parts {
            match p.expr {
                Expr::And(c) if !p.parens => flat.extend(c),
                e => flat.push(e),
            }
        }
        Ok(Parsed {
            expr: Expr::And(flat),
            parens: false,
            column,
        })
    }

    fn parse_unary(&mut self) -> Result<Parsed, QueryError> {
        match self.peek() {
            Some(Lex::Not) => {
                let op = self.next().expect("peeked");
                if !Self::starts_operand(self.peek()) {
                    return Err(self.missing_right(&op));
                }
                self.enter(&op)?;
                let inner = self.parse_unary()?;
                self.depth -= 1;
                Ok(Parsed {
                    expr: Expr::Not(Box::new(inner.expr)),
                    parens: false,
                    column: op.column,
                })
            }
            Some(Lex::Minus) => {
                let op = self.next().expect("peeked");
                if !Self::starts_operand(self.peek())
                    || matches!(self.peek(), Some(Lex::Not | Lex::Minus))
                {
                    return Err(QueryError::new(op.column, 1, QueryErrorKind::DanglingMinus));
                }
                self.enter(&op)?;
                let inner = self.parse_near()?;
                self.depth -= 1;
                Ok(Parsed {
                    expr: Expr::Not(Box::new(inner.expr)),
                    parens: false,
                    column: op.column,
                })
            }
            _ => self.parse_near(),
        }
    }

    fn parse_near(&mut self) -> Result<Parsed, QueryError> {
        let left = self.parse_primary()?;
        let Some(&Lex::Near { max_gap, ordered }) = self.peek() else {
            return Ok(left);
        };
        let op = self.next().expect("peeked");
        if !Self::starts_operand(self.peek()) {
            return Err(self.missing_right(&op));
        }
        if let Some(neg) = self.lexemes.get(self.pos) {
            if matches!(neg.lex, Lex::Not | Lex::Minus) {
                return Err(QueryError::new(
                    neg.column,
                    neg.width,
                    QueryErrorKind::NegatedNearOperand {
                        op: op.text.clone(),
                    },
                ));
            }
        }
        let right = self.parse_primary()?;
        let left_leaves = near_operand(left)?;
        let right_leaves = near_operand(right)?;
        if let Some(next) = self.lexemes.get(self.pos) {
            if matches!(next.lex, Lex::Near { .. }) {
                // `a NEAR b NEAR c`: the left operand would be a NEAR.
                return Err(QueryError::new(
                    next.column,
                    next.width,
                    QueryErrorKind::BadNearOperand,
                ));
            }
        }
        Ok(Parsed {
            expr: Expr::Near(Box::new(Near {
                left: left_leaves,
                right: right_leaves,
                max_gap,
                ordered,
            })),
            parens: false,
            column: op.column,
        })
    }

    fn parse_primary(&mut self) -> Result<Parsed, QueryError> {
        let Some(l) = self.next() else {
            // Callers check `starts_operand` first, so this is an empty query
            // or `()`.
            return Err(QueryError::new(1, 1, QueryErrorKind::Empty));
        };
        match l.lex {
            Lex::LParen => {
                if matches!(self.peek(), Some(Lex::RParen) | None) {
                    let kind = if self.peek().is_none() {
                        QueryErrorKind::UnclosedParen
                    } else {
                        QueryErrorKind::Empty
                    };
                    return Err(QueryError::new(l.column, 1, kind));
                }
                self.enter(&l)?;
                let inner = self.parse_or()?;
                self.depth -= 1;
                match self.next() {
                    Some(Lexeme {
                        lex: Lex::RParen, ..
                    }) => Ok(Parsed {
                        expr: inner.expr,
                        parens: true,
                        column: l.column,
                    }),
                    _ => Err(QueryError::new(l.column, 1, QueryErrorKind::UnclosedParen)),
                }
            }
            Lex::RParen => Err(QueryError::new(l.column, 1, QueryErrorKind::UnopenedParen)),
            Lex::Or | Lex::And | Lex::Near { .. } => Err(QueryError::new(
                l.column,
                l.width,
                QueryErrorKind::MissingOperand {
                    op: l.text.clone(),
                    side: "a left",
                },
            )),
            // Reached only where an operand must be positive (`title:` and
            // NEAR check first); kept as an error, never a panic.
            Lex::Not | Lex::Minus => Err(QueryError::new(
                l.column,
                l.width,
                QueryErrorKind::MissingOperand {
                    op: l.text.clone(),
                    side: "a positive",
                },
            )),
            Lex::FieldPrefix(fields, name) => {
                if !Self::starts_operand(self.peek())
                    || matches!(self.peek(), Some(Lex::Not | Lex::Minus))
                {
                    return Err(QueryError::new(
                        l.column,
                        l.width,
                        QueryErrorKind::MissingOperand {
                            op: l.text.clone(),
                            side: "an",
                        },
                    ));
                }
                self.enter(&l)?;
                let mut inner = self.parse_primary()?;
                self.depth -= 1;
                restrict_fields(&mut inner.expr, fields, name, l.column)?;
                Ok(Parsed {
                    expr: inner.expr,
                    parens: inner.parens,
                    column: l.column,
                })
            }
            ref lex => {
                let leaf = self.leaf(lex, &l)?;
                Ok(Parsed {
                    expr: Expr::Leaf(leaf),
                    parens: false,
                    column: l.column,
                })
            }
        }
    }

    fn leaf(&mut self, lex: &Lex, l: &Lexeme) -> Result<Leaf, QueryError> {
        let err = |kind| QueryError::new(l.column, l.width, kind);
        let kind = match lex {
            Lex::Word(w) if w.contains(['*', '?']) => LeafKind::Wildcard(self.wildcard(w, l)?),
            Lex::Word(w) if text::contains_cjk(w) => LeafKind::Cjk(cjk_needle(w)),
            Lex::Word(w) => LeafKind::Tokens(TokensLeaf {
                tokens: self
                    .query_tokens(w)
                    .ok_or_else(|| err(QueryErrorKind::NothingToMatch { text: w.clone() }))?,
                slop: None,
                case_sensitive: false,
            }),
            Lex::Quoted { text: t, slop } if text::contains_cjk(t) => {
                if slop.is_some() {
                    return Err(err(QueryErrorKind::CjkSlop));
                }
                LeafKind::Cjk(cjk_needle(t))
            }
            Lex::Quoted { text: t, slop } => {
                let tokens = self.query_tokens(t).ok_or_else(|| {
                    err(QueryErrorKind::NothingToMatch {
                        text: l.text.clone(),
                    })
                })?;
                if slop.is_some() && tokens.len() > MAX_SLOP_TOKENS {
                    return Err(err(QueryErrorKind::SlopPhraseTooLong {
                        tokens: tokens.len(),
                        limit: MAX_SLOP_TOKENS,
                    }));
                }
                LeafKind::Tokens(TokensLeaf {
                    tokens,
                    slop: *slop,
                    case_sensitive: false,
                })
            }
            Lex::Braced(inner) => {
                let inner = inner.trim();
                let inner = inner
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .unwrap_or(inner);
                if inner.contains(['*', '?']) {
                    return Err(err(QueryErrorKind::WildcardAcrossTokens {
                        text: l.text.clone(),
                    }));
                }
                if text::contains_cjk(inner) {
                    LeafKind::Cjk(cjk_needle(inner))
                } else {
                    LeafKind::Tokens(TokensLeaf {
                        tokens: self.query_tokens(inner).ok_or_else(|| {
                            err(QueryErrorKind::NothingToMatch {
                                text: l.text.clone(),
                            })
                        })?,
                        slop: None,
                        case_sensitive: true,
                    })
                }
            }
            Lex::Regex(pattern) => {
                if let Err(kind) = check_regex(pattern, self.limits) {
                    self.errors.push(err(kind));
                }
                LeafKind::Regex(pattern.clone())
            }
            Lex::Meta(field, value) => LeafKind::Meta(*field, normalize_meta(*field, value)),
            _ => {
                return Err(err(QueryErrorKind::MissingOperand {
                    op: l.text.clone(),
                    side: "a term as",
                }))
            }
        };
        Ok(Leaf {
            kind,
            fields: Fields::BOTH,
            // A query is far shorter than 4 GB (`Limits`).
            span: Span {
                start: l.byte as u32,
                len: l.text.len() as u32,
            },
        })
    }

    /// Tokenizes a query word or phrase with the document rules; `None` when
    /// it holds nothing to match.
    fn query_tokens(&mut self, s: &str) -> Option<Vec<QueryToken>> {
        self.tokens.analyze(s);
        if self.tokens.is_empty() {
            return None;
        }
        Some(
            (0..self.tokens.len())
                .map(|i| QueryToken {
                    kind: self.tokens.tokens[i].kind,
                    folded: self.tokens.folded_body(i).into(),
                    raw: self.tokens.raw_body(s, i).into(),
                })
                .collect(),
        )
    }

    fn wildcard(&mut self, w: &str, l: &Lexeme) -> Result<Wildcard, QueryError> {
        let (kind, body) = match w.chars().next() {
            Some('#') => (TokenKind::Hashtag, &w[1..]),
            Some('@') => (TokenKind::Mention, &w[1..]),
            Some('$') => (TokenKind::Cashtag, &w[1..]),
            _ => (TokenKind::Word, w),
        };
        let wildcards = body.chars().filter(|&c| c == '*' || c == '?').count();
        let literals = body.chars().count() - wildcards;
        if literals < 3 {
            self.errors.push(QueryError::new(
                l.column,
                l.width,
                QueryErrorKind::WildcardTooShort {
                    text: w.to_string(),
                    literals,
                },
            ));
        } else if wildcards > 4 {
            self.errors.push(QueryError::new(
                l.column,
                l.width,
                QueryErrorKind::TooManyWildcards {
                    text: w.to_string(),
                    wildcards,
                },
            ));
        }
        // Every literal run must be word material, or the pattern could never
        // match a single token.
        for part in body.split(['*', '?']).filter(|p| !p.is_empty()) {
            self.tokens.analyze(part);
            let one_word = self.tokens.len() == 1
                && self.tokens.tokens[0].kind == TokenKind::Word
                && self.tokens.tokens[0].start == 0
                && self.tokens.tokens[0].end as usize == part.len();
            if !one_word {
                self.errors.push(QueryError::new(
                    l.column,
                    l.width,
                    QueryErrorKind::WildcardAcrossTokens {
                        text: w.to_string(),
                    },
                ));
                break;
            }
        }
        let mut pattern = String::with_capacity(body.len());
        for c in body.chars() {
            match c {
                '*' | '?' => pattern.push(c),
                c => text::fold_char(c, &mut pattern),
            }
        }
        Ok(Wildcard { kind, pattern })
    }
}

fn near_operand(p: Parsed) -> Result<Vec<Leaf>, QueryError> {
    let bad = QueryError::new(p.column, 1, QueryErrorKind::BadNearOperand);
    let is_text = |l: &Leaf| !matches!(l.kind, LeafKind::Meta(..));
    match p.expr {
        Expr::Leaf(l) if is_text(&l) => Ok(vec![l]),
        Expr::Or(children) if p.parens => children
            .into_iter()
            .map(|c| match c {
                Expr::Leaf(l) if is_text(&l) => Ok(l),
                _ => Err(bad.clone()),
            })
            .collect(),
        _ => Err(bad),
    }
}

fn restrict_fields(
    e: &mut Expr,
    fields: Fields,
    name: &'static str,
    column: usize,
) -> Result<(), QueryError> {
    let mut result = Ok(());
    let mut apply = |l: &mut Leaf| {
        if matches!(l.kind, LeafKind::Meta(..)) {
            result = Err(QueryError::new(
                column,
                name.len() + 1,
                QueryErrorKind::FieldOnMeta { field: name },
            ));
        }
        l.fields = Fields(l.fields.0 & fields.0);
    };
    fn walk(e: &mut Expr, f: &mut dyn FnMut(&mut Leaf)) {
        match e {
            Expr::Or(c) | Expr::And(c) => c.iter_mut().for_each(|e| walk(e, f)),
            Expr::Not(c) => walk(c, f),
            Expr::Near(n) => n.left.iter_mut().chain(n.right.iter_mut()).for_each(f),
            Expr::Leaf(l) => f(l),
        }
    }
    walk(e, &mut apply);
    result
}

fn normalize_meta(field: MetaField, value: &str) -> String {
    let v = value.trim().to_lowercase();
    match field {
        MetaField::Author => v.trim_start_matches('@').to_string(),
        MetaField::Site => v.trim_end_matches('.').trim_start_matches("*.").to_string(),
        _ => v,
    }
}

/// Compiles the regex once to validate it (the engine compiles it again
/// with all the others).
fn check_regex(pattern: &str, limits: &Limits) -> Result<(), QueryErrorKind> {
    use regex_automata::meta::Regex;
    let re = Regex::builder()
        .configure(Regex::config().nfa_size_limit(Some(limits.regex_size_limit)))
        .build(pattern)
        .map_err(|e| QueryErrorKind::BadRegex {
            message: regex_error_message(&e, limits),
        })?;
    if re.is_match("") {
        return Err(QueryErrorKind::RegexMatchesEmpty);
    }
    Ok(())
}

fn regex_error_message(e: &regex_automata::meta::BuildError, limits: &Limits) -> String {
    if e.size_limit().is_some() {
        return format!(
            "it compiles to more than the {} byte limit",
            limits.regex_size_limit
        );
    }
    match e.syntax_error() {
        // The syntax error's own Display spans several lines with the
        // pattern; keep the one-line kind.
        Some(s) => s
            .to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
        None => e.to_string(),
    }
}

/// The folded form a CJK leaf looks for in the folded field text of the
/// fields that hold CJK; empty — occurring nowhere — when no CJK character
/// is left after folding (a lone sound mark `゛` folds to a space, `E゙` to
/// `e`: found in any field, they would match every space or `e`).
fn cjk_needle(term: &str) -> String {
    let folded = text::fold(term);
    if text::contains_cjk(&folded) {
        folded
    } else {
        String::new()
    }
}
