//! `sync-bench`: records/s from a collector database to the ThingsBoard mock
//! over loopback, in one run:
//!
//! - `http` — this sync engine over HTTP (batched, keep-alive, pipelined,
//!   outbox marks);
//! - `original` — the original app's way: one unbatched POST per device with
//!   the whole dump as one JSON array, one point per CT (so the server keeps
//!   only the last CT of each interval), no outbox;
//! - `mqtt` — this sync engine over the MQTT device API (QoS 1, PUBACK marks),
//!   through a mosquitto started on a free loopback port (skipped if the
//!   `mosquitto` binary is missing).
//!
//! The mock runs in a child process (this binary with `--serve-mock`), so
//! the CPU time of this process is the client's alone (database reads, JSON,
//! HTTP, marks) and the mock's is measured separately: on a shared 2-core
//! machine, records per client CPU-second is the figure that does not depend
//! on other load; wall-clock records/s is the median of `--runs` runs.
//!
//! A record is one interval of one device with all its keys (1 V + 3 CT,
//! 25–26 keys). Usage:
//! `sync-bench [--devices N] [--records M] [--runs R] [--only http|original|mqtt] [--json]`
//! (`cargo xtask bench sync`, or `cargo run --release -p sync-bench`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde_json::json;
use tbsync::{SyncOptions, Syncer, Transport};
use thingsboard_mock::MockServer;

/// CPU time (user + system) of this process so far, all threads including
/// finished ones (`CLOCK_PROCESS_CPUTIME_ID`, ns resolution).
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// CPU time of another process from `/proc/PID/stat` (10 ms ticks).
fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the comm field.
    let ticks = f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
    Duration::from_millis(ticks * 10)
}

/// `--serve-mock N`: the child side. Starts a mock with devices
/// `bench-i`/`token-i`, prints its port, then answers `cpu` (this process's
/// CPU seconds) and `points` (points written) line by line until stdin closes.
fn serve_mock(devices: u64) -> std::process::ExitCode {
    let mock = match MockServer::start() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("sync-bench --serve-mock: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for d in 0..devices {
        mock.add_device(&format!("bench-{d}"), &format!("token-{d}"));
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", mock.addr().port());
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = match line.trim() {
            "cpu" => process_cpu().as_secs_f64().to_string(),
            "points" => mock
                .stats()
                .points_written
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_string(),
            _ => "?".to_string(),
        };
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
    std::process::ExitCode::SUCCESS
}

/// The mock in a child process.
struct MockProc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl MockProc {
    fn start(devices: u64) -> Result<MockProc, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["--serve-mock", &devices.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the mock process: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("mock process without pipes".into());
        };
        let mut m = MockProc {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            port: 0,
        };
        m.port = m.read_line()?.parse().map_err(|_| "mock: bad port")?;
        Ok(m)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut s = String::new();
        self.stdout
            .read_line(&mut s)
            .map_err(|e| format!("mock process: {e}"))?;
        if s.is_empty() {
            return Err("mock process exited".into());
        }
        Ok(s.trim().to_string())
    }

    fn ask(&mut self, cmd: &str) -> Result<String, String> {
        let stdin = self.stdin.as_mut().ok_or("mock stdin closed")?;
        writeln!(stdin, "{cmd}").map_err(|e| format!("mock process: {e}"))?;
        stdin.flush().map_err(|e| format!("mock process: {e}"))?;
        self.read_line()
    }

    fn cpu(&mut self) -> Result<Duration, String> {
        let s: f64 = self.ask("cpu")?.parse().map_err(|_| "mock: bad cpu")?;
        Ok(Duration::from_secs_f64(s.max(0.0)))
    }

    fn points(&mut self) -> Result<u64, String> {
        self.ask("points")?
            .parse()
            .map_err(|_| "mock: bad points".into())
    }
}

