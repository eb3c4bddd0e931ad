//! JSON bodies the device writes that `protocol::api` does not define
//! (records as JSON), and conversions to `protocol::api` types.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use protocol::api;
use protocol::firmware::FirmwareVersion;

use crate::state::{Event, EventKind};

/// One voltage channel of a record in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VoltageJson {
    /// RMS (cV).
    pub rms_cv: u32,
    /// Min cycle RMS (cV).
    pub min_cv: u32,
    /// Max cycle RMS (cV).
    pub max_cv: u32,
}

/// One circuit of a record in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CircuitJson {
    /// RMS current (mA).
    pub i_rms_ma: u32,
    /// Mean real power (dW).
    pub real_power_dw: i32,
    /// Min real power (dW).
    pub real_power_min_dw: i32,
    /// Max real power (dW).
    pub real_power_max_dw: i32,
    /// Apparent power (dVA).
    pub apparent_power_dva: u32,
    /// Power factor × 1000.
    pub power_factor_milli: i16,
    /// Cumulative import (mWh).
    pub import_mwh: u64,
    /// Cumulative export (mWh).
    pub export_mwh: u64,
}

/// A record in JSON (same fields and units as the binary codec).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordJson {
    /// Sequence number.
    pub seq: u64,
    /// Boot id.
    pub boot_id: u32,
    /// Uptime at interval end.
    pub uptime_ms: u64,
    /// Wall time at interval end, if known.
    pub wall_ms: Option<u64>,
    /// Interval length.
    pub duration_ms: u32,
    /// Flags (1 partial, 2 merged, 4 multi-boot).
    pub flags: u8,
    /// Mean frequency (mHz).
    pub frequency_mhz: u32,
    /// Voltages.
    pub voltages: Vec<VoltageJson>,
    /// Circuits.
    pub circuits: Vec<CircuitJson>,
}

impl From<&store::record::Record> for RecordJson {
    fn from(r: &store::record::Record) -> Self {
        Self {
            seq: r.seq,
            boot_id: r.boot_id,
            uptime_ms: r.uptime_ms,
            wall_ms: r.wall_ms,
            duration_ms: r.duration_ms,
            flags: r.flags.0,
            frequency_mhz: r.frequency_mhz,
            voltages: r
                .voltages()
                .iter()
                .map(|v| VoltageJson {
                    rms_cv: v.rms_cv,
                    min_cv: v.min_cv,
                    max_cv: v.max_cv,
                })
                .collect(),
            circuits: r
                .circuits()
                .iter()
                .map(|c| CircuitJson {
                    i_rms_ma: c.i_rms_ma,
                    real_power_dw: c.real_power_dw,
                    real_power_min_dw: c.real_power_min_dw,
                    real_power_max_dw: c.real_power_max_dw,
                    apparent_power_dva: c.apparent_power_dva,
                    power_factor_milli: c.power_factor_milli,
                    import_mwh: c.import_mwh,
                    export_mwh: c.export_mwh,
                })
                .collect(),
        }
    }
}

/// `GET /api/v1/records` JSON answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordsJson {
    /// Records with seq > after, oldest first.
    pub records: Vec<RecordJson>,
    /// Seq of the next record the device will write.
    pub next_seq: u64,
}

/// The wire form of a stored event.
pub fn event_to_api(e: &Event) -> api::Event {
    let v = |x: [u16; 3]| FirmwareVersion::new(x[0], x[1], x[2]);
    let kind = match &e.kind {
        EventKind::Boot {
            software,
            last_boot_id,
            last_uptime_ms,
            last_wall_ms,
        } => api::EventKind::Boot {
            reason: if *software {
                api::BootReason::Software
            } else {
                api::BootReason::PowerOn
            },
            last_boot_id: last_boot_id.map(u64::from),
            last_uptime_ms: *last_uptime_ms,
            last_wall_ms: *last_wall_ms,
        },
        EventKind::PowerLoss {
            last_boot_id,
            last_uptime_ms,
            last_wall_ms,
        } => api::EventKind::PowerLoss {
            last_boot_id: u64::from(*last_boot_id),
            last_uptime_ms: *last_uptime_ms,
            last_wall_ms: *last_wall_ms,
        },
        EventKind::TimeSync {
            unix_ms,
            uncertainty_ms,
            previous_unix_ms,
        } => api::EventKind::TimeSync {
            unix_ms: *unix_ms,
            uncertainty_ms: *uncertainty_ms,
            previous_unix_ms: *previous_unix_ms,
        },
        EventKind::Fault { code, detail } => api::EventKind::Fault {
            code: *code,
            detail: detail.clone(),
        },
        EventKind::Ota { from, to } => api::EventKind::Ota {
            from: v(*from),
            to: v(*to),
            outcome: api::OtaOutcome::Installed,
        },
        EventKind::Config => api::EventKind::Config {},
        EventKind::Paired => api::EventKind::Paired {},
        EventKind::OtaResult {
            from,
            to,
            confirmed,
        } => api::EventKind::Ota {
            from: v(*from),
            to: v(*to),
            outcome: if *confirmed {
                api::OtaOutcome::Confirmed
            } else {
                api::OtaOutcome::RolledBack
            },
        },
    };
    api::Event {
        seq: u64::from(e.id),
        boot_id: u64::from(e.boot_id),
        uptime_ms: e.uptime_ms,
        wall_ms: e.wall_ms,
        kind,
    }
}

/// Answer of the routes that only act (reboot, factory reset, OTA).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    /// Always true.
    pub ok: bool,
    /// What happens next.
    pub message: alloc::string::String,
}
