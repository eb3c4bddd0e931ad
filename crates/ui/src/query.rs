//! Read-only queries over the collector's SQLite database, shaped for the
//! dashboard. Only `SELECT`s: every write goes through the `collector` crate.
//!
//! Units: the database keeps the device's integers (cV, mA, dW, mWh, mHz);
//! everything returned here is in V, A, W, Wh, Hz, with times in unix ms
//! (series times in unix seconds, as uPlot wants them).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::Error;

/// Records whose reconstructed time is less certain than this get a warning.
pub const UNCERTAIN_MS: i64 = 5 * 60 * 1000;
/// A device not collected for this long gets a warning.
pub const STALE_MS: i64 = 24 * 3600 * 1000;
/// Storage use above this fraction gets a warning.
pub const STORAGE_WARN: f64 = 0.8;

/// Opens the database for reading (the collector creates it; see
/// [`collector::Db::open`]). Writers hold the lock only briefly (WAL).
pub fn open(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// Flash use of a device, from its last `GET /info`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Storage {
    /// Bytes holding records.
    pub used_bytes: u64,
    /// Capacity of the store partition.
    pub total_bytes: u64,
    /// Records on the device.
    pub records: u64,
    /// `used / total`, 0..=1.
    pub fraction: f64,
}

/// The device clock, as of its last `GET /info`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Clock {
    /// `set` or `unset` (or `unknown` before the first collect).
    pub state: String,
    /// Its bound when set, ms.
    pub uncertainty_ms: Option<u64>,
}

/// One device on the fleet page.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FleetDevice {
    /// Device id (MAC, 12 hex digits).
    pub id: String,
    /// SSID of its access point.
    pub ssid: Option<String>,
    /// Last URL it was reached at.
    pub url: Option<String>,
    /// Whether it is paired.
    pub paired: bool,
    /// ThingsBoard device name.
    pub name: Option<String>,
    /// ThingsBoard device profile.
    pub profile: Option<String>,
    /// ThingsBoard server.
    pub tb_server: Option<String>,
    /// Firmware version, from the last `GET /info`.
    pub firmware: Option<String>,
    /// Channel layout (`single_phase`, `three_phase_virtual`, ...).
    pub layout: Option<String>,
    /// Number of CTs.
    pub cts: u8,
    /// Metering interval, seconds.
    pub interval_s: Option<u32>,
    /// Collector time of the last successful collect, unix ms.
    pub last_collect_ms: Option<i64>,
    /// Seconds since then.
    pub last_collect_age_s: Option<i64>,
    /// Records stored here.
    pub records: u64,
    /// Highest seq stored here.
    pub last_seq: u64,
    /// Highest seq the device confirmed as acknowledged.
    pub acked_seq: Option<u64>,
    /// Records not yet sent to any ThingsBoard destination.
    pub pending_sync: u64,
    /// Newest reconstructed record time, unix ms.
    pub newest_ms: Option<i64>,
    /// Oldest reconstructed record time, unix ms.
    pub oldest_ms: Option<i64>,
    /// Records whose time could not be bounded.
    pub untimed_records: u64,
    /// Largest time uncertainty among timed records, ms.
    pub max_uncertainty_ms: Option<i64>,
    /// Flash use on the device.
    pub storage: Option<Storage>,
    /// Device clock.
    pub clock: Clock,
    /// Things a person should look at, in plain words.
    pub warnings: Vec<String>,
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn info_fields(info: &serde_json::Value, d: &mut FleetDevice) {
    d.firmware = info.get("firmware").and_then(|f| match f {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    });
    if let Some(ch) = info.get("channels") {
        d.layout = ch
            .get("layout")
            .and_then(|l| l.as_str())
            .map(str::to_string);
        d.cts = ch
            .get("cts")
            .and_then(|c| c.as_u64())
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(0);
    }
    if let Some(s) = info.get("storage") {
        let used = s.get("used_bytes").and_then(|v| v.as_u64()).unwrap_or(0);
        let total = s.get("total_bytes").and_then(|v| v.as_u64()).unwrap_or(0);
        d.storage = Some(Storage {
            used_bytes: used,
            total_bytes: total,
            records: s.get("records").and_then(|v| v.as_u64()).unwrap_or(0),
            fraction: if total > 0 {
                used as f64 / total as f64
            } else {
                0.0
            },
        });
    }
    if let Some(c) = info.get("clock") {
        d.clock = Clock {
            state: c
                .get("state")
                .and_then(|s| s.as_str())
                .unwrap_or("unknown")
                .to_string(),
            uncertainty_ms: c.get("uncertainty_ms").and_then(|u| u.as_u64()),
        };
    }
}

