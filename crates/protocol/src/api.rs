//! JSON bodies of device API v1 (`/api/v1/...`), shared by the device router
//! and the collector.
//!
//! Conventions: field names are `snake_case`; times are unix milliseconds
//! (`*_ms`, `u64`); optional values are `null` (and may be omitted on input);
//! enums are lower-case `snake_case` strings, or objects tagged with a `type`
//! field. Unknown fields on input are ignored, so newer collectors can talk to
//! older devices. Request types implement [`Validate`]; decode them with
//! [`decode_request`], which answers a [`BodyError`] the router turns into
//! `400 {"error": "..."}` ([`ErrorBody`]).
//!
//! These types are deliberately plain: they do not depend on the metering or
//! store crates; the device core converts.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::firmware::FirmwareVersion;
use crate::keys::{DeviceSecret, MAX_SSID_PREFIX_LEN};

/// The API version this crate describes (`/api/v1`).
pub const API_VERSION: u32 = 1;
/// Shortest recording interval, seconds.
pub const MIN_INTERVAL_S: u32 = 1;
/// Longest recording interval, seconds.
pub const MAX_INTERVAL_S: u32 = 3600;
/// Earliest wall time a device accepts in `POST /time` (2020-01-01T00:00:00Z).
pub const MIN_UNIX_MS: u64 = 1_577_836_800_000;
/// Latest wall time a device accepts in `POST /time` (2100-01-01T00:00:00Z).
pub const MAX_UNIX_MS: u64 = 4_102_444_800_000;
/// Largest uncertainty a time sync may claim (one hour).
pub const MAX_TIME_UNCERTAINTY_MS: u32 = 3_600_000;
/// Most CTs (circuits) per device.
pub const MAX_CTS: u8 = 3;

/// A request body that failed validation: which field and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// The offending field (dotted path, e.g. `calibration.currents`).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}
crate::std_error!(ValidationError);

fn invalid(field: &'static str, reason: &'static str) -> Result<(), ValidationError> {
    Err(ValidationError { field, reason })
}

/// Checks of a decoded request body beyond what its types express.
pub trait Validate {
    /// `Ok` if the body may be acted upon.
    fn validate(&self) -> Result<(), ValidationError>;
}

/// Why a request body was refused (→ HTTP 400).
#[derive(Debug)]
pub enum BodyError {
    /// Not JSON, or not the expected shape.
    Json(serde_json::Error),
    /// Well-formed but invalid.
    Invalid(ValidationError),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Json(e) => write!(f, "malformed JSON body: {e}"),
            BodyError::Invalid(e) => write!(f, "invalid body: {e}"),
        }
    }
}
crate::std_error!(BodyError);

impl BodyError {
    /// The `400` response body for this error.
    pub fn to_error_body(&self) -> ErrorBody {
        ErrorBody {
            error: alloc::format!("{self}"),
        }
    }
}

/// Decodes and validates a request body.
pub fn decode_request<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, BodyError> {
    let value: T = serde_json::from_slice(body).map_err(BodyError::Json)?;
    value.validate().map_err(BodyError::Invalid)?;
    Ok(value)
}

/// Decodes a response body (collector side; no validation).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Encodes any body as compact JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain types into a Vec cannot fail: no maps with
    // non-string keys, no failing Serialize impls. Fall back to an empty body.
    serde_json::to_vec(value).unwrap_or_default()
}

fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|c| (0x20..0x7f).contains(&c))
}

fn check_text(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    if s.len() < min {
        return invalid(field, "too short");
    }
    if s.len() > max {
        return invalid(field, "too long");
    }
    if s.chars().any(char::is_control) {
        return invalid(field, "contains control characters");
    }
    Ok(())
}

// ---------------------------------------------------------------- info

