//! The dashboard's actions, each a thin call into the `collector` library,
//! run on a blocking thread with progress reported to a [`Job`].
//!
//! | action  | backing                                   |
//! |---------|-------------------------------------------|
//! | collect | [`collector::collect::collect`]           |
//! | time    | [`collector::collect::set_clock`]         |
//! | pair    | [`collector::pair::pair`]                 |
//! | sync    | [`tbsync::Syncer`]                        |
//! | ota     | [`collector::ota::update`]                |

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use collector::Db;
use collector::client::{DeviceApi, HttpDevice};
use collector::collect::{Options, Progress, Summary};
use protocol::{FleetSecret, Mac};
use serde::Deserialize;

use crate::Error;
use crate::jobs::Job;
use crate::settings::Settings;

/// Timeout of one request to a device.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the actions find the collector's files.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The collector home.
    pub home: PathBuf,
}

impl Ctx {
    /// The database path.
    pub fn db_path(&self) -> PathBuf {
        self.home.join(collector::home::DB_FILE)
    }

    /// Opens the database through the collector library.
    pub fn db(&self) -> Result<Db, Error> {
        Ok(Db::open(&self.db_path())?)
    }

    /// Reads the fleet secret (settings' path, else the home's `fleet.key`).
    pub fn fleet(&self) -> Result<FleetSecret, Error> {
        let path = Settings::load(&self.home)?.fleet_key_file(&self.home);
        read_fleet_key(&path)
    }
}

/// Reads a fleet secret file (64 hex digits).
pub fn read_fleet_key(path: &Path) -> Result<FleetSecret, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::BadRequest(format!(
            "cannot read the fleet key {}: {e}; set its location on the settings page",
            path.display()
        ))
    })?;
    FleetSecret::from_hex(text.trim())
        .map_err(|e| Error::BadRequest(format!("{}: not a fleet key: {e:?}", path.display())))
}

/// A signed client for a known device.
fn client(ctx: &Ctx, db: &Db, id: &str) -> Result<HttpDevice, Error> {
    let url: Option<String> = db
        .conn()
        .query_row("SELECT url FROM device WHERE id = ?1", [id], |r| r.get(0))
        .map_err(|_| Error::NotFound(format!("unknown device {id}")))?;
    let url = url.ok_or_else(|| {
        Error::BadRequest(format!(
            "no URL known for device {id}; collect it from the command line first"
        ))
    })?;
    let mac = Mac::parse(id).map_err(|e| Error::BadRequest(format!("device id {id:?}: {e:?}")))?;
    let key = ctx.fleet()?.device_secret(&mac).api_key();
    Ok(HttpDevice::new(&url, Some(key), DEVICE_TIMEOUT))
}

/// Ids of the devices an action on `target` covers (`all`: every paired device).
fn targets(db: &Db, target: &str) -> Result<Vec<String>, Error> {
    let all: Vec<(String, bool)> = db
        .devices()?
        .into_iter()
        .map(|d| (d.id, d.paired))
        .collect();
    if target == "all" {
        return Ok(all
            .into_iter()
            .filter(|(_, p)| *p)
            .map(|(id, _)| id)
            .collect());
    }
    if all.iter().any(|(id, _)| id == target) {
        Ok(vec![target.to_string()])
    } else {
        Err(Error::NotFound(format!("unknown device {target}")))
    }
}

struct JobProgress<'a> {
    job: &'a Job,
    device: String,
    done: u64,
    total: u64,
    last: Instant,
}

impl Progress for JobProgress<'_> {
    fn start(&mut self, device: &str, expected: u64) {
        self.device = device.to_string();
        self.total = expected;
        self.job.progress(
            format!("{device}: {expected} new record(s) on the device"),
            0,
            Some(expected),
        );
    }
    fn committed(&mut self, n: u64) {
        self.done += n;
        // At most ~10 events per second.
        if self.last.elapsed() > Duration::from_millis(100) || self.done >= self.total {
            self.last = Instant::now();
            self.job.progress(
                format!(
                    "{}: {} of {} records stored",
                    self.device, self.done, self.total
                ),
                self.done,
                Some(self.total),
            );
        }
    }
}

