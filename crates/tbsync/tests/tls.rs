//! Sync over TLS: https:// to the mock served with rustls and mqtts:// to a
//! real mosquitto with a TLS listener, both with a throwaway CA given as
//! `--ca-file` (`SyncOptions::ca_pem`); a wrong CA is refused with a clear
//! error and nothing is marked sent.

mod common;

use std::time::{Duration, Instant};

use common::broker::{self, subscribe};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;
use tbsync::{DeviceStatus, SyncOptions, Syncer, Transport};
use thingsboard_mock::MockServer;

/// A throwaway CA and a server certificate it signed for 127.0.0.1 and
/// localhost: (CA PEM, server certificate PEM, server key PEM).
fn pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "OFMon test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "tb.test");
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn opts(url: String, ca: &str) -> SyncOptions {
    SyncOptions {
        server: Some(url),
        ca_pem: Some(ca.as_bytes().to_vec()),
        batch_records: 50,
        max_retries: 2,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        ..SyncOptions::default()
    }
}

fn status_error(s: &DeviceStatus) -> String {
    match s {
        DeviceStatus::GaveUp(m) | DeviceStatus::Failed(m) => m.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Runs one sync; its report and how many retries it made.
fn run_counting_retries(conn: &rusqlite::Connection, o: SyncOptions) -> (tbsync::Report, u32) {
    let mut retries = 0;
    let r = Syncer::new(conn, o)
        .unwrap()
        .run(&mut |p| {
            if matches!(p, tbsync::Progress::Retry { .. }) {
                retries += 1;
            }
        })
        .unwrap();
    (r, retries)
}

/// No record of D1 is marked sent to `url`.
fn assert_nothing_marked(conn: &rusqlite::Connection, url: &str) {
    let dest = tbsync::outbox::find_destination(conn, url)
        .unwrap()
        .unwrap();
    assert!(
        tbsync::outbox::sent_seqs(conn, dest, "D1")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn https_with_private_ca() {
    let (ca, cert, key) = pki();
    let m = MockServer::start_tls(cert.as_bytes(), key.as_bytes()).unwrap();
    assert!(m.url().starts_with("https://"));
    m.add_device("m", "t");
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    add_device(&conn, "D1", "m", Some("t"), None);
    add_records(&conn, "D1", 1, 120, false);
    let r = Syncer::new(&conn, opts(m.url(), &ca))
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(r.all_done(), "{r:?}");
    assert_eq!(r.sent(), 120);
    assert_exactly(&m, "m", "D1", &(1..=120).collect::<Vec<_>>());
}

#[test]
fn https_with_wrong_ca_is_refused_and_nothing_marked() {
    let (_, cert, key) = pki();
    let (other_ca, _, _) = pki();
    let m = MockServer::start_tls(cert.as_bytes(), key.as_bytes()).unwrap();
    m.add_device("m", "t");
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    add_device(&conn, "D1", "m", Some("t"), None);
    add_records(&conn, "D1", 1, 20, false);
    let (r, retries) = run_counting_retries(&conn, opts(m.url(), &other_ca));
    let msg = status_error(&r.devices[0].status);
    assert!(
        msg.contains("certificate") && msg.contains("--ca-file"),
        "the error names the certificate problem and the fix: {msg}"
    );
    assert_eq!(retries, 0, "a certificate failure is not retried");
    assert_eq!(r.sent(), 0);
    assert_nothing_marked(&conn, &m.url());
    assert_eq!(m.point_count("m"), 0);
}

/// mosquitto with a TLS listener (the CA's server certificate) and a plain
/// listener for the test's own subscriber.
struct Broker {
    tls_port: u16,
    plain_port: u16,
    _m: broker::Mosquitto,
}

fn mosquitto_tls(ca: &str, cert: &str, key: &str) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n);
    std::fs::write(path("ca.pem"), ca).unwrap();
    std::fs::write(path("server.pem"), cert).unwrap();
    std::fs::write(path("server.key"), key).unwrap();
    let (tls_port, plain_port) = (broker::free_port(), broker::free_port());
    let conf = format!(
        "allow_anonymous true\nmax_packet_size 65536\n\
         listener {plain_port} 127.0.0.1\n\
         listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
        path("ca.pem").display(),
        path("server.pem").display(),
        path("server.key").display()
    );
    let m = broker::Mosquitto::start(dir, &conf, &[plain_port, tls_port]);
    Broker {
        tls_port,
        plain_port,
        _m: m,
    }
}

#[test]
fn mqtts_with_private_ca() {
    let (ca, cert, key) = pki();
    let b = mosquitto_tls(&ca, &cert, &key);
    let rx = subscribe(b.plain_port, "v1/devices/me/telemetry");
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    add_device(&conn, "D1", "m", Some("t"), None);
    add_records(&conn, "D1", 1, 100, false);
    let url = format!("mqtts://127.0.0.1:{}", b.tls_port);
    let o = SyncOptions {
        transport: Transport::Mqtt,
        ..opts(url.clone(), &ca)
    };
    let r = Syncer::new(&conn, o).unwrap().run(&mut |_| {}).unwrap();
    assert!(r.all_done(), "{r:?}");
    assert_eq!(r.sent(), 100);
    // Every record arrived through the TLS listener, once.
    let mut ts = Vec::new();
    let t = Instant::now();
    while ts.len() < 100 && t.elapsed() < Duration::from_secs(20) {
        if let Ok((_, p)) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: Value = serde_json::from_slice(&p).unwrap();
            for pt in v.as_array().unwrap() {
                ts.push(pt["ts"].as_i64().unwrap());
            }
        }
    }
    ts.sort_unstable();
    let want: Vec<i64> = (1..=100).map(|s| reading("D1", s).ts_ms).collect();
    assert_eq!(ts, want);
    let dest = tbsync::outbox::find_destination(&conn, &url)
        .unwrap()
        .unwrap();
    assert_eq!(
        tbsync::outbox::sent_seqs(&conn, dest, "D1").unwrap().len(),
        100
    );
}

#[test]
fn mqtts_with_wrong_ca_is_refused_and_nothing_marked() {
    let (ca, cert, key) = pki();
    let (other_ca, _, _) = pki();
    let b = mosquitto_tls(&ca, &cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let conn = create_db(&dir.path().join("c.db"));
    add_device(&conn, "D1", "m", Some("t"), None);
    add_records(&conn, "D1", 1, 10, false);
    let url = format!("mqtts://127.0.0.1:{}", b.tls_port);
    let o = SyncOptions {
        transport: Transport::Mqtt,
        ..opts(url.clone(), &other_ca)
    };
    let (r, retries) = run_counting_retries(&conn, o);
    let msg = status_error(&r.devices[0].status);
    assert!(
        msg.to_lowercase().contains("certificate") && msg.contains("--ca-file"),
        "the error names the certificate problem and the fix: {msg}"
    );
    assert_eq!(retries, 0, "a certificate failure is not retried");
    assert_eq!(r.sent(), 0);
    assert_nothing_marked(&conn, &url);
}
