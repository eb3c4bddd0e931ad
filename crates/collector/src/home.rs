//! The collector's home directory: `--home DIR`, else `$OFMON_HOME`, else the
//! platform data directory (e.g. `~/.local/share/ofmon` on Linux).
//!
//! Layout: `ofmon.db` (SQLite database), `fleet.key` (64 hex digits, the
//! operator's fleet secret), `sim-devices.json` (written by a running
//! `ofmon sim`), `devices.txt` (static device URLs, one per line).

use std::path::{Path, PathBuf};

use protocol::FleetSecret;

use crate::Error;

/// Name of the environment variable naming the home directory.
pub const HOME_ENV: &str = "OFMON_HOME";
/// Database file name.
pub const DB_FILE: &str = "ofmon.db";
/// Fleet secret file name.
pub const FLEET_KEY_FILE: &str = "fleet.key";
/// File listing the devices of a running simulator.
pub const SIM_FILE: &str = "sim-devices.json";
/// Static device URLs, one per line (`#` comments).
pub const STATIC_FILE: &str = "devices.txt";

/// A resolved home directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// Resolves the home: `explicit`, else `$OFMON_HOME`, else the platform
    /// data directory. Creates it if missing.
    pub fn resolve(explicit: Option<&Path>) -> Result<Home, Error> {
        let dir = match explicit {
            Some(d) => d.to_path_buf(),
            None => match std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
                Some(d) => PathBuf::from(d),
                None => directories::ProjectDirs::from("", "", "ofmon")
                    .map(|p| p.data_dir().to_path_buf())
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "no home directory: pass --home DIR or set {HOME_ENV}"
                        ))
                    })?,
            },
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Config(format!("cannot create home {}: {e}", dir.display())))?;
        Ok(Home { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a file in the home.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Opens the database.
    pub fn db(&self) -> Result<crate::Db, Error> {
        crate::Db::open(&self.file(DB_FILE))
    }

    /// Reads the fleet secret from `fleet.key`.
    pub fn fleet_key(&self) -> Result<FleetSecret, Error> {
        let path = self.file(FLEET_KEY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Config(format!(
                "cannot read the fleet key {}: {e}; put the operator's 64-hex-digit fleet secret there",
                path.display()
            ))
        })?;
        FleetSecret::from_hex(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }
}