/// `GET /api/v1/info` (open, no authentication): who the device is and
/// what it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// [`API_VERSION`].
    pub api_version: u32,
    /// Device id: the MAC as 12 upper-case hex digits.
    pub id: String,
    /// SSID of the device's access point.
    pub ssid: String,
    /// Running firmware version (`"1.2.3"`).
    pub firmware: FirmwareVersion,
    /// Board name (`"esp32c3"`).
    pub board: String,
    /// What is measured.
    pub channels: ChannelMap,
    /// Recording interval, seconds.
    pub interval_s: u32,
    /// Sequence numbers of the records currently stored.
    pub records: SeqRange,
    /// Highest sequence number acknowledged by a collector, if any.
    pub acked_seq: Option<u64>,
    /// Wall clock state.
    pub clock: ClockState,
    /// Random id of the current boot.
    pub boot_id: u64,
    /// Milliseconds since this boot.
    pub uptime_ms: u64,
    /// Number of boots since the store was created.
    pub boot_count: u32,
    /// Flash use of the record store.
    pub storage: StorageUse,
    /// Whether the device has been paired (`POST /pair` is then refused).
    pub paired: bool,
    /// Whether the original firmware's legacy routes are enabled.
    pub legacy: bool,
}

/// Channel map: layout and number of CTs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMap {
    /// How voltages and CTs relate.
    pub layout: ChannelLayout,
    /// Number of CTs (circuits), 1..=3.
    pub cts: u8,
}

impl ChannelMap {
    /// Number of voltage channels this map measures.
    pub fn voltages(&self) -> usize {
        match self.layout {
            ChannelLayout::ThreePhase => 3,
            _ => 1,
        }
    }
}

impl Validate for ChannelMap {
    fn validate(&self) -> Result<(), ValidationError> {
        match self.layout {
            ChannelLayout::SinglePhase if (1..=MAX_CTS).contains(&self.cts) => Ok(()),
            ChannelLayout::SinglePhase => invalid("cts", "single_phase needs 1..=3 CTs"),
            _ if self.cts == 3 => Ok(()),
            _ => invalid("cts", "three-phase layouts need exactly 3 CTs"),
        }
    }
}

/// How voltage and current channels relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelLayout {
    /// One voltage; 1–3 CTs, each a single-phase circuit on that voltage.
    SinglePhase,
    /// Three voltages and three CTs, CT n on phase n (6 ADC channels: does
    /// not fit the ESP32-C3).
    ThreePhase,
    /// One voltage (phase 1) and three CTs; phases 2 and 3 use the voltage
    /// delayed by 120° and 240°.
    ThreePhaseVirtual,
}

/// Range of stored record sequence numbers; both `null` when empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    /// Oldest stored record.
    pub first: Option<u64>,
    /// Newest stored record.
    pub last: Option<u64>,
}

/// The device's wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClockState {
    /// Not set since boot: records carry only boot id and uptime.
    Unset,
    /// Set by a `POST /time` in this boot.
    Set {
        /// The device's current wall time.
        now_ms: u64,
        /// Bound on its error: the sync's uncertainty plus drift since.
        uncertainty_ms: u32,
    },
}

/// Flash use of the record store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUse {
    /// Bytes holding records (acked or not).
    pub used_bytes: u64,
    /// Capacity of the store partition.
    pub total_bytes: u64,
    /// Records stored.
    pub records: u64,
}

// ---------------------------------------------------------------- pair

/// `POST /api/v1/pair` (open only while unpaired): first-time provisioning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairRequest {
    /// ThingsBoard device access token.
    pub token: String,
    /// The device's secret, 64 hex digits, derived by the collector from the
    /// fleet secret and the device's MAC (see `docs/SECURITY.md`).
    pub device_secret: String,
    /// ThingsBoard device profile (e.g. a UUID).
    #[serde(default)]
    pub profile: Option<String>,
    /// Server label or URL, informational.
    #[serde(default)]
    pub server: Option<String>,
    /// Human-readable device name, informational.
    #[serde(default)]
    pub name: Option<String>,
}

impl PairRequest {
    /// The device secret as a key (after [`Validate::validate`] this cannot fail).
    pub fn device_secret(&self) -> Result<DeviceSecret, ValidationError> {
        DeviceSecret::from_hex(&self.device_secret).map_err(|_| ValidationError {
            field: "device_secret",
            reason: "must be 64 hex digits",
        })
    }
}

