//! # thingsboard-mock — a faithful fake of ThingsBoard for tests and the demo
//!
//! The real server (Java) cannot run on these machines, so this crate serves
//! the part of its HTTP surface that OFMon uses and reproduces its behaviour,
//! including the surprising parts listed in `reference/thingsboard.md`:
//!
//! - **Device API**: `POST /api/v1/{token}/telemetry` (one object of values,
//!   one `{"ts","values"}` object, or an array of those; `ts` in unix ms) and
//!   `POST /api/v1/{token}/attributes`. 200 with an empty body on success;
//!   **401** for an unknown or revoked token; **500** (not 400) for malformed
//!   JSON; **500** (not 429) when the per-token rate limit is exceeded;
//!   **413** when the body is over the limit (default 50 MiB). Request bodies
//!   are *not* decompressed (a gzip body is malformed JSON → 500), unless
//!   [`MockServer::set_accept_gzip`] emulates a decompressing proxy.
//! - **Storage** by (device, key, ts) with upsert: resending a point
//!   overwrites it. Numbers written without `.`/exponent are kept as longs,
//!   others as doubles, as ThingsBoard does.
//! - **REST subset** (tenant user): `POST /api/auth/login` and
//!   `POST /api/auth/token` (refresh token → new pair; 401 once expired),
//!   `X-Authorization: Bearer <token>`, `POST /api/device` (create, 400 on a
//!   duplicate name; with an `id`, update; `additionalInfo.gateway` is the
//!   "Is gateway" flag), `GET /api/device/{id}`,
//!   `GET /api/device/{id}/credentials`, `GET /api/tenant/devices?pageSize=&page=`
//!   (paged) and `?deviceName=` (one device or 404),
//!   `GET /api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=&startTs=&endTs=&limit=&orderBy=`
//!   (values as **strings**, default `limit` 100, newest first, like the real
//!   one; latest values when no time range is given) and
//!   `GET /api/plugins/telemetry/DEVICE/{id}/keys/timeseries`, and
//!   `DELETE /api/plugins/telemetry/DEVICE/{id}/timeseries/delete?keys=&startTs=&endTs=&deleteAllDataForKeys=`
//!   (points with `startTs <= ts < endTs`, or every point of the keys).
//! - **TLS**: [`MockServer::start_tls`] serves the same over HTTPS (rustls)
//!   with a given certificate, for `https://` and `--ca-file` tests.
//! - **Fault injection** for tests: fail the next N device-API requests with
//!   500, add a delay, drop the next N connections (before or after the data
//!   was stored), revoke a token, set the body limit or a rate limit.
//!
//! - **MQTT** (optional, [`MockServer::start_mqtt`]): the device API and
//!   the gateway API over the same storage; `v1/gateway/connect` and
//!   `v1/gateway/telemetry` create devices by name, as the real server does
//!   (see [`mqtt`]). Tests that inspect packets use a real broker
//!   (mosquitto) instead.
//!
//! Usable as a library ([`MockServer::start`]) and as `ofmon tb-mock`.
//!
//! Architecture invariants: the mock keeps everything in memory and never
//! touches files; each fault is consumed by exactly one device-API request.

pub mod mqtt;

pub use mqtt::MqttFront;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

/// The tenant user every mock accepts.
pub const TENANT_USER: &str = "tenant@thingsboard.org";
/// The tenant user's password.
pub const TENANT_PASSWORD: &str = "tenant";
/// Default request body limit of the real server (50 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 50 * 1024 * 1024;

/// Errors of the mock.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding the listener or starting the runtime failed.
    #[error("cannot start the ThingsBoard mock: {0}")]
    Io(#[from] std::io::Error),
}

/// A stored value, typed as ThingsBoard types it.
#[derive(Clone, Debug, PartialEq)]
pub enum TbValue {
    /// A number written without fraction or exponent.
    Long(i64),
    /// Any other number.
    Double(f64),
    /// `true`/`false`.
    Bool(bool),
    /// A string.
    Str(String),
    /// An object or array, kept as JSON text.
    Json(String),
}

impl TbValue {
    fn from_json(v: &Value) -> Option<TbValue> {
        Some(match v {
            Value::Bool(b) => TbValue::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    TbValue::Long(i)
                } else {
                    TbValue::Double(n.as_f64()?)
                }
            }
            Value::String(s) => TbValue::Str(s.clone()),
            Value::Null => return None,
            other => TbValue::Json(other.to_string()),
        })
    }

    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            TbValue::Long(i) => Some(*i as f64),
            TbValue::Double(d) => Some(*d),
            _ => None,
        }
    }

    /// The value as the REST API returns it without `useStrictDataTypes`.
    pub fn to_rest_string(&self) -> String {
        match self {
            TbValue::Long(i) => i.to_string(),
            TbValue::Double(d) => d.to_string(),
            TbValue::Bool(b) => b.to_string(),
            TbValue::Str(s) | TbValue::Json(s) => s.clone(),
        }
    }
}

