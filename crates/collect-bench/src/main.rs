//! `collect-bench`: how fast the collector empties a device's backlog, next
//! to the original system's way of doing it, in the same run.
//!
//! `cargo run --release -p collect-bench -- [--json] [--days N]
//! [--baseline-rows N|all] [--page N] [--dir DIR] [--no-baseline] [--runs N]`
//! (`--no-baseline`: ours only, e.g. under a profiler)
//!
//! **Ours.** `days` of 1-minute 1 V + 3 CT records (a deterministic household
//! simulated per second, `store::workload`) are appended with the real
//! `store::Store` to an emulated flash image, which becomes the flash file of
//! a real simulated device (`sim::Fleet`: the `device` core and its picoserve
//! router on loopback). Building the image replaces the simulator's own
//! history pre-fill (~75 s of metering for 30 days); the device-side read
//! path and the wire format are the real ones. The collector library pairs
//! the device (not timed), then `collector::collect::collect` runs against a
//! fresh on-disk SQLite database (WAL, `synchronous=FULL`): records pages,
//! commits, acks after each commit, clock set, events, time reconstruction.
//! The stored rows are checked against what was generated. This is done
//! `--runs` times (default 3, each with a freshly booted device and a new
//! database); the run with the median time is reported (the machine may be
//! shared), all times are in the JSON.
//!
//! **Baseline: the original's protocol.** One `GET /telemetry` returning every
//! interval as raw 30-byte records per CT (`u16 ct_id, f32 real_power, f32
//! apparent_power, f32 i_rms, f32 v_rms, f32 kwh, u64 timestamp`, built with
//! the device's own legacy encoder from the same records), served from
//! memory by a minimal HTTP server (no flash read cost: this favours the
//! baseline), then one `INSERT` per row in autocommit mode, as the Flutter app
//! did. Two durability settings are run:
//! - `synchronous=FULL` (same guarantee as ours): each row is one fsync, so
//!   by default only the first `--baseline-rows` rows (2000) are inserted and
//!   the insert time is extrapolated linearly to all rows (`--baseline-rows
//!   all` measures everything; minutes on a typical disk);
//! - `synchronous=NORMAL` (commits not durable on power loss), every row.
//!
//! Wire bytes are HTTP body bytes (headers are a few hundred bytes per
//! request for both).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use collector::client::HttpDevice;
use collector::collect::{NoProgress, Options, collect};
use collector::db::Db;
use collector::pair::{PairOptions, pair};
use rusqlite::{Connection, params};
use serde::Serialize;
use store::emulated::EmulatedFlash;
use store::{Config, Record, Store};

const INTERVAL_MS: u64 = 60_000;
/// A made-up boot id for the pre-built history.
const HISTORY_BOOT: u32 = 0x0FB0_0001;

