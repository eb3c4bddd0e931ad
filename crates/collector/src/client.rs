//! Device API v1 client: the [`DeviceApi`] trait (what the collector needs
//! from a device) and [`HttpDevice`], its implementation over HTTP with
//! HMAC-signed requests (`protocol::auth`).
//!
//! A mobile shell can implement [`DeviceApi`] over its own HTTP stack.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use protocol::ApiKey;
use protocol::api::{
    AckRequest, AckResponse, EventsResponse, Info, PairRequest, PairResponse, TimeRequest,
    TimeResponse,
};
use protocol::auth::{AUTH_HEADER, sign};

use crate::Error;

/// What the collector asks of a device.
pub trait DeviceApi {
    /// `GET /api/v1/info` (open).
    fn info(&self) -> Result<Info, Error>;
    /// `POST /api/v1/pair`.
    fn pair(&self, req: &PairRequest) -> Result<PairResponse, Error>;
    /// `POST /api/v1/time`.
    fn set_time(&self, req: &TimeRequest) -> Result<TimeResponse, Error>;
    /// `GET /api/v1/records?after=..&limit=..` (binary): the body is handed
    /// to `sink` chunk by chunk as it arrives.
    fn records(
        &self,
        after: u64,
        limit: u32,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error>;
    /// `POST /api/v1/ack`.
    fn ack(&self, seq: u64) -> Result<AckResponse, Error>;
    /// `GET /api/v1/events?after=..`.
    fn events(&self, after: Option<u64>) -> Result<EventsResponse, Error>;
}

/// A device reached over HTTP at a base URL (`http://10.0.0.1`, `http://127.0.0.1:PORT`).
pub struct HttpDevice {
    base: String,
    agent: ureq::Agent,
    key: Option<ApiKey>,
    /// (last timestamp used, offset of the device's clock from ours).
    clock: Mutex<(u64, i64)>,
}

/// A device clock further off than this from ours is followed when signing
/// (its freshness window is ±5 minutes), until we set it.
const FOLLOW_DEVICE_CLOCK_MS: i64 = 60_000;

impl HttpDevice {
    /// A client for the device at `base` (no trailing slash needed), signing
    /// with `key` once paired.
    pub fn new(base: &str, key: Option<ApiKey>, timeout: Duration) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            agent: agent(timeout),
            key,
            clock: Mutex::new((0, 0)),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Replaces the timeout of each request (e.g. longer for a firmware upload).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.agent = agent(timeout);
    }

    /// Sets the signing key (after pairing).
    pub fn set_key(&mut self, key: ApiKey) {
        self.key = Some(key);
    }

    /// A strictly increasing request timestamp: the collector's clock, or
    /// the device's own clock while that is far off ours (a device checks
    /// request times against its clock once set; see `protocol::auth`).
    fn stamp(&self) -> u64 {
        let mut c = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        let now = u64::try_from(crate::now_ms().saturating_add(c.1)).unwrap_or(0);
        let t = now.max(c.0 + 1);
        c.0 = t;
        t
    }

    fn set_offset(&self, offset: i64) {
        let mut c = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        if c.1 != offset {
            *c = (0, offset);
        }
    }

    fn auth(&self, method: &str, pq: &str, body: &[u8]) -> Result<Option<String>, Error> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let mut nonce = [0u8; protocol::auth::NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::Config(format!("no randomness: {e}")))?;
        Ok(Some(
            sign(key, method, pq, body, self.stamp(), nonce).to_header_value(),
        ))
    }

    fn request(
        &self,
        method: &str,
        pq: &str,
        body: Option<&[u8]>,
        accept_json: bool,
    ) -> Result<ureq::http::Response<ureq::Body>, Error> {
        let url = format!("{}{pq}", self.base);
        let auth = self.auth(method, pq, body.unwrap_or(&[]))?;
        let transport = |e: ureq::Error| Error::Transport(format!("{method} {url}: {e}"));
        let resp = match body {
            None => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header(AUTH_HEADER, a);
                }
                if accept_json {
                    r = r.header("Accept", "application/json");
                }
                r.call().map_err(transport)?
            }
            Some(b) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header(AUTH_HEADER, a);
                }
                r.send(b).map_err(transport)?
            }
        };
        check(resp, method, pq)
    }

    /// Streams a signed upload (from `ofmon sign-firmware`) to
    /// `POST /api/v1/ota` with an explicit `Content-Length` (the device
    /// refuses a short body as truncated); `sent` gets the bytes sent so far.
    /// Call [`DeviceApi::info`] first so the request time suits the
    /// device's clock. See [`crate::ota`] for the whole update.
    pub fn upload_firmware(&self, body: &[u8], sent: &mut dyn FnMut(u64)) -> Result<(), Error> {
        let pq = "/api/v1/ota";
        let url = format!("{}{pq}", self.base);
        let mut r = self
            .agent
            .post(&url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", body.len().to_string());
        if let Some(a) = self.auth("POST", pq, body)? {
            r = r.header(AUTH_HEADER, a);
        }
        let mut reader = Counting {
            data: body,
            pos: 0,
            sent,
        };
        let mut resp = r
            .send(ureq::SendBody::from_reader(&mut reader))
            .map_err(|e| Error::Transport(format!("POST {url}: {e}")))?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        // 401 here is a bad request signature or a bad firmware signature:
        // the reason tells which.
        Err(Error::Transport(format!(
            "HTTP {status}: {}",
            reason(&mut resp)
        )))
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        pq: &str,
        body: Option<&[u8]>,
    ) -> Result<T, Error> {
        let mut resp = self.request(method, pq, body, true)?;
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| Error::Transport(format!("{pq}: {e}")))?;
        protocol::api::decode(&bytes)
            .map_err(|e| Error::BadInput(format!("{pq}: bad JSON answer: {e}")))
    }
}

