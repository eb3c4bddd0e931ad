//! Firmware of the virtual devices: the OTA slot, the virtual bootloader's
//! state, and the simulator's image format.
//!
//! A virtual device runs the simulator's own build, but it keeps a
//! **firmware version** the way a chip does: an accepted upload goes into
//! the inactive slot (`sim/<ID>/ota-slot.bin`) and is activated
//! (`sim/<ID>/firmware.json`: `next = true`); on the following boot the
//! virtual bootloader boots it on trial with the version the image names,
//! the device core runs [`device::Device::self_test`], and the image is
//! marked valid (`running` = its version) or rejected (the previous version
//! boots again: rollback).
//!
//! Sim image format (what the `sim` board's manifests cover): a first line
//! `OFMON-SIM-IMAGE <major.minor.patch>` followed by anything; a first line
//! `OFMON-SIM-IMAGE <version> broken` is an image whose self-test fails (the
//! simulator's stand-in for a build that does not come up). Anything else is
//! not bootable and is rolled back at once.

use std::path::{Path, PathBuf};

use protocol::firmware::FirmwareVersion;
use serde::{Deserialize, Serialize};

/// Board name of virtual devices (their manifests must say `sim`).
pub const BOARD: &str = "sim";
/// Version of a fresh virtual device.
pub const BASE_VERSION: FirmwareVersion = FirmwareVersion::new(0, 1, 0);
/// OTA slot size (1 MiB, as on the chip).
pub const OTA_SLOT: usize = 1024 * 1024;
/// First bytes of a sim image.
pub const IMAGE_MAGIC: &str = "OFMON-SIM-IMAGE ";
/// File of the firmware public key in a sim home (64 hex digits).
pub const PUBKEY_FILE: &str = "firmware.pub";

/// A test signing seed, **for tests and demos only**: its public key is
/// [`test_public_key`]. Never use it for a real fleet.
pub const TEST_SIGNING_SEED: [u8; 32] = *b"ofmon-sim-test-firmware-key-0001";

/// The public key of [`TEST_SIGNING_SEED`].
pub fn test_public_key() -> [u8; 32] {
    protocol::firmware::FirmwareSigningKey::from_seed(&TEST_SIGNING_SEED)
        .public_key()
        .to_bytes()
}

/// A sim image of `version` padded to `len` bytes (at least the header).
/// `broken`: its self-test fails after installation.
pub fn image(version: FirmwareVersion, len: usize, broken: bool) -> Vec<u8> {
    let mut v = format!(
        "{IMAGE_MAGIC}{version}{}\n",
        if broken { " broken" } else { "" }
    )
    .into_bytes();
    let mut i = 0u32;
    while v.len() < len {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        v.push((i >> 16) as u8);
    }
    v
}

/// What a sim image says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// The version it runs as.
    pub version: FirmwareVersion,
    /// Whether its self-test fails.
    pub broken: bool,
}

/// Parses a sim image's first line; `None` if it is not one.
pub fn parse_image(bytes: &[u8]) -> Option<ImageHeader> {
    let end = bytes.iter().take(64).position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    let rest = line.strip_prefix(IMAGE_MAGIC)?;
    let (v, broken) = match rest.split_once(' ') {
        Some((v, "broken")) => (v, true),
        Some(_) => return None,
        None => (rest, false),
    };
    Some(ImageHeader {
        version: v.parse().ok()?,
        broken,
    })
}

/// The virtual bootloader's state (`firmware.json` in the device directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    /// The confirmed (valid) version.
    pub running: FirmwareVersion,
    /// An activated image waits in the slot for its trial boot.
    pub next: bool,
    /// Images rolled back so far.
    #[serde(default)]
    pub rollbacks: u32,
}

impl Default for BootState {
    fn default() -> Self {
        Self {
            running: BASE_VERSION,
            next: false,
            rollbacks: 0,
        }
    }
}

/// Files of one device's firmware.
#[derive(Debug, Clone)]
pub struct FirmwareFiles {
    dir: PathBuf,
}

