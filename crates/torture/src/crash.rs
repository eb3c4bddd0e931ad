//! Collector crashes: `ofmon collect` (the real binary) killed with SIGKILL
//! at random moments while a simulated device keeps recording, then a
//! clean final collect. Every record the device committed must be in the
//! database exactly once, and after every kill the device must never have
//! been acknowledged beyond what the database durably holds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::links::{compare, db_records, start_device};

/// Parameters of [`run`].
#[derive(Clone, Debug)]
pub struct CrashOptions {
    /// Kills.
    pub kills: u32,
    /// Seed of the kill moments.
    pub seed: u64,
    /// Days of backlog on the device at the start.
    pub history_days: f64,
    /// Records per request (small pages: more commit/ack boundaries to hit).
    pub page: u32,
}

impl CrashOptions {
    /// CI profile.
    pub fn short() -> Self {
        Self {
            kills: 20,
            seed: 0xC0FFEE,
            history_days: 0.04,
            page: 50,
        }
    }
    /// On-demand profile.
    pub fn long() -> Self {
        Self {
            kills: 200,
            seed: 0xC0FFEF,
            history_days: 0.1,
            page: 50,
        }
    }
}

/// Figures of a crash campaign.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CrashReport {
    /// `kill -9` delivered while `ofmon collect` was running.
    pub kills: u64,
    /// Runs that finished before the kill landed.
    pub finished_before_kill: u64,
    /// Records the device committed (measured).
    pub device_records: u64,
    /// Records in the database after the final collect.
    pub collected: u64,
    /// Committed records missing or different (must be 0).
    pub lost: u64,
    /// Extra rows for a seq (must be 0).
    pub duplicated: u64,
    /// Kills after which the device's acked seq exceeded the database's last seq (must be 0).
    pub ack_ahead: u64,
    /// Shortest and longest time a run lived before its kill (ms).
    pub kill_after_ms: (u64, u64),
    /// Real seconds spent.
    pub wall_s: f64,
}

impl CrashReport {
    /// Whether nothing was lost, duplicated or acked too early.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.ack_ahead == 0
            && self.collected == self.device_records
    }
}

/// Finds the `ofmon` binary: `$TORTURE_OFMON`, next to the running test or
/// campaign executable (same target profile dir), else builds it with cargo.
pub fn ofmon_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("TORTURE_OFMON") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("current exe")?;
    for dir in exe.ancestors().skip(1).take(2) {
        let cand = dir.join(format!("ofmon{}", std::env::consts::EXE_SUFFIX));
        if cand.is_file() {
            return Ok(cand);
        }
    }
    // Build it (tests of this crate cannot depend on another package's bin).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let st = Command::new(cargo)
        .args(["build", "-q", "-p", "ofmon"])
        .current_dir(&root)
        .status()
        .context("running cargo build -p ofmon")?;
    if !st.success() {
        bail!("cargo build -p ofmon failed");
    }
    let dir = exe
        .ancestors()
        .nth(2)
        .ok_or_else(|| anyhow!("no target dir"))?;
    let cand = dir.join(format!("ofmon{}", std::env::consts::EXE_SUFFIX));
    if cand.is_file() {
        Ok(cand)
    } else {
        bail!("ofmon not found at {} after building", cand.display())
    }
}

fn acked_seq(url: &str) -> Result<u64> {
    let r = crate::http::request(url, "GET", "/api/v1/info", &[], b"")?;
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    Ok(v["acked_seq"].as_u64().unwrap_or(0))
}

