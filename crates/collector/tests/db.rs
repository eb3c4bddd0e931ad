use collector::db::{Db, ExportFilter};
use collector::export::{COLUMNS, Format, export};
use collector::time::{Anchor, Params};
use store::{Circuit, Record, Voltage};

const ID: &str = "A0B1C2D3E4F5";

fn rec(seq: u64) -> Record {
    let mut r = Record {
        seq,
        boot_id: 5,
        uptime_ms: 60_000 * seq,
        wall_ms: None,
        duration_ms: 60_000,
        frequency_mhz: 50_000,
        voltage_count: 1,
        circuit_count: 3,
        ..Record::default()
    };
    r.voltages[0] = Voltage {
        rms_cv: 23_012,
        min_cv: 22_900,
        max_cv: 23_100,
    };
    for c in 0..3 {
        r.circuits[c] = Circuit {
            i_rms_ma: 1000 * (c as u32 + 1),
            real_power_dw: 2300 * (c as i32 + 1),
            real_power_min_dw: 0,
            real_power_max_dw: 9999,
            apparent_power_dva: 2400 * (c as u32 + 1),
            power_factor_milli: 958,
            import_mwh: 1_000 * seq,
            export_mwh: 0,
        };
    }
    r
}

fn db() -> Db {
    let db = Db::open_in_memory().unwrap();
    db.upsert_device(ID, Some("OFMon-A0B1C2D3E4F5"), Some("http://x"), 0)
        .unwrap();
    db
}

#[test]
fn batches_are_idempotent_and_advance_the_cursor() {
    let mut db = db();
    let batch: Vec<_> = (1..=10).map(rec).collect();
    assert_eq!(db.insert_batch(ID, &batch, 1).unwrap(), 10);
    assert_eq!(db.last_seq(ID).unwrap(), 10);
    // A replay of the same batch is refused as going backwards, nothing changes.
    assert!(db.insert_batch(ID, &batch, 1).is_err());
    assert_eq!(db.count(Some(ID)).unwrap(), 10);
    let more: Vec<_> = (11..=12).map(rec).collect();
    assert_eq!(db.insert_batch(ID, &more, 1).unwrap(), 2);
    assert_eq!(db.count(None).unwrap(), 12);
}

#[test]
fn a_batch_with_seq_going_backwards_writes_nothing() {
    let mut db = db();
    let bad = vec![rec(1), rec(2), rec(2), rec(3)];
    let err = db.insert_batch(ID, &bad, 1).unwrap_err();
    assert!(err.to_string().contains("backwards"), "{err}");
    assert_eq!(db.count(None).unwrap(), 0);
    assert_eq!(db.last_seq(ID).unwrap(), 0);
}

#[test]
fn unknown_device_is_refused() {
    let mut db = db();
    assert!(db.insert_batch("FFFFFFFFFFFF", &[rec(1)], 1).is_err());
}

#[test]
fn export_csv_has_the_exact_columns_and_one_row_per_ct() {
    let mut db = db();
    db.insert_batch(ID, &[rec(1), rec(2)], 1_700_000_200_000)
        .unwrap();
    db.insert_time_sync(
        ID,
        &Anchor {
            boot_id: 5,
            uptime_ms: 120_000,
            wall_ms: 1_700_000_120_000,
            uncertainty_ms: 10,
            trusted: true,
        },
        20,
        0,
    )
    .unwrap();
    assert_eq!(db.reconstruct_times(ID, &Params::default()).unwrap(), 2);
    let mut out = Vec::new();
    let n = export(&db, &ExportFilter::default(), Format::Csv, &mut out).unwrap();
    assert_eq!(n, 6);
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "device_id,seq,ts_ms,ts_uncertainty_ms,channel,v_rms,i_rms,real_power_w,apparent_power_va,power_factor,import_wh,export_wh"
    );
    assert_eq!(COLUMNS.len(), 12);
    let rows: Vec<_> = lines.collect();
    assert_eq!(rows.len(), 6);
    // seq 1 at uptime 60 000, synced at 120 000 ± 10 → 1_700_000_060_000 ± (10 + drift(60 000))
    assert_eq!(
        rows[0],
        "A0B1C2D3E4F5,1,1700000060000,18,1,230.12,1,230,240,0.958,1,0"
    );
    assert_eq!(
        rows[5],
        "A0B1C2D3E4F5,2,1700000120000,11,3,230.12,3,690,720,0.958,2,0"
    );
    // JSON has the same keys.
    let mut out = Vec::new();
    let f = ExportFilter {
        device: Some(ID.into()),
        from_ms: Some(1_700_000_100_000),
        to_ms: None,
    };
    assert_eq!(export(&db, &f, Format::Json, &mut out).unwrap(), 3);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let obj = v[0].as_object().unwrap();
    let keys: Vec<_> = obj.keys().map(String::as_str).collect();
    let mut want = COLUMNS.to_vec();
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(v[0]["seq"], 2);
}

#[test]
fn prune_deletes_only_records_known_to_be_old() {
    let mut db = db();
    db.insert_batch(ID, &(1..=4).map(rec).collect::<Vec<_>>(), 1_700_000_300_000)
        .unwrap();
    db.insert_time_sync(
        ID,
        &Anchor {
            boot_id: 5,
            uptime_ms: 240_000,
            wall_ms: 1_700_000_240_000,
            uncertainty_ms: 10,
            trusted: true,
        },
        20,
        0,
    )
    .unwrap();
    db.reconstruct_times(ID, &Params::default()).unwrap();
    // Records at …060_000, …120_000, …180_000, …240_000 (± ~40 ms).
    assert_eq!(db.prune(1_700_000_150_000).unwrap(), 2);
    assert_eq!(db.count(Some(ID)).unwrap(), 2);
    // The cursor survives pruning: nothing is collected twice.
    assert_eq!(db.last_seq(ID).unwrap(), 4);
    let c: i64 = db
        .conn()
        .query_row("SELECT COUNT(*) FROM circuit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(c, 6);
}

#[test]
fn database_is_wal_and_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("x.db")).unwrap();
    let mode: String = db
        .conn()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = db
        .conn()
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2);
}

