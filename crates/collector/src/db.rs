//! The collector's SQLite database: schema, durable batch inserts, queries.
//!
//! # Schema (version 1)
//!
//! ```sql
//! device      (id PK, ssid, url, paired, name, profile, tb_server, token,
//!              interval_s, info_json, last_seq, acked_seq, last_collect_ms,
//!              last_event_seq, added_ms)
//! record      (device_id, seq, boot_id, uptime_ms, wall_ms, duration_ms, flags,
//!              frequency_mhz, v{1,2,3}_cv, v{1,2,3}_min_cv, v{1,2,3}_max_cv,
//!              ts_ms, ts_uncertainty_ms, collected_ms,
//!              PRIMARY KEY (device_id, seq))           -- UNIQUE(device, seq)
//! circuit     (device_id, seq, ct 1..3, i_rms_ma, real_power_dw,
//!              real_power_min_dw, real_power_max_dw, apparent_power_dva,
//!              power_factor_milli, import_mwh, export_mwh,
//!              PRIMARY KEY (device_id, seq, ct))
//! event       (device_id, seq, boot_id, uptime_ms, wall_ms, kind, json,
//!              PRIMARY KEY (device_id, seq))
//! time_sync   (device_id, boot_id, uptime_ms, unix_ms, uncertainty_ms, rtt_ms,
//!              at_ms, PRIMARY KEY (device_id, boot_id, uptime_ms))
//! destination (id PK, kind, url, UNIQUE (kind, url))
//! sync_state  (destination_id, device_id, seq, state, attempts, last_error,
//!              updated_ms, PRIMARY KEY (destination_id, device_id, seq))
//! tb_device   (device_id PK, server, tb_id, name, label, fetched_ms)
//! tb_gateway  (server PK, tb_id, name, token, added_ms)
//! ```
//!
//! **ThingsBoard identity cache**: `tb_device` remembers, per meter, the
//! server it was provisioned on, its device id there, and the name and label
//! the server last reported (`fetched_ms`: when), so `ofmon devices` shows
//! them offline; `device.name` follows the server-side name (the gateway API
//! addresses devices by name). `tb_gateway` holds the gateway device made by
//! `ofmon pair --gateway`, whose token the gateway transport uses. Both are
//! plain `CREATE TABLE IF NOT EXISTS` additions: older databases gain them
//! on open, without a version change.
//!
//! Values are kept in the device's exact integer units (cV, mA, dW, dVA,
//! milli-PF, mWh); conversion to V/A/W/Wh happens on export.
//!
//! **Durability**: WAL journal, `synchronous=FULL`, so a committed
//! transaction survives a crash of the process or the machine. A batch of
//! records and the device's `last_seq` cursor are written in one transaction;
//! the collector acks a seq to the device only after that commit returned.
//! Inserts use `INSERT OR IGNORE` on the primary key, so re-receiving a
//! committed record (crash between commit and ack) changes nothing.
//!
//! **Sync outbox** (for the ThingsBoard sync): `destination` lists the
//! servers; `sync_state` has one row per (destination, record) once the sync
//! touched it, `state` ∈ `pending`, `sent`, `rejected`. A record without a
//! `sent` row for a destination is still to be sent there, so new records need
//! no extra write at collect time. `prune` never deletes unsent records'
//! sync rows before the records themselves.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use store::Record;

use crate::Error;

