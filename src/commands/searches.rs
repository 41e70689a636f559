//! `searches reload | rollback | history | put` (docs/operations.md §4, §6): the admin
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
            format!(
                "/searches/reload{}",
                if *force { "?force=true" } else { "" }
            ),
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
            format!("/searches{}", if *force { "?force=true" } else { "" }),
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
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
