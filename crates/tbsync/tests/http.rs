//! HTTP sync against the ThingsBoard mock: idempotence, server faults,
//! 401/413 policy, untimed records, gzip negotiation.

mod common;

use std::time::Duration;

use common::*;
use tbsync::{DeviceStatus, Gzip, SyncOptions, Syncer};
use thingsboard_mock::MockServer;

fn fast(url: &str) -> SyncOptions {
    SyncOptions {
        server: Some(url.to_string()),
        batch_records: 200,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        ..SyncOptions::default()
    }
}

fn seqs(a: u64, b: u64) -> Vec<u64> {
    (a..=b).collect()
}

#[test]
fn sync_twice_each_point_once_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    let m = MockServer::start().unwrap();
    for (i, n) in [("AA01", 1500u64), ("AA02", 700)] {
        m.add_device(&format!("meter-{i}"), &format!("tok-{i}"));
        add_device(
            &conn,
            i,
            &format!("meter-{i}"),
            Some(&format!("tok-{i}")),
            None,
        );
        add_records(&conn, i, 1, n, false);
    }
    let r = Syncer::new(&conn, fast(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(r.all_done(), "{r:?}");
    assert_eq!(r.sent(), 2200);
    assert!(r.devices.iter().all(|d| d.pending == 0 && d.failed == 0));
    let n1 = assert_exactly(&m, "meter-AA01", "AA01", &seqs(1, 1500));
    assert_exactly(&m, "meter-AA02", "AA02", &seqs(1, 700));
    // One point per record carries all CTs (26 keys with uncertainty, 25 without).
    assert!(n1 > 1500 * 25);
    let writes = m
        .stats()
        .points_written
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        m.stats()
            .overwrites
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // Second run: nothing to send, nothing written.
    let r = Syncer::new(&conn, fast(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(r.all_done());
    assert_eq!(r.sent(), 0);
    assert_eq!(
        m.stats()
            .points_written
            .load(std::sync::atomic::Ordering::Relaxed),
        writes
    );
    assert_exactly(&m, "meter-AA01", "AA01", &seqs(1, 1500));
    // New records: only they are sent.
    add_records(&conn, "AA02", 701, 750, false);
    let r = Syncer::new(&conn, fast(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert_eq!(r.sent(), 50);
    assert_exactly(&m, "meter-AA02", "AA02", &seqs(1, 750));
}

#[test]
fn faults_500_bursts_401_413_and_drops_then_everything_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    let m = MockServer::start().unwrap();
    let ids = ["BB01", "BB02", "BB03"];
    for i in ids {
        m.add_device(&format!("m-{i}"), &format!("t-{i}"));
        add_device(&conn, i, &format!("m-{i}"), Some(&format!("t-{i}")), None);
        add_records(&conn, i, 1, 1000, false);
    }
    m.revoke_token("t-BB02");
    m.fail_next(4);
    m.drop_next(2);
    m.drop_after_store_next(2);
    // 40 KiB limit: a 200-record batch (~150 KiB) must be split.
    m.set_body_limit(40 * 1024);
    // 8 consecutive faults: allow more retries than that.
    let opts = SyncOptions {
        max_retries: 10,
        ..fast(&m.url())
    };
    let r = Syncer::new(&conn, opts).unwrap().run(&mut |_| {}).unwrap();
    let by = |id: &str| r.devices.iter().find(|d| d.id == id).unwrap().clone();
    assert_eq!(by("BB01").status, DeviceStatus::Done, "{r:?}");
    assert_eq!(by("BB03").status, DeviceStatus::Done, "{r:?}");
    assert_eq!(by("BB02").status, DeviceStatus::Unauthorized);
    assert_eq!(by("BB02").sent, 0);
    assert_eq!(by("BB02").pending, 1000);
    assert!(by("BB02").failed > 0);
    assert_exactly(&m, "m-BB01", "BB01", &seqs(1, 1000));
    assert_exactly(&m, "m-BB03", "BB03", &seqs(1, 1000));
    assert_eq!(m.point_count("m-BB02"), 0);
    // Faults stop: the next run sends the rest.
    m.restore_token("t-BB02");
    m.clear_faults();
    let r = Syncer::new(&conn, fast(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(r.all_done(), "{r:?}");
    assert_eq!(r.sent(), 1000);
    for i in ids {
        assert_exactly(&m, &format!("m-{i}"), i, &seqs(1, 1000));
    }
}

#[test]
fn bounded_retries_then_resume_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    let m = MockServer::start().unwrap();
    m.add_device("m", "t");
    add_device(&conn, "CC01", "m", Some("t"), None);
    add_records(&conn, "CC01", 1, 500, false);
    m.fail_next(1_000_000);
    let opts = SyncOptions {
        max_retries: 3,
        ..fast(&m.url())
    };
    let r = Syncer::new(&conn, opts.clone())
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(
        matches!(r.devices[0].status, DeviceStatus::GaveUp(_)),
        "{r:?}"
    );
    assert_eq!(r.devices[0].pending, 500);
    // 1 + 3 retries, no more.
    assert_eq!(
        m.stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        4 + 1
    );
    m.clear_faults();
    m.fail_next(0);
    let r = Syncer::new(&conn, opts).unwrap().run(&mut |_| {}).unwrap();
    assert!(r.all_done());
    assert_exactly(&m, "m", "CC01", &seqs(1, 500));
}

#[test]
fn rate_limit_500_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    let m = MockServer::start().unwrap();
    m.add_device("m", "t");
    add_device(&conn, "CC02", "m", Some("t"), None);
    add_records(&conn, "CC02", 1, 1000, false);
    m.set_rate_limit(Some((2, Duration::from_millis(100))));
    let opts = SyncOptions {
        batch_records: 100,
        max_retries: 10,
        ..fast(&m.url())
    };
    let r = Syncer::new(&conn, opts).unwrap().run(&mut |_| {}).unwrap();
    assert!(r.all_done(), "{r:?}");
    assert_exactly(&m, "m", "CC02", &seqs(1, 1000));
}

#[test]
fn untimed_records_wait_and_oversized_record_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    let m = MockServer::start().unwrap();
    m.add_device("m", "t");
    add_device(&conn, "DD01", "m", Some("t"), None);
    add_records(&conn, "DD01", 1, 10, false);
    add_records(&conn, "DD01", 11, 15, true);
    let r = Syncer::new(&conn, fast(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(r.all_done());
    assert_eq!(r.devices[0].sent, 10);
    assert_eq!(r.devices[0].untimed, 5);
    assert_exactly(&m, "m", "DD01", &seqs(1, 10));
    // A limit below one point: the record is rejected, not retried forever.
    add_records(&conn, "DD01", 16, 16, false);
    m.set_body_limit(50);
    let r = Syncer::new(&conn, fast(&m.url()))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert_eq!(r.devices[0].rejected, 1);
    assert_eq!(r.devices[0].pending, 0);
}

#[test]
fn no_token_no_server_reported() {
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    let m = MockServer::start().unwrap();
    add_device(&conn, "EE01", "a", None, Some(&m.url()));
    add_device(&conn, "EE02", "b", Some("t"), None);
    let opts = SyncOptions {
        server: None,
        ..fast(&m.url())
    };
    let r = Syncer::new(&conn, opts).unwrap().run(&mut |_| {}).unwrap();
    assert_eq!(r.devices[0].status, DeviceStatus::NoToken);
    assert_eq!(r.devices[1].status, DeviceStatus::NoServer);
}

#[test]
fn gzip_only_when_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    for accept in [false, true] {
        let m = MockServer::start().unwrap();
        m.set_accept_gzip(accept);
        m.add_device("m", "t");
        let id = if accept { "FF02" } else { "FF01" };
        add_device(&conn, id, "m", Some("t"), None);
        add_records(&conn, id, 1, 300, false);
        let opts = SyncOptions {
            only: vec![id.to_string()],
            gzip: Gzip::Auto,
            ..fast(&m.url())
        };
        let mut api =
            tbsync::http::DeviceApi::new(&m.url(), &tbsync::http::HttpOptions::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(api.post_telemetry("t", b"[]".to_vec()))
            .unwrap();
        assert_eq!(api.gzip_enabled(), Some(accept));
        let r = Syncer::new(&conn, opts).unwrap().run(&mut |_| {}).unwrap();
        assert!(r.all_done(), "{r:?}");
        assert_exactly(&m, "m", id, &seqs(1, 300));
    }
}
