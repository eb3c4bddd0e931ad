//! `ofmon sync` after time reconstruction changed the ts of records already
//! synced: the records are re-sent at their new ts and, with a saved REST
//! login, their old points are deleted from the server; without one they
//! stay and the report says so. Against the ThingsBoard mock on loopback.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use thingsboard_mock::{MockServer, TENANT_PASSWORD, TENANT_USER};

mod common;
use common::{ofmon, ok, pair_rest};

/// The device's record ts in the collector database.
fn record_ts(home: &Path, device: &str) -> BTreeSet<i64> {
    let db = collector::Db::open(&home.join(collector::home::DB_FILE)).unwrap();
    let mut st = db
        .conn()
        .prepare("SELECT ts_ms FROM record WHERE device_id = ?1 AND ts_ms IS NOT NULL")
        .unwrap();
    st.query_map([device], |r| r.get::<_, i64>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Moves the ts of every third record by `ms` (as time reconstruction
/// would); returns how many moved.
fn shift(home: &Path, device: &str, ms: i64) -> usize {
    let db = collector::Db::open(&home.join(collector::home::DB_FILE)).unwrap();
    db.conn()
        .execute(
            &format!(
                "UPDATE record SET ts_ms = ts_ms + {ms} WHERE device_id = ?1
                 AND ts_ms IS NOT NULL AND seq % 3 = 0"
            ),
            [device],
        )
        .unwrap()
}

fn stale_rows(home: &Path) -> i64 {
    let db = collector::Db::open(&home.join(collector::home::DB_FILE)).unwrap();
    db.conn()
        .query_row("SELECT COUNT(*) FROM sync_stale", [], |r| r.get(0))
        .unwrap()
}

/// Every key's points on the server: key → ts.
fn server_points(tb: &MockServer, name: &str) -> Vec<(String, BTreeSet<i64>)> {
    tb.with_device(name, |d| {
        d.telemetry
            .iter()
            .map(|(k, s)| (k.clone(), s.keys().copied().collect()))
            .collect()
    })
    .unwrap()
}

/// The server holds each reading exactly once, at its current ts, under
/// every key sent for it.
fn assert_exactly_current(tb: &MockServer, home: &Path, device: &str) {
    let want = record_ts(home, device);
    let points = server_points(tb, "kitchen");
    for key in ["v_rms", "frequency", "real_power_1", "kwh"] {
        let got = &points.iter().find(|p| p.0 == key).unwrap().1;
        assert_eq!(got, &want, "{key}");
    }
    for (key, got) in &points {
        assert!(got.is_subset(&want), "{key} holds points at old ts");
    }
}

#[test]
fn old_points_are_deleted_with_a_login_and_reported_without() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let tb = MockServer::start().unwrap();
    let url = tb.url();
    let fleet = common::fleet(h, 1);
    let dev = fleet.devices()[0].clone();
    ok(&pair_rest(h, &dev.id, &url, &["--name", "kitchen"]));
    ok(&ofmon(h, &["collect", "--all", "--json"]));
    let out = ok(&ofmon(h, &["sync", "--json"]));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["devices"][0]["pending"], 0, "{out}");
    assert!(r["devices"][0]["sent"].as_u64().unwrap() >= 20, "{out}");
    assert_exactly_current(&tb, h, &dev.id);

    // Reconstruction refines a third of the records: with the login saved
    // by pairing, the resend deletes the old points (the JSON stays valid).
    let moved = shift(h, &dev.id, 7);
    assert!(moved >= 6, "{moved}");
    let o = ofmon(h, &["sync", "--json"]);
    let out = ok(&o);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["devices"][0]["moved"], moved as u64, "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("deleted {moved} earlier points")),
        "{err}"
    );
    assert_exactly_current(&tb, h, &dev.id);
    assert_eq!(stale_rows(h), 0);

    // Without a login: the old points stay, queued, and the report says how
    // many and how to enable the deletion.
    std::fs::remove_file(h.join(tbsync::rest::LOGIN_FILE)).unwrap();
    let before = record_ts(h, &dev.id);
    let moved = shift(h, &dev.id, 7);
    let text = ok(&ofmon(h, &["sync"]));
    assert!(
        text.contains(&format!("{moved} records were re-sent")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{moved} earlier points of re-sent records remain on ThingsBoard {url}"
        )) && text.contains("ofmon devices --thingsboard"),
        "{text}"
    );
    assert_eq!(stale_rows(h), moved as i64);
    let v_rms = &server_points(&tb, "kitchen")
        .into_iter()
        .find(|p| p.0 == "v_rms")
        .unwrap()
        .1;
    let now = record_ts(h, &dev.id);
    assert_eq!(v_rms, &now.union(&before).copied().collect(), "old kept");
    assert_eq!(v_rms.len(), now.len() + moved);

    // The command the report names saves a login; the next sync deletes
    // what was queued although nothing is re-sent.
    ok(&ofmon(
        h,
        &[
            "devices",
            "--thingsboard",
            &url,
            "--user",
            TENANT_USER,
            "--password",
            TENANT_PASSWORD,
        ],
    ));
    let text = ok(&ofmon(h, &["sync"]));
    assert!(
        text.contains(&format!("deleted {moved} earlier points")),
        "{text}"
    );
    assert!(!text.contains("remain"), "{text}");
    assert_exactly_current(&tb, h, &dev.id);
    assert_eq!(stale_rows(h), 0);
    fleet.stop();
}
