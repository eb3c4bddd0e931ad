//! # sim — virtual OFMon devices on loopback
//!
//! Runs N virtual devices, each the real `device` core (the same code as the
//! firmware) on a file-backed emulated NOR flash, fed by a synthetic mains +
//! load generator ([`source`]) through the real metering engine, and served
//! by the device's own picoserve router over tokio on `127.0.0.1:(base+i)`.
//!
//! - Time: every device lives on a simulated world clock that runs `speed`
//!   times real time; `history_days` of past are pre-filled flat out first.
//!   Uptime and records come from the sample count, exactly as on the chip.
//! - Power cuts ([`SimOptions::cut_every_s`]) are injected through the
//!   emulated flash: the next program/erase is torn, the device dies, and the
//!   runner "reboots" it from what the flash holds after a random outage.
//! - kill -9 is survivable: the flash file is written through on every
//!   program/erase, and a restarted simulator continues from it.
//!
//! Entry points: [`Fleet::start`] (library, tests, `ofmon demo`) and
//! [`cli::run`] (`ofmon sim`). The fleet writes `sim-devices.json` in its
//! home for the collector's discovery and keeps the fleet secret in
//! `fleet.key` ([`home`]).
//!
//! Architecture invariants: the simulator never reaches into the device
//! core's state except through its public API and HTTP; one OS thread per
//! device, each with a current-thread tokio runtime (picoserve futures are
//! not `Send`).

pub mod cli;
pub mod firmware;
pub mod flash;
pub mod home;
mod runner;
pub mod source;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use runner::DeviceStats;
pub use source::Profile;

/// Name of the discovery file the fleet writes in its home.
pub const DEVICES_FILE: &str = "sim-devices.json";

/// Which load profile each device gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ProfileChoice {
    /// Households.
    Household,
    /// Offices and shops.
    Commercial,
    /// Households with rooftop solar.
    Solar,
    /// A mix: device i gets household, commercial, solar in turn.
    Mixed,
}

impl ProfileChoice {
    fn for_device(self, i: usize) -> Profile {
        match self {
            ProfileChoice::Household => Profile::Household,
            ProfileChoice::Commercial => Profile::Commercial,
            ProfileChoice::Solar => Profile::Solar,
            ProfileChoice::Mixed => {
                [Profile::Household, Profile::Commercial, Profile::Solar][i % 3]
            }
        }
    }
}

/// Everything a simulated fleet needs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Number of devices.
    pub devices: usize,
    /// Port of device 0; device i listens on `base_port + i` (0: free ports).
    pub base_port: u16,
    /// Home directory (flash files, `fleet.key`, `sim-devices.json`).
    pub home: PathBuf,
    /// Simulated time runs this many times faster than real time.
    pub speed: f64,
    /// Days of past to pre-fill on a fresh flash.
    pub history_days: f64,
    /// Load profile(s).
    pub profile: ProfileChoice,
    /// 1: one voltage + one CT; 3: one voltage + three CTs (virtual phases).
    pub phases: u8,
    /// Serve the original firmware's routes (and the `SEM-` SSID).
    pub legacy: bool,
    /// Mean simulated seconds between injected power cuts (±50 % jitter).
    pub cut_every_s: Option<f64>,
    /// Sample sets per second fed to the engine; default: 2400 at speed ≤ 1
    /// (the firmware's rate), 500 above (the engine's minimum).
    pub sample_rate_hz: Option<u32>,
    /// Metering interval of freshly created devices (seconds).
    pub interval_s: u32,
    /// Seed of everything random (loads, cuts, boot ids are still random).
    pub seed: u64,
    /// The ed25519 public key firmware uploads must be signed with; `None`:
    /// `HOME/firmware.pub` if it exists, else OTA is refused (501).
    pub firmware_pubkey: Option<[u8; 32]>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            devices: 1,
            base_port: 8600,
            home: PathBuf::from("."),
            speed: 1.0,
            history_days: 0.0,
            profile: ProfileChoice::Household,
            phases: 1,
            legacy: false,
            cut_every_s: None,
            sample_rate_hz: None,
            interval_s: 60,
            seed: 1,
            firmware_pubkey: None,
        }
    }
}

impl SimOptions {
    /// The sample rate in use.
    pub fn rate(&self) -> u32 {
        let r = self
            .sample_rate_hz
            .unwrap_or(if self.speed <= 1.0 { 2400 } else { 500 });
        // A whole number of samples per 50 Hz cycle, within the engine's range.
        (r / 50 * 50).clamp(500, 20_000)
    }
}

/// Why the fleet could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A device failed to start.
    #[error("device {index}: {reason}")]
    Device {
        /// Device index.
        index: usize,
        /// What went wrong.
        reason: String,
    },
    /// The options make no sense.
    #[error("invalid options: {0}")]
    Options(String),
}

impl SimError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// A running device as announced to collectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// MAC as 12 upper-case hex digits.
    pub id: String,
    /// The SSID the device announces.
    pub ssid: String,
    /// Base URL of its HTTP API.
    pub url: String,
}

