//! `ofmon tb-mock`, `ofmon pair --thingsboard … --user … --password …` and
//! `ofmon sync` as a new user runs them: pair through the REST API, collect
//! from the simulator, sync, then read the points back through the REST API.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use thingsboard_mock::{MockServer, TENANT_PASSWORD, TENANT_USER};

mod common;
use common::{login, ofmon, ok, pair_rest, rest_get};

#[test]
fn tb_mock_prints_url_and_login() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ofmon"))
        .args(["tb-mock", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
    let second = lines.next().unwrap().unwrap();
    assert!(second.contains(TENANT_USER) && second.contains(TENANT_PASSWORD));
    assert!(!login(&url).is_empty());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn pair_by_rest_collect_sync_and_read_back() {
    let home = tempfile::tempdir().unwrap();
    let tb = MockServer::start().unwrap();
    let fleet = common::fleet(home.path(), 2);
    let devs = fleet.devices();
    let url = tb.url();
    // Device 0 gets an explicit name; device 1 is named after its SSID.
    ok(&pair_rest(
        home.path(),
        &devs[0].id,
        &url,
        &["--name", "kitchen", "--profile", "ofmon-meter"],
    ));
    ok(&pair_rest(home.path(), &devs[1].ssid, &url, &[]));
    let kitchen = tb.device("kitchen").expect("device created on the server");
    assert_eq!(kitchen.profile, "ofmon-meter");
    assert!(tb.device(&devs[1].ssid).is_some());
    // Wrong password: a clear refusal.
    let o = ofmon(
        home.path(),
        &[
            "pair",
            &devs[0].id,
            "--thingsboard",
            &url,
            "--user",
            TENANT_USER,
            "--password",
            "nope",
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong user or password"));

    let out = ok(&ofmon(home.path(), &["collect", "--all", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");
    // Sync with the server remembered from pairing.
    let out = ok(&ofmon(home.path(), &["sync", "--json"]));
    let r: Value = serde_json::from_str(&out).unwrap();
    let devices = r["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    let mut sent_total = 0;
    for d in devices {
        assert_eq!(d["status"]["status"], "done", "{out}");
        assert_eq!(d["pending"], 0);
        sent_total += d["sent"].as_u64().unwrap();
    }
    assert!(sent_total >= 40, "{out}");
    // Again: nothing to send.
    let out = ok(&ofmon(home.path(), &["sync", "--json"]));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert!(
        r["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["sent"] == 0)
    );

    // Read back through the REST API like a dashboard would.
    let jwt = login(&url);
    let d = rest_get(
        &format!("{url}/api/tenant/devices?deviceName=kitchen"),
        &jwt,
    );
    let id = d["id"]["id"].as_str().unwrap();
    let ts = rest_get(
        &format!(
            "{url}/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=v_rms,real_power_1,real_power_3,kwh&startTs=0&endTs=9999999999999&limit=100000"
        ),
        &jwt,
    );
    let n = ts["v_rms"].as_array().unwrap().len();
    assert!(n >= 20, "{ts}");
    for k in ["real_power_1", "real_power_3", "kwh"] {
        assert_eq!(ts[k].as_array().unwrap().len(), n, "{k}");
    }
    let v: f64 = ts["v_rms"][0]["value"].as_str().unwrap().parse().unwrap();
    assert!((100.0..300.0).contains(&v), "{v}");
    // The human summary.
    let text = ok(&ofmon(home.path(), &["sync"]));
    assert!(text.contains("kitchen") && text.contains("ok"), "{text}");
    fleet.stop();
}
