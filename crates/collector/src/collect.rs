//! Incremental, idempotent, crash-safe collection of one device.
//!
//! The sequence for one device, and why a `kill -9` anywhere is harmless:
//!
//! 1. `GET /info` (measures a round trip; learns id, seq range, pairing).
//! 2. Loop: `GET /records?after=CURSOR&limit=PAGE`, where `CURSOR` is the
//!    highest seq durably stored here. The body is validated as it streams
//!    ([`crate::decode::RecordStream`]); a bad body is refused whole. The
//!    page's records and the new cursor are committed in one SQLite
//!    transaction (`synchronous=FULL`), and only then is `POST /ack` sent for
//!    the page's last seq. A crash before the commit re-fetches the page; a
//!    crash between commit and ack re-acks on the next run (acks are
//!    idempotent, and the cursor never asks for committed seqs again).
//! 3. `POST /time` with the collector's clock, corrected by half the
//!    measured round trip; the bound actually achieved (`max(T − sent,
//!    received − T)`) is stored as a sync anchor.
//! 4. `GET /events` after the last stored event (boots, power losses, syncs).
//! 5. Time reconstruction for all records of the device ([`crate::time`]).

use std::time::Instant;

use protocol::api::TimeRequest;
use serde::Serialize;

use crate::client::DeviceApi;
use crate::db::Db;
use crate::decode::RecordStream;
use crate::time::{Anchor, Params};
use crate::{Error, now_ms};

/// Options of [`collect`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Records asked per request (the device may send fewer: its own limits
    /// on records and bytes per answer apply). Each page is one SQLite
    /// transaction and one ack, so large pages mean fewer synchronous
    /// commits and round trips.
    pub page: u32,
    /// Set the device clock after collecting.
    pub set_clock: bool,
    /// Time reconstruction parameters.
    pub time: Params,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            page: 10_000,
            set_clock: true,
            time: Params::default(),
        }
    }
}

/// Receives progress of a collect (for a progress bar).
pub trait Progress {
    /// Collection of a device starts; `expected` records are new on it.
    fn start(&mut self, _device: &str, _expected: u64) {}
    /// Bytes received.
    fn bytes(&mut self, _n: u64) {}
    /// Records committed.
    fn committed(&mut self, _n: u64) {}
    /// The device is done.
    fn finish(&mut self) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// The clock sync made after collecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClockSet {
    /// Measured round trip of the `POST /time`.
    pub rtt_ms: u64,
    /// Bound on the error of the time set.
    pub uncertainty_ms: u64,
    /// The device's estimate just before, minus the time set, if it had one.
    pub previous_offset_ms: Option<i64>,
}

/// What a collect did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Device id, if the device answered.
    pub device_id: Option<String>,
    /// Where it was reached.
    pub url: Option<String>,
    /// Records newly committed.
    pub new_records: u64,
    /// Body bytes received for records.
    pub bytes: u64,
    /// Pages committed.
    pub batches: u64,
    /// Highest seq durably stored after this run.
    pub last_seq: u64,
    /// Highest seq the device confirmed as acknowledged.
    pub acked_seq: Option<u64>,
    /// Records the device no longer had when we asked (overwritten before
    /// any collector saw them).
    pub lost_on_device: u64,
    /// Clock sync, if made.
    pub clock: Option<ClockSet>,
    /// Events stored.
    pub events: u64,
    /// Wall-clock seconds spent.
    pub seconds: f64,
    /// Why the run stopped early, if it did (committed data is kept).
    pub error: Option<String>,
}

impl Summary {
    /// Whether anything useful happened: new records stored, or a clean run.
    pub fn did_something(&self) -> bool {
        self.new_records > 0 || self.error.is_none()
    }
}

/// Collects one device into `db`. Never returns an error: failures are
/// reported in [`Summary::error`] after keeping everything committed.
pub fn collect(
    db: &mut Db,
    dev: &dyn DeviceApi,
    url: Option<&str>,
    opts: &Options,
    progress: &mut dyn Progress,
) -> Summary {
    let started = Instant::now();
    let mut s = Summary {
        url: url.map(str::to_string),
        ..Summary::default()
    };
    if let Err(e) = run(db, dev, url, opts, progress, &mut s) {
        s.error = Some(e.to_string());
    }
    // The device's acknowledged seq is informational here (the device keeps
    // the truth and reports it in `GET /info`): noted once per run, not in a
    // synchronous commit per page.
    if let (Some(id), Some(acked)) = (&s.device_id, s.acked_seq)
        && let Err(e) = db.set_acked(id, acked)
        && s.error.is_none()
    {
        s.error = Some(e.to_string());
    }
    progress.finish();
    s.seconds = started.elapsed().as_secs_f64();
    s
}

