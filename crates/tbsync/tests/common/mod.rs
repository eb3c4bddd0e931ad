//! Test fixtures: a collector database with synthetic records, and checks
//! of what the mock server holds.
#![allow(dead_code)]

pub mod broker;

use std::path::Path;

use rusqlite::{Connection, params};
use tbsync::telemetry::{Circuit, Reading};
use thingsboard_mock::MockServer;

/// First record time.
pub const T0: i64 = 1_700_000_000_000;

/// Creates the database with the collector's own schema.
pub fn create_db(path: &Path) -> Connection {
    drop(collector::Db::open(path).unwrap());
    tbsync::outbox::open(path).unwrap()
}

/// Adds a paired device.
pub fn add_device(
    conn: &Connection,
    id: &str,
    name: &str,
    token: Option<&str>,
    server: Option<&str>,
) {
    conn.execute(
        "INSERT INTO device (id, ssid, paired, name, token, tb_server, added_ms)
         VALUES (?1, ?2, 1, ?3, ?4, ?5, 0)",
        params![id, format!("OFMON-{id}"), name, token, server],
    )
    .unwrap();
}

/// The deterministic reading of (device, seq).
pub fn reading(device: &str, seq: u64) -> Reading {
    let h = device.bytes().map(i64::from).sum::<i64>();
    let s = seq as i64;
    Reading {
        seq,
        ts_ms: T0 + s * 60_000,
        ts_uncertainty_ms: if seq.is_multiple_of(3) { 0 } else { 40 + s % 7 },
        frequency_mhz: 49_900 + (s * 7 + h) % 200,
        v_cv: [Some(22_000 + (s * 13 + h) % 2000), None, None],
        circuits: (1..=3)
            .map(|ct| Circuit {
                ct,
                i_rms_ma: (s * 31 + i64::from(ct) * 1000 + h) % 50_000,
                real_power_dw: (s * 17 % 20_000) - 5_000,
                apparent_power_dva: 20_000 + s % 100,
                power_factor_milli: (s * 3 % 2000) - 1000,
                import_mwh: s * 1234 + i64::from(ct),
                export_mwh: s * 7,
            })
            .collect(),
    }
}

/// Inserts records `from..=to` of a device (with time unless `untimed`).
pub fn add_records(conn: &Connection, device: &str, from: u64, to: u64, untimed: bool) {
    let tx = conn.unchecked_transaction().unwrap();
    for seq in from..=to {
        let r = reading(device, seq);
        tx.execute(
            "INSERT INTO record (device_id, seq, boot_id, uptime_ms, duration_ms, flags,
             frequency_mhz, v1_cv, ts_ms, ts_uncertainty_ms, collected_ms)
             VALUES (?1, ?2, 1, ?3, 60000, 0, ?4, ?5, ?6, ?7, 0)",
            params![
                device,
                seq as i64,
                seq as i64 * 60_000,
                r.frequency_mhz,
                r.v_cv[0],
                if untimed { None } else { Some(r.ts_ms) },
                if untimed {
                    None
                } else {
                    Some(r.ts_uncertainty_ms)
                }
            ],
        )
        .unwrap();
        for c in &r.circuits {
            tx.execute(
                "INSERT INTO circuit (device_id, seq, ct, i_rms_ma, real_power_dw, real_power_min_dw,
                 real_power_max_dw, apparent_power_dva, power_factor_milli, import_mwh, export_mwh)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5, ?6, ?7, ?8, ?9)",
                params![
                    device,
                    seq as i64,
                    c.ct,
                    c.i_rms_ma,
                    c.real_power_dw,
                    c.apparent_power_dva,
                    c.power_factor_milli,
                    c.import_mwh,
                    c.export_mwh
                ],
            )
            .unwrap();
        }
        tx.execute(
            "UPDATE device SET last_seq = MAX(last_seq, ?2) WHERE id = ?1",
            params![device, seq as i64],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Checks that the server holds exactly the points of records `seqs` of a
/// device (every key, the right value) and nothing else. Returns the number
/// of (key, ts) points.
pub fn assert_exactly(m: &MockServer, name: &str, device: &str, seqs: &[u64]) -> usize {
    m.with_device(name, |d| {
        let mut expected = 0;
        for &seq in seqs {
            let r = reading(device, seq);
            for (k, v) in r.expected_values() {
                let got = d
                    .telemetry
                    .get(&k)
                    .and_then(|s| s.get(&r.ts_ms))
                    .unwrap_or_else(|| panic!("{name}: seq {seq} key {k} missing"));
                assert_eq!(got.as_f64(), Some(v), "{name}: seq {seq} key {k}");
                expected += 1;
            }
        }
        let stored: usize = d.telemetry.values().map(|s| s.len()).sum();
        assert_eq!(stored, expected, "{name}: extra points on the server");
        stored
    })
    .unwrap_or_else(|| panic!("device {name} not on the server"))
}

/// Checks that every record marked sent is on the server with all its keys.
pub fn assert_sent_are_stored(
    m: &MockServer,
    conn: &Connection,
    dest: i64,
    name: &str,
    device: &str,
) -> usize {
    let sent = tbsync::outbox::sent_seqs(conn, dest, device).unwrap();
    m.with_device(name, |d| {
        for &seq in &sent {
            let r = reading(device, seq);
            for (k, v) in r.expected_values() {
                let got = d.telemetry.get(&k).and_then(|s| s.get(&r.ts_ms));
                assert_eq!(
                    got.and_then(|g| g.as_f64()),
                    Some(v),
                    "{name}: seq {seq} marked sent but key {k} not stored"
                );
            }
        }
    });
    sent.len()
}
