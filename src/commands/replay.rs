//! `replay --from T --to T [--searches ids] [--classes names]` (docs/operations.md §5.4):
//! a time window of the input drained again as a job, with progress.
//!
//! When the service answers on its admin address, the job is registered
//! there (`POST /replays`) and drained while the service runs; this command
//! then follows its progress (`--detach` returns at once). Otherwise it runs
//! standalone on the service's state directory: it registers the job in
//! RocksDB, drains it with the same lanes and checkpoints (no group, no
//! live data) and exits when done. A standalone replay stopped midway
//! (signal, kill -9) is resumed by `replay --resume` or by the next `run`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::admin_client::http;
use super::Outcome;
use crate::config::Config;
use crate::service::drain::{plan_replay, ClassProgress};
use crate::terminal::Screen;

/// What `replay` was asked.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// Window start.
    pub from: Option<String>,
    /// Window end.
    pub to: Option<String>,
    /// Only these searches.
    pub searches: Option<Vec<String>>,
    /// Only these classes.
    pub classes: Option<Vec<String>>,
    /// Resume stored replay jobs (standalone) instead of starting one.
    pub resume: bool,
    /// Cancel this job.
    pub cancel: Option<u64>,
    /// Return once the running service has the job.
    pub detach: bool,
}

/// Runs `replay`.
///
/// # Errors
///
/// Runtime failures (exit 2).
pub fn run(config: &Config, o: &ReplayOptions, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let token = config.admin_token.as_deref();
    let service_up = matches!(
        http(config.admin_addr, "GET", "/healthz", None, &[]),
        Ok((200, _))
    );
    if let Some(id) = o.cancel {
        if !service_up {
            writeln!(out, "the service is not answering on {}; start it (or `replay --resume`) to cancel job {id}", config.admin_addr)?;
            return Ok(Outcome::InvalidInput);
        }
        let (code, body) = http(
            config.admin_addr,
            "DELETE",
            &format!("/replays/{id}"),
            token,
            &[],
        )?;
        writeln!(out, "{}", body.trim())?;
        return Ok(if code == 200 {
            Outcome::Success
        } else {
            Outcome::InvalidInput
        });
    }
    if !o.resume && (o.from.is_none() || o.to.is_none()) {
        writeln!(
            out,
            "error: --from and --to are required (or --resume, --cancel ID)"
        )?;
        return Ok(Outcome::InvalidInput);
    }
    if service_up && !o.resume {
        let body = serde_json::json!({
            "from": o.from, "to": o.to, "searches": o.searches, "classes": o.classes,
        });
        let (code, reply) = http(
            config.admin_addr,
            "POST",
            "/replays",
            token,
            body.to_string().as_bytes(),
        )?;
        if code != 202 {
            writeln!(
                out,
                "replay refused by the service ({code}): {}",
                reply.trim()
            )?;
            return Ok(Outcome::InvalidInput);
        }
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
        let id = v["id"].as_u64().unwrap_or(0);
        for n in v["notes"].as_array().into_iter().flatten() {
            writeln!(out, "note: {}", n.as_str().unwrap_or_default())?;
        }
        writeln!(
            out,
            "replay job {id} registered with the service at {} ({} messages)",
            config.admin_addr, v["messages"]
        )?;
        if o.detach {
            return Ok(Outcome::Success);
        }
        return follow_service(config, id, out);
    }
    // Standalone.
    let plan: Option<crate::service::ReplayPlanner> = if o.resume {
        None
    } else {
        let (from, to) = (
            o.from.clone().unwrap_or_default(),
            o.to.clone().unwrap_or_default(),
        );
        let (searches, classes, config2) = (o.searches.clone(), o.classes.clone(), config.clone());
        Some(Box::new(move |active: &crate::service::reload::Active| {
            plan_replay(
                &config2,
                |id| {
                    active
                        .file
                        .topics
                        .iter()
                        .any(|t| t.searches.iter().any(|s| s.id == id))
                },
                &from,
                &to,
                searches,
                classes,
            )
        }))
    };
    let (running, id) = match crate::service::start_replay(config.clone(), plan) {
        Ok(r) => r,
        Err(e) => return e.outcome(out),
    };
    match id {
        Some(id) => writeln!(
            out,
            "replay job {id} registered in {}; draining (no service running)",
            config.state_dir.display()
        )?,
        None => writeln!(
            out,
            "resuming the stored replay jobs of {}",
            config.state_dir.display()
        )?,
    }
    running.handle_signals();
    let tty = std::io::stderr().is_terminal();
    let mut shown = 0;
    while !running.is_finished() {
        std::thread::sleep(Duration::from_millis(500));
        let progress = running.metrics.drain.lock().expect("drain lock").0.clone();
        shown = show(&progress, tty, shown);
    }
    let jobs = running.metrics.drain.lock().expect("drain lock").1.clone();
    running.wait()?;
    Screen::stderr().keep_bars();
    print_jobs(&jobs, out)?;
    writeln!(
        out,
        "drain reports in {}",
        crate::service::drain::reports_dir(&config.state_dir).display()
    )?;
    Ok(Outcome::Success)
}

