//! Query errors with columns (docs/query-language.md §3.5) and the warnings of §3.3.

use std::fmt;

/// Why a query was rejected, with where. Columns are 1-based and count
/// characters, not bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {kind}")]
pub struct QueryError {
    /// 1-based column of the offending text.
    pub column: usize,
    /// Width of the offending text in characters (at least 1).
    pub width: usize,
    /// What is wrong.
    pub kind: QueryErrorKind,
}

impl QueryError {
    pub(crate) fn new(column: usize, width: usize, kind: QueryErrorKind) -> QueryError {
        QueryError {
            column,
            width: width.max(1),
            kind,
        }
    }

    /// What to do about it.
    pub fn help(&self) -> String {
        self.kind.help()
    }
}

/// The ways a query can be invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryErrorKind {
    /// The query is empty or blank.
    #[error("the query is empty")]
    Empty,
    /// Longer than the limit.
    #[error("the query is {chars} characters long; the limit is {limit}")]
    TooLong {
        /// Its length.
        chars: usize,
        /// The limit.
        limit: usize,
    },
    /// More leaves than the limit.
    #[error("the query has {leaves} leaves; the limit is {limit}")]
    TooManyLeaves {
        /// Its leaf count.
        leaves: usize,
        /// The limit.
        limit: usize,
    },
    /// `"` without its closing partner.
    #[error("unclosed quote")]
    UnclosedQuote,
    /// `{` without `}`.
    #[error("unclosed brace")]
    UnclosedBrace,
    /// `}` without `{`.
    #[error("closing brace without an opening one")]
    UnopenedBrace,
    /// `/` starting a regex without its closing `/`.
    #[error("unclosed regular expression")]
    UnclosedSlash,
    /// `(` without `)`.
    #[error("unclosed parenthesis")]
    UnclosedParen,
    /// `)` without `(`.
    #[error("closing parenthesis without an opening one")]
    UnopenedParen,
    /// An operator lacks an operand.
    #[error("`{op}` lacks {side} operand")]
    MissingOperand {
        /// The operator.
        op: String,
        /// "a left" or "a right" or "an".
        side: &'static str,
    },
    /// `-` not directly followed by a leaf or group.
    #[error("`-` must be directly followed by a term or a group")]
    DanglingMinus,
    /// A NEAR operand that is not a leaf or an OR-group of leaves.
    #[error("a NEAR operand must be a text leaf or a parenthesized OR-group of text leaves")]
    BadNearOperand,
    /// `NEAR/x` with a bad distance.
    #[error("`{text}` is not a valid proximity operator")]
    BadNearDistance {
        /// What was written.
        text: String,
    },
    /// `"…"~x` with a bad slop.
    #[error("`~{text}` is not a valid proximity slop")]
    BadSlop {
        /// What was written after `~`.
        text: String,
    },
    /// A term with nothing to match.
    #[error("`{text}` contains no letter, digit or emoji to match")]
    NothingToMatch {
        /// The term.
        text: String,
    },
    /// A wildcard with too few literal characters.
    #[error("wildcard `{text}` has {literals} literal characters; at least 3 are required")]
    WildcardTooShort {
        /// The wildcard.
        text: String,
        /// Its literal characters.
        literals: usize,
    },
    /// A wildcard with too many wildcards.
    #[error("wildcard `{text}` has {wildcards} wildcards; at most 4 are allowed")]
    TooManyWildcards {
        /// The wildcard.
        text: String,
        /// Its `*` and `?` count.
        wildcards: usize,
    },
    /// A wildcard spanning several tokens, or inside a phrase or braces.
    #[error("wildcard `{text}` must lie within one word")]
    WildcardAcrossTokens {
        /// The wildcard.
        text: String,
    },
    /// A regex that does not compile.
    #[error("invalid regular expression: {message}")]
    BadRegex {
        /// The compiler's message.
        message: String,
    },
    /// A regex that matches the empty string, i.e. every document.
    #[error("the regular expression matches empty text, so it would match every document")]
    RegexMatchesEmpty,
    /// A metadata leaf without a value.
    #[error("`{field}:` needs a value")]
    EmptyMetaValue {
        /// The field name.
        field: &'static str,
    },
    /// `title:`/`text:` applied to metadata or nested contradictorily.
    #[error("`{field}:` applies to text leaves only")]
    FieldOnMeta {
        /// The field name.
        field: &'static str,
    },
    /// Nothing positive must match.
    #[error(
        "nothing positive must match: the query matches documents by negation or metadata alone"
    )]
    NothingPositive,
    /// `NOT`/`-` directly after NEAR/ONEAR.
    #[error("the right operand of `{op}` cannot be negated")]
    NegatedNearOperand {
        /// The NEAR operator as written.
        op: String,
    },
    /// Nested deeper than the limit.
    #[error("the query nests parentheses, NOT and field prefixes more than {limit} levels deep")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A proximity phrase with too many tokens.
    #[error("the proximity phrase has {tokens} tokens; at most {limit} are allowed with `~n`")]
    SlopPhraseTooLong {
        /// Its tokens.
        tokens: usize,
        /// The limit.
        limit: usize,
    },
    /// A CJK phrase with `~n`.
    #[error("proximity `~n` does not apply to CJK text, which is matched as a substring")]
    CjkSlop,
}

