//! Records whose ts changes after they were synced (time reconstruction
//! refined it): the next sync re-sends them at the new ts and reports them.

mod common;

use std::time::Duration;

use common::*;
use rusqlite::params;
use tbsync::{SyncOptions, Syncer};
use thingsboard_mock::MockServer;

fn opts(url: &str) -> SyncOptions {
    SyncOptions {
        server: Some(url.to_string()),
        batch_records: 4,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        max_retries: 1,
        timeout: Duration::from_secs(5),
        ..SyncOptions::default()
    }
}

/// Points of `key` on the server, by ts.
fn series(m: &MockServer, key: &str) -> Vec<(i64, f64)> {
    m.with_device("m", |d| {
        d.telemetry
            .get(key)
            .map(|s| s.iter().map(|(ts, v)| (*ts, v.as_f64().unwrap())).collect())
            .unwrap_or_default()
    })
    .unwrap()
}

#[test]
fn changed_ts_is_resent_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    let m = MockServer::start().unwrap();
    m.add_device("m", "t");
    add_device(&conn, "D1", "m", Some("t"), None);
    add_records(&conn, "D1", 1, 10, false);
    let r = Syncer::new(&conn, opts(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(r.all_done(), "{r:?}");
    assert_eq!((r.sent(), r.devices[0].moved), (10, 0));
    assert_exactly(&m, "m", "D1", &(1..=10).collect::<Vec<_>>());

    // Reconstruction refines records 4..=6 by 1.5 s (and their bound).
    let shift = 1_500;
    conn.execute(
        "UPDATE record SET ts_ms = ts_ms + ?1, ts_uncertainty_ms = 5
         WHERE device_id = 'D1' AND seq BETWEEN 4 AND 6",
        params![shift],
    )
    .unwrap();
    let dest = tbsync::outbox::find_destination(&conn, &m.url())
        .unwrap()
        .unwrap();
    let c = tbsync::outbox::counts(&conn, dest, "D1").unwrap();
    assert_eq!(
        (c.sent, c.pending),
        (7, 3),
        "moved records are pending again"
    );

    // The first resend attempt fails: the records stay pending and keep the
    // ts the server holds, so the next success still reports them moved.
    m.fail_next(10);
    let r = Syncer::new(&conn, opts(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert_eq!(r.sent(), 0, "{r:?}");
    m.clear_faults();

    let r = Syncer::new(&conn, opts(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(r.all_done(), "{r:?}");
    assert_eq!(r.sent(), 3, "only the moved records are re-sent: {r:?}");
    assert_eq!(r.devices[0].moved, 3, "and reported: {r:?}");
    let c = tbsync::outbox::counts(&conn, dest, "D1").unwrap();
    assert_eq!((c.sent, c.pending), (10, 0));

    // The server holds each reading at its new ts, with its values.
    let v = series(&m, "v_rms");
    for seq in 1..=10u64 {
        let want = reading("D1", seq);
        let ts = want.ts_ms + if (4..=6).contains(&seq) { shift } else { 0 };
        let at: Vec<_> = v.iter().filter(|p| p.0 == ts).collect();
        assert_eq!(at.len(), 1, "seq {seq} at its current ts");
        assert_eq!(at[0].1, want.v_cv[0].unwrap() as f64 / 100.0);
    }
    let unc = series(&m, "ts_uncertainty_ms");
    for seq in 4..=6u64 {
        let ts = reading("D1", seq).ts_ms + shift;
        assert!(unc.contains(&(ts, 5.0)), "new bound sent for seq {seq}");
    }
    // The old points remain (ThingsBoard cannot move a point): exactly the
    // three that the report counted.
    assert_eq!(v.len(), 13);
    // Queued for deletion (`ofmon sync` deletes them when a login is saved).
    let mut old: Vec<(String, i64)> = tbsync::outbox::stale_points(&conn)
        .unwrap()
        .into_iter()
        .map(|p| (p.2, p.3))
        .collect();
    old.sort();
    let want: Vec<(String, i64)> = (4..=6u64)
        .map(|seq| ("D1".to_string(), reading("D1", seq).ts_ms))
        .collect();
    assert_eq!(old, want);

    // Nothing more to do.
    let r = Syncer::new(&conn, opts(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert_eq!((r.sent(), r.devices[0].moved), (0, 0), "{r:?}");
}

#[test]
fn ts_becoming_unknown_is_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    let m = MockServer::start().unwrap();
    m.add_device("m", "t");
    add_device(&conn, "D1", "m", Some("t"), None);
    add_records(&conn, "D1", 1, 3, false);
    let r = Syncer::new(&conn, opts(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert_eq!(r.sent(), 3);
    conn.execute(
        "UPDATE record SET ts_ms = NULL, ts_uncertainty_ms = NULL WHERE device_id = 'D1' AND seq = 2",
        [],
    )
    .unwrap();
    let r = Syncer::new(&conn, opts(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert_eq!(r.sent(), 0, "{r:?}");
    assert_eq!((r.devices[0].untimed, r.devices[0].pending), (1, 0));
}