/// A device known to the mock.
#[derive(Clone, Debug)]
pub struct MockDevice {
    /// Device id (UUID).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Device profile name (`type`).
    pub profile: String,
    /// Optional label.
    pub label: Option<String>,
    /// Access token.
    pub token: String,
    /// Creation time, unix ms.
    pub created_ms: i64,
    /// Client attributes.
    pub attributes: BTreeMap<String, TbValue>,
    /// Time series: key → ts → value.
    pub telemetry: BTreeMap<String, BTreeMap<i64, TbValue>>,
    /// The "Is gateway" flag (`additionalInfo.gateway`).
    pub gateway: bool,
}

#[derive(Default)]
struct Faults {
    fail_next: u64,
    drop_next: u64,
    drop_after_store_next: u64,
    delay: Duration,
    rate_limit: Option<(u32, Duration)>,
}

#[derive(Default)]
struct Inner {
    devices: Vec<MockDevice>,
    by_token: HashMap<String, usize>,
    sessions: Vec<String>,
    refresh_tokens: Vec<String>,
    faults: Faults,
    rate: HashMap<String, (Instant, u32)>,
    body_limit: usize,
    accept_gzip: bool,
}

/// Counters of what the device API saw.
#[derive(Debug, Default)]
pub struct Stats {
    /// Device-API requests received (telemetry and attributes).
    pub requests: AtomicU64,
    /// Telemetry requests answered 200.
    pub accepted: AtomicU64,
    /// Points written (key × ts), counting overwrites.
    pub points_written: AtomicU64,
    /// Writes that replaced an existing (key, ts) point.
    pub overwrites: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
}

struct Shared {
    inner: Mutex<Inner>,
    stats: Stats,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is a single insert); keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running mock server. Dropping it stops the server.
pub struct MockServer {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn random_token() -> String {
    // 20 alphanumerics, like the tokens ThingsBoard generates.
    let a = uuid::Uuid::new_v4().simple().to_string();
    a[..20].to_string()
}

impl MockServer {
    /// Starts a mock on a free loopback port, served by its own thread.
    pub fn start() -> Result<MockServer, Error> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts a mock listening on `addr`.
    pub fn start_on(addr: SocketAddr) -> Result<MockServer, Error> {
        Self::start_inner(addr, None)
    }

