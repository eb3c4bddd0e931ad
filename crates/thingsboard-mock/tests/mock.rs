//! Behaviour of the mock against the facts in `reference/thingsboard.md`.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};
use thingsboard_mock::{MockServer, TENANT_PASSWORD, TENANT_USER};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn post(c: &Client, url: &str, body: &str) -> u16 {
    c.post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn login(c: &Client, m: &MockServer) -> String {
    let r: Value = c
        .post(format!("{}/api/auth/login", m.url()))
        .json(&json!({"username": TENANT_USER, "password": TENANT_PASSWORD}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    r["token"].as_str().unwrap().to_string()
}

#[test]
fn telemetry_status_codes_and_upsert() {
    let m = MockServer::start().unwrap();
    m.add_device("d1", "tok1");
    let c = client();
    let url = format!("{}/api/v1/tok1/telemetry", m.url());
    // Accepted, empty body.
    let r = c
        .post(&url)
        .body(r#"[{"ts":1000,"values":{"a":1,"b":2.5}},{"ts":2000,"values":{"a":3}}]"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().unwrap().is_empty());
    assert_eq!(m.point_count("d1"), 3);
    // Upsert: same (key, ts) overwrites.
    assert_eq!(post(&c, &url, r#"{"ts":1000,"values":{"a":9}}"#), 200);
    assert_eq!(m.point_count("d1"), 3);
    let d = m.device("d1").unwrap();
    assert_eq!(d.telemetry["a"][&1000].as_f64(), Some(9.0));
    // Unknown token → 401; malformed JSON → 500.
    assert_eq!(
        post(&c, &format!("{}/api/v1/nope/telemetry", m.url()), "{}"),
        401
    );
    assert_eq!(post(&c, &url, "{not json"), 500);
    // Body limit → 413.
    m.set_body_limit(100);
    assert_eq!(
        post(&c, &url, &format!(r#"{{"k":"{}"}}"#, "x".repeat(200))),
        413
    );
    m.set_body_limit(thingsboard_mock::DEFAULT_BODY_LIMIT);
    // Revoked token → 401.
    m.revoke_token("tok1");
    assert_eq!(post(&c, &url, r#"{"a":1}"#), 401);
    m.restore_token("tok1");
    assert_eq!(post(&c, &url, r#"{"a":1}"#), 200);
    // Attributes.
    assert_eq!(
        post(
            &c,
            &format!("{}/api/v1/tok1/attributes", m.url()),
            r#"{"fw":"1.2"}"#
        ),
        200
    );
    assert!(m.device("d1").unwrap().attributes.contains_key("fw"));
}

#[test]
fn gzip_is_malformed_unless_a_proxy_decompresses() {
    use std::io::Write;
    let m = MockServer::start().unwrap();
    m.add_device("d", "t");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(br#"{"ts":1,"values":{"a":1}}"#).unwrap();
    let gz = e.finish().unwrap();
    let c = client();
    let send = || {
        c.post(format!("{}/api/v1/t/telemetry", m.url()))
            .header("content-encoding", "gzip")
            .body(gz.clone())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(send(), 500);
    m.set_accept_gzip(true);
    assert_eq!(send(), 200);
    assert_eq!(m.point_count("d"), 1);
}

#[test]
fn faults_fail_rate_limit_and_drop() {
    let m = MockServer::start().unwrap();
    m.add_device("d", "t");
    let c = client();
    let url = format!("{}/api/v1/t/telemetry", m.url());
    m.fail_next(2);
    assert_eq!(post(&c, &url, r#"{"a":1}"#), 500);
    assert_eq!(post(&c, &url, r#"{"a":1}"#), 500);
    assert_eq!(post(&c, &url, r#"{"a":1}"#), 200);
    m.set_rate_limit(Some((2, Duration::from_secs(60))));
    assert_eq!(post(&c, &url, r#"{"a":1}"#), 200);
    assert_eq!(post(&c, &url, r#"{"a":1}"#), 200);
    assert_eq!(post(&c, &url, r#"{"a":1}"#), 500);
    m.clear_faults();
    // Dropped before storing: the client sees an error, nothing stored.
    m.drop_next(1);
    let r = c.post(&url).body(r#"{"ts":5,"values":{"z":1}}"#).send();
    assert!(r.is_err());
    assert_eq!(m.device("d").unwrap().telemetry.get("z"), None);
    // Dropped after storing: error, but the point is there.
    m.drop_after_store_next(1);
    let r = c.post(&url).body(r#"{"ts":5,"values":{"z":1}}"#).send();
    assert!(r.is_err());
    assert!(m.device("d").unwrap().telemetry["z"].contains_key(&5));
    // Delay.
    m.set_delay(Duration::from_millis(150));
    let t = std::time::Instant::now();
    assert_eq!(post(&c, &url, r#"{"a":1}"#), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[test]
fn rest_login_devices_credentials_timeseries() {
    let m = MockServer::start().unwrap();
    let c = client();
    // Bad login → 401 with the JSON error body.
    let r = c
        .post(format!("{}/api/auth/login", m.url()))
        .json(&json!({"username": TENANT_USER, "password": "wrong"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // No token → 401.
    let r = c
        .post(format!("{}/api/device", m.url()))
        .json(&json!({"name": "x"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let jwt = login(&c, &m);
    let auth = format!("Bearer {jwt}");
    let mut ids = Vec::new();
    for i in 0..5 {
        let d: Value = c
            .post(format!("{}/api/device", m.url()))
            .header("x-authorization", &auth)
            .json(&json!({"name": format!("meter-{i}"), "type": "ofmon"}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(d["id"]["entityType"], "DEVICE");
        ids.push(d["id"]["id"].as_str().unwrap().to_string());
    }
    // Duplicate name → 400.
    let r = c
        .post(format!("{}/api/device", m.url()))
        .header("x-authorization", &auth)
        .json(&json!({"name": "meter-0"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Paging.
    let mut seen = Vec::new();
    let mut page = 0;
    loop {
        let p: Value = c
            .get(format!(
                "{}/api/tenant/devices?pageSize=2&page={page}",
                m.url()
            ))
            .header("x-authorization", &auth)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(p["totalPages"], 3);
        for d in p["data"].as_array().unwrap() {
            seen.push(d["name"].as_str().unwrap().to_string());
        }
        if !p["hasNext"].as_bool().unwrap() {
            break;
        }
        page += 1;
    }
    assert_eq!(seen.len(), 5);
    // By name.
    let d: Value = c
        .get(format!("{}/api/tenant/devices?deviceName=meter-3", m.url()))
        .header("x-authorization", &auth)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(d["id"]["id"], ids[3]);
    // Credentials → a working token.
    let cr: Value = c
        .get(format!("{}/api/device/{}/credentials", m.url(), ids[3]))
        .header("x-authorization", &auth)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = cr["credentialsId"].as_str().unwrap();
    assert_eq!(token.len(), 20);
    let points: Vec<Value> = (0..150)
        .map(|i| json!({"ts": 1000 + i, "values": {"p": i, "v": 230.5}}))
        .collect();
    assert_eq!(
        post(
            &c,
            &format!("{}/api/v1/{token}/telemetry", m.url()),
            &Value::Array(points).to_string()
        ),
        200
    );
    // Read back: strings, newest first, default limit 100.
    let ts: Value = c
        .get(format!(
            "{}/api/plugins/telemetry/DEVICE/{}/values/timeseries?keys=p,v&startTs=0&endTs=5000",
            m.url(),
            ids[3]
        ))
        .header("x-authorization", &auth)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let p = ts["p"].as_array().unwrap();
    assert_eq!(p.len(), 100);
    assert_eq!(p[0], json!({"ts": 1149, "value": "149"}));
    assert_eq!(ts["v"][0]["value"], "230.5");
    // Latest without a range.
    let ts: Value = c
        .get(format!(
            "{}/api/plugins/telemetry/DEVICE/{}/values/timeseries?keys=p",
            m.url(),
            ids[3]
        ))
        .header("x-authorization", &auth)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ts["p"], json!([{"ts": 1149, "value": "149"}]));
}

#[test]
fn refresh_token_rename_and_gateway_flag() {
    let m = MockServer::start().unwrap();
    let c = client();
    let r: Value = c
        .post(format!("{}/api/auth/login", m.url()))
        .json(&json!({"username": TENANT_USER, "password": TENANT_PASSWORD}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let refresh = r["refreshToken"].as_str().unwrap().to_string();
    let auth = |jwt: &str| format!("Bearer {jwt}");
    // A gateway device: the flag comes back in additionalInfo.
    let gw: Value = c
        .post(format!("{}/api/device", m.url()))
        .header("X-Authorization", auth(r["token"].as_str().unwrap()))
        .json(&json!({"name": "gw", "additionalInfo": {"gateway": true}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(gw["additionalInfo"]["gateway"], true);
    assert!(m.device("gw").unwrap().gateway);
    // The access token expires; the refresh token gives a new pair.
    m.expire_sessions();
    let id = gw["id"]["id"].as_str().unwrap();
    let get = |jwt: &str| {
        c.get(format!("{}/api/device/{id}", m.url()))
            .header("X-Authorization", auth(jwt))
            .send()
            .unwrap()
    };
    assert_eq!(get(r["token"].as_str().unwrap()).status().as_u16(), 401);
    let r2: Value = c
        .post(format!("{}/api/auth/token", m.url()))
        .json(&json!({"refreshToken": refresh}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let jwt = r2["token"].as_str().unwrap().to_string();
    assert!(r2["refreshToken"].as_str().is_some());
    // Renamed in the UI: the device by id shows the new name and label.
    assert!(m.update_device("gw", "gateway one", Some("roof")));
    let d: Value = get(&jwt).json().unwrap();
    assert_eq!(d["name"], "gateway one");
    assert_eq!(d["label"], "roof");
    // Save with an id updates instead of creating.
    let mut upd = d.clone();
    upd["label"] = json!("cellar");
    let s = c
        .post(format!("{}/api/device", m.url()))
        .header("X-Authorization", auth(&jwt))
        .json(&upd)
        .send()
        .unwrap();
    assert_eq!(s.status().as_u16(), 200);
    assert_eq!(m.devices().len(), 1);
    assert_eq!(
        m.device("gateway one").unwrap().label.as_deref(),
        Some("cellar")
    );
    // Expired refresh tokens: 401.
    m.revoke_refresh_tokens();
    let s = c
        .post(format!("{}/api/auth/token", m.url()))
        .json(&json!({"refreshToken": refresh}))
        .send()
        .unwrap();
    assert_eq!(s.status().as_u16(), 401);
}
