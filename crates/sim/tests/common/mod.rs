//! A tiny HTTP/1.1 client over std TCP and helpers shared by the tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use protocol::{FleetSecret, Mac, auth};
use sim::{Fleet, SimOptions};

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw bytes, reads until close.
pub fn raw(url: &str, request: &[u8]) -> Reply {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    parse(&buf)
}

fn parse(buf: &[u8]) -> Reply {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if let Some((_, len)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        body.truncate(len.parse().unwrap());
    }
    Reply {
        status,
        headers,
        body,
    }
}

pub fn request(
    url: &str,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Reply {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw(url, &bytes)
}

pub fn get(url: &str, target: &str) -> Reply {
    request(url, "GET", target, &[], b"")
}

/// A collector-side client with the device's keys.
pub struct Client {
    pub url: String,
    pub key: protocol::ApiKey,
    pub secret_hex: String,
    nonce: u64,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Client {
    pub fn new(home: &std::path::Path, url: &str, id: &str) -> Self {
        let text = std::fs::read_to_string(home.join("fleet.key")).unwrap();
        let fleet = FleetSecret::from_hex(text.trim()).unwrap();
        let mac = Mac::parse(id).unwrap();
        Self {
            url: url.to_string(),
            key: fleet.device_keys(&mac).api_key,
            secret_hex: fleet.device_secret(&mac).to_hex(),
            nonce: 1,
        }
    }

    pub fn sign(&mut self, method: &str, target: &str, body: &[u8], t: u64) -> String {
        static UNIQUE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        self.nonce = UNIQUE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&self.nonce.to_le_bytes());
        n[8..].copy_from_slice(&now_ms().to_le_bytes());
        auth::sign(&self.key, method, target, body, t, n).to_header_value()
    }

    pub fn call(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
        extra: &[(&str, String)],
    ) -> Reply {
        let h = self.sign(method, target, body, now_ms());
        let mut headers = vec![("Authorization", h)];
        headers.extend(extra.iter().cloned());
        request(&self.url, method, target, &headers, body)
    }

    pub fn pair(&mut self) -> Reply {
        let body = serde_json::json!({
            "token": "tb-token-123",
            "device_secret": self.secret_hex,
            "profile": "household",
            "server": "test"
        });
        request(
            &self.url,
            "POST",
            "/api/v1/pair",
            &[],
            body.to_string().as_bytes(),
        )
    }

    pub fn records_json(&mut self, after: u64) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut after = after;
        loop {
            let r = self.call(
                "GET",
                &format!("/api/v1/records?after={after}&limit=5000"),
                b"",
                &[("Accept", "application/json".into())],
            );
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            let recs = v["records"].as_array().unwrap().clone();
            if recs.is_empty() {
                break;
            }
            after = recs.last().unwrap()["seq"].as_u64().unwrap();
            out.extend(recs);
        }
        out
    }
}

pub fn temp_home(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ofmon-sim-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn start(name: &str, f: impl FnOnce(&mut SimOptions)) -> (Fleet, PathBuf) {
    let home = temp_home(name);
    let mut o = SimOptions {
        base_port: 0,
        home: home.clone(),
        ..SimOptions::default()
    };
    f(&mut o);
    (Fleet::start(o).expect("fleet starts"), home)
}
