//! `ofmon pair/collect/export` as a user runs them, against the real
//! simulator and against a fake device while being killed with SIGKILL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use collector::Db;
use collector::fake::{FakeDevice, sample_record};
use protocol::{FleetSecret, Mac};

mod common;
use common::{ofmon, ok};

#[test]
fn sim_pair_collect_export_as_a_new_user() {
    let home = tempfile::tempdir().unwrap();
    // ~29 one-minute records each, caught up with real time (speed 1).
    let fleet = common::fleet(home.path(), 2);
    let devs = fleet.devices();
    assert_eq!(devs.len(), 2);
    let listed = ok(&ofmon(home.path(), &["devices", "--json"]));
    assert!(listed.contains(&devs[0].id), "{listed}");

    // Not paired yet: collect can do nothing and says so.
    let o = ofmon(home.path(), &["collect", &devs[0].id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not paired"));

    ok(&ofmon(
        home.path(),
        &[
            "pair",
            &devs[0].id,
            "--token",
            "TOKEN-A",
            "--name",
            "kitchen",
        ],
    ));
    ok(&ofmon(
        home.path(),
        &["pair", &devs[1].ssid, "--token", "TOKEN-B"],
    ));
    // Wait until the prefilled history is there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut total = 0;
    while Instant::now() < deadline {
        let out = ok(&ofmon(home.path(), &["collect", "--all", "--json"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ok"], true, "{out}");
        total += v["new_records"].as_u64().unwrap();
        if total >= 40 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(total >= 40, "only {total} records");

    let csv = ok(&ofmon(home.path(), &["export", "--format", "csv"]));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "device_id,seq,ts_ms,ts_uncertainty_ms,channel,v_rms,i_rms,real_power_w,apparent_power_va,power_factor,import_wh,export_wh"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len() as u64, total * 3, "one row per record and CT");
    let now = collector::now_ms();
    for r in &rows {
        assert_eq!(r.len(), 12);
        assert!(["1", "2", "3"].contains(&r[4]));
        // Times are known and bounded, and lie in the past day.
        let ts: i64 = r[2].parse().unwrap_or_else(|_| panic!("no time: {r:?}"));
        let unc: i64 = r[3].parse().unwrap();
        assert!(ts <= now && ts > now - 2 * 86_400_000, "{r:?}");
        assert!(unc < 60_000, "{r:?}");
        let v: f64 = r[5].parse().unwrap();
        assert!((200.0..260.0).contains(&v), "{r:?}");
    }
    let json = ok(&ofmon(
        home.path(),
        &["export", "--format", "json", "--device", &devs[1].id],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|r| r["device_id"] == devs[1].id.as_str())
    );

    let listed = ok(&ofmon(home.path(), &["devices"]));
    assert!(
        listed.contains("kitchen") && listed.contains("yes"),
        "{listed}"
    );
    fleet.stop();
}

/// kill -9 the collector at random moments, ≥ 50 times: after each kill the
/// database holds exactly seq 1..=last_seq once each, and the device was
/// never acked beyond what the database holds.
#[test]
fn kill_9_at_random_points_loses_and_duplicates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let secret = FleetSecret::from_bytes([0x42; 32]);
    std::fs::write(home.path().join("fleet.key"), secret.to_hex()).unwrap();
    let mac = Mac([2, 0, 0, 0, 0, 9]);
    let dev = FakeDevice::start(mac, 6_000, Some(&secret)).unwrap();
    let mut next_seq = 6_001;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let kills = 60;
    let mut killed_mid_run = 0;
    // How long a run lasts depends on the machine; the kill window adapts so
    // that most kills land while the collector is working: it shrinks after
    // a run that finished before the kill and grows after a kill mid-run.
    let mut window_ms: u64 = 300;
    for i in 0..kills {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ofmon"))
            .args(["collect", &dev.url, "--page", "250", "--json", "--home"])
            .arg(home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rand(window_ms)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
            window_ms = window_ms * 11 / 10 + 1;
        } else {
            window_ms = (window_ms * 3 / 4).max(2);
        }
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();

        let db = Db::open(&home.path().join("ofmon.db")).unwrap();
        let id = mac.id();
        let last = db.last_seq(&id).unwrap();
        let (n, distinct, max): (i64, i64, Option<i64>) = db
            .conn()
            .query_row(
                "SELECT COUNT(*), COUNT(DISTINCT seq), MAX(seq) FROM record WHERE device_id = ?1",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(n, distinct, "iteration {i}: duplicates");
        assert_eq!(n as u64, last, "iteration {i}: hole below the cursor");
        assert_eq!(max.unwrap_or(0) as u64, last, "iteration {i}");
        let circuits: i64 = db
            .conn()
            .query_row("SELECT COUNT(*) FROM circuit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            circuits as u64,
            3 * last,
            "iteration {i}: half-written record"
        );
        assert!(
            dev.lock().acked <= last,
            "iteration {i}: acked beyond the database"
        );
        // Stored values are exactly what the device measured.
        if last > 0 {
            let imp: i64 = db
                .conn()
                .query_row(
                    "SELECT import_mwh FROM circuit WHERE seq = ?1 AND ct = 2",
                    [last as i64],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(imp as u64, sample_record(last, 7).circuits[1].import_mwh);
        }
        // The device keeps measuring, so every run has a backlog to work on.
        if i % 2 == 0 {
            let mut st = dev.lock();
            for _ in 0..500 {
                st.records.push(sample_record(next_seq, 7));
                next_seq += 1;
            }
        }
    }
    assert!(
        killed_mid_run >= kills / 2,
        "only {killed_mid_run} kills landed mid-run"
    );
    // A final uninterrupted run collects the rest, exactly once.
    let out = ok(&ofmon(home.path(), &["collect", &dev.url, "--json"]));
    assert!(out.contains("\"ok\": true"), "{out}");
    let db = Db::open(&home.path().join("ofmon.db")).unwrap();
    assert_eq!(db.count(None).unwrap(), next_seq - 1);
    assert_eq!(dev.lock().acked, next_seq - 1);
}
