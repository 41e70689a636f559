//! The streaming service (`run`, docs/operations.md §5): Kafka in, match records out,
//! progress checkpointed in RocksDB, nothing lost.
//!
//! # Threads
//!
//! * The **pipeline** thread ([`pipeline`]) owns the Kafka consumer, the
//!   matcher's scratch space and the outputs: polling, matching and
//!   checkpointing are one synchronous loop, so there is no queue between
//!   them to grow without bound — when the output stalls, the loop pauses
//!   the input (docs/operations.md §5.5). Matching is CPU work and never runs on the async
//!   runtime.
//! * A small **tokio** runtime serves the admin API ([`admin`]) and waits
//!   for signals. A first SIGINT/SIGTERM asks the pipeline to shut down in
//!   order (stop polling → drain → flush → checkpoint → commit → leave the
//!   group); a second one exits at once (at least once still holds: nothing
//!   was checkpointed that was not acknowledged).

pub mod admin;
pub mod components;
pub mod console;
pub mod cost;
pub mod dead_letters;
pub mod drain;
pub mod explain;
pub mod guard;
mod lag;
pub mod metrics;
pub mod pipeline;
pub mod process_metrics;
pub mod reload;
pub mod replies;
pub mod shutdown;
pub mod sink;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use crate::config::{Config, Target};
use crate::state_store::StateStore;
pub use shutdown::Shutdown;

/// A running service: where its admin API listens and how to stop it.
pub struct Running {
    /// The bound admin address.
    pub admin_addr: SocketAddr,
    /// Set to 1 for a graceful stop, 2 for an immediate one.
    pub shutdown: Shutdown,
    /// The metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// The searches and their versions.
    pub searches: Arc<reload::SearchVersions>,
    /// Requests to the pipeline (replays, cancels).
    pub inbox: Arc<drain::Inbox>,
    pipeline: std::thread::JoinHandle<Result<(), pipeline::PipelineError>>,
    runtime: tokio::runtime::Runtime,
}

fn describe(t: &Target) -> String {
    match t {
        Target::Kafka(topic) => format!("kafka:{topic}"),
        Target::File(p) => format!("file:{}", p.display()),
        Target::Stdout => "stdout".into(),
    }
}

/// Starts the service: opens the state store, the searches (their stored
/// versions and sources, [`reload`]), the outputs, joins the group and
/// serves the admin API.
///
/// # Errors
///
/// [`StartError::Searches`] (exit code 1) when no valid searches version
/// exists; any part that cannot start.
pub fn start(config: Config) -> Result<Running, StartError> {
    start_with(config, true, None)
}

/// `replay` without a running service: no group, no live data; the stored
/// running replay jobs and `spec` (registered first) are drained, then the
/// pipeline stops (see [`Running::is_finished`]). The admin API listens on a
/// free port.
///
/// # Errors
///
/// As [`start`].
pub fn start_replay(
    mut config: Config,
    plan: Option<ReplayPlanner>,
) -> Result<(Running, Option<u64>), StartError> {
    config.admin_addr = "127.0.0.1:0".parse().expect("a socket address");
    let (tx, rx) = std::sync::mpsc::channel();
    let planned = plan.is_some();
    let running = start_with(config, false, plan.map(|p| (p, tx)))?;
    let id = if planned {
        let id = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .map_err(|_| anyhow::anyhow!("the replay job was not registered"))?
            .map_err(|e| anyhow::anyhow!("cannot store the replay job: {e}"))?;
        Some(id)
    } else {
        None
    };
    Ok((running, id))
}

/// Plans a replay once the searches are loaded (their ids are checked).
pub type ReplayPlanner = Box<dyn FnOnce(&reload::Active) -> Result<drain::ReplaySpec, String>>;