/// Human duration: "42 s", "5 min", "3.2 h", "2.0 d".
pub fn human_ms(ms: i64) -> String {
    let s = ms.abs() as f64 / 1000.0;
    if s < 1.0 {
        format!("{} ms", ms.abs())
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// The warnings for a device, from what is known about it.
fn warnings(d: &FleetDevice, last_sync_error: Option<&str>, now_ms: i64) -> Vec<String> {
    let mut w = Vec::new();
    if !d.paired {
        w.push("not paired: the device records, but no collector can read its data".into());
    }
    if d.untimed_records > 0 {
        w.push(format!(
            "time uncertain: {} record(s) have no bounded time (no clock sync before them yet)",
            d.untimed_records
        ));
    }
    if let Some(u) = d.max_uncertainty_ms.filter(|u| *u > UNCERTAIN_MS) {
        w.push(format!(
            "time uncertain: some record times are only known to ±{}",
            human_ms(u)
        ));
    }
    if d.clock.state == "unset" {
        w.push("device clock not set at last visit: collect to set it".into());
    }
    if let Some(err) = last_sync_error {
        let lower = err.to_ascii_lowercase();
        if lower.contains("401") || lower.contains("revoked") || lower.contains("unauthor") {
            w.push(format!(
                "ThingsBoard refused the device token (revoked?): {err}; re-pair with a new token"
            ));
        } else {
            w.push(format!("last ThingsBoard sync failed: {err}"));
        }
    }
    match d.last_collect_ms {
        None if d.paired => w.push("never collected".into()),
        Some(t) if now_ms - t > STALE_MS => {
            w.push(format!("not collected for {}", human_ms(now_ms - t)))
        }
        _ => {}
    }
    if let Some(s) = d.storage.as_ref().filter(|s| s.fraction > STORAGE_WARN) {
        w.push(format!(
            "device storage {:.0} % full: older acknowledged records are being reclaimed",
            s.fraction * 100.0
        ));
    }
    if let Some(a) = d.acked_seq
        && a < d.last_seq
    {
        w.push(format!(
            "{} record(s) stored here but not yet acknowledged to the device",
            d.last_seq - a
        ));
    }
    w
}

/// Every known device with its state, for the fleet page (ordered by id).
pub fn fleet(conn: &Connection, now_ms: i64) -> Result<Vec<FleetDevice>, Error> {
    let mut st = conn.prepare(
        "SELECT d.id, d.ssid, d.url, d.paired, d.name, d.profile, d.tb_server, d.interval_s,
                d.info_json, d.last_seq, d.acked_seq, d.last_collect_ms,
                (SELECT COUNT(*) FROM record r WHERE r.device_id = d.id),
                (SELECT COUNT(*) FROM record r WHERE r.device_id = d.id AND r.ts_ms IS NULL),
                (SELECT MAX(ts_uncertainty_ms) FROM record r WHERE r.device_id = d.id),
                (SELECT MAX(ts_ms) FROM record r WHERE r.device_id = d.id),
                (SELECT MIN(ts_ms) FROM record r WHERE r.device_id = d.id)
         FROM device d ORDER BY d.id",
    )?;
    let rows = st.query_map([], |r| {
        let mut d = FleetDevice {
            id: r.get(0)?,
            ssid: r.get(1)?,
            url: r.get(2)?,
            paired: r.get(3)?,
            name: r.get(4)?,
            profile: r.get(5)?,
            tb_server: r.get(6)?,
            interval_s: r
                .get::<_, Option<i64>>(7)?
                .and_then(|v| u32::try_from(v).ok()),
            last_seq: u64_of(r.get(9)?),
            acked_seq: r.get::<_, Option<i64>>(10)?.map(u64_of),
            last_collect_ms: r.get(11)?,
            records: u64_of(r.get(12)?),
            untimed_records: u64_of(r.get(13)?),
            max_uncertainty_ms: r.get(14)?,
            newest_ms: r.get(15)?,
            oldest_ms: r.get(16)?,
            clock: Clock {
                state: "unknown".into(),
                uncertainty_ms: None,
            },
            ..FleetDevice::default()
        };
        if let Some(info) = r
            .get::<_, Option<String>>(8)?
            .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        {
            info_fields(&info, &mut d);
        }
        d.last_collect_age_s = d.last_collect_ms.map(|t| (now_ms - t).max(0) / 1000);
        Ok(d)
    })?;
    let mut out: Vec<FleetDevice> = rows.collect::<Result<_, _>>()?;
    let mut pending = conn.prepare(
        "SELECT COUNT(*) FROM record r WHERE r.device_id = ?1 AND NOT EXISTS
            (SELECT 1 FROM sync_state s WHERE s.device_id = r.device_id
             AND s.seq = r.seq AND s.state = 'sent')",
    )?;
    let mut sync_err = conn.prepare(
        "SELECT last_error FROM sync_state WHERE device_id = ?1 AND last_error IS NOT NULL
         ORDER BY updated_ms DESC LIMIT 1",
    )?;
    // The collector sets the clock at the end of each visit, after reading
    // `/info`: a sync of the boot `/info` saw means the clock is set now.
    let mut synced = conn.prepare(
        "SELECT t.uncertainty_ms FROM time_sync t, device d
         WHERE d.id = ?1 AND t.device_id = d.id
           AND t.boot_id = json_extract(d.info_json, '$.boot_id')
         ORDER BY t.at_ms DESC LIMIT 1",
    )?;
    for d in &mut out {
        if d.clock.state != "set"
            && let Some(u) = synced
                .query_row([&d.id], |r| r.get::<_, i64>(0))
                .optional()?
        {
            d.clock = Clock {
                state: "set".into(),
                uncertainty_ms: Some(u64_of(u)),
            };
        }
        d.pending_sync = u64_of(pending.query_row([&d.id], |r| r.get(0))?);
        let err: Option<String> = sync_err
            .query_row([&d.id], |r| r.get(0))
            .optional()?
            .flatten();
        d.warnings = warnings(d, err.as_deref(), now_ms);
    }
    Ok(out)
}

/// One device of the fleet, or [`Error::NotFound`].
pub fn device(conn: &Connection, id: &str, now_ms: i64) -> Result<FleetDevice, Error> {
    fleet(conn, now_ms)?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| Error::NotFound(format!("unknown device {id}")))
}

/// Time series of one device, down-sampled into buckets, aligned for uPlot.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Series {
    /// Bucket length, ms (≥ the metering interval).
    pub bucket_ms: i64,
    /// Range asked (after defaults), unix ms.
    pub from_ms: i64,
    /// End of the range, unix ms.
    pub to_ms: i64,
    /// Bucket start times, unix **seconds**; a `null` value in every series
    /// after a gap breaks the lines.
    pub t: Vec<f64>,
    /// Mean real power per CT, W (index = CT − 1).
    pub power_w: Vec<Vec<Option<f64>>>,
    /// Lowest interval minimum of real power per CT, W.
    pub power_min_w: Vec<Vec<Option<f64>>>,
    /// Highest interval maximum of real power per CT, W.
    pub power_max_w: Vec<Vec<Option<f64>>>,
    /// Mean RMS voltage per measured phase, V.
    pub voltage_v: Vec<Vec<Option<f64>>>,
    /// Mean frequency, Hz.
    pub frequency_hz: Vec<Option<f64>>,
    /// Records in the range.
    pub records: u64,
}

