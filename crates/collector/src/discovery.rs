//! Finding devices: one [`Discovery`] trait, three backends.
//!
//! - [`StaticDiscovery`]: URLs given on the command line or listed in
//!   `devices.txt` in the home, plus the URLs remembered in the database;
//! - [`SimDiscovery`]: the devices of a running `ofmon sim`, read from
//!   `sim-devices.json` in the home (a JSON array of `{id, ssid, url}`);
//! - [`NmcliDiscovery`]: Linux Wi-Fi through NetworkManager's `nmcli`: scan
//!   for SSIDs with the OFMon prefix (or the original `SEM-`), join one with
//!   its derived WPA2 password, talk to `http://10.0.0.1`, then bring the
//!   previous connection back.
//!
//! [`resolve`] turns a user's `DEVICE` argument (URL, SSID or device id) into
//! a [`Found`] device.

use std::path::PathBuf;
use std::process::Command;

use protocol::{FleetSecret, Mac};
use serde::{Deserialize, Serialize};

use crate::Error;

/// SSID prefix of API v1 devices.
pub const SSID_PREFIX: &str = "OFMon-";
/// Address of a device on its own access point.
pub const AP_URL: &str = "http://10.0.0.1";

/// A device seen by a backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// Device id, when known before talking to it.
    #[serde(default)]
    pub id: Option<String>,
    /// SSID, when known.
    #[serde(default)]
    pub ssid: Option<String>,
    /// URL, when reachable without joining a network.
    #[serde(default)]
    pub url: Option<String>,
    /// Which backend saw it.
    #[serde(default)]
    pub source: String,
}

/// A way to find and reach devices.
pub trait Discovery {
    /// Backend name (`static`, `sim`, `nmcli`).
    fn name(&self) -> &'static str;
    /// Devices in reach now.
    fn scan(&mut self) -> Result<Vec<Found>, Error>;
    /// Makes `found` reachable and returns its base URL.
    fn join(&mut self, found: &Found) -> Result<String, Error> {
        found
            .url
            .clone()
            .ok_or_else(|| Error::Config(format!("{}: no URL for {:?}", self.name(), found)))
    }
    /// Undoes [`Discovery::join`] (restores the previous network).
    fn leave(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Devices at fixed URLs.
pub struct StaticDiscovery {
    /// The URLs.
    pub urls: Vec<String>,
}

impl StaticDiscovery {
    /// URLs from `devices.txt` (one per line, `#` comments) plus `extra`.
    pub fn from_file(path: PathBuf, extra: Vec<String>) -> Self {
        let mut urls: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        urls.extend(extra);
        urls.dedup();
        Self { urls }
    }
}

impl Discovery for StaticDiscovery {
    fn name(&self) -> &'static str {
        "static"
    }
    fn scan(&mut self) -> Result<Vec<Found>, Error> {
        Ok(self
            .urls
            .iter()
            .map(|u| Found {
                url: Some(u.clone()),
                source: "static".into(),
                ..Found::default()
            })
            .collect())
    }
}

/// The devices of a running simulator.
pub struct SimDiscovery {
    /// Path of `sim-devices.json`.
    pub path: PathBuf,
}

#[derive(Deserialize)]
struct SimEntry {
    id: String,
    ssid: String,
    url: String,
}

impl Discovery for SimDiscovery {
    fn name(&self) -> &'static str {
        "sim"
    }
    fn scan(&mut self) -> Result<Vec<Found>, Error> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let entries: Vec<SimEntry> = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", self.path.display())))?;
        Ok(entries
            .into_iter()
            .map(|e| Found {
                id: Some(e.id),
                ssid: Some(e.ssid),
                url: Some(e.url),
                source: "sim".into(),
            })
            .collect())
    }
}

/// Wi-Fi through NetworkManager's `nmcli`.
pub struct NmcliDiscovery {
    /// The `nmcli` program (default `nmcli` on `PATH`).
    pub program: String,
    /// Fleet secret, to derive each device's AP password.
    pub fleet: Option<FleetSecret>,
    /// SSID prefix to look for.
    pub prefix: String,
    /// The connection active before [`Discovery::join`], to restore.
    previous: Option<String>,
    joined: Option<String>,
}

impl NmcliDiscovery {
    /// A backend using `nmcli` from `PATH`.
    pub fn new(fleet: Option<FleetSecret>) -> Self {
        Self {
            program: "nmcli".into(),
            fleet,
            prefix: SSID_PREFIX.into(),
            previous: None,
            joined: None,
        }
    }

