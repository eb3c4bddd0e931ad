//! Sync to ThingsBoard under fire: the collector database (filled by the
//! real collector library from fake devices on loopback) synced to the
//! ThingsBoard mock
//!
//! - through the fault-injecting [`crate::proxy`] (resets mid-stream,
//!   stalls past the client's timeout, delays, throttling, refused
//!   connections), run after run until everything is sent, then one clean
//!   run with the faults off ([`run_link`]);
//! - by the real `ofmon sync` binary killed with SIGKILL at random moments
//!   while new records keep arriving ([`run_kills`]).
//!
//! Invariant: afterwards every point of every record is on the server exactly
//! once by (device, key, ts) with the value the database holds, nothing is on
//! the server that no record explains, and at no time is a record marked sent
//! that the server does not hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use collector::Db;
use collector::client::HttpDevice;
use collector::collect::{self, NoProgress};
use collector::fake::{FakeDevice, sample_record};
use protocol::{FleetSecret, Mac};
use serde::{Deserialize, Serialize};
use tbsync::telemetry::{Circuit, Reading};
use tbsync::{Gzip, Progress, SyncOptions, Syncer, Transport};
use thingsboard_mock::MockServer;

use crate::crash::kill_after;
use crate::proxy::{Faults, Proxy, ProxyCounts};

/// The fleet secret of the fixture's fake devices.
pub const FLEET: [u8; 32] = [0x5a; 32];

/// One fake device of a [`Fixture`], paired with the collector.
pub struct FixtureDevice {
    /// The fake device (serves its records on loopback).
    pub fake: FakeDevice,
    /// Collector device id.
    pub id: String,
    /// ThingsBoard device name (also its name on the mock).
    pub name: String,
    /// ThingsBoard access token.
    pub token: String,
    client: HttpDevice,
}

/// A collector database holding records collected from fake devices by the
/// collector library (pairing, collect, clock sync, time reconstruction).
pub struct Fixture {
    /// The collector database.
    pub db_path: PathBuf,
    /// The devices.
    pub devices: Vec<FixtureDevice>,
}

impl Fixture {
    /// Starts `devices` fake devices with `records` records each, pairs them
    /// and collects everything into the database at `db_path`.
    pub fn build(db_path: &Path, devices: usize, records: u64) -> Result<Fixture> {
        let fleet = FleetSecret::from_bytes(FLEET);
        let db = Db::open(db_path).map_err(|e| anyhow!("{e}"))?;
        let mut out = Vec::new();
        for i in 0..devices {
            let mac = Mac([0x02, 0x0f, 0x4d, 0x70, 0x00, i as u8 + 1]);
            let fake = FakeDevice::start(mac, records, None).context("fake device")?;
            let mut client = HttpDevice::new(&fake.url, None, Duration::from_secs(10));
            let name = format!("torture-meter-{}", i + 1);
            let token = format!("torture-token-{}", i + 1);
            let p = collector::pair::pair(
                &db,
                &mut client,
                &fleet,
                &collector::pair::PairOptions {
                    token: token.clone(),
                    name: Some(name.clone()),
                    ..Default::default()
                },
            )
            .map_err(|e| anyhow!("pairing: {e}"))?;
            out.push(FixtureDevice {
                fake,
                id: p.device_id,
                name,
                token,
                client,
            });
        }
        drop(db);
        let f = Fixture {
            db_path: db_path.to_path_buf(),
            devices: out,
        };
        f.collect(true)?;
        Ok(f)
    }

    /// Collects every device (in-process, the collector library).
    pub fn collect(&self, set_clock: bool) -> Result<()> {
        let mut db = Db::open(&self.db_path).map_err(|e| anyhow!("{e}"))?;
        for d in &self.devices {
            let s = collect::collect(
                &mut db,
                &d.client,
                Some(&d.fake.url),
                &collect::Options {
                    page: 2000,
                    set_clock,
                    ..collect::Options::default()
                },
                &mut NoProgress,
            );
            if let Some(e) = s.error {
                bail!("collect {}: {e}", d.id);
            }
        }
        Ok(())
    }

    /// Every device measures `k` more records; the collector collects them.
    pub fn grow(&self, k: u64) -> Result<()> {
        for d in &self.devices {
            let mut st = d.fake.lock();
            let last = st.records.last().map_or(0, |r| r.seq);
            st.records
                .extend((last + 1..=last + k).map(|s| sample_record(s, 7)));
        }
        self.collect(false)
    }

    /// Records the devices measured, all devices.
    pub fn measured(&self) -> u64 {
        self.devices
            .iter()
            .map(|d| d.fake.lock().records.len() as u64)
            .sum()
    }

    /// Creates every device on the mock with its token.
    pub fn provision(&self, m: &MockServer) {
        for d in &self.devices {
            m.add_device(&d.name, &d.token);
        }
    }
}

