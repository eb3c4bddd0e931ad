//! MQTT device API and gateway API against a real broker (mosquitto,
//! started by the test on a free loopback port): subscribe and check every
//! payload, then check the outbox marks.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::broker::{self, subscribe};
use common::*;
use serde_json::Value;
use tbsync::{DeviceStatus, SyncOptions, Syncer, Transport};

struct Broker {
    port: u16,
    _m: broker::Mosquitto,
}

fn mosquitto() -> Broker {
    mosquitto_with(true)
}

fn mosquitto_with(anonymous: bool) -> Broker {
    let port = broker::free_port();
    let conf =
        format!("listener {port} 127.0.0.1\nallow_anonymous {anonymous}\nmax_packet_size 65536\n");
    let m = broker::Mosquitto::start(tempfile::tempdir().unwrap(), &conf, &[port]);
    Broker { port, _m: m }
}

fn drain(
    rx: &std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    want_points: usize,
) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut points = 0;
    let t = Instant::now();
    while points < want_points && t.elapsed() < Duration::from_secs(20) {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: Value = serde_json::from_slice(&m.1).unwrap();
            points += match &v {
                Value::Array(a) => a.len(),
                Value::Object(o) => o.values().filter_map(Value::as_array).map(Vec::len).sum(),
                _ => 0,
            };
            out.push(m);
        }
    }
    // Anything extra that arrives shortly after.
    while let Ok(m) = rx.recv_timeout(Duration::from_millis(300)) {
        out.push(m);
    }
    out
}

/// Checks points against the fixture: ts → device by range.
fn check_points(points: &[Value], device: &str, expect: &[u64]) {
    let mut by_ts: BTreeMap<i64, &Value> = BTreeMap::new();
    for p in points {
        let ts = p["ts"].as_i64().unwrap();
        assert!(
            by_ts.insert(ts, &p["values"]).is_none(),
            "duplicate ts {ts}"
        );
    }
    assert_eq!(by_ts.len(), expect.len(), "{device}: point count");
    for &seq in expect {
        let r = reading(device, seq);
        let got = by_ts
            .get(&r.ts_ms)
            .unwrap_or_else(|| panic!("{device}: seq {seq} missing"));
        let exp = r.expected_values();
        assert_eq!(got.as_object().unwrap().len(), exp.len());
        for (k, v) in exp {
            assert_eq!(got[&k].as_f64(), Some(v), "{device} seq {seq} {k}");
        }
    }
}

fn opts(url: String, transport: Transport) -> SyncOptions {
    SyncOptions {
        server: Some(url),
        transport,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        ..SyncOptions::default()
    }
}

#[test]
fn device_api_publishes_every_record_once_within_64k() {
    let b = mosquitto();
    let rx = subscribe(b.port, "v1/devices/me/telemetry");
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    add_device(&conn, "MA01", "mq-1", Some("tok-1"), None);
    add_device(&conn, "MA02", "mq-2", Some("tok-2"), None);
    add_records(&conn, "MA01", 1, 600, false);
    add_records(&conn, "MA02", 10_001, 10_300, false);
    let url = format!("mqtt://127.0.0.1:{}", b.port);
    let r = Syncer::new(&conn, opts(url.clone(), Transport::Auto))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(r.all_done(), "{r:?}");
    assert_eq!(r.sent(), 900);
    let msgs = drain(&rx, 900);
    let mut pts = Vec::new();
    for (topic, payload) in &msgs {
        assert_eq!(topic, "v1/devices/me/telemetry");
        assert!(
            payload.len() < 64 * 1024,
            "payload of {} bytes",
            payload.len()
        );
        let v: Value = serde_json::from_slice(payload).unwrap();
        pts.extend(v.as_array().unwrap().iter().cloned());
    }
    assert!(
        msgs.len() >= 900 * 700 / (64 * 1024),
        "batches respect 64 KiB"
    );
    let (a, b2): (Vec<Value>, Vec<Value>) = pts
        .into_iter()
        .partition(|p| p["ts"].as_i64().unwrap() < T0 + 10_000 * 60_000);
    check_points(&a, "MA01", &(1..=600).collect::<Vec<_>>());
    check_points(&b2, "MA02", &(10_001..=10_300).collect::<Vec<_>>());
    // Second run: nothing published.
    let r = Syncer::new(&conn, opts(url, Transport::Mqtt))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert_eq!(r.sent(), 0);
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
}