/// Checks that a collect of `target` can start (device known).
pub fn check_collect(ctx: &Ctx, target: &str) -> Result<(), Error> {
    targets(&ctx.db()?, target).map(|_| ())
}

/// Collects `target` (a device id or `all`), reporting to `job`.
pub fn collect(ctx: &Ctx, job: &Job, target: &str) {
    let run = || -> Result<Vec<Summary>, Error> {
        let mut db = ctx.db()?;
        let ids = targets(&db, target)?;
        let mut out = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            job.log(format!("collecting {id} ({} of {})", i + 1, ids.len()));
            let dev = match client(ctx, &db, id) {
                Ok(d) => d,
                Err(e) => {
                    job.log(format!("{id}: {e}"));
                    out.push(Summary {
                        device_id: Some(id.clone()),
                        error: Some(e.to_string()),
                        ..Summary::default()
                    });
                    continue;
                }
            };
            let mut p = JobProgress {
                job,
                device: id.clone(),
                done: 0,
                total: 0,
                last: Instant::now(),
            };
            let url = dev.base().to_string();
            let s =
                collector::collect::collect(&mut db, &dev, Some(&url), &Options::default(), &mut p);
            match &s.error {
                Some(e) => job.log(format!("{id}: stopped: {e} (everything before is kept)")),
                None => job.log(format!(
                    "{id}: {} new record(s), {} event(s) in {:.2} s",
                    s.new_records, s.events, s.seconds
                )),
            }
            out.push(s);
        }
        Ok(out)
    };
    match run() {
        Ok(summaries) => {
            let new: u64 = summaries.iter().map(|s| s.new_records).sum();
            let errors = summaries.iter().filter(|s| s.error.is_some()).count();
            let result = serde_json::to_value(&summaries).unwrap_or_default();
            if errors == 0 {
                job.done(
                    format!(
                        "collected {} device(s): {new} new record(s)",
                        summaries.len()
                    ),
                    result,
                );
            } else {
                job.failed(
                    format!(
                        "{errors} of {} device(s) failed; {new} new record(s) stored",
                        summaries.len()
                    ),
                    Some(result),
                );
            }
        }
        Err(e) => job.failed(e.to_string(), None),
    }
}

/// Sets the clock of `target` (device id or `all`) from this computer's clock.
pub fn set_time(ctx: &Ctx, job: &Job, target: &str) {
    let run = || -> Result<serde_json::Value, Error> {
        let db = ctx.db()?;
        let ids = targets(&db, target)?;
        let mut out = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let dev = client(ctx, &db, id)?;
            let t = Instant::now();
            dev.info()?;
            let rtt = t.elapsed().as_millis() as u64;
            let c = collector::collect::set_clock(&db, &dev, id, rtt)?;
            job.progress(
                format!(
                    "{id}: clock set, ±{} ms (round trip {} ms)",
                    c.uncertainty_ms, c.rtt_ms
                ),
                i as u64 + 1,
                Some(ids.len() as u64),
            );
            out.push(serde_json::json!({ "device_id": id, "clock": c }));
        }
        Ok(serde_json::Value::Array(out))
    };
    match run() {
        Ok(v) => job.done("clock set", v),
        Err(e) => job.failed(e.to_string(), None),
    }
}

/// `POST /api/actions/pair` body.
#[derive(Clone, Debug, Deserialize)]
pub struct PairBody {
    /// Base URL of the unpaired device (e.g. `http://10.0.0.1`), or the id
    /// of a device whose URL is known.
    pub device: String,
    /// ThingsBoard access token.
    pub token: String,
    /// ThingsBoard device name.
    #[serde(default)]
    pub name: Option<String>,
    /// ThingsBoard server.
    #[serde(default)]
    pub server: Option<String>,
}

