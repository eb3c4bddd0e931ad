//! A tiny fake device for tests (feature `fake-device`): serves device API
//! v1 on `127.0.0.1:0` with records encoded by the store codec, verifies
//! request signatures, and can misbehave on purpose ([`Fault`]).
//!
//! Not a simulator: no metering, no flash. The real device core runs in
//! `crates/sim`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use protocol::api::{
    self, AckResponse, ChannelLayout, ChannelMap, ClockState, Event, EventKind, EventsResponse,
    Info, PairResponse, SeqRange, StorageUse, TimeResponse,
};
use protocol::auth::{AUTH_HEADER, Verifier, body_sha256};
use protocol::{ApiKey, FirmwareVersion, FleetSecret, Mac};
use store::record::{Encoder, MAX_ENTRY};
use store::{Circuit, Record, Voltage};

/// How the fake misbehaves on `GET /records`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Behaves.
    None,
    /// Sends bytes that are not record entries.
    Garbage,
    /// Cuts the body after this many bytes (declares the full length, then closes).
    Vanish(usize),
    /// Flips a bit in the entry of this seq.
    CorruptSeq(u64),
    /// Repeats the first record of the page at its end (seq going backwards).
    Backwards,
    /// Ends the body in the middle of the last entry (declares the short length).
    Truncate,
}

/// Mutable state of the fake device.
pub struct State {
    /// All records ever "measured", seq 1..
    pub records: Vec<Record>,
    /// Highest acked seq.
    pub acked: u64,
    /// Key once paired.
    pub key: Option<ApiKey>,
    /// Current fault.
    pub fault: Fault,
    /// Events.
    pub events: Vec<Event>,
    /// Boot id.
    pub boot_id: u32,
    /// Wall clock set: (uptime, unix_ms, uncertainty).
    pub clock: Option<(u64, u64, u32)>,
    /// Count of requests refused for a bad signature.
    pub refused: u64,
    /// Count of `GET /records` served.
    pub record_requests: u64,
    verifier: Verifier,
}

/// A running fake device.
pub struct FakeDevice {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The MAC.
    pub mac: Mac,
    /// Shared state (tests may change it between requests).
    pub state: Arc<Mutex<State>>,
    started: Instant,
}

/// The fake's uptime when it starts: later than any sample record's uptime
/// for seq < 100 000, so its records lie in its past.
pub const UPTIME_BASE_MS: u64 = 60_000 * 100_000;

/// A plausible 1 V + 3 CT record of boot `boot_id` (1-minute intervals).
pub fn sample_record(seq: u64, boot_id: u32) -> Record {
    let mut r = Record {
        seq,
        boot_id,
        uptime_ms: 60_000 * seq,
        wall_ms: None,
        duration_ms: 60_000,
        frequency_mhz: 50_000 + (seq % 7) as u32,
        voltage_count: 1,
        circuit_count: 3,
        ..Record::default()
    };
    r.voltages[0] = Voltage {
        rms_cv: 23_000 + (seq % 13) as u32,
        min_cv: 22_900,
        max_cv: 23_100,
    };
    for c in 0..3 {
        let p = 1_000 + 100 * c as i32 + (seq % 11) as i32;
        r.circuits[c] = Circuit {
            i_rms_ma: 500 * (c as u32 + 1),
            real_power_dw: p,
            real_power_min_dw: p - 50,
            real_power_max_dw: p + 50,
            apparent_power_dva: (p + 60) as u32,
            power_factor_milli: 950,
            import_mwh: seq * (p as u64) * 60_000 / 36_000,
            export_mwh: 0,
        };
    }
    r
}

