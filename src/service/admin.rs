//! The admin HTTP API (docs/operations.md §6): `/healthz`, `/readyz`, `/metrics`,
//! `/status`, and the searches: `GET /searches`, `GET /searches/history`,
//! `POST /searches/reload[?force=true]`, `PUT /searches[?force=true]`
//! (body: a whole searches document), `PUT /searches/topics/{id}[?force=true]`
//! (body: one topic as in the searches file), `DELETE
//! /searches/topics/{id}[?force=true]`, `POST /searches/rollback[?to=N]`;
//! `GET /searches/cost[?top=N]` (`service::cost`: what each search costs),
//! `GET /searches/diff?from=A[&to=B]` (topics added, removed, changed);
//! `POST /explain` (`service::explain`: why a document matches); `GET
//! /reports` and `/reports/{id}` (drain reports) and `GET /` (the console
//! page; `service::console`).
//!
//! Binds 127.0.0.1 by default. Mutating endpoints require
//! `Authorization: Bearer <admin.token>`: without it (or with a wrong one)
//! they answer 401 and change nothing; when no token is configured they
//! answer 403 — nobody can mutate a service that has no token. When a token
//! is configured, reading customer data (`/status`, `/searches…`,
//! `/replays`, `/reports…`, `POST /explain`) needs it too; `/healthz`,
//! `/readyz` and `/metrics` stay open for probes and scrapers, and `/`
//! (the console page, which holds no data and sends the token it is
//! given). The token is checked by a
//! middleware before any handler reads a body.
//!
//! The server is bounded ([`AdminLimits`]): request bodies, connections
//! served at once (more are closed), the time to send headers (a client that
//! trickles them is cut off) and a connection's whole life.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::drain::{plan_replay, CancelError, CancelRefused, Inbox, Request};
use super::metrics::Metrics;
use super::reload::{Change, ReloadError, SearchVersions};
use super::replies::json as json_error;
use crate::config::Config;

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Live metrics.
    pub metrics: Arc<Metrics>,
    /// The searches and their versions.
    pub searches: Arc<SearchVersions>,
    /// Bearer token of the mutating endpoints.
    pub token: Option<String>,
    /// Consumer group.
    pub group: String,
    /// Input topics.
    pub input_topics: Vec<String>,
    /// Output target as configured.
    pub output: String,
    /// Requests to the pipeline (replays, cancels).
    pub inbox: Arc<Inbox>,
    /// The configuration (brokers and topics for replays).
    pub config: Arc<Config>,
    /// Request and connection limits.
    pub limits: AdminLimits,
}

/// Bounds of the admin server (`[admin]`, docs/operations.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Largest request body (a whole searches document for `PUT /searches`).
    pub max_body_bytes: usize,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Time to send a request's headers.
    pub header_timeout: std::time::Duration,
    /// Time a connection may stay open in all.
    pub connection_timeout: std::time::Duration,
}

impl Default for AdminLimits {
    fn default() -> AdminLimits {
        AdminLimits {
            max_body_bytes: 512 << 20,
            max_connections: 64,
            header_timeout: std::time::Duration::from_secs(10),
            connection_timeout: std::time::Duration::from_secs(600),
        }
    }
}