/// Every point the database says should be on the server, read with SQL of
/// its own (not the sync engine's query): (device name, key, ts) → value.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// (device name, key, ts ms) → value.
    pub points: BTreeMap<(String, String, i64), f64>,
    /// (device id, seq) → (device name, ts, keys) of each timed record.
    pub records: BTreeMap<(String, u64), (String, i64, Vec<String>)>,
    /// Records in the database (timed or not).
    pub db_records: u64,
    /// Records without a time (never sent by design).
    pub untimed: u64,
    /// Points two records of one device would both write (same key and ts).
    pub collisions: u64,
}

/// Reads [`Expected`] from the database.
pub fn expected(db_path: &Path) -> Result<Expected> {
    let db = Db::open(db_path).map_err(|e| anyhow!("{e}"))?;
    let c = db.conn();
    let mut names = BTreeMap::new();
    {
        let mut st = c.prepare("SELECT id, COALESCE(name, id) FROM device")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (id, name) = row?;
            names.insert(id, name);
        }
    }
    let mut readings: BTreeMap<(String, u64), Reading> = BTreeMap::new();
    let mut e = Expected::default();
    {
        let mut st = c.prepare(
            "SELECT device_id, seq, ts_ms, ts_uncertainty_ms, frequency_mhz, v1_cv, v2_cv, v3_cv
             FROM record",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, i64>(4)?,
                [
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ],
            ))
        })?;
        for row in rows {
            let (dev, seq, ts, unc, f, v) = row?;
            e.db_records += 1;
            let Some(ts) = ts else {
                e.untimed += 1;
                continue;
            };
            readings.insert(
                (dev, seq as u64),
                Reading {
                    seq: seq as u64,
                    ts_ms: ts,
                    ts_uncertainty_ms: unc.unwrap_or(0),
                    frequency_mhz: f,
                    v_cv: v,
                    circuits: Vec::new(),
                },
            );
        }
        let mut st = c.prepare(
            "SELECT device_id, seq, ct, i_rms_ma, real_power_dw, apparent_power_dva,
                    power_factor_milli, import_mwh, export_mwh FROM circuit ORDER BY device_id, seq, ct",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                Circuit {
                    ct: r.get::<_, i64>(2)?.clamp(0, 255) as u8,
                    i_rms_ma: r.get(3)?,
                    real_power_dw: r.get(4)?,
                    apparent_power_dva: r.get(5)?,
                    power_factor_milli: r.get(6)?,
                    import_mwh: r.get(7)?,
                    export_mwh: r.get(8)?,
                },
            ))
        })?;
        for row in rows {
            let (dev, seq, circ) = row?;
            if let Some(r) = readings.get_mut(&(dev, seq as u64)) {
                r.circuits.push(circ);
            }
        }
    }
    for ((dev, seq), r) in readings {
        let name = names.get(&dev).cloned().unwrap_or_else(|| dev.clone());
        let mut keys = Vec::new();
        for (k, v) in r.expected_values() {
            if e.points
                .insert((name.clone(), k.clone(), r.ts_ms), v)
                .is_some()
            {
                e.collisions += 1;
            }
            keys.push(k);
        }
        e.records.insert((dev, seq), (name, r.ts_ms, keys));
    }
    Ok(e)
}

/// What the server holds compared with [`Expected`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerCheck {
    /// Points expected.
    pub expected: u64,
    /// Points stored on the server (all devices of the fixture).
    pub stored: u64,
    /// Expected points missing on the server.
    pub missing: u64,
    /// Points on the server with a value other than the database's.
    pub wrong: u64,
    /// Points on the server that no record explains.
    pub extra: u64,
}

/// Compares the mock's storage with `e`. With `complete == false` only
/// what is stored is checked (missing points are not counted).
pub fn check_server(m: &MockServer, e: &Expected, names: &[String], complete: bool) -> ServerCheck {
    let mut c = ServerCheck::default();
    for name in names {
        let _ = m.with_device(name, |d| {
            for (k, series) in &d.telemetry {
                for (ts, v) in series {
                    c.stored += 1;
                    match e.points.get(&(name.clone(), k.clone(), *ts)) {
                        None => c.extra += 1,
                        Some(want) => {
                            if v.as_f64() != Some(*want) {
                                c.wrong += 1;
                            }
                        }
                    }
                }
            }
        });
    }
    if complete {
        c.expected = e.points.len() as u64;
        for (name, k, ts) in e.points.keys() {
            let there = m
                .with_device(name, |d| {
                    d.telemetry.get(k).is_some_and(|s| s.contains_key(ts))
                })
                .unwrap_or(false);
            if !there {
                c.missing += 1;
            }
        }
    }
    c
}

