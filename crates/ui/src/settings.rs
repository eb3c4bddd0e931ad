//! The dashboard's settings: `settings.json` in the collector home.
//!
//! ```json
//! { "thingsboard_url": "http://127.0.0.1:8080", "transport": "http",
//!   "fleet_key_path": null, "collect_every_min": 0 }
//! ```
//!
//! `fleet_key_path: null` means the home's `fleet.key`. The file is written
//! atomically (temp file + rename); a missing file means the defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// File name of the settings in the home.
pub const SETTINGS_FILE: &str = "settings.json";

/// What the settings page edits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// ThingsBoard server URL (`http(s)://` for the HTTP device API,
    /// `mqtt(s)://` for MQTT), or none.
    pub thingsboard_url: Option<String>,
    /// `http` or `mqtt`.
    pub transport: Transport,
    /// Where the fleet secret is read (default: `fleet.key` in the home).
    pub fleet_key_path: Option<PathBuf>,
    /// Collect every device automatically every N minutes (0: only on demand).
    pub collect_every_min: u32,
}

/// How readings go to ThingsBoard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// HTTP device API (`POST /api/v1/{token}/telemetry`).
    #[default]
    Http,
    /// MQTT device API (`v1/devices/me/telemetry`).
    Mqtt,
}

impl Settings {
    /// Checks the values; returns a message for people on error.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(u) = &self.thingsboard_url {
            let ok = match self.transport {
                Transport::Http => u.starts_with("http://") || u.starts_with("https://"),
                Transport::Mqtt => u.starts_with("mqtt://") || u.starts_with("mqtts://"),
            };
            if !ok {
                return Err(Error::BadRequest(format!(
                    "ThingsBoard URL {u:?} does not match the transport: use http(s):// for HTTP, mqtt(s):// for MQTT"
                )));
            }
        }
        if self.collect_every_min > 24 * 60 {
            return Err(Error::BadRequest(
                "collect interval must be at most 1440 minutes (a day)".into(),
            ));
        }
        Ok(())
    }

    /// Reads the settings of `home` (defaults when the file is missing).
    pub fn load(home: &Path) -> Result<Settings, Error> {
        let path = home.join(SETTINGS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Error::BadRequest(format!(
                    "{} is not valid: {e}; fix or delete it",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Writes the settings of `home` atomically, after [`Settings::validate`].
    pub fn save(&self, home: &Path) -> Result<(), Error> {
        self.validate()?;
        let path = home.join(SETTINGS_FILE);
        let tmp = home.join(format!("{SETTINGS_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::BadRequest(format!("encoding settings: {e}")))?;
        std::fs::write(&tmp, json)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// The fleet key file in use.
    pub fn fleet_key_file(&self, home: &Path) -> PathBuf {
        self.fleet_key_path
            .clone()
            .unwrap_or_else(|| home.join(collector::home::FLEET_KEY_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), Settings::default());
        let s = Settings {
            thingsboard_url: Some("http://tb.local:8080".into()),
            transport: Transport::Http,
            fleet_key_path: None,
            collect_every_min: 15,
        };
        s.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), s);
        let bad = Settings {
            transport: Transport::Mqtt,
            ..s.clone()
        };
        assert!(bad.save(dir.path()).is_err());
        std::fs::write(dir.path().join(SETTINGS_FILE), "{\"nope\":1}").unwrap();
        assert!(Settings::load(dir.path()).is_err());
    }
}
