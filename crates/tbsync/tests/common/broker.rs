//! A real mosquitto broker for the MQTT tests, started on free loopback
//! ports and killed on drop, and a subscriber that watches what it carries.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// A running mosquitto and the directory holding its configuration.
pub struct Mosquitto {
    child: Child,
    /// Where `m.conf` (and any certificates written by the caller) live.
    pub dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Mosquitto {
    /// Writes `conf` to `dir/m.conf`, starts mosquitto with it and waits (at
    /// most 10 s) until each of `ports` accepts connections.
    pub fn start(dir: tempfile::TempDir, conf: &str, ports: &[u16]) -> Mosquitto {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect(
                "mosquitto not installed (Debian package `mosquitto`; `cargo xtask ci` installs it)",
            );
        let path = dir.path().join("m.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        for &port in ports {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "mosquitto did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Mosquitto { child, dir }
    }
}

/// Subscribes to `filter` on the plain listener at `port`; returns a
/// receiver of (topic, payload), once the subscription is acknowledged.
pub fn subscribe(port: u16, filter: &str) -> Receiver<(String, Vec<u8>)> {
    let mut mo = MqttOptions::new(format!("watch-{port}"), "127.0.0.1", port);
    mo.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(mo, 100);
    client.subscribe(filter, QoS::AtLeastOnce).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    rx
}