/// Records marked sent to `dest` of which the server lacks a point (must
/// be 0 at every moment).
pub fn sent_but_missing(
    db_path: &Path,
    dest_url: &str,
    m: &MockServer,
    e: &Expected,
) -> Result<u64> {
    let db = Db::open(db_path).map_err(|e| anyhow!("{e}"))?;
    let Some(dest) =
        tbsync::outbox::find_destination(db.conn(), dest_url).map_err(|e| anyhow!("{e}"))?
    else {
        return Ok(0);
    };
    let mut st = db.conn().prepare(
        "SELECT device_id, seq FROM sync_state WHERE destination_id = ?1 AND state = 'sent'",
    )?;
    let rows = st.query_map([dest], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut bad = 0;
    for row in rows {
        let (dev, seq) = row?;
        let Some((name, ts, keys)) = e.records.get(&(dev, seq as u64)) else {
            // Marked sent, but the record has no time or no longer exists.
            bad += 1;
            continue;
        };
        let ok = m
            .with_device(name, |d| {
                keys.iter()
                    .all(|k| d.telemetry.get(k).is_some_and(|s| s.contains_key(ts)))
            })
            .unwrap_or(false);
        if !ok {
            bad += 1;
        }
    }
    Ok(bad)
}

/// Records not marked sent to `dest_url` (timed ones; must be 0 at the end).
pub fn unsent(db_path: &Path, dest_url: &str) -> Result<u64> {
    let db = Db::open(db_path).map_err(|e| anyhow!("{e}"))?;
    let dest = tbsync::outbox::destination_id(db.conn(), dest_url).map_err(|e| anyhow!("{e}"))?;
    let n: i64 = db.conn().query_row(
        "SELECT COUNT(*) FROM record r WHERE r.ts_ms IS NOT NULL AND NOT EXISTS
           (SELECT 1 FROM sync_state s WHERE s.destination_id = ?1 AND s.device_id = r.device_id
            AND s.seq = r.seq AND s.state = 'sent')",
        [dest],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// Parameters of [`run_link`].
#[derive(Clone, Debug)]
pub struct SyncLinkOptions {
    /// Fake devices.
    pub devices: usize,
    /// Records per device.
    pub records: u64,
    /// Records per HTTP batch.
    pub batch: usize,
    /// Client request timeout.
    pub timeout: Duration,
    /// Consecutive failures per device before a run gives up.
    pub max_retries: u32,
    /// The link's faults.
    pub faults: Faults,
    /// Give up after this many runs.
    pub max_runs: u32,
}

/// The link between collector and server: resets, stalls past the 2 s
/// timeout, jitter, 1 MB/s, refused connections.
fn server_link(seed: u64) -> Faults {
    Faults {
        seed,
        refuse: 0.05,
        reset_per_chunk: 0.02,
        stall_per_chunk: 0.005,
        stall_ms: 2_500,
        delay_ms: 4,
        throttle_bps: 1024 * 1024,
        chunk: 1024,
    }
}

impl SyncLinkOptions {
    /// CI profile.
    pub fn short() -> Self {
        Self {
            devices: 3,
            records: 400,
            batch: 25,
            timeout: Duration::from_secs(2),
            max_retries: 6,
            faults: server_link(0x0051_1C01),
            max_runs: 200,
        }
    }
    /// On-demand profile.
    pub fn long() -> Self {
        Self {
            devices: 3,
            records: 5_000,
            batch: 25,
            timeout: Duration::from_secs(2),
            max_retries: 6,
            faults: server_link(0x0051_1C02),
            max_runs: 5_000,
        }
    }
}

/// Figures of [`run_link`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SyncLinkReport {
    /// Records in the collector database (all timed).
    pub records: u64,
    /// Points (device, key, ts) expected on the server.
    pub points: u64,
    /// Sync runs through the faulty link until everything was sent.
    pub runs: u64,
    /// Of those, runs in which some device gave up (next run resumes).
    pub runs_gave_up: u64,
    /// Retries (backoffs) seen, all devices.
    pub retries: u64,
    /// Of those, on a timeout.
    pub timeouts: u64,
    /// Of those, on a reset / refused / dropped connection.
    pub transport_errors: u64,
    /// Of those, on a server answer (5xx).
    pub server_errors: u64,
    /// Whether everything was sent while the faults were still on.
    pub done_under_faults: bool,
    /// Whether the final clean run ended with every device done.
    pub final_clean: bool,
    /// Points the server wrote more than once (resends after a lost answer; harmless upserts).
    pub resent_points: u64,
    /// Server storage versus the database at the end.
    pub server: ServerCheck,
    /// Times (after a run) a record was marked sent that the server lacked.
    pub sent_but_missing: u64,
    /// Timed records not marked sent at the end.
    pub unsent: u64,
    /// Points two records would both write.
    pub collisions: u64,
    /// Errors other than link errors (database, unexpected answers).
    pub other_errors: Vec<String>,
    /// What the proxy did.
    pub proxy: ProxyCounts,
    /// Real seconds spent.
    pub wall_s: f64,
}

impl SyncLinkReport {
    /// Lost points: missing or different on the server.
    pub fn lost(&self) -> u64 {
        self.server.missing + self.server.wrong
    }
    /// Duplicated: points no record explains, or marked sent but absent.
    pub fn duplicated(&self) -> u64 {
        self.server.extra + self.sent_but_missing
    }
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.lost() == 0
            && self.duplicated() == 0
            && self.unsent == 0
            && self.collisions == 0
            && self.final_clean
            && self.other_errors.is_empty()
            && self.server.stored == self.points
    }
}

/// Runs the hostile-link sync campaign in `home` (scratch directory).
pub fn run_link(home: &Path, o: &SyncLinkOptions) -> Result<SyncLinkReport> {
    let started = Instant::now();
    let db_path = home.join("collector.sqlite");
    let fx = Fixture::build(&db_path, o.devices, o.records)?;
    let m = MockServer::start().map_err(|e| anyhow!("mock: {e}"))?;
    fx.provision(&m);
    let names: Vec<String> = fx.devices.iter().map(|d| d.name.clone()).collect();
    let proxy = Proxy::start(m.addr(), o.faults.clone())?;
    let url = proxy.url();
    let e = expected(&db_path)?;
    let mut rep = SyncLinkReport {
        records: e.db_records,
        points: e.points.len() as u64,
        collisions: e.collisions,
        ..SyncLinkReport::default()
    };
    let db = Db::open(&db_path).map_err(|e| anyhow!("{e}"))?;
    let syncer = Syncer::new(
        db.conn(),
        SyncOptions {
            server: Some(url.clone()),
            transport: Transport::Http,
            batch_records: o.batch,
            max_retries: o.max_retries,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            timeout: o.timeout,
            gzip: Gzip::Auto,
            ..SyncOptions::default()
        },
    )
    .map_err(|e| anyhow!("{e}"))?;
    let on_progress = |p: Progress<'_>, rep: &mut SyncLinkReport| {
        if let Progress::Retry { error, .. } = p {
            rep.retries += 1;
            let el = error.to_lowercase();
            if el.contains("timed out") {
                rep.timeouts += 1;
            } else if el.contains("server answered") {
                rep.server_errors += 1;
            } else if el.contains("connect") || el.contains("connection") || el.contains("request")
            {
                rep.transport_errors += 1;
            } else if rep.other_errors.len() < 20 {
                rep.other_errors.push(error.to_string());
            }
        }
    };
    loop {
        let r = syncer.run(&mut |p| on_progress(p, &mut rep));
        rep.runs += 1;
        match r {
            Ok(r) => {
                if r.all_done() {
                    rep.done_under_faults = true;
                    break;
                }
                rep.runs_gave_up += 1;
                for d in &r.devices {
                    if let tbsync::DeviceStatus::GaveUp(why) = &d.status {
                        let wl = why.to_lowercase();
                        let link = wl.contains("timed out")
                            || wl.contains("connect")
                            || wl.contains("connection")
                            || wl.contains("request")
                            || wl.contains("server answered");
                        if !link && rep.other_errors.len() < 20 {
                            rep.other_errors.push(why.clone());
                        }
                    } else if d.status != tbsync::DeviceStatus::Done && rep.other_errors.len() < 20
                    {
                        rep.other_errors.push(format!("{}: {:?}", d.name, d.status));
                    }
                }
            }
            Err(err) => {
                if rep.other_errors.len() < 20 {
                    rep.other_errors.push(err.to_string());
                }
            }
        }
        rep.sent_but_missing += sent_but_missing(&db_path, &url, &m, &e)?;
        // Whatever the server holds must already be right.
        let partial = check_server(&m, &e, &names, false);
        rep.server.wrong = rep.server.wrong.max(partial.wrong);
        rep.server.extra = rep.server.extra.max(partial.extra);
        if rep.runs >= u64::from(o.max_runs) {
            break;
        }
    }
    // The link heals: one clean run.
    proxy.set_faults(false);
    match syncer.run(&mut |p| on_progress(p, &mut rep)) {
        Ok(r) => rep.final_clean = r.all_done(),
        Err(err) => rep.other_errors.push(format!("final run: {err}")),
    }
    drop(syncer);
    drop(db);
    let fin = check_server(&m, &e, &names, true);
    rep.server = ServerCheck {
        wrong: fin.wrong.max(rep.server.wrong),
        extra: fin.extra.max(rep.server.extra),
        ..fin
    };
    rep.sent_but_missing += sent_but_missing(&db_path, &url, &m, &e)?;
    rep.unsent = unsent(&db_path, &url)?;
    rep.resent_points = m
        .stats()
        .overwrites
        .load(std::sync::atomic::Ordering::Relaxed);
    rep.proxy = proxy.counts();
    rep.wall_s = started.elapsed().as_secs_f64();
    Ok(rep)
}