fn start_with(
    config: Config,
    live: bool,
    replay: Option<(ReplayPlanner, std::sync::mpsc::Sender<Result<u64, String>>)>,
) -> Result<Running, StartError> {
    let metrics = Arc::new(metrics::Metrics::default());
    process_metrics::mark_start();
    tracing::info!(
        brokers = %config.kafka.brokers,
        security_protocol = config.kafka.security_protocol(),
        "kafka clients"
    );
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    let store =
        Arc::new(StateStore::open(&config.state_dir).context("cannot open the state store")?);
    let searches = reload::SearchVersions::open(
        config.searches.clone(),
        &config.kafka,
        store.clone(),
        metrics.clone(),
    )
    .map_err(StartError::Searches)?;
    let active = searches.current();
    tracing::info!(
        version = active.meta.version,
        topics = active.meta.topics,
        searches = active.meta.searches,
        "searches ready"
    );
    drop(active);
    let shutdown = Shutdown::new();
    let inbox = Arc::new(drain::Inbox::default());
    if let Some((plan, reply)) = replay {
        let spec = plan(&searches.current()).map_err(StartError::Replay)?;
        for n in &spec.notes {
            tracing::info!(note = %n, "replay window");
        }
        inbox
            .requests
            .lock()
            .expect("inbox lock")
            .push(drain::Request::Replay { spec, reply });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("admin")
        .build()
        .context("cannot start the async runtime")?;
    let state = admin::AdminState {
        metrics: metrics.clone(),
        searches: searches.clone(),
        token: config.admin_token.clone(),
        group: config.group_id.clone(),
        input_topics: config.input_topics.clone(),
        output: describe(&config.output),
        inbox: inbox.clone(),
        config: Arc::new(config.clone()),
        limits: admin::AdminLimits {
            max_body_bytes: config.admin_max_body_bytes,
            max_connections: config.admin_max_connections,
            ..admin::AdminLimits::default()
        },
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let flag = shutdown.clone();
    let addr = config.admin_addr;
    runtime.spawn(async move {
        let stop = async move {
            while !flag.is_requested() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        if let Err(e) = admin::serve(addr, state, tx, stop).await {
            tracing::error!(%addr, error = %e, "admin API failed");
        }
    });
    let admin_addr = runtime
        .block_on(rx)
        .with_context(|| format!("cannot bind the admin API on {addr}"))?;
    tracing::info!(%admin_addr, "admin API listening");
    if live {
        lag::spawn(&config, metrics.clone(), shutdown.clone())?;
    }
    let p = pipeline::Pipeline::with_mode(
        config,
        searches.clone(),
        store,
        metrics.clone(),
        inbox.clone(),
        live,
    )
    .context("cannot start the pipeline")?;
    let flag = shutdown.clone();
    let pipeline = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || p.run(flag))
        .context("cannot start the pipeline thread")?;
    Ok(Running {
        admin_addr,
        shutdown,
        metrics,
        searches,
        inbox,
        pipeline,
        runtime,
    })
}

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No valid searches version (invalid input, exit code 1).
    #[error("{0}")]
    Searches(reload::ReloadError),
    /// An invalid replay request (exit code 1).
    #[error("{0}")]
    Replay(String),
    /// Anything else (exit code 2).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StartError {
    /// The one mapping of start errors to outcomes: invalid searches or
    /// replay requests are written to `out` and are invalid input (exit 1);
    /// anything else is returned as an error (exit 2).
    ///
    /// # Errors
    ///
    /// [`StartError::Other`]'s error, and failures to write to `out`.
    pub fn outcome(self, out: &mut dyn std::io::Write) -> anyhow::Result<crate::commands::Outcome> {
        match self {
            StartError::Searches(e) => writeln!(out, "{e}")?,
            StartError::Replay(e) => writeln!(out, "error: {e}")?,
            StartError::Other(e) => return Err(e),
        }
        Ok(crate::commands::Outcome::InvalidInput)
    }
}

impl Running {
    /// SIGINT/SIGTERM: the first asks for a graceful stop, the second exits
    /// at once.
    pub fn handle_signals(&self) {
        let flag = self.shutdown.clone();
        self.runtime.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            for n in 0.. {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                if n == 0 {
                    tracing::info!(
                        "signal received: shutting down (a second signal exits at once)"
                    );
                    flag.request();
                } else {
                    tracing::warn!("second signal: exiting now");
                    std::process::exit(130);
                }
            }
        });
    }

    /// Whether the pipeline has stopped (a standalone replay is done).
    pub fn is_finished(&self) -> bool {
        self.pipeline.is_finished()
    }

    /// Waits for the pipeline to stop by itself (standalone replay).
    ///
    /// # Errors
    ///
    /// The pipeline's error.
    pub fn wait(self) -> anyhow::Result<()> {
        self.join()
    }

    /// Asks for a graceful stop and waits for it.
    ///
    /// # Errors
    ///
    /// The pipeline's error.
    pub fn stop(self) -> anyhow::Result<()> {
        self.shutdown.request();
        self.join()
    }

    fn join(self) -> anyhow::Result<()> {
        let result = self
            .pipeline
            .join()
            .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?;
        self.shutdown.request();
        self.runtime
            .shutdown_timeout(std::time::Duration::from_secs(2));
        result.context("pipeline failed")
    }
}