struct Args {
    json: bool,
    days: u64,
    /// `None`: all rows.
    baseline_rows: Option<u64>,
    page: Option<u32>,
    dir: Option<PathBuf>,
    no_baseline: bool,
    runs: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        json: false,
        days: 30,
        baseline_rows: Some(2000),
        page: None,
        dir: None,
        no_baseline: false,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--json" => a.json = true,
            "--no-baseline" => a.no_baseline = true,
            "--runs" => a.runs = value("--runs")?.parse().context("--runs: a number")?,
            "--days" => a.days = value("--days")?.parse().context("--days: a whole number")?,
            "--baseline-rows" => {
                let v = value("--baseline-rows")?;
                a.baseline_rows = if v == "all" {
                    None
                } else {
                    Some(v.parse().context("--baseline-rows: a number or `all`")?)
                };
            }
            "--page" => a.page = Some(value("--page")?.parse().context("--page: a number")?),
            "--dir" => a.dir = Some(PathBuf::from(value("--dir")?)),
            "-h" | "--help" => {
                println!(
                    "usage: collect-bench [--json] [--days N] [--baseline-rows N|all] [--page N] [--dir DIR] [--no-baseline] [--runs N]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if a.days == 0 {
        bail!("--days must be at least 1");
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(a)
}

fn now_ms() -> u64 {
    u64::try_from(collector::now_ms()).unwrap_or(0)
}

/// `days` of 1-minute intervals of one boot, ending now, seq 1...
fn history(days: u64) -> Vec<Record> {
    let n = days * 1440;
    let start = now_ms() - n * INTERVAL_MS;
    let mut h = store::workload::Household::new(1);
    (1..=n)
        .map(|i| {
            let mut r = h.interval();
            r.seq = i;
            r.boot_id = HISTORY_BOOT;
            r.uptime_ms = i * INTERVAL_MS;
            r.wall_ms = Some(start + i * INTERVAL_MS);
            r.normalized()
        })
        .collect()
}

/// Appends `records` with the real store to an erased flash and writes the
/// image to `path`. Returns the store's bytes programmed per record.
fn write_flash(path: &Path, records: &[Record]) -> Result<f64> {
    let cfg = Config::default();
    let (mut store, _) = Store::<EmulatedFlash>::mount(EmulatedFlash::new(cfg.size as usize), cfg)
        .map_err(|e| anyhow!("mounting the store: {:?}", e.error))?;
    for r in records {
        let seq = store
            .append(r)
            .map_err(|e| anyhow!("appending seq {}: {e}", r.seq))?;
        if seq != r.seq {
            bail!("store assigned seq {seq} to record {}", r.seq);
        }
    }
    if store.next_seq() != records.len() as u64 + 1 {
        bail!("the store merged or lost records: the backlog does not fit the flash");
    }
    let flash = store.into_flash();
    let per = flash.bytes_programmed() as f64 / records.len().max(1) as f64;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, flash.image()).with_context(|| format!("writing {}", path.display()))?;
    Ok(per)
}

/// Sums that pin down the stored values: (records, Σ import mWh, Σ real power dW, Σ V cV).
type Check = (u64, i64, i64, i64);

fn expected(records: &[Record]) -> Check {
    let mut c = (records.len() as u64, 0i64, 0i64, 0i64);
    for r in records {
        for ci in r.circuits() {
            c.1 += ci.import_mwh as i64;
            c.2 += i64::from(ci.real_power_dw);
        }
        c.3 += i64::from(r.voltages[0].rms_cv);
    }
    c
}

fn stored(db: &Db) -> Result<Check> {
    let conn = db.conn();
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM record", [], |r| r.get(0))?;
    let v: i64 = conn.query_row("SELECT COALESCE(SUM(v1_cv), 0) FROM record", [], |r| {
        r.get(0)
    })?;
    let (imp, p): (i64, i64) = conn.query_row(
        "SELECT COALESCE(SUM(import_mwh), 0), COALESCE(SUM(real_power_dw), 0) FROM circuit",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((u64::try_from(n).unwrap_or(0), imp, p, v))
}

#[derive(Serialize)]
struct Ours {
    seconds: f64,
    wire_bytes: u64,
    bytes_per_record: f64,
    records_per_s: f64,
    records: u64,
    pages: u64,
    page_limit: u32,
    flash_bytes_per_record: f64,
    untimed_setup_s: f64,
    /// CPU time of the collecting thread (Linux; steadier than wall time on
    /// a loaded machine; excludes the device thread and IO waits).
    collector_cpu_s: Option<f64>,
    /// Seconds of every run (the median one is reported above).
    runs_s: Vec<f64>,
}

/// CPU time of the calling thread so far (Linux `schedstat`), seconds.
fn thread_cpu_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// `runs` runs of [`run_once`]; the median one, with every run's time.
fn run_ours(dir: &Path, records: &[Record], page: Option<u32>, runs: usize) -> Result<Ours> {
    let mut all = Vec::new();
    for i in 0..runs {
        all.push(run_once(&dir.join(format!("run-{i}")), records, page)?);
    }
    let mut times: Vec<f64> = all.iter().map(|o| o.seconds).collect();
    all.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let mut median = all.swap_remove(all.len() / 2);
    times.sort_by(f64::total_cmp);
    median.runs_s = times;
    Ok(median)
}

fn run_once(dir: &Path, records: &[Record], page: Option<u32>) -> Result<Ours> {
    let setup = Instant::now();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let home = dir.join("sim-home");
    let mac = sim::sim_mac(0);
    let id = device::identity::mac_hex(&mac);
    let flash_per = write_flash(
        &sim::home::device_dir(&home, &id).join("flash.bin"),
        records,
    )?;
    let fleet = sim::Fleet::start(sim::SimOptions {
        devices: 1,
        base_port: 0,
        home: home.clone(),
        speed: 1.0,
        history_days: 0.0,
        phases: 3,
        interval_s: 60,
        ..sim::SimOptions::default()
    })
    .map_err(|e| anyhow!("starting the simulated device: {e}"))?;
    // No live metering during the measurement: the backlog is the workload.
    fleet.pause(true);
    let dev = fleet
        .devices()
        .into_iter()
        .next()
        .context("the fleet has no device")?;
    if dev.id != id {
        bail!("the simulated device is {}, expected {id}", dev.id);
    }
    let secret = sim::home::fleet_secret(&home).map_err(|e| anyhow!("fleet key: {e}"))?;
    let mut db = Db::open(&dir.join("ofmon.db"))?;
    let mut http = HttpDevice::new(&dev.url, None, Duration::from_secs(60));
    pair(
        &db,
        &mut http,
        &secret,
        &PairOptions {
            token: "bench".into(),
            ..PairOptions::default()
        },
    )?;
    let untimed_setup_s = setup.elapsed().as_secs_f64();

    let mut opts = Options::default();
    if let Some(p) = page {
        opts.page = p;
    }
    let cpu0 = thread_cpu_s();
    let s = collect(&mut db, &http, Some(&dev.url), &opts, &mut NoProgress);
    let collector_cpu_s = thread_cpu_s().zip(cpu0).map(|(b, a)| b - a);
    if let Some(e) = &s.error {
        bail!("collect failed: {e}");
    }
    let want = expected(records);
    let got = stored(&db)?;
    if got != want || s.new_records != records.len() as u64 {
        bail!("stored data differs from the device's: {got:?} != {want:?}");
    }
    fleet.stop();
    Ok(Ours {
        seconds: s.seconds,
        wire_bytes: s.bytes,
        bytes_per_record: s.bytes as f64 / s.new_records as f64,
        records_per_s: s.new_records as f64 / s.seconds,
        records: s.new_records,
        pages: s.batches,
        page_limit: opts.page,
        flash_bytes_per_record: flash_per,
        untimed_setup_s,
        collector_cpu_s,
        runs_s: Vec::new(),
    })
}

#[derive(Serialize)]
struct Baseline {
    synchronous: &'static str,
    seconds: f64,
    download_s: f64,
    insert_s: f64,
    wire_bytes: u64,
    bytes_per_record: f64,
    records_per_s: f64,
    rows: u64,
    rows_inserted: u64,
    extrapolated: bool,
}

/// Serves `body` once, like the original's `GET /telemetry`.
fn serve_dump(body: Vec<u8>) -> Result<(String, std::thread::JoinHandle<()>)> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding the baseline server")?;
    let url = format!("http://{}", l.local_addr()?);
    let h = std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else {
            return;
        };
        let _ = s.set_nodelay(true);
        let mut head = Vec::new();
        let mut buf = [0u8; 2048];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(&body);
    });
    Ok((url, h))
}