impl Validate for PairRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        check_text("token", &self.token, 1, 128)?;
        if !printable_ascii(&self.token) || self.token.contains(' ') {
            return invalid("token", "must be printable ASCII without spaces");
        }
        self.device_secret()?;
        if let Some(p) = &self.profile {
            check_text("profile", p, 0, 64)?;
        }
        if let Some(s) = &self.server {
            check_text("server", s, 0, 256)?;
        }
        if let Some(n) = &self.name {
            check_text("name", n, 0, 64)?;
        }
        Ok(())
    }
}

/// Answer to a successful pairing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairResponse {
    /// Device id.
    pub id: String,
    /// SSID; from the next AP start on, protected by the derived password.
    pub ssid: String,
}

// ---------------------------------------------------------------- time

/// `POST /api/v1/time`: the collector's wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRequest {
    /// Wall time, unix ms, best estimate for the moment the device handles
    /// the request (e.g. collector send time + half the round trip).
    pub unix_ms: u64,
    /// Bound on the error of `unix_ms` (e.g. half the measured round trip
    /// plus the collector's own clock uncertainty).
    pub uncertainty_ms: u32,
}

impl Validate for TimeRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        if !(MIN_UNIX_MS..MAX_UNIX_MS).contains(&self.unix_ms) {
            return invalid("unix_ms", "outside 2020..2100");
        }
        if self.uncertainty_ms > MAX_TIME_UNCERTAINTY_MS {
            return invalid("uncertainty_ms", "more than one hour");
        }
        Ok(())
    }
}

/// Answer to `POST /api/v1/time`: where the sync landed on the device's
/// own time line (the same values are logged as a [`EventKind::TimeSync`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeResponse {
    /// Current boot.
    pub boot_id: u64,
    /// Uptime at which the sync was applied.
    pub uptime_ms: u64,
    /// The device's wall-time estimate just before the sync, if it had one
    /// (lets the collector measure drift).
    pub previous_unix_ms: Option<u64>,
}

// ---------------------------------------------------------------- ack

/// `POST /api/v1/ack`: the collector has durably stored every record up to
/// and including `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// Highest sequence number durably stored by the collector.
    pub seq: u64,
}

impl Validate for AckRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

/// Answer to an ack. Acks never move backwards: a lower `seq` than already
/// acknowledged leaves it unchanged; a `seq` above the newest record is 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// The device's acknowledged sequence number after this request.
    pub acked_seq: u64,
}

// ---------------------------------------------------------------- events

/// `GET /api/v1/events?after=SEQ&limit=N`: events in sequence order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventsResponse {
    /// Events with `seq > after`, oldest first, at most `limit`.
    pub events: Vec<Event>,
}

/// Something that happened on the device, on its own time line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Event sequence number (its own sequence, not the records').
    pub seq: u64,
    /// Boot in which it happened.
    pub boot_id: u64,
    /// Uptime in that boot.
    pub uptime_ms: u64,
    /// Wall time, if the clock was set at that moment.
    pub wall_ms: Option<u64>,
    /// What happened.
    pub kind: EventKind,
}

/// Event payloads, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The device booted. The `last_*` fields describe the last moment the
    /// previous boot persisted, bounding the outage for time reconstruction.
    Boot {
        /// Why the chip reset.
        reason: BootReason,
        /// Previous boot's id, if known.
        last_boot_id: Option<u64>,
        /// Previous boot's uptime at its last persisted state.
        last_uptime_ms: Option<u64>,
        /// Previous boot's wall time at its last persisted state, if its clock was set.
        last_wall_ms: Option<u64>,
    },
    /// The previous boot ended without a clean shutdown (power cut, crash).
    PowerLoss {
        /// Previous boot's id.
        last_boot_id: u64,
        /// Its uptime at the last persisted state.
        last_uptime_ms: u64,
        /// Its wall time then, if known.
        last_wall_ms: Option<u64>,
    },
    /// The clock was set by `POST /time`.
    TimeSync {
        /// Wall time set.
        unix_ms: u64,
        /// Its claimed uncertainty.
        uncertainty_ms: u32,
        /// The device's estimate just before, if it had one.
        previous_unix_ms: Option<u64>,
    },
    /// A fault was detected (flash error, metering anomaly, ...).
    Fault {
        /// Device-defined fault code.
        code: u32,
        /// Optional short description.
        #[serde(default)]
        detail: Option<String>,
    },
    /// A firmware update step.
    Ota {
        /// Version before.
        from: FirmwareVersion,
        /// Version offered / installed.
        to: FirmwareVersion,
        /// Outcome.
        outcome: OtaOutcome,
    },
    /// Configuration or calibration changed.
    Config {},
    /// The device was paired.
    Paired {},
    /// An event kind this version does not know (newer firmware).
    #[serde(other)]
    Unknown,
}