/// Parameters of [`run_kills`].
#[derive(Clone, Debug)]
pub struct SyncKillOptions {
    /// Kills.
    pub kills: u32,
    /// Seed of the kill moments.
    pub seed: u64,
    /// Records per device at the start.
    pub records: u64,
    /// Records each device measures (and the collector collects) before each sync.
    pub grow: u64,
    /// Records per HTTP batch (`ofmon sync --batch`).
    pub batch: usize,
    /// Delay of every server answer (so kills land with requests in flight).
    pub server_delay: Duration,
}

impl SyncKillOptions {
    /// CI profile.
    pub fn short() -> Self {
        Self {
            kills: 10,
            seed: 0x051C_0001,
            records: 300,
            grow: 40,
            batch: 20,
            server_delay: Duration::from_millis(3),
        }
    }
    /// On-demand profile.
    pub fn long() -> Self {
        Self {
            kills: 100,
            seed: 0x051C_0002,
            records: 1_000,
            grow: 60,
            batch: 20,
            server_delay: Duration::from_millis(3),
        }
    }
}

/// Figures of [`run_kills`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SyncKillReport {
    /// `kill -9` delivered while `ofmon sync` was running.
    pub kills: u64,
    /// Runs that finished before their kill landed.
    pub finished_before_kill: u64,
    /// Records the devices measured.
    pub measured: u64,
    /// Records in the collector database.
    pub db_records: u64,
    /// Points (device, key, ts) expected on the server.
    pub points: u64,
    /// Server storage versus the database after the final clean sync.
    pub server: ServerCheck,
    /// Records marked sent that the server lacked, summed over the checks after each kill.
    pub sent_but_missing: u64,
    /// Timed records not marked sent at the end.
    pub unsent: u64,
    /// Points resent (an answer lost to a kill; harmless upserts).
    pub resent_points: u64,
    /// Whether the final `ofmon sync` exited 0.
    pub final_clean: bool,
    /// Shortest and longest time a run lived before its kill (ms).
    pub kill_after_ms: (u64, u64),
    /// Real seconds spent.
    pub wall_s: f64,
}