impl FakeDevice {
    /// Starts a fake device with `n` records, already paired with
    /// `fleet` (when given).
    pub fn start(mac: Mac, n: u64, fleet: Option<&FleetSecret>) -> std::io::Result<FakeDevice> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            records: (1..=n).map(|s| sample_record(s, 7)).collect(),
            acked: 0,
            key: fleet.map(|f| f.device_keys(&mac).api_key),
            fault: Fault::None,
            events: vec![Event {
                seq: 1,
                boot_id: 7,
                uptime_ms: 0,
                wall_ms: None,
                kind: EventKind::Boot {
                    reason: api::BootReason::PowerOn,
                    last_boot_id: None,
                    last_uptime_ms: None,
                    last_wall_ms: None,
                },
            }],
            boot_id: 7,
            clock: None,
            refused: 0,
            record_requests: 0,
            verifier: Verifier::new(protocol::auth::DEFAULT_WINDOW_MS),
        }));
        let dev = FakeDevice {
            url,
            mac,
            state: state.clone(),
            started: Instant::now(),
        };
        let started = dev.started;
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let state = state.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &state, mac, started);
                });
            }
        });
        Ok(dev)
    }

    /// Locks the state.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn respond(
    conn: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    declared: Option<usize>,
) -> std::io::Result<()> {
    let len = declared.unwrap_or(body.len());
    write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )?;
    conn.write_all(body)?;
    conn.flush()
}

fn json<T: serde::Serialize>(conn: &mut TcpStream, v: &T) -> std::io::Result<()> {
    respond(conn, 200, "application/json", &api::encode(v), None)
}

fn error(conn: &mut TcpStream, status: u16, msg: &str) -> std::io::Result<()> {
    respond(
        conn,
        status,
        "application/json",
        &api::encode(&api::ErrorBody::new(msg)),
        None,
    )
}