/// Pairs a device (pairing needs the device unpaired or factory-reset).
pub fn pair(ctx: &Ctx, job: &Job, body: &PairBody) {
    let run = || -> Result<serde_json::Value, Error> {
        if body.token.trim().is_empty() {
            return Err(Error::BadRequest(
                "a ThingsBoard token is needed to pair".into(),
            ));
        }
        let db = ctx.db()?;
        let url = if body.device.starts_with("http://") || body.device.starts_with("https://") {
            body.device.clone()
        } else {
            db.conn()
                .query_row(
                    "SELECT url FROM device WHERE id = ?1",
                    [&body.device],
                    |r| r.get::<_, Option<String>>(0),
                )
                .ok()
                .flatten()
                .ok_or_else(|| {
                    Error::NotFound(format!("no URL known for device {}", body.device))
                })?
        };
        let fleet = ctx.fleet()?;
        let mut dev = HttpDevice::new(&url, None, DEVICE_TIMEOUT);
        job.progress(format!("pairing the device at {url}"), 0, Some(1));
        let opts = collector::pair::PairOptions {
            token: body.token.clone(),
            name: body.name.clone(),
            profile: None,
            server: body.server.clone(),
        };
        let p = collector::pair::pair(&db, &mut dev, &fleet, &opts)?;
        job.progress(format!("paired {} ({})", p.device_id, p.ssid), 1, Some(1));
        Ok(serde_json::to_value(&p).unwrap_or_default())
    };
    match run() {
        Ok(v) => job.done("paired", v),
        Err(e) => job.failed(e.to_string(), None),
    }
}

/// One sync run to ThingsBoard over the database at `db_path`: the server
/// from `server` when given, else each device's own from pairing (transport
/// from the URL scheme). `only`: device ids or names (empty: all).
///
/// Runs on its own thread, since the engine drives its own runtime (and the
/// caller may be a runtime's blocking thread).
pub fn run_sync(
    db_path: &Path,
    server: Option<String>,
    only: Vec<String>,
    progress: &mut (dyn FnMut(tbsync::Progress<'_>) + Send),
) -> Result<tbsync::Report, Error> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<tbsync::Report, Error> {
            let db = Db::open(db_path)?;
            let opts = tbsync::SyncOptions {
                server,
                only,
                ..tbsync::SyncOptions::default()
            };
            let syncer = tbsync::Syncer::new(db.conn(), opts).map_err(sync_error)?;
            syncer.run(progress).map_err(sync_error)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::BadRequest("the sync thread panicked".into())))
    })
}

fn sync_error(e: tbsync::Error) -> Error {
    Error::BadRequest(format!("sync: {e}"))
}

/// What a device's sync status means, for people.
pub fn sync_status_text(s: &tbsync::DeviceStatus) -> String {
    use tbsync::DeviceStatus as S;
    match s {
        S::Done => "ok".into(),
        S::Unauthorized => "the server refused the access token; re-pair the device".into(),
        S::GaveUp(e) => format!("gave up for now (the next sync resumes): {e}"),
        S::NoServer => "skipped: no ThingsBoard server (set one on the settings page)".into(),
        S::NoToken => "skipped: not paired (no access token)".into(),
        S::Failed(e) => format!("failed: {e}"),
    }
}