impl Drop for MockProc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One measured run.
#[derive(Clone)]
struct Row {
    what: String,
    records: u64,
    wall: Duration,
    /// This process (the client).
    client_cpu: Duration,
    /// The server process (mock or mosquitto).
    server_cpu: Duration,
    /// Points the mock wrote (key × ts), if the server is the mock.
    server_points: Option<u64>,
    /// Wall-clock records/s of every run (the row is the median one).
    runs: Vec<f64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    fn per_client_cpu_s(&self) -> f64 {
        self.records as f64 / self.client_cpu.as_secs_f64().max(1e-3)
    }
    fn cpu(&self) -> Duration {
        self.client_cpu + self.server_cpu
    }
    fn per_cpu_s(&self) -> f64 {
        self.records as f64 / self.cpu().as_secs_f64().max(1e-3)
    }
    /// CPU seconds (client + server) per 100,000 records.
    fn per_100k(&self) -> f64 {
        self.cpu().as_secs_f64() * 100_000.0 / (self.records.max(1) as f64)
    }
}

/// Runs `f` against a fresh mock process `runs` times; the row of the median
/// wall time, with every run's rate.
fn against_mock(
    what: &str,
    devices: u64,
    runs: u64,
    mut setup: impl FnMut() -> Result<(), String>,
    mut f: impl FnMut(&str) -> Result<(u64, Duration), String>,
) -> Result<Row, String> {
    let mut rows = Vec::new();
    for _ in 0..runs.max(1) {
        setup()?;
        let mut mock = MockProc::start(devices)?;
        let (m0, p0) = (mock.cpu()?, mock.points()?);
        let c0 = process_cpu();
        let (records, wall) = f(&mock.url())?;
        let client_cpu = process_cpu().saturating_sub(c0);
        let (m1, p1) = (mock.cpu()?, mock.points()?);
        rows.push(Row {
            what: what.to_string(),
            records,
            wall,
            client_cpu,
            server_cpu: m1.saturating_sub(m0),
            server_points: Some(p1.saturating_sub(p0)),
            runs: Vec::new(),
        });
    }
    rows.sort_by_key(|r| r.wall);
    let rates: Vec<f64> = rows.iter().map(Row::rate).collect();
    let mut r = rows[rows.len() / 2].clone();
    r.runs = rates;
    Ok(r)
}