fn download_dump(records: &[Record]) -> Result<(Vec<u8>, f64)> {
    let mut body = Vec::with_capacity(records.len() * 3 * device::legacy::RECORD_LEN);
    for r in records {
        device::legacy::push_records(&mut body, r);
    }
    let (url, server) = serve_dump(body)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .proxy(None)
        .build()
        .into();
    let t = Instant::now();
    let got = agent
        .get(&format!("{url}/telemetry"))
        .call()
        .context("GET /telemetry")?
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .context("reading /telemetry")?;
    let secs = t.elapsed().as_secs_f64();
    let _ = server.join();
    Ok((got, secs))
}

/// One INSERT per 30-byte row, autocommit, into a fresh database.
fn baseline_insert(
    path: &Path,
    dump: &[u8],
    synchronous: &'static str,
    max_rows: Option<u64>,
) -> Result<(f64, u64)> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS ct_readings (
            id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, ct_id INTEGER NOT NULL,
            real_power REAL, apparent_power REAL, i_rms REAL, v_rms REAL, kwh REAL,
            power_factor REAL, ts INTEGER)",
    )?;
    let f32_at = |b: &[u8], o: usize| f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let t = Instant::now();
    let mut n = 0u64;
    for row in dump.chunks_exact(device::legacy::RECORD_LEN) {
        if max_rows.is_some_and(|m| n >= m) {
            break;
        }
        let ct = u16::from_le_bytes([row[0], row[1]]);
        let (real, apparent) = (f32_at(row, 2), f32_at(row, 6));
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&row[22..30]);
        let pf = if apparent > 0.0 { real / apparent } else { 0.0 };
        conn.execute(
            "INSERT INTO ct_readings (device, ct_id, real_power, apparent_power, i_rms, v_rms, kwh, power_factor, ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                "SEM-02:0f:4d:00:00:00",
                ct,
                f64::from(real),
                f64::from(apparent),
                f64::from(f32_at(row, 10)),
                f64::from(f32_at(row, 14)),
                f64::from(f32_at(row, 18)),
                f64::from(pf),
                i64::try_from(u64::from_le_bytes(ts)).unwrap_or(i64::MAX),
            ],
        )?;
        n += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    let stored: i64 = conn.query_row("SELECT COUNT(*) FROM ct_readings", [], |r| r.get(0))?;
    if u64::try_from(stored).ok() != Some(n) {
        bail!("baseline stored {stored} rows, inserted {n}");
    }
    Ok((secs, n))
}