impl SyncKillReport {
    /// Lost points: missing or different on the server.
    pub fn lost(&self) -> u64 {
        self.server.missing + self.server.wrong + self.measured.saturating_sub(self.db_records)
    }
    /// Duplicated: points no record explains, or marked sent but absent.
    pub fn duplicated(&self) -> u64 {
        self.server.extra + self.sent_but_missing
    }
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.lost() == 0
            && self.duplicated() == 0
            && self.unsent == 0
            && self.final_clean
            && self.measured == self.db_records
            && self.server.stored == self.points
    }
}

/// `ofmon sync --home HOME --thingsboard URL --batch N --json`.
fn sync_cmd(ofmon: &Path, home: &Path, url: &str, batch: usize) -> Command {
    let mut c = Command::new(ofmon);
    c.args([
        "sync",
        "--thingsboard",
        url,
        "--batch",
        &batch.to_string(),
        "--json",
        "--home",
    ])
    .arg(home)
    .env_remove("OFMON_HOME");
    c
}

/// Runs the kill campaign in `home` with the `ofmon` at `ofmon`.
pub fn run_kills(home: &Path, ofmon: &Path, o: &SyncKillOptions) -> Result<SyncKillReport> {
    let started = Instant::now();
    let h = collector::home::Home::resolve(Some(home)).map_err(|e| anyhow!("{e}"))?;
    let db_path = h.file(collector::home::DB_FILE);
    let fx = Fixture::build(&db_path, 3, o.records)?;
    let m = MockServer::start().map_err(|e| anyhow!("mock: {e}"))?;
    fx.provision(&m);
    m.set_delay(o.server_delay);
    let names: Vec<String> = fx.devices.iter().map(|d| d.name.clone()).collect();
    let url = m.url();
    let mut rng = Rng(o.seed | 1);
    let mut rep = SyncKillReport {
        kill_after_ms: (u64::MAX, 0),
        ..SyncKillReport::default()
    };
    let mut budget_ms = 300u64;
    while rep.kills < u64::from(o.kills) {
        // New records arrive between syncs (the collector keeps collecting).
        fx.grow(o.grow)?;
        let mut child = sync_cmd(ofmon, home, &url, o.batch)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning ofmon sync")?;
        let at = Duration::from_millis(rng.below(budget_ms + 1));
        let (ran, killed) = kill_after(&mut child, at);
        if !killed {
            rep.finished_before_kill += 1;
            budget_ms = (ran.as_millis() as u64).max(budget_ms / 2).max(50);
            continue;
        }
        let lived = ran.as_millis() as u64;
        rep.kills += 1;
        rep.kill_after_ms.0 = rep.kill_after_ms.0.min(lived);
        rep.kill_after_ms.1 = rep.kill_after_ms.1.max(lived);
        // Never marked sent beyond what the server holds.
        let e = expected(&db_path)?;
        rep.sent_but_missing += sent_but_missing(&db_path, &url, &m, &e)?;
    }
    let out = sync_cmd(ofmon, home, &url, o.batch)
        .output()
        .context("final ofmon sync")?;
    rep.final_clean = out.status.success();
    let e = expected(&db_path)?;
    rep.measured = fx.measured();
    rep.db_records = e.db_records;
    rep.points = e.points.len() as u64;
    rep.server = check_server(&m, &e, &names, true);
    rep.sent_but_missing += sent_but_missing(&db_path, &url, &m, &e)?;
    rep.unsent = unsent(&db_path, &url)?;
    rep.resent_points = m
        .stats()
        .overwrites
        .load(std::sync::atomic::Ordering::Relaxed);
    if rep.kill_after_ms.0 == u64::MAX {
        rep.kill_after_ms.0 = 0;
    }
    rep.wall_s = started.elapsed().as_secs_f64();
    Ok(rep)
}

