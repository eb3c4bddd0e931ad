//! The MQTT side of the mock (MQTT 3.1.1, plain TCP), started on demand
//! with [`MockServer::start_mqtt`]:
//!
//! - CONNECT with user name = a device's access token (no password); an
//!   unknown or revoked token gets CONNACK "not authorized" (5).
//! - `v1/devices/me/telemetry`: the same JSON as the HTTP device API,
//!   stored for the connected device.
//! - Gateway API, only for a device with the "Is gateway" flag:
//!   `v1/gateway/connect` `{"device": "Name"[, "type": "profile"]}` creates
//!   the device by name if it does not exist (as the real server does), and
//!   `v1/gateway/telemetry` `{"Name": [{"ts", "values"}, …]}` stores points
//!   for each named device, creating unknown ones too.
//! - QoS 1 publishes are acknowledged (PUBACK) after the points are stored.
//! - Any error (malformed JSON, gateway topic from a non-gateway device,
//!   a packet over the 64 KiB limit, an unknown topic) closes the
//!   connection without a message, like the real server.
//!
//! Subscriptions are acknowledged but nothing is ever delivered (the mock
//! has no attributes or RPC to push).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    self, ConnAck, ConnectReturnCode, Packet, PingResp, PubAck, SubAck, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{self as mb, QoS};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, MockServer, Shared, TbValue, create_device, for_each_point, now_ms};

/// Default MQTT packet size limit of the real server (64 KiB).
pub const MAX_PACKET: usize = 64 * 1024;

/// The MQTT listener of a mock. Dropping it stops it (open connections
/// included).
pub struct MqttFront {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MqttFront {
    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MqttFront {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl MockServer {
    /// Starts the MQTT device and gateway API on a free loopback port,
    /// sharing this mock's devices and storage.
    pub fn start_mqtt(&self) -> Result<MqttFront, Error> {
        self.start_mqtt_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Creates a gateway device (the "Is gateway" flag set) with the given
    /// access token, as an administrator would in the UI. Returns its id.
    pub fn add_gateway(&self, name: &str, token: &str) -> String {
        let mut g = self.shared.lock();
        let i = create_device(&mut g, name, "default", None, Some(token.to_string()))
            .unwrap_or_else(|i| i);
        g.devices[i].gateway = true;
        g.devices[i].id.clone()
    }

    /// Starts the MQTT device and gateway API on `addr`.
    pub fn start_mqtt_on(&self, addr: SocketAddr) -> Result<MqttFront, Error> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("tb-mock-mqtt".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("tb-mock mqtt: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        _ = accept(listener, shared) => {}
                        _ = rx => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(MqttFront {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let s = shared.clone();
        tokio::spawn(async move {
            // Every error ends the connection, which is the answer.
            let _ = connection(stream, s).await;
        });
    }
}

/// Why a connection ends.
enum End {
    Closed,
    Protocol,
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> End {
        End::Closed
    }
}

impl From<mb::Error> for End {
    fn from(_: mb::Error) -> End {
        End::Protocol
    }
}

async fn next_packet(
    stream: &mut tokio::net::TcpStream,
    buf: &mut BytesMut,
) -> Result<Packet, End> {
    loop {
        match v4::read(buf, MAX_PACKET) {
            Ok(p) => return Ok(p),
            Err(mb::Error::InsufficientBytes(_)) => {}
            Err(_) => return Err(End::Protocol),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(End::Closed);
        }
    }
}

async fn connection(mut stream: tokio::net::TcpStream, shared: Arc<Shared>) -> Result<(), End> {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out = BytesMut::new();
    let Packet::Connect(c) = next_packet(&mut stream, &mut buf).await? else {
        return Err(End::Protocol);
    };
    let token = c.login.map(|l| l.username).unwrap_or_default();
    let device = {
        let g = shared.lock();
        g.by_token
            .get(&token)
            .and_then(|&i| g.devices.get(i))
            .map(|d| (d.id.clone(), d.gateway))
    };
    let Some((device_id, gateway)) = device else {
        ConnAck::new(ConnectReturnCode::NotAuthorized, false).write(&mut out)?;
        stream.write_all(&out).await?;
        return Ok(());
    };
    ConnAck::new(ConnectReturnCode::Success, false).write(&mut out)?;
    stream.write_all(&out).await?;
    loop {
        out.clear();
        match next_packet(&mut stream, &mut buf).await? {
            Packet::Publish(p) => {
                shared.stats.requests.fetch_add(1, Ordering::Relaxed);
                let Ok(body) = serde_json::from_slice::<Value>(&p.payload) else {
                    return Err(End::Protocol);
                };
                let ok = match p.topic.as_str() {
                    "v1/devices/me/telemetry" => store_for_id(&shared, &device_id, &body),
                    "v1/gateway/connect" if gateway => {
                        match body.get("device").and_then(Value::as_str) {
                            Some(name) => {
                                let profile = body.get("type").and_then(Value::as_str);
                                let mut g = shared.lock();
                                let _ = create_device(
                                    &mut g,
                                    name,
                                    profile.unwrap_or("default"),
                                    None,
                                    None,
                                );
                                true
                            }
                            None => false,
                        }
                    }
                    "v1/gateway/disconnect" if gateway => true,
                    "v1/gateway/telemetry" if gateway => store_gateway(&shared, &body),
                    _ => false,
                };
                if !ok {
                    return Err(End::Protocol);
                }
                if p.qos != QoS::AtMostOnce {
                    shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    PubAck::new(p.pkid).write(&mut out)?;
                }
            }
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|_| SubscribeReasonCode::Success(QoS::AtMostOnce))
                    .collect();
                SubAck::new(s.pkid, codes).write(&mut out)?;
            }
            Packet::PingReq => {
                PingResp.write(&mut out)?;
            }
            Packet::Disconnect => return Ok(()),
            Packet::PubAck(_) => {}
            _ => return Err(End::Protocol),
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
    }
}

/// Stores a telemetry body for a device; false if it is malformed.
fn store_points(shared: &Shared, idx: usize, body: &Value) -> bool {
    let Some(v) = crate::parse_body(body.to_string().as_bytes()) else {
        return false;
    };
    let mut g = shared.lock();
    let Some(dev) = g.devices.get_mut(idx) else {
        return false;
    };
    let (mut n, mut over) = (0, 0);
    for_each_point(&v, now_ms(), |ts, k, v| {
        if let Some(v) = TbValue::from_json(v) {
            n += 1;
            if dev
                .telemetry
                .entry(k.to_string())
                .or_default()
                .insert(ts, v)
                .is_some()
            {
                over += 1;
            }
        }
    });
    shared.stats.points_written.fetch_add(n, Ordering::Relaxed);
    shared.stats.overwrites.fetch_add(over, Ordering::Relaxed);
    true
}

fn store_for_id(shared: &Shared, id: &str, body: &Value) -> bool {
    let idx = shared.lock().devices.iter().position(|d| d.id == id);
    idx.is_some_and(|i| store_points(shared, i, body))
}

/// `{"Name": [points…], …}`: each named device is created if unknown.
fn store_gateway(shared: &Shared, body: &Value) -> bool {
    let Some(obj) = body.as_object() else {
        return false;
    };
    for (name, points) in obj {
        let idx = {
            let mut g = shared.lock();
            create_device(&mut g, name, "default", None, None).unwrap_or_else(|i| i)
        };
        if !store_points(shared, idx, points) {
            return false;
        }
    }
    true
}