/// Current schema version (stored in `PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS device (
    id TEXT PRIMARY KEY,
    ssid TEXT,
    url TEXT,
    paired INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    profile TEXT,
    tb_server TEXT,
    token TEXT,
    interval_s INTEGER,
    info_json TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    acked_seq INTEGER,
    last_collect_ms INTEGER,
    last_event_seq INTEGER,
    added_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS record (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    boot_id INTEGER NOT NULL,
    uptime_ms INTEGER NOT NULL,
    wall_ms INTEGER,
    duration_ms INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    frequency_mhz INTEGER NOT NULL,
    v1_cv INTEGER, v1_min_cv INTEGER, v1_max_cv INTEGER,
    v2_cv INTEGER, v2_min_cv INTEGER, v2_max_cv INTEGER,
    v3_cv INTEGER, v3_min_cv INTEGER, v3_max_cv INTEGER,
    ts_ms INTEGER,
    ts_uncertainty_ms INTEGER,
    collected_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_ts ON record (ts_ms);
CREATE TABLE IF NOT EXISTS circuit (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ct INTEGER NOT NULL CHECK (ct BETWEEN 1 AND 3),
    i_rms_ma INTEGER NOT NULL,
    real_power_dw INTEGER NOT NULL,
    real_power_min_dw INTEGER NOT NULL,
    real_power_max_dw INTEGER NOT NULL,
    apparent_power_dva INTEGER NOT NULL,
    power_factor_milli INTEGER NOT NULL,
    import_mwh INTEGER NOT NULL,
    export_mwh INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq, ct)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    boot_id INTEGER NOT NULL,
    uptime_ms INTEGER NOT NULL,
    wall_ms INTEGER,
    kind TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tb_device (
    device_id TEXT PRIMARY KEY,
    server TEXT,
    tb_id TEXT,
    name TEXT,
    label TEXT,
    fetched_ms INTEGER
);
CREATE TABLE IF NOT EXISTS tb_gateway (
    server TEXT PRIMARY KEY,
    tb_id TEXT NOT NULL,
    name TEXT NOT NULL,
    token TEXT NOT NULL,
    added_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS time_sync (
    device_id TEXT NOT NULL,
    boot_id INTEGER NOT NULL,
    uptime_ms INTEGER NOT NULL,
    unix_ms INTEGER NOT NULL,
    uncertainty_ms INTEGER NOT NULL,
    rtt_ms INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, boot_id, uptime_ms)
) WITHOUT ROWID;
";

/// The sync outbox: one row per (destination, device, seq) once a record has
/// been tried; no row means pending. `tbsync` creates it through this same
/// constant, so the two never disagree.
pub const OUTBOX_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS destination (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    UNIQUE (kind, url)
);
CREATE TABLE IF NOT EXISTS sync_state (
    destination_id INTEGER NOT NULL REFERENCES destination(id),
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (destination_id, device_id, seq)
) WITHOUT ROWID;
";

/// A device as the collector knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceRow {
    /// Device id (MAC, 12 upper-case hex digits).
    pub id: String,
    /// SSID of its access point.
    pub ssid: Option<String>,
    /// Last URL it was reached at.
    pub url: Option<String>,
    /// Whether this collector paired it (or found it paired).
    pub paired: bool,
    /// ThingsBoard device name.
    pub name: Option<String>,
    /// ThingsBoard device profile.
    pub profile: Option<String>,
    /// ThingsBoard server.
    pub tb_server: Option<String>,
    /// Highest seq durably stored here (0: none).
    pub last_seq: u64,
    /// Highest seq the device confirmed as acknowledged.
    pub acked_seq: Option<u64>,
    /// Collector time of the last successful collect.
    pub last_collect_ms: Option<i64>,
    /// Records kept here.
    pub records: u64,
    /// Records not yet sent to any destination.
    pub pending_sync: u64,
    /// Device id on the ThingsBoard server (from provisioning or a fetch).
    pub tb_id: Option<String>,
    /// Label on the ThingsBoard server, as last fetched.
    pub label: Option<String>,
    /// When the server-side name and label were last fetched (unix ms);
    /// `None`: never (the name is the one given at pairing).
    pub tb_fetched_ms: Option<i64>,
}

/// A gateway device on a ThingsBoard server (`ofmon pair --gateway`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GatewayRow {
    /// Server it was provisioned on (REST base URL).
    pub server: String,
    /// Its device id there.
    pub tb_id: String,
    /// Its name.
    pub name: String,
    /// Its access token (MQTT user name of the gateway connection).
    #[serde(skip)]
    pub token: String,
    /// When it was saved (unix ms).
    pub added_ms: i64,
}

/// One exported row: one record and one CT.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ExportRow {
    /// Device id.
    pub device_id: String,
    /// Record seq.
    pub seq: u64,
    /// Reconstructed time (unix ms), if it could be bounded.
    pub ts_ms: Option<i64>,
    /// Bound on the error of `ts_ms`.
    pub ts_uncertainty_ms: Option<i64>,
    /// CT number, 1..=3.
    pub channel: u8,
    /// RMS voltage of the CT's phase (V).
    pub v_rms: Option<f64>,
    /// RMS current (A).
    pub i_rms: f64,
    /// Mean real power (W).
    pub real_power_w: f64,
    /// Apparent power (VA).
    pub apparent_power_va: f64,
    /// Power factor.
    pub power_factor: f64,
    /// Cumulative imported energy (Wh).
    pub import_wh: f64,
    /// Cumulative exported energy (Wh).
    pub export_wh: f64,
}

