//! What the device keeps in the store's state blob, and its events.
//!
//! One postcard-encoded [`Persisted`] value, at most `store::MAX_STATE`
//! bytes, written all-or-nothing by the store. Strings are bounded on input
//! so the blob always fits; the event ring is trimmed to fit.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Format version of the blob.
pub const STATE_VERSION: u8 = 1;
/// Most events kept.
pub const MAX_EVENTS: usize = 24;
/// Longest pairing strings accepted.
pub const MAX_PAIR_FIELD: usize = 64;

/// Pairing data received with `POST /api/v1/pair` (or legacy `/token`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairing {
    /// ThingsBoard device access token.
    pub token: String,
    /// ThingsBoard device profile (UUID or name).
    pub profile: String,
    /// Human label of the server the device reports to.
    pub server: String,
}

/// Settings changeable with `PUT /api/v1/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Interval length in seconds (1 – 3600).
    pub interval_s: u32,
    /// Whether the legacy routes are served.
    pub legacy: bool,
    /// SSID prefix of API v1 mode.
    pub ssid_prefix: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            interval_s: 60,
            legacy: false,
            ssid_prefix: String::from(crate::identity::DEFAULT_SSID_PREFIX),
        }
    }
}

/// Per-channel calibration (set by `PUT /config` or `POST /calibrate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calib {
    /// Volts per count per voltage channel.
    pub v_gain: Vec<f32>,
    /// DC offset start values of the voltage channels.
    pub v_offset: Vec<u16>,
    /// Amps per count per CT.
    pub i_gain: Vec<f32>,
    /// DC offset start values of the CTs.
    pub i_offset: Vec<u16>,
    /// CT phase lead in degrees per CT.
    pub phase_deg: Vec<f32>,
    /// Sampling skew per CT (µs).
    pub skew_us: Vec<f32>,
}

impl Calib {
    /// From the wire form.
    pub fn from_api(c: &protocol::api::Calibration) -> Self {
        Self {
            v_gain: c.voltages.iter().map(|v| v.gain).collect(),
            v_offset: c.voltages.iter().map(|v| v.offset).collect(),
            i_gain: c.currents.iter().map(|v| v.gain).collect(),
            i_offset: c.currents.iter().map(|v| v.offset).collect(),
            phase_deg: c.currents.iter().map(|v| v.phase_deg).collect(),
            skew_us: c.currents.iter().map(|v| v.skew_us).collect(),
        }
    }

    /// The wire form.
    pub fn to_api(&self) -> protocol::api::Calibration {
        use protocol::api::{CurrentCalibration, VoltageCalibration};
        protocol::api::Calibration {
            voltages: self
                .v_gain
                .iter()
                .zip(&self.v_offset)
                .map(|(&gain, &offset)| VoltageCalibration { gain, offset })
                .collect(),
            currents: (0..self.i_gain.len())
                .map(|i| CurrentCalibration {
                    gain: self.i_gain[i],
                    offset: self.i_offset.get(i).copied().unwrap_or(2048),
                    phase_deg: self.phase_deg.get(i).copied().unwrap_or(0.0),
                    skew_us: self.skew_us.get(i).copied().unwrap_or(0.0),
                })
                .collect(),
        }
    }

    /// The first `nv` voltage and `nc` CT channels of an engine calibration.
    pub fn from_cal(c: &metering::Calibration, nv: usize, nc: usize) -> Self {
        Self {
            v_gain: c.v_gain[..nv].to_vec(),
            v_offset: c.v_offset[..nv].to_vec(),
            i_gain: c.i_gain[..nc].to_vec(),
            i_offset: c.i_offset[..nc].to_vec(),
            phase_deg: c.phase_deg[..nc].to_vec(),
            skew_us: c.skew_us[..nc].to_vec(),
        }
    }

    /// Writes these values into an engine calibration.
    pub fn apply(&self, cal: &mut metering::Calibration) {
        fn put<T: Copy>(dst: &mut [T], src: &[T]) {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
        }
        put(&mut cal.v_gain, &self.v_gain);
        put(&mut cal.v_offset, &self.v_offset);
        put(&mut cal.i_gain, &self.i_gain);
        put(&mut cal.i_offset, &self.i_offset);
        put(&mut cal.phase_deg, &self.phase_deg);
        put(&mut cal.skew_us, &self.skew_us);
    }
}

