//! Data routes, limits and legacy byte formats through the real HTTP stack.

mod common;

use std::time::Duration;

use common::*;

fn paired(name: &str, f: impl FnOnce(&mut sim::SimOptions)) -> (sim::Fleet, Client) {
    let (fleet, home) = start(name, |o| {
        o.speed = 3000.0;
        o.interval_s = 10;
        f(o);
    });
    let d = fleet.devices()[0].clone();
    assert!(fleet.wait_sim_seconds(120.0, Duration::from_secs(30)));
    fleet.pause(true);
    let mut c = Client::new(&home, &d.url, &d.id);
    assert_eq!(c.pair().status, 200);
    (fleet, c)
}

#[test]
fn records_binary_matches_json_and_ack_moves_forward() {
    let (fleet, mut c) = paired("records", |_| {});
    let json = c.records_json(0);
    assert!(json.len() >= 10, "{}", json.len());

    // Binary: the store's entries; a decoder started at `after` yields the
    // same records as the JSON form.
    let after = json[2]["seq"].as_u64().unwrap();
    let r = c.call(
        "GET",
        &format!("/api/v1/records?after={after}&limit=5"),
        b"",
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("x-ofmon-count"), Some("5"));
    let mut dec = store::record::Decoder::new(after);
    let mut pos = 0;
    let mut got = Vec::new();
    while pos < r.body.len() {
        let d = dec.decode(&r.body[pos..]).unwrap().expect("whole entries");
        pos += d.consumed;
        got.extend(d.record);
    }
    assert_eq!(got.len(), 5);
    for (b, j) in got.iter().zip(&json[3..8]) {
        assert_eq!(b.seq, j["seq"].as_u64().unwrap());
        assert_eq!(b.uptime_ms, j["uptime_ms"].as_u64().unwrap());
        assert_eq!(
            b.circuits[0].import_mwh,
            j["circuits"][0]["import_mwh"].as_u64().unwrap()
        );
        assert_eq!(
            b.voltages[0].rms_cv,
            j["voltages"][0]["rms_cv"].as_u64().unwrap() as u32
        );
    }
    // Physically plausible: 230 V mains, 50 Hz.
    let v = got[0].voltages[0].rms_cv as f64 / 100.0;
    assert!((v - 230.0).abs() < 3.0, "{v}");
    assert!((got[0].frequency_mhz as i64 - 50_000).abs() < 100);

    // Ack: forward only, never past the newest record, never deletes.
    let last = json.last().unwrap()["seq"].as_u64().unwrap();
    let ack = |c: &mut Client, seq: u64| {
        c.call(
            "POST",
            "/api/v1/ack",
            format!("{{\"seq\":{seq}}}").as_bytes(),
            &[],
        )
    };
    let r = ack(&mut c, 5);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["acked_seq"], 5);
    assert_eq!(ack(&mut c, 3).json()["acked_seq"], 5);
    assert_eq!(ack(&mut c, last + 100).status, 400);
    assert_eq!(c.records_json(0).len(), json.len(), "ack never deletes");
    let info = get(&c.url.clone(), "/api/v1/info").json();
    assert_eq!(info["acked_seq"], 5);

    // Malformed input: 400 with a reason.
    let r = c.call("POST", "/api/v1/ack", b"{nope", &[]);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("JSON"));
    let r = c.call("GET", "/api/v1/records?after=x", b"", &[]);
    assert_eq!(r.status, 400);
    // Too large: refused before the body is read.
    let big = vec![b' '; 4096];
    let r = c.call("POST", "/api/v1/ack", &big, &[]);
    assert_eq!(r.status, 413);
    fleet.stop();
}