/// `--batch`: records per HTTP batch / MQTT publish group.
static BATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);

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
            batch_records: BATCH.load(std::sync::atomic::Ordering::Relaxed) as usize,
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
    if args.iter().any(|a| a == "--serve-mock") {
        return serve_mock(arg(&args, "--serve-mock", 0));
    }
    let devices = arg(&args, "--devices", 5);
    let records = arg(&args, "--records", 20_000);
    let runs = arg(&args, "--runs", 3);
    BATCH.store(
        arg(&args, "--batch", 1000).max(1),
        std::sync::atomic::Ordering::Relaxed,
    );
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let json_out = args.iter().any(|a| a == "--json");
    let rows = match run(devices, records, runs, only.as_deref()) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("sync-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let find = |p: &str| rows.iter().find(|r| r.what.starts_with(p));
    let ratio = match (find("http"), find("original")) {
        (Some(h), Some(o)) => Some((
            h.rate() / o.rate(),
            h.per_client_cpu_s() / o.per_client_cpu_s(),
        )),
        _ => None,
    };
    if json_out {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({"what": r.what, "records": r.records,
                "seconds": r.wall.as_secs_f64(),
                "records_per_s": r.rate(),
                "runs_records_per_s": r.runs,
                "client_cpu_seconds": r.client_cpu.as_secs_f64(),
                "records_per_client_cpu_s": r.per_client_cpu_s(),
                "server_cpu_seconds": r.server_cpu.as_secs_f64(),
                "server_points_written": r.server_points,
                "cpu_seconds": r.cpu().as_secs_f64(),
                "records_per_cpu_s": r.per_cpu_s(),
                "cpu_seconds_per_100k": r.per_100k()})
            })
            .collect();
        let h = find("http");
        println!(
            "{}",
            json!({"bench": "sync", "devices": devices, "records_per_device": records,
                "runs": runs, "results": v,
                "http_vs_original": ratio.map(|(w, c)| json!({"records_per_s": w, "records_per_client_cpu_s": c})),
                "target_records_per_s": 50_000,
                "target_met_wall": h.map(|h| h.rate() >= 50_000.0),
                "target_met_client_cpu": h.map(|h| h.per_client_cpu_s() >= 50_000.0)})
        );
    } else {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(
            o,
            "sync bench: {devices} devices × {records} records (1 V + 3 CT), loopback; mock in its own process; median of {runs} runs"
        );
        let _ = writeln!(
            o,
            "{:<44} {:>8} {:>7} {:>10} {:>9} {:>13} {:>9} {:>13}",
            "what",
            "records",
            "wall s",
            "records/s",
            "client s",
            "rec/client-s",
            "server s",
            "rec/cpu-s all"
        );
        for r in &rows {
            let _ = writeln!(
                o,
                "{:<44} {:>8} {:>7.2} {:>10.0} {:>9.3} {:>13.0} {:>9.3} {:>13.0}",
                r.what,
                r.records,
                r.wall.as_secs_f64(),
                r.rate(),
                r.client_cpu.as_secs_f64(),
                r.per_client_cpu_s(),
                r.server_cpu.as_secs_f64(),
                r.per_cpu_s()
            );
        }
        if let Some((w, c)) = ratio {
            let _ = writeln!(
                o,
                "http vs original: {w:.2}× records/s, {c:.2}× records per client CPU-second"
            );
        }
        let _ = writeln!(
            o,
            "records/s = wall clock, depends on other load; client s = CPU time of this process alone \
             (database, JSON, HTTP, marks); server s = CPU time of the mock process (mosquitto: 10 ms ticks); \
             target: ≥ 50,000 records/s over HTTP"
        );
    }
    std::process::ExitCode::SUCCESS
}

fn run(devices: u64, records: u64, runs: u64, only: Option<&str>) -> Result<Vec<Row>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let want = |w: &str| only.is_none_or(|o| o == w);
    let mut rows = Vec::new();
    let conn = new_db(dir.path(), "http.db", devices, records)?;
    if want("http") {
        let batch = BATCH.load(std::sync::atomic::Ordering::Relaxed);
        rows.push(against_mock(
            &format!("http: tbsync, batched {batch}, pipelined, marks"),
            devices,
            runs,
            // Every run starts from an outbox with nothing sent.
            || {
                conn.execute_batch("DELETE FROM sync_state; DELETE FROM destination;")
                    .map_err(|e| e.to_string())
            },
            |url| engine(&conn, url.to_string(), Transport::Http),
        )?);
    }
    if want("original") {
        rows.push(against_mock(
            "original: 1 POST/device, 1 point per CT",
            devices,
            runs,
            || Ok(()),
            |url| original(&conn, url, devices),
        )?);
    }
    if want("mqtt") {
        match mosquitto() {
            Some((m, port)) => {
                let conn = new_db(dir.path(), "mqtt.db", devices, records)?;
                let s0 = proc_cpu(m.0.id());
                let c0 = process_cpu();
                let (n, wall) = engine(&conn, format!("mqtt://127.0.0.1:{port}"), Transport::Mqtt)?;
                let client_cpu = process_cpu().saturating_sub(c0);
                let server_cpu = proc_cpu(m.0.id()).saturating_sub(s0);
                let r = Row {
                    what: "mqtt: tbsync device API, QoS 1 (mosquitto)".into(),
                    records: n,
                    wall,
                    client_cpu,
                    server_cpu,
                    server_points: None,
                    runs: Vec::new(),
                };
                rows.push(Row {
                    runs: vec![r.rate()],
                    ..r
                });
            }
            None => eprintln!(
                "sync-bench: mosquitto not found; MQTT skipped (apt-get install mosquitto)"
            ),
        }
    }
    Ok(rows)
}