/// Why the chip (re)started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootReason {
    /// Power applied.
    PowerOn,
    /// Supply dipped.
    Brownout,
    /// A watchdog fired.
    Watchdog,
    /// Requested reboot (`POST /reboot`, factory reset).
    Software,
    /// Panic or exception.
    Panic,
    /// Reboot into new firmware.
    Ota,
    /// Anything else.
    #[serde(other)]
    Unknown,
}

/// Outcome of an OTA step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtaOutcome {
    /// Written and activated; reboot pending.
    Installed,
    /// New firmware passed its self-test and marked itself valid.
    Confirmed,
    /// New firmware failed; the bootloader went back to the old one.
    RolledBack,
    /// Upload refused (signature, version, board, size, digest).
    Refused,
    /// Anything else.
    #[serde(other)]
    Unknown,
}

// ---------------------------------------------------------------- config

/// `GET/PUT /api/v1/config`: the device's settings. `PUT` replaces the whole
/// configuration (get, modify, put back).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Recording interval, seconds, [`MIN_INTERVAL_S`]..=[`MAX_INTERVAL_S`].
    pub interval_s: u32,
    /// SSID prefix, 1–20 printable ASCII characters (default `OFMon-`).
    pub ssid_prefix: String,
    /// Serve the original firmware's legacy routes (and `SEM-` SSID).
    pub legacy_mode: bool,
    /// Layout and CT count.
    pub channels: ChannelMap,
    /// Calibration; lengths must match `channels`.
    pub calibration: Calibration,
}

/// Calibration constants per channel (units as in the metering engine).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// One entry per voltage channel (1, or 3 for `three_phase`).
    pub voltages: Vec<VoltageCalibration>,
    /// One entry per CT.
    pub currents: Vec<CurrentCalibration>,
}

/// Calibration of a voltage channel.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct VoltageCalibration {
    /// Volts per ADC count after DC removal; > 0.
    pub gain: f32,
    /// Starting DC offset in ADC counts (0..=4095); tracked from there.
    pub offset: u16,
}

/// Calibration of a CT channel.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurrentCalibration {
    /// Amps per ADC count after DC removal; non-zero, negative flips the CT.
    pub gain: f32,
    /// Starting DC offset in ADC counts (0..=4095).
    pub offset: u16,
    /// CT phase lead in degrees, -20..=20.
    #[serde(default)]
    pub phase_deg: f32,
    /// Sampling skew after the voltage sample, microseconds, -1000..=1000.
    #[serde(default)]
    pub skew_us: f32,
}

impl Validate for Calibration {
    fn validate(&self) -> Result<(), ValidationError> {
        for v in &self.voltages {
            if !(v.gain.is_finite() && v.gain > 0.0) {
                return invalid("calibration.voltages.gain", "must be finite and > 0");
            }
            if v.offset > 4095 {
                return invalid("calibration.voltages.offset", "must be 0..=4095");
            }
        }
        for c in &self.currents {
            if !(c.gain.is_finite() && c.gain != 0.0) {
                return invalid("calibration.currents.gain", "must be finite and non-zero");
            }
            if c.offset > 4095 {
                return invalid("calibration.currents.offset", "must be 0..=4095");
            }
            if !(c.phase_deg.is_finite() && (-20.0..=20.0).contains(&c.phase_deg)) {
                return invalid("calibration.currents.phase_deg", "must be -20..=20");
            }
            if !(c.skew_us.is_finite() && (-1000.0..=1000.0).contains(&c.skew_us)) {
                return invalid("calibration.currents.skew_us", "must be -1000..=1000");
            }
        }
        Ok(())
    }
}

