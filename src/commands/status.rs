//! `status`: the service's `/status` from its admin API when it runs, else
//! the checkpoints in its state directory (read-only). With `--json` both
//! are one JSON object on standard output, `"source"` saying which
//! (`"live"` or `"state_dir"`), for scripts.

use std::io::Write;

use super::Outcome;
use crate::config::Config;
use crate::record::rfc3339_ms;
use crate::service::drain::JobState;
use crate::state_store::StateStore;

/// A kind or state as it is spelled in `/status` (`catch_up`, `running`).
fn snake(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Runs `status`.
///
/// # Errors
///
/// When neither the admin API nor the state directory can be read.
pub fn run(config: &Config, json: bool, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let answer = super::admin_client::http(
        config.admin_addr,
        "GET",
        "/status",
        config.admin_token.as_deref(),
        &[],
    );
    if let Ok((401 | 403, _)) = answer {
        eprintln!(
            "error: the service at {} refuses /status without its token: give --admin-token (or TOPIC_MATCHER_ADMIN_TOKEN, or admin.token in --config)",
            config.admin_addr
        );
        return Ok(Outcome::InvalidInput);
    }
    if let Ok((200, body)) = answer {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            if json {
                let doc = serde_json::json!({
                    "source": "live",
                    "admin_addr": config.admin_addr.to_string(),
                    "status": v,
                });
                writeln!(out, "{doc}")?;
            } else {
                writeln!(out, "service at {} (live):", config.admin_addr)?;
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            }
            return Ok(Outcome::Success);
        }
    }
    let store = StateStore::open_read_only(&config.state_dir).map_err(|e| {
        anyhow::anyhow!(
            "the service is not answering on {} and its state cannot be read: {e}",
            config.admin_addr
        )
    })?;
    if json {
        return stored_json(config, &store, out);
    }
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
    let mut resumable = false;
    for (id, bytes) in jobs {
        let Ok(job) = serde_json::from_slice::<crate::service::drain::Job>(&bytes) else {
            writeln!(out, "  job {id}: unreadable")?;
            continue;
        };
        resumable |= job.state == JobState::Running;
        writeln!(
            out,
            "  job {id}: {}, {}, {}; {} messages in {} partitions; created {}",
            snake(job.kind),
            snake(job.state),
            job.policy,
            job.total(),
            job.ranges.len(),
            job.created_at
        )?;
        if let (Some(from), Some(to)) = (job.from_ms, job.to_ms) {
            let at = |ms: i64| rfc3339_ms(ms.max(0) as u64);
            writeln!(out, "    window [{}, {})", at(from), at(to))?;
        }
        if let Some(ids) = &job.searches {
            writeln!(out, "    searches {}", ids.join(", "))?;
        }
        if job.deleted_messages > 0 {
            writeln!(
                out,
                "    {} messages deleted by retention before they were read",
                job.deleted_messages
            )?;
        }
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
    if resumable {
        writeln!(
            out,
            "running jobs resume when the service starts (standalone replays: `replay --resume`)"
        )?;
    }
    Ok(Outcome::Success)
}

/// The state directory's checkpoints and drain jobs as one JSON object.
fn stored_json(
    config: &Config,
    store: &StateStore,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let checkpoints: Vec<serde_json::Value> = store
        .all()?
        .into_iter()
        .map(|(tp, next)| {
            serde_json::json!({"topic": tp.topic, "partition": tp.partition, "next_offset": next})
        })
        .collect();
    let jobs: Vec<serde_json::Value> = store
        .jobs()?
        .into_iter()
        .map(
            |(id, bytes)| match serde_json::from_slice::<crate::service::drain::Job>(&bytes) {
                // The same shape as the live `/status` jobs.
                Ok(job) => job.status_json(),
                Err(e) => serde_json::json!({"id": id, "unreadable": e.to_string()}),
            },
        )
        .collect();
    let doc = serde_json::json!({
        "source": "state_dir",
        "admin_addr": config.admin_addr.to_string(),
        "state_dir": config.state_dir.display().to_string(),
        "checkpoints": checkpoints,
        "jobs": jobs,
    });
    writeln!(out, "{doc}")?;
    Ok(Outcome::Success)
}
