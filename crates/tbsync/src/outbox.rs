//! The sync outbox over the collector's SQLite database.
//!
//! Uses the collector's schema (`crates/collector/src/db.rs`, version 1):
//! `device` (token, name, tb_server), `record` + `circuit` (the data),
//! `destination` (one row per (kind, url)) and `sync_state` (one row per
//! (destination, device, seq) once the sync touched a record; `state` ∈
//! `pending`, `sent`, `rejected`). A record without a `sent`/`rejected` row
//! for a destination is still to be sent there. The two outbox tables are
//! also created here (`CREATE TABLE IF NOT EXISTS`, same definition) so the
//! sync works on a database the collector created before they existed.
//!
//! Invariant: a record is marked `sent` only in a transaction committed
//! *after* the server accepted it (HTTP 200 or MQTT PUBACK); a crash before
//! the commit means a resend, which ThingsBoard's upsert by (key, ts) makes
//! harmless. Records whose time could not be bounded (`ts_ms IS NULL`) are
//! never sent; they wait for time reconstruction.
//!
//! Timestamps that change after a sync: the collector's time reconstruction
//! may refine a record's `ts_ms` after it was sent. `sync_state.sent_ts_ms`
//! holds the ts the server accepted (added here by `ALTER TABLE` on
//! databases that predate it, filled from the records' current ts); a `sent`
//! record counts as sent only while its current `ts_ms` equals that value,
//! otherwise it is pending again and is re-sent at its new ts.
//! [`mark_sent`] returns those moved records with their old ts: the server
//! keeps the old point too (it upserts by (key, ts), it never moves a point),
//! so the sync reports them, and [`mark_sent`] queues each old point in
//! `sync_stale (destination_id, device_id, ts_ms, added_ms)` (created here)
//! in the same transaction. [`crate::stale`] deletes the queued points
//! through the REST API when a login is saved ([`stale_points`],
//! [`remove_stale`]). A ts that is sent again (another record moved onto
//! it) leaves the queue: that point is live again.

use std::fmt::Write;

use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::telemetry::{Circuit, Reading};

use collector::db::OUTBOX_SCHEMA;

/// `destination.kind` of ThingsBoard servers.
pub const DESTINATION_KIND: &str = "thingsboard";

/// A device as the sync sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDevice {
    /// Collector device id (MAC).
    pub id: String,
    /// ThingsBoard device name, if paired with one.
    pub name: Option<String>,
    /// SSID of the meter's access point.
    pub ssid: Option<String>,
    /// ThingsBoard access token.
    pub token: Option<String>,
    /// ThingsBoard server the device was paired with.
    pub server: Option<String>,
}

impl SyncDevice {
    /// The name to show and to use on the gateway API: the ThingsBoard name,
    /// else the SSID, else the id.
    pub fn display_name(&self) -> &str {
        self.name
            .as_deref()
            .or(self.ssid.as_deref())
            .unwrap_or(&self.id)
    }
}

/// Counts of a device's records for one destination (a record sent at a ts
/// that has changed since counts as pending).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Records with a time and not yet sent (nor rejected).
    pub pending: u64,
    /// Records whose time could not be bounded (never sent until it can).
    pub untimed: u64,
    /// Records marked sent.
    pub sent: u64,
    /// Records the server refused for good (a single record over the body limit).
    pub rejected: u64,
}

/// Normalizes a server URL into a destination key (no trailing slash).
pub fn normalize_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// Opens a connection to the collector database with the collector's
/// durability settings (WAL, `synchronous=FULL`) and the outbox tables.
pub fn open(path: &std::path::Path) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    prepare(&conn)?;
    Ok(conn)
}

/// Applies the durability settings and creates the outbox tables if needed.
pub fn prepare(conn: &Connection) -> Result<(), Error> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    prepare_tables(conn)
}

