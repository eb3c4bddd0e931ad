//! Bad links: collect from a simulated device through the fault-injecting
//! [`crate::proxy`] until the collector has everything, then check that
//! every record the device committed arrived exactly once with its exact
//! energy, and count what the link cost (runs, timeouts, resets, retries).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use collector::Db;
use collector::client::HttpDevice;
use collector::collect::{self, NoProgress};
use protocol::{FleetSecret, Mac};
use serde::{Deserialize, Serialize};

use crate::proxy::{Faults, Proxy, ProxyCounts};

/// Parameters of [`run`].
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// Simulated days of history on the device.
    pub history_days: f64,
    /// Metering interval of the device (s).
    pub interval_s: u32,
    /// Records per `GET /records` page.
    pub page: u32,
    /// Client timeout per request.
    pub timeout: Duration,
    /// Faults of the link.
    pub faults: Faults,
    /// Give up after this many collect runs.
    pub max_runs: u32,
}

impl LinkOptions {
    /// CI profile.
    pub fn short() -> Self {
        Self {
            history_days: 0.25,
            interval_s: 10,
            page: 100,
            timeout: Duration::from_secs(2),
            faults: Faults::hostile(0xBAD_11A),
            max_runs: 400,
        }
    }
    /// On-demand profile.
    pub fn long() -> Self {
        Self {
            history_days: 3.0,
            interval_s: 60,
            page: 200,
            timeout: Duration::from_secs(2),
            faults: Faults::hostile(0xBAD_11B),
            max_runs: 5000,
        }
    }
}

/// Figures of a bad-link campaign.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LinkReport {
    /// Records the device committed.
    pub device_records: u64,
    /// Records in the collector's database.
    pub collected: u64,
    /// Committed records missing or different in the database (must be 0).
    pub lost: u64,
    /// Rows beyond one per seq (must be 0).
    pub duplicated: u64,
    /// Collect runs until complete.
    pub runs: u64,
    /// Runs that stopped on an error (and were retried).
    pub failed_runs: u64,
    /// Of those, on a timeout.
    pub timeouts: u64,
    /// Of those, on a reset / interrupted transfer / refused connection.
    pub transport_errors: u64,
    /// Other errors (must be 0: no bad data may come out of a bad link).
    pub other_errors: Vec<String>,
    /// What the proxy did.
    pub proxy: ProxyCounts,
    /// Real seconds until complete.
    pub wall_s: f64,
}

impl LinkReport {
    /// Whether everything arrived exactly once.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.collected == self.device_records
            && self.other_errors.is_empty()
    }
}