/// Filter of [`Db::export`].
#[derive(Clone, Debug, Default)]
pub struct ExportFilter {
    /// Only this device.
    pub device: Option<String>,
    /// `ts_ms >= from` (records without a time are then excluded).
    pub from_ms: Option<i64>,
    /// `ts_ms < to`.
    pub to_ms: Option<i64>,
}

/// An open collector database.
pub struct Db {
    conn: Connection,
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Db {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// A new database file is created readable by its owner only (mode
    /// 0600 on Unix): it holds the ThingsBoard access tokens of the
    /// devices (SQLite gives its `-wal` and `-shm` files the same mode).
    pub fn open(path: &Path) -> Result<Db, Error> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::Config(format!(
                        "cannot create the database {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Db, Error> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Db, Error> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Up to ~32 MB of page cache (default ~2 MB): a page of 10 000
        // records touches more than the default holds, which spills dirty
        // pages to the WAL mid-transaction and re-reads them.
        conn.pragma_update(None, "cache_size", -32_000)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Schema(version));
        }
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(OUTBOX_SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Db { conn })
    }

    /// The underlying connection (for the sync code of later issues).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Inserts or updates a device's identity and location.
    pub fn upsert_device(
        &self,
        id: &str,
        ssid: Option<&str>,
        url: Option<&str>,
        now_ms: i64,
    ) -> Result<(), Error> {
        self.conn.execute(
            "INSERT INTO device (id, ssid, url, added_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET ssid = COALESCE(?2, ssid), url = COALESCE(?3, url)",
            params![id, ssid, url, now_ms],
        )?;
        Ok(())
    }

    /// Stores the last `GET /info` answer and the device's paired flag.
    pub fn set_info(
        &self,
        id: &str,
        info_json: &str,
        paired: bool,
        interval_s: u32,
    ) -> Result<(), Error> {
        self.conn.execute(
            "UPDATE device SET info_json = ?2, paired = ?3, interval_s = ?4 WHERE id = ?1",
            params![id, info_json, paired, interval_s],
        )?;
        Ok(())
    }

    /// Records a pairing made by this collector.
    pub fn set_pairing(
        &self,
        id: &str,
        token: &str,
        name: Option<&str>,
        profile: Option<&str>,
        server: Option<&str>,
    ) -> Result<(), Error> {
        self.conn.execute(
            "UPDATE device SET paired = 1, token = ?2, name = COALESCE(?3, name),
             profile = COALESCE(?4, profile), tb_server = COALESCE(?5, tb_server) WHERE id = ?1",
            params![id, token, name, profile, server],
        )?;
        Ok(())
    }