/// Creates the outbox tables if needed (same definition as the collector's)
/// and adds `sync_state.sent_ts_ms` to databases that lack it.
pub fn prepare_tables(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(OUTBOX_SCHEMA)?;
    conn.execute_batch(STALE_SCHEMA)?;
    if has_sent_ts(conn)? {
        return Ok(());
    }
    // Under the write lock, so two processes cannot both add the column.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    if !has_sent_ts(&tx)? {
        // Rows sent before the column existed: assume the current ts was sent.
        tx.execute_batch(
            "ALTER TABLE sync_state ADD COLUMN sent_ts_ms INTEGER;
             UPDATE sync_state SET sent_ts_ms = (SELECT r.ts_ms FROM record r
                 WHERE r.device_id = sync_state.device_id AND r.seq = sync_state.seq)
             WHERE state = 'sent';",
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Old points of moved records still on a server: `(destination, device,
/// ts)` of a point to delete there.
const STALE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS sync_stale (
    destination_id INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    added_ms INTEGER NOT NULL,
    PRIMARY KEY (destination_id, device_id, ts_ms)
) WITHOUT ROWID;";

fn has_sent_ts(conn: &Connection) -> Result<bool, Error> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('sync_state') WHERE name = 'sent_ts_ms'",
        [],
        |r| r.get::<_, i64>(0),
    )? > 0)
}

/// The destination id of a server, created if new.
pub fn destination_id(conn: &Connection, url: &str) -> Result<i64, Error> {
    let url = normalize_url(url);
    conn.execute(
        "INSERT OR IGNORE INTO destination (kind, url) VALUES (?1, ?2)",
        params![DESTINATION_KIND, url],
    )?;
    Ok(conn.query_row(
        "SELECT id FROM destination WHERE kind = ?1 AND url = ?2",
        params![DESTINATION_KIND, url],
        |r| r.get(0),
    )?)
}