#[test]
fn gateway_api_connects_then_publishes_by_name() {
    let b = mosquitto();
    let rx = subscribe(b.port, "v1/gateway/#");
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    add_device(&conn, "GA01", "Kitchen \"A\"", None, None);
    add_device(&conn, "GA02", "Garage", Some("tok-g2"), None);
    add_records(&conn, "GA01", 1, 400, false);
    add_records(&conn, "GA02", 1, 150, false);
    let url = format!("mqtt://127.0.0.1:{}", b.port);
    let o = SyncOptions {
        gateway_token: Some("gw-token".into()),
        ..opts(url.clone(), Transport::Gateway)
    };
    let r = Syncer::new(&conn, o).unwrap().run(&mut |_| {}).unwrap();
    assert!(r.all_done(), "{r:?}");
    assert_eq!(r.sent(), 550);
    let msgs = drain(&rx, 550);
    let mut by_name: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut connected = Vec::new();
    for (topic, payload) in &msgs {
        assert!(payload.len() < 64 * 1024);
        let v: Value = serde_json::from_slice(payload).unwrap();
        match topic.as_str() {
            "v1/gateway/connect" => {
                connected.push(v["device"].as_str().unwrap().to_string());
            }
            "v1/gateway/telemetry" => {
                for (name, pts) in v.as_object().unwrap() {
                    assert!(
                        connected.contains(name),
                        "telemetry for {name} before connect"
                    );
                    by_name
                        .entry(name.clone())
                        .or_default()
                        .extend(pts.as_array().unwrap().iter().cloned());
                }
            }
            t => panic!("unexpected topic {t}"),
        }
    }
    assert_eq!(
        connected,
        vec!["Kitchen \"A\"".to_string(), "Garage".to_string()]
    );
    check_points(
        &by_name["Kitchen \"A\""],
        "GA01",
        &(1..=400).collect::<Vec<_>>(),
    );
    check_points(&by_name["Garage"], "GA02", &(1..=150).collect::<Vec<_>>());
    // Without the gateway token: a clear failure, nothing marked.
    add_records(&conn, "GA02", 151, 160, false);
    let r = Syncer::new(&conn, opts(url, Transport::Gateway))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(matches!(r.devices[1].status, DeviceStatus::Failed(_)));
    assert_eq!(r.devices[1].pending, 10);
}

#[test]
fn broker_down_then_up_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    add_device(&conn, "MB01", "mq", Some("tok"), None);
    add_records(&conn, "MB01", 1, 200, false);
    // Nobody listens on this port.
    let port = broker::free_port();
    let o = SyncOptions {
        max_retries: 2,
        ..opts(format!("mqtt://127.0.0.1:{port}"), Transport::Mqtt)
    };
    let r = Syncer::new(&conn, o).unwrap().run(&mut |_| {}).unwrap();
    assert!(
        matches!(r.devices[0].status, DeviceStatus::GaveUp(_)),
        "{r:?}"
    );
    assert_eq!(r.devices[0].pending, 200);
    let b = mosquitto();
    let rx = subscribe(b.port, "v1/devices/me/telemetry");
    let r = Syncer::new(
        &conn,
        opts(format!("mqtt://127.0.0.1:{}", b.port), Transport::Mqtt),
    )
    .unwrap()
    .run(&mut |_| {})
    .unwrap();
    assert!(r.all_done());
    let msgs = drain(&rx, 200);
    let pts: Vec<Value> = msgs
        .iter()
        .flat_map(|(_, p)| {
            serde_json::from_slice::<Value>(p)
                .unwrap()
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    check_points(&pts, "MB01", &(1..=200).collect::<Vec<_>>());
}

#[test]
fn refused_connection_is_unauthorized_and_others_go_on() {
    // A broker that refuses every login, like ThingsBoard with a bad token.
    let b = mosquitto_with(false);
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    add_device(&conn, "MC01", "a", Some("bad"), None);
    add_device(&conn, "MC02", "b", Some("bad2"), None);
    add_records(&conn, "MC01", 1, 20, false);
    add_records(&conn, "MC02", 1, 20, false);
    let r = Syncer::new(
        &conn,
        opts(format!("mqtt://127.0.0.1:{}", b.port), Transport::Mqtt),
    )
    .unwrap()
    .run(&mut |_| {})
    .unwrap();
    assert_eq!(r.devices.len(), 2);
    for d in &r.devices {
        assert_eq!(d.status, DeviceStatus::Unauthorized, "{r:?}");
        assert_eq!(d.pending, 20);
    }
}
