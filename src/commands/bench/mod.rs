//! `bench`: the throughput and latency measurements of docs/operations.md
//! §4.3, one module per variant.
//!
//! | variant | flags | module |
//! |---|---|---|
//! | engine (offline) | *(none)*, `--searches-file`, `--input`, `--long-form` | [`engine`] |
//! | end to end through a broker | `--brokers` | [`kafka`] |
//! | catch-up by priority class | `--brokers --catch-up` | [`catchup`] |
//! | searches change | `--reload` | [`reload`] |
//! | hostile documents | `--adversarial` | [`adversarial`] |
//!
//! The broker variants share [`broker`]: topic creation, the bare-consumer
//! baselines every ratio is taken against, and the service timing.

pub mod adversarial;
mod broker;
pub mod catchup;
pub mod engine;
pub mod kafka;
pub mod reload;

/// The non-empty lines of `path` (documents given with `--input`).
///
/// # Errors
///
/// When the file cannot be read.
fn read_lines(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}
