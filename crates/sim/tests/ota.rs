//! Signed OTA end to end over loopback HTTP: refusals leave the running
//! image alone; an accepted image boots on trial, passes its self-test and
//! becomes the running version; a broken image is rolled back.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use protocol::firmware::{FirmwareSigningKey, FirmwareVersion, sign_image};
use sim::firmware::{self, TEST_SIGNING_SEED};

fn v(s: &str) -> FirmwareVersion {
    s.parse().unwrap()
}

fn key() -> FirmwareSigningKey {
    FirmwareSigningKey::from_seed(&TEST_SIGNING_SEED)
}

fn upload(version: &str, board: &str) -> Vec<u8> {
    let img = firmware::image(v(version), 40_000, false);
    sign_image(&key(), &img, v(version), board).unwrap()
}

fn firmware_of(url: &str) -> Option<String> {
    let r = get(url, "/api/v1/info");
    (r.status == 200).then(|| r.json()["firmware"].as_str().unwrap().to_string())
}

/// Polls until the device answers `/info` with `version` (it reboots first).
fn wait_for_version(url: &str, version: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if firmware_of(url).as_deref() == Some(version) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn ota(c: &mut Client, body: &[u8]) -> Reply {
    c.call(
        "POST",
        "/api/v1/ota",
        body,
        &[("Content-Type", "application/octet-stream".into())],
    )
}

/// Announces the whole body, sends only `sent` bytes, then closes our side.
fn ota_truncated(c: &mut Client, body: &[u8], sent: usize) -> (u16, String) {
    let h = c.sign("POST", "/api/v1/ota", body, now_ms());
    let head = format!(
        "POST /api/v1/ota HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {h}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut s = TcpStream::connect(c.url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..sent]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn ota_events(c: &mut Client) -> Vec<serde_json::Value> {
    let r = c.call("GET", "/api/v1/events", b"", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"]["type"] == "ota")
        .map(|e| e["kind"].clone())
        .collect()
}

#[test]
fn signed_ota_end_to_end() {
    let (fleet, home) = start("ota", |o| {
        o.speed = 600.0;
        o.interval_s = 10;
        o.firmware_pubkey = Some(firmware::test_public_key());
    });
    let d = fleet.devices()[0].clone();
    let mut c = Client::new(&home, &d.url, &d.id);
    assert_eq!(c.pair().status, 200);
    assert_eq!(firmware_of(&d.url).as_deref(), Some("0.1.0"));
    let boots = fleet.stats(0).unwrap().boots;

    // --- refusals: 400 with a reason, running image unchanged, no reboot.
    let good = upload("0.2.0", "sim");
    let other_key = FirmwareSigningKey::from_seed(&[42; 32]);
    let img = firmware::image(v("0.2.0"), 40_000, false);
    let bad_sig = sign_image(&other_key, &img, v("0.2.0"), "sim").unwrap();
    let mut tampered = good.clone();
    tampered[protocol::firmware::MANIFEST_LEN + 20_000] ^= 1;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad signature", bad_sig, "bad firmware signature"),
        ("equal version", upload("0.1.0", "sim"), "not newer"),
        ("downgrade", upload("0.0.9", "sim"), "not newer"),
        ("wrong board", upload("0.2.0", "esp32c3"), "another board"),
        ("altered image", tampered, "digest mismatch"),
        (
            "not a firmware file",
            b"hello world".repeat(20),
            "not an OFMon",
        ),
    ];
    for (what, body, reason) in &cases {
        let r = ota(&mut c, body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(r.text().contains(reason), "{what}: {}", r.text());
        assert_eq!(firmware_of(&d.url).as_deref(), Some("0.1.0"), "{what}");
    }
    for sent in [50, protocol::firmware::MANIFEST_LEN + 1000, good.len() - 1] {
        let (status, text) = ota_truncated(&mut c, &good, sent);
        assert_eq!(status, 400, "truncated at {sent}: {text}");
        assert!(text.contains("truncated"), "{text}");
        assert_eq!(firmware_of(&d.url).as_deref(), Some("0.1.0"));
    }
    // A correctly signed upload with a body signature of another body.
    let h = c.sign("POST", "/api/v1/ota", b"something else", now_ms());
    let r = request(
        &d.url,
        "POST",
        "/api/v1/ota",
        &[("Authorization", h)],
        &good,
    );
    assert_eq!(r.status, 401, "{}", r.text());
    // Unsigned.
    assert_eq!(
        request(&d.url, "POST", "/api/v1/ota", &[], &good).status,
        401
    );
    // Not firmware at all, under a bad signature: authentication answers
    // before the manifest parser (401, not 400).
    for junk in [b"hello world".repeat(20), vec![0xA5; 9000]] {
        let h = c.sign("POST", "/api/v1/ota", b"something else", now_ms());
        let r = request(
            &d.url,
            "POST",
            "/api/v1/ota",
            &[("Authorization", h)],
            &junk,
        );
        assert_eq!(r.status, 401, "junk under a bad signature: {}", r.text());
    }
    std::thread::sleep(Duration::from_millis(300));
    let st = fleet.stats(0).unwrap();
    assert_eq!(st.boots, boots, "no refusal rebooted the device");
    let state = firmware::FirmwareFiles::new(&sim::home::device_dir(&home, &d.id)).state();
    assert!(!state.next, "nothing was activated");

    // --- a good upload: accepted, reboot, trial, self-test, new version.
    let r = ota(&mut c, &good);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("0.2.0 accepted"), "{}", r.text());
    assert!(
        wait_for_version(&d.url, "0.2.0"),
        "device came back with 0.2.0"
    );
    let st = fleet.stats(0).unwrap();
    assert_eq!((st.boots, st.rollbacks), (boots + 1, 0));
    let ev = ota_events(&mut c);
    let outcomes: Vec<&str> = ev.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["installed", "confirmed"], "{ev:?}");
    assert_eq!(ev[1]["from"], "0.1.0");
    assert_eq!(ev[1]["to"], "0.2.0");
    // The same upload again is now a non-newer version.
    let r = ota(&mut c, &good);
    assert_eq!(r.status, 400, "{}", r.text());

    // --- a broken image: accepted, fails its self-test, rolled back.
    let img = firmware::image(v("0.3.0"), 10_000, true);
    let broken = sign_image(&key(), &img, v("0.3.0"), "sim").unwrap();
    let r = ota(&mut c, &broken);
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(30);
    while fleet.stats(0).unwrap().rollbacks == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(wait_for_version(&d.url, "0.2.0"));
    let st = fleet.stats(0).unwrap();
    // The failed trial boot never came up (no HTTP), so it is not counted.
    assert_eq!((st.boots, st.rollbacks), (boots + 2, 1), "rollback boot");
    let ev = ota_events(&mut c);
    let last = ev.last().unwrap();
    assert_eq!(
        (last["outcome"].as_str(), last["to"].as_str()),
        (Some("rolled_back"), Some("0.3.0")),
        "{ev:?}"
    );

    // --- the version survives a restart of the simulator (it is on "flash").
    fleet.stop();
    let fleet = sim::Fleet::start(sim::SimOptions {
        base_port: 0,
        home: home.clone(),
        speed: 600.0,
        interval_s: 10,
        ..sim::SimOptions::default()
    })
    .unwrap();
    let d = fleet.devices()[0].clone();
    assert_eq!(firmware_of(&d.url).as_deref(), Some("0.2.0"));
    // No key this time (no firmware.pub, none given): OTA is off.
    let mut c = Client::new(&home, &d.url, &d.id);
    let r = ota(&mut c, &upload("0.4.0", "sim"));
    assert_eq!(r.status, 501, "{}", r.text());
    fleet.stop();
}

#[test]
fn firmware_pub_in_home_turns_ota_on() {
    let home = temp_home("ota-pubfile");
    let pk = protocol::firmware::FirmwarePublicKey::from_bytes(&firmware::test_public_key())
        .unwrap()
        .to_hex();
    std::fs::write(home.join(firmware::PUBKEY_FILE), format!("{pk}\n")).unwrap();
    let fleet = sim::Fleet::start(sim::SimOptions {
        base_port: 0,
        home: home.clone(),
        speed: 600.0,
        ..sim::SimOptions::default()
    })
    .unwrap();
    let d = fleet.devices()[0].clone();
    let mut c = Client::new(&home, &d.url, &d.id);
    assert_eq!(c.pair().status, 200);
    let r = ota(&mut c, &upload("1.0.0", "sim"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_for_version(&d.url, "1.0.0"));
    fleet.stop();

    // A malformed key file is an error at start, not a silently open door.
    std::fs::write(home.join(firmware::PUBKEY_FILE), "not hex").unwrap();
    let err = sim::Fleet::start(sim::SimOptions {
        base_port: 0,
        home: home.clone(),
        ..sim::SimOptions::default()
    })
    .err()
    .expect("refused");
    assert!(err.to_string().contains("firmware.pub"), "{err}");
}