/// All devices, in id order.
pub fn devices(conn: &Connection) -> Result<Vec<SyncDevice>, Error> {
    let mut st = conn.prepare("SELECT id, name, ssid, token, tb_server FROM device ORDER BY id")?;
    let rows = st.query_map([], |r| {
        Ok(SyncDevice {
            id: r.get(0)?,
            name: r.get(1)?,
            ssid: r.get(2)?,
            token: r.get(3)?,
            server: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Counts of a device's records for destination `dest`.
pub fn counts(conn: &Connection, dest: i64, device: &str) -> Result<Counts, Error> {
    let (total, untimed): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COUNT(*) - COUNT(ts_ms) FROM record WHERE device_id = ?1",
        [device],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut st = conn.prepare_cached(
        "SELECT s.state, COUNT(*) FROM sync_state s JOIN record r
           ON r.device_id = s.device_id AND r.seq = s.seq
         WHERE s.destination_id = ?1 AND s.device_id = ?2 AND r.ts_ms IS NOT NULL
           AND (s.state = 'rejected' OR (s.state = 'sent' AND s.sent_ts_ms = r.ts_ms))
         GROUP BY s.state",
    )?;
    let mut c = Counts {
        untimed: untimed as u64,
        ..Counts::default()
    };
    let rows = st.query_map(params![dest, device], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (state, n) = row?;
        if state == "sent" {
            c.sent = n as u64;
        } else {
            c.rejected = n as u64;
        }
    }
    c.pending = (total as u64).saturating_sub(c.untimed + c.sent + c.rejected);
    Ok(c)
}

/// Up to `limit` unsent records of `device` with seq > `after`, in seq
/// order: never sent, or sent at a ts that has changed since.
pub fn unsent(
    conn: &Connection,
    dest: i64,
    device: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Reading>, Error> {
    let mut st = conn.prepare_cached(
        "SELECT r.seq, r.ts_ms, COALESCE(r.ts_uncertainty_ms, 0), r.frequency_mhz,
                r.v1_cv, r.v2_cv, r.v3_cv
         FROM record r
         WHERE r.device_id = ?1 AND r.seq > ?2 AND r.ts_ms IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM sync_state s WHERE s.destination_id = ?3
                AND s.device_id = ?1 AND s.seq = r.seq
                AND (s.state = 'rejected' OR (s.state = 'sent' AND s.sent_ts_ms = r.ts_ms)))
         ORDER BY r.seq LIMIT ?4",
    )?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut out: Vec<Reading> = st
        .query_map(params![device, after, dest, limit], |r| {
            Ok(Reading {
                seq: r.get::<_, i64>(0)?.max(0) as u64,
                ts_ms: r.get(1)?,
                ts_uncertainty_ms: r.get(2)?,
                frequency_mhz: r.get(3)?,
                v_cv: [r.get(4)?, r.get(5)?, r.get(6)?],
                circuits: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let (Some(first), Some(last)) = (out.first().map(|r| r.seq), out.last().map(|r| r.seq)) else {
        return Ok(out);
    };
    let mut st = conn.prepare_cached(
        "SELECT seq, ct, i_rms_ma, real_power_dw, apparent_power_dva, power_factor_milli,
                import_mwh, export_mwh
         FROM circuit WHERE device_id = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq, ct",
    )?;
    let mut rows = st.query(params![device, first as i64, last as i64])?;
    let mut i = 0;
    while let Some(r) = rows.next()? {
        let seq = r.get::<_, i64>(0)?.max(0) as u64;
        while i < out.len() && out[i].seq < seq {
            i += 1;
        }
        if i == out.len() {
            break;
        }
        if out[i].seq != seq {
            continue;
        }
        out[i].circuits.push(Circuit {
            ct: r.get::<_, i64>(1)?.clamp(0, 255) as u8,
            i_rms_ma: r.get(2)?,
            real_power_dw: r.get(3)?,
            apparent_power_dva: r.get(4)?,
            power_factor_milli: r.get(5)?,
            import_mwh: r.get(6)?,
            export_mwh: r.get(7)?,
        });
    }
    Ok(out)
}

/// Marks records as `sent` (or `rejected`/`pending` with a reason) in one
/// committed transaction. Call `Sent` only after the server accepted them;
/// it records the records' *current* ts as the one sent, so the sync itself
/// uses [`mark_sent`] with the ts it actually sent. `Pending`/`Rejected`
/// keep the ts of the point the server already holds, if any.
pub fn mark(
    conn: &Connection,
    dest: i64,
    device: &str,
    seqs: impl IntoIterator<Item = u64>,
    state: State<'_>,
    now_ms: i64,
) -> Result<(), Error> {
    let tx = conn.unchecked_transaction()?;
    {
        let (name, err) = match state {
            State::Sent => ("sent", None),
            State::Rejected(e) => ("rejected", Some(e)),
            State::Pending(e) => ("pending", Some(e)),
        };
        // One statement per run of consecutive seqs (a batch is usually one
        // run), not one per record.
        let mut st = tx.prepare_cached(
            "WITH RECURSIVE s(seq) AS (SELECT ?3 UNION ALL SELECT seq + 1 FROM s WHERE seq < ?4)
             INSERT INTO sync_state (destination_id, device_id, seq, state, attempts, last_error,
                                     updated_ms, sent_ts_ms)
             SELECT ?1, ?2, seq, ?5, 1, ?6, ?7, CASE WHEN ?5 = 'sent' THEN
                 (SELECT ts_ms FROM record r WHERE r.device_id = ?2 AND r.seq = s.seq) END
             FROM s WHERE true
             ON CONFLICT (destination_id, device_id, seq) DO UPDATE SET
                state = excluded.state, attempts = attempts + 1,
                last_error = excluded.last_error, updated_ms = excluded.updated_ms,
                sent_ts_ms = CASE WHEN excluded.state = 'sent' THEN excluded.sent_ts_ms
                                  ELSE sync_state.sent_ts_ms END",
        )?;
        let mut run: Option<(i64, i64)> = None;
        let mut flush = |r: (i64, i64)| {
            st.execute(params![dest, device, r.0, r.1, name, err, now_ms])
                .map(drop)
        };
        for seq in seqs {
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            run = match run {
                Some((a, b)) if b.checked_add(1) == Some(seq) => Some((a, seq)),
                Some(r) => {
                    flush(r)?;
                    Some((seq, seq))
                }
                None => Some((seq, seq)),
            };
        }
        if let Some(r) = run {
            flush(r)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// A record re-sent at a new ts: the server also still holds its point at
/// the old ts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    /// Record seq.
    pub seq: u64,
    /// The ts of the point sent earlier.
    pub old_ts_ms: i64,
    /// The ts just sent.
    pub new_ts_ms: i64,
}

/// Marks records `sent` at the ts that was sent, `(seq, ts_ms)` in seq
/// order, in one committed transaction; call only after the server accepted
/// them. Returns the records that had been sent before at another ts and
/// queues their old points in `sync_stale` (same transaction); a ts sent now
/// leaves that queue.
pub fn mark_sent(
    conn: &Connection,
    dest: i64,
    device: &str,
    sent: &[(u64, i64)],
    now_ms: i64,
) -> Result<Vec<Moved>, Error> {
    let mut moved = Vec::new();
    let (Some(first), Some(last)) = (sent.first(), sent.last()) else {
        return Ok(moved);
    };
    let seq_i64 = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    let tx = conn.unchecked_transaction()?;
    {
        let mut old = tx.prepare_cached(
            "SELECT seq, sent_ts_ms FROM sync_state WHERE destination_id = ?1 AND device_id = ?2
             AND seq BETWEEN ?3 AND ?4 AND sent_ts_ms IS NOT NULL",
        )?;
        let mut rows = old.query(params![dest, device, seq_i64(first.0), seq_i64(last.0)])?;
        while let Some(r) = rows.next()? {
            let seq = r.get::<_, i64>(0)?.max(0) as u64;
            let old_ts: i64 = r.get(1)?;
            if let Ok(i) = sent.binary_search_by_key(&seq, |p| p.0)
                && sent[i].1 != old_ts
            {
                moved.push(Moved {
                    seq,
                    old_ts_ms: old_ts,
                    new_ts_ms: sent[i].1,
                });
            }
        }
        // One statement per run of consecutive seqs (a batch is usually one
        // run), the ts as a JSON array, not one statement per record.
        let mut st = tx.prepare_cached(
            "INSERT INTO sync_state (destination_id, device_id, seq, state, attempts, last_error,
                                     updated_ms, sent_ts_ms)
             SELECT ?1, ?2, ?3 + j.key, 'sent', 1, NULL, ?4, j.value FROM json_each(?5) j WHERE true
             ON CONFLICT (destination_id, device_id, seq) DO UPDATE SET
                state = 'sent', attempts = attempts + 1, last_error = NULL,
                updated_ms = excluded.updated_ms, sent_ts_ms = excluded.sent_ts_ms",
        )?;
        let mut i = 0;
        let mut ts = String::with_capacity(16 * sent.len().min(4096) + 2);
        while i < sent.len() {
            let start = sent[i].0;
            ts.clear();
            ts.push('[');
            let mut j = i;
            while j < sent.len() && start.checked_add((j - i) as u64) == Some(sent[j].0) {
                if j > i {
                    ts.push(',');
                }
                let _ = write!(ts, "{}", sent[j].1);
                j += 1;
            }
            ts.push(']');
            st.execute(params![dest, device, seq_i64(start), now_ms, ts])?;
            i = j;
        }
        // The points just sent are live: none of them is stale any more
        // (a record moved back, or another record moved onto that ts).
        let any_stale: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sync_stale WHERE destination_id = ?1
                 AND device_id = ?2)",
            )?
            .query_row(params![dest, device], |r| r.get(0))?;
        if any_stale {
            let mut live = tx.prepare_cached(
                "DELETE FROM sync_stale WHERE destination_id = ?1 AND device_id = ?2
                 AND ts_ms = ?3",
            )?;
            for s in sent {
                live.execute(params![dest, device, s.1])?;
            }
        }
        let mut queue = tx.prepare_cached(
            "INSERT OR IGNORE INTO sync_stale (destination_id, device_id, ts_ms, added_ms)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for m in &moved {
            // Unless another record was just sent at that very ts.
            if sent.iter().all(|s| s.1 != m.old_ts_ms) {
                queue.execute(params![dest, device, m.old_ts_ms, now_ms])?;
            }
        }
    }
    tx.commit()?;
    Ok(moved)
}

/// What [`mark`] writes.
#[derive(Clone, Copy, Debug)]
pub enum State<'a> {
    /// Accepted by the server.
    Sent,
    /// Refused for good (will not be retried), with the reason.
    Rejected(&'a str),
    /// Still to send; the last attempt failed for this reason.
    Pending(&'a str),
}

/// Seqs of `device` marked sent to `dest` (tests and audits).
pub fn sent_seqs(conn: &Connection, dest: i64, device: &str) -> Result<Vec<u64>, Error> {
    let mut st = conn.prepare(
        "SELECT seq FROM sync_state WHERE destination_id = ?1 AND device_id = ?2
         AND state = 'sent' ORDER BY seq",
    )?;
    let v = st
        .query_map(params![dest, device], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(|s| s.max(0) as u64))
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// Old points waiting for deletion: `(destination, destination URL, device,
/// ts)`, in that order.
pub fn stale_points(conn: &Connection) -> Result<Vec<(i64, String, String, i64)>, Error> {
    let mut st = conn.prepare(
        "SELECT s.destination_id, d.url, s.device_id, s.ts_ms FROM sync_stale s
         JOIN destination d ON d.id = s.destination_id
         ORDER BY s.destination_id, s.device_id, s.ts_ms",
    )?;
    let v = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// Removes old points from the queue once the server deleted them.
pub fn remove_stale(conn: &Connection, dest: i64, device: &str, ts: &[i64]) -> Result<(), Error> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut st = tx.prepare_cached(
            "DELETE FROM sync_stale WHERE destination_id = ?1 AND device_id = ?2 AND ts_ms = ?3",
        )?;
        for t in ts {
            st.execute(params![dest, device, t])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The destination id of a server if it exists (no write).
pub fn find_destination(conn: &Connection, url: &str) -> Result<Option<i64>, Error> {
    Ok(conn
        .query_row(
            "SELECT id FROM destination WHERE kind = ?1 AND url = ?2",
            params![DESTINATION_KIND, normalize_url(url)],
            |r| r.get(0),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_runs_of_seqs() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE record (device_id TEXT, seq INTEGER, ts_ms INTEGER)")
            .unwrap();
        prepare_tables(&conn).unwrap();
        assert_eq!(destination_id(&conn, "http://tb/").unwrap(), 1);
        let seqs = [1, 2, 3, 7, 9, 10, u64::MAX];
        mark(&conn, 1, "D", seqs, State::Pending("x"), 5).unwrap();
        mark(&conn, 1, "D", [2, 3, 9], State::Sent, 6).unwrap();
        mark(&conn, 1, "E", [2], State::Sent, 6).unwrap();
        assert_eq!(sent_seqs(&conn, 1, "D").unwrap(), vec![2, 3, 9]);
        let rows: Vec<(i64, String, i64, Option<String>, i64)> = conn
            .prepare(
                "SELECT seq, state, attempts, last_error, updated_ms FROM sync_state
                 WHERE device_id = 'D' ORDER BY seq",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let pending = |s| (s, "pending".to_string(), 1, Some("x".to_string()), 5);
        let sent = |s| (s, "sent".to_string(), 2, None, 6);
        assert_eq!(
            rows,
            vec![
                pending(1),
                sent(2),
                sent(3),
                pending(7),
                sent(9),
                pending(10),
                pending(i64::MAX)
            ]
        );
    }

    #[test]
    fn sent_ts_is_kept_and_moves_are_reported() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE record (device_id TEXT, seq INTEGER, ts_ms INTEGER);
             INSERT INTO record VALUES ('D', 1, 100), ('D', 2, 200), ('D', 3, 300);",
        )
        .unwrap();
        // A database from before the column: a row already sent.
        conn.execute_batch(&OUTBOX_SCHEMA.replace("IF NOT EXISTS", ""))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO destination (id, kind, url) VALUES (1, 'thingsboard', 'http://tb');
             INSERT INTO sync_state VALUES (1, 'D', 1, 'sent', 1, NULL, 0);",
        )
        .unwrap();
        prepare_tables(&conn).unwrap();
        prepare_tables(&conn).unwrap();
        let sent_ts = |seq: i64| -> Option<i64> {
            conn.query_row(
                "SELECT sent_ts_ms FROM sync_state WHERE device_id = 'D' AND seq = ?1",
                [seq],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(sent_ts(1), Some(100), "migrated from the record's ts");
        assert!(
            mark_sent(&conn, 1, "D", &[(2, 200), (3, 300)], 1)
                .unwrap()
                .is_empty()
        );
        // ts 2 changes; a failed resend keeps what the server holds.
        mark(&conn, 1, "D", [2], State::Pending("500"), 2).unwrap();
        assert_eq!(sent_ts(2), Some(200));
        let moved = mark_sent(&conn, 1, "D", &[(1, 100), (2, 250), (3, 300)], 3).unwrap();
        assert_eq!(
            moved,
            vec![Moved {
                seq: 2,
                old_ts_ms: 200,
                new_ts_ms: 250
            }]
        );
        assert_eq!(
            (sent_ts(1), sent_ts(2), sent_ts(3)),
            (Some(100), Some(250), Some(300))
        );
        let stale = stale_points(&conn).unwrap();
        assert_eq!(
            stale,
            vec![(1, "http://tb".to_string(), "D".to_string(), 200)]
        );
        // Record 3 moves onto the old ts of 2: that point is live again, and
        // 3's old point is queued instead.
        let moved = mark_sent(&conn, 1, "D", &[(3, 200)], 4).unwrap();
        assert_eq!(moved.len(), 1);
        let ts: Vec<i64> = stale_points(&conn).unwrap().iter().map(|p| p.3).collect();
        assert_eq!(ts, vec![300]);
        remove_stale(&conn, 1, "D", &[300]).unwrap();
        assert!(stale_points(&conn).unwrap().is_empty());
    }
}
