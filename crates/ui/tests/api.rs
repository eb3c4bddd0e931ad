//! The dashboard's JSON API over a real demo: three simulated devices with a
//! day of history, paired and collected through the collector library.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::Value;
use ui::demo::{Demo, DemoOptions};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn get(url: &str) -> (u16, Value) {
    let mut r = agent().get(url).call().unwrap();
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn post(url: &str, body: &str, origin: Option<&str>) -> (u16, Value) {
    let mut req = agent().post(url).header("Content-Type", "application/json");
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    let mut r = req.send(body).unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn post_bytes(url: &str, body: &[u8]) -> (u16, Value) {
    let mut r = agent()
        .post(url)
        .header("Content-Type", "application/octet-stream")
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Reads a job's SSE stream to its end; returns the event names and the last data.
fn follow(base: &str, events: &str) -> (Vec<String>, Value) {
    let mut r = agent()
        .get(&format!("{base}{}", events.trim_start_matches('/')))
        .call()
        .unwrap();
    let reader = BufReader::new(r.body_mut().as_reader());
    let mut names = Vec::new();
    let mut last = Value::Null;
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("event: ") {
            names.push(n.to_string());
        } else if let Some(d) = line.strip_prefix("data: ") {
            last = serde_json::from_str(d).unwrap();
        }
    }
    (names, last)
}

/// Distinct telemetry timestamps the mock holds for a device.
fn timestamps(tb: &thingsboard_mock::MockServer, name: &str) -> usize {
    tb.with_device(name, |d| {
        d.telemetry
            .values()
            .flat_map(|m| m.keys().copied())
            .collect::<std::collections::BTreeSet<i64>>()
            .len()
    })
    .unwrap_or(0)
}

#[test]
fn demo_api_end_to_end() {
    let t = Instant::now();
    let demo = Demo::start(
        DemoOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            history_days: 1.0,
            ..DemoOptions::default()
        },
        &|l| eprintln!("demo: {l}"),
    )
    .unwrap();
    eprintln!(
        "demo started in {:.1} s: {:?}",
        t.elapsed().as_secs_f64(),
        demo.timings
    );
    let base = demo.url();
    let home = demo.home().to_path_buf();
    assert!(demo.temporary_home());

    let (s, fleet) = get(&format!("{base}api/fleet"));
    assert_eq!(s, 200);
    let devs = fleet["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 3, "{fleet}");
    let mock = demo.thingsboard_mock_url().unwrap();
    let tb = demo.thingsboard_mock().unwrap();
    for d in devs {
        let ssid = d["ssid"].as_str().unwrap();
        assert!(ssid.starts_with("OFMon-"), "{ssid}");
        assert!(d["paired"].as_bool().unwrap());
        assert_eq!(d["tb_server"].as_str(), Some(mock.as_str()));
        // A day of 1-minute records, minus power-cut outages.
        let n = d["records"].as_u64().unwrap();
        assert!((1200..=1500).contains(&n), "{n} records");
        // The demo synced everything to the mock: one timestamp per record.
        assert_eq!(d["pending_sync"].as_u64(), Some(0), "{d}");
        let name = d["name"].as_str().unwrap();
        assert_eq!(timestamps(tb, name), n as usize, "{name}");
        assert!(d["storage"]["used_bytes"].as_u64().unwrap() > 0);
        assert!(d["last_collect_age_s"].as_i64().unwrap() < 120);
        // The collect set the clock after reading /info.
        assert_eq!(d["clock"]["state"], "set", "{d}");
    }
    let cts: Vec<u64> = devs.iter().map(|d| d["cts"].as_u64().unwrap()).collect();
    assert_eq!(cts.iter().filter(|c| **c == 3).count(), 1, "{cts:?}");

    // Series: aligned, in W/V/Hz with plausible values.
    for (d, demo_dev) in devs.iter().zip(&demo.devices) {
        let _ = demo_dev;
        let id = d["id"].as_str().unwrap();
        let (s, ser) = get(&format!("{base}api/devices/{id}/series?points=300"));
        assert_eq!(s, 200);
        let t = ser["t"].as_array().unwrap();
        assert!(t.len() >= 100 && t.len() <= 400, "{} points", t.len());
        let p = ser["power_w"].as_array().unwrap();
        assert_eq!(p.len() as u64, d["cts"].as_u64().unwrap());
        assert!(p.iter().all(|c| c.as_array().unwrap().len() == t.len()));
        let v: Vec<f64> = ser["voltage_v"][0]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert!(v.iter().all(|v| (180.0..280.0).contains(v)), "{v:?}");
        let f: Vec<f64> = ser["frequency_hz"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert!(f.iter().all(|f| (45.0..55.0).contains(f)));
        // Zoom: a narrower range gives finer buckets.
        let from = ser["from_ms"].as_i64().unwrap();
        let (_, zoom) = get(&format!(
            "{base}api/devices/{id}/series?points=300&from={from}&to={}",
            from + 3_600_000
        ));
        assert_eq!(zoom["bucket_ms"].as_i64(), Some(60_000));
        assert!(zoom["t"].as_array().unwrap().len() <= 61);

        let (st, ev) = get(&format!("{base}api/devices/{id}/events"));
        assert_eq!(st, 200, "{ev}");
        let kinds: Vec<&str> = ev
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"boot"), "{kinds:?}");
        assert!(kinds.contains(&"clock_set"), "{kinds:?}");
    }
    // Energy: the solar home exports, everyone imports.
    let energy = |id: &str| {
        let (_, e) = get(&format!("{base}api/devices/{id}/energy?tz_offset_min=0"));
        let days = e.as_array().unwrap().clone();
        let imp: f64 = days.iter().map(|d| d["import_wh"].as_f64().unwrap()).sum();
        let exp: f64 = days.iter().map(|d| d["export_wh"].as_f64().unwrap()).sum();
        (imp, exp)
    };
    let household = energy(&demo.devices[0].id);
    let solar = energy(&demo.devices[1].id);
    assert!(household.0 > 1000.0, "{household:?}");
    assert!(solar.1 > 100.0, "solar export {solar:?}");

    // Actions with live progress.
    let id = &demo.devices[0].id;
    let (s, started) = post(
        &format!("{base}api/actions/collect"),
        &format!("{{\"device\":\"{id}\"}}"),
        None,
    );
    assert_eq!(s, 202, "{started}");
    let (names, last) = follow(&base, started["events"].as_str().unwrap());
    assert_eq!(
        names.last().map(String::as_str),
        Some("done"),
        "{names:?} {last}"
    );
    assert!(names.iter().any(|n| n == "progress"));
    assert_eq!(last["result"][0]["device_id"].as_str(), Some(id.as_str()));

    let (s, started) = post(&format!("{base}api/actions/time"), "{}", None);
    assert_eq!(s, 202);
    let (names, _) = follow(&base, started["events"].as_str().unwrap());
    assert_eq!(names.iter().filter(|n| *n == "progress").count(), 3);

    // Sync: the records collected since the demo's own sync reach the mock.
    let tb_name = &demo.devices[0].tb_name;
    let before = timestamps(tb, tb_name);
    let (_, d0) = get(&format!("{base}api/devices/{id}"));
    let pending = d0["pending_sync"].as_u64().unwrap();
    let (s, started) = post(&format!("{base}api/actions/sync"), "{}", None);
    assert_eq!(s, 202, "{started}");
    let (names, last) = follow(&base, started["events"].as_str().unwrap());
    assert_eq!(
        names.last().map(String::as_str),
        Some("done"),
        "{names:?} {last}"
    );
    let sent: u64 = last["result"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["sent"].as_u64().unwrap())
        .sum();
    assert!(sent >= pending, "{last}");
    assert_eq!(timestamps(tb, tb_name), before + pending as usize);
    let (_, fleet) = get(&format!("{base}api/fleet"));
    for d in fleet["devices"].as_array().unwrap() {
        assert_eq!(d["pending_sync"].as_u64(), Some(0), "{d}");
    }
    let (_, settings) = get(&format!("{base}api/settings"));
    assert_eq!(settings["sync_available"], true);
    // Firmware update from the dashboard: an upload signed with the demo's
    // firmware key (home/firmware.key) reaches the device, which reboots
    // into it; a file that is not a signed upload is refused up front.
    let seed = std::fs::read_to_string(home.join(ui::demo::FIRMWARE_KEY_FILE)).unwrap();
    let seed = protocol::hex::decode_array::<32>(seed.trim()).unwrap();
    let key = protocol::firmware::FirmwareSigningKey::from_seed(&seed);
    let dev_url = &demo.devices[0].url;
    let (_, info) = get(&format!("{dev_url}/api/v1/info"));
    let running: protocol::firmware::FirmwareVersion =
        info["firmware"].as_str().unwrap().parse().unwrap();
    let next = protocol::firmware::FirmwareVersion::new(running.major + 1, 0, 0);
    let upload = key
        .sign_image(
            &sim::firmware::image(next, 200_000, false),
            next,
            info["board"].as_str().unwrap(),
        )
        .unwrap();
    let (s, e) = post_bytes(
        &format!("{base}api/actions/ota?device={id}"),
        b"not firmware",
    );
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("sign-firmware"),
        "{e}"
    );
    let (s, _) = post(&format!("{base}api/actions/ota?device={id}"), "{}", None);
    assert_eq!(s, 415);
    let (s, started) = post_bytes(&format!("{base}api/actions/ota?device={id}"), &upload);
    assert_eq!(s, 202, "{started}");
    let (names, last) = follow(&base, started["events"].as_str().unwrap());
    assert_eq!(
        names.last().map(String::as_str),
        Some("done"),
        "{names:?} {last}"
    );
    assert!(names.iter().any(|n| n == "progress"), "{names:?}");
    assert_eq!(
        last["result"]["firmware"].as_str(),
        Some(next.to_string().as_str())
    );
    let (_, info) = get(&format!("{dev_url}/api/v1/info"));
    assert_eq!(info["firmware"].as_str(), Some(next.to_string().as_str()));
    // The same upload again is a downgrade-or-equal: the device refuses it
    // and the job says why.
    let (s, started) = post_bytes(&format!("{base}api/actions/ota?device={id}"), &upload);
    assert_eq!(s, 202, "{started}");
    let (names, last) = follow(&base, started["events"].as_str().unwrap());
    assert_eq!(names.last().map(String::as_str), Some("failed"), "{last}");
    assert!(
        last["message"].as_str().unwrap().contains("only newer"),
        "{last}"
    );
    let (s, _) = post(
        &format!("{base}api/actions/collect"),
        "{\"device\":\"0000DEADBEEF\"}",
        None,
    );
    assert_eq!(s, 404);
    let (s, _) = post(
        &format!("{base}api/actions/collect"),
        "{}",
        Some("http://evil.example"),
    );
    assert_eq!(s, 403);
    let (s, _) = get(&format!("{base}api/devices/0000DEADBEEF/series"));
    assert_eq!(s, 404);

    // Pages and assets are embedded.
    let mut r = agent().get(&base).call().unwrap();
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("uPlot.iife.min.js")
    );
    let r = agent()
        .get(&format!("{base}assets/vendor/uPlot.iife.min.js"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    demo.stop();
    assert!(!home.exists(), "temporary home removed");
}
