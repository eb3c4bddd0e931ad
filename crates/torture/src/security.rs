//! Security campaign: every protected operation of `openapi.yaml` (so a new
//! route is covered the day it is documented) attacked on a simulated
//! device — no signature, garbage, a random key, another device's key, a
//! signature for another path, a tampered body, stale and future timestamps,
//! a replay, a replay after the nonce ring has turned over, a replay after a
//! reboot — each must answer 401, while the correctly signed request must
//! not. Plus key isolation between devices ([`key_isolation`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use protocol::{ApiKey, DeviceSecret, FleetSecret, Mac, auth};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::http::{self, Reply};

/// One operation of the spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Upper-case method.
    pub method: String,
    /// Path (no templates in this API).
    pub path: String,
    /// Needs a signature (always, or once paired).
    pub protected: bool,
    /// Open while the device is unpaired (pairing).
    pub open_while_unpaired: bool,
    /// Legacy-mode route.
    pub legacy: bool,
    /// A request body built from the schema's required fields.
    pub body: Vec<u8>,
    /// Content type of that body.
    pub content_type: Option<String>,
}

/// Parses `openapi.yaml`: every operation, whether it is protected (no
/// `security` override, or one that lists `ofmonHmac`), and an example body
/// generated from its request schema.
pub fn operations(spec_text: &str) -> Result<Vec<Operation>> {
    let spec: Value = serde_yaml::from_str(spec_text).context("openapi.yaml is not YAML")?;
    let global_hmac = spec.get("security").map(lists_hmac).unwrap_or(false);
    let paths = spec
        .get("paths")
        .and_then(Value::as_mapping)
        .ok_or_else(|| anyhow!("openapi.yaml has no paths"))?;
    let mut out = Vec::new();
    for (path, item) in paths {
        let path = path.as_str().ok_or_else(|| anyhow!("non-string path"))?;
        let Some(item) = item.as_mapping() else {
            continue;
        };
        for (method, op) in item {
            let Some(method) = method.as_str() else {
                continue;
            };
            if !["get", "post", "put", "delete", "patch"].contains(&method) {
                continue;
            }
            let legacy = op
                .get("tags")
                .and_then(Value::as_sequence)
                .is_some_and(|t| t.iter().any(|t| t.as_str() == Some("legacy")));
            let (protected, open_while_unpaired) = match op.get("security") {
                None => (global_hmac, false),
                Some(sec) => {
                    let hmac = lists_hmac(sec);
                    let anon = sec.as_sequence().is_some_and(|s| {
                        s.iter()
                            .any(|r| r.as_mapping().is_some_and(|m| m.is_empty()))
                    });
                    (hmac, hmac && anon)
                }
            };
            let (body, content_type) = example_body(&spec, op);
            out.push(Operation {
                method: method.to_uppercase(),
                path: path.to_string(),
                protected,
                open_while_unpaired,
                legacy,
                body,
                content_type,
            });
        }
    }
    Ok(out)
}

fn lists_hmac(sec: &Value) -> bool {
    sec.as_sequence().is_some_and(|s| {
        s.iter()
            .any(|r| r.as_mapping().is_some_and(|m| m.contains_key("ofmonHmac")))
    })
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    for _ in 0..8 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        let mut cur = spec;
        for part in r.trim_start_matches("#/").split('/') {
            match cur.get(part) {
                Some(next) => cur = next,
                None => return v,
            }
        }
        v = cur;
    }
    v
}

/// A value that satisfies the schema's types and required fields.
fn example(spec: &Value, schema: &Value, depth: u32) -> serde_json::Value {
    let schema = resolve(spec, schema);
    if let Some(e) = schema.get("example")
        && let Ok(j) = serde_json::to_value(e)
    {
        return j;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") | None if depth < 4 => {
            let mut m = serde_json::Map::new();
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_sequence)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema.get("properties").and_then(Value::as_mapping) {
                for (k, v) in props {
                    if let Some(k) = k.as_str()
                        && required.contains(&k)
                    {
                        m.insert(k.to_string(), example(spec, v, depth + 1));
                    }
                }
            }
            serde_json::Value::Object(m)
        }
        Some("integer") => {
            serde_json::json!(schema.get("minimum").and_then(Value::as_i64).unwrap_or(1))
        }
        Some("number") => serde_json::json!(1.0),
        Some("boolean") => serde_json::json!(false),
        Some("array") => serde_json::json!([]),
        Some("string") => serde_json::json!("x"),
        _ => serde_json::Value::Null,
    }
}