/// Small xorshift RNG for kill moments.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 { 0 } else { self.0 % n }
    }
}

/// The `docs/RELIABILITY.md` section of [`run_link`].
pub fn render_link(r: &SyncLinkReport) -> String {
    format!(
        "## Sync through the hostile link (collector → ThingsBoard mock)\n\n\
         The collector database (records collected by the collector library from 3 fake devices \
         on loopback, times reconstructed) synced by the sync engine that `ofmon sync` runs, over \
         HTTP, to the ThingsBoard mock through the fault-injecting proxy: connections refused, \
         reset mid-stream, stalled past the 2 s client timeout, delayed, throttled to 1 MB/s. \
         Runs repeat until everything is sent, then the link heals for one clean run. After every \
         run, whatever the server holds is compared with the database, and every record marked \
         sent must be on the server.\n\n\
         | figure | value | target |\n|---|---|---|\n\
         | records in the database / points (device, key, ts) | {} / {} | |\n\
         | sync runs through the faulty link until everything was sent | {} ({} ended with a device giving up for the run; done under faults: {}) | |\n\
         | retries (backoffs) | {} ({} timeouts, {} resets/refused/dropped, {} server answers) | |\n\
         | points written twice (resent after a lost answer; upserts of the same value) | {} | |\n\
         | points on the server / expected | {} / {} | equal |\n\
         | lost (missing or another value) / duplicated (unexplained points, marked sent but absent) | {} / {} | 0 / 0 — {} |\n\
         | records still unsent after the clean run | {} | 0 |\n\
         | errors other than link errors | {} | 0 |\n\
         | proxy: connections, refused, resets, stalls | {}, {}, {}, {} | |\n\
         | bytes up / down | {} / {} | |\n\
         | wall time | {:.1} s | |\n",
        r.records,
        r.points,
        r.runs,
        r.runs_gave_up,
        if r.done_under_faults { "yes" } else { "no" },
        r.retries,
        r.timeouts,
        r.transport_errors,
        r.server_errors,
        r.resent_points,
        r.server.stored,
        r.server.expected,
        r.lost(),
        r.duplicated(),
        crate::campaign::verdict(r.ok()),
        r.unsent,
        r.other_errors.len(),
        r.proxy.connections,
        r.proxy.refused,
        r.proxy.resets,
        r.proxy.stalls,
        r.proxy.bytes_up,
        r.proxy.bytes_down,
        r.wall_s
    )
}

/// The `docs/RELIABILITY.md` section of [`run_kills`]; `collect_kills` from
/// the collect crash campaign, for the total.
pub fn render_kills(r: &SyncKillReport, collect_kills: Option<u64>) -> String {
    format!(
        "## Collector crashes during sync (`kill -9` of `ofmon sync`)\n\n\
         The real `ofmon sync` binary (HTTP, batches of 20, server answers delayed 3 ms so \
         requests are in flight) killed with SIGKILL at a random moment of each run, while the \
         collector keeps collecting new records from 3 fake devices between runs; after every \
         kill, every record marked sent must be on the server; then one clean `ofmon sync`.\n\n\
         | figure | value | target |\n|---|---|---|\n\
         | kills during sync | {} (runs lived {}–{} ms; {} runs finished before their kill) | |\n\
         | kills in all, with the collect kills above | {} | ≥ 200 (long profile) |\n\
         | records measured by the devices / in the database | {} / {} | equal |\n\
         | points (device, key, ts) on the server / expected | {} / {} | equal |\n\
         | lost / duplicated | {} / {} | 0 / 0 — {} |\n\
         | records marked sent that the server lacked (checked after every kill) | {} | 0 |\n\
         | points resent after a kill (upserts of the same value) | {} | |\n\
         | final clean `ofmon sync` exit 0, nothing left unsent | {}, {} unsent | yes, 0 |\n\
         | wall time | {:.1} s | |\n",
        r.kills,
        r.kill_after_ms.0,
        r.kill_after_ms.1,
        r.finished_before_kill,
        r.kills + collect_kills.unwrap_or(0),
        r.measured,
        r.db_records,
        r.server.stored,
        r.server.expected,
        r.lost(),
        r.duplicated(),
        crate::campaign::verdict(r.ok()),
        r.sent_but_missing,
        r.resent_points,
        if r.final_clean { "yes" } else { "no" },
        r.unsent,
        r.wall_s
    )
}

/// A mosquitto broker on a free loopback port (killed on drop).
pub struct Broker {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts mosquitto (Debian package `mosquitto`), or says why not.
pub fn mosquitto() -> Result<Broker> {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| anyhow!("mosquitto is not installed (Debian package `mosquitto`)"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("m.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_packet_size 65536\n"),
    )?;
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto")?;
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            bail!("mosquitto did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Broker {
        child,
        port,
        _dir: dir,
    })
}

/// Every value received per (device name, key, ts), and message counts.
#[derive(Default)]
struct Received {
    values: BTreeMap<(String, String, i64), Vec<f64>>,
    messages: u64,
    points: u64,
    last: Option<Instant>,
}

