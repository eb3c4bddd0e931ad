//! The `ofmon ui` web server: embedded pages and the JSON API behind them.
//!
//! # Endpoints
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/` , `/assets/...` | the embedded pages (hash-routed: `#/`, `#/device/ID`, `#/settings`) |
//! | GET | `/api/health` | `{ok, version, home}` |
//! | GET | `/api/fleet` | `{now_ms, devices: [FleetDevice]}` |
//! | GET | `/api/devices/{id}` | one [`FleetDevice`](crate::query::FleetDevice) |
//! | GET | `/api/devices/{id}/series?from=MS&to=MS&points=N` | [`Series`](crate::query::Series) |
//! | GET | `/api/devices/{id}/energy?tz_offset_min=M` | `[DayEnergy]` (Wh per day) |
//! | GET | `/api/devices/{id}/events?limit=N` | `[TimelineEvent]`, newest first |
//! | GET, PUT | `/api/settings` | [`Settings`] plus read-only paths |
//! | POST | `/api/actions/{collect,time,pair,sync}` (JSON body) | 202 `{job, events}` |
//! | POST | `/api/actions/ota?device=ID` (body: the signed upload, `application/octet-stream`) | 202 `{job, events}` |
//! | GET | `/api/jobs`, `/api/jobs/{id}` | job summaries |
//! | GET | `/api/jobs/{id}/events` | server-sent events: `progress`, `log`, then `done` or `failed` |
//!
//! Errors are `{"error": "..."}` with 400, 403 (foreign `Origin`), 404, 409
//! (same action already running), 413 (upload too large), 415 (POST/PUT
//! without a JSON body, or OTA without an octet-stream body) or 500.
//!
//! Mutating requests must carry JSON or, for the firmware upload,
//! `application/octet-stream` (so a foreign web page cannot send them
//! without a CORS preflight, which this server never grants) and are
//! refused when their `Origin` is not this server. The server listens on
//! loopback by default; it has no login, so listen elsewhere only on a
//! network you trust.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use crate::actions::{self, Ctx, PairBody};
use crate::jobs::Jobs;
use crate::query;
use crate::settings::Settings;
use crate::{Error, assets};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Busy(_) => StatusCode::CONFLICT,
            Error::Collector(collector::Error::UnknownDevice(_)) => StatusCode::NOT_FOUND,
            Error::Collector(collector::Error::Config(_)) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, axum::Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Shared state of the handlers.
pub struct AppState {
    ctx: Ctx,
    jobs: Jobs,
}

type St = State<Arc<AppState>>;

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Address to listen on (port 0: a free port).
    pub listen: SocketAddr,
    /// The collector home (database, fleet key, settings).
    pub home: PathBuf,
}

/// Runs a blocking read-only query on a fresh connection.
async fn read<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let path = st.ctx.db_path();
    tokio::task::spawn_blocking(move || f(&query::open(&path)?))
        .await
        .map_err(|e| Error::BadRequest(format!("query task failed: {e}")))?
}

async fn health(State(st): St) -> impl IntoResponse {
    axum::Json(json!({
        "ok": true,
        "version": env!("CARGO_PKG_VERSION"),
        "home": st.ctx.home.display().to_string(),
    }))
}

async fn fleet(State(st): St) -> Result<impl IntoResponse, Error> {
    let now = crate::now_ms();
    let devices = read(&st, move |c| query::fleet(c, now)).await?;
    Ok(axum::Json(json!({ "now_ms": now, "devices": devices })))
}

async fn device(State(st): St, Path(id): Path<String>) -> Result<impl IntoResponse, Error> {
    let now = crate::now_ms();
    Ok(axum::Json(
        read(&st, move |c| query::device(c, &id, now)).await?,
    ))
}

#[derive(Deserialize)]
struct SeriesQ {
    from: Option<i64>,
    to: Option<i64>,
    points: Option<u32>,
}

async fn series(
    State(st): St,
    Path(id): Path<String>,
    Query(q): Query<SeriesQ>,
) -> Result<impl IntoResponse, Error> {
    let s = read(&st, move |c| {
        query::series(c, &id, q.from, q.to, q.points.unwrap_or(1500))
    })
    .await?;
    Ok(axum::Json(s))
}

#[derive(Deserialize)]
struct EnergyQ {
    tz_offset_min: Option<i32>,
}

async fn energy(
    State(st): St,
    Path(id): Path<String>,
    Query(q): Query<EnergyQ>,
) -> Result<impl IntoResponse, Error> {
    let off = q.tz_offset_min.unwrap_or(0).clamp(-14 * 60, 14 * 60);
    Ok(axum::Json(
        read(&st, move |c| {
            query::device(c, &id, 0)?;
            query::daily_energy(c, &id, off)
        })
        .await?,
    ))
}

#[derive(Deserialize)]
struct EventsQ {
    limit: Option<u32>,
}

