//! The simulator's home directory and the fleet secret.
//!
//! Layout of a home:
//! - `fleet.key`: the operator's fleet secret, 64 hex digits (created on
//!   first use, mode 0600 on Unix; the collector reads the same file);
//! - `sim/<ID>/flash.bin`: each virtual device's NOR flash image;
//! - `sim-devices.json`: the devices currently running (id, ssid, url);
//! - `firmware.pub` (optional): the ed25519 public key (64 hex digits) the
//!   virtual devices check firmware uploads against;
//! - `sim/<ID>/firmware.json`, `sim/<ID>/ota-slot.bin`: each device's
//!   firmware state ([`crate::firmware`]).

use std::path::{Path, PathBuf};

use protocol::FleetSecret;

use crate::SimError;

/// File name of the fleet secret.
pub const FLEET_KEY: &str = "fleet.key";

/// The default home: `$OFMON_HOME`, else the platform data directory
/// (e.g. `~/.local/share/ofmon`), else `./ofmon-home`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("OFMON_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    directories::ProjectDirs::from("", "", "ofmon")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("ofmon-home"))
}

/// Reads `home/fleet.key`, creating it with 32 random bytes if missing.
pub fn fleet_secret(home: &Path) -> Result<FleetSecret, SimError> {
    let path = home.join(FLEET_KEY);
    match std::fs::read_to_string(&path) {
        Ok(text) => FleetSecret::from_hex(text.trim()).map_err(|e| {
            SimError::Options(format!(
                "{} is not 64 hex digits ({e:?}); delete it to create a new fleet",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| {
                SimError::io(
                    "reading the OS random generator",
                    std::io::Error::other(e.to_string()),
                )
            })?;
            let secret = FleetSecret::from_bytes(bytes);
            write_private(&path, &secret.to_hex())?;
            Ok(secret)
        }
        Err(e) => Err(SimError::io(format!("reading {}", path.display()), e)),
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), SimError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| SimError::io(format!("creating {}", path.display()), e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .map_err(|e| SimError::io(format!("writing {}", path.display()), e))
}

/// Reads `home/firmware.pub` (64 hex digits), `None` if there is none.
pub fn firmware_pubkey(home: &Path) -> Result<Option<[u8; 32]>, SimError> {
    let path = home.join(crate::firmware::PUBKEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => protocol::firmware::FirmwarePublicKey::from_hex(text.trim())
            .map(|k| Some(k.to_bytes()))
            .map_err(|e| {
                SimError::Options(format!(
                    "{}: {e}; it must hold the 64-hex-digit public key printed by `ofmon firmware-key`",
                    path.display()
                ))
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SimError::io(format!("reading {}", path.display()), e)),
    }
}

/// Directory of device `id`'s files.
pub fn device_dir(home: &Path, id: &str) -> PathBuf {
    home.join("sim").join(id)
}
