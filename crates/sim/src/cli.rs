//! `ofmon sim`: arguments and the blocking entry point.
//!
//! The `ofmon` binary adds `Sim(sim::cli::SimArgs)` to its subcommands and
//! calls [`run`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::{Fleet, ProfileChoice, SimOptions, home};

/// Run virtual OFMon devices on loopback.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Number of virtual devices.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Port of the first device; device i listens on base-port + i.
    #[arg(long, default_value_t = 8600)]
    pub base_port: u16,
    /// Home directory (flash images, fleet.key, sim-devices.json).
    /// Default: $OFMON_HOME or the platform data directory.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Simulated time runs X times faster than real time (1440 = a day per minute).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Days of past to pre-fill at start-up (fresh devices only), as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub history: f64,
    /// Load profile.
    #[arg(long, value_enum, default_value_t = ProfileChoice::Household)]
    pub profile: ProfileChoice,
    /// 1: one voltage + one CT; 3: one voltage + three CTs on virtual phases.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub phases: u8,
    /// Serve the original firmware's legacy routes and SSID.
    #[arg(long)]
    pub legacy: bool,
    /// Inject a power cut about every SECONDS of simulated time (±50 %).
    #[arg(long, value_name = "SECONDS")]
    pub cut_every: Option<f64>,
    /// Sample sets per second fed to the metering engine
    /// (default 2400 at --speed 1, else 500).
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Metering interval of fresh devices, seconds.
    #[arg(long, default_value_t = 60)]
    pub interval: u32,
    /// ed25519 public key (64 hex digits) firmware uploads must be signed
    /// with (`ofmon firmware-key` prints it). Default: HOME/firmware.pub if
    /// present, else OTA is refused.
    #[arg(long, value_name = "HEX", value_parser = parse_pubkey)]
    pub firmware_pubkey: Option<[u8; 32]>,
}

fn parse_pubkey(s: &str) -> Result<[u8; 32], String> {
    protocol::firmware::FirmwarePublicKey::from_hex(s)
        .map(|k| k.to_bytes())
        .map_err(|e| format!("{e}: expected 64 hex digits"))
}

impl SimArgs {
    /// The library options these arguments describe.
    pub fn options(&self) -> SimOptions {
        SimOptions {
            devices: self.devices,
            base_port: self.base_port,
            home: self.home.clone().unwrap_or_else(home::default_home),
            speed: self.speed,
            history_days: self.history,
            profile: self.profile,
            phases: self.phases,
            legacy: self.legacy,
            cut_every_s: self.cut_every,
            sample_rate_hz: self.sample_rate,
            interval_s: self.interval,
            seed: 1,
            firmware_pubkey: self.firmware_pubkey,
        }
    }
}

/// `ofmon sim`: starts the fleet, prints one JSON line per device
/// (`{"id":..,"ssid":..,"url":..}`), logs progress every 10 s to stderr,
/// and stops cleanly on Ctrl-C. Exit code 0 on a clean stop, 1 if the fleet
/// could not start.
pub fn run(args: &SimArgs) -> ExitCode {
    let opts = args.options();
    let fleet = match Fleet::start(opts.clone()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ofmon sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    for d in fleet.devices() {
        match serde_json::to_string(&d) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("ofmon sim: {e}"),
        }
    }
    eprintln!(
        "ofmon sim: {} device(s) at speed {}x, {} sample sets/s; home {}; Ctrl-C to stop",
        opts.devices,
        opts.speed,
        opts.rate(),
        opts.home.display()
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ofmon sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => {
                    for (i, d) in fleet.devices().iter().enumerate() {
                        if let Some(s) = fleet.stats(i) {
                            eprintln!(
                                "{} simulated {:.1} h, {} records, {} boots, {} cuts, {:.0} sets/s, lag {:.0} s",
                                d.id,
                                s.sim_elapsed_s / 3600.0,
                                s.committed,
                                s.boots,
                                s.cuts,
                                s.samples as f64 / s.real_elapsed_s.max(1e-3),
                                s.lag_s
                            );
                        }
                    }
                }
            }
        }
    });
    eprintln!("ofmon sim: stopping");
    fleet.stop();
    ExitCode::SUCCESS
}
