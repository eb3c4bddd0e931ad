//! Pairing: give a device its ThingsBoard token and its secret (derived
//! from the fleet secret and its MAC), set its clock, remember it locally.
//!
//! Hook for the ThingsBoard issue: `ofmon pair --thingsboard URL --user ..`
//! creates the device on the server first and then calls [`pair`] with the
//! token it got; [`PairOptions::server`] records which server that was.

use protocol::api::PairRequest;
use protocol::{FleetSecret, Mac};

use crate::client::{DeviceApi, HttpDevice};
use crate::collect::{ClockSet, set_clock};
use crate::db::Db;
use crate::{Error, now_ms};

/// What to pair a device with.
#[derive(Clone, Debug, Default)]
pub struct PairOptions {
    /// ThingsBoard device access token.
    pub token: String,
    /// ThingsBoard device name.
    pub name: Option<String>,
    /// ThingsBoard device profile (UUID).
    pub profile: Option<String>,
    /// ThingsBoard server (URL or label).
    pub server: Option<String>,
}

/// Result of [`pair`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Paired {
    /// Device id.
    pub device_id: String,
    /// SSID.
    pub ssid: String,
    /// The clock sync made right after pairing.
    pub clock: ClockSet,
}

/// Pairs the device reached through `dev` (whose key is set on success).
pub fn pair(
    db: &Db,
    dev: &mut HttpDevice,
    fleet: &FleetSecret,
    opts: &PairOptions,
) -> Result<Paired, Error> {
    let t = std::time::Instant::now();
    let info = dev.info()?;
    let rtt = t.elapsed().as_millis() as u64;
    let mac = Mac::parse(&info.id)
        .map_err(|e| Error::BadInput(format!("device id {:?}: {e}", info.id)))?;
    if info.paired {
        return Err(Error::Config(format!(
            "device {} is already paired; factory-reset it first to pair it again",
            info.id
        )));
    }
    let secret = fleet.device_secret(&mac);
    let req = PairRequest {
        token: opts.token.clone(),
        device_secret: secret.to_hex(),
        profile: opts.profile.clone(),
        server: opts.server.clone(),
        name: opts.name.clone(),
    };
    let resp = dev.pair(&req)?;
    dev.set_key(secret.api_key());
    db.upsert_device(&resp.id, Some(&resp.ssid), Some(dev.base()), now_ms())?;
    db.set_pairing(
        &resp.id,
        &opts.token,
        opts.name.as_deref(),
        opts.profile.as_deref(),
        opts.server.as_deref(),
    )?;
    let clock = set_clock(db, dev, &resp.id, rtt)?;
    Ok(Paired {
        device_id: resp.id,
        ssid: resp.ssid,
        clock,
    })
}