fn serve(
    mut conn: TcpStream,
    state: &Mutex<State>,
    mac: Mac,
    started: Instant,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |k: &str| {
        query.split('&').find_map(|kv| {
            kv.split_once('=')
                .filter(|(a, _)| *a == k)
                .map(|(_, v)| v.to_string())
        })
    };
    let uptime = UPTIME_BASE_MS + started.elapsed().as_millis() as u64;
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    // Authentication: everything but info (and pair while unpaired).
    let open = path == "/api/v1/info" || (path == "/api/v1/pair" && st.key.is_none());
    if !open {
        let Some(key) = st.key.clone() else {
            return error(&mut conn, 401, "device is not paired");
        };
        let auth = header(&AUTH_HEADER.to_ascii_lowercase());
        if st
            .verifier
            .verify_header(
                &key,
                &method,
                &target,
                &body_sha256(&body),
                auth.as_deref(),
                None,
            )
            .is_err()
        {
            st.refused += 1;
            return error(&mut conn, 401, "unauthorized");
        }
    }
    match (method.as_str(), path) {
        ("GET", "/api/v1/info") => {
            let info = Info {
                api_version: 1,
                id: mac.id(),
                ssid: mac.ssid("OFMon-"),
                firmware: FirmwareVersion::new(0, 1, 0),
                board: "fake".into(),
                channels: ChannelMap {
                    layout: ChannelLayout::SinglePhase,
                    cts: 3,
                },
                interval_s: 60,
                records: SeqRange {
                    first: st.records.first().map(|r| r.seq),
                    last: st.records.last().map(|r| r.seq),
                },
                acked_seq: (st.acked > 0).then_some(st.acked),
                clock: match st.clock {
                    Some((u, w, e)) => ClockState::Set {
                        now_ms: w + (uptime - u),
                        uncertainty_ms: e,
                    },
                    None => ClockState::Unset,
                },
                boot_id: u64::from(st.boot_id),
                uptime_ms: uptime,
                boot_count: 1,
                storage: StorageUse {
                    used_bytes: 0,
                    total_bytes: 1,
                    records: st.records.len() as u64,
                },
                paired: st.key.is_some(),
                legacy: false,
            };
            json(&mut conn, &info)
        }
        ("POST", "/api/v1/pair") => {
            let Ok(req) = api::decode_request::<api::PairRequest>(&body) else {
                return error(&mut conn, 400, "bad pair request");
            };
            let Ok(secret) = req.device_secret() else {
                return error(&mut conn, 400, "bad secret");
            };
            st.key = Some(secret.api_key());
            json(
                &mut conn,
                &PairResponse {
                    id: mac.id(),
                    ssid: mac.ssid("OFMon-"),
                },
            )
        }
        ("POST", "/api/v1/time") => {
            let Ok(req) = api::decode_request::<api::TimeRequest>(&body) else {
                return error(&mut conn, 400, "bad time request");
            };
            let before = st.clock.map(|(u, w, _)| w + (uptime - u));
            st.clock = Some((uptime, req.unix_ms, req.uncertainty_ms));
            let seq = st.events.len() as u64 + 1;
            let boot_id = u64::from(st.boot_id);
            st.events.push(Event {
                seq,
                boot_id,
                uptime_ms: uptime,
                wall_ms: Some(req.unix_ms),
                kind: EventKind::TimeSync {
                    unix_ms: req.unix_ms,
                    uncertainty_ms: req.uncertainty_ms,
                    previous_unix_ms: before,
                },
            });
            json(
                &mut conn,
                &TimeResponse {
                    boot_id,
                    uptime_ms: uptime,
                    previous_unix_ms: before,
                },
            )
        }
        ("GET", "/api/v1/records") => {
            st.record_requests += 1;
            let after: u64 = param("after").and_then(|v| v.parse().ok()).unwrap_or(0);
            let limit: usize = param("limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(2000)
                .min(2000);
            let mut page: Vec<Record> = st
                .records
                .iter()
                .filter(|r| r.seq > after)
                .take(limit)
                .copied()
                .collect();
            if st.fault == Fault::Backwards && page.len() > 1 {
                page.push(page[0]);
            }
            let mut enc = Encoder::new();
            let mut out = Vec::new();
            let mut buf = [0u8; MAX_ENTRY];
            for r in &page {
                let Ok(n) = enc.encode(r, false, &mut buf) else {
                    return error(&mut conn, 500, "encode");
                };
                let start = out.len();
                out.extend_from_slice(&buf[..n]);
                if st.fault == Fault::CorruptSeq(r.seq) {
                    out[start + n - 1 - (n - 4) / 2] ^= 0x08;
                }
            }
            match st.fault {
                Fault::Garbage => respond(
                    &mut conn,
                    200,
                    "application/octet-stream",
                    b"\x00garbage that is not records\x01\x02",
                    None,
                ),
                Fault::Vanish(at) if at < out.len() => {
                    let declared = out.len();
                    drop(st);
                    respond(
                        &mut conn,
                        200,
                        "application/octet-stream",
                        &out[..at],
                        Some(declared),
                    )
                }
                Fault::Truncate if !out.is_empty() => {
                    let cut = out.len() - 2;
                    respond(
                        &mut conn,
                        200,
                        "application/octet-stream",
                        &out[..cut],
                        None,
                    )
                }
                _ => respond(&mut conn, 200, "application/octet-stream", &out, None),
            }
        }
        ("POST", "/api/v1/ack") => {
            let Ok(req) = api::decode_request::<api::AckRequest>(&body) else {
                return error(&mut conn, 400, "bad ack");
            };
            if req.seq > st.records.last().map_or(0, |r| r.seq) {
                return error(&mut conn, 400, "seq: above the newest record");
            }
            st.acked = st.acked.max(req.seq);
            json(
                &mut conn,
                &AckResponse {
                    acked_seq: st.acked,
                },
            )
        }
        ("GET", "/api/v1/events") => {
            let after: Option<u64> = param("after").and_then(|v| v.parse().ok());
            let events = st
                .events
                .iter()
                .filter(|e| after.is_none_or(|a| e.seq > a))
                .cloned()
                .collect();
            json(&mut conn, &EventsResponse { events })
        }
        _ => error(&mut conn, 404, "not found"),
    }
}