fn run(
    db: &mut Db,
    dev: &dyn DeviceApi,
    url: Option<&str>,
    opts: &Options,
    progress: &mut dyn Progress,
    s: &mut Summary,
) -> Result<(), Error> {
    let t0 = Instant::now();
    let info = dev.info()?;
    let rtt_ms = t0.elapsed().as_millis() as u64;
    let id = info.id.clone();
    s.device_id = Some(id.clone());
    db.upsert_device(&id, Some(&info.ssid), url, now_ms())?;
    let info_json = serde_json::to_string(&info).unwrap_or_default();
    db.set_info(&id, &info_json, info.paired, info.interval_s)?;
    if !info.paired {
        return Err(Error::Config(format!(
            "device {id} is not paired; run `ofmon pair {id} --token TOKEN` first"
        )));
    }
    let mut after = db.last_seq(&id)?;
    s.last_seq = after;
    s.acked_seq = info.acked_seq;
    let target = info.records.last.unwrap_or(0);
    if let Some(first) = info.records.first
        && first > after + 1
        && target >= first
    {
        s.lost_on_device = first - after - 1;
    }
    if target < after {
        return Err(Error::BadInput(format!(
            "device {id} reports newest seq {target}, but {after} is already stored; was it factory-reset?"
        )));
    }
    progress.start(&id, target - after);
    // A previous run may have died between commit and ack.
    if after > 0 && info.acked_seq.unwrap_or(0) < after {
        let a = dev.ack(after)?;
        s.acked_seq = Some(a.acked_seq);
    }
    while after < target {
        let mut stream = RecordStream::new(after);
        let mut bytes = 0u64;
        let fetched = dev.records(after, opts.page, &mut |chunk| {
            bytes += chunk.len() as u64;
            progress.bytes(chunk.len() as u64);
            stream
                .feed(chunk)
                .map_err(|e| Error::BadInput(format!("records after {after}: {e}; batch rejected")))
        });
        s.bytes += bytes;
        fetched?;
        let recs = stream
            .finish()
            .map_err(|e| Error::BadInput(format!("records after {after}: {e}; batch rejected")))?;
        let Some(last) = recs.last().map(|r| r.seq) else {
            break; // the device has nothing more for us
        };
        let new = db.insert_batch(&id, &recs, now_ms())?;
        s.new_records += new as u64;
        s.batches += 1;
        s.last_seq = last;
        after = last;
        progress.committed(recs.len() as u64);
        let a = dev.ack(last)?;
        s.acked_seq = Some(a.acked_seq);
    }
    if opts.set_clock {
        s.clock = Some(set_clock(db, dev, &id, rtt_ms)?);
    }
    let ev_after = db.last_event_seq(&id)?;
    let events = dev.events(ev_after)?;
    s.events = events.events.len() as u64;
    db.insert_events(&id, &events.events)?;
    db.reconstruct_times(&id, &opts.time)?;
    db.set_collected(&id, now_ms())?;
    Ok(())
}

/// Sets the device clock, correcting for the round trip measured before,
/// and stores the achieved bound as a sync anchor.
pub fn set_clock(
    db: &Db,
    dev: &dyn DeviceApi,
    id: &str,
    rtt_est_ms: u64,
) -> Result<ClockSet, Error> {
    let sent = now_ms();
    let t = Instant::now();
    let half = (rtt_est_ms / 2).max(1);
    let unix_ms = u64::try_from(sent).unwrap_or(0) + half;
    let req = TimeRequest {
        unix_ms,
        uncertainty_ms: u32::try_from(half + 1).unwrap_or(u32::MAX),
    };
    let resp = dev.set_time(&req)?;
    let rtt = t.elapsed().as_millis() as u64;
    let received = u64::try_from(sent).unwrap_or(0) + rtt;
    // The device applied the time somewhere between sent and received.
    let sent = u64::try_from(sent).unwrap_or(0);
    let uncertainty_ms = (unix_ms - sent).max(received.saturating_sub(unix_ms)) + 1;
    let boot_id = u32::try_from(resp.boot_id)
        .map_err(|_| Error::BadInput(format!("boot id {} out of range", resp.boot_id)))?;
    db.insert_time_sync(
        id,
        &Anchor {
            boot_id,
            uptime_ms: resp.uptime_ms,
            wall_ms: unix_ms,
            uncertainty_ms,
            trusted: true,
        },
        rtt,
        now_ms(),
    )?;
    Ok(ClockSet {
        rtt_ms: rtt,
        uncertainty_ms,
        previous_offset_ms: resp.previous_unix_ms.map(|p| p as i64 - unix_ms as i64),
    })
}