/// Time range of a device's timed records.
pub fn time_range(conn: &Connection, id: &str) -> Result<Option<(i64, i64)>, Error> {
    let r: (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT MIN(ts_ms), MAX(ts_ms) FROM record WHERE device_id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(match r {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    })
}

/// The series of `id` in `[from_ms, to_ms]` (defaults: the whole stored
/// range), with at most about `points` buckets.
pub fn series(
    conn: &Connection,
    id: &str,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    points: u32,
) -> Result<Series, Error> {
    let interval_ms: i64 = conn
        .query_row(
            "SELECT COALESCE(interval_s, 60) FROM device WHERE id = ?1",
            [id],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("unknown device {id}")))?
        .max(1)
        * 1000;
    let Some((lo, hi)) = time_range(conn, id)? else {
        return Ok(Series {
            bucket_ms: interval_ms,
            ..Series::default()
        });
    };
    let from = from_ms.unwrap_or(lo);
    let to = to_ms.unwrap_or(hi);
    if to < from {
        return Err(Error::BadRequest(format!(
            "empty range: to ({to}) is before from ({from})"
        )));
    }
    let points = i64::from(points.clamp(10, 20_000));
    let span = (to - from).max(1);
    // A whole number of intervals per bucket.
    let per = ((span / points) + interval_ms - 1) / interval_ms;
    let bucket = per.max(1) * interval_ms;

    #[derive(Default)]
    struct Row {
        p: [Option<f64>; 3],
        pmin: [Option<f64>; 3],
        pmax: [Option<f64>; 3],
        v: [Option<f64>; 3],
        f: Option<f64>,
    }
    let mut rows: BTreeMap<i64, Row> = BTreeMap::new();
    let mut records = 0u64;
    let mut st = conn.prepare_cached(
        "SELECT (ts_ms / ?2) * ?2 AS b, AVG(v1_cv), AVG(v2_cv), AVG(v3_cv), AVG(frequency_mhz), COUNT(*)
         FROM record WHERE device_id = ?1 AND ts_ms BETWEEN ?3 AND ?4 GROUP BY b ORDER BY b",
    )?;
    let mut q = st.query(params![id, bucket, from, to])?;
    let mut phases = 0usize;
    while let Some(r) = q.next()? {
        let b: i64 = r.get(0)?;
        let row = rows.entry(b).or_default();
        for k in 0..3 {
            row.v[k] = r.get::<_, Option<f64>>(1 + k)?.map(|cv| cv / 100.0);
            if row.v[k].is_some() {
                phases = phases.max(k + 1);
            }
        }
        row.f = r.get::<_, Option<f64>>(4)?.map(|m| m / 1000.0);
        records += u64_of(r.get(5)?);
    }
    let mut st = conn.prepare_cached(
        "SELECT (r.ts_ms / ?2) * ?2 AS b, c.ct, AVG(c.real_power_dw), MIN(c.real_power_min_dw),
                MAX(c.real_power_max_dw)
         FROM record r JOIN circuit c ON c.device_id = r.device_id AND c.seq = r.seq
         WHERE r.device_id = ?1 AND r.ts_ms BETWEEN ?3 AND ?4 GROUP BY b, c.ct ORDER BY b",
    )?;
    let mut q = st.query(params![id, bucket, from, to])?;
    let mut cts = 0usize;
    while let Some(r) = q.next()? {
        let b: i64 = r.get(0)?;
        let ct: i64 = r.get(1)?;
        let Some(k) = usize::try_from(ct - 1).ok().filter(|k| *k < 3) else {
            continue;
        };
        cts = cts.max(k + 1);
        let row = rows.entry(b).or_default();
        row.p[k] = r.get::<_, Option<f64>>(2)?.map(|dw| dw / 10.0);
        row.pmin[k] = r.get::<_, Option<f64>>(3)?.map(|dw| dw / 10.0);
        row.pmax[k] = r.get::<_, Option<f64>>(4)?.map(|dw| dw / 10.0);
    }
    let mut s = Series {
        bucket_ms: bucket,
        from_ms: from,
        to_ms: to,
        power_w: vec![Vec::new(); cts],
        power_min_w: vec![Vec::new(); cts],
        power_max_w: vec![Vec::new(); cts],
        voltage_v: vec![Vec::new(); phases],
        records,
        ..Series::default()
    };
    let mut prev: Option<i64> = None;
    let push = |s: &mut Series, b: i64, row: Option<&Row>| {
        s.t.push(b as f64 / 1000.0);
        for k in 0..cts {
            s.power_w[k].push(row.and_then(|r| r.p[k]));
            s.power_min_w[k].push(row.and_then(|r| r.pmin[k]));
            s.power_max_w[k].push(row.and_then(|r| r.pmax[k]));
        }
        for k in 0..phases {
            s.voltage_v[k].push(row.and_then(|r| r.v[k]));
        }
        s.frequency_hz.push(row.and_then(|r| r.f));
    };
    for (b, row) in &rows {
        if let Some(p) = prev
            && b - p > 2 * bucket
        {
            // A gap (power cut, lost records): break the line.
            push(&mut s, p + bucket, None);
        }
        push(&mut s, *b, Some(row));
        prev = Some(*b);
    }
    Ok(s)
}