    fn run(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new(&self.program)
            .args(args)
            .output()
            .map_err(|e| Error::Transport(format!("cannot run {}: {e}", self.program)))?;
        if !out.status.success() {
            return Err(Error::Transport(format!(
                "{} {}: {}",
                self.program,
                args.first().copied().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Splits one line of `nmcli -t` output on unescaped `:`.
fn nmcli_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut esc = false;
    for c in line.chars() {
        match (esc, c) {
            (false, '\\') => esc = true,
            (false, ':') => out.push(String::new()),
            (_, c) => {
                esc = false;
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

impl Discovery for NmcliDiscovery {
    fn name(&self) -> &'static str {
        "nmcli"
    }

    fn scan(&mut self) -> Result<Vec<Found>, Error> {
        let out = self.run(&[
            "-t", "-f", "SSID", "device", "wifi", "list", "--rescan", "yes",
        ])?;
        let mut found: Vec<Found> = Vec::new();
        for line in out.lines() {
            let ssid = nmcli_fields(line).remove(0);
            if let Some(mac) = Mac::from_ssid(&ssid, &self.prefix)
                && !found
                    .iter()
                    .any(|f| f.ssid.as_deref() == Some(ssid.as_str()))
            {
                found.push(Found {
                    id: Some(mac.id()),
                    ssid: Some(ssid),
                    url: None,
                    source: "nmcli".into(),
                });
            }
        }
        Ok(found)
    }

    fn join(&mut self, found: &Found) -> Result<String, Error> {
        let ssid = found
            .ssid
            .clone()
            .ok_or_else(|| Error::Config("nmcli: device has no SSID".into()))?;
        let mac = Mac::from_ssid(&ssid, &self.prefix)
            .ok_or_else(|| Error::Config(format!("nmcli: {ssid} is not an OFMon SSID")))?;
        let fleet = self.fleet.as_ref().ok_or_else(|| {
            Error::Config("nmcli: the fleet key is needed to join a device's network".into())
        })?;
        // Remember the active Wi-Fi connection to restore it afterwards.
        let active = self.run(&["-t", "-f", "NAME,TYPE", "connection", "show", "--active"])?;
        self.previous = active.lines().find_map(|l| {
            let f = nmcli_fields(l);
            (f.len() >= 2 && f[1].contains("wireless")).then(|| f[0].clone())
        });
        let password = fleet.device_keys(&mac).ap_password;
        self.run(&[
            "device",
            "wifi",
            "connect",
            &ssid,
            "password",
            password.as_str(),
        ])?;
        self.joined = Some(ssid);
        Ok(AP_URL.to_string())
    }

    fn leave(&mut self) -> Result<(), Error> {
        let joined = self.joined.take();
        match self.previous.take() {
            Some(prev) => self.run(&["connection", "up", "id", &prev]).map(|_| ()),
            None => match joined {
                Some(ssid) => self.run(&["connection", "down", "id", &ssid]).map(|_| ()),
                None => Ok(()),
            },
        }
    }
}

/// What a `DEVICE` argument names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A URL (`http://...`).
    Url(String),
    /// A device id (MAC).
    Id(String),
    /// An SSID.
    Ssid(String),
}

/// Classifies a `DEVICE` argument.
pub fn classify(arg: &str) -> Target {
    if arg.starts_with("http://") || arg.starts_with("https://") {
        Target::Url(arg.to_string())
    } else if let Ok(mac) = Mac::parse(arg) {
        Target::Id(mac.id())
    } else {
        Target::Ssid(arg.to_string())
    }
}

/// A device remembered in the database: (id, ssid, url).
pub type KnownDevice = (String, Option<String>, Option<String>);

/// Finds the device named by `arg` among what `backends` see and what the
/// database remembers (`known`: id, ssid, url). Returns the device and the
/// index of the backend that must join it (`None`: reachable directly).
pub fn resolve(
    arg: &str,
    backends: &mut [Box<dyn Discovery>],
    known: &[KnownDevice],
) -> Result<(Found, Option<usize>), Error> {
    let target = classify(arg);
    if let Target::Url(u) = &target {
        return Ok((
            Found {
                url: Some(u.clone()),
                source: "url".into(),
                ..Found::default()
            },
            None,
        ));
    }
    let matches = |f: &Found| match &target {
        Target::Id(id) => f.id.as_deref() == Some(id.as_str()),
        Target::Ssid(s) => f.ssid.as_deref() == Some(s.as_str()),
        Target::Url(_) => false,
    };
    for (i, b) in backends.iter_mut().enumerate() {
        // A backend that fails (no nmcli here) just sees nothing.
        for f in b.scan().unwrap_or_default() {
            if matches(&f) {
                let join = f.url.is_none().then_some(i);
                return Ok((f, join));
            }
        }
    }
    for (id, ssid, url) in known {
        let f = Found {
            id: Some(id.clone()),
            ssid: ssid.clone(),
            url: url.clone(),
            source: "database".into(),
        };
        if matches(&f) && f.url.is_some() {
            return Ok((f, None));
        }
    }
    Err(Error::Config(format!(
        "device {arg:?} not found: not a URL, not seen by any discovery backend, and no URL remembered for it"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_device_arguments() {
        assert_eq!(
            classify("http://127.0.0.1:8600"),
            Target::Url("http://127.0.0.1:8600".into())
        );
        assert_eq!(
            classify("a0:b1:c2:d3:e4:f5"),
            Target::Id("A0B1C2D3E4F5".into())
        );
        assert_eq!(classify("A0B1C2D3E4F5"), Target::Id("A0B1C2D3E4F5".into()));
        assert_eq!(
            classify("OFMon-A0B1C2D3E4F5"),
            Target::Ssid("OFMon-A0B1C2D3E4F5".into())
        );
    }

    #[test]
    fn nmcli_field_splitting_handles_escapes() {
        assert_eq!(
            nmcli_fields(r"my\:net:802-11-wireless"),
            vec!["my:net", "802-11-wireless"]
        );
        assert_eq!(
            nmcli_fields("OFMon-A0B1C2D3E4F5"),
            vec!["OFMon-A0B1C2D3E4F5"]
        );
    }
}
