//! Byte formats of the original firmware's HTTP API (legacy mode).
//!
//! - `GET /telemetry`: 30-byte little-endian records, one per CT per
//!   interval: `u16 ct_id` (0-based), `f32 real_power` (W), `f32
//!   apparent_power` (VA), `f32 i_rms` (A), `f32 v_rms` (V), `f32 kwh` (the
//!   interval's net energy, kWh), `u64 timestamp` (unix ms at interval end; 0
//!   when the clock was not set in that boot).
//! - `GET /powerloss_log`: one `u128` LE per power loss: the last wall time
//!   the device knew before the loss (unix ms); losses with no known wall
//!   time are left out.
//! - `POST /time`: body `u64` LE unix ms.
//! - `GET`/`POST /token`: 56 bytes, a 20-byte access token then a 36-byte
//!   device-profile UUID.

use alloc::string::String;
use alloc::vec::Vec;

use store::record::Record;

use crate::state::{Event, EventKind, Pairing};

/// Size of one legacy telemetry record.
pub const RECORD_LEN: usize = 30;
/// Size of the legacy token file.
pub const TOKEN_LEN: usize = 56;

/// Appends the legacy records of one interval (one per CT) to `out`.
pub fn push_records(out: &mut Vec<u8>, r: &Record) {
    let hours = r.duration_ms as f32 / 3_600_000.0;
    for (i, c) in r.circuits().iter().enumerate() {
        let v = r
            .voltages()
            .get(i)
            .or_else(|| r.voltages().first())
            .map_or(0.0, |v| v.rms_cv as f32 / 100.0);
        let p = c.real_power_dw as f32 / 10.0;
        out.extend_from_slice(&(i as u16).to_le_bytes());
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&(c.apparent_power_dva as f32 / 10.0).to_le_bytes());
        out.extend_from_slice(&(c.i_rms_ma as f32 / 1000.0).to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
        out.extend_from_slice(&(p * hours / 1000.0).to_le_bytes());
        out.extend_from_slice(&r.wall_ms.unwrap_or(0).to_le_bytes());
    }
}

/// The legacy power-loss log from the event ring.
pub fn powerloss_log(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        if let EventKind::PowerLoss {
            last_wall_ms: Some(w),
            ..
        } = e.kind
        {
            out.extend_from_slice(&u128::from(w).to_le_bytes());
        }
    }
    out
}

/// Parses the body of legacy `POST /time`.
pub fn parse_time(body: &[u8]) -> Option<u64> {
    let b: [u8; 8] = body.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// Parses the body of legacy `POST /token`.
pub fn parse_token(body: &[u8]) -> Option<Pairing> {
    if body.len() != TOKEN_LEN {
        return None;
    }
    let token = core::str::from_utf8(&body[..20]).ok()?;
    let profile = core::str::from_utf8(&body[20..]).ok()?;
    Some(Pairing {
        token: String::from(token.trim_end_matches('\0')),
        profile: String::from(profile.trim_end_matches('\0')),
        server: String::new(),
    })
}

/// The 56 bytes of legacy `GET /token` (fields NUL-padded or cut to size).
pub fn token_bytes(p: &Pairing) -> Vec<u8> {
    let mut out = alloc::vec![0u8; TOKEN_LEN];
    let t = p.token.as_bytes();
    let n = t.len().min(20);
    out[..n].copy_from_slice(&t[..n]);
    let pr = p.profile.as_bytes();
    let m = pr.len().min(36);
    out[20..20 + m].copy_from_slice(&pr[..m]);
    out
}

/// The small HTML page of legacy `GET /`.
pub fn index_page(id: &str) -> String {
    let mut s =
        String::from("<!doctype html><html><head><title>OFMon</title></head><body><h1>OFMon ");
    s.push_str(id);
    s.push_str("</h1><p>Energy monitor (legacy mode).</p></body></html>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::record::{Circuit, Voltage};

    #[test]
    fn telemetry_record_layout() {
        let mut r = Record {
            wall_ms: Some(1_700_000_000_123),
            duration_ms: 3_600_000,
            voltage_count: 1,
            circuit_count: 2,
            ..Record::default()
        };
        r.voltages[0] = Voltage {
            rms_cv: 23_050,
            min_cv: 0,
            max_cv: 0,
        };
        r.circuits[1] = Circuit {
            i_rms_ma: 4_500,
            real_power_dw: 10_000,
            apparent_power_dva: 10_500,
            ..Circuit::default()
        };
        let mut out = Vec::new();
        push_records(&mut out, &r);
        assert_eq!(out.len(), 2 * RECORD_LEN);
        let b = &out[RECORD_LEN..];
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 1);
        let f = |o: usize| f32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!(f(2), 1000.0);
        assert_eq!(f(6), 1050.0);
        assert_eq!(f(10), 4.5);
        assert_eq!(f(14), 230.5);
        assert_eq!(f(18), 1.0);
        assert_eq!(
            u64::from_le_bytes(b[22..30].try_into().unwrap()),
            1_700_000_000_123
        );
    }

    #[test]
    fn token_and_time_round_trip() {
        let mut body = alloc::vec![b'a'; 20];
        body.extend_from_slice(b"123e4567-e89b-12d3-a456-426614174000");
        let p = parse_token(&body).unwrap();
        assert_eq!(p.token, "aaaaaaaaaaaaaaaaaaaa");
        assert_eq!(token_bytes(&p), body);
        assert!(parse_token(&body[..55]).is_none());
        assert_eq!(parse_time(&42u64.to_le_bytes()), Some(42));
        assert_eq!(parse_time(&[1, 2, 3]), None);
    }
}