/// What happened (compact form of `protocol::api::EventKind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The device booted; `last_*` bound the previous boot's end.
    Boot {
        /// Clean (requested) restart rather than power-on.
        software: bool,
        /// Previous boot's id.
        last_boot_id: Option<u32>,
        /// Previous boot's last persisted uptime.
        last_uptime_ms: Option<u64>,
        /// Previous boot's last persisted wall time.
        last_wall_ms: Option<u64>,
    },
    /// The previous boot ended without a clean shutdown.
    PowerLoss {
        /// Previous boot's id.
        last_boot_id: u32,
        /// Its last persisted uptime.
        last_uptime_ms: u64,
        /// Its last persisted wall time.
        last_wall_ms: Option<u64>,
    },
    /// `POST /time`.
    TimeSync {
        /// Wall time set.
        unix_ms: u64,
        /// Claimed uncertainty.
        uncertainty_ms: u32,
        /// Estimate just before.
        previous_unix_ms: Option<u64>,
    },
    /// A fault (code: 1 store repaired at mount, 2 flash write failed,
    /// 3 factory reset).
    Fault {
        /// Fault code.
        code: u32,
        /// Short description.
        detail: Option<String>,
    },
    /// A firmware image was installed.
    Ota {
        /// Version before.
        from: [u16; 3],
        /// Version installed.
        to: [u16; 3],
    },
    /// Configuration or calibration changed.
    Config,
    /// The device was paired.
    Paired,
    /// The first boot of an installed image ended its trial (appended last:
    /// older state blobs still decode).
    OtaResult {
        /// Version before the update.
        from: [u16; 3],
        /// Version installed.
        to: [u16; 3],
        /// Passed its self-test and marked valid (else rolled back to `from`).
        confirmed: bool,
    },
}

/// One event on the device's own time line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Event number, increasing forever (assigned by [`Persisted::push_event`]).
    pub id: u32,
    /// Boot in which it happened.
    pub boot_id: u32,
    /// Uptime at the event.
    pub uptime_ms: u64,
    /// Wall time at the event, if known.
    pub wall_ms: Option<u64>,
    /// What happened.
    pub kind: EventKind,
}

/// The persisted device state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Persisted {
    /// [`STATE_VERSION`].
    pub version: u8,
    /// Boots so far.
    pub boot_count: u32,
    /// The last boot id (to name the previous boot in the next boot event).
    pub last_boot_id: u32,
    /// The device's own secret (from pairing); keys derive from it.
    pub device_secret: Option<[u8; 32]>,
    /// Pairing data.
    pub pairing: Option<Pairing>,
    /// Settings.
    pub settings: Settings,
    /// Calibration, if set.
    pub calib: Option<Calib>,
    /// Highest accepted request timestamp (auth floor after reboot).
    pub auth_floor_ms: Option<u64>,
    /// Set just before a requested reboot.
    pub clean_shutdown: bool,
    /// Last known (boot id, uptime, wall) persisted outside records.
    pub last_wall: Option<(u32, u64, u64)>,
    /// Next event id.
    pub next_event: u32,
    /// Recent events, oldest first.
    pub events: Vec<Event>,
}

impl Persisted {
    /// Decodes a blob; `None` if empty or unreadable.
    pub fn decode(blob: &[u8]) -> Option<Self> {
        if blob.is_empty() {
            return None;
        }
        postcard::from_bytes::<Persisted>(blob)
            .ok()
            .filter(|p| p.version == STATE_VERSION)
    }

    /// Encodes, trimming old events until the blob fits `max` bytes.
    pub fn encode(&mut self, max: usize) -> Option<Vec<u8>> {
        self.version = STATE_VERSION;
        while self.events.len() > MAX_EVENTS {
            self.events.remove(0);
        }
        loop {
            let blob = postcard::to_allocvec(self).ok()?;
            if blob.len() <= max {
                return Some(blob);
            }
            if self.events.is_empty() {
                return None;
            }
            self.events.remove(0);
        }
    }

    /// Appends an event (id assigned here).
    pub fn push_event(&mut self, mut e: Event) {
        e.id = self.next_event;
        self.next_event = self.next_event.wrapping_add(1);
        self.events.push(e);
        while self.events.len() > MAX_EVENTS {
            self.events.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_case_state_fits() {
        let long = String::from_utf8(alloc::vec![b'x'; MAX_PAIR_FIELD]).unwrap();
        let mut p = Persisted {
            device_secret: Some([7; 32]),
            pairing: Some(Pairing {
                token: long.clone(),
                profile: long.clone(),
                server: long.clone(),
            }),
            calib: Some(Calib::from_cal(&metering::Calibration::default(), 3, 3)),
            auth_floor_ms: Some(u64::MAX),
            last_wall: Some((u32::MAX, u64::MAX, u64::MAX)),
            ..Default::default()
        };
        for i in 0..MAX_EVENTS {
            p.push_event(Event {
                id: 0,
                boot_id: u32::MAX,
                uptime_ms: u64::MAX,
                wall_ms: Some(u64::MAX - i as u64),
                kind: EventKind::Fault {
                    code: u32::MAX,
                    detail: Some(String::from("store repaired: torn tail, 3 bad sectors")),
                },
            });
        }
        let blob = p.encode(1024).expect("fits after trimming");
        assert!(blob.len() <= 1024);
        let back = Persisted::decode(&blob).unwrap();
        assert_eq!(back.pairing, p.pairing);
        assert!(!back.events.is_empty());
        assert_eq!(back.events.last(), p.events.last());
    }
}