/// Runs the campaign in `home` with the `ofmon` at `ofmon`.
pub fn run(home: &Path, ofmon: &Path, o: &CrashOptions) -> Result<CrashReport> {
    let started = Instant::now();
    let fleet = start_device(home, o.history_days, 1, 1.0, o.seed)?;
    let info = fleet
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no device"))?;
    // Pair through the CLI, as a user would.
    let out = Command::new(ofmon)
        .args(["pair", &info.url, "--token", "torture", "--home"])
        .arg(home)
        .env_remove("OFMON_HOME")
        .output()
        .context("running ofmon pair")?;
    if !out.status.success() {
        bail!(
            "ofmon pair failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The device keeps recording from now on (a moving target: a record
    // every second). Real speed: at higher speeds the device clock races
    // ahead and a paused device then refuses a fresh collector's timestamps
    // as stale (a simulator artefact, noted in docs/RELIABILITY.md).
    fleet.pause(false);
    let mut rng = Rng(o.seed | 1);
    let mut rep = CrashReport {
        kill_after_ms: (u64::MAX, 0),
        ..CrashReport::default()
    };
    // How long does an uninterrupted short run take? Kill moments spread over it.
    let mut budget_ms = 300u64;
    while rep.kills < u64::from(o.kills) {
        let mut child = Command::new(ofmon)
            .args([
                "collect",
                &info.url,
                "--page",
                &o.page.to_string(),
                "--home",
            ])
            .arg(home)
            .env_remove("OFMON_HOME")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning ofmon collect")?;
        let at = Duration::from_millis(rng.below(budget_ms + 1));
        let (ran, killed) = kill_after(&mut child, at);
        if !killed {
            rep.finished_before_kill += 1;
            // Give it more rope next time, so kills land inside runs.
            budget_ms = (ran.as_millis() as u64).max(budget_ms / 2).max(50);
            // The device adds records meanwhile; make the next run longer.
            std::thread::sleep(Duration::from_millis(rng.below(300)));
            continue;
        }
        let lived = ran.as_millis() as u64;
        rep.kills += 1;
        rep.kill_after_ms.0 = rep.kill_after_ms.0.min(lived);
        rep.kill_after_ms.1 = rep.kill_after_ms.1.max(lived);
        // Never acked beyond what is durably stored.
        let acked = acked_seq(&info.url)?;
        let db_file = find_db(home)?;
        let device_id = info.id.clone();
        let (have, _) = db_records(&db_file, &device_id)?;
        let last = have.last_key_value().map_or(0, |(k, _)| *k);
        if acked > last {
            rep.ack_ahead += 1;
        }
    }
    // Freeze the device, collect cleanly, compare.
    fleet.pause(true);
    std::thread::sleep(Duration::from_millis(300));
    let committed = fleet.committed(0);
    let out = Command::new(ofmon)
        .args(["collect", &info.url, "--home"])
        .arg(home)
        .env_remove("OFMON_HOME")
        .output()
        .context("final ofmon collect")?;
    if !out.status.success() {
        bail!(
            "final collect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db_file = find_db(home)?;
    let (have, rows) = db_records(&db_file, &info.id)?;
    rep.device_records = committed.len() as u64;
    rep.collected = have.len() as u64;
    rep.duplicated = rows - have.len() as u64;
    rep.lost = compare(&committed, &have);
    if rep.kill_after_ms.0 == u64::MAX {
        rep.kill_after_ms.0 = 0;
    }
    rep.wall_s = started.elapsed().as_secs_f64();
    fleet.stop();
    Ok(rep)
}

/// The collector database in an ofmon home.
/// Lets `child` run for at most `at`, then kills it (SIGKILL on Unix) and
/// reaps it. Returns how long it ran (up to its exit, or up to the reaping
/// after the kill) and whether it was killed rather than finished first.
pub(crate) fn kill_after(child: &mut Child, at: Duration) -> (Duration, bool) {
    let t = Instant::now();
    while t.elapsed() < at {
        if child.try_wait().ok().flatten().is_some() {
            return (t.elapsed(), false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    (t.elapsed(), true)
}

fn find_db(home: &Path) -> Result<PathBuf> {
    let h = collector::home::Home::resolve(Some(home)).map_err(|e| anyhow!("{e}"))?;
    Ok(h.file(collector::home::DB_FILE))
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 { 0 } else { self.0 % n }
    }
}
