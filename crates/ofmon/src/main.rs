//! The `ofmon` binary: a thin command line over the library crates.
//!
//! Only this crate knows about terminals, exit codes and output formats; the
//! logic lives in `metering`, `store`, `device`, `collector` and friends.

mod capture;
mod collect_cmd;
mod meter_cmd;
mod ota_cmd;
mod tb_cmd;
mod tb_names;
mod ui_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// OFMon: offline-first energy monitoring.
#[derive(Parser)]
#[command(name = "ofmon", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the metering engine on a recorded ADC capture (CSV) and print one
    /// JSON line per interval.
    Meter(meter_cmd::MeterArgs),
    /// Run virtual devices (the real device core on emulated flash) on loopback.
    Sim(sim::cli::SimArgs),
    /// List known devices and devices in reach.
    Devices(collect_cmd::DevicesArgs),
    /// Pair a device: ThingsBoard token, device secret, clock.
    Pair(collect_cmd::PairArgs),
    /// Collect new records from one device or all devices in reach into SQLite.
    Collect(collect_cmd::CollectArgs),
    /// Delete local records measured before a date.
    Prune(collect_cmd::PruneArgs),
    /// Export stored records as CSV or JSON (one row per record and CT).
    Export(collect_cmd::ExportArgs),
    /// Send collected records to ThingsBoard (HTTP, MQTT or gateway API).
    Sync(tb_cmd::SyncArgs),
    /// Serve a ThingsBoard mock (device API + REST subset) for demos and tests.
    TbMock(tb_cmd::TbMockArgs),
    /// Create a firmware signing key (or show its public key).
    FirmwareKey(ota_cmd::FirmwareKeyArgs),
    /// Sign a firmware image for OTA (manifest + ed25519 signature).
    #[command(disable_version_flag = true)]
    SignFirmware(ota_cmd::SignArgs),
    /// Upload a signed firmware image to a device, with progress.
    Ota(ota_cmd::OtaArgs),
    /// Serve the dashboard (fleet, charts, actions) over the collector's database.
    Ui(ui_cmd::UiArgs),
    /// Run the whole system on embedded defaults: simulated fleet,
    /// collection, SQLite, ThingsBoard mock, dashboard.
    Demo(ui_cmd::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Meter(args) => meter_cmd::run(&args),
        Command::Devices(args) => collect_cmd::devices(&args),
        Command::Pair(args) => collect_cmd::pair(&args),
        Command::Collect(args) => collect_cmd::collect(&args),
        Command::Prune(args) => collect_cmd::prune(&args),
        Command::Export(args) => collect_cmd::export(&args),
        Command::Sync(args) => tb_cmd::sync(&args),
        Command::TbMock(args) => tb_cmd::tb_mock(&args),
        Command::FirmwareKey(args) => ota_cmd::firmware_key(&args),
        Command::SignFirmware(args) => ota_cmd::sign_firmware(&args),
        Command::Ota(args) => ota_cmd::ota(&args),
        Command::Sim(args) => sim::cli::run(&args),
        Command::Ui(args) => ui_cmd::ui(&args),
        Command::Demo(args) => ui_cmd::demo(&args),
    }
}