#[test]
fn reconstruct_writes_only_rows_whose_time_changed() {
    let mut db = db();
    db.insert_batch(ID, &[rec(1), rec(2), rec(3)], 1_700_000_200_000)
        .unwrap();
    let sync = |db: &Db, uptime_ms: u64, uncertainty_ms: u64| {
        db.insert_time_sync(
            ID,
            &Anchor {
                boot_id: 5,
                uptime_ms,
                wall_ms: 1_700_000_000_000 + uptime_ms,
                uncertainty_ms,
                trusted: true,
            },
            20,
            0,
        )
        .unwrap();
    };
    // No anchor: no record can be timed, nothing to write.
    assert_eq!(db.reconstruct_times(ID, &Params::default()).unwrap(), 0);
    sync(&db, 180_000, 10);
    assert_eq!(db.reconstruct_times(ID, &Params::default()).unwrap(), 3);
    let times = |db: &Db| -> Vec<(i64, i64)> {
        let mut st = db
            .conn()
            .prepare("SELECT ts_ms, ts_uncertainty_ms FROM record ORDER BY seq")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let first = times(&db);
    // Nothing new: nothing rewritten, same values.
    assert_eq!(db.reconstruct_times(ID, &Params::default()).unwrap(), 0);
    assert_eq!(times(&db), first);
    // A tighter sync at seq 1 changes the bounds; the stored rows follow.
    sync(&db, 60_000, 1);
    let changed = db.reconstruct_times(ID, &Params::default()).unwrap();
    assert!(changed >= 1, "{changed}");
    let second = times(&db);
    assert_ne!(second, first);
    assert!(second[0].1 < first[0].1, "{second:?} vs {first:?}");
    // And a fresh database computes exactly the same (incremental = full).
    let mut fresh = Db::open_in_memory().unwrap();
    fresh.upsert_device(ID, None, None, 0).unwrap();
    fresh
        .insert_batch(ID, &[rec(1), rec(2), rec(3)], 1_700_000_200_000)
        .unwrap();
    sync(&fresh, 180_000, 10);
    sync(&fresh, 60_000, 1);
    assert_eq!(fresh.reconstruct_times(ID, &Params::default()).unwrap(), 3);
    assert_eq!(times(&fresh), second);
}

#[test]
fn thingsboard_name_cache_and_gateway() {
    let mut db = db();
    db.set_pairing(ID, "tok", Some("kitchen"), None, Some("http://tb"))
        .unwrap();
    let d = &db.devices().unwrap()[0];
    assert_eq!(d.name.as_deref(), Some("kitchen"));
    assert_eq!((d.tb_id.as_deref(), d.tb_fetched_ms), (None, None));
    db.set_tb_identity(ID, "http://tb", "uuid-1", "kitchen", Some("Main"), 1000)
        .unwrap();
    let d = &db.devices().unwrap()[0];
    assert_eq!(d.tb_id.as_deref(), Some("uuid-1"));
    assert_eq!(d.label.as_deref(), Some("Main"));
    assert_eq!(d.tb_fetched_ms, Some(1000));
    // Renamed on the server: the cache and the device's name follow.
    db.set_tb_fetched(ID, "http://other", "uuid-1", "cuisine", None, 2000)
        .unwrap();
    let d = &db.devices().unwrap()[0];
    assert_eq!(d.name.as_deref(), Some("cuisine"));
    assert_eq!(d.label, None);
    assert_eq!(d.tb_fetched_ms, Some(2000));
    // Gateways: one per server, replaced, newest first.
    assert!(db.gateways().unwrap().is_empty());
    let g = |server: &str, token: &str, at: i64| collector::db::GatewayRow {
        server: server.into(),
        tb_id: "gw".into(),
        name: "OFMon gateway".into(),
        token: token.into(),
        added_ms: at,
    };
    db.set_gateway(&g("http://a", "t1", 1)).unwrap();
    db.set_gateway(&g("http://b", "t2", 2)).unwrap();
    db.set_gateway(&g("http://a", "t3", 3)).unwrap();
    let gws = db.gateways().unwrap();
    assert_eq!(gws.len(), 2);
    assert_eq!(
        (gws[0].server.as_str(), gws[0].token.as_str()),
        ("http://a", "t3")
    );
}

/// The database holds ThingsBoard tokens: a new one is private to its owner.
#[cfg(unix)]
#[test]
fn a_new_database_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ofmon.db");
    let db = Db::open(&path).unwrap();
    db.conn()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    for f in ["ofmon.db", "ofmon.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}: {mode:o}");
    }
    // Reopening an existing database works and keeps its contents.
    drop(db);
    let db = Db::open(&path).unwrap();
    let n: i64 = db
        .conn()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    // A database in a missing folder is a clear error, not a panic.
    let Err(e) = Db::open(&dir.path().join("missing/ofmon.db")) else {
        panic!("opened a database in a missing folder");
    };
    assert!(e.to_string().contains("cannot create the database"), "{e}");
}