fn example_body(spec: &Value, op: &Value) -> (Vec<u8>, Option<String>) {
    let Some(content) = op
        .get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(Value::as_mapping)
    else {
        return (Vec::new(), None);
    };
    if let Some(json) = content.get("application/json") {
        let schema = json.get("schema").cloned().unwrap_or(Value::Null);
        let v = example(spec, &schema, 0);
        return (
            serde_json::to_vec(&v).unwrap_or_default(),
            Some("application/json".into()),
        );
    }
    // Binary bodies: a few hundred bytes of something.
    (
        (0..300u32).map(|i| (i * 7) as u8).collect(),
        Some("application/octet-stream".into()),
    )
}

/// The outcome of one attack on one route.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Probe {
    /// `METHOD /path`.
    pub route: String,
    /// Attack name.
    pub attack: String,
    /// Status answered.
    pub status: u16,
    /// Status that was required (`401`), or `!401` for the control.
    pub expected: String,
    /// Whether it passed.
    pub ok: bool,
}

/// Figures of the security campaign.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SecurityReport {
    /// Operations in the spec.
    pub operations: usize,
    /// Protected operations attacked.
    pub protected: Vec<String>,
    /// Attacks per protected route.
    pub attacks: Vec<String>,
    /// Requests made.
    pub probes: usize,
    /// Probes that answered what they must.
    pub passed: usize,
    /// Failed probes (must be empty).
    pub failures: Vec<Probe>,
    /// Status of the correctly signed control request per route.
    pub control_status: BTreeMap<String, u16>,
    /// Key isolation figures.
    pub keys: KeyIsolation,
}

impl SecurityReport {
    /// Whether every probe answered as required.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.probes == self.passed && self.keys.ok()
    }
}