/// Follows a job in the running service until it is no longer running.
fn follow_service(config: &Config, id: u64, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let tty = std::io::stderr().is_terminal();
    let mut shown = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let Ok((200, body)) = http(
            config.admin_addr,
            "GET",
            "/status",
            config.admin_token.as_deref(),
            &[],
        ) else {
            writeln!(
                out,
                "the service stopped answering; job {id} resumes when it runs again"
            )?;
            return Ok(Outcome::Success);
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let progress: Vec<ClassProgress> = v["classes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some(ClassProgress {
                    class: c["class"].as_str()?.to_string(),
                    backlog_messages: c["backlog_messages"].as_i64()?,
                    backlog_span_seconds: c["backlog_span_seconds"].as_f64(),
                    drained: c["drained"].as_f64()?,
                    rate: c["rate"].as_f64()?,
                    eta_seconds: c["eta_seconds"].as_f64(),
                    documents: c["documents"].as_u64()?,
                    finished_after_seconds: c["finished_after_seconds"].as_f64(),
                })
            })
            .collect();
        shown = show(&progress, tty, shown);
        let job = v["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|j| j["id"].as_u64() == Some(id))
            .cloned();
        if let Some(job) = job {
            if job["state"] != "running" {
                Screen::stderr().keep_bars();
                print_jobs(&serde_json::Value::Array(vec![job]), out)?;
                return Ok(Outcome::Success);
            }
        }
    }
}

fn print_jobs(jobs: &serde_json::Value, out: &mut dyn Write) -> std::io::Result<()> {
    for j in jobs.as_array().into_iter().flatten() {
        writeln!(
            out,
            "job {} ({}): {} — {} messages in {} partitions",
            j["id"],
            j["kind"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or(""),
            j["messages"],
            j["partitions"]
        )?;
        for c in j["classes"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  {:<12} {:>8} documents  finished after {}",
                c["class"].as_str().unwrap_or(""),
                c["documents"],
                c["finished_after_seconds"]
                    .as_f64()
                    .map_or("—".into(), |s| format!("{s:.1} s"))
            )?;
        }
    }
    Ok(())
}

/// Draws progress bars (terminal: at the bottom, log lines scrolling above;
/// otherwise a plain line every few calls). Returns the calls counted.
fn show(progress: &[ClassProgress], tty: bool, shown: usize) -> usize {
    if tty {
        Screen::stderr().set_bars(progress.iter().map(crate::terminal::bar_line).collect());
        shown
    } else {
        let mut err = std::io::stderr().lock();
        if shown.is_multiple_of(10) {
            let line: Vec<String> = progress
                .iter()
                .map(|p| {
                    format!(
                        "{} {:.1}% ({} left)",
                        p.class,
                        p.drained * 100.0,
                        p.backlog_messages
                    )
                })
                .collect();
            let _ = writeln!(err, "progress: {}", line.join(", "));
        }
        shown + 1
    }
}
