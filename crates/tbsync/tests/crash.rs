//! Kill -9 the sync at random moments (≥ 50 times) while records keep
//! arriving: afterwards every point is on the server exactly once by
//! (key, ts), and nothing is marked sent that the server did not accept.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use thingsboard_mock::MockServer;

const DEVICES: [&str; 3] = ["K001", "K002", "K003"];

#[test]
fn kill_minus_nine_during_sync() {
    let kills: u32 = std::env::var("TBSYNC_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let conn = create_db(&db);
    let m = MockServer::start().unwrap();
    // Slow enough answers that kills land while requests are in flight.
    m.set_delay(Duration::from_millis(3));
    for d in DEVICES {
        m.add_device(&format!("n-{d}"), &format!("t-{d}"));
        add_device(&conn, d, &format!("n-{d}"), Some(&format!("t-{d}")), None);
    }
    let exe = env!("CARGO_BIN_EXE_tbsync-once");
    let dest = tbsync::outbox::destination_id(&conn, &m.url()).unwrap();
    let mut last = 0u64;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let t0 = Instant::now();
    let mut killed_mid_run = 0;
    for _ in 0..kills {
        // New records arrive between syncs (the collector keeps collecting).
        for d in DEVICES {
            add_records(&conn, d, last + 1, last + 120, false);
        }
        last += 120;
        let mut child = Command::new(exe)
            .arg(&db)
            .arg(m.url())
            .arg("40")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + rnd(60)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        // SIGKILL.
        let _ = child.kill();
        let _ = child.wait();
        // Invariant after every kill: marked sent ⇒ stored on the server.
        for d in DEVICES {
            assert_sent_are_stored(&m, &conn, dest, &format!("n-{d}"), d);
        }
    }
    assert!(
        killed_mid_run >= kills / 2,
        "only {killed_mid_run} of {kills} kills hit a running sync"
    );
    // A clean run finishes the job.
    let st = Command::new(exe)
        .arg(&db)
        .arg(m.url())
        .arg("200")
        .status()
        .unwrap();
    assert!(st.success());
    let all: Vec<u64> = (1..=last).collect();
    for d in DEVICES {
        assert_exactly(&m, &format!("n-{d}"), d, &all);
        assert_eq!(tbsync::outbox::sent_seqs(&conn, dest, d).unwrap(), all);
    }
    eprintln!(
        "{kills} kills ({killed_mid_run} mid-run), {} records, overwrites (resends) {}, {:?}",
        last * 3,
        m.stats()
            .overwrites
            .load(std::sync::atomic::Ordering::Relaxed),
        t0.elapsed()
    );
}
