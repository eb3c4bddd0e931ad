//! The sync engine: for each device, send its unsent records to its server,
//! mark them sent after the server accepted them, and report.
//!
//! Policy per device:
//! - batches of at most [`SyncOptions::batch_records`] records and
//!   [`SyncOptions::batch_bytes`] bytes of JSON;
//! - 401 (or an MQTT connection refused as not authorized): stop this device,
//!   report [`DeviceStatus::Unauthorized`], go on with the others;
//! - 413: halve the batch (a single record over the limit is marked
//!   `rejected` with the reason, so it does not block the rest);
//! - 408/429/5xx, timeouts, dropped connections: exponential backoff with
//!   full jitter, at most [`SyncOptions::max_retries`] consecutive failures,
//!   then [`DeviceStatus::GaveUp`]; the next run resumes where this one
//!   stopped;
//! - a record whose ts changed since it was sent (time reconstruction
//!   refined it) is sent again at its new ts and counted in
//!   [`DeviceReport::moved`]: the server still holds the old point at the old
//!   ts (ThingsBoard upserts by (key, ts) and has no "move"), which is queued
//!   for deletion ([`crate::stale`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::Serialize;

use crate::Error;
use crate::http::{DeviceApi, Gzip, HttpOptions, SendError};
use crate::outbox::{self, State, SyncDevice};

/// How to talk to ThingsBoard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// From the URL scheme: http/https → HTTP, mqtt/mqtts → MQTT.
    #[default]
    Auto,
    /// HTTP device API.
    Http,
    /// MQTT device API, one connection per device.
    Mqtt,
    /// MQTT gateway API, one connection for all devices.
    Gateway,
}

/// Settings of a sync run.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Server for every device; `None`: each device's own (from pairing).
    pub server: Option<String>,
    /// Transport.
    pub transport: Transport,
    /// Access token of the gateway device (gateway transport).
    pub gateway_token: Option<String>,
    /// Only these devices (ids or names); empty: all.
    pub only: Vec<String>,
    /// Most records per batch.
    pub batch_records: usize,
    /// Most JSON bytes per HTTP batch (MQTT batches are also capped by the
    /// 64 KiB packet limit).
    pub batch_bytes: usize,
    /// Consecutive failed attempts per device before giving up for this run.
    pub max_retries: u32,
    /// First backoff delay.
    pub backoff_base: Duration,
    /// Longest backoff delay.
    pub backoff_max: Duration,
    /// Request timeout.
    pub timeout: Duration,
    /// Request body compression (HTTP).
    pub gzip: Gzip,
    /// Extra root certificate (PEM) for a private CA.
    pub ca_pem: Option<Vec<u8>>,
    /// MQTT publishes in flight per connection.
    pub mqtt_inflight: u16,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            server: None,
            transport: Transport::Auto,
            gateway_token: None,
            only: Vec::new(),
            batch_records: 1000,
            batch_bytes: 1024 * 1024,
            max_retries: 6,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            gzip: Gzip::Auto,
            ca_pem: None,
            mqtt_inflight: 32,
        }
    }
}

/// How a device's sync ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Everything with a time was sent.
    Done,
    /// The server refused the access token (HTTP 401 / MQTT not authorized).
    Unauthorized,
    /// Too many consecutive failures; the next run resumes.
    GaveUp(String),
    /// No server URL: neither `--thingsboard` nor one from pairing.
    NoServer,
    /// Not paired: no access token.
    NoToken,
    /// Another error (database, configuration).
    Failed(String),
}

/// Per-device outcome of a run.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceReport {
    /// Collector device id.
    pub id: String,
    /// Display name (ThingsBoard name, SSID or id).
    pub name: String,
    /// Server used.
    pub server: Option<String>,
    /// Records accepted by the server in this run.
    pub sent: u64,
    /// Records attempted in this run and still not accepted.
    pub failed: u64,
    /// Records with a time still to send after this run.
    pub pending: u64,
    /// Records without a bounded time (not sent until reconstruction can).
    pub untimed: u64,
    /// Records refused for good (over the server's body limit alone).
    pub rejected: u64,
    /// Records re-sent in this run at a new ts because time reconstruction
    /// changed their ts after an earlier sync. The server still holds their
    /// old points at the old ts; they are queued in `sync_stale` for
    /// [`crate::stale::delete_blocking`].
    pub moved: u64,
    /// Outcome.
    pub status: DeviceStatus,
}

/// Outcome of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// One entry per device considered.
    pub devices: Vec<DeviceReport>,
    /// Wall time of the run, ms.
    pub elapsed_ms: u64,
}

impl Report {
    /// Records sent in this run, all devices.
    pub fn sent(&self) -> u64 {
        self.devices.iter().map(|d| d.sent).sum()
    }