async fn events(
    State(st): St,
    Path(id): Path<String>,
    Query(q): Query<EventsQ>,
) -> Result<impl IntoResponse, Error> {
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    Ok(axum::Json(
        read(&st, move |c| {
            query::device(c, &id, 0)?;
            query::events(c, &id, limit)
        })
        .await?,
    ))
}

fn settings_json(home: &std::path::Path, s: &Settings) -> serde_json::Value {
    let key = s.fleet_key_file(home);
    json!({
        "settings": s,
        "home": home.display().to_string(),
        "database": home.join(collector::home::DB_FILE).display().to_string(),
        "fleet_key_file": key.display().to_string(),
        "fleet_key_present": key.is_file(),
        "sync_available": true,
    })
}

async fn get_settings(State(st): St) -> Result<impl IntoResponse, Error> {
    let s = Settings::load(&st.ctx.home)?;
    Ok(axum::Json(settings_json(&st.ctx.home, &s)))
}

async fn put_settings(
    State(st): St,
    axum::Json(s): axum::Json<Settings>,
) -> Result<impl IntoResponse, Error> {
    s.save(&st.ctx.home)?;
    Ok(axum::Json(settings_json(&st.ctx.home, &s)))
}

#[derive(Deserialize, Default)]
struct TargetBody {
    #[serde(default)]
    device: Option<String>,
}

fn accepted(job: &crate::jobs::Job) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "job": job.id,
            "events": format!("/api/jobs/{}/events", job.id),
        })),
    )
        .into_response()
}

/// Starts a job running `f` on a blocking thread.
fn spawn_job(
    st: &Arc<AppState>,
    action: &str,
    target: &str,
    f: impl FnOnce(&Ctx, &crate::jobs::Job) + Send + 'static,
) -> Result<Response, Error> {
    let job = st.jobs.create(action, target)?;
    let ctx = st.ctx.clone();
    let j = job.clone();
    tokio::task::spawn_blocking(move || f(&ctx, &j));
    Ok(accepted(&job))
}

#[derive(Deserialize, Default)]
struct OtaQuery {
    device: Option<String>,
}

async fn action(
    State(st): St,
    Path(name): Path<String>,
    Query(q): Query<OtaQuery>,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let parse_target = || -> Result<String, Error> {
        let b: TargetBody = if body.is_empty() {
            TargetBody::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| Error::BadRequest(format!("body: {e}")))?
        };
        Ok(b.device.unwrap_or_else(|| "all".into()))
    };
    match name.as_str() {
        "collect" => {
            let target = parse_target()?;
            let ctx = st.ctx.clone();
            let t = target.clone();
            tokio::task::spawn_blocking(move || actions::check_collect(&ctx, &t))
                .await
                .map_err(|e| Error::BadRequest(e.to_string()))??;
            let t = target.clone();
            spawn_job(&st, "collect", &target, move |ctx, job| {
                actions::collect(ctx, job, &t)
            })
        }
        "time" => {
            let target = parse_target()?;
            let t = target.clone();
            spawn_job(&st, "time", &target, move |ctx, job| {
                actions::set_time(ctx, job, &t)
            })
        }
        "pair" => {
            let b: PairBody = serde_json::from_slice(&body)
                .map_err(|e| Error::BadRequest(format!("pair needs {{device, token}}: {e}")))?;
            let target = b.device.clone();
            spawn_job(&st, "pair", &target, move |ctx, job| {
                actions::pair(ctx, job, &b)
            })
        }
        "sync" => {
            let target = parse_target()?;
            let t = target.clone();
            spawn_job(&st, "sync", &target, move |ctx, job| {
                actions::sync(ctx, job, &t)
            })
        }
        "ota" => {
            let device = q.device.ok_or_else(|| {
                Error::BadRequest(
                    "ota needs ?device=ID and the signed upload as the request body".into(),
                )
            })?;
            let ctx = st.ctx.clone();
            let (d, b) = (device.clone(), body.clone());
            tokio::task::spawn_blocking(move || actions::check_ota(&ctx, &d, &b))
                .await
                .map_err(|e| Error::BadRequest(e.to_string()))??;
            let d = device.clone();
            spawn_job(&st, "ota", &device, move |ctx, job| {
                actions::ota(ctx, job, &d, &body)
            })
        }
        other => Err(Error::NotFound(format!(
            "no action {other:?}; actions are collect, time, pair, sync, ota"
        ))),
    }
}

async fn jobs(State(st): St) -> impl IntoResponse {
    axum::Json(st.jobs.list())
}

async fn job(State(st): St, Path(id): Path<u64>) -> Result<impl IntoResponse, Error> {
    let j = st
        .jobs
        .get(id)
        .ok_or_else(|| Error::NotFound(format!("no job {id}")))?;
    Ok(axum::Json(j.info()))
}

