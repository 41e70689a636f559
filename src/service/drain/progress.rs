//! Progress per class: backlog, rate and ETA, sampled from the runs.

use super::*;

/// One class's progress, as `/status` and `/metrics` show it.
#[derive(Clone, Debug, Serialize)]
pub struct ClassProgress {
    /// Class name.
    pub class: String,
    /// Messages this class still has to look at.
    pub backlog_messages: i64,
    /// Time span of that backlog, seconds (oldest unread message to the
    /// end of the range), when known.
    pub backlog_span_seconds: Option<f64>,
    /// Share of its reading done, 0–1.
    pub drained: f64,
    /// Messages looked at per second, last 10 s.
    pub rate: f64,
    /// Seconds to finish at the current rate (waiting classes under
    /// `strict`: after the classes before them).
    pub eta_seconds: Option<f64>,
    /// Documents of this class matched.
    pub documents: u64,
    /// Seconds after the job began when it finished.
    pub finished_after_seconds: Option<f64>,
}

impl Jobs {
    /// Reports of jobs that just finished, written once; call regularly.
    /// Also samples progress (once a second) and logs it (every 5 s).
    pub fn tick(&mut self, live_docs: u64) -> Vec<ClassProgress> {
        let now = Instant::now();
        for run in &mut self.runs {
            if run.reported {
                continue;
            }
            let remaining: Vec<i64> = (0..run.job.classes.len())
                .map(|c| run.job.remaining(c))
                .collect();
            let t = run.began.elapsed().as_secs_f64();
            if run.samples.last().is_none_or(|s| t - s.0 >= 1.0)
                || run.job.state != JobState::Running
            {
                run.samples.push((t, remaining.clone()));
            }
            run.window.push_back((now, remaining));
            while run
                .window
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at).as_secs_f64() > 10.0)
            {
                run.window.pop_front();
            }
        }
        // Reports for jobs that ended while running here.
        let reports = self.reports.clone();
        for run in &mut self.runs {
            if run.job.state != JobState::Running && run.job.finished_ms.is_some() && !run.reported
            {
                match write_report(&reports, run, live_docs, &self.classes) {
                    Ok(path) => {
                        tracing::info!(job = run.job.id, report = %path.display(), "drain report written")
                    }
                    Err(e) => {
                        tracing::error!(job = run.job.id, error = %e, "cannot write the drain report")
                    }
                }
                run.reported = true;
            }
        }
        let progress = self.progress();
        if self.last_log.elapsed().as_secs() >= 5 && !progress.is_empty() {
            self.last_log = Instant::now();
            for p in &progress {
                if p.backlog_messages > 0 {
                    tracing::info!(class = %p.class, backlog = p.backlog_messages, drained = format!("{:.1}%", p.drained * 100.0), rate = p.rate.round(), eta_seconds = p.eta_seconds.map(f64::round), "catch-up progress");
                }
            }
        }
        // Forget finished jobs beyond the newest 20.
        let finished = self
            .runs
            .iter()
            .filter(|r| r.job.state != JobState::Running)
            .count();
        if finished > 20 {
            let mut drop = finished - 20;
            self.runs.retain(|r| {
                if drop > 0 && r.reported {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        progress
    }

    /// Per class, over all running jobs.
    pub fn progress(&self) -> Vec<ClassProgress> {
        let n = self.classes.len();
        let mut out: Vec<ClassProgress> = self
            .classes
            .names()
            .iter()
            .map(|name| ClassProgress {
                class: name.to_string(),
                backlog_messages: 0,
                backlog_span_seconds: None,
                drained: 1.0,
                rate: 0.0,
                eta_seconds: Some(0.0),
                documents: 0,
                finished_after_seconds: None,
            })
            .collect();
        let mut total = vec![0i64; n];
        let now = now_ms() as i64;
        for run in &self.runs {
            let job = &run.job;
            if job.state != JobState::Running || job.classes.len() != n {
                continue;
            }
            for (c, p) in out.iter_mut().enumerate() {
                let rem = job.remaining(c);
                p.backlog_messages += rem;
                total[c] += job.to_read(c, &self.classes);
                p.documents += job.emitted[c];
                p.finished_after_seconds = job.class_finished_s[c];
                if let (Some((t0, r0)), Some((t1, r1))) = (run.window.front(), run.window.back()) {
                    let dt = t1.duration_since(*t0).as_secs_f64();
                    if dt > 0.5 {
                        p.rate += (r0[c] - r1[c]).max(0) as f64 / dt;
                    }
                }
                if rem > 0 {
                    let oldest = job
                        .ranges
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.cursors[c] < r.end)
                        .filter_map(|(i, _)| self.unread_ts.get(&(job.id, i, c)))
                        .min();
                    let span = match oldest {
                        Some(&ts) => (now - ts).max(0) as f64 / 1e3,
                        None => now.saturating_sub(job.created_ms as i64).max(0) as f64 / 1e3,
                    };
                    p.backlog_span_seconds = Some(p.backlog_span_seconds.unwrap_or(0.0).max(span));
                }
            }
        }
        // ETA: strict classes wait for the ones before them.
        let mut ahead = 0.0;
        for (c, p) in out.iter_mut().enumerate() {
            if total[c] > 0 {
                p.drained = 1.0 - p.backlog_messages as f64 / total[c] as f64;
            }
            if p.backlog_messages == 0 {
                p.eta_seconds = Some(0.0);
                continue;
            }
            p.eta_seconds = if p.rate > 0.0 {
                let own = p.backlog_messages as f64 / p.rate;
                Some(if self.strict() { ahead + own } else { own })
            } else {
                None
            };
            if let Some(e) = p.eta_seconds {
                ahead = e;
            }
        }
        out
    }
}
