//! # tbsync — OFMon's ThingsBoard client and sync engine
//!
//! Owns everything between the collector's SQLite database and a ThingsBoard
//! server:
//!
//! - [`telemetry`]: one record → one telemetry point (the key names, exact
//!   decimal values, `ts_uncertainty_ms`);
//! - [`outbox`]: the per-record, per-destination sync state in the
//!   collector's database (`destination`, `sync_state` tables);
//! - [`http`]: the HTTP device API (`POST /api/v1/{token}/telemetry`),
//!   connection reuse, rustls, gzip only when the server accepts it;
//! - [`mqtt`]: the MQTT device API and gateway API at QoS 1 (rumqttc);
//! - [`rest`]: the REST API (login, find or create a device, its token,
//!   device paging, telemetry read-back and deletion);
//! - [`stale`]: deleting the old points of records re-sent at a corrected
//!   ts (`sync_stale` queue, REST API);
//! - [`engine`]: the sync run — batching, 401/413/5xx policy, backoff with
//!   jitter, per-device report.
//!
//! Architecture invariants:
//! - A record is marked sent only after the server accepted it (HTTP 200 or
//!   MQTT PUBACK), in a committed transaction; a crash anywhere loses
//!   nothing, and a resend is harmless because ThingsBoard upserts by
//!   (key, ts).
//! - HTTP is pipelined one deep: while a batch is in flight (on the
//!   runtime's worker thread), the next one is read and serialized and the
//!   previous one marked sent; a batch is still marked only after its own
//!   200, and on any failure nothing else is in flight.
//! - Knows nothing of terminals: progress goes through a callback
//!   ([`engine::Progress`]); the `ofmon` binary draws the bars.
//! - Never sends a record whose time could not be bounded.
//! - A record counts as sent only at the ts the server accepted
//!   (`sync_state.sent_ts_ms`): when time reconstruction later changes its
//!   ts, it is pending again and re-sent at the new ts, and the run reports
//!   it ([`DeviceReport::moved`]). The server keeps the old point at the old
//!   ts as well (it upserts by (key, ts) and cannot move a point), so the old
//!   ts is queued in `sync_stale` in the transaction that marks the resend,
//!   and [`stale::delete_blocking`] deletes it through the REST API when a
//!   login is saved (`ofmon sync` does this at the end of the run). A failed
//!   resend keeps the recorded ts, so the report stays right across runs.
//! - TLS for `https://` and `mqtts://` is rustls only; `--ca-file`
//!   ([`SyncOptions::ca_pem`]) adds a private CA. An untrusted certificate
//!   stops that device for the run with an error naming `--ca-file`;
//!   nothing is marked.

pub mod engine;
pub mod http;
pub mod mqtt;
pub mod outbox;
pub mod rest;
pub mod stale;
pub mod telemetry;

pub use engine::{DeviceReport, DeviceStatus, Progress, Report, SyncOptions, Syncer, Transport};
pub use http::Gzip;

/// Errors of the ThingsBoard client and sync engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The collector database failed (a full disk says so, and what to do).
    #[error("database: {}{}", .0, collector::db_hint(.0))]
    Db(#[from] rusqlite::Error),
    /// Bad settings (URL, CA file, transport).
    #[error("{0}")]
    Config(String),
    /// The REST API refused or failed.
    #[error("ThingsBoard REST API: {0}")]
    Rest(String),
    /// The REST API refused the login (wrong password, expired refresh
    /// token).
    #[error("{0}")]
    LoginRefused(String),
    /// The REST API could not be reached (offline, timeout).
    #[error("{0}")]
    Unreachable(String),
    /// Local IO (runtime, files).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
