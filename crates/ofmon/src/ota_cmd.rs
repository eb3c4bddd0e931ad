//! `ofmon firmware-key`, `ofmon sign-firmware`, `ofmon ota`: signed firmware
//! updates from the operator's machine.
//!
//! The formats and checks live in `protocol::firmware` (manifest, ed25519)
//! and `protocol::auth` (request signature); device resolution and the home
//! directory in `collector`. This file only reads files, talks HTTP and
//! draws the progress bar.
//!
//! The upload itself (checks, streamed signed `POST /api/v1/ota`, waiting
//! for the reboot) is `collector::ota`, shared with the dashboard.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use collector::client::{DeviceApi, HttpDevice};
use collector::discovery::{
    Discovery, KnownDevice, NmcliDiscovery, SimDiscovery, StaticDiscovery, resolve,
};
use collector::home::{Home, SIM_FILE, STATIC_FILE};
use collector::ota::{Outcome, Step};
use indicatif::{ProgressBar, ProgressStyle};
use protocol::Mac;
use protocol::firmware::{FirmwareSigningKey, FirmwareVersion, Manifest};

/// `ofmon firmware-key`.
#[derive(Args, Debug)]
pub struct FirmwareKeyArgs {
    /// Create a new signing key in this file (refuses to overwrite).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "key",
        required_unless_present = "key"
    )]
    output: Option<PathBuf>,
    /// Print the public key of this existing signing key file instead.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

/// `ofmon sign-firmware`.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// The signing key file (64 hex digits, from `ofmon firmware-key`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The application image (e.g. from `espflash save-image`).
    #[arg(long, value_name = "FILE")]
    image: PathBuf,
    /// Firmware version of the image, MAJOR.MINOR.PATCH.
    #[arg(long)]
    version: FirmwareVersion,
    /// Board the image is built for.
    #[arg(long, default_value = "esp32c3")]
    board: String,
    /// Write the signed upload here (default: stdout, not a terminal).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `ofmon ota`.
#[derive(Args, Debug)]
pub struct OtaArgs {
    /// Home directory (fleet.key, sim-devices.json, database).
    /// Default: $OFMON_HOME, else the platform data directory.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// The device: URL, SSID or device id.
    device: String,
    /// The signed upload (from `ofmon sign-firmware`).
    upload: PathBuf,
    /// Send even if the manifest's board or version does not suit the
    /// device (it will refuse it; for testing the refusal).
    #[arg(long)]
    force: bool,
    /// Seconds to wait for the device to come back with the new version
    /// (0: do not wait).
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

fn report(r: Result<ExitCode>) -> ExitCode {
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to a new file, mode 0600 on Unix; refuses an existing file.
fn write_new_private(path: &Path, text: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a signing key file: 64 hex digits (surrounding whitespace ignored).
pub fn read_signing_key(path: &Path) -> Result<FirmwareSigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the signing key {}", path.display()))?;
    let seed = protocol::hex::decode_array::<32>(text.trim()).map_err(|_| {
        anyhow!(
            "{}: a signing key is 64 hex digits (create one with `ofmon firmware-key --output FILE`)",
            path.display()
        )
    })?;
    Ok(FirmwareSigningKey::from_seed(&seed))
}

/// Runs `ofmon firmware-key`: prints the public key (hex) on stdout.
pub fn firmware_key(args: &FirmwareKeyArgs) -> ExitCode {
    report(firmware_key_inner(args))
}

fn firmware_key_inner(args: &FirmwareKeyArgs) -> Result<ExitCode> {
    let key = match (&args.output, &args.key) {
        (Some(out), _) => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow!("OS random generator: {e}"))?;
            let key = FirmwareSigningKey::from_seed(&seed);
            write_new_private(out, &protocol::hex::encode(&seed))?;
            eprintln!(
                "created {}: keep it secret and off the devices; build the firmware with \
                 OFMON_FIRMWARE_PUBKEY=<the public key below>",
                out.display()
            );
            key
        }
        (None, Some(k)) => read_signing_key(k)?,
        (None, None) => bail!("pass --output FILE (new key) or --key FILE (show public key)"),
    };
    println!("{}", key.public_key().to_hex());
    Ok(ExitCode::SUCCESS)
}

/// Runs `ofmon sign-firmware`.
pub fn sign_firmware(args: &SignArgs) -> ExitCode {
    report(sign_inner(args))
}

