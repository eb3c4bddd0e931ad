//! `sync-bench`: records/s from a collector database to the ThingsBoard mock
//! over loopback, in one run:
//!
//! - `http` — this sync engine over HTTP (batched, keep-alive, outbox marks);
//! - `mqtt` — this sync engine over the MQTT device API (QoS 1, PUBACK marks),
//!   through a mosquitto started on a free loopback port (skipped if the
//!   `mosquitto` binary is missing);
//! - `original` — the original app's way: one unbatched POST per device with
//!   the whole dump as one JSON array, one point per CT (so the server keeps
//!   only the last CT of each interval), no outbox.
//!
//! A record is one interval of one device with all its keys (1 V + 3 CT).
//! Usage: `sync-bench [--devices N] [--records M] [--json]`
//! (`cargo xtask bench sync`, or `cargo run --release -p sync-bench`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde_json::json;
use tbsync::{SyncOptions, Syncer, Transport};
use thingsboard_mock::MockServer;

/// CPU time (user + system) of this process so far: the client and the
/// in-process mock together (the machine is shared, so wall time alone
/// depends on other load).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the comm field.
    let ticks = f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
    Duration::from_millis(ticks * 10)
}

struct Row {
    what: String,
    records: u64,
    wall: Duration,
    cpu: Duration,
}

fn timed(what: &str, f: impl FnOnce() -> Result<(u64, Duration), String>) -> Result<Row, String> {
    let c0 = cpu();
    let (records, wall) = f()?;
    Ok(Row {
        what: what.to_string(),
        records,
        wall,
        cpu: cpu().saturating_sub(c0),
    })
}

/// CPU seconds per 100,000 records.
fn per_100k(r: &Row) -> f64 {
    r.cpu.as_secs_f64() * 100_000.0 / (r.records.max(1) as f64)
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fill(conn: &Connection, devices: u64, records: u64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    for d in 0..devices {
        let id = format!("BENCH{d:04}");
        tx.execute(
            "INSERT INTO device (id, ssid, paired, name, token, added_ms)
             VALUES (?1, ?1, 1, ?2, ?3, 0)",
            params![id, format!("bench-{d}"), format!("token-{d}")],
        )?;
        let mut rec = tx.prepare_cached(
            "INSERT INTO record (device_id, seq, boot_id, uptime_ms, duration_ms, flags,
             frequency_mhz, v1_cv, ts_ms, ts_uncertainty_ms, collected_ms)
             VALUES (?1, ?2, 1, ?3, 60000, 0, ?4, ?5, ?6, ?7, 0)",
        )?;
        let mut circ = tx.prepare_cached(
            "INSERT INTO circuit (device_id, seq, ct, i_rms_ma, real_power_dw, real_power_min_dw,
             real_power_max_dw, apparent_power_dva, power_factor_milli, import_mwh, export_mwh)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5, ?6, ?7, ?8, 0)",
        )?;
        for s in 1..=records as i64 {
            rec.execute(params![
                id,
                s,
                s * 60_000,
                49_950 + s % 100,
                23_000 + s % 300,
                1_700_000_000_000 + s * 60_000,
                (s % 5) * 10
            ])?;
            for ct in 1..=3i64 {
                circ.execute(params![
                    id,
                    s,
                    ct,
                    1000 + (s * ct) % 9000,
                    2000 + (s * 7 * ct) % 20000,
                    2500 + (s * 7 * ct) % 20000,
                    900 + s % 100,
                    s * 1500 * ct
                ])?;
            }
        }
    }
    tx.commit()
}

fn new_db(
    dir: &std::path::Path,
    name: &str,
    devices: u64,
    records: u64,
) -> Result<Connection, String> {
    let path = dir.join(name);
    drop(collector::Db::open(&path).map_err(|e| e.to_string())?);
    let conn = tbsync::outbox::open(&path).map_err(|e| e.to_string())?;
    fill(&conn, devices, records).map_err(|e| e.to_string())?;
    Ok(conn)
}

fn engine(conn: &Connection, url: String, transport: Transport) -> Result<(u64, Duration), String> {
    let t = Instant::now();
    let r = Syncer::new(
        conn,
        SyncOptions {
            server: Some(url),
            transport,
            ..SyncOptions::default()
        },
    )
    .and_then(|s| s.run(&mut |_| {}))
    .map_err(|e| e.to_string())?;
    if !r.all_done() {
        return Err(format!("sync did not finish: {r:?}"));
    }
    Ok((r.sent(), t.elapsed()))
}

