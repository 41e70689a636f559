//! Why a change was not applied, with the HTTP status and code the admin
//! API answers with.

use super::*;

/// Why a change was not applied. The running version stays in every case.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The document is invalid: every problem, rendered (docs/query-language.md §3.5).
    #[error("searches from {origin} rejected:\n{rendered}")]
    Invalid {
        /// Where the document came from.
        origin: String,
        /// Every problem, each rendered with its caret.
        problems: Vec<String>,
        /// All of them as `check` prints them.
        rendered: String,
    },
    /// Too many topics would disappear; `force` accepts it.
    #[error("searches from {origin} rejected: {from} topics would become {to} (more than {max_pct}% removed); repeat with force to accept")]
    Shrink {
        /// Where the document came from.
        origin: String,
        /// Topics now.
        from: usize,
        /// Topics after.
        to: usize,
        /// The configured guard, percent.
        max_pct: u32,
    },
    /// No such stored version.
    #[error("no searches version {0}")]
    UnknownVersion(u64),
    /// No topic with this id in the active version.
    #[error("no topic {0:?} in the active searches")]
    UnknownTopic(String),
    /// Rollback without an earlier version.
    #[error("no version before {0} to roll back to")]
    NoPrevious(u64),
    /// Nothing to reload from.
    #[error("{0}")]
    NoSource(String),
    /// The state store failed.
    #[error("state store: {0}")]
    Store(String),
    /// The engine could not build the searches.
    #[error("compile: {0}")]
    Compile(String),
    /// Publishing to the searches topic failed.
    #[error("publishing to the searches topic failed: {0}")]
    Publish(String),
    /// The reload worker has stopped.
    #[error("the service is shutting down")]
    Stopped,
}

impl From<StoreError> for ReloadError {
    fn from(e: StoreError) -> ReloadError {
        ReloadError::Store(e.to_string())
    }
}

impl ReloadError {
    pub(super) fn invalid(source: &str, e: &CatalogError) -> ReloadError {
        ReloadError::Invalid {
            origin: source.to_string(),
            problems: e.problems.iter().map(ToString::to_string).collect(),
            rendered: e.render(),
        }
    }

    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ReloadError::Invalid { .. } => 422,
            ReloadError::Shrink { .. } | ReloadError::NoPrevious(_) => 409,
            ReloadError::UnknownVersion(_)
            | ReloadError::UnknownTopic(_)
            | ReloadError::NoSource(_) => 404,
            ReloadError::Publish(_) => 502,
            ReloadError::Stopped => 503,
            ReloadError::Store(_) | ReloadError::Compile(_) => 500,
        }
    }

    /// The JSON body of an error reply and of `/status`'s `last_error`.
    pub fn to_json(&self) -> serde_json::Value {
        let kind = match self {
            ReloadError::Invalid { .. } => "invalid",
            ReloadError::Shrink { .. } => "shrink_guard",
            ReloadError::UnknownVersion(_) => "unknown_version",
            ReloadError::UnknownTopic(_) => "unknown_topic",
            ReloadError::NoPrevious(_) => "no_previous_version",
            ReloadError::NoSource(_) => "no_source",
            ReloadError::Store(_) => "store",
            ReloadError::Compile(_) => "compile",
            ReloadError::Publish(_) => "publish",
            ReloadError::Stopped => "stopped",
        };
        let mut v = serde_json::json!({"error": kind, "message": self.to_string()});
        if let ReloadError::Invalid { problems, .. } = self {
            v["problems"] = serde_json::json!(problems);
        }
        v
    }
}