fn sign_inner(args: &SignArgs) -> Result<ExitCode> {
    let key = read_signing_key(&args.key)?;
    let image = std::fs::read(&args.image)
        .with_context(|| format!("reading the image {}", args.image.display()))?;
    if image.is_empty() {
        bail!("{} is empty", args.image.display());
    }
    let upload = key
        .sign_image(&image, args.version, &args.board)
        .map_err(|e| anyhow!("{e} (board: 1-12 of [a-z0-9_-]; image at most 4 GiB)"))?;
    match &args.output {
        Some(out) => {
            std::fs::write(out, &upload).with_context(|| format!("writing {}", out.display()))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            if stdout.is_terminal() {
                bail!("the signed upload is binary: pass --output FILE or redirect stdout");
            }
            stdout.write_all(&upload).context("writing stdout")?;
            stdout.flush().context("writing stdout")?;
        }
    }
    let (m, _) = Manifest::decode_unverified(&upload).map_err(|e| anyhow!("{e}"))?;
    eprintln!(
        "signed firmware {} for {}: {} bytes, image sha256 {}, public key {}",
        m.version,
        m.board,
        m.image_size,
        protocol::hex::encode(&m.image_sha256),
        key.public_key().to_hex()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `ofmon ota`.
pub fn ota(args: &OtaArgs) -> ExitCode {
    report(ota_inner(args))
}

fn backends(home: &Home) -> Vec<Box<dyn Discovery>> {
    vec![
        Box::new(SimDiscovery {
            path: home.file(SIM_FILE),
        }),
        Box::new(StaticDiscovery::from_file(
            home.file(STATIC_FILE),
            Vec::new(),
        )),
        Box::new(NmcliDiscovery::new(home.fleet_key().ok())),
    ]
}

fn ota_inner(args: &OtaArgs) -> Result<ExitCode> {
    let body = std::fs::read(&args.upload)
        .with_context(|| format!("reading {}", args.upload.display()))?;
    if let Err(e) = collector::ota::check_upload(&body)
        && (!args.force || Manifest::decode_unverified(&body).is_err())
    {
        bail!("{}: {e}", args.upload.display());
    }

    let home = Home::resolve(args.home.as_deref())?;
    let fleet = home.fleet_key()?;
    let known: Vec<KnownDevice> = match home.db() {
        Ok(db) => db
            .devices()?
            .into_iter()
            .map(|d| (d.id, d.ssid, d.url))
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut bs = backends(&home);
    let (found, join) = resolve(&args.device, &mut bs, &known)?;
    let url = match join {
        Some(i) => bs[i].join(&found)?,
        None => found
            .url
            .clone()
            .ok_or_else(|| anyhow!("no URL for device {}", args.device))?,
    };
    let result = ota_to(args, &fleet, &url, &body);
    if let Some(i) = join {
        bs[i].leave()?;
    }
    result
}

fn ota_to(
    args: &OtaArgs,
    fleet: &protocol::FleetSecret,
    url: &str,
    body: &[u8],
) -> Result<ExitCode> {
    let mut dev = HttpDevice::new(url, None, Duration::from_secs(30));
    let info = dev.info()?;
    let mac = Mac::parse(&info.id).map_err(|e| anyhow!("device id {:?}: {e}", info.id))?;
    dev.set_key(fleet.device_keys(&mac).api_key);
    // A slow access point may need minutes for a megabyte.
    dev.set_timeout(Duration::from_secs(300));
    if let Ok(m) = collector::ota::check_upload(body)
        && let Some(p) = collector::ota::unsuitable(&info, &m)
        && args.force
    {
        eprintln!("warning: {p}; sending anyway (--force)");
    }
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(body.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(info.id.clone());
    let version = Manifest::decode_unverified(body)
        .map(|(m, _)| m.version.to_string())
        .unwrap_or_default();
    let outcome = collector::ota::update(
        &dev,
        body,
        args.force,
        Duration::from_secs(args.wait),
        &mut |step| match step {
            Step::Sent(n) => bar.set_position(n),
            Step::Accepted => {
                bar.finish_and_clear();
                println!(
                    "{}: firmware {version} accepted ({} bytes); the device reboots into it",
                    info.id,
                    body.len()
                );
            }
        },
    );
    bar.finish_and_clear();
    match outcome? {
        Outcome::Accepted => {}
        Outcome::Running(v) => println!("{}: now running firmware {v}", info.id),
    }
    Ok(ExitCode::SUCCESS)
}
