//! The ThingsBoard MQTT device API and gateway API (rumqttc, QoS 1).
//!
//! - Device API: one connection per device, username = access token, no
//!   password; points published to `v1/devices/me/telemetry` as a JSON array.
//! - Gateway API: one connection as the gateway device; for each device
//!   `v1/gateway/connect` `{"device": "Name"}`, then `v1/gateway/telemetry`
//!   `{"Name": [points]}`.
//!
//! A batch is marked sent only when its PUBACK arrives. Every packet stays
//! within the server's 64 KiB limit (the server closes the connection,
//! without a word, on a bigger one). A connection error drops everything in
//! flight; the next session re-reads the outbox, so unacknowledged batches are
//! sent again (harmless: the server upserts by key and ts).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS, TlsConfiguration, Transport as MqttTransport,
};
use rusqlite::Connection;

use crate::Error;
use crate::engine::{
    DeviceReport, DeviceRun, DeviceStatus, Progress, Queue, Sent, SyncOptions, backoff, json_array,
};
use crate::outbox::SyncDevice;

/// The server's default MQTT packet limit.
pub const MAX_PACKET: usize = 64 * 1024;
/// Device API telemetry topic.
pub const DEVICE_TOPIC: &str = "v1/devices/me/telemetry";
/// Gateway API connect topic.
pub const GATEWAY_CONNECT_TOPIC: &str = "v1/gateway/connect";
/// Gateway API telemetry topic.
pub const GATEWAY_TELEMETRY_TOPIC: &str = "v1/gateway/telemetry";

/// Host, port and TLS flag of an MQTT endpoint derived from a server URL:
/// `mqtt://h[:1883]`, `mqtts://h[:8883]`; an `http(s)://h[:p]` URL maps to the
/// same host on 1883 (8883 for https).
pub fn endpoint(url: &str) -> Result<(String, u16, bool), Error> {
    let (rest, tls, default_port, keep_port) = if let Some(r) = url.strip_prefix("mqtt://") {
        (r, false, 1883, true)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (r, true, 8883, true)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, false, 1883, false)
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, true, 8883, false)
    } else {
        return Err(Error::Config(format!(
            "{url}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        )));
    };
    let hostport = rest.split('/').next().unwrap_or("");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| Error::Config(format!("{url}: bad port {p}")))?;
            (h, if keep_port { port } else { default_port })
        }
        _ => (hostport, default_port),
    };
    if host.is_empty() {
        return Err(Error::Config(format!("{url}: no host")));
    }
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        tls,
    ))
}

fn options(
    url: &str,
    username: &str,
    client_id: &str,
    opts: &SyncOptions,
) -> Result<MqttOptions, Error> {
    let (host, port, tls) = endpoint(url)?;
    let mut mo = MqttOptions::new(client_id, host, port);
    mo.set_credentials(username, "");
    mo.set_keep_alive(Duration::from_secs(30));
    mo.set_clean_session(true);
    mo.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    mo.set_inflight(opts.mqtt_inflight.max(1));
    mo.set_request_channel_capacity(usize::from(opts.mqtt_inflight) * 2 + 8);
    if tls {
        let t = match &opts.ca_pem {
            Some(ca) => MqttTransport::tls_with_config(TlsConfiguration::Simple {
                ca: ca.clone(),
                alpn: None,
                client_auth: None,
            }),
            None => MqttTransport::tls_with_default_config(),
        };
        mo.set_transport(t);
    }
    Ok(mo)
}

/// One session's end.
enum Session {
    Done,
    Unauthorized,
    /// The TLS handshake failed (untrusted certificate): not retried in
    /// this run, waiting does not fix a certificate. Nothing was in flight.
    Tls(String),
    /// Failed; whether any batch was acknowledged before.
    Failed {
        msg: String,
        progressed: bool,
        in_flight: Vec<(usize, Vec<Sent>)>,
    },
}