#[test]
fn time_config_live_events_reboot_and_factory_reset() {
    let (fleet, mut c) = paired("misc", |_| {});
    let t = now_ms();
    let r = c.call(
        "POST",
        "/api/v1/time",
        format!("{{\"unix_ms\":{t},\"uncertainty_ms\":20}}").as_bytes(),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let info = get(&c.url.clone(), "/api/v1/info").json();
    assert_eq!(info["clock"]["state"], "set");
    let r = c.call(
        "POST",
        "/api/v1/time",
        br#"{"unix_ms":5,"uncertainty_ms":1}"#,
        &[],
    );
    assert_eq!(r.status, 400, "before 2020 is refused");

    // Config: get, modify, put back.
    let mut cfg = c.call("GET", "/api/v1/config", b"", &[]).json();
    cfg["interval_s"] = 30.into();
    cfg["ssid_prefix"] = "Shop-".into();
    let r = c.call("PUT", "/api/v1/config", cfg.to_string().as_bytes(), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["interval_s"], 30);
    let info = get(&c.url.clone(), "/api/v1/info").json();
    assert!(info["ssid"].as_str().unwrap().starts_with("Shop-"));
    cfg["channels"]["cts"] = 3.into();
    let r = c.call("PUT", "/api/v1/config", cfg.to_string().as_bytes(), &[]);
    assert_eq!(r.status, 400);

    let live = c.call("GET", "/api/v1/live", b"", &[]);
    assert_eq!(live.status, 200, "{}", live.text());
    assert!(live.json()["voltages_v"][0].as_f64().unwrap() > 200.0);

    let ev = c.call("GET", "/api/v1/events", b"", &[]).json();
    let kinds: Vec<String> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"]["type"].as_str().unwrap().to_string())
        .collect();
    for k in ["boot", "time_sync", "paired", "config"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing in {kinds:?}");
    }

    // Reboot: a new boot id, still paired, nothing lost.
    let before = get(&c.url.clone(), "/api/v1/info").json();
    fleet.pause(false);
    let r = c.call("POST", "/api/v1/reboot", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut after = before.clone();
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(20));
        let r = get(&c.url.clone(), "/api/v1/info");
        if r.status == 200 && r.json()["boot_id"] != before["boot_id"] {
            after = r.json();
            break;
        }
    }
    assert_ne!(after["boot_id"], before["boot_id"]);
    assert_eq!(after["paired"], true);
    assert!(after["records"]["last"].as_u64() >= before["records"]["last"].as_u64());

    // Factory reset: unpaired again, records gone, seqs continue above.
    let last = after["records"]["last"].as_u64().unwrap();
    let r = c.call("POST", "/api/v1/factory-reset", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut info = after.clone();
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(20));
        let r = get(&c.url.clone(), "/api/v1/info");
        if r.status == 200 && r.json()["paired"] == false {
            info = r.json();
            break;
        }
    }
    assert_eq!(info["paired"], false);
    assert_eq!(
        c.pair().status,
        200,
        "pairing reopens after a factory reset"
    );
    fleet.pause(true);
    std::thread::sleep(Duration::from_millis(50));
    let recs = c.records_json(0);
    assert!(recs.iter().all(|r| r["seq"].as_u64().unwrap() > last));
    fleet.stop();
}

#[test]
fn legacy_routes_speak_the_original_byte_formats() {
    let (fleet, mut c) = paired("legacy", |o| o.legacy = true);
    let d = &fleet.devices()[0];
    assert!(
        d.ssid.starts_with("SEM-") && d.ssid.contains(':'),
        "{}",
        d.ssid
    );
    let url = c.url.clone();

    assert_eq!(get(&url, "/version").text(), "200");
    assert!(get(&url, "/").text().contains("OFMon"));

    // POST /time: u64 LE unix ms.
    let t = now_ms();
    assert_eq!(
        request(&url, "POST", "/time", &[], &t.to_le_bytes()).status,
        200
    );
    assert_eq!(request(&url, "POST", "/time", &[], &[1, 2, 3]).status, 400);

    // Token: 56 bytes in, the same 56 out.
    let mut tok = b"ABCDEFGHIJKLMNOPQRST".to_vec();
    tok.extend_from_slice(b"123e4567-e89b-12d3-a456-426614174000");
    assert_eq!(request(&url, "POST", "/token", &[], &tok).status, 200);
    assert_eq!(get(&url, "/token").body, tok);

    // Telemetry: 30-byte records (1 CT), v_rms ~230 V.
    let json = c.records_json(0);
    let tel = get(&url, "/telemetry");
    assert_eq!(tel.status, 200);
    assert_eq!(tel.body.len(), 30 * json.len());
    let rec = &tel.body[..30];
    assert_eq!(u16::from_le_bytes([rec[0], rec[1]]), 0);
    let v = f32::from_le_bytes(rec[14..18].try_into().unwrap());
    assert!((v - 230.0).abs() < 3.0, "{v}");
    let p = f32::from_le_bytes(rec[2..6].try_into().unwrap());
    assert!(
        (p as f64 - json[0]["circuits"][0]["real_power_dw"].as_f64().unwrap() / 10.0).abs() < 0.01
    );

    // /reset acks only what /telemetry served: records written after the
    // download stay un-acked.
    fleet.pause(false);
    assert!(fleet.wait_sim_seconds(
        fleet.stats(0).unwrap().sim_elapsed_s + 60.0,
        Duration::from_secs(30)
    ));
    fleet.pause(true);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(get(&url, "/reset").status, 200);
    let info = get(&url, "/api/v1/info").json();
    let served_last = json.last().unwrap()["seq"].as_u64().unwrap();
    assert_eq!(info["acked_seq"].as_u64(), Some(served_last));
    assert!(info["records"]["last"].as_u64().unwrap() > served_last);
    let tel2 = get(&url, "/telemetry");
    assert!(!tel2.body.is_empty(), "unseen readings survive /reset");
    assert_eq!(get(&url, "/powerloss_log").status, 200);
    fleet.stop();
}