impl FirmwareFiles {
    /// The firmware files in device directory `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("firmware.json")
    }

    fn slot_path(&self) -> PathBuf {
        self.dir.join("ota-slot.bin")
    }

    /// Reads the boot state (default for a fresh device or an unreadable file).
    pub fn state(&self) -> BootState {
        std::fs::read(self.state_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the boot state atomically (temp file + rename).
    pub fn set_state(&self, st: &BootState) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(st).map_err(std::io::Error::other)?;
        write_atomic(&self.state_path(), &json)
    }

    /// The header of the image in the slot, if the slot holds a sim image.
    pub fn slot_image(&self) -> Option<ImageHeader> {
        std::fs::read(self.slot_path())
            .ok()
            .and_then(|b| parse_image(&b))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The inactive OTA slot of a virtual device: collects the image in RAM
/// (sequential writes only, as the trait promises) and on `activate` writes
/// it to `ota-slot.bin` and marks it for the next boot.
#[derive(Debug)]
pub struct SimOta {
    files: FirmwareFiles,
    image: Vec<u8>,
    expected: usize,
}

impl SimOta {
    /// The slot of the device whose files are in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            files: FirmwareFiles::new(dir),
            image: Vec::new(),
            expected: 0,
        }
    }
}

impl device::platform::OtaSlot for SimOta {
    type Error = String;
    fn capacity(&self) -> usize {
        OTA_SLOT
    }
    fn begin(&mut self, len: usize) -> Result<(), Self::Error> {
        if len > OTA_SLOT {
            return Err("image larger than the slot".into());
        }
        self.image.clear();
        self.expected = len;
        Ok(())
    }
    fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), Self::Error> {
        if offset != self.image.len() || offset + data.len() > self.expected {
            return Err(format!(
                "write at {offset} (+{}) is not the next {} of {}",
                data.len(),
                self.image.len(),
                self.expected
            ));
        }
        self.image.extend_from_slice(data);
        Ok(())
    }
    fn activate(&mut self) -> Result<(), Self::Error> {
        if self.image.len() != self.expected {
            return Err("image incomplete".into());
        }
        write_atomic(&self.files.slot_path(), &self.image).map_err(|e| e.to_string())?;
        let mut st = self.files.state();
        st.next = true;
        self.files.set_state(&st).map_err(|e| e.to_string())?;
        self.image = Vec::new();
        Ok(())
    }
    fn abort(&mut self) {
        self.image = Vec::new();
        self.expected = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use device::platform::OtaSlot;

    #[test]
    fn image_header_round_trip() {
        let v = FirmwareVersion::new(1, 2, 3);
        let img = image(v, 500, false);
        assert_eq!(img.len(), 500);
        assert_eq!(
            parse_image(&img),
            Some(ImageHeader {
                version: v,
                broken: false
            })
        );
        assert!(parse_image(&image(v, 10, true)).unwrap().broken);
        assert_eq!(parse_image(b"OFMON-SIM-IMAGE 1.2\n"), None);
        assert_eq!(parse_image(b"OFMON-SIM-IMAGE 1.2.3 fast\n"), None);
        assert_eq!(parse_image(b"\xe9esp32 image"), None);
        assert_eq!(parse_image(b""), None);
    }

    #[test]
    fn slot_takes_sequential_writes_and_activates_to_disk() {
        let dir = std::env::temp_dir().join(format!("ofmon-sim-ota-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = FirmwareFiles::new(&dir);
        let mut slot = SimOta::new(&dir);
        let img = image(FirmwareVersion::new(0, 2, 0), 3000, false);
        slot.begin(img.len()).unwrap();
        slot.write(0, &img[..1000]).unwrap();
        assert!(slot.write(500, &img[500..600]).is_err(), "out of order");
        assert!(slot.activate().is_err(), "incomplete");
        slot.write(1000, &img[1000..]).unwrap();
        assert!(!files.state().next);
        slot.activate().unwrap();
        assert!(files.state().next);
        assert_eq!(
            files.slot_image().unwrap().version,
            FirmwareVersion::new(0, 2, 0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