impl QueryErrorKind {
    /// What to do about this error.
    pub fn help(&self) -> String {
        use QueryErrorKind::*;
        match self {
            Empty => "write at least one term".into(),
            TooLong { .. } => "split the query into several searches of the same topic".into(),
            TooManyLeaves { .. } => "split the query into several searches of the same topic".into(),
            UnclosedQuote => "add the closing `\"`".into(),
            UnclosedBrace => "add the closing `}`".into(),
            UnopenedBrace => "remove the `}` or add the opening `{`".into(),
            UnclosedSlash => "add the closing `/`, or write `\\/` for a slash inside the expression".into(),
            UnclosedParen => "add the closing `)`".into(),
            UnopenedParen => "remove the `)` or add the opening `(`".into(),
            MissingOperand { op, .. } => {
                format!("give `{op}` a term or group on each side, or quote it (\"{op}\") to search for the word")
            }
            DanglingMinus => "write `-word` or `-(group)` without a space".into(),
            BadNearOperand => "use a word, phrase, wildcard or `(a OR b)` on each side of NEAR".into(),
            BadNearDistance { .. } => "write NEAR/n, NEAR/nf or ONEAR/n with n from 0 to 100".into(),
            BadSlop { .. } => "write `\"a b\"~n` with n from 0 to 100".into(),
            NothingToMatch { .. } => "remove the term or quote the words you mean".into(),
            WildcardTooShort { .. } => "write at least 3 letters or digits besides `*` and `?`".into(),
            TooManyWildcards { .. } => "use at most 4 `*` or `?` in one wildcard".into(),
            WildcardAcrossTokens { .. } => {
                "a wildcard matches one word: remove separators such as `-` or spaces, or use a regular expression".into()
            }
            BadRegex { .. } => "fix the expression (regex-automata syntax)".into(),
            RegexMatchesEmpty => "make the expression require at least one character".into(),
            EmptyMetaValue { field } => format!("write `{field}:value` without a space"),
            FieldOnMeta { field } => format!("put `{field}:` in front of words, phrases or groups of them"),
            NothingPositive => "add a word, phrase or other text leaf that must occur, e.g. `acme NOT job`".into(),
            CjkSlop => "remove the `~n`".into(),
            NegatedNearOperand { op } => format!(
                "put words on both sides of `{op}` and the exclusion outside it: `(a {op} b) NOT c`"
            ),
            TooDeep { .. } => "remove redundant parentheses or NOTs, or split the query into several searches".into(),
            SlopPhraseTooLong { .. } => "shorten the phrase or drop the `~n` to match it exactly".into(),
        }
    }
}

/// A reading the user may not expect; `check` shows it without rejecting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryWarning {
    /// 1-based column where the ambiguous level starts.
    pub column: usize,
    /// The message (one of a few fixed texts, not a copy per search).
    pub message: &'static str,
    /// The reading the matcher uses, fully parenthesized.
    pub reading: String,
}

impl fmt::Display for QueryWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "column {}: {}; read as: {}",
            self.column, self.message, self.reading
        )
    }
}
