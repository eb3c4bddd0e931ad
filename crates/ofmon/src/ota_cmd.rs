//! `ofmon firmware-key`, `ofmon sign-firmware`, `ofmon ota`: signed firmware
//! updates from the operator's machine.
//!
//! The formats and checks live in `protocol::firmware` (manifest, ed25519)
//! and `protocol::auth` (request signature); device resolution and the home
//! directory in `collector`. This file only reads files, talks HTTP and
//! draws the progress bar.
//!
//! The upload is a single signed `POST /api/v1/ota` whose body is streamed
//! with an explicit `Content-Length` (the device refuses a short body as
//! truncated). The collector's `HttpDevice` has no streamed upload, so the
//! request is made here with the same signing rules (see `request_stamp`).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use collector::client::{DeviceApi, HttpDevice};
use collector::discovery::{
    Discovery, KnownDevice, NmcliDiscovery, SimDiscovery, StaticDiscovery, resolve,
};
use collector::home::{Home, SIM_FILE, STATIC_FILE};
use indicatif::{ProgressBar, ProgressStyle};
use protocol::api::{ClockState, Info};
use protocol::firmware::{FirmwareSigningKey, FirmwareVersion, MANIFEST_LEN, Manifest};
use protocol::{ApiKey, Mac, auth};

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

/// A request timestamp the device accepts: ours, or the device's own clock
/// when it is set and far from ours (as `collector::client` does).
fn request_stamp(info: &Info, before_ms: i64, after_ms: i64) -> u64 {
    let mid = before_ms + (after_ms - before_ms) / 2;
    let offset = match info.clock {
        ClockState::Set { now_ms, .. } => {
            let off = i64::try_from(now_ms).unwrap_or(i64::MAX / 2) - mid;
            if off.abs() > 60_000 { off } else { 0 }
        }
        ClockState::Unset => 0,
    };
    u64::try_from(collector::now_ms().saturating_add(offset)).unwrap_or(0)
}

/// Counts bytes as ureq reads the body.
struct Counting<'a> {
    data: &'a [u8],
    pos: usize,
    bar: &'a ProgressBar,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.pos).min(16 * 1024);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        self.bar.set_position(self.pos as u64);
        Ok(n)
    }
}

/// Streams a signed `POST /api/v1/ota`; returns the status and body text.
pub fn upload(
    base: &str,
    key: &ApiKey,
    timestamp_ms: u64,
    body: &[u8],
    bar: &ProgressBar,
) -> Result<(u16, String)> {
    let path = "/api/v1/ota";
    let mut nonce = [0u8; auth::NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| anyhow!("OS random generator: {e}"))?;
    let authz = auth::sign(key, "POST", path, body, timestamp_ms, nonce).to_header_value();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut reader = Counting {
        data: body,
        pos: 0,
        bar,
    };
    let mut resp = agent
        .post(&url)
        .header(auth::AUTH_HEADER, &authz)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", body.len().to_string())
        .send(ureq::SendBody::from_reader(&mut reader))
        .map_err(|e| anyhow!("POST {url}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let reason = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("message"))
                .and_then(|e| e.as_str())
                .map(str::to_string)
        })
        .unwrap_or(text);
    Ok((status, reason))
}

fn ota_inner(args: &OtaArgs) -> Result<ExitCode> {
    let body = std::fs::read(&args.upload)
        .with_context(|| format!("reading {}", args.upload.display()))?;
    let (manifest, _) = Manifest::decode_unverified(&body).map_err(|e| {
        anyhow!(
            "{}: {e}; make an upload with `ofmon sign-firmware`",
            args.upload.display()
        )
    })?;
    if body.len() != MANIFEST_LEN + manifest.image_size as usize && !args.force {
        bail!(
            "{}: {} bytes, but the manifest announces {} + {MANIFEST_LEN}; the file is damaged",
            args.upload.display(),
            body.len(),
            manifest.image_size
        );
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
    let result = ota_to(args, &fleet, &url, &body, &manifest);
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
    manifest: &Manifest,
) -> Result<ExitCode> {
    let dev = HttpDevice::new(url, None, Duration::from_secs(30));
    let before = collector::now_ms();
    let info = dev.info()?;
    let after = collector::now_ms();
    let mac = Mac::parse(&info.id).map_err(|e| anyhow!("device id {:?}: {e}", info.id))?;
    if !info.paired {
        bail!(
            "{} is not paired; pair it first (`ofmon pair {} --token ...`)",
            info.id,
            info.id
        );
    }
    let problem = if manifest.board.as_str() != info.board {
        Some(format!(
            "the upload is for board {}, the device is {}",
            manifest.board, info.board
        ))
    } else if manifest.version <= info.firmware {
        Some(format!(
            "the upload is version {}, the device runs {} (only newer versions are accepted)",
            manifest.version, info.firmware
        ))
    } else {
        None
    };
    if let Some(p) = &problem {
        if !args.force {
            bail!("{p}; nothing sent (--force sends it anyway)");
        }
        eprintln!("warning: {p}; sending anyway (--force)");
    }
    let key = fleet.device_keys(&mac).api_key;
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
    let stamp = request_stamp(&info, before, after);
    let (status, reason) = upload(url, &key, stamp, body, &bar)?;
    bar.finish_and_clear();
    if status == 401 && reason.contains("stale") {
        bail!(
            "device {} refused the request as stale ({reason}): it accepted newer timestamps \
             before its last reboot and its clock is not set (a simulator at --speed > 1 whose \
             fast clock a collector followed); it accepts requests again once our clock passes \
             that point",
            info.id
        );
    }
    if status != 200 {
        bail!(
            "device {} refused firmware {} (HTTP {status}): {reason}",
            info.id,
            manifest.version
        );
    }
    println!(
        "{}: firmware {} accepted ({} bytes); the device reboots into it",
        info.id,
        manifest.version,
        body.len()
    );
    if args.wait == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    // The device reboots, runs the new image's self-test and confirms it, or
    // rolls back to the old one.
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut last = None;
    std::thread::sleep(Duration::from_millis(200));
    while Instant::now() < deadline {
        if let Ok(i) = dev.info() {
            if i.firmware == manifest.version {
                println!("{}: now running firmware {}", i.id, i.firmware);
                return Ok(ExitCode::SUCCESS);
            }
            if i.boot_id != info.boot_id {
                // Rebooted, but not into the new image: rolled back.
                last = Some(i.firmware);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    match last {
        Some(v) => bail!(
            "device {} came back with firmware {v}, not {}: the new image failed its self-test and was rolled back",
            info.id,
            manifest.version
        ),
        None => bail!(
            "device {} did not come back within {} s; check it with `ofmon devices`",
            info.id,
            args.wait
        ),
    }
}
