//! `ofmon demo`: the whole system on one machine, with no config and no
//! network.
//!
//! 1. A home: `--home DIR`, or a fresh temporary directory (removed on stop).
//! 2. A fleet secret (`fleet.key`), created by the simulator, and a
//!    firmware signing key (`firmware.key`, `firmware.pub`) the simulated
//!    devices trust, so OTA can be tried from the dashboard with uploads
//!    made by `ofmon sign-firmware --key HOME/firmware.key`.
//! 3. Three simulated devices, each the real device core on emulated flash:
//!    a single-phase household, a single-phase household with solar export,
//!    and a three-phase commercial site, with `history_days` of history
//!    metered flat out (accelerated) before they go live at real time.
//! 4. A ThingsBoard: the in-process mock (`thingsboard-mock`) with one device
//!    and token per meter, or a real server given with `--thingsboard URL
//!    --token T1 --token T2 --token T3`.
//! 5. Pairing (token + device secret + clock) and a first collect of every
//!    device into a fresh SQLite database, through the `collector` library.
//! 6. Sync to ThingsBoard ([`tbsync`]): every collected record, to the
//!    server each device was paired with; logs the counts per device.
//! 7. The dashboard, on `listen` (default `127.0.0.1:8700`).
//!
//! # Three devices from the simulator
//!
//! `sim::Fleet` gives device *i* the MAC `02:0F:4D:00:00:i` and one phase
//! count for the whole fleet, so three distinct devices with a three-phase
//! one among them need two fleets: fleet A (single-phase, profiles
//! household/commercial/solar by index) provides indices 0 and 2, fleet B
//! (three-phase commercial) provides index 1. The two devices whose MACs
//! would collide (A1, B0) run but are never paired or collected. Each fleet
//! has its own directory (flash files) and a copy of the one fleet key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use collector::Db;
use collector::client::HttpDevice;
use collector::collect::{NoProgress, Options};
use collector::pair::PairOptions;
use protocol::Mac;
use sim::{Fleet, ProfileChoice, SimOptions};

use crate::Error;
use crate::actions::DEVICE_TIMEOUT;
use crate::server::{Server, ServerOptions};

/// Where the demo syncs to.
#[derive(Clone, Debug)]
pub enum ThingsBoard {
    /// The in-process mock, on a free loopback port.
    Mock,
    /// A real server with one device access token per demo device.
    Real {
        /// Base URL (`https://...`).
        url: String,
        /// Access tokens, in device order (household, solar, commercial).
        tokens: Vec<String>,
    },
}

/// What `ofmon demo` runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Home directory; `None`: a temporary directory removed on stop.
    pub home: Option<PathBuf>,
    /// Dashboard address.
    pub listen: SocketAddr,
    /// Days of history to meter before going live.
    pub history_days: f64,
    /// Cut the power of each device once or twice during its history (boot
    /// and power-loss events, gaps, time reconstruction to look at). Cuts
    /// happen only in the history, so the live devices stay reachable.
    pub power_cuts: bool,
    /// The ThingsBoard to sync to.
    pub thingsboard: ThingsBoard,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            home: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            history_days: 7.0,
            power_cuts: true,
            thingsboard: ThingsBoard::Mock,
        }
    }
}

/// One demo device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DemoDevice {
    /// Device id.
    pub id: String,
    /// SSID.
    pub ssid: String,
    /// Its API URL on loopback.
    pub url: String,
    /// What it simulates.
    pub role: &'static str,
    /// ThingsBoard device name.
    pub tb_name: String,
    /// Records collected at start-up.
    pub collected: u64,
}

/// Start-up timings, seconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timings {
    /// Metering the history (all simulated devices in parallel).
    pub history_s: f64,
    /// Pairing the three devices.
    pub pair_s: f64,
    /// Collecting them.
    pub collect_s: f64,
    /// Syncing them to ThingsBoard.
    pub sync_s: f64,
    /// Whole start-up.
    pub total_s: f64,
}