/// Energy of one day.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DayEnergy {
    /// Start of the day, unix seconds (in the asked time zone).
    pub day_start_s: i64,
    /// The day as `YYYY-MM-DD`.
    pub date: String,
    /// Energy imported from the grid, Wh (all CTs).
    pub import_wh: f64,
    /// Energy exported to the grid, Wh (all CTs).
    pub export_wh: f64,
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (proleptic Gregorian).
pub fn civil_date(days: i64) -> String {
    // Howard Hinnant's days_from_civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// Daily energy of one device: the growth of the cumulative import/export
/// counters between consecutive records, summed over CTs and attributed to
/// the later record's day. `tz_offset_min` is minutes east of UTC.
pub fn daily_energy(
    conn: &Connection,
    id: &str,
    tz_offset_min: i32,
) -> Result<Vec<DayEnergy>, Error> {
    let off_ms = i64::from(tz_offset_min) * 60_000;
    let mut st = conn.prepare_cached(
        "SELECT c.ct, r.ts_ms, c.import_mwh, c.export_mwh
         FROM record r JOIN circuit c ON c.device_id = r.device_id AND c.seq = r.seq
         WHERE r.device_id = ?1 ORDER BY c.ct, r.seq",
    )?;
    let mut q = st.query([id])?;
    let mut days: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut prev: Option<(i64, i64, i64)> = None; // ct, import, export
    while let Some(r) = q.next()? {
        let ct: i64 = r.get(0)?;
        let ts: Option<i64> = r.get(1)?;
        let imp: i64 = r.get(2)?;
        let exp: i64 = r.get(3)?;
        if let (Some((pct, pi, pe)), Some(ts)) = (prev, ts)
            && pct == ct
        {
            let day = (ts + off_ms).div_euclid(86_400_000);
            let e = days.entry(day).or_default();
            // Counters only grow; a drop (factory reset) contributes nothing.
            e.0 += (imp - pi).max(0);
            e.1 += (exp - pe).max(0);
        }
        prev = Some((ct, imp, exp));
    }
    Ok(days
        .into_iter()
        .map(|(day, (i, e))| DayEnergy {
            day_start_s: (day * 86_400_000 - off_ms) / 1000,
            date: civil_date(day),
            import_wh: i as f64 / 1000.0,
            export_wh: e as f64 / 1000.0,
        })
        .collect())
}

/// One entry of the events timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineEvent {
    /// `boot`, `power_loss`, `time_sync`, `fault`, `ota`, `config`,
    /// `paired`, or `clock_set` (made by this collector).
    pub kind: String,
    /// When, unix ms, if known.
    pub ts_ms: Option<i64>,
    /// How `ts_ms` is known: `device` (its clock was set), `estimated`
    /// (from the nearest timed record of the same boot), `collector`, or
    /// `unknown`.
    pub time_source: String,
    /// Boot it happened in.
    pub boot_id: i64,
    /// Device seq of the event (`None` for collector entries).
    pub seq: Option<u64>,
    /// One line for people.
    pub summary: String,
    /// The event as the device sent it.
    pub detail: serde_json::Value,
}