/// Syncs `target` (a device id or `all`) to ThingsBoard, reporting to `job`.
pub fn sync(ctx: &Ctx, job: &Job, target: &str) {
    let run = || -> Result<tbsync::Report, Error> {
        let only = if target == "all" {
            Vec::new()
        } else {
            targets(&ctx.db()?, target)?
        };
        let server = Settings::load(&ctx.home)?.thingsboard_url;
        let mut done = 0u64;
        let mut total = 0u64;
        let mut last = Instant::now();
        run_sync(&ctx.db_path(), server, only, &mut |p| match p {
            tbsync::Progress::Start { pending } => {
                total = pending;
                job.progress(format!("{pending} record(s) to send"), 0, Some(pending));
            }
            tbsync::Progress::Device { device, pending } => job.log(format!(
                "{}: {pending} record(s) pending",
                device.display_name()
            )),
            tbsync::Progress::Sent { device, records } => {
                done += records;
                if last.elapsed() > Duration::from_millis(100) || done >= total {
                    last = Instant::now();
                    job.progress(
                        format!("{device}: {done} of {total} records sent"),
                        done,
                        Some(total),
                    );
                }
            }
            tbsync::Progress::Retry {
                device,
                attempt,
                error,
                wait,
            } => job.log(format!(
                "{device}: attempt {attempt} failed ({error}); retrying in {} ms",
                wait.as_millis()
            )),
            tbsync::Progress::Done(d) => job.log(format!(
                "{} ({}): {} sent, {} pending: {}",
                d.name,
                d.id,
                d.sent,
                d.pending,
                sync_status_text(&d.status)
            )),
        })
    };
    match run() {
        Ok(r) => {
            let result = serde_json::to_value(&r).unwrap_or_default();
            let bad = r
                .devices
                .iter()
                .filter(|d| d.status != tbsync::DeviceStatus::Done)
                .count();
            if bad == 0 {
                job.done(
                    format!(
                        "synced {} device(s): {} record(s) sent",
                        r.devices.len(),
                        r.sent()
                    ),
                    result,
                );
            } else {
                job.failed(
                    format!(
                        "{bad} of {} device(s) not synced; {} record(s) sent",
                        r.devices.len(),
                        r.sent()
                    ),
                    Some(result),
                );
            }
        }
        Err(e) => job.failed(e.to_string(), None),
    }
}

/// Largest firmware upload the dashboard takes (the OTA slot is 1 MiB).
pub const OTA_MAX_BYTES: usize = 4 << 20;

/// Checks an upload before an OTA job starts (400 for a file that is not a
/// signed upload, 404 for an unknown device).
pub fn check_ota(ctx: &Ctx, device: &str, body: &[u8]) -> Result<(), Error> {
    targets(&ctx.db()?, device)?;
    collector::ota::check_upload(body)
        .map(|_| ())
        .map_err(|e| Error::BadRequest(e.to_string()))
}

/// Sends a signed firmware upload to `device` and waits for it to run the
/// new version (or to roll back), reporting bytes sent to `job`.
pub fn ota(ctx: &Ctx, job: &Job, device: &str, body: &[u8]) {
    let run = || -> Result<serde_json::Value, Error> {
        let db = ctx.db()?;
        let mut dev = client(ctx, &db, device)?;
        // A slow access point may need minutes for a megabyte.
        dev.set_timeout(Duration::from_secs(300));
        let total = body.len() as u64;
        let mut last = Instant::now();
        let outcome =
            collector::ota::update(&dev, body, false, Duration::from_secs(60), &mut |step| {
                match step {
                    collector::ota::Step::Sent(n) => {
                        if last.elapsed() > Duration::from_millis(100) || n >= total {
                            last = Instant::now();
                            job.progress(
                                format!("{device}: {n} of {total} bytes sent"),
                                n,
                                Some(total),
                            );
                        }
                    }
                    collector::ota::Step::Accepted => {
                        job.log(format!(
                            "{device}: upload accepted; waiting for the device to reboot into it"
                        ));
                    }
                }
            })?;
        Ok(match outcome {
            collector::ota::Outcome::Running(v) => {
                serde_json::json!({ "device_id": device, "firmware": v.to_string() })
            }
            collector::ota::Outcome::Accepted => serde_json::json!({ "device_id": device }),
        })
    };
    match run() {
        Ok(v) => {
            let msg = match v["firmware"].as_str() {
                Some(f) => format!("{device} now runs firmware {f}"),
                None => format!("{device} accepted the firmware"),
            };
            job.done(msg, v)
        }
        Err(e) => job.failed(e.to_string(), None),
    }
}
