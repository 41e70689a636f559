//! `status`: the service's `/status` from its admin API when it runs, else
//! the checkpoints in its state directory (read-only).

use std::io::Write;

use super::Outcome;
use crate::checkpoint::Checkpoints;
use crate::config::Config;

/// Runs `status`.
///
/// # Errors
///
/// When neither the admin API nor the state directory can be read.
pub fn run(config: &Config, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    if let Ok((200, body)) = super::searches::http(config.admin_addr, "GET", "/status", None, &[]) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            writeln!(out, "service at {} (live):", config.admin_addr)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            return Ok(Outcome::Success);
        }
    }
    let store = Checkpoints::open_read_only(&config.state_dir).map_err(|e| {
        anyhow::anyhow!(
            "the service is not answering on {} and its state cannot be read: {e}",
            config.admin_addr
        )
    })?;
    writeln!(
        out,
        "service not answering on {}; checkpoints in {}:",
        config.admin_addr,
        config.state_dir.display()
    )?;
    let all = store.all()?;
    if all.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for (tp, next) in all {
        writeln!(out, "  {tp:<40} next offset {next}")?;
    }
    let jobs = store.jobs()?;
    if !jobs.is_empty() {
        writeln!(out, "drain jobs (catch-ups and replays):")?;
    }
    for (id, bytes) in jobs {
        let Ok(job) = serde_json::from_slice::<crate::service::catchup::Job>(&bytes) else {
            writeln!(out, "  job {id}: unreadable")?;
            continue;
        };
        writeln!(
            out,
            "  job {id} ({:?}, {:?}, {}): {} messages in {} partitions, created {}",
            job.kind,
            job.state,
            job.policy,
            job.total(),
            job.ranges.len(),
            job.created_at
        )?;
        for (c, name) in job.classes.iter().enumerate() {
            writeln!(
                out,
                "    {name:<12} {:>9} messages left  {:>8} documents  {}",
                job.remaining(c),
                job.emitted[c],
                job.class_finished_s[c].map_or("not finished".into(), |s| format!(
                    "finished after {s:.1} s"
                ))
            )?;
        }
    }
    Ok(Outcome::Success)
}