/// The original app: per device, the whole dump as one array, one point per CT.
fn original(conn: &Connection, url: &str, devices: u64) -> Result<(u64, Duration), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = reqwest::Client::new();
    let t = Instant::now();
    let mut n = 0;
    for d in 0..devices {
        let id = format!("BENCH{d:04}");
        let mut st = conn
            .prepare(
                "SELECT r.ts_ms, c.ct, c.real_power_dw, c.apparent_power_dva, c.i_rms_ma, r.v1_cv,
                        c.import_mwh, c.power_factor_milli
                 FROM record r JOIN circuit c ON c.device_id = r.device_id AND c.seq = r.seq
                 WHERE r.device_id = ?1 ORDER BY r.seq, c.ct",
            )
            .map_err(|e| e.to_string())?;
        let mut pts = Vec::new();
        let mut rows = st.query([&id]).map_err(|e| e.to_string())?;
        while let Some(r) = rows.next().map_err(|e| e.to_string())? {
            let g = |i: usize| r.get::<_, i64>(i).unwrap_or(0) as f64;
            if r.get::<_, i64>(1).unwrap_or(0) == 1 {
                n += 1;
            }
            pts.push(json!({"ts": g(0) as i64, "values": {
                "ct_id": g(1), "real_power": g(2) / 10.0, "apparent_power": g(3) / 10.0,
                "i_rms": g(4) / 1000.0, "v_rms": g(5) / 100.0, "kwh": g(6) / 1e6,
                "power_factor": g(7) / 1000.0}}));
        }
        let body = serde_json::to_vec(&pts).map_err(|e| e.to_string())?;
        let resp = rt
            .block_on(
                client
                    .post(format!("{url}/api/v1/token-{d}/telemetry"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send(),
            )
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("original: {}", resp.status()));
        }
    }
    Ok((n, t.elapsed()))
}

struct Mosquitto(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mosquitto() -> Option<(Mosquitto, u16)> {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir().ok()?;
    let conf = dir.path().join("m.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .ok()?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let m = Mosquitto(child, dir);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(5) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((m, port))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let devices = arg(&args, "--devices", 5);
    let records = arg(&args, "--records", 20_000);
    let json_out = args.iter().any(|a| a == "--json");
    match run(devices, records) {
        Ok(rows) => {
            if json_out {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        json!({"what": r.what, "records": r.records,
                        "seconds": r.wall.as_secs_f64(),
                        "records_per_s": r.records as f64 / r.wall.as_secs_f64(),
                        "cpu_seconds": r.cpu.as_secs_f64(),
                        "records_per_cpu_s": r.records as f64 / r.cpu.as_secs_f64().max(0.01),
                        "cpu_seconds_per_100k": per_100k(r)})
                    })
                    .collect();
                println!(
                    "{}",
                    json!({"bench": "sync", "devices": devices, "records_per_device": records, "results": v})
                );
            } else {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(
                    o,
                    "sync bench: {devices} devices × {records} records (1 V + 3 CT), loopback to the mock"
                );
                let _ = writeln!(
                    o,
                    "{:<44} {:>8} {:>8} {:>10} {:>8} {:>13} {:>14}",
                    "what",
                    "records",
                    "wall s",
                    "records/s",
                    "cpu s",
                    "records/cpu-s",
                    "cpu-s per 100k"
                );
                for r in &rows {
                    let _ = writeln!(
                        o,
                        "{:<44} {:>8} {:>8.2} {:>10.0} {:>8.2} {:>13.0} {:>14.2}",
                        r.what,
                        r.records,
                        r.wall.as_secs_f64(),
                        r.records as f64 / r.wall.as_secs_f64(),
                        r.cpu.as_secs_f64(),
                        r.records as f64 / r.cpu.as_secs_f64().max(0.01),
                        per_100k(r)
                    );
                }
                let _ = writeln!(
                    o,
                    "records/s = wall clock (depends on other load on the machine); cpu = user + system time of \
                     client + in-process mock (mosquitto not counted), the load-independent figure; \
                     target: ≥ 50,000 records/s over HTTP"
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sync-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(devices: u64, records: u64) -> Result<Vec<Row>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mock = MockServer::start().map_err(|e| e.to_string())?;
    for d in 0..devices {
        mock.add_device(&format!("bench-{d}"), &format!("token-{d}"));
    }
    let conn = new_db(dir.path(), "http.db", devices, records)?;
    rows.push(timed(
        "http: tbsync, batched 1000, pipelined, marks",
        || engine(&conn, mock.url(), Transport::Http),
    )?);
    // The original's way, into a fresh mock so both start empty.
    let mock2 = MockServer::start().map_err(|e| e.to_string())?;
    for d in 0..devices {
        mock2.add_device(&format!("bench-{d}"), &format!("token-{d}"));
    }
    rows.push(timed("original: 1 POST/device, 1 point per CT", || {
        original(&conn, &mock2.url(), devices)
    })?);
    match mosquitto() {
        Some((_m, port)) => {
            let conn = new_db(dir.path(), "mqtt.db", devices, records)?;
            rows.push(timed("mqtt: tbsync device API, QoS 1 (mosquitto)", || {
                engine(&conn, format!("mqtt://127.0.0.1:{port}"), Transport::Mqtt)
            })?);
        }
        None => {
            eprintln!("sync-bench: mosquitto not found; MQTT skipped (apt-get install mosquitto)")
        }
    }
    Ok(rows)
}