    /// Starts an HTTPS mock on a free loopback port with this certificate
    /// chain and private key (PEM); [`MockServer::url`] is then
    /// `https://127.0.0.1:PORT`, so the certificate must name `127.0.0.1`.
    pub fn start_tls(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<MockServer, Error> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{what}: {e}"),
            ))
        };
        let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("certificate PEM", &e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("key PEM", &e))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS versions", &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad("certificate", &e))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_inner(SocketAddr::from(([127, 0, 0, 1], 0)), Some(acceptor))
    }

    fn start_inner(
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Result<MockServer, Error> {
        let is_tls = tls.is_some();
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                body_limit: DEFAULT_BODY_LIMIT,
                ..Inner::default()
            }),
            stats: Stats::default(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("tb-mock")
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tb-mock".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("tb-mock: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        _ = serve(listener, s, tls) => {}
                        _ = rx => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(MockServer {
            addr,
            tls: is_tls,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Device-API counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Creates a device with the given access token (as an administrator
    /// would in the UI). Returns its id.
    pub fn add_device(&self, name: &str, token: &str) -> String {
        let mut g = self.shared.lock();
        create_device(&mut g, name, "default", None, Some(token.to_string()))
            .map(|i| g.devices[i].id.clone())
            .unwrap_or_else(|i| g.devices[i].id.clone())
    }

    /// Revokes a token: the device API answers 401 for it from now on.
    pub fn revoke_token(&self, token: &str) {
        self.shared.lock().by_token.remove(token);
    }

    /// Restores a token revoked with [`MockServer::revoke_token`].
    pub fn restore_token(&self, token: &str) {
        let mut g = self.shared.lock();
        if let Some(i) = g.devices.iter().position(|d| d.token == token) {
            g.by_token.insert(token.to_string(), i);
        }
    }

    /// The next `n` device-API requests fail with 500 (what the real server
    /// answers on internal errors and, in many versions, on rate limits).
    pub fn fail_next(&self, n: u64) {
        self.shared.lock().faults.fail_next = n;
    }

    /// The next `n` device-API requests get their connection closed without
    /// an answer, before the data is stored.
    pub fn drop_next(&self, n: u64) {
        self.shared.lock().faults.drop_next = n;
    }

    /// The next `n` device-API requests are stored, then their connection is
    /// closed without an answer (the client cannot know it got through).
    pub fn drop_after_store_next(&self, n: u64) {
        self.shared.lock().faults.drop_after_store_next = n;
    }

    /// Delays every device-API answer by `d`.
    pub fn set_delay(&self, d: Duration) {
        self.shared.lock().faults.delay = d;
    }

    /// Allows at most `max` device-API requests per token per `window`;
    /// beyond that the answer is 500, as in the real server. `None` removes
    /// the limit.
    pub fn set_rate_limit(&self, limit: Option<(u32, Duration)>) {
        let mut g = self.shared.lock();
        g.faults.rate_limit = limit;
        g.rate.clear();
    }

    /// Sets the request body limit (413 above it).
    pub fn set_body_limit(&self, bytes: usize) {
        self.shared.lock().body_limit = bytes;
    }

    /// Accepts `Content-Encoding: gzip` request bodies (a decompressing
    /// reverse proxy in front of the server). Off by default, as in the real
    /// server.
    pub fn set_accept_gzip(&self, on: bool) {
        self.shared.lock().accept_gzip = on;
    }

    /// Clears all faults (failures, drops, delay, rate limit).
    pub fn clear_faults(&self) {
        let mut g = self.shared.lock();
        g.faults = Faults::default();
        g.rate.clear();
    }

    /// A snapshot of a device by name.
    pub fn device(&self, name: &str) -> Option<MockDevice> {
        self.shared
            .lock()
            .devices
            .iter()
            .find(|d| d.name == name)
            .cloned()
    }

    /// Snapshots of all devices.
    pub fn devices(&self) -> Vec<MockDevice> {
        self.shared.lock().devices.clone()
    }

    /// Runs `f` on a device (by name) under the lock, without copying it.
    pub fn with_device<R>(&self, name: &str, f: impl FnOnce(&MockDevice) -> R) -> Option<R> {
        let g = self.shared.lock();
        g.devices.iter().find(|d| d.name == name).map(f)
    }

    /// Renames and relabels a device, as an administrator would in the UI.
    /// Returns false if there is no device `name` or `new_name` is taken by
    /// another device.
    pub fn update_device(&self, name: &str, new_name: &str, label: Option<&str>) -> bool {
        let mut g = self.shared.lock();
        if name != new_name && g.devices.iter().any(|d| d.name == new_name) {
            return false;
        }
        match g.devices.iter_mut().find(|d| d.name == name) {
            Some(d) => {
                d.name = new_name.to_string();
                d.label = label.map(str::to_string);
                true
            }
            None => false,
        }
    }

    /// Every REST access token (JWT) expires now, as after the real server's
    /// token lifetime (2.5 h by default); refresh tokens stay valid.
    pub fn expire_sessions(&self) {
        self.shared.lock().sessions.clear();
    }

    /// Every refresh token becomes invalid (expired after its lifetime, one
    /// week by default, or the signing key changed): clients must log in with
    /// a password again.
    pub fn revoke_refresh_tokens(&self) {
        self.shared.lock().refresh_tokens.clear();
    }

    /// Number of stored (key, ts) points of a device (0 if unknown).
    pub fn point_count(&self, name: &str) -> usize {
        self.shared
            .lock()
            .devices
            .iter()
            .find(|d| d.name == name)
            .map_or(0, |d| d.telemetry.values().map(BTreeMap::len).sum())
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn create_device(
    g: &mut Inner,
    name: &str,
    profile: &str,
    label: Option<String>,
    token: Option<String>,
) -> Result<usize, usize> {
    if let Some(i) = g.devices.iter().position(|d| d.name == name) {
        return Err(i);
    }
    let token = token.unwrap_or_else(random_token);
    let i = g.devices.len();
    g.devices.push(MockDevice {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_string(),
        profile: profile.to_string(),
        label,
        token: token.clone(),
        created_ms: now_ms(),
        attributes: BTreeMap::new(),
        telemetry: BTreeMap::new(),
        gateway: false,
    });
    g.by_token.insert(token, i);
    Ok(i)
}

/// Per-connection handle a handler uses to close its connection unanswered.
#[derive(Clone)]
struct ConnKill(Arc<tokio::sync::Notify>);

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let router = router(shared.clone());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let kill = ConnKill(Arc::new(tokio::sync::Notify::new()));
        let svc = router.clone().layer(axum::Extension(kill.clone()));
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.0.notified() => {}
                    }
                }
                Some(acceptor) => {
                    // A failed handshake (e.g. the client refused our
                    // certificate) just closes the connection.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.0.notified() => {}
                    }
                }
            }
        });
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/{token}/telemetry", post(device_telemetry))
        .route("/api/v1/{token}/attributes", post(device_attributes))
        .route("/api/auth/login", post(login))
        .route("/api/auth/token", post(refresh_login))
        .route("/api/device", post(rest_create_device))
        .route("/api/device/{id}", get(rest_get_device))
        .route("/api/device/{id}/credentials", get(rest_credentials))
        .route("/api/tenant/devices", get(rest_tenant_devices))
        .route(
            "/api/plugins/telemetry/DEVICE/{id}/values/timeseries",
            get(rest_timeseries),
        )
        .route(
            "/api/plugins/telemetry/DEVICE/{id}/keys/timeseries",
            get(rest_keys),
        )
        .route(
            "/api/plugins/telemetry/DEVICE/{id}/timeseries/delete",
            delete(rest_delete_timeseries),
        )
        .with_state(shared)
}