impl Validate for DeviceConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if !(MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&self.interval_s) {
            return invalid("interval_s", "must be 1..=3600");
        }
        let p = &self.ssid_prefix;
        if p.is_empty() || p.len() > MAX_SSID_PREFIX_LEN || !printable_ascii(p) {
            return invalid("ssid_prefix", "must be 1..=20 printable ASCII characters");
        }
        self.channels.validate()?;
        if self.calibration.voltages.len() != self.channels.voltages() {
            return invalid("calibration.voltages", "one entry per voltage channel");
        }
        if self.calibration.currents.len() != usize::from(self.channels.cts) {
            return invalid("calibration.currents", "one entry per CT");
        }
        self.calibration.validate()
    }
}

// ---------------------------------------------------------------- calibrate

/// `POST /api/v1/calibrate`: calibrate against reference readings taken
/// over the device's last live window (see [`LiveReading`]). Each given
/// value scales that channel's gain by `reference / measured`; `null`
/// leaves a channel alone. With `resistive_load`, the CT phase corrections
/// are also set so that the referenced CTs read power factor 1.
/// The answer is the resulting [`DeviceConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrateRequest {
    /// True RMS volts per voltage channel.
    #[serde(default)]
    pub voltages_v: Vec<Option<f32>>,
    /// True RMS amps per CT.
    #[serde(default)]
    pub currents_a: Vec<Option<f32>>,
    /// The load is purely resistive (PF = 1): also calibrate phase.
    #[serde(default)]
    pub resistive_load: bool,
}

impl Validate for CalibrateRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.voltages_v.len() > 3 {
            return invalid("voltages_v", "at most 3 entries");
        }
        if self.currents_a.len() > usize::from(MAX_CTS) {
            return invalid("currents_a", "at most 3 entries");
        }
        if self
            .voltages_v
            .iter()
            .chain(&self.currents_a)
            .all(Option::is_none)
        {
            return invalid("voltages_v", "no reference value given");
        }
        let positive = |x: &Option<f32>| x.is_none_or(|v| v.is_finite() && v > 0.0);
        if !self.voltages_v.iter().all(positive) {
            return invalid("voltages_v", "references must be finite and > 0");
        }
        if !self.currents_a.iter().all(positive) {
            return invalid("currents_a", "references must be finite and > 0");
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- live

/// `GET /api/v1/live`: the latest short-window measurement (about one
/// second), not stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveReading {
    /// Boot of the measurement.
    pub boot_id: u64,
    /// Uptime at the end of the window.
    pub uptime_ms: u64,
    /// Wall time at the end of the window, if the clock is set.
    pub wall_ms: Option<u64>,
    /// Mains frequency, Hz.
    pub frequency_hz: f32,
    /// RMS volts per voltage channel.
    pub voltages_v: Vec<f32>,
    /// RMS amps per CT.
    pub currents_a: Vec<f32>,
    /// Real power per CT, W (negative = export).
    pub real_power_w: Vec<f32>,
    /// Apparent power per CT, VA.
    pub apparent_power_va: Vec<f32>,
}

// ---------------------------------------------------------------- errors

/// Body of every 4xx/5xx answer: `{"error": "short reason"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Short human-readable reason.
    pub error: String,
}

