//! A seeded, fault-injecting TCP proxy on loopback (tokio on its own
//! thread): resets connections mid-stream, stalls, delays and throttles,
//! in both directions. `tc netem` needs `sch_netem`, which these kernels do
//! not have; a userspace proxy is portable anyway.
//!
//! Each connection gets its own RNG derived from the seed and the connection
//! number, so a campaign with the same seed and the same request sequence
//! sees the same faults.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the link does to the traffic.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Faults {
    /// Seed of the fault RNG.
    pub seed: u64,
    /// Probability that a connection is refused outright (closed on accept).
    pub refuse: f64,
    /// Probability, per forwarded chunk, of a reset (RST both ways).
    pub reset_per_chunk: f64,
    /// Probability, per chunk, of a stall of `stall_ms`.
    pub stall_per_chunk: f64,
    /// Length of a stall (ms); longer than the client's timeout makes it a timeout.
    pub stall_ms: u64,
    /// Extra delay per chunk, uniform in `0..=delay_ms`.
    pub delay_ms: u64,
    /// Throughput cap per direction (bytes/s; 0 = none).
    pub throttle_bps: u64,
    /// Largest chunk forwarded at once (small chunks make resets land mid-body).
    pub chunk: usize,
}

impl Faults {
    /// A link that forwards faithfully.
    pub fn none() -> Self {
        Self {
            seed: 1,
            refuse: 0.0,
            reset_per_chunk: 0.0,
            stall_per_chunk: 0.0,
            stall_ms: 0,
            delay_ms: 0,
            throttle_bps: 0,
            chunk: 16 * 1024,
        }
    }

    /// A hostile Wi-Fi link: frequent resets, stalls past a 2 s timeout,
    /// jitter, 256 kB/s.
    pub fn hostile(seed: u64) -> Self {
        Self {
            seed,
            refuse: 0.05,
            reset_per_chunk: 0.03,
            stall_per_chunk: 0.01,
            stall_ms: 2_500,
            delay_ms: 4,
            throttle_bps: 256 * 1024,
            chunk: 256,
        }
    }
}

/// What the proxy did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyCounts {
    /// Connections accepted.
    pub connections: u64,
    /// Connections refused on accept.
    pub refused: u64,
    /// Connections reset mid-stream.
    pub resets: u64,
    /// Stalls injected.
    pub stalls: u64,
    /// Bytes forwarded client → server.
    pub bytes_up: u64,
    /// Bytes forwarded server → client.
    pub bytes_down: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    refused: AtomicU64,
    resets: AtomicU64,
    stalls: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A running proxy; dropping it stops it.
pub struct Proxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    enabled: Arc<AtomicBool>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

/// Small xorshift RNG.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr, faults: Faults) -> std::io::Result<Proxy> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let enabled = Arc::new(AtomicBool::new(true));
        let (tx, rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let c = counters.clone();
        let en = enabled.clone();
        let thread = std::thread::Builder::new()
            .name("torture-proxy".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    serve(listener, upstream, faults, c, en, rx).await;
                });
            })?;
        Ok(Proxy {
            addr,
            counters,
            enabled,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Turns fault injection on or off (the link heals / breaks again).
    pub fn set_faults(&self, on: bool) {
        self.enabled.store(on, Ordering::Release);
    }

    /// What happened so far.
    pub fn counts(&self) -> ProxyCounts {
        let c = &self.counters;
        ProxyCounts {
            connections: c.connections.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            stalls: c.stalls.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: Faults,
    counters: Arc<Counters>,
    enabled: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut n = 0u64;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((client, _)) = accepted else { continue };
        n += 1;
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let mut rng = Rng::new(faults.seed ^ n.wrapping_mul(0xA24B_AED4_963E_E407));
        let on = enabled.load(Ordering::Acquire);
        if on && rng.chance(faults.refuse) {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        let f = faults.clone();
        let c = counters.clone();
        let en = enabled.clone();
        let mut stop2 = stop.clone();
        let seed = rng.next();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(client, upstream, f, Rng::new(seed), c, en) => {}
                _ = stop2.changed() => {}
            }
        });
    }
}

/// Forwards one connection both ways, injecting faults per chunk.
async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    f: Faults,
    mut rng: Rng,
    c: Arc<Counters>,
    enabled: Arc<AtomicBool>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut cbuf = vec![0u8; f.chunk.max(1)];
    let mut sbuf = vec![0u8; f.chunk.max(1)];
    let (mut client_eof, mut server_eof) = (false, false);
    while !(client_eof && server_eof) {
        // (bytes, upward?)
        let (n, up) = tokio::select! {
            r = client.read(&mut cbuf), if !client_eof => match r {
                Ok(0) | Err(_) => {
                    client_eof = true;
                    let _ = server.shutdown().await;
                    continue;
                }
                Ok(n) => (n, true),
            },
            r = server.read(&mut sbuf), if !server_eof => match r {
                Ok(0) | Err(_) => {
                    server_eof = true;
                    let _ = client.shutdown().await;
                    continue;
                }
                Ok(n) => (n, false),
            },
        };
        let (data, to) = if up {
            (&cbuf[..n], &mut server)
        } else {
            (&sbuf[..n], &mut client)
        };
        if enabled.load(Ordering::Acquire) {
            if rng.chance(f.reset_per_chunk) {
                c.resets.fetch_add(1, Ordering::Relaxed);
                // Forward part of the chunk, then RST both sides.
                let part = rng.below(n as u64) as usize;
                let _ = to.write_all(&data[..part]).await;
                let _ = client.set_zero_linger();
                let _ = server.set_zero_linger();
                return;
            }
            if rng.chance(f.stall_per_chunk) {
                c.stalls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(f.stall_ms)).await;
            }
            let mut wait_us = 0u64;
            if f.delay_ms > 0 {
                wait_us += rng.below(f.delay_ms * 1000 + 1);
            }
            wait_us += (n as u64 * 1_000_000)
                .checked_div(f.throttle_bps)
                .unwrap_or(0);
            if wait_us > 0 {
                tokio::time::sleep(Duration::from_micros(wait_us)).await;
            }
        }
        if to.write_all(data).await.is_err() {
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
            return;
        }
        let ctr = if up { &c.bytes_up } else { &c.bytes_down };
        ctr.fetch_add(n as u64, Ordering::Relaxed);
    }
}
