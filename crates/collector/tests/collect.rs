//! The collector against a fake device on loopback.

use std::time::Duration;

use collector::client::HttpDevice;
use collector::collect::{NoProgress, Options, collect};
use collector::db::Db;
use collector::fake::{FakeDevice, Fault};
use collector::pair::{PairOptions, pair};
use protocol::{FleetSecret, Mac};

fn fleet() -> FleetSecret {
    FleetSecret::from_bytes([9; 32])
}

const MAC: Mac = Mac([0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5]);

fn client(dev: &FakeDevice) -> HttpDevice {
    HttpDevice::new(
        &dev.url,
        Some(fleet().device_keys(&MAC).api_key),
        Duration::from_secs(5),
    )
}

fn opts() -> Options {
    Options {
        page: 1000,
        ..Options::default()
    }
}

#[test]
fn pair_then_collect_everything_once() {
    let dev = FakeDevice::start(MAC, 2500, None).unwrap();
    let mut db = Db::open_in_memory().unwrap();
    let mut http = HttpDevice::new(&dev.url, None, Duration::from_secs(5));
    let p = pair(
        &db,
        &mut http,
        &fleet(),
        &PairOptions {
            token: "tok".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.device_id, "A0B1C2D3E4F5");
    assert!(p.clock.uncertainty_ms < 1000);
    // Pairing twice is refused.
    assert!(pair(&db, &mut http, &fleet(), &PairOptions::default()).is_err());

    let s = collect(&mut db, &http, Some(&dev.url), &opts(), &mut NoProgress);
    assert_eq!(s.error, None);
    assert_eq!(s.new_records, 2500);
    assert_eq!(s.batches, 3);
    assert_eq!(s.acked_seq, Some(2500));
    assert_eq!(dev.lock().acked, 2500);
    assert_eq!(db.devices().unwrap()[0].acked_seq, Some(2500));
    assert!(s.clock.is_some());
    assert_eq!(db.count(None).unwrap(), 2500);
    // Every record of the synced boot has a time within a small bound.
    let (n_null, max_unc): (i64, i64) = db
        .conn()
        .query_row(
            "SELECT SUM(ts_ms IS NULL), MAX(ts_uncertainty_ms) FROM record",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(n_null, 0);
    // Drift since the oldest record (the fake's uptime starts at
    // UPTIME_BASE_MS) plus the sync's own round trip.
    let p = collector::time::Params::default();
    assert!(
        max_unc <= p.drift(collector::fake::UPTIME_BASE_MS) + 1000,
        "{max_unc}"
    );
    assert!(
        max_unc >= p.drift(collector::fake::UPTIME_BASE_MS - 60_000 * 2500),
        "{max_unc}"
    );
    // Again: nothing new, nothing duplicated.
    let s = collect(&mut db, &http, Some(&dev.url), &opts(), &mut NoProgress);
    assert_eq!((s.new_records, s.error), (0, None));
    assert_eq!(db.count(None).unwrap(), 2500);
    // New records arrive and are picked up incrementally.
    dev.lock()
        .records
        .extend((2501..=2600).map(|s| collector::fake::sample_record(s, 7)));
    let s = collect(&mut db, &http, Some(&dev.url), &opts(), &mut NoProgress);
    assert_eq!(s.new_records, 100);
    assert_eq!(dev.lock().record_requests, 3 + 1);
}

fn bad_batch(fault: Fault, expect: &str) {
    let dev = FakeDevice::start(MAC, 2500, Some(&fleet())).unwrap();
    let mut db = Db::open_in_memory().unwrap();
    let http = client(&dev);
    dev.lock().fault = fault;
    let s = collect(&mut db, &http, Some(&dev.url), &opts(), &mut NoProgress);
    let err = s.error.clone().unwrap_or_default();
    assert!(err.contains(expect), "{fault:?}: {err}");
    // Everything before the bad batch is kept and acked, nothing of it written.
    assert_eq!(db.count(None).unwrap(), 1000, "{fault:?}");
    assert_eq!(s.new_records, 1000);
    assert!(s.did_something());
    assert_eq!(dev.lock().acked, 1000);
    // The ack the device confirmed is noted even though the run failed.
    assert_eq!(db.devices().unwrap()[0].acked_seq, Some(1000));
    let bad: i64 = db
        .conn()
        .query_row("SELECT COUNT(*) FROM record WHERE seq > 1000", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(bad, 0);
    // The device behaves again: the rest comes, exactly once.
    dev.lock().fault = Fault::None;
    let s = collect(&mut db, &http, Some(&dev.url), &opts(), &mut NoProgress);
    assert_eq!((s.new_records, s.error), (1500, None));
    let (n, d): (i64, i64) = db
        .conn()
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT seq) FROM record",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, d), (2500, 2500));
}

#[test]
fn crc_failure_rejects_the_batch() {
    bad_batch(Fault::CorruptSeq(1500), "batch rejected");
}

#[test]
fn seq_backwards_rejects_the_batch() {
    // The fault repeats a record at the end of every page: the first page
    // fails too, so start it after the first page.
    let dev = FakeDevice::start(MAC, 2500, Some(&fleet())).unwrap();
    let mut db = Db::open_in_memory().unwrap();
    let http = client(&dev);
    dev.lock().fault = Fault::Backwards;
    let s = collect(&mut db, &http, Some(&dev.url), &opts(), &mut NoProgress);
    assert!(s.error.clone().unwrap().contains("seq went backwards"));
    assert_eq!(db.count(None).unwrap(), 0);
    assert!(!s.did_something());
    assert_eq!(dev.lock().acked, 0);
}

#[test]
fn garbage_truncation_and_vanishing_keep_what_was_committed() {
    for (fault, expect) in [
        (Fault::Garbage, "invalid entry header"),
        (Fault::Truncate, "truncated"),
        (Fault::Vanish(5000), "transfer interrupted"),
    ] {
        let dev = FakeDevice::start(MAC, 1000, Some(&fleet())).unwrap();
        let mut db = Db::open_in_memory().unwrap();
        let http = client(&dev);
        let s = collect(&mut db, &http, Some(&dev.url), &opts(), &mut NoProgress);
        assert_eq!(s.new_records, 1000);
        dev.lock()
            .records
            .extend((1001..=2500).map(|s| collector::fake::sample_record(s, 7)));
        dev.lock().fault = fault;
        let s = collect(&mut db, &http, Some(&dev.url), &opts(), &mut NoProgress);
        let err = s.error.clone().unwrap_or_default();
        assert!(err.contains(expect), "{fault:?}: {err}");
        assert_eq!(s.new_records, 0, "{fault:?}");
        assert!(!s.did_something());
        assert_eq!(db.count(None).unwrap(), 1000, "{fault:?}");
        assert_eq!(dev.lock().acked, 1000);
    }
}

#[test]
fn wrong_fleet_key_is_refused_clearly_and_nothing_is_stored() {
    let dev = FakeDevice::start(MAC, 100, Some(&fleet())).unwrap();
    let mut db = Db::open_in_memory().unwrap();
    let wrong = FleetSecret::from_bytes([1; 32]).device_keys(&MAC).api_key;
    let http = HttpDevice::new(&dev.url, Some(wrong), Duration::from_secs(5));
    let s = collect(&mut db, &http, Some(&dev.url), &opts(), &mut NoProgress);
    let err = s.error.unwrap();
    assert!(err.contains("refused our signature"), "{err}");
    assert_eq!(db.count(None).unwrap(), 0);
    assert!(dev.lock().refused > 0);
}

#[test]
fn unreachable_device_did_nothing() {
    let mut db = Db::open_in_memory().unwrap();
    let http = HttpDevice::new("http://127.0.0.1:9", None, Duration::from_secs(2));
    let s = collect(&mut db, &http, None, &opts(), &mut NoProgress);
    assert!(s.error.is_some());
    assert!(!s.did_something());
}

/// Figures for the report: 30 days of 1-minute 1 V + 3 CT records from a
/// fake device over loopback into an on-disk SQLite database.
/// `cargo test -p collector --release --test collect -- --ignored --nocapture`
#[test]
#[ignore]
fn thirty_days_backlog_figures() {
    let n = 30 * 1440;
    let dev = FakeDevice::start(MAC, n, Some(&fleet())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(&dir.path().join("ofmon.db")).unwrap();
    let http = client(&dev);
    let s = collect(
        &mut db,
        &http,
        Some(&dev.url),
        &Options::default(),
        &mut NoProgress,
    );
    assert_eq!((s.new_records, s.error.clone()), (n, None));
    println!(
        "30-day backlog: {} records, {} wire bytes ({:.1} B/record), {} batches, {:.3} s, {:.0} records/s",
        s.new_records,
        s.bytes,
        s.bytes as f64 / s.new_records as f64,
        s.batches,
        s.seconds,
        s.new_records as f64 / s.seconds
    );
}