fn summarize(kind: &str, v: &serde_json::Value) -> String {
    let k = v.get("kind").unwrap_or(v);
    let g = |f: &str| k.get(f).cloned().unwrap_or(serde_json::Value::Null);
    match kind {
        "boot" => format!(
            "boot ({})",
            g("reason").as_str().unwrap_or("unknown reason")
        ),
        "power_loss" => match g("last_uptime_ms").as_u64() {
            Some(u) => format!(
                "power loss after {} of uptime",
                human_ms(i64::try_from(u).unwrap_or(i64::MAX))
            ),
            None => "power loss".into(),
        },
        "time_sync" => match g("uncertainty_ms").as_u64() {
            Some(u) => format!("clock set, ±{u} ms"),
            None => "clock set".into(),
        },
        "fault" => format!(
            "fault {}{}",
            g("code"),
            g("detail")
                .as_str()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ),
        "ota" => format!("firmware update: {}", g("outcome")),
        "config" => "configuration changed".into(),
        "paired" => "paired".into(),
        other => other.replace('_', " "),
    }
}

/// The events timeline of a device, newest first (at most `limit`).
pub fn events(conn: &Connection, id: &str, limit: u32) -> Result<Vec<TimelineEvent>, Error> {
    let mut out = Vec::new();
    let mut st = conn.prepare_cached(
        "SELECT e.seq, e.boot_id, e.uptime_ms, e.wall_ms, e.kind, e.json
         FROM event e WHERE e.device_id = ?1 ORDER BY e.seq DESC LIMIT ?2",
    )?;
    // The nearest timed record of the same boot dates an event without a wall time.
    let mut near = conn.prepare_cached(
        "SELECT ts_ms + (?3 - uptime_ms) FROM record
         WHERE device_id = ?1 AND boot_id = ?2 AND ts_ms IS NOT NULL
         ORDER BY ABS(uptime_ms - ?3) LIMIT 1",
    )?;
    let mut q = st.query(params![id, limit])?;
    while let Some(r) = q.next()? {
        let kind: String = r.get(4)?;
        let json: String = r.get(5)?;
        let detail = serde_json::from_str(&json).unwrap_or(serde_json::Value::Null);
        let wall: Option<i64> = r.get(3)?;
        let boot_id: i64 = r.get(1)?;
        let uptime: i64 = r.get(2)?;
        let est: Option<i64> = if wall.is_none() {
            near.query_row(params![id, boot_id, uptime], |r| r.get(0))
                .optional()?
        } else {
            None
        };
        let (ts_ms, src) = match (wall, est) {
            (Some(w), _) => (Some(w), "device"),
            (None, Some(e)) => (Some(e), "estimated"),
            (None, None) => (None, "unknown"),
        };
        out.push(TimelineEvent {
            summary: summarize(&kind, &detail),
            kind,
            ts_ms,
            time_source: src.into(),
            boot_id,
            seq: Some(u64_of(r.get(0)?)),
            detail,
        });
    }
    let mut st = conn.prepare_cached(
        "SELECT boot_id, at_ms, uncertainty_ms, rtt_ms FROM time_sync WHERE device_id = ?1
         ORDER BY at_ms DESC LIMIT ?2",
    )?;
    let mut q = st.query(params![id, limit])?;
    while let Some(r) = q.next()? {
        let unc: i64 = r.get(2)?;
        let rtt: i64 = r.get(3)?;
        out.push(TimelineEvent {
            kind: "clock_set".into(),
            ts_ms: r.get(1)?,
            time_source: "collector".into(),
            boot_id: r.get(0)?,
            seq: None,
            summary: format!("collector set the clock: ±{unc} ms (round trip {rtt} ms)"),
            detail: serde_json::json!({ "uncertainty_ms": unc, "rtt_ms": rtt }),
        });
    }
    // Newest first; untimed events last, in seq order.
    out.sort_by(|a, b| b.ts_ms.cmp(&a.ts_ms).then(b.seq.cmp(&a.seq)));
    out.truncate(limit as usize);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(-1), "1969-12-31");
        assert_eq!(civil_date(19_782), "2024-02-29");
        assert_eq!(civil_date(20_454), "2026-01-01");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_ms(500), "500 ms");
        assert_eq!(human_ms(42_000), "42 s");
        assert_eq!(human_ms(300_000), "5 min");
        assert_eq!(human_ms(3 * 86_400_000), "3.0 d");
    }
}
