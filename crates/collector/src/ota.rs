//! Firmware updates over the air, collector side: check a signed upload
//! (from `ofmon sign-firmware`) against a device, stream it to
//! `POST /api/v1/ota` with a signed request, and wait for the device to come
//! back running it (or to roll back).
//!
//! Used by `ofmon ota` and the dashboard's firmware upload. The device does
//! the real checks (signature, board, downgrade, length); the checks here
//! only avoid sending an upload that the device would refuse anyway.

use std::time::{Duration, Instant};

use protocol::api::Info;
use protocol::firmware::{FirmwareVersion, MANIFEST_LEN, Manifest};

use crate::Error;
use crate::client::{DeviceApi, HttpDevice};

/// Reads the manifest of a signed upload (unverified: the device verifies)
/// and checks that the file has the length the manifest announces.
pub fn check_upload(body: &[u8]) -> Result<Manifest, Error> {
    let (m, _) = Manifest::decode_unverified(body).map_err(|e| {
        Error::BadInput(format!(
            "not a signed firmware upload ({e}); make one with `ofmon sign-firmware`"
        ))
    })?;
    let want = MANIFEST_LEN as u64 + u64::from(m.image_size);
    if body.len() as u64 != want {
        return Err(Error::BadInput(format!(
            "the upload is {} bytes but its manifest announces {} + {MANIFEST_LEN}; the file is damaged",
            body.len(),
            m.image_size
        )));
    }
    Ok(m)
}

/// Why `device` would refuse `manifest` (another board, not newer), if it would.
pub fn unsuitable(info: &Info, manifest: &Manifest) -> Option<String> {
    if manifest.board.as_str() != info.board {
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
    }
}

/// What [`update`] reports while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// This many bytes of the upload are sent.
    Sent(u64),
    /// The device accepted the whole upload and is rebooting into it.
    Accepted,
}

/// How an update ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The device accepted the upload; not waited for the reboot.
    Accepted,
    /// The device came back running the new version.
    Running(FirmwareVersion),
}

/// Waits up to `wait` for the device (whose `before` info was read before
/// the upload) to run `version`: the device reboots, self-tests the new
/// image and confirms it, or rolls back to the old one.
pub fn wait_for_version(
    dev: &HttpDevice,
    before: &Info,
    version: FirmwareVersion,
    wait: Duration,
) -> Result<Outcome, Error> {
    let deadline = Instant::now() + wait;
    std::thread::sleep(Duration::from_millis(200));
    while Instant::now() < deadline {
        if let Ok(i) = dev.info() {
            if i.firmware == version {
                return Ok(Outcome::Running(i.firmware));
            }
            if i.boot_id != before.boot_id {
                return Err(Error::Transport(format!(
                    "device {} came back with firmware {}, not {version}: the new image failed \
                     its self-test and was rolled back",
                    before.id, i.firmware
                )));
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(Error::Transport(format!(
        "device {} did not come back within {} s; check it with `ofmon devices`",
        before.id,
        wait.as_secs()
    )))
}

/// Sends `body` (a signed upload) to a paired device and, unless `wait` is
/// zero, waits for it to run the new version. `force` sends an upload the
/// device will refuse (for testing the refusal); `progress` follows it.
pub fn update(
    dev: &HttpDevice,
    body: &[u8],
    force: bool,
    wait: Duration,
    progress: &mut dyn FnMut(Step),
) -> Result<Outcome, Error> {
    let manifest = check_upload(body).or_else(|e| {
        if force {
            Manifest::decode_unverified(body)
                .map(|(m, _)| m)
                .map_err(|_| e)
        } else {
            Err(e)
        }
    })?;
    let info = dev.info()?;
    if !info.paired {
        return Err(Error::Config(format!(
            "{} is not paired; pair it first (`ofmon pair {} --token ...`)",
            info.id, info.id
        )));
    }
    if let Some(p) = unsuitable(&info, &manifest)
        && !force
    {
        return Err(Error::Config(format!(
            "{p}; nothing sent (--force sends it anyway)"
        )));
    }
    dev.upload_firmware(body, &mut |n| progress(Step::Sent(n)))
        .map_err(|e| match e {
            Error::Transport(t) if t.contains("stale") => Error::Transport(format!(
                "{t}: the device accepted newer timestamps before its last reboot and its clock \
             is not set (a simulator at --speed > 1 whose fast clock a collector followed); it \
             accepts requests again once our clock passes that point"
            )),
            Error::Transport(t) => Error::Transport(format!(
                "device {} refused firmware {}: {t}",
                info.id, manifest.version
            )),
            other => other,
        })?;
    progress(Step::Accepted);
    if wait.is_zero() {
        return Ok(Outcome::Accepted);
    }
    wait_for_version(dev, &info, manifest.version, wait)
}