struct Batch {
    run: usize,
    seqs: Vec<Sent>,
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Publishes everything unsent of `runs` over one connection.
async fn session(
    runs: &mut [DeviceRun<'_>],
    url: &str,
    username: &str,
    gateway: bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Session, Error> {
    let Some(first) = runs.first() else {
        return Ok(Session::Done);
    };
    let opts = first.opts;
    let client_id = format!(
        "ofmon-{}-{:08x}",
        if gateway { "gw" } else { &first.device.id },
        rand::random::<u32>()
    );
    let mo = options(url, username, &client_id, opts)?;
    let cap = usize::from(opts.mqtt_inflight) * 2 + 8;
    let (client, mut el): (AsyncClient, EventLoop) = AsyncClient::new(mo, cap);
    // Wait for the CONNACK.
    loop {
        match tokio::time::timeout(opts.timeout, el.poll()).await {
            Err(_) => {
                return Ok(Session::Failed {
                    msg: format!("{url}: no CONNACK within {:?}", opts.timeout),
                    progressed: false,
                    in_flight: Vec::new(),
                });
            }
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword,
            ))) => return Ok(Session::Unauthorized),
            Ok(Err(e @ ConnectionError::Tls(_))) => {
                return Ok(Session::Tls(format!(
                    "{url}: {e}; for a private CA give its certificate with --ca-file"
                )));
            }
            Ok(Err(e)) => {
                return Ok(Session::Failed {
                    msg: format!("{url}: {e}"),
                    progressed: false,
                    in_flight: Vec::new(),
                });
            }
        }
    }
    let topic = if gateway {
        GATEWAY_TELEMETRY_TOPIC
    } else {
        DEVICE_TOPIC
    };
    let window = usize::from(opts.mqtt_inflight.max(1));
    let mut unassigned: VecDeque<Batch> = VecDeque::new();
    let mut inflight: HashMap<u16, Batch> = HashMap::new();
    let mut cur = 0usize;
    let mut queue = Queue::new();
    let mut announced = false;
    let mut progressed = false;
    let fail = |msg: String,
                progressed: bool,
                unassigned: VecDeque<Batch>,
                inflight: HashMap<u16, Batch>| {
        let in_flight = unassigned
            .into_iter()
            .chain(inflight.into_values())
            .filter(|b| !b.seqs.is_empty())
            .map(|b| (b.run, b.seqs))
            .collect();
        Session::Failed {
            msg,
            progressed,
            in_flight,
        }
    };
    loop {
        while unassigned.len() + inflight.len() < window && cur < runs.len() {
            let run = &runs[cur];
            let name = run.device.display_name().to_string();
            // Room for the topic, the header and the gateway wrapper.
            let overhead = 16 + topic.len() + if gateway { name.len() * 2 + 8 } else { 0 };
            let max_bytes = (MAX_PACKET - overhead).min(opts.batch_bytes.max(1024));
            queue.fill(run, 256)?;
            if queue.is_empty() {
                cur += 1;
                queue = Queue::new();
                announced = false;
                continue;
            }
            let payload = if gateway && !announced {
                announced = true;
                unassigned.push_back(Batch {
                    run: cur,
                    seqs: Vec::new(),
                });
                format!("{{\"device\":{}}}", json_string(&name)).into_bytes()
            } else {
                let (seqs, pts) = queue.take(opts.batch_records.max(1), max_bytes);
                let body = json_array(&pts);
                unassigned.push_back(Batch { run: cur, seqs });
                if gateway {
                    let mut p = Vec::with_capacity(body.len() + name.len() + 8);
                    p.push(b'{');
                    p.extend_from_slice(json_string(&name).as_bytes());
                    p.push(b':');
                    p.extend_from_slice(&body);
                    p.push(b'}');
                    p
                } else {
                    body
                }
            };
            let t = if gateway && unassigned.back().is_some_and(|b| b.seqs.is_empty()) {
                GATEWAY_CONNECT_TOPIC
            } else {
                topic
            };
            if let Err(e) = client.publish(t, QoS::AtLeastOnce, false, payload).await {
                return Ok(fail(
                    format!("{url}: {e}"),
                    progressed,
                    unassigned,
                    inflight,
                ));
            }
        }
        if unassigned.is_empty() && inflight.is_empty() && cur >= runs.len() {
            let _ = client.disconnect().await;
            // Let the DISCONNECT go out.
            let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
            return Ok(Session::Done);
        }
        match tokio::time::timeout(opts.timeout, el.poll()).await {
            Err(_) => {
                return Ok(fail(
                    format!("{url}: no PUBACK within {:?}", opts.timeout),
                    progressed,
                    unassigned,
                    inflight,
                ));
            }
            Ok(Err(e)) => {
                return Ok(fail(
                    format!("{url}: connection lost: {e}"),
                    progressed,
                    unassigned,
                    inflight,
                ));
            }
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                if let Some(b) = unassigned.pop_front() {
                    inflight.insert(pkid, b);
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(b) = inflight.remove(&ack.pkid)
                    && !b.seqs.is_empty()
                {
                    let run = &mut runs[b.run];
                    run.mark_sent(&b.seqs)?;
                    progressed = true;
                    progress(Progress::Sent {
                        device: &run.device.id,
                        records: b.seqs.len() as u64,
                    });
                }
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Sessions with backoff until done, unauthorized, or out of retries.
async fn sessions(
    runs: &mut [DeviceRun<'_>],
    url: &str,
    username: &str,
    gateway: bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<DeviceStatus, Error> {
    let Some(opts) = runs.first().map(|r| r.opts) else {
        return Ok(DeviceStatus::Done);
    };
    let mut failures = 0u32;
    loop {
        match session(runs, url, username, gateway, progress).await? {
            Session::Done => return Ok(DeviceStatus::Done),
            Session::Unauthorized => return Ok(DeviceStatus::Unauthorized),
            Session::Tls(msg) => return Ok(DeviceStatus::GaveUp(msg)),
            Session::Failed {
                msg,
                progressed,
                in_flight,
            } => {
                if progressed {
                    failures = 0;
                }
                failures += 1;
                if failures > opts.max_retries {
                    for (i, seqs) in in_flight {
                        if let Some(r) = runs.get_mut(i) {
                            r.mark_failed(&seqs, &msg)?;
                        }
                    }
                    return Ok(DeviceStatus::GaveUp(msg));
                }
                for (i, seqs) in in_flight {
                    if let Some(r) = runs.get_mut(i) {
                        r.failed.extend(seqs.iter().map(|s| s.0));
                    }
                }
                let wait = backoff(opts.backoff_base, opts.backoff_max, failures - 1);
                if let Some(r) = runs.first() {
                    progress(Progress::Retry {
                        device: &r.device.id,
                        attempt: failures,
                        error: &msg,
                        wait,
                    });
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// MQTT device API: one device, username = its token.
pub(crate) async fn sync_device(
    run: &mut DeviceRun<'_>,
    url: &str,
    token: &str,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<DeviceStatus, Error> {
    sessions(std::slice::from_mut(run), url, token, false, progress).await
}

/// MQTT gateway API: all `devices` of one server over one connection.
pub(crate) async fn sync_gateway(
    conn: &Connection,
    dest: i64,
    devices: &[&SyncDevice],
    url: &str,
    opts: &SyncOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<DeviceReport>, Error> {
    let mut runs: Vec<DeviceRun<'_>> = devices
        .iter()
        .map(|d| DeviceRun::new(conn, dest, d, opts))
        .collect();
    let status = match opts.gateway_token.as_deref() {
        None => DeviceStatus::Failed(
            "the gateway transport needs the gateway device's access token (--gateway-token)"
                .to_string(),
        ),
        Some(tok) => sessions(&mut runs, url, tok, true, progress).await?,
    };
    runs.iter().map(|r| r.finish(url, status.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_is_the_token_without_password() {
        let o = options(
            "mqtt://127.0.0.1:1883",
            "TOKEN",
            "c",
            &SyncOptions::default(),
        )
        .unwrap();
        assert_eq!(o.credentials(), Some(("TOKEN".to_string(), String::new())));
        assert_eq!(o.max_packet_size(), MAX_PACKET);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint("mqtt://127.0.0.1:1999").unwrap(),
            ("127.0.0.1".into(), 1999, false)
        );
        assert_eq!(
            endpoint("mqtts://tb.example").unwrap(),
            ("tb.example".into(), 8883, true)
        );
        assert_eq!(
            endpoint("http://tb.example:8080/").unwrap(),
            ("tb.example".into(), 1883, false)
        );
        assert_eq!(
            endpoint("https://tb.example").unwrap(),
            ("tb.example".into(), 8883, true)
        );
        assert!(endpoint("ftp://x").is_err());
        assert!(endpoint("mqtt://h:notaport").is_err());
    }
}
