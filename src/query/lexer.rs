//! Splits a query into lexemes with their columns.

use super::ast::MetaField;
use super::error::{QueryError, QueryErrorKind};

/// One lexeme and where it is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Lexeme {
    pub lex: Lex,
    /// 1-based character column.
    pub column: usize,
    /// Width in characters.
    pub width: usize,
    /// Byte offset in the query.
    pub byte: usize,
    /// The text as written.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lex {
    LParen,
    RParen,
    Or,
    And,
    Not,
    /// `-` directly before a leaf or group.
    Minus,
    Near {
        max_gap: u32,
        ordered: bool,
    },
    /// `title:` or `text:` directly before a leaf or group.
    FieldPrefix(super::Fields, &'static str),
    Word(String),
    Quoted {
        text: String,
        slop: Option<u32>,
    },
    Braced(String),
    Regex(String),
    Meta(MetaField, String),
}

const MAX_NEAR: u32 = 100;

fn is_break(c: char) -> bool {
    c.is_whitespace() || c == '(' || c == ')' || c == '"'
}

pub(crate) fn lex(query: &str) -> Result<Vec<Lexeme>, QueryError> {
    let chars: Vec<char> = query.chars().collect();
    let bytes: Vec<usize> = query.char_indices().map(|(b, _)| b).collect();
    let mut out = Vec::new();
    let mut i = 0;
    let text_of = |a: usize, b: usize| chars[a..b].iter().collect::<String>();
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let push = |out: &mut Vec<Lexeme>, lex: Lex, start: usize, end: usize| {
            out.push(Lexeme {
                lex,
                column: start + 1,
                width: end - start,
                byte: bytes[start],
                text: text_of(start, end),
            });
        };
        match c {
            '(' => {
                push(&mut out, Lex::LParen, i, i + 1);
                i += 1;
            }
            ')' => {
                push(&mut out, Lex::RParen, i, i + 1);
                i += 1;
            }
            '-' if i + 1 < chars.len() && !chars[i + 1].is_whitespace() && chars[i + 1] != ')' => {
                push(&mut out, Lex::Minus, i, i + 1);
                i += 1;
            }
            '-' if out.is_empty() || i + 1 >= chars.len() || chars[i + 1].is_whitespace() => {
                // A lone `-`: almost always a NOT with a stray space.
                return Err(QueryError::new(col, 1, QueryErrorKind::DanglingMinus));
            }
            '"' => {
                let (lex, end) = lex_quoted(&chars, i)?;
                push(&mut out, lex, i, end);
                i = end;
            }
            '{' => {
                let close = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '}')
                    .map(|p| i + 1 + p);
                let Some(close) = close else {
                    return Err(QueryError::new(col, 1, QueryErrorKind::UnclosedBrace));
                };
                push(&mut out, Lex::Braced(text_of(i + 1, close)), i, close + 1);
                i = close + 1;
            }
            '}' => return Err(QueryError::new(col, 1, QueryErrorKind::UnopenedBrace)),
            '/' => {
                let mut j = i + 1;
                let mut pattern = String::new();
                let mut closed = false;
                while j < chars.len() {
                    match chars[j] {
                        '\\' if j + 1 < chars.len() && chars[j + 1] == '/' => {
                            pattern.push('/');
                            j += 2;
                        }
                        '\\' if j + 1 < chars.len() => {
                            pattern.push('\\');
                            pattern.push(chars[j + 1]);
                            j += 2;
                        }
                        '/' => {
                            closed = true;
                            break;
                        }
                        c => {
                            pattern.push(c);
                            j += 1;
                        }
                    }
                }
                if !closed {
                    return Err(QueryError::new(col, 1, QueryErrorKind::UnclosedSlash));
                }
                push(&mut out, Lex::Regex(pattern), i, j + 1);
                i = j + 1;
            }
            _ => {
                let start = i;
                let mut pushed_prefix = false;
                while i < chars.len() && !is_break(chars[i]) {
                    // A field prefix ends the word: `title:"…"`, `title:(…)`.
                    if chars[i] == ':' {
                        let name = text_of(start, i);
                        if let Some(lexed) = field_prefix(&name) {
                            i += 1;
                            match lexed {
                                Prefix::Text(fields, n) => {
                                    if i >= chars.len() || chars[i].is_whitespace() {
                                        return Err(QueryError::new(
                                            start + 1,
                                            i - start,
                                            QueryErrorKind::MissingOperand {
                                                op: format!("{n}:"),
                                                side: "an",
                                            },
                                        ));
                                    }
                                    push(&mut out, Lex::FieldPrefix(fields, n), start, i);
                                }
                                Prefix::Meta(field) => {
                                    let (value, end) = meta_value(&chars, i)?;
                                    if value.trim().is_empty() {
                                        return Err(QueryError::new(
                                            start + 1,
                                            end - start,
                                            QueryErrorKind::EmptyMetaValue {
                                                field: field.name(),
                                            },
                                        ));
                                    }
                                    push(&mut out, Lex::Meta(field, value), start, end);
                                    i = end;
                                }
                            }
                            pushed_prefix = true;
                            break;
                        }
                    }
                    if chars[i] == '}' {
                        return Err(QueryError::new(i + 1, 1, QueryErrorKind::UnopenedBrace));
                    }
                    i += 1;
                }
                if pushed_prefix {
                    continue;
                }
                let word = text_of(start, i);
                let lex = operator(&word, start + 1)?.unwrap_or(Lex::Word(word));
                push(&mut out, lex, start, i);
            }
        }
    }
    Ok(out)
}