/// The seq → cumulative import (CT 1) a collector database holds, and the
/// number of rows (to spot duplicates).
pub fn db_records(db_path: &Path, device: &str) -> Result<(BTreeMap<u64, u64>, u64)> {
    let db = Db::open(db_path).map_err(|e| anyhow!("{e}"))?;
    let mut stmt = db
        .conn()
        .prepare("SELECT r.seq, c.import_mwh FROM record r JOIN circuit c ON c.device_id = r.device_id AND c.seq = r.seq AND c.ct = 1 WHERE r.device_id = ?1 ORDER BY r.seq")
        .context("querying records")?;
    let rows = stmt
        .query_map([device], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .context("querying records")?;
    let mut map = BTreeMap::new();
    let mut n = 0;
    for row in rows {
        let (seq, imp) = row.context("reading a row")?;
        map.insert(seq as u64, imp as u64);
        n += 1;
    }
    Ok((map, n))
}

/// Compares what the device committed with what the database holds.
pub fn compare(committed: &[(u64, [u64; 3])], db: &BTreeMap<u64, u64>) -> u64 {
    committed
        .iter()
        .filter(|(seq, imp)| db.get(seq) != Some(&imp[0]))
        .count() as u64
}

/// Starts a simulated device with history, pauses it, returns the fleet.
pub fn start_device(
    home: &Path,
    history_days: f64,
    interval_s: u32,
    speed: f64,
    seed: u64,
) -> Result<sim::Fleet> {
    let fleet = sim::run(sim::SimOptions {
        devices: 1,
        base_port: 0,
        home: home.to_path_buf(),
        speed,
        history_days,
        interval_s,
        seed,
        // The engine's minimum rate: history fills 5x faster than at 2400/s.
        sample_rate_hz: Some(500),
        ..sim::SimOptions::default()
    })
    .map_err(|e| anyhow!("sim: {e}"))?;
    // Let the history fill, then freeze the device so the target is fixed.
    let want = (history_days * 86_400.0 / f64::from(interval_s)) as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while fleet.stats(0).is_none_or(|s| s.committed + 2 < want) {
        if Instant::now() > deadline {
            bail!("simulated history did not fill: {:?}", fleet.stats(0));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fleet.pause(true);
    std::thread::sleep(Duration::from_millis(200));
    Ok(fleet)
}

/// Pairs the device (directly, not through the hostile link).
pub fn pair(home: &Path, db_path: &Path, url: &str) -> Result<(String, protocol::ApiKey)> {
    let text = std::fs::read_to_string(home.join("fleet.key")).context("fleet.key")?;
    let fleet = FleetSecret::from_hex(text.trim()).map_err(|e| anyhow!("{e}"))?;
    let db = Db::open(db_path).map_err(|e| anyhow!("{e}"))?;
    let mut dev = HttpDevice::new(url, None, Duration::from_secs(10));
    let p = collector::pair::pair(
        &db,
        &mut dev,
        &fleet,
        &collector::pair::PairOptions {
            token: "torture".into(),
            ..Default::default()
        },
    )
    .map_err(|e| anyhow!("pairing: {e}"))?;
    let mac = Mac::parse(&p.device_id).map_err(|e| anyhow!("{e}"))?;
    Ok((p.device_id, fleet.device_keys(&mac).api_key))
}

/// Runs the campaign in `home` (a scratch directory).
pub fn run(home: &Path, o: &LinkOptions) -> Result<LinkReport> {
    let started = Instant::now();
    let fleet = start_device(home, o.history_days, o.interval_s, 1.0, o.faults.seed)?;
    let info = fleet
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no device"))?;
    let db_path = home.join("collector.sqlite");
    let (id, key) = pair(home, &db_path, &info.url)?;
    let upstream: SocketAddr = info
        .url
        .trim_start_matches("http://")
        .parse()
        .context("device address")?;
    let proxy = Proxy::start(upstream, o.faults.clone())?;
    let committed = fleet.committed(0);
    let target = committed.last().map_or(0, |c| c.0);
    let mut rep = LinkReport {
        device_records: committed.len() as u64,
        ..LinkReport::default()
    };
    let mut db = Db::open(&db_path).map_err(|e| anyhow!("{e}"))?;
    let dev = HttpDevice::new(&proxy.url(), Some(key), o.timeout);
    let opts = collect::Options {
        page: o.page,
        ..collect::Options::default()
    };
    loop {
        let s = collect::collect(&mut db, &dev, Some(&proxy.url()), &opts, &mut NoProgress);
        rep.runs += 1;
        if let Some(e) = &s.error {
            rep.failed_runs += 1;
            let el = e.to_lowercase();
            if el.contains("timed out") || el.contains("timeout") {
                rep.timeouts += 1;
            } else if el.contains("unreachable")
                || el.contains("interrupted")
                || el.contains("reset")
                || el.contains("refused")
                || el.contains("closed")
                || el.contains("eof")
                || el.contains("broken pipe")
                || el.contains("transport")
            {
                rep.transport_errors += 1;
            } else if rep.other_errors.len() < 20 {
                rep.other_errors.push(e.clone());
            }
        } else if s.last_seq >= target {
            break;
        }
        if rep.runs >= u64::from(o.max_runs) {
            break;
        }
    }
    drop(db);
    let (have, rows) = db_records(&db_path, &id)?;
    rep.collected = have.len() as u64;
    rep.duplicated = rows - have.len() as u64;
    rep.lost = compare(&committed, &have);
    rep.proxy = proxy.counts();
    rep.wall_s = started.elapsed().as_secs_f64();
    drop(proxy);
    fleet.stop();
    Ok(rep)
}