type Shared = std::sync::Arc<std::sync::Mutex<Received>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Received> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// Subscribes to the gateway telemetry topic and records every point.
fn subscribe_gateway(port: u16) -> Result<Shared> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut mo = MqttOptions::new(format!("torture-watch-{port}"), "127.0.0.1", port);
    mo.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(mo, 1000);
    client
        .subscribe("v1/gateway/telemetry", QoS::AtLeastOnce)
        .map_err(|e| anyhow!("subscribe: {e}"))?;
    let shared: Shared = Shared::default();
    let s = shared.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                        continue;
                    };
                    let mut g = lock(&s);
                    g.messages += 1;
                    g.last = Some(Instant::now());
                    let Some(o) = v.as_object() else { continue };
                    for (name, pts) in o {
                        for pt in pts.as_array().into_iter().flatten() {
                            let Some(ts) = pt["ts"].as_i64() else {
                                continue;
                            };
                            g.points += 1;
                            for (k, val) in pt["values"].as_object().into_iter().flatten() {
                                if let Some(f) = val.as_f64() {
                                    let e =
                                        g.values.entry((name.clone(), k.clone(), ts)).or_default();
                                    if !e.contains(&f) {
                                        e.push(f);
                                    }
                                }
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("no SUBACK from the broker"))?;
    Ok(shared)
}

/// Waits until no message arrived for 300 ms (at most 10 s).
fn quiet(r: &Shared) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        if lock(r)
            .last
            .is_none_or(|l| l.elapsed() > Duration::from_millis(300))
        {
            return;
        }
    }
}

/// What the broker delivered compared with `e` (wrong: any (key, ts)
/// published with a value other than the database's, even once).
fn check_received(r: &Shared, e: &Expected, complete: bool) -> ServerCheck {
    let g = lock(r);
    let mut c = ServerCheck {
        stored: g.values.len() as u64,
        ..ServerCheck::default()
    };
    for (k, vals) in &g.values {
        match e.points.get(k) {
            None => c.extra += 1,
            Some(w) => {
                if vals.iter().any(|v| v != w) {
                    c.wrong += 1;
                }
            }
        }
    }
    if complete {
        c.expected = e.points.len() as u64;
        c.missing = e
            .points
            .keys()
            .filter(|k| !g.values.contains_key(*k))
            .count() as u64;
    }
    c
}

/// Records marked sent to `dest_url` of which the broker delivered no point.
fn sent_but_unreceived(db_path: &Path, dest_url: &str, r: &Shared, e: &Expected) -> Result<u64> {
    let db = Db::open(db_path).map_err(|e| anyhow!("{e}"))?;
    let Some(dest) =
        tbsync::outbox::find_destination(db.conn(), dest_url).map_err(|e| anyhow!("{e}"))?
    else {
        return Ok(0);
    };
    let mut st = db.conn().prepare(
        "SELECT device_id, seq FROM sync_state WHERE destination_id = ?1 AND state = 'sent'",
    )?;
    let rows = st.query_map([dest], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let g = lock(r);
    let mut bad = 0;
    for row in rows {
        let (dev, seq) = row?;
        let ok = e
            .records
            .get(&(dev, seq as u64))
            .is_some_and(|(name, ts, keys)| {
                keys.iter()
                    .all(|k| g.values.contains_key(&(name.clone(), k.clone(), *ts)))
            });
        if !ok {
            bad += 1;
        }
    }
    Ok(bad)
}

/// Figures of [`run_mqtt_link`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MqttLinkReport {
    /// Records in the collector database.
    pub records: u64,
    /// Points (device, key, ts) expected at the broker.
    pub points: u64,
    /// Sync runs through the faulty link until everything was sent.
    pub runs: u64,
    /// Of those, runs in which a device gave up or failed (next run resumes).
    pub runs_gave_up: u64,
    /// Retries (backoffs) seen.
    pub retries: u64,
    /// Whether everything was sent while the faults were still on.
    pub done_under_faults: bool,
    /// Whether the final clean run ended with every device done.
    pub final_clean: bool,
    /// Telemetry messages the subscriber received.
    pub messages: u64,
    /// Points received, counting repeats (QoS 1 redeliveries and resends).
    pub points_received: u64,
    /// Broker deliveries versus the database at the end.
    pub server: ServerCheck,
    /// Records marked sent that the broker had not delivered (after each run).
    pub sent_but_missing: u64,
    /// Timed records not marked sent at the end.
    pub unsent: u64,
    /// Device statuses other than done or gave-up, and run errors.
    pub other_errors: Vec<String>,
    /// What the proxy did.
    pub proxy: ProxyCounts,
    /// Real seconds spent.
    pub wall_s: f64,
}

impl MqttLinkReport {
    /// Lost points: missing or published with another value.
    pub fn lost(&self) -> u64 {
        self.server.missing + self.server.wrong
    }
    /// Duplicated: points no record explains, or marked sent but not delivered.
    pub fn duplicated(&self) -> u64 {
        self.server.extra + self.sent_but_missing
    }
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.lost() == 0
            && self.duplicated() == 0
            && self.unsent == 0
            && self.final_clean
            && self.server.stored == self.points
    }
}