impl DeviceApi for HttpDevice {
    fn info(&self) -> Result<Info, Error> {
        let before = crate::now_ms();
        let info: Info = self.json("GET", "/api/v1/info", None)?;
        let mid = before + (crate::now_ms() - before) / 2;
        let offset = match info.clock {
            protocol::api::ClockState::Set { now_ms, .. } => {
                let off = i64::try_from(now_ms).unwrap_or(i64::MAX / 2) - mid;
                if off.abs() > FOLLOW_DEVICE_CLOCK_MS {
                    off
                } else {
                    0
                }
            }
            protocol::api::ClockState::Unset => 0,
        };
        self.set_offset(offset);
        Ok(info)
    }

    fn pair(&self, req: &PairRequest) -> Result<PairResponse, Error> {
        self.json("POST", "/api/v1/pair", Some(&protocol::api::encode(req)))
    }

    fn set_time(&self, req: &TimeRequest) -> Result<TimeResponse, Error> {
        let r = self.json("POST", "/api/v1/time", Some(&protocol::api::encode(req)))?;
        // The device's clock is ours now.
        self.set_offset(0);
        Ok(r)
    }

    fn records(
        &self,
        after: u64,
        limit: u32,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let pq = format!("/api/v1/records?after={after}&limit={limit}");
        let mut resp = self.request("GET", &pq, None, false)?;
        let mut reader = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| Error::Transport(format!("{pq}: transfer interrupted: {e}")))?;
            if n == 0 {
                return Ok(());
            }
            sink(&buf[..n])?;
        }
    }

    fn ack(&self, seq: u64) -> Result<AckResponse, Error> {
        self.json(
            "POST",
            "/api/v1/ack",
            Some(&protocol::api::encode(&AckRequest { seq })),
        )
    }

    fn events(&self, after: Option<u64>) -> Result<EventsResponse, Error> {
        let pq = match after {
            Some(a) => format!("/api/v1/events?after={a}"),
            None => "/api/v1/events".to_string(),
        };
        self.json("GET", &pq, None)
    }
}

/// An HTTP agent: no proxy (devices are on their own access point), status
/// codes handled by the caller.
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// Passes a 2xx response on; turns any other into an error naming the
/// device's reason.
fn check(
    mut resp: ureq::http::Response<ureq::Body>,
    method: &str,
    pq: &str,
) -> Result<ureq::http::Response<ureq::Body>, Error> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let reason = reason(&mut resp);
    Err(match status {
        401 => Error::Transport(format!(
            "{method} {pq}: device refused our signature ({reason}); is this the fleet key the device was paired with?"
        )),
        _ => Error::Transport(format!("{method} {pq}: HTTP {status}: {reason}")),
    })
}

/// The device's reason for an error answer: its JSON `error` (or
/// `message`), else the body text.
fn reason(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    let text = resp
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("message"))
                .and_then(|e| e.as_str())
                .map(str::to_string)
        })
        .unwrap_or(text)
}

/// A body reader that reports how much of `data` was read.
struct Counting<'a> {
    data: &'a [u8],
    pos: usize,
    sent: &'a mut dyn FnMut(u64),
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.pos).min(16 * 1024);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        (self.sent)(self.pos as u64);
        Ok(n)
    }
}