    /// Highest seq durably stored for `id` (0 when none or unknown device).
    pub fn last_seq(&self, id: &str) -> Result<u64, Error> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT last_seq FROM device WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(v.map_or(0, u64_of))
    }

    /// Durably stores a batch of records of one device and advances its
    /// cursor, in one transaction. Records must be in increasing seq order,
    /// all after the current cursor; otherwise nothing is written.
    /// Returns how many records were new.
    pub fn insert_batch(
        &mut self,
        id: &str,
        records: &[Record],
        now_ms: i64,
    ) -> Result<usize, Error> {
        let tx = self.conn.transaction()?;
        let cursor: i64 = tx
            .query_row("SELECT last_seq FROM device WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| Error::UnknownDevice(id.to_string()))?;
        let mut prev = u64_of(cursor);
        for r in records {
            if r.seq <= prev {
                return Err(Error::BadInput(format!(
                    "seq went backwards: {} after {prev}",
                    r.seq
                )));
            }
            prev = r.seq;
        }
        let mut new = 0;
        {
            let mut rec = tx.prepare_cached(
                "INSERT OR IGNORE INTO record (device_id, seq, boot_id, uptime_ms, wall_ms,
                 duration_ms, flags, frequency_mhz,
                 v1_cv, v1_min_cv, v1_max_cv, v2_cv, v2_min_cv, v2_max_cv, v3_cv, v3_min_cv, v3_max_cv,
                 collected_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )?;
            let mut circ = tx.prepare_cached(
                "INSERT OR IGNORE INTO circuit (device_id, seq, ct, i_rms_ma, real_power_dw,
                 real_power_min_dw, real_power_max_dw, apparent_power_dva, power_factor_milli,
                 import_mwh, export_mwh) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for r in records {
                let v = r.voltages();
                let vol = |i: usize, k: usize| v.get(i).map(|x| [x.rms_cv, x.min_cv, x.max_cv][k]);
                let seq = i64_of(r.seq);
                let n = rec.execute(params![
                    id,
                    seq,
                    r.boot_id,
                    i64_of(r.uptime_ms),
                    r.wall_ms.map(i64_of),
                    r.duration_ms,
                    r.flags.0,
                    r.frequency_mhz,
                    vol(0, 0),
                    vol(0, 1),
                    vol(0, 2),
                    vol(1, 0),
                    vol(1, 1),
                    vol(1, 2),
                    vol(2, 0),
                    vol(2, 1),
                    vol(2, 2),
                    now_ms,
                ])?;
                new += n;
                for (ct, c) in r.circuits().iter().enumerate() {
                    circ.execute(params![
                        id,
                        seq,
                        ct as i64 + 1,
                        c.i_rms_ma,
                        c.real_power_dw,
                        c.real_power_min_dw,
                        c.real_power_max_dw,
                        c.apparent_power_dva,
                        c.power_factor_milli,
                        i64_of(c.import_mwh),
                        i64_of(c.export_mwh),
                    ])?;
                }
            }
        }
        if let Some(last) = records.last() {
            tx.execute(
                "UPDATE device SET last_seq = ?2 WHERE id = ?1",
                params![id, i64_of(last.seq)],
            )?;
        }
        tx.commit()?;
        Ok(new)
    }

    /// Notes the seq the device confirmed as acknowledged.
    pub fn set_acked(&self, id: &str, acked: u64) -> Result<(), Error> {
        self.conn.execute(
            "UPDATE device SET acked_seq = ?2 WHERE id = ?1",
            params![id, i64_of(acked)],
        )?;
        Ok(())
    }

    /// Marks a successful collect at `now_ms`.
    pub fn set_collected(&self, id: &str, now_ms: i64) -> Result<(), Error> {
        self.conn.execute(
            "UPDATE device SET last_collect_ms = ?2 WHERE id = ?1",
            params![id, now_ms],
        )?;
        Ok(())
    }

    /// Stores device events (idempotent) and advances the events cursor.
    pub fn insert_events(
        &mut self,
        id: &str,
        events: &[protocol::api::Event],
    ) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        let mut max = None;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO event (device_id, seq, boot_id, uptime_ms, wall_ms, kind, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for e in events {
                let json = serde_json::to_string(e).map_err(|e| Error::BadInput(e.to_string()))?;
                let kind = serde_json::to_value(&e.kind)
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
                    .unwrap_or_else(|| "unknown".to_string());
                st.execute(params![
                    id,
                    i64_of(e.seq),
                    i64_of(e.boot_id),
                    i64_of(e.uptime_ms),
                    e.wall_ms.map(i64_of),
                    kind,
                    json
                ])?;
                max = max.max(Some(e.seq));
            }
        }
        if let Some(m) = max {
            tx.execute(
                "UPDATE device SET last_event_seq = MAX(COALESCE(last_event_seq, 0), ?2) WHERE id = ?1",
                params![id, i64_of(m)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Events cursor of a device.
    pub fn last_event_seq(&self, id: &str) -> Result<Option<u64>, Error> {
        let v: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT last_event_seq FROM device WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.flatten().map(u64_of))
    }

    /// Records a clock sync this collector made, with its measured bound.
    pub fn insert_time_sync(
        &self,
        id: &str,
        s: &crate::time::Anchor,
        rtt_ms: u64,
        at_ms: i64,
    ) -> Result<(), Error> {
        self.conn.execute(
            "INSERT OR REPLACE INTO time_sync (device_id, boot_id, uptime_ms, unix_ms, uncertainty_ms, rtt_ms, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                s.boot_id,
                i64_of(s.uptime_ms),
                i64_of(s.wall_ms),
                i64_of(s.uncertainty_ms),
                i64_of(rtt_ms),
                at_ms
            ],
        )?;
        Ok(())
    }

    /// Everything known about a device's time, for [`crate::time::reconstruct`].
    pub fn history(&self, id: &str) -> Result<(Vec<u64>, crate::time::History), Error> {
        let (rows, h) = self.history_with_times(id)?;
        Ok((rows.into_iter().map(|r| r.0).collect(), h))
    }

    /// [`Self::history`], with each record's stored `(seq, ts_ms,
    /// ts_uncertainty_ms)`.
    #[allow(clippy::type_complexity)]
    fn history_with_times(
        &self,
        id: &str,
    ) -> Result<(Vec<(u64, Option<i64>, Option<i64>)>, crate::time::History), Error> {
        use crate::time::{Anchor, BootMark, History, RecordTime};
        let mut h = History::default();
        let mut seqs = Vec::new();
        let mut st = self.conn.prepare(
            "SELECT seq, boot_id, uptime_ms, wall_ms, ts_ms, ts_uncertainty_ms
             FROM record WHERE device_id = ?1 ORDER BY seq",
        )?;
        let mut rows = st.query([id])?;
        while let Some(r) = rows.next()? {
            let seq = u64_of(r.get(0)?);
            h.records.push(RecordTime {
                seq,
                boot_id: r.get(1)?,
                uptime_ms: u64_of(r.get(2)?),
                wall_ms: r.get::<_, Option<i64>>(3)?.map(u64_of),
            });
            seqs.push((seq, r.get(4)?, r.get(5)?));
        }
        // Our own syncs, with measured bounds.
        let mut st = self.conn.prepare(
            "SELECT boot_id, uptime_ms, unix_ms, uncertainty_ms FROM time_sync WHERE device_id = ?1",
        )?;
        let rows = st.query_map([id], |r| {
            Ok(Anchor {
                boot_id: r.get(0)?,
                uptime_ms: u64_of(r.get(1)?),
                wall_ms: u64_of(r.get(2)?),
                uncertainty_ms: u64_of(r.get(3)?),
                trusted: true,
            })
        })?;
        for a in rows {
            h.anchors.push(a?);
        }
        // Device events: syncs by others, boots.
        let mut st = self
            .conn
            .prepare("SELECT json FROM event WHERE device_id = ?1 ORDER BY seq")?;
        let rows = st.query_map([id], |r| r.get::<_, String>(0))?;
        for json in rows {
            let Ok(e) = serde_json::from_str::<protocol::api::Event>(&json?) else {
                continue;
            };
            let Ok(boot_id) = u32::try_from(e.boot_id) else {
                continue;
            };
            use protocol::api::EventKind as K;
            match e.kind {
                K::TimeSync {
                    unix_ms,
                    uncertainty_ms,
                    ..
                } => {
                    let ours = h
                        .anchors
                        .iter()
                        .any(|a| a.boot_id == boot_id && a.uptime_ms == e.uptime_ms);
                    if !ours {
                        h.anchors.push(Anchor {
                            boot_id,
                            uptime_ms: e.uptime_ms,
                            wall_ms: unix_ms,
                            uncertainty_ms: u64::from(uncertainty_ms),
                            trusted: false,
                        });
                    }
                }
                K::Boot {
                    last_boot_id: Some(pb),
                    last_uptime_ms: Some(pu),
                    last_wall_ms,
                    ..
                }
                | K::PowerLoss {
                    last_boot_id: pb,
                    last_uptime_ms: pu,
                    last_wall_ms,
                } => {
                    if let Ok(prev_boot_id) = u32::try_from(pb) {
                        h.boots.push(BootMark {
                            boot_id,
                            prev_boot_id,
                            prev_uptime_ms: pu,
                            prev_wall_ms: last_wall_ms,
                        });
                    }
                }
                _ => {}
            }
        }
        h.observed_at_ms = self
            .conn
            .query_row(
                "SELECT MAX(collected_ms) FROM record WHERE device_id = ?1",
                [id],
                |r| r.get::<_, Option<i64>>(0),
            )?
            .map(u64_of);
        Ok((seqs, h))
    }

    /// Recomputes `ts_ms`/`ts_uncertainty_ms` of all records of a device
    /// in one pass and one transaction; only rows whose values change are
    /// written. Returns how many rows changed.
    pub fn reconstruct_times(&mut self, id: &str, p: &crate::time::Params) -> Result<usize, Error> {
        let (rows, h) = self.history_with_times(id)?;
        let est = crate::time::reconstruct(&h, p);
        let tx = self.conn.transaction()?;
        let mut changed = 0;
        {
            let mut st = tx.prepare_cached(
                "UPDATE record SET ts_ms = ?3, ts_uncertainty_ms = ?4 WHERE device_id = ?1 AND seq = ?2",
            )?;
            for ((seq, ts, unc), e) in rows.iter().zip(&est) {
                let new_unc = e.uncertainty_ms.map(i64_of);
                if *ts == e.ts_ms && *unc == new_unc {
                    continue;
                }
                changed += st.execute(params![id, i64_of(*seq), e.ts_ms, new_unc])?;
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    /// All known devices.
    pub fn devices(&self) -> Result<Vec<DeviceRow>, Error> {
        let mut st = self.conn.prepare(
            "SELECT d.id, d.ssid, d.url, d.paired, d.name, d.profile, d.tb_server, d.last_seq,
                    d.acked_seq, d.last_collect_ms,
                    (SELECT COUNT(*) FROM record r WHERE r.device_id = d.id),
                    (SELECT COUNT(*) FROM record r WHERE r.device_id = d.id AND NOT EXISTS
                        (SELECT 1 FROM sync_state s WHERE s.device_id = r.device_id
                         AND s.seq = r.seq AND s.state = 'sent')),
                    t.tb_id, t.label, t.fetched_ms
             FROM device d LEFT JOIN tb_device t ON t.device_id = d.id ORDER BY d.id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(DeviceRow {
                id: r.get(0)?,
                ssid: r.get(1)?,
                url: r.get(2)?,
                paired: r.get(3)?,
                name: r.get(4)?,
                profile: r.get(5)?,
                tb_server: r.get(6)?,
                last_seq: u64_of(r.get(7)?),
                acked_seq: r.get::<_, Option<i64>>(8)?.map(u64_of),
                last_collect_ms: r.get(9)?,
                records: u64_of(r.get(10)?),
                pending_sync: u64_of(r.get(11)?),
                tb_id: r.get(12)?,
                label: r.get(13)?,
                tb_fetched_ms: r.get(14)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remembers where a device was provisioned: its `server` and its id
    /// there, with the `name` and `label` the server answered at `now_ms`.
    /// Also sets the device's name.
    pub fn set_tb_identity(
        &self,
        id: &str,
        server: &str,
        tb_id: &str,
        name: &str,
        label: Option<&str>,
        now_ms: i64,
    ) -> Result<(), Error> {
        self.conn.execute(
            "INSERT INTO tb_device (device_id, server, tb_id, name, label, fetched_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(device_id) DO UPDATE SET server = ?2, tb_id = ?3, name = ?4,
             label = ?5, fetched_ms = ?6",
            params![id, server, tb_id, name, label, now_ms],
        )?;
        self.conn.execute(
            "UPDATE device SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        Ok(())
    }

    /// Caches the server-side `name` and `label` of a device fetched at
    /// `now_ms` (and its server id, learned when it was looked up by name),
    /// in one transaction with the device's name.
    pub fn set_tb_fetched(
        &mut self,
        id: &str,
        server: &str,
        tb_id: &str,
        name: &str,
        label: Option<&str>,
        now_ms: i64,
    ) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO tb_device (device_id, server, tb_id, name, label, fetched_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(device_id) DO UPDATE SET server = COALESCE(server, ?2), tb_id = ?3,
             name = ?4, label = ?5, fetched_ms = ?6",
            params![id, server, tb_id, name, label, now_ms],
        )?;
        tx.execute(
            "UPDATE device SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Saves (replaces) the gateway device of `server`.
    pub fn set_gateway(&self, g: &GatewayRow) -> Result<(), Error> {
        self.conn.execute(
            "INSERT INTO tb_gateway (server, tb_id, name, token, added_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(server) DO UPDATE SET tb_id = ?2, name = ?3, token = ?4, added_ms = ?5",
            params![g.server, g.tb_id, g.name, g.token, g.added_ms],
        )?;
        Ok(())
    }

    /// The saved gateway devices, newest first.
    pub fn gateways(&self) -> Result<Vec<GatewayRow>, Error> {
        let mut st = self.conn.prepare(
            "SELECT server, tb_id, name, token, added_ms FROM tb_gateway
             ORDER BY added_ms DESC, server",
        )?;
        let rows = st.query_map([], |r| {
            Ok(GatewayRow {
                server: r.get(0)?,
                tb_id: r.get(1)?,
                name: r.get(2)?,
                token: r.get(3)?,
                added_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes records (and their circuits and sync rows) whose time is known
    /// to be before `before_ms` (`ts_ms + ts_uncertainty_ms < before_ms`).
    /// Records without a time are kept. Returns the number of records deleted.
    pub fn prune(&mut self, before_ms: i64) -> Result<usize, Error> {
        let tx = self.conn.transaction()?;
        let cond = "ts_ms IS NOT NULL AND ts_ms + COALESCE(ts_uncertainty_ms, 0) < ?1";
        tx.execute(
            &format!(
                "DELETE FROM circuit WHERE (device_id, seq) IN
                 (SELECT device_id, seq FROM record WHERE {cond})"
            ),
            [before_ms],
        )?;
        tx.execute(
            &format!(
                "DELETE FROM sync_state WHERE (device_id, seq) IN
                 (SELECT device_id, seq FROM record WHERE {cond})"
            ),
            [before_ms],
        )?;
        let n = tx.execute(&format!("DELETE FROM record WHERE {cond}"), [before_ms])?;
        tx.commit()?;
        Ok(n)
    }

    /// Runs `f` for each exported row, in (device, seq, channel) order.
    pub fn export(
        &self,
        filter: &ExportFilter,
        mut f: impl FnMut(ExportRow) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let mut st = self.conn.prepare(
            "SELECT r.device_id, r.seq, r.ts_ms, r.ts_uncertainty_ms, c.ct,
                    CASE c.ct WHEN 2 THEN COALESCE(r.v2_cv, r.v1_cv)
                              WHEN 3 THEN COALESCE(r.v3_cv, r.v1_cv) ELSE r.v1_cv END,
                    c.i_rms_ma, c.real_power_dw, c.apparent_power_dva, c.power_factor_milli,
                    c.import_mwh, c.export_mwh
             FROM record r JOIN circuit c ON c.device_id = r.device_id AND c.seq = r.seq
             WHERE (?1 IS NULL OR r.device_id = ?1)
               AND (?2 IS NULL OR r.ts_ms >= ?2)
               AND (?3 IS NULL OR r.ts_ms < ?3)
             ORDER BY r.device_id, r.seq, c.ct",
        )?;
        let mut rows = st.query(params![filter.device, filter.from_ms, filter.to_ms])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            let row = ExportRow {
                device_id: r.get(0)?,
                seq: u64_of(r.get(1)?),
                ts_ms: r.get(2)?,
                ts_uncertainty_ms: r.get(3)?,
                channel: r.get(4)?,
                v_rms: r.get::<_, Option<i64>>(5)?.map(|v| v as f64 / 100.0),
                i_rms: r.get::<_, i64>(6)? as f64 / 1000.0,
                real_power_w: r.get::<_, i64>(7)? as f64 / 10.0,
                apparent_power_va: r.get::<_, i64>(8)? as f64 / 10.0,
                power_factor: r.get::<_, i64>(9)? as f64 / 1000.0,
                import_wh: r.get::<_, i64>(10)? as f64 / 1000.0,
                export_wh: r.get::<_, i64>(11)? as f64 / 1000.0,
            };
            f(row)?;
            n += 1;
        }
        Ok(n)
    }

    /// Number of records stored for a device (all devices with `None`).
    pub fn count(&self, id: Option<&str>) -> Result<u64, Error> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM record WHERE ?1 IS NULL OR device_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        Ok(u64_of(n))
    }
}
