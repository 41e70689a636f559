//! `searches reload | rollback | history | put | set-topic | delete-topic`
//! (docs/operations.md §4, §6): the admin
//! operations of a running service, through its admin API.
//!
//! The address and token come from the flags, else the configuration
//! file's `[admin]`, else the defaults (`127.0.0.1:9464`, no token). A
//! rejected change exits 1 and prints every error; a service that does not
//! answer exits 2.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::admin_client::http;
pub use super::admin_client::Endpoint;
use super::Outcome;

/// What to do.
#[derive(Clone, Debug)]
pub enum Action {
    /// Re-read the sources.
    Reload {
        /// Accept a change that removes many topics.
        force: bool,
    },
    /// Back to the previous version, or to `to`.
    Rollback {
        /// The version to return to.
        to: Option<u64>,
    },
    /// List the stored versions.
    History,
    /// Upload a whole searches document.
    Put {
        /// The searches file to upload.
        file: PathBuf,
        /// Accept a change that removes many topics.
        force: bool,
    },
    /// Add or replace one topic.
    SetTopic {
        /// One topic's JSON.
        file: PathBuf,
        /// Accept a change that removes many topics.
        force: bool,
    },
    /// Delete one topic.
    DeleteTopic {
        /// The topic's id.
        id: String,
        /// Accept a change that removes many topics.
        force: bool,
    },
}

/// `?force=true` or nothing.
fn force_query(force: bool) -> &'static str {
    if force {
        "?force=true"
    } else {
        ""
    }
}

/// `s` as one path segment: every byte but the unreserved ones
/// percent-encoded (RFC 3986 §2.3).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn describe(v: &serde_json::Value) -> String {
    let hash = v["hash"].as_str().unwrap_or("");
    format!(
        "version {} ({} topics, {} searches, hash {}, from {}, {})",
        v["version"],
        v["topics"],
        v["searches"],
        &hash[..hash.len().min(12)],
        v["source"].as_str().unwrap_or("?"),
        v["created_at"].as_str().unwrap_or("?"),
    )
}

/// Runs one action against the service at `ep`.
///
/// # Errors
///
/// When the service does not answer (exit code 2).
pub fn run(ep: &Endpoint, action: &Action, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let token = ep.token.as_deref();
    let (method, path, body) = match action {
        Action::Reload { force } => (
            "POST",
            format!("/searches/reload{}", force_query(*force)),
            Vec::new(),
        ),
        Action::Rollback { to } => (
            "POST",
            match to {
                Some(n) => format!("/searches/rollback?to={n}"),
                None => "/searches/rollback".into(),
            },
            Vec::new(),
        ),
        Action::History => ("GET", "/searches/history".into(), Vec::new()),
        Action::Put { file, force } => (
            "PUT",
            format!("/searches{}", force_query(*force)),
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
        ),
        Action::SetTopic { file, force } => {
            let body =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string));
            let Some(id) = id else {
                writeln!(
                    out,
                    "error: {} is not a topic: a JSON object with a string \"id\" (docs/formats.md §2.2)",
                    file.display()
                )?;
                return Ok(Outcome::InvalidInput);
            };
            (
                "PUT",
                format!(
                    "/searches/topics/{}{}",
                    path_segment(&id),
                    force_query(*force)
                ),
                body,
            )
        }
        Action::DeleteTopic { id, force } => (
            "DELETE",
            format!(
                "/searches/topics/{}{}",
                path_segment(id),
                force_query(*force)
            ),
            Vec::new(),
        ),
    };
    let (code, text) = http(ep.addr, method, &path, token, &body)
        .with_context(|| format!("the service is not answering on {}", ep.addr))?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if !(200..300).contains(&code) {
        writeln!(
            out,
            "error ({code}): {}",
            v["message"].as_str().unwrap_or(text.trim())
        )?;
        return Ok(Outcome::InvalidInput);
    }
    match action {
        Action::History => {
            let active = v["active"].as_u64().unwrap_or(0);
            let versions = v["versions"].as_array().cloned().unwrap_or_default();
            if versions.is_empty() {
                writeln!(out, "no stored versions")?;
            }
            for m in versions {
                let mark = if m["version"].as_u64() == Some(active) {
                    "*"
                } else {
                    " "
                };
                writeln!(out, "{mark} {}", describe(&m))?;
            }
        }
        _ => {
            let what = match v["outcome"].as_str() {
                Some("unchanged") => "unchanged: still",
                Some("published") => {
                    "published to the searches topic; still active until read back:"
                }
                _ => "now active:",
            };
            writeln!(out, "{what} {}", describe(&v["active"]))?;
        }
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_are_one_encoded_path_segment() {
        assert_eq!(path_segment("acme-1_x.y~z"), "acme-1_x.y~z");
        assert_eq!(path_segment("a/b c?d#e%"), "a%2Fb%20c%3Fd%23e%25");
        assert_eq!(path_segment("café"), "caf%C3%A9");
    }
}