/// The hostile-link sync over the MQTT gateway API to a real broker
/// (mosquitto) through the proxy; a subscriber records every delivered
/// point. Same options as [`run_link`].
pub fn run_mqtt_link(home: &Path, o: &SyncLinkOptions) -> Result<MqttLinkReport> {
    let started = Instant::now();
    let broker = mosquitto()?;
    let db_path = home.join("collector.sqlite");
    let _fx = Fixture::build(&db_path, o.devices, o.records)?;
    let got = subscribe_gateway(broker.port)?;
    let upstream: std::net::SocketAddr = ([127, 0, 0, 1], broker.port).into();
    let proxy = Proxy::start(upstream, o.faults.clone())?;
    let url = format!("mqtt://{}", proxy.addr());
    let e = expected(&db_path)?;
    let mut rep = MqttLinkReport {
        records: e.db_records,
        points: e.points.len() as u64,
        ..MqttLinkReport::default()
    };
    let db = Db::open(&db_path).map_err(|e| anyhow!("{e}"))?;
    let syncer = Syncer::new(
        db.conn(),
        SyncOptions {
            server: Some(url.clone()),
            transport: Transport::Gateway,
            gateway_token: Some("torture-gateway".into()),
            batch_records: o.batch,
            max_retries: o.max_retries,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            timeout: o.timeout,
            ..SyncOptions::default()
        },
    )
    .map_err(|e| anyhow!("{e}"))?;
    let mut retries = 0u64;
    let note =
        |r: std::result::Result<tbsync::Report, tbsync::Error>, rep: &mut MqttLinkReport| -> bool {
            match r {
                Ok(r) => {
                    for d in &r.devices {
                        match &d.status {
                            tbsync::DeviceStatus::Done | tbsync::DeviceStatus::GaveUp(_) => {}
                            other => {
                                if rep.other_errors.len() < 20 {
                                    rep.other_errors.push(format!("{}: {other:?}", d.name));
                                }
                            }
                        }
                    }
                    r.all_done()
                }
                Err(err) => {
                    if rep.other_errors.len() < 20 {
                        rep.other_errors.push(err.to_string());
                    }
                    false
                }
            }
        };
    loop {
        let r = syncer.run(&mut |p| {
            if let Progress::Retry { .. } = p {
                retries += 1;
            }
        });
        rep.runs += 1;
        let done = note(r, &mut rep);
        quiet(&got);
        rep.sent_but_missing += sent_but_unreceived(&db_path, &url, &got, &e)?;
        if done {
            rep.done_under_faults = true;
            break;
        }
        rep.runs_gave_up += 1;
        if rep.runs >= u64::from(o.max_runs) {
            break;
        }
    }
    proxy.set_faults(false);
    let r = syncer.run(&mut |p| {
        if let Progress::Retry { .. } = p {
            retries += 1;
        }
    });
    rep.final_clean = note(r, &mut rep);
    quiet(&got);
    drop(syncer);
    drop(db);
    rep.retries = retries;
    rep.server = check_received(&got, &e, true);
    rep.sent_but_missing += sent_but_unreceived(&db_path, &url, &got, &e)?;
    rep.unsent = unsent(&db_path, &url)?;
    {
        let g = lock(&got);
        rep.messages = g.messages;
        rep.points_received = g.points;
    }
    rep.proxy = proxy.counts();
    rep.wall_s = started.elapsed().as_secs_f64();
    Ok(rep)
}

/// The `docs/RELIABILITY.md` section of [`run_mqtt_link`].
pub fn render_mqtt_link(r: &MqttLinkReport) -> String {
    format!(
        "### The same over MQTT (gateway API, QoS 1) to a real broker\n\n\
         The same database synced with `--transport gateway` to mosquitto through the same \
         kind of faulty link; a subscriber on the broker records every point delivered (a \
         point published even once with another value than the database's counts as lost).\n\n\
         | figure | value | target |\n|---|---|---|\n\
         | records / points | {} / {} | |\n\
         | sync runs until everything was sent | {} ({} incomplete; done under faults: {}) | |\n\
         | retries (backoffs) | {} | |\n\
         | telemetry messages / points delivered (with QoS 1 repeats) | {} / {} | |\n\
         | distinct points delivered / expected | {} / {} | equal |\n\
         | lost / duplicated | {} / {} | 0 / 0 — {} |\n\
         | records still unsent after the clean run | {} | 0 |\n\
         | proxy: connections, refused, resets, stalls | {}, {}, {}, {} | |\n\
         | wall time | {:.1} s | |\n",
        r.records,
        r.points,
        r.runs,
        r.runs_gave_up,
        if r.done_under_faults { "yes" } else { "no" },
        r.retries,
        r.messages,
        r.points_received,
        r.server.stored,
        r.server.expected,
        r.lost(),
        r.duplicated(),
        crate::campaign::verdict(r.ok()),
        r.unsent,
        r.proxy.connections,
        r.proxy.refused,
        r.proxy.resets,
        r.proxy.stalls,
        r.wall_s
    )
}