impl ErrorBody {
    /// An error body with this reason.
    pub fn new(reason: impl fmt::Display) -> Self {
        Self {
            error: alloc::format!("{reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use proptest::prelude::*;

    fn config() -> DeviceConfig {
        DeviceConfig {
            interval_s: 60,
            ssid_prefix: "OFMon-".into(),
            legacy_mode: false,
            channels: ChannelMap {
                layout: ChannelLayout::SinglePhase,
                cts: 2,
            },
            calibration: Calibration {
                voltages: vec![VoltageCalibration {
                    gain: 0.3,
                    offset: 1892,
                }],
                currents: vec![
                    CurrentCalibration {
                        gain: 0.05,
                        offset: 1635,
                        phase_deg: 1.7,
                        skew_us: 0.0,
                    };
                    2
                ],
            },
        }
    }

    fn info() -> Info {
        Info {
            api_version: API_VERSION,
            id: "A0B1C2D3E4F5".into(),
            ssid: "OFMon-A0B1C2D3E4F5".into(),
            firmware: FirmwareVersion::new(0, 1, 0),
            board: "esp32c3".into(),
            channels: ChannelMap {
                layout: ChannelLayout::ThreePhaseVirtual,
                cts: 3,
            },
            interval_s: 60,
            records: SeqRange {
                first: Some(1),
                last: Some(86_400),
            },
            acked_seq: None,
            clock: ClockState::Set {
                now_ms: 1_700_000_000_000,
                uncertainty_ms: 40,
            },
            boot_id: 0xdead_beef,
            uptime_ms: 12_345,
            boot_count: 7,
            storage: StorageUse {
                used_bytes: 1000,
                total_bytes: 1_966_080,
                records: 86_400,
            },
            paired: true,
            legacy: false,
        }
    }

    #[test]
    fn info_json_shape() {
        let json = String::from_utf8(encode(&info())).unwrap();
        for needle in [
            r#""id":"A0B1C2D3E4F5""#,
            r#""firmware":"0.1.0""#,
            r#""channels":{"layout":"three_phase_virtual","cts":3}"#,
            r#""records":{"first":1,"last":86400}"#,
            r#""acked_seq":null"#,
            r#""clock":{"state":"set","now_ms":1700000000000,"uncertainty_ms":40}"#,
        ] {
            assert!(json.contains(needle), "{needle} not in {json}");
        }
        assert_eq!(decode::<Info>(json.as_bytes()).unwrap(), info());
        let unset = encode(&ClockState::Unset);
        assert_eq!(unset, br#"{"state":"unset"}"#);
    }

    #[test]
    fn events_json_shape_and_forward_compat() {
        let ev = Event {
            seq: 3,
            boot_id: 9,
            uptime_ms: 10,
            wall_ms: None,
            kind: EventKind::Boot {
                reason: BootReason::PowerOn,
                last_boot_id: Some(8),
                last_uptime_ms: Some(1000),
                last_wall_ms: None,
            },
        };
        let json = String::from_utf8(encode(&EventsResponse {
            events: vec![ev.clone()],
        }))
        .unwrap();
        assert!(
            json.contains(r#""kind":{"type":"boot","reason":"power_on","last_boot_id":8"#),
            "{json}"
        );
        assert_eq!(
            decode::<EventsResponse>(json.as_bytes()).unwrap().events,
            vec![ev]
        );
        // Unknown kinds and reasons from newer firmware still decode.
        let newer = br#"{"seq":1,"boot_id":1,"uptime_ms":1,"wall_ms":5,"kind":{"type":"solar_flare","x":1}}"#;
        assert_eq!(decode::<Event>(newer).unwrap().kind, EventKind::Unknown);
        let reason = br#"{"type":"boot","reason":"cosmic_ray","last_boot_id":null,"last_uptime_ms":null,"last_wall_ms":null}"#;
        assert!(matches!(
            decode::<EventKind>(reason).unwrap(),
            EventKind::Boot {
                reason: BootReason::Unknown,
                ..
            }
        ));
        let ota = EventKind::Ota {
            from: FirmwareVersion::new(1, 0, 0),
            to: FirmwareVersion::new(1, 1, 0),
            outcome: OtaOutcome::RolledBack,
        };
        let j = encode(&ota);
        assert_eq!(
            j,
            br#"{"type":"ota","from":"1.0.0","to":"1.1.0","outcome":"rolled_back"}"#
        );
        assert_eq!(decode::<EventKind>(&j).unwrap(), ota);
        assert_eq!(encode(&EventKind::Config {}), br#"{"type":"config"}"#);
    }

    #[test]
    fn config_validation() {
        assert_eq!(config().validate(), Ok(()));
        let json = encode(&config());
        assert_eq!(decode_request::<DeviceConfig>(&json).unwrap(), config());
        let bad = |f: fn(&mut DeviceConfig), field: &str| {
            let mut c = config();
            f(&mut c);
            assert_eq!(c.validate().map_err(|e| e.field), Err(field));
            // Through JSON too (non-finite floats become `null`, which is a
            // shape error instead).
            match decode_request::<DeviceConfig>(&encode(&c)).unwrap_err() {
                e @ BodyError::Invalid(_) => assert!(e.to_error_body().error.contains(field)),
                BodyError::Json(e) => assert!(e.to_string().contains("null"), "{e}"),
            }
        };
        bad(|c| c.interval_s = 0, "interval_s");
        bad(|c| c.interval_s = 3601, "interval_s");
        bad(|c| c.ssid_prefix.clear(), "ssid_prefix");
        bad(|c| c.ssid_prefix = "x".repeat(21), "ssid_prefix");
        bad(|c| c.ssid_prefix = "caf\u{e9}".into(), "ssid_prefix");
        bad(|c| c.channels.cts = 0, "cts");
        bad(|c| c.channels.cts = 4, "cts");
        bad(
            |c| c.channels.layout = ChannelLayout::ThreePhaseVirtual,
            "cts",
        );
        bad(
            |c| {
                c.calibration.currents.pop();
            },
            "calibration.currents",
        );
        bad(|c| c.calibration.voltages.clear(), "calibration.voltages");
        bad(
            |c| c.calibration.voltages[0].gain = f32::NAN,
            "calibration.voltages.gain",
        );
        bad(
            |c| c.calibration.voltages[0].gain = -1.0,
            "calibration.voltages.gain",
        );
        bad(
            |c| c.calibration.currents[1].gain = 0.0,
            "calibration.currents.gain",
        );
        bad(
            |c| c.calibration.currents[1].offset = 4096,
            "calibration.currents.offset",
        );
        bad(
            |c| c.calibration.currents[0].phase_deg = 45.0,
            "calibration.currents.phase_deg",
        );
        bad(
            |c| c.calibration.currents[0].skew_us = f32::INFINITY,
            "calibration.currents.skew_us",
        );
        let mut c = config();
        c.calibration.currents[0].gain = -0.05; // reversed CT is fine
        assert_eq!(c.validate(), Ok(()));
        c.channels = ChannelMap {
            layout: ChannelLayout::ThreePhase,
            cts: 3,
        };
        assert_eq!(
            c.validate().map_err(|e| e.field),
            Err("calibration.voltages")
        );
        // Defaults for optional calibration fields; unknown fields ignored.
        let j = br#"{"interval_s":1,"ssid_prefix":"M-","legacy_mode":true,"future":1,
            "channels":{"layout":"single_phase","cts":1},
            "calibration":{"voltages":[{"gain":1,"offset":2048}],"currents":[{"gain":1,"offset":2048}]}}"#;
        let c = decode_request::<DeviceConfig>(j).unwrap();
        assert_eq!(c.calibration.currents[0].phase_deg, 0.0);
    }

    #[test]
    fn pair_request_validation() {
        let secret = "ab".repeat(32);
        let ok = PairRequest {
            token: "A1b2C3d4E5f6G7h8I9j0".into(),
            device_secret: secret.clone(),
            profile: None,
            server: Some("https://tb.example".into()),
            name: Some("Kitchen".into()),
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.device_secret().unwrap().as_bytes(), &[0xab; 32]);
        let j = alloc::format!(r#"{{"token":"tok","device_secret":"{secret}"}}"#);
        let p = decode_request::<PairRequest>(j.as_bytes()).unwrap();
        assert_eq!((p.profile, p.name), (None, None));
        for (token, ds, field) in [
            ("", secret.as_str(), "token"),
            ("with space", secret.as_str(), "token"),
            (&*"t".repeat(129), secret.as_str(), "token"),
            ("tok", "abcd", "device_secret"),
            ("tok", &*"zz".repeat(32), "device_secret"),
        ] {
            let p = PairRequest {
                token: token.into(),
                device_secret: ds.into(),
                ..ok.clone()
            };
            assert_eq!(p.validate().map_err(|e| e.field), Err(field));
        }
        let p = PairRequest {
            name: Some("a\nb".into()),
            ..ok.clone()
        };
        assert_eq!(p.validate().map_err(|e| e.field), Err("name"));
        let p = PairRequest {
            server: Some("s".repeat(257)),
            ..ok
        };
        assert_eq!(p.validate().map_err(|e| e.field), Err("server"));
    }

    #[test]
    fn time_and_ack() {
        let t = TimeRequest {
            unix_ms: 1_700_000_000_000,
            uncertainty_ms: 15,
        };
        assert_eq!(decode_request::<TimeRequest>(&encode(&t)).unwrap(), t);
        assert!(TimeRequest { unix_ms: 0, ..t }.validate().is_err());
        assert!(
            TimeRequest {
                unix_ms: MAX_UNIX_MS,
                ..t
            }
            .validate()
            .is_err()
        );
        assert!(
            TimeRequest {
                uncertainty_ms: 3_600_001,
                ..t
            }
            .validate()
            .is_err()
        );
        assert!(matches!(
            decode_request::<TimeRequest>(br#"{"unix_ms":-1,"uncertainty_ms":1}"#),
            Err(BodyError::Json(_))
        ));
        assert!(matches!(
            decode_request::<AckRequest>(b"{\"seq\":"),
            Err(BodyError::Json(_))
        ));
        assert_eq!(
            decode_request::<AckRequest>(br#"{"seq":42}"#).unwrap().seq,
            42
        );
        assert_eq!(
            encode(&AckResponse { acked_seq: 42 }),
            br#"{"acked_seq":42}"#
        );
        let r = TimeResponse {
            boot_id: 1,
            uptime_ms: 2,
            previous_unix_ms: None,
        };
        assert_eq!(decode::<TimeResponse>(&encode(&r)).unwrap(), r);
    }

    #[test]
    fn calibrate_validation() {
        let ok = CalibrateRequest {
            voltages_v: vec![Some(230.0)],
            currents_a: vec![None, Some(5.0)],
            resistive_load: true,
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            decode_request::<CalibrateRequest>(&encode(&ok)).unwrap(),
            ok
        );
        let none = CalibrateRequest {
            voltages_v: vec![None],
            currents_a: vec![],
            resistive_load: false,
        };
        assert!(none.validate().is_err());
        let neg = CalibrateRequest {
            currents_a: vec![Some(-1.0)],
            ..ok.clone()
        };
        assert_eq!(neg.validate().map_err(|e| e.field), Err("currents_a"));
        let many = CalibrateRequest {
            currents_a: vec![Some(1.0); 4],
            ..ok
        };
        assert_eq!(many.validate().map_err(|e| e.field), Err("currents_a"));
    }

    #[test]
    fn live_and_error_bodies() {
        let l = LiveReading {
            boot_id: 1,
            uptime_ms: 2,
            wall_ms: Some(3),
            frequency_hz: 50.01,
            voltages_v: vec![231.5],
            currents_a: vec![1.25, 0.0],
            real_power_w: vec![280.0, -0.5],
            apparent_power_va: vec![289.4, 0.0],
        };
        assert_eq!(decode::<LiveReading>(&encode(&l)).unwrap(), l);
        assert_eq!(encode(&ErrorBody::new("nope")), br#"{"error":"nope"}"#);
        assert_eq!(
            ValidationError {
                field: "a",
                reason: "b"
            }
            .to_string(),
            "a: b"
        );
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_request::<DeviceConfig>(&data);
            let _ = decode_request::<PairRequest>(&data);
            let _ = decode::<Info>(&data);
            let _ = decode::<Event>(&data);
        }

        #[test]
        fn valid_configs_round_trip(interval in 1u32..=3600, cts in 1u8..=3, gain in 0.001f32..10.0) {
            let mut c = config();
            c.interval_s = interval;
            c.channels.cts = cts;
            c.calibration.currents = vec![CurrentCalibration { gain, offset: 2048, phase_deg: 0.0, skew_us: 0.0 }; cts.into()];
            prop_assert_eq!(c.validate(), Ok(()));
            prop_assert_eq!(decode_request::<DeviceConfig>(&encode(&c)).unwrap(), c);
        }
    }
}