/// A running demo. [`Demo::stop`] (or drop) stops everything and removes a
/// temporary home.
pub struct Demo {
    server: Option<Server>,
    fleets: Vec<Fleet>,
    mock: Option<thingsboard_mock::MockServer>,
    temp: Option<tempfile::TempDir>,
    home: PathBuf,
    /// The three devices.
    pub devices: Vec<DemoDevice>,
    /// How long start-up took.
    pub timings: Timings,
}

struct Role {
    role: &'static str,
    fleet: usize,
    index: usize,
    tb_name: &'static str,
    /// Fractions of the history at which its power is cut.
    cuts: &'static [f64],
}

const ROLES: [Role; 3] = [
    Role {
        role: "single-phase household",
        fleet: 0,
        index: 0,
        tb_name: "Demo household",
        cuts: &[0.45],
    },
    Role {
        role: "single-phase household with solar export",
        fleet: 0,
        index: 2,
        tb_name: "Demo solar home",
        cuts: &[0.3, 0.8],
    },
    Role {
        role: "three-phase commercial",
        fleet: 1,
        index: 1,
        tb_name: "Demo shop (3-phase)",
        cuts: &[0.6],
    },
];

fn copy_key(home: &Path, dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let from = home.join(sim::home::FLEET_KEY);
    let to = dir.join(sim::home::FLEET_KEY);
    if !to.exists() {
        std::fs::copy(&from, &to)
            .map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
    }
    Ok(())
}

/// File of the demo's firmware signing key in its home (64 hex digits,
/// for `ofmon sign-firmware --key`).
pub const FIRMWARE_KEY_FILE: &str = "firmware.key";

/// The firmware public key the demo's devices trust: `home/firmware.pub` if
/// there is one, else a new signing key written to `home/firmware.key`
/// (mode 0600) whose public key goes to `home/firmware.pub`.
fn demo_firmware_key(home: &Path) -> Result<[u8; 32], Error> {
    if let Some(k) = sim::home::firmware_pubkey(home)? {
        return Ok(k);
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| Error::BadRequest(format!("no OS random generator: {e}")))?;
    let key = protocol::firmware::FirmwareSigningKey::from_seed(&seed);
    let path = home.join(FIRMWARE_KEY_FILE);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    std::io::Write::write_all(
        &mut f,
        format!("{}\n", protocol::hex::encode(&seed)).as_bytes(),
    )
    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    let public = key.public_key();
    let pub_path = home.join(sim::firmware::PUBKEY_FILE);
    std::fs::write(&pub_path, format!("{}\n", public.to_hex()))
        .map_err(|e| Error::io(format!("writing {}", pub_path.display()), e))?;
    Ok(public.to_bytes())
}