    /// Whether every device ended [`DeviceStatus::Done`].
    pub fn all_done(&self) -> bool {
        self.devices.iter().all(|d| d.status == DeviceStatus::Done)
    }
}

/// What the engine tells its caller while it runs (for progress bars).
#[derive(Debug)]
pub enum Progress<'a> {
    /// Totals known: records to send over all devices.
    Start {
        /// Records pending over all selected devices.
        pending: u64,
    },
    /// A device starts.
    Device {
        /// The device.
        device: &'a SyncDevice,
        /// Its pending records.
        pending: u64,
    },
    /// Records accepted.
    Sent {
        /// Device id.
        device: &'a str,
        /// How many.
        records: u64,
    },
    /// An attempt failed; waiting before the next.
    Retry {
        /// Device id.
        device: &'a str,
        /// Consecutive failures so far.
        attempt: u32,
        /// Why.
        error: &'a str,
        /// Backoff before the next attempt.
        wait: Duration,
    },
    /// A device finished.
    Done(&'a DeviceReport),
}

/// The sync engine over an open collector database.
pub struct Syncer<'c> {
    conn: &'c Connection,
    opts: SyncOptions,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, base·2^n)]`,
/// at least 1 ms.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let cap = base
        .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
        .min(max);
    let ms = cap.as_millis().max(1) as u64;
    Duration::from_millis(rand::random_range(1..=ms))
}

/// Resolved transport for a server URL.
pub(crate) fn resolve_transport(t: Transport, url: &str) -> Transport {
    match t {
        Transport::Auto => {
            if url.starts_with("mqtt://") || url.starts_with("mqtts://") {
                Transport::Mqtt
            } else {
                Transport::Http
            }
        }
        other => other,
    }
}

/// Sends by HTTP, one device.
pub(crate) struct DeviceRun<'a> {
    pub conn: &'a Connection,
    pub dest: i64,
    pub device: &'a SyncDevice,
    pub opts: &'a SyncOptions,
    pub sent: u64,
    pub failed: HashSet<u64>,
    pub moved: u64,
}

impl<'a> DeviceRun<'a> {
    pub(crate) fn new(
        conn: &'a Connection,
        dest: i64,
        device: &'a SyncDevice,
        opts: &'a SyncOptions,
    ) -> Self {
        DeviceRun {
            conn,
            dest,
            device,
            opts,
            sent: 0,
            failed: HashSet::new(),
            moved: 0,
        }
    }

    pub(crate) fn finish(&self, server: &str, status: DeviceStatus) -> Result<DeviceReport, Error> {
        let c = outbox::counts(self.conn, self.dest, &self.device.id)?;
        Ok(DeviceReport {
            id: self.device.id.clone(),
            name: self.device.display_name().to_string(),
            server: Some(server.to_string()),
            sent: self.sent,
            failed: self.failed.len() as u64,
            pending: c.pending,
            untimed: c.untimed,
            rejected: c.rejected,
            moved: self.moved,
            status,
        })
    }

    pub(crate) fn mark_sent(&mut self, sent: &[Sent]) -> Result<(), Error> {
        let moved = outbox::mark_sent(self.conn, self.dest, &self.device.id, sent, now_ms())?;
        self.moved += moved.len() as u64;
        for s in sent {
            self.failed.remove(&s.0);
        }
        self.sent += sent.len() as u64;
        Ok(())
    }

    pub(crate) fn mark_failed(&mut self, sent: &[Sent], error: &str) -> Result<(), Error> {
        outbox::mark(
            self.conn,
            self.dest,
            &self.device.id,
            sent.iter().map(|s| s.0),
            State::Pending(error),
            now_ms(),
        )?;
        self.failed.extend(sent.iter().map(|s| s.0));
        Ok(())
    }
}

/// A record in a batch: (seq, the ts it is sent at).
pub(crate) type Sent = (u64, i64);

/// Serialized points waiting to be sent, refilled from the outbox.
pub(crate) struct Queue {
    items: VecDeque<(Sent, Vec<u8>)>,
    after: u64,
    exhausted: bool,
}

impl Queue {
    pub(crate) fn new() -> Self {
        Queue {
            items: VecDeque::new(),
            after: 0,
            exhausted: false,
        }
    }

    /// Makes sure at least `n` points are queued (unless the outbox is empty).
    pub(crate) fn fill(&mut self, run: &DeviceRun<'_>, n: usize) -> Result<(), Error> {
        while self.items.len() < n && !self.exhausted {
            let want = (n - self.items.len()).max(256);
            let rs = outbox::unsent(run.conn, run.dest, &run.device.id, self.after, want)?;
            if rs.len() < want {
                self.exhausted = true;
            }
            for r in rs {
                self.after = r.seq;
                let mut v = Vec::with_capacity(600);
                r.write_point(&mut v);
                self.items.push_back(((r.seq, r.ts_ms), v));
            }
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Takes up to `max_records` points whose JSON array stays within
    /// `max_bytes` (at least one point). Returns ((seq, ts)s, points).
    pub(crate) fn take(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> (Vec<Sent>, Vec<Vec<u8>>) {
        let mut seqs = Vec::new();
        let mut pts = Vec::new();
        let mut bytes = 2;
        while let Some((_, p)) = self.items.front() {
            if !pts.is_empty() && (pts.len() >= max_records || bytes + p.len() + 1 > max_bytes) {
                break;
            }
            bytes += p.len() + 1;
            let Some((s, p)) = self.items.pop_front() else {
                break;
            };
            seqs.push(s);
            pts.push(p);
        }
        (seqs, pts)
    }

    /// Puts points back at the front, in order.
    pub(crate) fn unget(&mut self, seqs: Vec<Sent>, pts: Vec<Vec<u8>>) {
        for (s, p) in seqs.into_iter().zip(pts).rev() {
            self.items.push_front((s, p));
        }
    }
}

/// `[p1,p2,…]`.
pub(crate) fn json_array(pts: &[Vec<u8>]) -> Vec<u8> {
    let n: usize = pts.iter().map(|p| p.len() + 1).sum();
    let mut body = Vec::with_capacity(n + 2);
    body.push(b'[');
    for (i, p) in pts.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(p);
    }
    body.push(b']');
    body
}

async fn sync_device_http(
    api: &mut DeviceApi,
    run: &mut DeviceRun<'_>,
    token: &str,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<DeviceStatus, Error> {
    let opts = run.opts;
    let mut q = Queue::new();
    let mut cap = opts.batch_records.max(1);
    let mut failures = 0u32;
    // At most one request in flight; while it is, the next batch is read
    // and serialized, and the previous one marked sent.
    let mut inflight = None;
    loop {
        let (seqs, pts, req) = match inflight.take() {
            Some(x) => x,
            None => {
                q.fill(run, cap)?;
                if q.is_empty() {
                    return Ok(DeviceStatus::Done);
                }
                let (seqs, pts) = q.take(cap, opts.batch_bytes.max(1));
                let req = api.spawn_telemetry(token, json_array(&pts)).await;
                (seqs, pts, req)
            }
        };
        q.fill(run, cap)?;
        let result = match req.await {
            Ok(r) => r,
            Err(e) => Err(SendError::Retry(format!("request task failed: {e}"))),
        };
        match result {
            Ok(()) => {
                failures = 0;
                if !q.is_empty() {
                    let (s, p) = q.take(cap, opts.batch_bytes.max(1));
                    let req = api.spawn_telemetry(token, json_array(&p)).await;
                    inflight = Some((s, p, req));
                }
                // Only now, after the 200: mark this batch sent.
                run.mark_sent(&seqs)?;
                progress(Progress::Sent {
                    device: &run.device.id,
                    records: seqs.len() as u64,
                });
            }
            Err(SendError::Unauthorized) => {
                let e = SendError::Unauthorized.to_string();
                run.mark_failed(&seqs, &e)?;
                return Ok(DeviceStatus::Unauthorized);
            }
            Err(SendError::TooLarge) => {
                if seqs.len() == 1 {
                    let why = "413: this single record is over the server's body limit";
                    outbox::mark(
                        run.conn,
                        run.dest,
                        &run.device.id,
                        seqs.iter().map(|s| s.0),
                        State::Rejected(why),
                        now_ms(),
                    )?;
                } else {
                    cap = seqs.len() / 2;
                    q.unget(seqs, pts);
                }
            }
            Err(e @ (SendError::Retry(_) | SendError::Other(_) | SendError::Tls(_))) => {
                failures += 1;
                let msg = e.to_string();
                if failures > opts.max_retries
                    || matches!(e, SendError::Other(_) | SendError::Tls(_))
                {
                    run.mark_failed(&seqs, &msg)?;
                    return Ok(DeviceStatus::GaveUp(msg));
                }
                let wait = backoff(opts.backoff_base, opts.backoff_max, failures - 1);
                progress(Progress::Retry {
                    device: &run.device.id,
                    attempt: failures,
                    error: &msg,
                    wait,
                });
                run.failed.extend(seqs.iter().map(|s| s.0));
                q.unget(seqs, pts);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

impl<'c> Syncer<'c> {
    /// A sync engine over `conn` (the collector database); creates the
    /// outbox tables if they are missing.
    pub fn new(conn: &'c Connection, opts: SyncOptions) -> Result<Syncer<'c>, Error> {
        outbox::prepare_tables(conn)?;
        Ok(Syncer { conn, opts })
    }

    /// The devices this run will consider, with their server.
    pub fn plan(&self) -> Result<Vec<(SyncDevice, Option<String>)>, Error> {
        let all = outbox::devices(self.conn)?;
        Ok(all
            .into_iter()
            .filter(|d| {
                self.opts.only.is_empty()
                    || self.opts.only.iter().any(|o| {
                        *o == d.id || Some(o) == d.name.as_ref() || Some(o) == d.ssid.as_ref()
                    })
            })
            .map(|d| {
                let s = self
                    .opts
                    .server
                    .clone()
                    .or_else(|| d.server.clone())
                    .map(|s| outbox::normalize_url(&s));
                (d, s)
            })
            .collect())
    }

    /// Runs one sync (blocking; drives its own runtime with one worker
    /// thread, where HTTP requests run while this thread reads and marks the
    /// database).
    pub fn run(&self, progress: &mut dyn FnMut(Progress<'_>)) -> Result<Report, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        rt.block_on(self.run_async(progress))
    }

    /// Runs one sync on the caller's runtime.
    pub async fn run_async(&self, progress: &mut dyn FnMut(Progress<'_>)) -> Result<Report, Error> {
        let t0 = Instant::now();
        let plan = self.plan()?;
        let mut dests: HashMap<String, i64> = HashMap::new();
        let mut total = 0;
        // Pending per device, counted once (a full pass over its records).
        let mut pending_of: HashMap<&str, u64> = HashMap::new();
        for (d, s) in &plan {
            if let Some(s) = s {
                let id = match dests.get(s) {
                    Some(id) => *id,
                    None => {
                        let id = outbox::destination_id(self.conn, s)?;
                        dests.insert(s.clone(), id);
                        id
                    }
                };
                let p = outbox::counts(self.conn, id, &d.id)?.pending;
                pending_of.insert(&d.id, p);
                total += p;
            }
        }
        progress(Progress::Start { pending: total });
        let mut reports = Vec::new();
        // Gateway: one connection per server for all its devices.
        let mut gateway_groups: BTreeMap<String, Vec<&SyncDevice>> = BTreeMap::new();
        let mut apis: HashMap<String, DeviceApi> = HashMap::new();
        for (d, server) in &plan {
            let Some(server) = server else {
                let r = DeviceReport {
                    id: d.id.clone(),
                    name: d.display_name().to_string(),
                    server: None,
                    sent: 0,
                    failed: 0,
                    pending: 0,
                    untimed: 0,
                    rejected: 0,
                    moved: 0,
                    status: DeviceStatus::NoServer,
                };
                progress(Progress::Done(&r));
                reports.push(r);
                continue;
            };
            let dest = dests[server];
            let transport = resolve_transport(self.opts.transport, server);
            if transport == Transport::Gateway {
                gateway_groups.entry(server.clone()).or_default().push(d);
                continue;
            }
            let mut run = DeviceRun::new(self.conn, dest, d, &self.opts);
            let Some(token) = d.token.as_deref() else {
                let r = run.finish(server, DeviceStatus::NoToken)?;
                progress(Progress::Done(&r));
                reports.push(r);
                continue;
            };
            let pending = match pending_of.get(d.id.as_str()) {
                Some(p) => *p,
                None => outbox::counts(self.conn, dest, &d.id)?.pending,
            };
            progress(Progress::Device { device: d, pending });
            let status = match transport {
                Transport::Mqtt => {
                    crate::mqtt::sync_device(&mut run, server, token, progress).await?
                }
                _ => {
                    let api = match apis.get_mut(server) {
                        Some(a) => a,
                        None => {
                            let a = DeviceApi::new(
                                server,
                                &HttpOptions {
                                    timeout: self.opts.timeout,
                                    ca_pem: self.opts.ca_pem.clone(),
                                    gzip: self.opts.gzip,
                                },
                            );
                            match a {
                                Ok(a) => apis.entry(server.clone()).or_insert(a),
                                Err(e) => {
                                    let r =
                                        run.finish(server, DeviceStatus::Failed(e.to_string()))?;
                                    progress(Progress::Done(&r));
                                    reports.push(r);
                                    continue;
                                }
                            }
                        }
                    };
                    sync_device_http(api, &mut run, token, progress).await?
                }
            };
            let r = run.finish(server, status)?;
            progress(Progress::Done(&r));
            reports.push(r);
        }
        for (server, devices) in gateway_groups {
            let dest = dests[&server];
            let rs =
                crate::mqtt::sync_gateway(self.conn, dest, &devices, &server, &self.opts, progress)
                    .await?;
            for r in rs {
                progress(Progress::Done(&r));
                reports.push(r);
            }
        }
        Ok(Report {
            devices: reports,
            elapsed_ms: t0.elapsed().as_millis() as u64,
        })
    }
}