fn status(code: StatusCode) -> Response {
    (code, Body::empty()).into_response()
}

/// ThingsBoard's JSON error body.
fn tb_error(code: StatusCode, message: &str, error_code: u32) -> Response {
    (
        code,
        axum::Json(json!({
            "status": code.as_u16(),
            "message": message,
            "errorCode": error_code,
            "timestamp": now_ms(),
        })),
    )
        .into_response()
}

enum Gate {
    Go { store_then_drop: bool },
    Answer(Response),
    Drop,
}

/// Common entry of device-API requests: faults, token, rate limit, body.
async fn device_gate(
    shared: &Shared,
    kill: &ConnKill,
    token: &str,
    headers: &HeaderMap,
    body: Body,
) -> (Gate, Option<(usize, Bytes)>) {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let (delay, limit, gzip_ok) = {
        let g = shared.lock();
        (g.faults.delay, g.body_limit, g.accept_gzip)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // Body first: the real server reads it before routing to the handler.
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return (Gate::Answer(status(StatusCode::PAYLOAD_TOO_LARGE)), None),
    };
    let mut g = shared.lock();
    if g.faults.drop_next > 0 {
        g.faults.drop_next -= 1;
        drop(g);
        kill.0.notify_one();
        return (Gate::Drop, None);
    }
    if g.faults.fail_next > 0 {
        g.faults.fail_next -= 1;
        return (
            Gate::Answer(status(StatusCode::INTERNAL_SERVER_ERROR)),
            None,
        );
    }
    let Some(&idx) = g.by_token.get(token) else {
        return (Gate::Answer(status(StatusCode::UNAUTHORIZED)), None);
    };
    if let Some((max, window)) = g.faults.rate_limit {
        let now = Instant::now();
        let e = g.rate.entry(token.to_string()).or_insert((now, 0));
        if now.duration_since(e.0) >= window {
            *e = (now, 0);
        }
        e.1 += 1;
        if e.1 > max {
            // Rate limit: 500 in many versions, not 429.
            return (
                Gate::Answer(status(StatusCode::INTERNAL_SERVER_ERROR)),
                None,
            );
        }
    }
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let bytes = if gzip && gzip_ok {
        use std::io::Read;
        let mut out = Vec::new();
        let mut d = flate2::read::GzDecoder::new(&bytes[..]).take(limit as u64 + 1);
        if d.read_to_end(&mut out).is_err() {
            return (
                Gate::Answer(status(StatusCode::INTERNAL_SERVER_ERROR)),
                None,
            );
        }
        if out.len() > limit {
            return (Gate::Answer(status(StatusCode::PAYLOAD_TOO_LARGE)), None);
        }
        Bytes::from(out)
    } else {
        bytes
    };
    let store_then_drop = if g.faults.drop_after_store_next > 0 {
        g.faults.drop_after_store_next -= 1;
        true
    } else {
        false
    };
    (Gate::Go { store_then_drop }, Some((idx, bytes)))
}

/// Validates a telemetry body: an object of values, a `{"ts","values"}`
/// object, or an array of those. `None` = malformed (answered 500).
fn parse_body(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    fn ok(v: &Value) -> bool {
        match v.as_object() {
            Some(o) => match (o.get("ts"), o.get("values")) {
                (Some(ts), Some(values)) => ts.as_i64().is_some() && values.is_object(),
                _ => true,
            },
            None => false,
        }
    }
    let valid = match &v {
        Value::Array(items) => items.iter().all(ok),
        other => ok(other),
    };
    valid.then_some(v)
}

/// Calls `f(ts, key, value)` for every point of a validated body.
fn for_each_point(v: &Value, now: i64, mut f: impl FnMut(i64, &str, &Value)) {
    let mut one = |v: &Value| {
        let Some(obj) = v.as_object() else { return };
        match (obj.get("ts").and_then(Value::as_i64), obj.get("values")) {
            (Some(ts), Some(Value::Object(values))) => {
                for (k, v) in values {
                    f(ts, k, v);
                }
            }
            _ => {
                for (k, v) in obj {
                    f(now, k, v);
                }
            }
        }
    };
    match v {
        Value::Array(items) => items.iter().for_each(&mut one),
        other => one(other),
    }
}