enum Prefix {
    Text(super::Fields, &'static str),
    Meta(MetaField),
}

fn field_prefix(name: &str) -> Option<Prefix> {
    match name {
        "title" => Some(Prefix::Text(super::Fields::TITLE, "title")),
        "text" => Some(Prefix::Text(super::Fields::TEXT, "text")),
        _ => MetaField::from_name(name).map(Prefix::Meta),
    }
}

/// Reads a metadata value: a quoted string or a run up to whitespace or `)`.
fn meta_value(chars: &[char], start: usize) -> Result<(String, usize), QueryError> {
    if start < chars.len() && chars[start] == '"' {
        let close = chars[start + 1..].iter().position(|&c| c == '"');
        let Some(close) = close else {
            return Err(QueryError::new(start + 1, 1, QueryErrorKind::UnclosedQuote));
        };
        let end = start + 1 + close;
        return Ok((chars[start + 1..end].iter().collect(), end + 1));
    }
    let mut end = start;
    while end < chars.len() && !chars[end].is_whitespace() && chars[end] != ')' {
        end += 1;
    }
    Ok((chars[start..end].iter().collect(), end))
}

fn lex_quoted(chars: &[char], start: usize) -> Result<(Lex, usize), QueryError> {
    let close = chars[start + 1..]
        .iter()
        .position(|&c| c == '"')
        .map(|p| start + 1 + p);
    let Some(close) = close else {
        return Err(QueryError::new(start + 1, 1, QueryErrorKind::UnclosedQuote));
    };
    let text: String = chars[start + 1..close].iter().collect();
    let mut end = close + 1;
    let mut slop = None;
    if end < chars.len() && chars[end] == '~' {
        let digits_start = end + 1;
        let mut j = digits_start;
        while j < chars.len() && !is_break(chars[j]) {
            j += 1;
        }
        let raw: String = chars[digits_start..j].iter().collect();
        match raw.parse::<u32>() {
            Ok(n) if n <= MAX_NEAR => slop = Some(n),
            _ => {
                return Err(QueryError::new(
                    end + 1,
                    j - end,
                    QueryErrorKind::BadSlop { text: raw },
                ));
            }
        }
        end = j;
    }
    Ok((Lex::Quoted { text, slop }, end))
}

/// Recognizes upper-case operators; lower-case ones are ordinary words.
fn operator(word: &str, column: usize) -> Result<Option<Lex>, QueryError> {
    Ok(Some(match word {
        "OR" => Lex::Or,
        "AND" => Lex::And,
        "NOT" => Lex::Not,
        _ => {
            let (rest, ordered_prefix) = if let Some(r) = word.strip_prefix("NEAR/") {
                (r, false)
            } else if let Some(r) = word.strip_prefix("ONEAR/") {
                (r, true)
            } else {
                return Ok(None);
            };
            let (digits, f) = match rest.strip_suffix('f') {
                Some(d) if !ordered_prefix => (d, true),
                _ => (rest, false),
            };
            match digits.parse::<u32>() {
                Ok(n) if n <= MAX_NEAR && !digits.starts_with('+') => Lex::Near {
                    max_gap: n,
                    ordered: ordered_prefix || f,
                },
                _ => {
                    return Err(QueryError::new(
                        column,
                        word.chars().count(),
                        QueryErrorKind::BadNearDistance {
                            text: word.to_string(),
                        },
                    ))
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(q: &str) -> Vec<Lex> {
        lex(q).unwrap().into_iter().map(|l| l.lex).collect()
    }

    #[test]
    fn lexes_operators_and_leaves() {
        assert_eq!(
            kinds(r#"("acme corp" OR #acme) NOT job* -x a NEAR/3f b"#),
            vec![
                Lex::LParen,
                Lex::Quoted {
                    text: "acme corp".into(),
                    slop: None
                },
                Lex::Or,
                Lex::Word("#acme".into()),
                Lex::RParen,
                Lex::Not,
                Lex::Word("job*".into()),
                Lex::Minus,
                Lex::Word("x".into()),
                Lex::Word("a".into()),
                Lex::Near {
                    max_gap: 3,
                    ordered: true
                },
                Lex::Word("b".into()),
            ]
        );
    }

    #[test]
    fn lower_case_operators_are_words() {
        assert_eq!(
            kinds("a or b"),
            vec![
                Lex::Word("a".into()),
                Lex::Word("or".into()),
                Lex::Word("b".into())
            ]
        );
    }

    #[test]
    fn columns_count_characters() {
        let l = lex("café \"x").unwrap_err();
        assert_eq!(l.column, 6);
        assert_eq!(l.kind, QueryErrorKind::UnclosedQuote);
    }

    #[test]
    fn field_prefixes() {
        assert_eq!(
            kinds("title:(a) author:@Jdoe site:\"example.com\""),
            vec![
                Lex::FieldPrefix(super::super::Fields::TITLE, "title"),
                Lex::LParen,
                Lex::Word("a".into()),
                Lex::RParen,
                Lex::Meta(MetaField::Author, "@Jdoe".into()),
                Lex::Meta(MetaField::Site, "example.com".into()),
            ]
        );
    }

    #[test]
    fn regex_with_escaped_slash() {
        assert_eq!(kinds(r"/a\/b\d/"), vec![Lex::Regex(r"a/b\d".into())]);
    }

    #[test]
    fn bad_near() {
        assert!(matches!(
            lex("a NEAR/101 b").unwrap_err().kind,
            QueryErrorKind::BadNearDistance { .. }
        ));
        assert!(matches!(
            lex("a NEAR/x b").unwrap_err().kind,
            QueryErrorKind::BadNearDistance { .. }
        ));
    }
}