struct Running {
    info: DeviceInfo,
    shared: Arc<runner::Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A running simulated fleet. Dropping it stops the devices.
pub struct Fleet {
    devices: Vec<Running>,
    stop: Arc<AtomicBool>,
    home: PathBuf,
}

/// The MAC of simulated device `i` (locally administered, stable).
pub fn sim_mac(i: usize) -> [u8; 6] {
    let i = i as u32;
    [0x02, 0x0F, 0x4D, (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

impl Fleet {
    /// Starts the fleet: binds every port first (so a busy port fails fast),
    /// then boots each device on its own thread and waits until all serve.
    pub fn start(mut opts: SimOptions) -> Result<Fleet, SimError> {
        if opts.devices == 0 {
            return Err(SimError::Options("--devices must be at least 1".into()));
        }
        if !(opts.speed.is_finite() && opts.speed > 0.0) {
            return Err(SimError::Options("--speed must be > 0".into()));
        }
        if !(opts.history_days.is_finite() && opts.history_days >= 0.0) {
            return Err(SimError::Options("--history must be >= 0".into()));
        }
        if opts.phases != 1 && opts.phases != 3 {
            return Err(SimError::Options("--phases must be 1 or 3".into()));
        }
        if opts
            .cut_every_s
            .is_some_and(|c| !(c.is_finite() && c > 0.0))
        {
            return Err(SimError::Options("--cut-every must be > 0".into()));
        }
        if usize::from(opts.base_port) + opts.devices > 65_536 {
            return Err(SimError::Options("ports beyond 65535".into()));
        }
        std::fs::create_dir_all(&opts.home)
            .map_err(|e| SimError::io(format!("creating {}", opts.home.display()), e))?;
        home::fleet_secret(&opts.home)?;
        if opts.firmware_pubkey.is_none() {
            opts.firmware_pubkey = home::firmware_pubkey(&opts.home)?;
        }

        let mut listeners = Vec::with_capacity(opts.devices);
        for i in 0..opts.devices {
            // Base port 0: every device on a free port the OS picks (tests).
            let port = if opts.base_port == 0 {
                0
            } else {
                opts.base_port + i as u16
            };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let l = TcpListener::bind(addr)
                .map_err(|e| SimError::io(format!("binding 127.0.0.1:{port}"), e))?;
            l.set_nonblocking(true)
                .map_err(|e| SimError::io("setting the listener non-blocking", e))?;
            listeners.push(l);
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut fleet = Fleet {
            devices: Vec::new(),
            stop: stop.clone(),
            home: opts.home.clone(),
        };
        let mut pending = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let port = listener
                .local_addr()
                .map_err(|e| SimError::io("reading the bound address", e))?
                .port();
            let shared = Arc::new(runner::Shared::new());
            let (tx, rx) = mpsc::channel();
            let cfg = runner::Config {
                index: i,
                mac: sim_mac(i),
                profile: opts.profile.for_device(i),
                opts: opts.clone(),
            };
            let sh = shared.clone();
            let st = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("sim-device-{i}"))
                .spawn(move || runner::device_thread(cfg, sh, listener, st, tx))
                .map_err(|e| SimError::io("spawning a device thread", e))?;
            pending.push((i, port, shared, thread, rx));
        }
        for (i, port, shared, thread, rx) in pending {
            let started = rx.recv_timeout(Duration::from_secs(60));
            let (id, ssid) = match started {
                Ok(Ok(v)) => v,
                Ok(Err(reason)) => {
                    fleet.stop_all();
                    return Err(SimError::Device { index: i, reason });
                }
                Err(_) => {
                    fleet.stop_all();
                    return Err(SimError::Device {
                        index: i,
                        reason: "did not start within 60 s".into(),
                    });
                }
            };
            fleet.devices.push(Running {
                info: DeviceInfo {
                    id,
                    ssid,
                    url: format!("http://127.0.0.1:{port}"),
                },
                shared,
                thread: Some(thread),
            });
        }
        fleet.write_devices_file()?;
        Ok(fleet)
    }

    /// The running devices, in port order.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.devices.iter().map(|d| d.info.clone()).collect()
    }

    /// Counters of device `i`.
    pub fn stats(&self, i: usize) -> Option<DeviceStats> {
        self.devices.get(i).map(|d| d.shared.stats())
    }

    /// Seqs device `i` reported committed (store append returned `Ok`),
    /// with the cumulative import energy (mWh per CT) of each.
    pub fn committed(&self, i: usize) -> Vec<(u64, [u64; 3])> {
        self.devices
            .get(i)
            .map(|d| d.shared.committed())
            .unwrap_or_default()
    }

    /// Injects a power cut into device `i` now (at its next flash write).
    pub fn cut_power(&self, i: usize) {
        if let Some(d) = self.devices.get(i) {
            d.shared.request_cut();
        }
    }

    /// Waits until every device's simulated clock has passed `sim_s`
    /// seconds of uptime-independent world time since its start, or until
    /// `timeout`. Returns whether they all got there.
    pub fn wait_sim_seconds(&self, sim_s: f64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self
                .devices
                .iter()
                .all(|d| d.shared.stats().sim_elapsed_s >= sim_s)
            {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pauses (true) or resumes (false) the sample feed of every device;
    /// HTTP keeps being served. Lets tests read a quiet device.
    pub fn pause(&self, paused: bool) {
        for d in &self.devices {
            d.shared.paused.store(paused, Ordering::Release);
        }
    }

    fn write_devices_file(&self) -> Result<(), SimError> {
        let path = self.home.join(DEVICES_FILE);
        let tmp = self.home.join(format!("{DEVICES_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(&self.devices())
            .map_err(|e| SimError::io("encoding the device list", std::io::Error::other(e)))?;
        std::fs::write(&tmp, json)
            .map_err(|e| SimError::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| SimError::io(format!("writing {}", path.display()), e))
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Release);
        for d in &mut self.devices {
            if let Some(t) = d.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Stops every device (the flash files keep their contents) and removes
    /// the discovery file.
    pub fn stop(mut self) {
        self.stop_all();
        let _ = std::fs::remove_file(self.home.join(DEVICES_FILE));
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Starts a fleet: the library entry point of `ofmon sim` and `ofmon demo`.
pub fn run(opts: SimOptions) -> Result<Fleet, SimError> {
    Fleet::start(opts)
}