/// Typed parsing of the common telemetry shape: `[{"ts":…,"values":{…}},…]`
/// with scalar values. `None` means "not this shape" (the caller falls back
/// to the general parser, which also decides malformed or not).
mod fast {
    use std::borrow::Cow;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, Deserializer, MapAccess, Visitor};

    use super::TbValue;

    /// A scalar value as [`TbValue::from_json`] types it; `None` for null.
    /// Objects and arrays are refused (they go through the general path).
    pub(super) struct Scalar(pub(super) Option<TbValue>);

    impl<'de> Deserialize<'de> for Scalar {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Scalar;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a scalar")
                }
                fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
                    Ok(Scalar(Some(TbValue::Bool(b))))
                }
                fn visit_i64<E>(self, i: i64) -> Result<Scalar, E> {
                    Ok(Scalar(Some(TbValue::Long(i))))
                }
                fn visit_u64<E>(self, u: u64) -> Result<Scalar, E> {
                    Ok(Scalar(Some(match i64::try_from(u) {
                        Ok(i) => TbValue::Long(i),
                        Err(_) => TbValue::Double(u as f64),
                    })))
                }
                fn visit_f64<E>(self, f: f64) -> Result<Scalar, E> {
                    Ok(Scalar(Some(TbValue::Double(f))))
                }
                fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
                    Ok(Scalar(Some(TbValue::Str(s.to_string()))))
                }
                fn visit_unit<E>(self) -> Result<Scalar, E> {
                    Ok(Scalar(None))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// The values of one point, in body order (a repeated key: the last
    /// one wins when stored, as with a JSON object).
    pub(super) struct Values<'a>(Vec<(Cow<'a, str>, Scalar)>);

    impl<'a> IntoIterator for Values<'a> {
        type Item = (Cow<'a, str>, Scalar);
        type IntoIter = std::vec::IntoIter<(Cow<'a, str>, Scalar)>;
        fn into_iter(self) -> Self::IntoIter {
            self.0.into_iter()
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Values<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                type Value = Values<'a>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object of values")
                }
                fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Values<'a>, M::Error> {
                    let mut v = Vec::with_capacity(m.size_hint().unwrap_or(32));
                    while let Some(k) = m.next_key::<Key<'de>>()? {
                        v.push((k.0, m.next_value::<Scalar>()?));
                    }
                    Ok(Values(v))
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
        }
    }

    /// A key, borrowed from the body unless it has escapes.
    struct Key<'a>(Cow<'a, str>);

    impl<'de> Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(s)))
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(s.to_string())))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// One `{"ts","values"}` point.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Point<'a> {
        pub(super) ts: i64,
        #[serde(borrow)]
        pub(super) values: Values<'a>,
    }

    /// The body as an array of points, if it has exactly that shape.
    pub(super) fn parse(body: &[u8]) -> Option<Vec<Point<'_>>> {
        serde_json::from_slice(body).ok()
    }
}

/// Parses a telemetry body into (ts, key, value) triples; `None` = malformed.
#[cfg(test)]
fn parse_telemetry(body: &[u8], now: i64) -> Option<Vec<(i64, String, TbValue)>> {
    let v = parse_body(body)?;
    let mut out = Vec::new();
    for_each_point(&v, now, |ts, k, v| {
        if let Some(tv) = TbValue::from_json(v) {
            out.push((ts, k.to_string(), tv));
        }
    });
    Some(out)
}

async fn device_telemetry(
    State(shared): State<Arc<Shared>>,
    axum::Extension(kill): axum::Extension<ConnKill>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (gate, data) = device_gate(&shared, &kill, &token, &headers, body).await;
    let store_then_drop = match gate {
        Gate::Answer(r) => return r,
        Gate::Drop => return std::future::pending().await,
        Gate::Go { store_then_drop } => store_then_drop,
    };
    let Some((idx, bytes)) = data else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    // Fast path: the common shape (an array of `{"ts","values"}` points of
    // scalars) parsed straight into typed values with borrowed keys; anything
    // else goes through the general `Value` path, with the same result.
    let fast = fast::parse(&bytes);
    let slow = match fast {
        Some(_) => None,
        None => match parse_body(&bytes) {
            Some(v) => Some(v),
            // Malformed JSON: 500, not 400.
            None => return status(StatusCode::INTERNAL_SERVER_ERROR),
        },
    };
    {
        let mut g = shared.lock();
        let Some(dev) = g.devices.get_mut(idx) else {
            return status(StatusCode::UNAUTHORIZED);
        };
        let mut over = 0;
        let mut n = 0;
        let mut store = |ts: i64, k: &str, v: TbValue| {
            let series = match dev.telemetry.get_mut(k) {
                Some(s) => s,
                None => dev.telemetry.entry(k.to_string()).or_default(),
            };
            n += 1;
            if series.insert(ts, v).is_some() {
                over += 1;
            }
        };
        if let Some(points) = fast {
            for p in points {
                for (k, v) in p.values {
                    if let Some(v) = v.0 {
                        store(p.ts, &k, v);
                    }
                }
            }
        } else if let Some(body) = &slow {
            for_each_point(body, now_ms(), |ts, k, v| {
                if let Some(v) = TbValue::from_json(v) {
                    store(ts, k, v);
                }
            });
        }
        shared.stats.points_written.fetch_add(n, Ordering::Relaxed);
        shared.stats.overwrites.fetch_add(over, Ordering::Relaxed);
    }
    if store_then_drop {
        kill.0.notify_one();
        return std::future::pending().await;
    }
    shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
    status(StatusCode::OK)
}

