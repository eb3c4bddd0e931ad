//! The mock's MQTT side: device API, gateway API creating devices by name,
//! refusals, with rumqttc as the client.

use std::time::{Duration, Instant};

use rumqttc::{Client, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use thingsboard_mock::MockServer;

/// Connects with `token`, publishes `msgs` at QoS 1, and returns the CONNACK
/// code and how many PUBACKs came back before the connection ended or all
/// were acknowledged.
fn publish(port: u16, token: &str, msgs: &[(&str, String)]) -> (ConnectReturnCode, usize) {
    let mut o = MqttOptions::new("t", "127.0.0.1", port);
    o.set_credentials(token, "");
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(o, 16);
    for (topic, body) in msgs {
        client
            .publish(*topic, QoS::AtLeastOnce, false, body.clone())
            .unwrap();
    }
    let mut code = ConnectReturnCode::ServiceUnavailable;
    let mut acks = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    for ev in conn.iter() {
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(c))) => {
                code = c.code;
                if code != ConnectReturnCode::Success {
                    break;
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acks += 1;
                if acks == msgs.len() {
                    break;
                }
            }
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(c)) => {
                code = c;
                break;
            }
            Err(_) => break,
        }
        assert!(Instant::now() < deadline, "no answer");
    }
    (code, acks)
}

#[test]
fn gateway_creates_devices_by_name_and_stores_points() {
    let m = MockServer::start().unwrap();
    let mq = m.start_mqtt().unwrap();
    assert!(mq.url().starts_with("mqtt://127.0.0.1:"));
    let port = mq.addr().port();
    m.add_gateway("gw", "gw-token");
    m.add_device("plain", "plain-token");
    let (code, acks) = publish(
        port,
        "gw-token",
        &[
            ("v1/gateway/connect", r#"{"device":"kitchen"}"#.to_string()),
            (
                "v1/gateway/telemetry",
                r#"{"kitchen":[{"ts":1000,"values":{"v_rms":230.1}},{"ts":2000,"values":{"v_rms":231}}],
                    "garage":[{"ts":1000,"values":{"kwh":1}}]}"#
                    .to_string(),
            ),
        ],
    );
    assert_eq!((code, acks), (ConnectReturnCode::Success, 2));
    assert_eq!(m.point_count("kitchen"), 2);
    assert_eq!(m.point_count("garage"), 1);
    assert!(!m.device("kitchen").unwrap().gateway);
    // Device API: points for the connected device; resend upserts.
    let body = r#"[{"ts":5,"values":{"a":1}}]"#.to_string();
    let (code, acks) = publish(
        port,
        "plain-token",
        &[
            ("v1/devices/me/telemetry", body.clone()),
            ("v1/devices/me/telemetry", body),
        ],
    );
    assert_eq!((code, acks), (ConnectReturnCode::Success, 2));
    assert_eq!(m.point_count("plain"), 1);
    // A device without the gateway flag may not use the gateway API: the
    // connection is closed without an answer.
    let (_, acks) = publish(
        port,
        "plain-token",
        &[("v1/gateway/connect", r#"{"device":"sneaky"}"#.to_string())],
    );
    assert_eq!(acks, 0);
    assert!(m.device("sneaky").is_none());
    // Malformed JSON closes the connection too.
    let (_, acks) = publish(
        port,
        "gw-token",
        &[("v1/gateway/telemetry", "{oops".to_string())],
    );
    assert_eq!(acks, 0);
    // Unknown or revoked token: not authorized.
    let (code, _) = publish(port, "nope", &[]);
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
    m.revoke_token("gw-token");
    let (code, _) = publish(port, "gw-token", &[]);
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
}