async fn job_events(State(st): St, Path(id): Path<u64>) -> Result<impl IntoResponse, Error> {
    let job = st
        .jobs
        .get(id)
        .ok_or_else(|| Error::NotFound(format!("no job {id}")))?;
    let rx = job.subscribe();
    let stream = futures_util::stream::unfold(
        (job, 0usize, rx, false),
        |(job, i, mut rx, ended)| async move {
            if ended {
                return None;
            }
            loop {
                if let Some(e) = job.get(i) {
                    let fin = e.kind == "done" || e.kind == "failed";
                    let ev = Event::default()
                        .event(e.kind.clone())
                        .json_data(&e)
                        .unwrap_or_else(|_| Event::default().comment("unencodable event"));
                    return Some((Ok::<_, Infallible>(ev), (job, i + 1, rx, fin)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn static_file(uri: Uri) -> Response {
    match assets::get(uri.path()) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            a.body,
        )
            .into_response(),
        None if uri.path().starts_with("/api/") => {
            Error::NotFound(format!("no endpoint {}", uri.path())).into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// Refuses mutating requests from another origin (a web page elsewhere).
async fn same_origin(headers: HeaderMap, req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let ota = req.uri().path() == "/api/actions/ota";
        let ctype = headers
            .get(header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let want = if ota {
            "application/octet-stream"
        } else {
            "application/json"
        };
        if !ctype.starts_with(want) {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                axum::Json(json!({ "error": format!("send the body as {want}") })),
            )
                .into_response();
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()) {
            let origin_host = origin.split("://").nth(1).unwrap_or("");
            if Some(origin_host) != host {
                return (
                    StatusCode::FORBIDDEN,
                    axum::Json(
                        json!({ "error": format!("requests from {origin} are not allowed") }),
                    ),
                )
                    .into_response();
            }
        }
    }
    next.run(req).await
}

/// The router over a home (for embedding in other servers and tests).
pub fn router(home: PathBuf) -> Router {
    let state = Arc::new(AppState {
        ctx: Ctx { home },
        jobs: Jobs::default(),
    });
    spawn_auto_collect(state.clone());
    Router::new()
        .route("/api/health", get(health))
        .route("/api/fleet", get(fleet))
        .route("/api/devices/{id}", get(device))
        .route("/api/devices/{id}/series", get(series))
        .route("/api/devices/{id}/energy", get(energy))
        .route("/api/devices/{id}/events", get(events))
        .route("/api/settings", get(get_settings).put(put_settings))
        .route(
            "/api/actions/{name}",
            post(action).layer(axum::extract::DefaultBodyLimit::max(actions::OTA_MAX_BYTES)),
        )
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/events", get(job_events))
        .fallback(static_file)
        .layer(middleware::from_fn(same_origin))
        .with_state(state)
}

/// Collects every paired device every `collect_every_min` minutes (settings).
fn spawn_auto_collect(st: Arc<AppState>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let every = Settings::load(&st.ctx.home)
                .map(|s| s.collect_every_min)
                .unwrap_or(0);
            if every == 0 || last.elapsed() < Duration::from_secs(u64::from(every) * 60) {
                continue;
            }
            last = tokio::time::Instant::now();
            if let Ok(job) = st.jobs.create("collect", "all") {
                job.log("automatic collect (settings: collect every N minutes)");
                let ctx = st.ctx.clone();
                tokio::task::spawn_blocking(move || actions::collect(&ctx, &job, "all"));
            }
        }
    });
}

/// A running dashboard server (its own thread and tokio runtime).
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Creates the database if needed (through the collector library),
    /// binds, and starts serving in the background.
    pub fn start(opts: ServerOptions) -> Result<Server, Error> {
        std::fs::create_dir_all(&opts.home)
            .map_err(|e| Error::io(format!("creating {}", opts.home.display()), e))?;
        drop(collector::Db::open(
            &opts.home.join(collector::home::DB_FILE),
        )?);
        let listener = std::net::TcpListener::bind(opts.listen)
            .map_err(|e| Error::io(format!("listening on {}", opts.listen), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("setting the listener non-blocking", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("ofmon-ui")
            .build()
            .map_err(|e| Error::io("starting the async runtime", e))?;
        let (tx, rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), Error>>();
        let home = opts.home.clone();
        let thread = std::thread::Builder::new()
            .name("ofmon-ui".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(Error::io("listener", e)));
                            return;
                        }
                    };
                    let app = router(home);
                    let _ = ready_tx.send(Ok(()));
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
                // Running SSE streams and blocking jobs are abandoned here.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| Error::io("spawning the server thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(Error::io(
                    "starting the server",
                    std::io::Error::other("server thread ended"),
                ));
            }
        }
        Ok(Server {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Blocks until Ctrl-C (SIGINT) or, on Unix, SIGTERM.
pub fn wait_for_shutdown_signal() -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the signal runtime", e))?;
    rt.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term =
                signal(SignalKind::terminate()).map_err(|e| Error::io("installing SIGTERM", e))?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r.map_err(|e| Error::io("waiting for Ctrl-C", e)),
                _ = term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .map_err(|e| Error::io("waiting for Ctrl-C", e))
        }
    })
}