async fn device_attributes(
    State(shared): State<Arc<Shared>>,
    axum::Extension(kill): axum::Extension<ConnKill>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (gate, data) = device_gate(&shared, &kill, &token, &headers, body).await;
    match gate {
        Gate::Answer(r) => return r,
        Gate::Drop => return std::future::pending().await,
        Gate::Go { .. } => {}
    }
    let Some((idx, bytes)) = data else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&bytes) else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let mut g = shared.lock();
    if let Some(dev) = g.devices.get_mut(idx) {
        for (k, v) in &obj {
            if let Some(tv) = TbValue::from_json(v) {
                dev.attributes.insert(k.clone(), tv);
            }
        }
    }
    status(StatusCode::OK)
}

// ---------------------------------------------------------------- REST ----

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(b) = serde_json::from_slice::<LoginBody>(&body) else {
        return tb_error(StatusCode::BAD_REQUEST, "Invalid request body", 31);
    };
    if b.username != TENANT_USER || b.password != TENANT_PASSWORD {
        return tb_error(StatusCode::UNAUTHORIZED, "Invalid username or password", 10);
    }
    new_session(&shared)
}

/// A new access token and refresh token pair.
fn new_session(shared: &Shared) -> Response {
    let token = format!("mock.{}", uuid::Uuid::new_v4().simple());
    let refresh = format!("mock-refresh.{}", uuid::Uuid::new_v4().simple());
    let mut g = shared.lock();
    g.sessions.push(token.clone());
    g.refresh_tokens.push(refresh.clone());
    axum::Json(json!({"token": token, "refreshToken": refresh})).into_response()
}

#[derive(Deserialize)]
struct RefreshBody {
    #[serde(rename = "refreshToken")]
    refresh_token: String,
}

/// `POST /api/auth/token` `{"refreshToken"}` → a new `{"token",
/// "refreshToken"}`; 401 when the refresh token is unknown or expired.
async fn refresh_login(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(b) = serde_json::from_slice::<RefreshBody>(&body) else {
        return tb_error(StatusCode::BAD_REQUEST, "Invalid request body", 31);
    };
    let known = shared.lock().refresh_tokens.contains(&b.refresh_token);
    if !known {
        return tb_error(StatusCode::UNAUTHORIZED, "Token has expired", 11);
    }
    new_session(&shared)
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(v) = headers.get("x-authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(t) = v.strip_prefix("Bearer ") else {
        return false;
    };
    shared.lock().sessions.iter().any(|s| s == t)
}

fn unauthorized() -> Response {
    tb_error(StatusCode::UNAUTHORIZED, "Authentication failed", 10)
}

fn device_json(d: &MockDevice) -> Value {
    json!({
        "id": {"entityType": "DEVICE", "id": d.id},
        "createdTime": d.created_ms,
        "tenantId": {"entityType": "TENANT", "id": "13814000-1dd2-11b2-8080-808080808080"},
        "name": d.name,
        "type": d.profile,
        "label": d.label,
        "additionalInfo": if d.gateway { json!({"gateway": true}) } else { Value::Null },
    })
}

#[derive(Deserialize)]
struct CreateDevice {
    /// Present when saving an existing device (update).
    id: Option<EntityId>,
    name: String,
    #[serde(rename = "type")]
    profile: Option<String>,
    label: Option<String>,
    #[serde(rename = "additionalInfo")]
    additional_info: Option<Value>,
}

#[derive(Deserialize)]
struct EntityId {
    id: String,
}

#[derive(Deserialize)]
struct CreateQuery {
    #[serde(rename = "accessToken")]
    access_token: Option<String>,
}

