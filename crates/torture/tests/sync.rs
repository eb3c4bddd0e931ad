//! Sync to the ThingsBoard mock through the hostile link, and kill -9 of
//! `ofmon sync` at random moments (CI profile).

use torture::sync::{Fixture, SyncKillOptions, SyncLinkOptions, check_server, expected};

#[test]
fn fixture_and_checker_see_a_wrong_or_missing_point() {
    // The checker itself must be able to fail.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.sqlite");
    let fx = Fixture::build(&db, 2, 20).unwrap();
    let e = expected(&db).unwrap();
    assert_eq!(e.db_records, 40);
    assert_eq!(e.untimed, 0, "the fixture's records all have a time");
    assert_eq!(e.collisions, 0);
    let m = thingsboard_mock::MockServer::start().unwrap();
    fx.provision(&m);
    let names: Vec<String> = fx.devices.iter().map(|d| d.name.clone()).collect();
    let c = check_server(&m, &e, &names, true);
    assert_eq!(c.missing, e.points.len() as u64);
    // Post one record's point with one value off, and one point at a ts no record has.
    let (_, (name, ts, _)) = e.records.iter().next().unwrap();
    let token = &fx.devices.iter().find(|d| &d.name == name).unwrap().token;
    let body = format!(
        r#"[{{"ts":{ts},"values":{{"frequency":1.5}}}},{{"ts":{},"values":{{"frequency":50.0}}}}]"#,
        ts + 1
    );
    let r = torture::http::request(
        &m.url(),
        "POST",
        &format!("/api/v1/{token}/telemetry"),
        &[("Content-Type", "application/json".to_string())],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let c = check_server(&m, &e, &names, true);
    assert_eq!((c.wrong, c.extra), (1, 1), "{c:?}");
    assert_eq!(c.missing, e.points.len() as u64 - 1);
}

#[test]
fn sync_through_a_hostile_link_gets_every_point_exactly_once() {
    let home = tempfile::tempdir().unwrap();
    let rep = torture::sync::run_link(home.path(), &SyncLinkOptions::short()).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&rep).unwrap());
    assert!(rep.ok(), "{rep:#?}");
    assert_eq!(rep.records, 1200);
    assert!(rep.retries > 0, "the link never failed: {rep:?}");
    assert!(rep.proxy.resets > 0);
    let md = torture::sync::render_link(&rep);
    eprintln!("{md}");
    assert!(md.contains(&format!("| {} / {} |", rep.server.stored, rep.points)));
    assert!(md.contains("0 / 0 — **met**"));
}

#[test]
fn kill_9_during_ofmon_sync_loses_and_duplicates_nothing() {
    let ofmon = torture::crash::ofmon_binary().unwrap();
    let home = tempfile::tempdir().unwrap();
    let o = SyncKillOptions::short();
    let rep = torture::sync::run_kills(home.path(), &ofmon, &o).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&rep).unwrap());
    assert!(rep.ok(), "{rep:#?}");
    assert_eq!(rep.kills, u64::from(o.kills));
    assert!(rep.measured >= 3 * (o.records + u64::from(o.kills) * o.grow));
    let md = torture::sync::render_kills(&rep, Some(20));
    eprintln!("{md}");
    assert!(md.contains(&format!("| {} | ≥ 200", rep.kills + 20)));
    assert!(md.contains("0 / 0 — **met**"));
}

#[test]
fn mqtt_gateway_sync_through_a_hostile_link_delivers_every_point() {
    if let Err(e) = torture::sync::mosquitto() {
        eprintln!("skipped: {e}");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let mut o = SyncLinkOptions::short();
    o.records = 200;
    let rep = torture::sync::run_mqtt_link(home.path(), &o).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&rep).unwrap());
    eprintln!("{}", torture::sync::render_mqtt_link(&rep));
    assert!(rep.ok(), "{rep:#?}");
    assert!(rep.proxy.resets + rep.proxy.refused + rep.proxy.stalls > 0);
}