fn run_baseline(dir: &Path, records: &[Record], full_rows: Option<u64>) -> Result<Vec<Baseline>> {
    let (dump, download_s) = download_dump(records)?;
    let rows = (dump.len() / device::legacy::RECORD_LEN) as u64;
    if rows != records.len() as u64 * 3 {
        bail!("the dump holds {rows} rows, expected {}", records.len() * 3);
    }
    let mut out = Vec::new();
    for (sync, limit) in [("FULL", full_rows), ("NORMAL", None)] {
        let path = dir.join(format!("original-{}.db", sync.to_lowercase()));
        let (secs, n) = baseline_insert(&path, &dump, sync, limit)?;
        let insert_s = secs * rows as f64 / n.max(1) as f64;
        let seconds = download_s + insert_s;
        out.push(Baseline {
            synchronous: sync,
            seconds,
            download_s,
            insert_s,
            wire_bytes: dump.len() as u64,
            bytes_per_record: dump.len() as f64 / records.len() as f64,
            records_per_s: records.len() as f64 / seconds,
            rows,
            rows_inserted: n,
            extrapolated: n < rows,
        });
    }
    Ok(out)
}

#[derive(Serialize)]
struct Ratio {
    against: &'static str,
    seconds: f64,
    wire_bytes: f64,
    records_per_s: f64,
}

#[derive(Serialize)]
struct Report {
    days: u64,
    records: u64,
    interval_s: u64,
    voltages: u8,
    circuits: u8,
    ours: Ours,
    baseline: Vec<Baseline>,
    ratios: Vec<Ratio>,
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            tempfile::tempdir_in(d)?
        }
        None => {
            tmp = tempfile::tempdir()?;
            tempfile::tempdir_in(tmp.path())?
        }
    };
    let records = history(args.days);
    if !args.json {
        eprintln!(
            "collect-bench: {} days = {} records of 1 V + 3 CT; building the flash image, booting the device…",
            args.days,
            records.len()
        );
    }
    let ours = run_ours(dir.path(), &records, args.page, args.runs)?;
    if !args.json {
        eprintln!("ours done; running the baseline…");
    }
    let baseline = if args.no_baseline {
        Vec::new()
    } else {
        run_baseline(dir.path(), &records, args.baseline_rows)?
    };
    let ratios = baseline
        .iter()
        .map(|b| Ratio {
            against: b.synchronous,
            seconds: b.seconds / ours.seconds,
            wire_bytes: b.wire_bytes as f64 / ours.wire_bytes as f64,
            records_per_s: ours.records_per_s / b.records_per_s,
        })
        .collect();
    let report = Report {
        days: args.days,
        records: records.len() as u64,
        interval_s: INTERVAL_MS / 1000,
        voltages: 1,
        circuits: 3,
        ours,
        baseline,
        ratios,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "\n{} days of 1-minute 1 V + 3 CT backlog = {} records, one device on loopback, SQLite on disk (WAL)\n",
        r.days, r.records
    );
    println!(
        "{:<44} {:>10} {:>14} {:>12}",
        "", "seconds", "wire B/record", "records/s"
    );
    let o = &r.ours;
    println!(
        "{:<44} {:>10.3} {:>14.1} {:>12.0}",
        "ours: records pages + ack, synchronous=FULL",
        o.seconds,
        o.bytes_per_record,
        o.records_per_s
    );
    for b in &r.baseline {
        let name = format!("original: dump + INSERT/row, {}", b.synchronous);
        let note = if b.extrapolated {
            format!(
                "  (inserts extrapolated from {} of {} rows)",
                b.rows_inserted, b.rows
            )
        } else {
            String::new()
        };
        println!(
            "{:<44} {:>10.3} {:>14.1} {:>12.0}{note}",
            name, b.seconds, b.bytes_per_record, b.records_per_s
        );
    }
    println!();
    for x in &r.ratios {
        println!(
            "ours vs original ({:<6}): {:>8.1}x faster, {:>5.1}x fewer wire bytes, {:>8.1}x records/s",
            x.against, x.seconds, x.wire_bytes, x.records_per_s
        );
    }
    let runs: Vec<String> = o.runs_s.iter().map(|s| format!("{s:.3}")).collect();
    println!(
        "\nours: median of {} runs: [{}] s",
        runs.len(),
        runs.join(", ")
    );
    if let Some(c) = o.collector_cpu_s {
        println!("ours: collector thread CPU {c:.3} s in the median run");
    }
    println!(
        "ours: {} pages of ≤ {} records, {} body bytes, store {:.1} flash bytes/record; untimed setup (image, boot, pair) {:.2} s",
        o.pages, o.page_limit, o.wire_bytes, o.flash_bytes_per_record, o.untimed_setup_s
    );
    if let Some(b) = r.baseline.first() {
        println!(
            "original: one GET of {} bytes in {:.3} s; {} rows (3 per record)",
            b.wire_bytes, b.download_s, b.rows
        );
    }
}