/// A signing client for one device.
struct Signer {
    url: String,
    key: ApiKey,
    nonce: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Signer {
    fn header(&mut self, key: &ApiKey, method: &str, target: &str, body: &[u8], t: u64) -> String {
        self.nonce += 1;
        let mut n = [0u8; auth::NONCE_LEN];
        n[..8].copy_from_slice(&self.nonce.to_le_bytes());
        n[8..].copy_from_slice(&now_ms().to_le_bytes());
        auth::sign(key, method, target, body, t, n).to_header_value()
    }

    fn send(
        &self,
        op: &Operation,
        target: &str,
        auth: Option<String>,
        body: &[u8],
    ) -> Result<Reply> {
        let mut h: Vec<(&str, String)> = Vec::new();
        if let Some(a) = auth {
            h.push((auth::AUTH_HEADER, a));
        }
        if let Some(ct) = &op.content_type {
            h.push(("Content-Type", ct.clone()));
        }
        http::request(&self.url, &op.method, target, &h, body)
            .with_context(|| format!("{} {target}", op.method))
    }
}

fn wait_up(url: &str, min_boots: u64, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = http::request(url, "GET", "/api/v1/info", &[], b"")
            && r.status == 200
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body)
            && v["boot_count"].as_u64().unwrap_or(0) >= min_boots
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("device at {url} did not come back");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn set_clock(s: &mut Signer) -> Result<()> {
    let t = serde_json::json!({"unix_ms": now_ms(), "uncertainty_ms": 5}).to_string();
    let key = s.key.clone();
    let h = s.header(&key, "POST", "/api/v1/time", t.as_bytes(), now_ms());
    let r = http::request(
        &s.url,
        "POST",
        "/api/v1/time",
        &[(auth::AUTH_HEADER, h)],
        t.as_bytes(),
    )?;
    if r.status != 200 {
        bail!("time answered {}: {}", r.status, r.text());
    }
    Ok(())
}

fn boot_count(url: &str) -> Result<u64> {
    let r = http::request(url, "GET", "/api/v1/info", &[], b"")?;
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    Ok(v["boot_count"].as_u64().unwrap_or(0))
}

/// Runs the campaign against a fresh simulated device (real clock speed, so
/// the device checks timestamps against its wall clock once set).
pub fn run(spec_path: &Path, home: &Path) -> Result<SecurityReport> {
    let text = std::fs::read_to_string(spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    let ops = operations(&text)?;
    let fleet = sim::run(sim::SimOptions {
        devices: 1,
        base_port: 0,
        home: home.to_path_buf(),
        speed: 1.0,
        interval_s: 5,
        // OTA on, so its route is protected like the firmware's.
        firmware_pubkey: Some(
            protocol::firmware::FirmwareSigningKey::from_seed(&[0x0A; 32])
                .public_key()
                .to_bytes(),
        ),
        ..sim::SimOptions::default()
    })
    .map_err(|e| anyhow!("sim: {e}"))?;
    let dev = fleet
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no device"))?;
    let fleet_key = std::fs::read_to_string(home.join("fleet.key"))?;
    let fleet_secret = FleetSecret::from_hex(fleet_key.trim()).map_err(|e| anyhow!("{e}"))?;
    let mac = Mac::parse(&dev.id).map_err(|e| anyhow!("{e}"))?;
    let secret = fleet_secret.device_secret(&mac);
    let mut s = Signer {
        url: dev.url.clone(),
        key: secret.api_key(),
        nonce: 0,
    };
    let mut rep = SecurityReport {
        operations: ops.len(),
        ..SecurityReport::default()
    };
    let probe = |rep: &mut SecurityReport, route: &str, attack: &str, status: u16| {
        let ok = status == 401;
        rep.probes += 1;
        if ok {
            rep.passed += 1;
        } else {
            rep.failures.push(Probe {
                route: route.into(),
                attack: attack.into(),
                status,
                expected: "401".into(),
                ok,
            });
        }
    };

    // Unpaired: every protected route except pairing is closed.
    let mut protected: Vec<&Operation> = ops.iter().filter(|o| o.protected && !o.legacy).collect();
    // Destructive ones last: reboot, then factory reset.
    protected.sort_by_key(|o| {
        (
            o.path.ends_with("/factory-reset"),
            o.path.ends_with("/reboot"),
        )
    });
    for op in &protected {
        if op.open_while_unpaired {
            continue;
        }
        let r = s.send(op, &op.path, None, &op.body)?;
        probe(
            &mut rep,
            &format!("{} {}", op.method, op.path),
            "unpaired, unsigned",
            r.status,
        );
    }

    // Pair, then set the clock (the device now checks timestamps).
    let pair = serde_json::json!({"token": "torture-token", "device_secret": secret.to_hex()});
    let r = http::request(
        &dev.url,
        "POST",
        "/api/v1/pair",
        &[],
        pair.to_string().as_bytes(),
    )?;
    if r.status != 200 {
        bail!("pairing answered {}: {}", r.status, r.text());
    }
    let t = serde_json::json!({"unix_ms": now_ms(), "uncertainty_ms": 5}).to_string();
    let h = s.header(
        &s.key.clone(),
        "POST",
        "/api/v1/time",
        t.as_bytes(),
        now_ms(),
    );
    let r = http::request(
        &dev.url,
        "POST",
        "/api/v1/time",
        &[(auth::AUTH_HEADER, h)],
        t.as_bytes(),
    )?;
    if r.status != 200 {
        bail!("time answered {}: {}", r.status, r.text());
    }

    let other_key = fleet_secret
        .device_secret(&Mac([0x02, 0x0F, 0x4D, 0x00, 0x00, 0x01]))
        .api_key();
    let random_key = ApiKey::from_bytes(
        *FleetSecret::from_bytes([0x5A; 32])
            .device_secret(&mac)
            .as_bytes(),
    );
    let attacks = [
        "unsigned",
        "garbage header",
        "random key",
        "another device's key",
        "device secret used as key",
        "signed for another path",
        "tampered body or query",
        "stale (-10 min)",
        "future (+10 min)",
        "replay",
        "replay after 80 other requests",
    ];
    rep.attacks = attacks.iter().map(|a| a.to_string()).collect();
    let mut old_events_header: Option<String> = None;
    for op in &protected {
        let route = format!("{} {}", op.method, op.path);
        rep.protected.push(route.clone());
        let key = s.key.clone();
        // OTA: the attacks carry a genuine signed newer image, so only the
        // request signature can stop them; the control carries a genuine
        // older image (refused as a downgrade, after auth).
        let (attack_body, control_body) = if op.path.ends_with("/ota") {
            let k = protocol::firmware::FirmwareSigningKey::from_seed(&[0x0A; 32]);
            let image: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
            let newer = k
                .sign_image(&image, protocol::FirmwareVersion::new(99, 0, 0), "sim")
                .map_err(|e| anyhow!("{e}"))?;
            let older = k
                .sign_image(&image, protocol::FirmwareVersion::new(0, 0, 1), "sim")
                .map_err(|e| anyhow!("{e}"))?;
            (newer, older)
        } else {
            (op.body.clone(), op.body.clone())
        };
        let body = attack_body.as_slice();
        // Some targets carry a query so tampering can alter it.
        let target = if op.method == "GET" {
            format!("{}?after=0", op.path)
        } else {
            op.path.clone()
        };
        let now = now_ms();
        let r = s.send(op, &target, None, body)?;
        probe(&mut rep, &route, attacks[0], r.status);
        let r = s.send(op, &target, Some("OFMon-HMAC t=1,n=zz,s=00".into()), body)?;
        probe(&mut rep, &route, attacks[1], r.status);
        let h = s.header(&random_key, &op.method, &target, body, now);
        probe(
            &mut rep,
            &route,
            attacks[2],
            s.send(op, &target, Some(h), body)?.status,
        );
        let h = s.header(&other_key, &op.method, &target, body, now);
        probe(
            &mut rep,
            &route,
            attacks[3],
            s.send(op, &target, Some(h), body)?.status,
        );
        let as_key = ApiKey::from_bytes(*secret.as_bytes());
        let h = s.header(&as_key, &op.method, &target, body, now);
        probe(
            &mut rep,
            &route,
            attacks[4],
            s.send(op, &target, Some(h), body)?.status,
        );
        let h = s.header(&key, &op.method, "/api/v1/info", body, now);
        probe(
            &mut rep,
            &route,
            attacks[5],
            s.send(op, &target, Some(h), body)?.status,
        );
        if body.is_empty() {
            let h = s.header(&key, &op.method, &target, body, now);
            let tampered = format!("{}?after=1", op.path);
            probe(
                &mut rep,
                &route,
                attacks[6],
                s.send(op, &tampered, Some(h), body)?.status,
            );
        } else {
            let h = s.header(&key, &op.method, &target, body, now);
            let mut b = body.to_vec();
            if op.content_type.as_deref() == Some("application/json") {
                b.push(b' ');
            } else if let Some(last) = b.last_mut() {
                *last ^= 1;
            }
            probe(
                &mut rep,
                &route,
                attacks[6],
                s.send(op, &target, Some(h), &b)?.status,
            );
        }
        let h = s.header(&key, &op.method, &target, body, now - 600_000);
        probe(
            &mut rep,
            &route,
            attacks[7],
            s.send(op, &target, Some(h), body)?.status,
        );
        let h = s.header(&key, &op.method, &target, body, now + 600_000);
        probe(
            &mut rep,
            &route,
            attacks[8],
            s.send(op, &target, Some(h), body)?.status,
        );

        // OTA with bodies that are not firmware at all: authentication
        // must answer (401) before the manifest parser can (400).
        if op.path.ends_with("/ota") {
            let mut junk: Vec<u8> = (0..8192u32).map(|i| (i * 131 % 253) as u8).collect();
            junk[..4].copy_from_slice(b"JUNK");
            let garbage: [(&str, Vec<u8>); 3] = [
                ("garbage body", junk),
                ("short garbage body", b"hello".to_vec()),
                ("spec example body", op.body.clone()),
            ];
            for (what, g) in &garbage {
                probe(
                    &mut rep,
                    &route,
                    &format!("{what}, unsigned"),
                    s.send(op, &target, None, g)?.status,
                );
                let h = s.header(&random_key, &op.method, &target, g, now_ms());
                probe(
                    &mut rep,
                    &route,
                    &format!("{what}, random key"),
                    s.send(op, &target, Some(h), g)?.status,
                );
                let h = s.header(&key, &op.method, &target, b"another body", now_ms());
                probe(
                    &mut rep,
                    &route,
                    &format!("{what}, signature of another body"),
                    s.send(op, &target, Some(h), g)?.status,
                );
            }
        }

        // Control: correctly signed must get past auth.
        let boots = boot_count(&dev.url)?;
        let body = control_body.as_slice();
        let h = s.header(&key, &op.method, &target, body, now_ms());
        let r = s.send(op, &target, Some(h.clone()), body)?;
        let control = r.status;
        rep.control_status.insert(route.clone(), r.status);
        rep.probes += 1;
        if r.status == 401 {
            rep.failures.push(Probe {
                route: route.clone(),
                attack: "control (correctly signed)".into(),
                status: r.status,
                expected: "!401".into(),
                ok: false,
            });
        } else {
            rep.passed += 1;
        }
        let rebooting = r.status == 200
            && (op.path.ends_with("/reboot") || op.path.ends_with("/factory-reset"));
        if rebooting {
            // Replay across the reboot: the nonce ring is gone, the
            // persisted floor must still refuse it.
            wait_up(&dev.url, boots + 1, Duration::from_secs(30))?;
            if op.path.ends_with("/reboot") {
                // A rebooted device has no wall clock until a collector
                // sets it; without one it cannot refuse future timestamps.
                set_clock(&mut s)?;
            }
        }
        probe(&mut rep, &route, attacks[9], {
            // A replay never succeeds: 401, or — when the control was
            // refused after auth (OTA downgrade) — refused the same way.
            let st = s.send(op, &target, Some(h.clone()), body)?.status;
            if st == control && !(200..300).contains(&st) {
                401
            } else {
                st
            }
        });
        if op.path.ends_with("/events") {
            old_events_header = Some(h.clone());
        }
        // Replay after the nonce ring turned over: the floor refuses it.
        if op.path.ends_with("/events") || op.path.ends_with("/records") {
            for _ in 0..80 {
                let h2 = s.header(&key, "GET", "/api/v1/info", b"", now_ms());
                let _ = http::request(
                    &dev.url,
                    "GET",
                    "/api/v1/info",
                    &[(auth::AUTH_HEADER, h2)],
                    b"",
                );
                let h3 = s.header(&key, "GET", "/api/v1/config", b"", now_ms());
                let _ = http::request(
                    &dev.url,
                    "GET",
                    "/api/v1/config",
                    &[(auth::AUTH_HEADER, h3)],
                    b"",
                );
            }
            probe(
                &mut rep,
                &route,
                attacks[10],
                s.send(op, &target, Some(h), body)?.status,
            );
        }
        if rebooting && let Some(old) = &old_events_header {
            let ev = Operation {
                method: "GET".into(),
                path: "/api/v1/events".into(),
                protected: true,
                open_while_unpaired: false,
                legacy: false,
                body: Vec::new(),
                content_type: None,
            };
            let r = s.send(&ev, "/api/v1/events?after=0", Some(old.clone()), b"")?;
            probe(
                &mut rep,
                &route,
                "events request replayed after this reboot",
                r.status,
            );
        }
    }
    rep.keys = key_isolation(&fleet_secret, 256);
    fleet.stop();
    Ok(rep)
}

/// What a captured device's secrets reveal about the others.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyIsolation {
    /// Device pairs compared.
    pub pairs: u64,
    /// Pairs with equal secrets, API keys or AP passwords (must be 0).
    pub collisions: u64,
    /// Pairs where device A's secret, used in place of the fleet secret,
    /// gives device B's secret or API key (must be 0).
    pub derivable: u64,
    /// Mean Hamming distance between API keys of neighbouring MACs (bits; 128 = unrelated).
    pub mean_key_distance_bits: f64,
    /// Smallest Hamming distance seen (bits).
    pub min_key_distance_bits: u32,
    /// A signature made with A's API key accepted by a verifier holding B's (must be 0).
    pub cross_accepted: u64,
}

impl KeyIsolation {
    /// Whether nothing leaked.
    pub fn ok(&self) -> bool {
        self.pairs > 0
            && self.collisions == 0
            && self.derivable == 0
            && self.cross_accepted == 0
            && self.min_key_distance_bits > 64
            && (self.mean_key_distance_bits - 128.0).abs() < 8.0
    }
}

fn distance(a: &[u8; 32], b: &[u8; 32]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Derives `n` devices with neighbouring MACs (the worst case: one bit
/// apart) and checks that no device's stored material (its [`DeviceSecret`]
/// and what derives from it) gives another device's keys.
pub fn key_isolation(fleet: &FleetSecret, n: u32) -> KeyIsolation {
    let macs: Vec<Mac> = (0..n)
        .map(|i| Mac([0x02, 0x0F, 0x4D, 0, (i >> 8) as u8, i as u8]))
        .collect();
    let secrets: Vec<DeviceSecret> = macs.iter().map(|m| fleet.device_secret(m)).collect();
    let keys: Vec<ApiKey> = secrets.iter().map(DeviceSecret::api_key).collect();
    let pw: Vec<String> = secrets
        .iter()
        .map(|s| s.ap_password().as_str().to_string())
        .collect();
    let mut k = KeyIsolation {
        min_key_distance_bits: 256,
        ..KeyIsolation::default()
    };
    let mut dist_sum = 0u64;
    let mut dist_n = 0u64;
    for a in 0..macs.len() {
        // What a captured device A holds, abused as if it were the fleet secret.
        let as_fleet = FleetSecret::from_bytes(*secrets[a].as_bytes());
        let as_fleet_key = FleetSecret::from_bytes(*keys[a].as_bytes());
        for b in 0..macs.len() {
            if a == b {
                continue;
            }
            k.pairs += 1;
            if secrets[a] == secrets[b] || keys[a] == keys[b] || pw[a] == pw[b] {
                k.collisions += 1;
            }
            for f in [&as_fleet, &as_fleet_key] {
                let guess = f.device_secret(&macs[b]);
                if guess == secrets[b] || guess.api_key() == keys[b] {
                    k.derivable += 1;
                }
            }
            if b == a + 1 {
                let d = distance(keys[a].as_bytes(), keys[b].as_bytes());
                dist_sum += u64::from(d);
                dist_n += 1;
                k.min_key_distance_bits = k.min_key_distance_bits.min(d);
            }
        }
        // A's key signs; B's verifier must refuse.
        let b = (a + 1) % macs.len();
        let h = auth::sign(
            &keys[a],
            "GET",
            "/api/v1/records",
            b"",
            1_700_000_000_000,
            [a as u8; 16],
        )
        .to_header_value();
        let mut v = protocol::Verifier::new(auth::DEFAULT_WINDOW_MS);
        if v.verify_header(
            &keys[b],
            "GET",
            "/api/v1/records",
            &auth::EMPTY_BODY_SHA256,
            Some(&h),
            None,
        )
        .is_ok()
        {
            k.cross_accepted += 1;
        }
    }
    k.mean_key_distance_bits = dist_sum as f64 / dist_n.max(1) as f64;
    k
}
