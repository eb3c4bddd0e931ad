//! Deleting the old points of records whose ts changed after they were sent.
//!
//! ThingsBoard upserts by (key, ts) and cannot move a point, so when time
//! reconstruction refines a record's ts after a sync, the re-sent record
//! leaves its earlier point behind. [`crate::outbox::mark_sent`] queues each
//! such point in `sync_stale`; [`delete_blocking`] logs in to the REST API
//! (tenant user, usually a saved refresh token) and deletes them one by one
//! (`DELETE …/timeseries/delete`, every key a point can carry, `endTs` = ts +
//! 1 because the end is exclusive), removing each from the queue once the
//! server confirmed it. What is not deleted (no login, server offline,
//! budget spent) stays queued for the next run.

use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::Error;
use crate::outbox;
use crate::rest::{Credentials, RestClient};

/// The queued old points of one device on one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleGroup {
    /// Destination id (`destination` table).
    pub dest: i64,
    /// Collector device id.
    pub device: String,
    /// The device's id on the server (UUID).
    pub tb_id: String,
    /// The old points' ts, unix ms.
    pub ts: Vec<i64>,
}

/// What [`delete_blocking`] did.
#[derive(Clone, Debug, Default)]
pub struct Deleted {
    /// Points deleted on the server and removed from the queue.
    pub deleted: u64,
    /// Points left queued (budget spent or an error; see `error`).
    pub remaining: u64,
    /// The first error, if any (the rest of that server's points stay).
    pub error: Option<String>,
    /// The refresh token of the new session (save it).
    pub refresh_token: Option<String>,
}

/// Groups the queued points by (destination, device), with their
/// destination URL: `(url, group without tb_id)`.
pub fn queued(conn: &Connection) -> Result<Vec<(String, StaleGroup)>, Error> {
    let mut out: Vec<(String, StaleGroup)> = Vec::new();
    for (dest, url, device, ts) in outbox::stale_points(conn)? {
        match out.last_mut() {
            Some((_, g)) if g.dest == dest && g.device == device => g.ts.push(ts),
            _ => out.push((
                url,
                StaleGroup {
                    dest,
                    device,
                    tb_id: String::new(),
                    ts: vec![ts],
                },
            )),
        }
    }
    Ok(out)
}

/// Logs in to `base` and deletes the points of `groups` there, each
/// request within `timeout`, all within `budget` (the rest stay queued).
/// A failed login or an unreachable server is an `Err` (nothing deleted);
/// a failed delete stops there and is reported in [`Deleted::error`].
pub fn delete_blocking(
    conn: &Connection,
    base: &str,
    creds: Credentials<'_>,
    groups: &[StaleGroup],
    timeout: Duration,
    budget: Duration,
    ca_pem: Option<&[u8]>,
) -> Result<Deleted, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t0 = Instant::now();
    let keys = crate::telemetry::all_keys();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    rt.block_on(async {
        let login =
            tokio::time::timeout(timeout, RestClient::connect(base, creds, timeout, ca_pem))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Unreachable(format!(
                        "{base} did not answer within {} s",
                        timeout.as_secs_f32()
                    )))
                });
        let c = login?;
        let mut out = Deleted {
            refresh_token: c.refresh_token().map(str::to_string),
            ..Deleted::default()
        };
        let total: u64 = groups.iter().map(|g| g.ts.len() as u64).sum();
        'groups: for g in groups {
            let mut done = Vec::new();
            for &ts in &g.ts {
                if out.error.is_some() || t0.elapsed() >= budget {
                    outbox::remove_stale(conn, g.dest, &g.device, &done)?;
                    out.deleted += done.len() as u64;
                    break 'groups;
                }
                let r = c
                    .delete_timeseries(&g.tb_id, &keys, ts, ts.saturating_add(1))
                    .await;
                match r {
                    Ok(()) => done.push(ts),
                    Err(e) => out.error = Some(e.to_string()),
                }
            }
            outbox::remove_stale(conn, g.dest, &g.device, &done)?;
            out.deleted += done.len() as u64;
            if out.error.is_some() {
                break;
            }
        }
        out.remaining = total - out.deleted;
        Ok(out)
    })
}
