//! Router tests through the real HTTP stack (picoserve on tokio, loopback).

mod common;

use common::*;

#[test]
fn info_is_open_and_data_routes_need_auth() {
    let (fleet, home) = start("info", |o| {
        o.speed = 600.0;
        o.interval_s = 10;
    });
    let d = &fleet.devices()[0];
    assert!(
        d.ssid.starts_with("OFMon-") && d.ssid.ends_with(&d.id),
        "{d:?}"
    );
    let r = get(&d.url, "/api/v1/info");
    assert_eq!(r.status, 200, "{}", r.text());
    let info = r.json();
    assert_eq!(info["id"], d.id.as_str());
    assert_eq!(info["paired"], false);
    assert_eq!(info["api_version"], 1);

    // Unpaired: data routes are 401, unknown routes 404, wrong method 405.
    for (m, p) in [
        ("GET", "/api/v1/records"),
        ("POST", "/api/v1/ack"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/config"),
        ("POST", "/api/v1/reboot"),
        ("POST", "/api/v1/factory-reset"),
        ("POST", "/api/v1/time"),
        ("GET", "/api/v1/live"),
    ] {
        assert_eq!(request(&d.url, m, p, &[], b"").status, 401, "{m} {p}");
    }
    assert_eq!(get(&d.url, "/api/v1/nope").status, 404);
    let r = request(&d.url, "DELETE", "/api/v1/info", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    // Legacy routes are off by default.
    assert_eq!(get(&d.url, "/telemetry").status, 404);

    // Pair (open while unpaired), then it is closed.
    let mut c = Client::new(&home, &d.url, &d.id);
    let r = c.pair();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.pair().status, 401, "pairing is closed once paired");
    let r = c.call("GET", "/api/v1/config", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["interval_s"], 10);
    fleet.stop();
}

#[test]
fn auth_refuses_missing_wrong_replayed_and_stale() {
    let (fleet, home) = start("auth", |o| o.speed = 1.0);
    let d = &fleet.devices()[0];
    let mut c = Client::new(&home, &d.url, &d.id);
    assert_eq!(c.pair().status, 200);
    let ok = c.call("GET", "/api/v1/events", b"", &[]);
    assert_eq!(ok.status, 200, "{}", ok.text());

    // Missing.
    assert_eq!(get(&d.url, "/api/v1/events").status, 401);
    // Wrong key.
    let mut wrong = Client::new(&home, &d.url, &d.id);
    wrong.key = protocol::ApiKey::from_bytes([9; 32]);
    assert_eq!(wrong.call("GET", "/api/v1/events", b"", &[]).status, 401);
    // Signature over another path.
    let h = c.sign("GET", "/api/v1/config", b"", now_ms());
    assert_eq!(
        request(
            &d.url,
            "GET",
            "/api/v1/events",
            &[("Authorization", h)],
            b""
        )
        .status,
        401
    );
    // Replayed.
    let h = c.sign("GET", "/api/v1/events", b"", now_ms());
    assert_eq!(
        request(
            &d.url,
            "GET",
            "/api/v1/events",
            &[("Authorization", h.clone())],
            b""
        )
        .status,
        200
    );
    let r = request(
        &d.url,
        "GET",
        "/api/v1/events",
        &[("Authorization", h)],
        b"",
    );
    assert_eq!(r.status, 401);
    assert!(r.text().contains("replay"), "{}", r.text());
    // Body tampered after signing.
    let body = br#"{"seq":0}"#;
    let h = c.sign("POST", "/api/v1/ack", body, now_ms());
    let r = request(
        &d.url,
        "POST",
        "/api/v1/ack",
        &[("Authorization", h)],
        br#"{"seq":1}"#,
    );
    assert_eq!(r.status, 401);
    // Stale: once the clock is set (speed 1), a timestamp 10 minutes old.
    let t = serde_json::json!({"unix_ms": now_ms(), "uncertainty_ms": 5});
    let r = c.call("POST", "/api/v1/time", t.to_string().as_bytes(), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let h = c.sign("GET", "/api/v1/events", b"", now_ms() - 600_000);
    let r = request(
        &d.url,
        "GET",
        "/api/v1/events",
        &[("Authorization", h)],
        b"",
    );
    assert_eq!(r.status, 401);
    assert!(r.text().contains("stale"), "{}", r.text());
    fleet.stop();
}

#[test]
fn concurrent_clients_are_served_or_refused_never_wedged() {
    let (fleet, home) = start("concurrent", |o| {
        o.speed = 2000.0;
        o.interval_s = 10;
    });
    let d = fleet.devices()[0].clone();
    let mut c = Client::new(&home, &d.url, &d.id);
    assert_eq!(c.pair().status, 200);
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let url = d.url.clone();
            let home = home.clone();
            let id = d.id.clone();
            std::thread::spawn(move || {
                let mut c = Client::new(&home, &url, &id);
                let mut codes = Vec::new();
                for _ in 0..5 {
                    let r = if i % 2 == 0 {
                        get(&url, "/api/v1/info")
                    } else {
                        c.call("GET", "/api/v1/records?after=0&limit=100", b"", &[])
                    };
                    codes.push(r.status);
                }
                codes
            })
        })
        .collect();
    for t in threads {
        for code in t.join().unwrap() {
            assert!(code == 200 || code == 503, "{code}");
        }
    }
    // Still healthy afterwards, and still metering.
    assert_eq!(get(&d.url, "/api/v1/info").status, 200);
    let before = fleet.stats(0).unwrap().samples;
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(fleet.stats(0).unwrap().samples > before);
    fleet.stop();
}