async fn rest_create_device(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<CreateQuery>,
    body: Bytes,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let Ok(b) = serde_json::from_slice::<CreateDevice>(&body) else {
        return tb_error(StatusCode::BAD_REQUEST, "Invalid request body", 31);
    };
    if b.name.trim().is_empty() {
        return tb_error(
            StatusCode::BAD_REQUEST,
            "Device name should be specified!",
            31,
        );
    }
    let mut g = shared.lock();
    let gateway = b
        .additional_info
        .as_ref()
        .and_then(|a| a.get("gateway"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(EntityId { id }) = b.id {
        // Save of an existing device: update it, as the real server does.
        if g.devices.iter().any(|d| d.name == b.name && d.id != id) {
            return tb_error(
                StatusCode::BAD_REQUEST,
                "Device with such name already exists!",
                31,
            );
        }
        let Some(d) = g.devices.iter_mut().find(|d| d.id == id) else {
            return tb_error(StatusCode::NOT_FOUND, "Requested item wasn't found!", 32);
        };
        d.name = b.name;
        d.label = b.label;
        d.gateway = gateway;
        if let Some(p) = b.profile {
            d.profile = p;
        }
        return axum::Json(device_json(d)).into_response();
    }
    let profile = b.profile.unwrap_or_else(|| "default".to_string());
    match create_device(&mut g, &b.name, &profile, b.label, q.access_token) {
        Ok(i) => {
            g.devices[i].gateway = gateway;
            axum::Json(device_json(&g.devices[i])).into_response()
        }
        Err(_) => tb_error(
            StatusCode::BAD_REQUEST,
            "Device with such name already exists!",
            31,
        ),
    }
}

async fn rest_get_device(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let g = shared.lock();
    match g.devices.iter().find(|d| d.id == id) {
        Some(d) => axum::Json(device_json(d)).into_response(),
        None => tb_error(StatusCode::NOT_FOUND, "Requested item wasn't found!", 32),
    }
}

async fn rest_credentials(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let g = shared.lock();
    match g.devices.iter().find(|d| d.id == id) {
        Some(d) => axum::Json(json!({
            "id": {"id": uuid::Uuid::new_v4().to_string()},
            "createdTime": d.created_ms,
            "deviceId": {"entityType": "DEVICE", "id": d.id},
            "credentialsType": "ACCESS_TOKEN",
            "credentialsId": d.token,
            "credentialsValue": null,
        }))
        .into_response(),
        None => tb_error(StatusCode::NOT_FOUND, "Requested item wasn't found!", 32),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(rename = "pageSize")]
    page_size: Option<usize>,
    page: Option<usize>,
    #[serde(rename = "textSearch")]
    text_search: Option<String>,
    #[serde(rename = "deviceName")]
    device_name: Option<String>,
}

async fn rest_tenant_devices(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let g = shared.lock();
    if let Some(name) = q.device_name {
        return match g.devices.iter().find(|d| d.name == name) {
            Some(d) => axum::Json(device_json(d)).into_response(),
            None => tb_error(StatusCode::NOT_FOUND, "Requested item wasn't found!", 32),
        };
    }
    let (Some(size), Some(page)) = (q.page_size, q.page) else {
        return tb_error(
            StatusCode::BAD_REQUEST,
            "Required request parameter 'pageSize' is not present",
            31,
        );
    };
    if size == 0 {
        return tb_error(
            StatusCode::BAD_REQUEST,
            "Page size must be greater than zero",
            31,
        );
    }
    let mut list: Vec<&MockDevice> = g
        .devices
        .iter()
        .filter(|d| {
            q.text_search
                .as_deref()
                .is_none_or(|t| d.name.to_lowercase().starts_with(&t.to_lowercase()))
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let total = list.len();
    let total_pages = total.div_ceil(size);
    let data: Vec<Value> = list
        .iter()
        .skip(page.saturating_mul(size))
        .take(size)
        .map(|d| device_json(d))
        .collect();
    axum::Json(json!({
        "data": data,
        "totalPages": total_pages,
        "totalElements": total,
        "hasNext": page + 1 < total_pages,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct TsQuery {
    keys: Option<String>,
    #[serde(rename = "startTs")]
    start_ts: Option<i64>,
    #[serde(rename = "endTs")]
    end_ts: Option<i64>,
    limit: Option<usize>,
    #[serde(rename = "orderBy")]
    order_by: Option<String>,
    #[serde(rename = "useStrictDataTypes")]
    strict: Option<bool>,
}

fn value_json(v: &TbValue, strict: bool) -> Value {
    if !strict {
        return Value::String(v.to_rest_string());
    }
    match v {
        TbValue::Long(i) => json!(i),
        TbValue::Double(d) => json!(d),
        TbValue::Bool(b) => json!(b),
        TbValue::Str(s) | TbValue::Json(s) => json!(s),
    }
}

async fn rest_timeseries(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<TsQuery>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let g = shared.lock();
    let Some(d) = g.devices.iter().find(|d| d.id == id) else {
        return tb_error(StatusCode::NOT_FOUND, "Requested item wasn't found!", 32);
    };
    let strict = q.strict.unwrap_or(false);
    let keys: Vec<String> = match &q.keys {
        Some(k) => k
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => d.telemetry.keys().cloned().collect(),
    };
    let mut out = serde_json::Map::new();
    for k in keys {
        let Some(series) = d.telemetry.get(&k) else {
            continue;
        };
        let points: Vec<Value> = match (q.start_ts, q.end_ts) {
            (Some(s), Some(e)) => {
                let limit = q.limit.unwrap_or(100);
                let asc = q.order_by.as_deref() == Some("ASC");
                let range = series.range(s..=e);
                let pick =
                    |(ts, v): (&i64, &TbValue)| json!({"ts": ts, "value": value_json(v, strict)});
                if asc {
                    range.take(limit).map(pick).collect()
                } else {
                    range.rev().take(limit).map(pick).collect()
                }
            }
            (None, None) => series
                .iter()
                .next_back()
                .map(|(ts, v)| json!({"ts": ts, "value": value_json(v, strict)}))
                .into_iter()
                .collect(),
            _ => {
                return tb_error(
                    StatusCode::BAD_REQUEST,
                    "Both startTs and endTs are required for a time range",
                    31,
                );
            }
        };
        out.insert(k, Value::Array(points));
    }
    axum::Json(Value::Object(out)).into_response()
}

#[derive(Deserialize)]
struct DeleteQuery {
    keys: Option<String>,
    #[serde(rename = "startTs")]
    start_ts: Option<i64>,
    #[serde(rename = "endTs")]
    end_ts: Option<i64>,
    #[serde(rename = "deleteAllDataForKeys")]
    all: Option<bool>,
}

async fn rest_delete_timeseries(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let keys: Vec<&str> = q
        .keys
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|k| !k.is_empty())
        .collect();
    if keys.is_empty() {
        return tb_error(StatusCode::BAD_REQUEST, "Keys are required", 31);
    }
    let range = match (q.all.unwrap_or(false), q.start_ts, q.end_ts) {
        (true, _, _) => None,
        (false, Some(s), Some(e)) => Some((s, e)),
        _ => {
            return tb_error(
                StatusCode::BAD_REQUEST,
                "startTs and endTs are required unless deleteAllDataForKeys is true",
                31,
            );
        }
    };
    let mut g = shared.lock();
    let Some(d) = g.devices.iter_mut().find(|d| d.id == id) else {
        return tb_error(StatusCode::NOT_FOUND, "Requested item wasn't found!", 32);
    };
    for k in keys {
        let Some(series) = d.telemetry.get_mut(k) else {
            continue;
        };
        match range {
            None => series.clear(),
            Some((s, e)) => series.retain(|ts, _| !(s <= *ts && *ts < e)),
        }
        if series.is_empty() {
            d.telemetry.remove(k);
        }
    }
    status(StatusCode::OK)
}

async fn rest_keys(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let g = shared.lock();
    match g.devices.iter().find(|d| d.id == id) {
        Some(d) => axum::Json(d.telemetry.keys().collect::<Vec<_>>()).into_response(),
        None => tb_error(StatusCode::NOT_FOUND, "Requested item wasn't found!", 32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_shapes() {
        let p = parse_telemetry(br#"{"a":1}"#, 7).unwrap();
        assert_eq!(p, vec![(7, "a".to_string(), TbValue::Long(1))]);
        let p = parse_telemetry(
            br#"[{"ts":5,"values":{"a":1.5,"b":"x"}},{"ts":6,"values":{"a":2}}]"#,
            7,
        )
        .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (5, "a".to_string(), TbValue::Double(1.5)));
        assert!(parse_telemetry(b"{not json", 0).is_none());
        assert!(parse_telemetry(b"[1,2]", 0).is_none());
    }

    /// The typed fast path reads exactly what the general path reads, and
    /// refuses every shape it does not handle (so the general path decides).
    #[test]
    fn fast_path_matches_general_path() {
        let fast_triples = |b: &[u8]| {
            fast::parse(b).map(|ps| {
                let mut out = Vec::new();
                for p in ps {
                    for (k, v) in p.values {
                        if let Some(v) = v.0 {
                            out.push((p.ts, k.into_owned(), v));
                        }
                    }
                }
                out
            })
        };
        let body = br#"[{"ts":5,"values":{"a":1.5,"b":"x","c":7,"d":-3,"e":true,"f":null,
            "g":18446744073709551615,"h":1e3,"k\u0041":0.000120}},{"values":{"a":2},"ts":6}]"#;
        let fast = fast_triples(body).unwrap();
        let mut general = parse_telemetry(body, 0).unwrap();
        let mut sorted = fast.clone();
        sorted.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        general.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        assert_eq!(sorted, general);
        assert!(fast.contains(&(5, "kA".to_string(), TbValue::Double(0.00012))));
        assert!(fast.contains(&(5, "c".to_string(), TbValue::Long(7))));
        // Not the fast shape: the general path decides.
        for b in [
            &br#"{"a":1}"#[..],
            br#"{"ts":5,"values":{"a":1}}"#,
            br#"[{"ts":5,"values":{"a":{"x":1}}}]"#,
            br#"[{"ts":5,"values":{"a":1},"extra":1}]"#,
            br#"[{"ts":5.5,"values":{"a":1}}]"#,
            br#"[{"ts":5}]"#,
            b"[1,2]",
            b"{not json",
        ] {
            assert!(fast_triples(b).is_none(), "{}", String::from_utf8_lossy(b));
        }
    }
}