impl Demo {
    /// Starts the demo; `log` gets one line per step.
    pub fn start(opts: DemoOptions, log: &dyn Fn(&str)) -> Result<Demo, Error> {
        let t0 = Instant::now();
        if let ThingsBoard::Real { tokens, .. } = &opts.thingsboard
            && tokens.len() != ROLES.len()
        {
            return Err(Error::BadRequest(format!(
                "--thingsboard needs {} --token values (household, solar, commercial), got {}",
                ROLES.len(),
                tokens.len()
            )));
        }
        let (temp, home) = match &opts.home {
            Some(h) => (None, h.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("ofmon-demo-")
                    .tempdir()
                    .map_err(|e| Error::io("creating a temporary home", e))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        std::fs::create_dir_all(&home)
            .map_err(|e| Error::io(format!("creating {}", home.display()), e))?;
        log(&format!("home {}", home.display()));
        let fleet_secret = sim::home::fleet_secret(&home)?;
        let firmware_pubkey = demo_firmware_key(&home)?;

        let mut demo = Demo {
            server: None,
            fleets: Vec::new(),
            mock: None,
            temp,
            home: home.clone(),
            devices: Vec::new(),
            timings: Timings::default(),
        };

        // ---- simulated devices
        let base = SimOptions {
            base_port: 0,
            speed: 1.0,
            history_days: opts.history_days,
            // 500 sample sets/s (the engine's minimum) keeps a week of history quick.
            sample_rate_hz: Some(500),
            interval_s: 60,
            firmware_pubkey: Some(firmware_pubkey),
            ..SimOptions::default()
        };
        let specs = [
            (home.join("sim-1phase"), 3, ProfileChoice::Mixed, 1u8),
            (home.join("sim-3phase"), 2, ProfileChoice::Commercial, 3u8),
        ];
        log(&format!(
            "starting simulated devices and metering {:.1} days of history (accelerated)...",
            opts.history_days
        ));
        let th = Instant::now();
        for (dir, n, profile, phases) in specs {
            copy_key(&home, &dir)?;
            demo.fleets.push(Fleet::start(SimOptions {
                devices: n,
                home: dir,
                profile,
                phases,
                ..base.clone()
            })?);
        }
        let target_s = opts.history_days * 86_400.0;
        let mut cuts_done = [0usize; ROLES.len()];
        let mut last_log = Instant::now();
        loop {
            let mut slowest = f64::INFINITY;
            for f in &demo.fleets {
                for i in 0..f.devices().len() {
                    if let Some(s) = f.stats(i) {
                        slowest = slowest.min(s.sim_elapsed_s);
                    }
                }
            }
            if opts.power_cuts {
                for (r, done) in ROLES.iter().zip(cuts_done.iter_mut()) {
                    let f = &demo.fleets[r.fleet];
                    let at = f.stats(r.index).map_or(0.0, |s| s.sim_elapsed_s);
                    if let Some(frac) = r.cuts.get(*done)
                        && at >= frac * target_s
                    {
                        f.cut_power(r.index);
                        *done += 1;
                    }
                }
            }
            // Within a second: a device's clock moves in whole sample periods.
            if slowest >= target_s - 1.0 {
                break;
            }
            if th.elapsed() > Duration::from_secs(900) {
                return Err(Error::BadRequest(format!(
                    "the simulator metered only {:.1} of {:.1} days in 15 minutes; try --history 1",
                    slowest / 86_400.0,
                    opts.history_days
                )));
            }
            if last_log.elapsed() > Duration::from_secs(3) {
                last_log = Instant::now();
                let per: Vec<String> = demo
                    .fleets
                    .iter()
                    .flat_map(|f| (0..f.devices().len()).filter_map(|i| f.stats(i)))
                    .map(|s| {
                        format!(
                            "{:.3}/lag {:.0}s/boots {}",
                            s.sim_elapsed_s / 86_400.0,
                            s.lag_s,
                            s.boots
                        )
                    })
                    .collect();
                log(&format!(
                    "  history: {:.1} of {:.1} days metered [{}]",
                    slowest.max(0.0) / 86_400.0,
                    opts.history_days,
                    per.join(", ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        demo.timings.history_s = th.elapsed().as_secs_f64();
        log(&format!("history done in {:.1} s", demo.timings.history_s));

        // ---- ThingsBoard
        let (tb_url, tokens) = match &opts.thingsboard {
            ThingsBoard::Mock => {
                let mock = thingsboard_mock::MockServer::start().map_err(|e| {
                    Error::BadRequest(format!("starting the ThingsBoard mock: {e}"))
                })?;
                let url = mock.url();
                let tokens: Vec<String> = ROLES
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let token = format!("demo-token-{}", i + 1);
                        mock.add_device(r.tb_name, &token);
                        token
                    })
                    .collect();
                log(&format!("ThingsBoard mock at {url}"));
                demo.mock = Some(mock);
                (url, tokens)
            }
            ThingsBoard::Real { url, tokens } => (url.clone(), tokens.clone()),
        };

        // ---- pair + collect
        let mut db = Db::open(&home.join(collector::home::DB_FILE))?;
        let tp = Instant::now();
        for (r, token) in ROLES.iter().zip(&tokens) {
            let info = demo.fleets[r.fleet]
                .devices()
                .get(r.index)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("simulated device {} missing", r.index)))?;
            let mut dev = HttpDevice::new(&info.url, None, DEVICE_TIMEOUT);
            collector::pair::pair(
                &db,
                &mut dev,
                &fleet_secret,
                &PairOptions {
                    token: token.clone(),
                    name: Some(r.tb_name.to_string()),
                    profile: None,
                    server: Some(tb_url.clone()),
                },
            )?;
            demo.devices.push(DemoDevice {
                id: info.id,
                ssid: info.ssid,
                url: info.url,
                role: r.role,
                tb_name: r.tb_name.to_string(),
                collected: 0,
            });
        }
        demo.timings.pair_s = tp.elapsed().as_secs_f64();
        let tc = Instant::now();
        for d in &mut demo.devices {
            let mac = Mac::parse(&d.id)
                .map_err(|e| Error::BadRequest(format!("device id {}: {e:?}", d.id)))?;
            let key = fleet_secret.device_secret(&mac).api_key();
            let dev = HttpDevice::new(&d.url, Some(key), DEVICE_TIMEOUT);
            let s = collector::collect::collect(
                &mut db,
                &dev,
                Some(&d.url),
                &Options::default(),
                &mut NoProgress,
            );
            if let Some(e) = s.error {
                return Err(Error::BadRequest(format!("collecting {}: {e}", d.id)));
            }
            d.collected = s.new_records;
            log(&format!(
                "paired and collected {} ({}, {}): {} records, {} events in {:.2} s",
                d.ssid, d.role, d.tb_name, s.new_records, s.events, s.seconds
            ));
        }
        demo.timings.collect_s = tc.elapsed().as_secs_f64();
        drop(db);

        // ---- sync
        let ts = Instant::now();
        let report = crate::actions::run_sync(
            &home.join(collector::home::DB_FILE),
            None,
            Vec::new(),
            &mut |_| {},
        )?;
        demo.timings.sync_s = ts.elapsed().as_secs_f64();
        for d in &report.devices {
            log(&format!(
                "synced {} to ThingsBoard at {}: {} records sent, {} pending: {}",
                d.name,
                d.server.as_deref().unwrap_or(&tb_url),
                d.sent,
                d.pending,
                crate::actions::sync_status_text(&d.status)
            ));
        }
        log(&format!(
            "sync: {} records in {:.2} s",
            report.sent(),
            demo.timings.sync_s
        ));
        if matches!(opts.thingsboard, ThingsBoard::Mock) && !report.all_done() {
            return Err(Error::BadRequest(
                "syncing to the ThingsBoard mock failed (see the lines above)".into(),
            ));
        }

        // ---- dashboard
        let server = Server::start(ServerOptions {
            listen: opts.listen,
            home: home.clone(),
        })?;
        demo.server = Some(server);
        demo.timings.total_s = t0.elapsed().as_secs_f64();
        Ok(demo)
    }

    /// The dashboard URL.
    pub fn url(&self) -> String {
        self.server.as_ref().map(Server::url).unwrap_or_default()
    }

    /// The home directory in use.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Whether the home is temporary (removed on stop).
    pub fn temporary_home(&self) -> bool {
        self.temp.is_some()
    }

    /// URL of the ThingsBoard mock, when the demo runs one.
    pub fn thingsboard_mock_url(&self) -> Option<String> {
        self.mock.as_ref().map(|m| m.url())
    }

    /// The ThingsBoard mock, when the demo runs one (to read back what was
    /// synced).
    pub fn thingsboard_mock(&self) -> Option<&thingsboard_mock::MockServer> {
        self.mock.as_ref()
    }

    /// Stops the dashboard, the devices and the mock; removes a temporary home.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
        for f in self.fleets.drain(..) {
            f.stop();
        }
        self.mock = None;
        if let Some(t) = self.temp.take() {
            let _ = t.close();
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.shutdown();
    }
}