/// The router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/searches", get(searches_get).put(searches_put))
        .route("/searches/history", get(searches_history))
        .route(
            "/searches/topics/{id}",
            axum::routing::put(topic_put).delete(topic_delete),
        )
        .route("/searches/reload", post(searches_reload))
        .route("/searches/rollback", post(searches_rollback))
        .route("/searches/cost", get(searches_cost))
        .route("/searches/diff", get(searches_diff))
        .route("/explain", post(explain_post))
        .route("/reports", get(reports))
        .route("/reports/{id}", get(report))
        .route("/replays", get(replays_get).post(replays_post))
        .route("/replays/{id}", axum::routing::delete(replays_delete))
        // Checked before any handler reads a body.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        // For scrapers and probes: always open. The console page holds
        // no data; it asks for the token and sends it with each request.
        .route("/", get(super::console::page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .with_state(state)
}

/// The token rules (module doc): reads need it when one is configured,
/// changes always do.
async fn require_token(
    State(s): State<AdminState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // POST /explain sends a document to read the searches with; it
    // changes nothing.
    let reading = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) || req.uri().path() == "/explain";
    if reading && s.token.is_none() {
        return next.run(req).await;
    }
    match unauthorized(&s, req.headers()) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// 200 while every background component runs; 503 naming the ones that
/// stopped, and why.
async fn healthz(State(s): State<AdminState>) -> impl IntoResponse {
    let down = s.metrics.components.down_now();
    if down.is_empty() {
        return (StatusCode::OK, "ok\n".to_string());
    }
    let mut body = String::new();
    for (name, why) in down {
        body.push_str(&format!("{name} down: {why}\n"));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

/// Whether the instance is ready, and why (docs/operations.md §6): the
/// state store writable, not stuck without partitions, and a member of the
/// group — with partitions, or a spare when the group has more members
/// than partitions.
pub fn readiness(m: &super::metrics::Metrics) -> (bool, &'static str) {
    if m.state_store_down.load(Relaxed) == 1 {
        (
            false,
            "state store not writable: checkpoints and input paused",
        )
    } else if m.stuck_without_partitions.load(Relaxed) == 1 {
        (
            false,
            "no partitions while the group has lag nobody drains: rejoining the group",
        )
    } else if m.assigned_partitions.load(Relaxed) > 0 {
        (true, "ready")
    } else if m.group_joined.load(Relaxed) == 1 {
        (true, "ready: member of the group, no partitions")
    } else {
        (false, "not yet a member of the group")
    }
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let (ready, why) = readiness(&s.metrics);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{why}\n"))
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// The JSON that `/status` and the `status` command show.
pub fn status_json(s: &AdminState) -> serde_json::Value {
    let m = &s.metrics;
    serde_json::json!({
        "group": s.group,
        "input_topics": s.input_topics,
        "output": s.output,
        "ready": readiness(m).0,
        "output_down": m.output_down.load(Relaxed) == 1,
        "searches": m.searches.load(Relaxed),
        "searches_version": m.searches_version.load(Relaxed),
        "searches_detail": s.searches.status_json(),
        "documents_in": m.documents_in.load(Relaxed),
        "documents_bad": m.documents_bad.load(Relaxed),
        "documents_matched": m.documents_matched.load(Relaxed),
        "match_records_out": m.records_out.load(Relaxed),
        "consumer_lag": (m.lag_monitor_up.load(Relaxed) == 1).then(|| m.lag_total.load(Relaxed)),
        "consumer_lag_seconds": (m.lag_monitor_up.load(Relaxed) == 1)
            .then(|| m.lag_seconds_ms.load(Relaxed) as f64 / 1e3),
        "components": m
            .components
            .snapshot()
            .into_iter()
            .map(|(name, down)| (name.to_string(), serde_json::json!(down.map_or("up".to_string(), |why| format!("down: {why}")))))
            .collect::<serde_json::Map<_, _>>(),
        "checkpoint_age_seconds": m.checkpoint_age_secs(),
        "partitions": m
            .partitions
            .lock()
            .expect("status lock")
            .iter()
            .map(|(tp, status)| (tp.to_string(), serde_json::json!(status)))
            .collect::<serde_json::Map<_, _>>(),
        "classes": m.drain.lock().expect("drain lock").0,
        "jobs": m.drain.lock().expect("drain lock").1,
    })
}

async fn status(State(s): State<AdminState>) -> impl IntoResponse {
    Json(status_json(&s))
}

/// `None` when the request carries the configured token; else the reply.
fn unauthorized(s: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &s.token else {
        return Some(json_error(
            403,
            serde_json::json!({"error": "forbidden", "message": "no admin token is configured (admin.token, --admin-token or TOPIC_MATCHER_ADMIN_TOKEN); mutating endpoints are disabled"}),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare without an early exit on the first differing byte.
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(serde_json::json!({"error": "unauthorized", "message": "a valid bearer token is required"})),
            )
                .into_response(),
        )
    }
}

fn change_reply(r: Result<Change, ReloadError>) -> Response {
    match r {
        Ok(c) => {
            let status = if c.outcome == crate::service::reload::ChangeOutcome::Published {
                202
            } else {
                200
            };
            json_error(status, serde_json::to_value(c).unwrap_or_default())
        }
        Err(e) => json_error(e.http_status(), e.to_json()),
    }
}

#[derive(serde::Deserialize)]
struct ForceParam {
    #[serde(default)]
    force: bool,
}

#[derive(serde::Deserialize)]
struct ToParam {
    to: Option<u64>,
}

async fn searches_get(State(s): State<AdminState>) -> Response {
    let a = s.searches.current();
    match s.searches.document() {
        Ok(doc) => {
            let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap_or_default();
            Json(serde_json::json!({"version": a.meta, "document": doc})).into_response()
        }
        Err(e) => json_error(e.http_status(), e.to_json()),
    }
}

async fn searches_history(State(s): State<AdminState>) -> Response {
    match s.searches.history() {
        Ok(h) => Json(serde_json::json!({
            "active": s.searches.current().meta.version,
            "versions": h,
        }))
        .into_response(),
        Err(e) => json_error(e.http_status(), e.to_json()),
    }
}

#[derive(serde::Deserialize)]
struct TopParam {
    top: Option<usize>,
}

/// Most entries `/searches/cost` lists per ranking.
const MAX_COST_TOP: usize = 1000;

async fn searches_cost(State(s): State<AdminState>, Query(q): Query<TopParam>) -> Response {
    let top = q.top.unwrap_or(20).min(MAX_COST_TOP);
    Json(s.metrics.costs.top_json(top)).into_response()
}

#[derive(serde::Deserialize)]
struct DiffParam {
    from: u64,
    to: Option<u64>,
}

/// Diffs computed at once: each reads and parses two whole stored
/// documents (tens of megabytes at a million searches), so more wait
/// their turn instead of multiplying the memory.
static DIFFS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// `to` defaults to the active version.
async fn searches_diff(State(s): State<AdminState>, Query(q): Query<DiffParam>) -> Response {
    let to = q.to.unwrap_or_else(|| s.searches.current().meta.version);
    let versions = s.searches.clone();
    let Ok(_turn) = DIFFS.acquire().await else {
        return json_error(503, serde_json::json!({"error": "shutting_down"}));
    };
    match tokio::task::spawn_blocking(move || versions.diff(q.from, to)).await {
        Ok(Ok(d)) => Json(d).into_response(),
        Ok(Err(e)) => json_error(e.http_status(), e.to_json()),
        Err(e) => json_error(
            500,
            serde_json::json!({"error": "internal", "message": e.to_string()}),
        ),
    }
}

async fn reports(State(s): State<AdminState>) -> Response {
    super::console::reports(super::drain::reports_dir(&s.config.state_dir)).await
}

#[derive(serde::Deserialize)]
struct FormatParam {
    format: Option<String>,
}

async fn report(
    State(s): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<FormatParam>,
) -> Response {
    let dir = super::drain::reports_dir(&s.config.state_dir);
    super::console::report(dir, &id, q.format.as_deref()).await
}

async fn searches_reload(State(s): State<AdminState>, Query(q): Query<ForceParam>) -> Response {
    change_reply(s.searches.reload(q.force).await)
}

async fn searches_put(
    State(s): State<AdminState>,
    Query(q): Query<ForceParam>,
    body: axum::body::Bytes,
) -> Response {
    change_reply(s.searches.put(body.to_vec(), q.force).await)
}

async fn topic_put(
    State(s): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<ForceParam>,
    body: axum::body::Bytes,
) -> Response {
    change_reply(s.searches.set_topic(&id, &body, q.force).await)
}

async fn topic_delete(
    State(s): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<ForceParam>,
) -> Response {
    change_reply(s.searches.delete_topic(&id, q.force).await)
}

async fn searches_rollback(State(s): State<AdminState>, Query(q): Query<ToParam>) -> Response {
    change_reply(s.searches.rollback(q.to).await)
}

async fn replays_get(State(s): State<AdminState>) -> Response {
    let jobs = s.metrics.drain.lock().expect("drain lock").1.clone();
    Json(serde_json::json!({"jobs": jobs})).into_response()
}

/// `POST /replays` body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    from: String,
    to: String,
    searches: Option<Vec<String>>,
    classes: Option<Vec<String>>,
}

/// Explanations computed at once (one over a whole catalog of 100,000
/// searches takes up to a second of a core; the console asks as the user
/// types): more wait their turn.
static EXPLAINS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

async fn explain_post(State(s): State<AdminState>, body: axum::body::Bytes) -> Response {
    let active = s.searches.current();
    let Ok(_turn) = EXPLAINS.acquire().await else {
        return json_error(503, serde_json::json!({"error": "shutting_down"}));
    };
    tokio::task::spawn_blocking(move || super::explain::explain(&active, &body))
        .await
        .unwrap_or_else(|e| {
            json_error(
                500,
                serde_json::json!({"error": "internal", "message": e.to_string()}),
            )
        })
}

async fn replays_post(State(s): State<AdminState>, body: axum::body::Bytes) -> Response {
    let body: ReplayBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return json_error(
                400,
                serde_json::json!({"error": "bad_request", "message": format!("expected {{\"from\", \"to\", \"searches\"?, \"classes\"?}}: {e}")}),
            )
        }
    };
    let state = s.clone();
    let planned = tokio::task::spawn_blocking(move || {
        let active = state.searches.current();
        let spec = plan_replay(
            &state.config,
            |id| {
                active.matcher.search_index(id).is_some()
                    || active
                        .file
                        .topics
                        .iter()
                        .any(|t| t.searches.iter().any(|x| x.id == id))
            },
            &body.from,
            &body.to,
            body.searches,
            body.classes,
        )?;
        let notes = spec.notes.clone();
        let messages: i64 = spec.ranges.iter().map(|r| r.2 - r.1).sum();
        let (tx, rx) = std::sync::mpsc::channel();
        state
            .inbox
            .requests
            .lock()
            .expect("inbox lock")
            .push(Request::Replay { spec, reply: tx });
        let id = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .map_err(|_| "the pipeline did not take the replay".to_string())??;
        Ok::<_, String>((id, messages, notes))
    })
    .await;
    match planned {
        Ok(Ok((id, messages, notes))) => json_error(
            202,
            serde_json::json!({"id": id, "messages": messages, "notes": notes}),
        ),
        Ok(Err(message)) => json_error(
            422,
            serde_json::json!({"error": "invalid_replay", "message": message}),
        ),
        Err(e) => json_error(
            500,
            serde_json::json!({"error": "internal", "message": e.to_string()}),
        ),
    }
}

async fn replays_delete(
    State(s): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<u64>,
) -> Response {
    let inbox = s.inbox.clone();
    let done = tokio::task::spawn_blocking(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        inbox
            .requests
            .lock()
            .expect("inbox lock")
            .push(Request::Cancel { id, reply: tx });
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| {
                Err(CancelError::NotStored(
                    "the pipeline did not answer within 30 s".into(),
                ))
            })
    })
    .await
    .unwrap_or_else(|e| Err(CancelError::NotStored(e.to_string())));
    match done {
        Ok(()) => json_error(200, serde_json::json!({"id": id, "state": "cancelled"})),
        Err(CancelError::Refused(CancelRefused::NotRunning)) => json_error(
            404,
            serde_json::json!({"error": "not_found", "message": format!("no running replay {id}")}),
        ),
        Err(CancelError::Refused(CancelRefused::CatchUp)) => json_error(
            409,
            serde_json::json!({"error": "catch_up_not_cancellable", "message": format!(
                "job {id} is a catch-up: its backlog has not been matched yet, so cancelling it would lose data; only replays can be cancelled"
            )}),
        ),
        Err(CancelError::NotStored(why)) => json_error(
            500,
            serde_json::json!({"error": "not_stored", "message": format!("job {id} was not cancelled durably: {why}")}),
        ),
    }
}

/// Binds `addr` and serves until `shutdown` resolves; returns the bound
/// address (port 0 picks one) through `bound`.
///
/// # Errors
///
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    state: AdminState,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let limits = state.limits;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    let app = router(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = limits.max_connections, "admin API: too many connections; closed");
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(limits.connection_timeout, connection).await;
        });
    }
}
