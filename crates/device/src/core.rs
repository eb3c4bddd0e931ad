//! The device core: boot, the metering → store loop, and API v1 handlers.
//!
//! [`Device`] owns the store, the metering engine, the time model, keys and
//! settings. It is fed sample sets ([`Device::push_samples`]) and requests
//! ([`crate::http::Service`]); it returns records, responses and
//! [`Action`]s. It never touches a socket or a clock itself.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use embedded_storage::nor_flash::NorFlash;
use metering::{Interval, Layout, Meter, Registers};
use protocol::auth::{AUTH_HEADER, AuthError, Authorization, BodyHasher, body_sha256};
use protocol::{ApiKey, DeviceSecret, Verifier};
use store::record::{Circuit, Flags, Record, Voltage};
use store::{Cursor, MountStatus, Store};

use protocol::api as wire_api;
use protocol::api::Validate;
use protocol::firmware::FirmwareVersion;

use crate::api::{self, Request, Response, json_ok};
use crate::http::Service;
use crate::identity;
use crate::legacy;
use crate::ota::{OtaOptions, Upload};
use crate::platform::OtaSlot;
use crate::routes::{Access, Endpoint, Route};
use crate::state::{Calib, Event, EventKind, Pairing, Persisted};
use crate::time::TimeModel;
use crate::wire;

/// Fixed facts about the hardware and build, given by the shell.
#[derive(Debug, Clone)]
pub struct Options {
    /// Metering engine configuration (sample rate, layout, default
    /// calibration). The interval length comes from the persisted settings.
    pub meter: metering::Config,
    /// Where the store lives in the flash.
    pub store: store::Config,
    /// Board name (`esp32c3`, `sim`).
    pub board: &'static str,
    /// Running firmware version.
    pub firmware_version: FirmwareVersion,
    /// Version number answered by legacy `GET /version` (the original ran 102).
    pub legacy_version: u32,
    /// Check request timestamps against the device's wall clock once it is
    /// set. Off when the device's clock runs faster than real time (the
    /// simulator at `--speed` > 1); replay protection does not depend on it.
    pub auth_uses_wall_clock: bool,
    /// Request timestamp window (ms).
    pub auth_window_ms: u64,
    /// Most records in one `GET /records` answer.
    pub max_records_per_response: u32,
    /// Most bytes in one binary `GET /records` answer.
    pub max_response_bytes: usize,
    /// OTA: public key and board for firmware manifests.
    pub ota: OtaOptions,
    /// How the AP is protected while unpaired ([`identity::SetupAp`]).
    pub setup_ap: identity::SetupAp,
}

impl Options {
    /// Defaults for a board with the given engine configuration.
    pub fn new(meter: metering::Config, board: &'static str) -> Self {
        Self {
            meter,
            store: store::Config::default(),
            board,
            firmware_version: FirmwareVersion::new(0, 1, 0),
            legacy_version: 200,
            auth_uses_wall_clock: true,
            auth_window_ms: protocol::auth::DEFAULT_WINDOW_MS,
            max_records_per_response: 2000,
            max_response_bytes: 64 * 1024,
            ota: OtaOptions::default(),
            setup_ap: identity::SetupAp::Open,
        }
    }
}

/// Something the shell must do after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Restart the device (after the response went out).
    Reboot,
}

/// Why the device could not boot.
#[derive(Debug)]
pub enum BootError<E> {
    /// The store could not be mounted (flash error or bad configuration).
    Store(store::Error<E>),
    /// The metering configuration is invalid.
    Meter(metering::ConfigError),
}

impl<E: core::fmt::Debug> core::fmt::Display for BootError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::Store(e) => write!(f, "store: {e}"),
            BootError::Meter(e) => write!(f, "metering configuration: {e:?}"),
        }
    }
}

/// A failed boot: the error, and the flash and OTA slot handed back.
pub struct BootFailure<F: NorFlash, O> {
    /// The flash, untouched since the failure.
    pub flash: F,
    /// The OTA slot.
    pub ota: O,
    /// What went wrong.
    pub error: BootError<F::Error>,
}

impl<F: NorFlash, O> core::fmt::Debug for BootFailure<F, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "BootFailure({:?})", self.error)
    }
}

/// Why [`Device::self_test`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfTestError {
    /// A fault was recorded since boot (state write or record append).
    Fault(String),
    /// The store did not read back.
    Store(String),
    /// `GET /api/v1/info` did not answer 200 with this build's version.
    Api(u16),
}

impl core::fmt::Display for SelfTestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SelfTestError::Fault(m) => write!(f, "fault since boot: {m}"),
            SelfTestError::Store(m) => write!(f, "store: {m}"),
            SelfTestError::Api(s) => write!(f, "GET /api/v1/info answered {s}"),
        }
    }
}

/// Error from committing a record.
pub type StoreError<F> = store::Error<<F as embedded_storage::nor_flash::ErrorType>::Error>;

/// What [`Device::boot`] found.
#[derive(Debug, Clone)]
pub struct BootReport {
    /// How the store mounted.
    pub mount: MountStatus,
    /// Boot counter after this boot.
    pub boot_count: u32,
    /// Whether the previous boot ended cleanly.
    pub clean: bool,
    /// The last record found at boot.
    pub last_record: Option<Record>,
}

/// The device application.
pub struct Device<F: NorFlash, O: OtaSlot> {
    opts: Options,
    mac: [u8; 6],
    store: Store<F>,
    meter: Meter,
    st: Persisted,
    api_key: Option<ApiKey>,
    time: TimeModel,
    verifier: Verifier,
    /// Uptime at which the meter's sample 0 was taken.
    meter_origin_ms: u64,
    /// Samples pushed into the current meter.
    samples_in_meter: u64,
    last_record: Option<Record>,
    ota: O,
    upload: Option<Upload>,
    pending: Option<Action>,
    legacy_served: Option<u64>,
    fault: Option<String>,
}

/// Registers restored from a record's cumulative mWh (the sub-mWh remainder
/// of the interrupted interval is lost, at most 1 mWh per circuit per cut).
fn registers_from(r: &Record) -> Registers {
    let mut regs = Registers::default();
    for (i, c) in r.circuits().iter().enumerate().take(metering::MAX_CIRCUITS) {
        regs.import_uwh[i] = c.import_mwh.saturating_mul(1000);
        regs.export_uwh[i] = c.export_mwh.saturating_mul(1000);
    }
    regs
}

/// Rounds to the nearest integer; `as` saturates and maps NaN to 0.
fn f32_to_i32(x: f32) -> i32 {
    if x >= 0.0 {
        (x + 0.5) as i32
    } else {
        (x - 0.5) as i32
    }
}

/// Rounds to the nearest non-negative integer (saturating, NaN → 0).
fn f32_to_u32(x: f32) -> u32 {
    (x + 0.5) as u32
}

impl<F: NorFlash, O: OtaSlot> Device<F, O> {
    /// Boots: mounts the store, restores state and energy registers, logs a
    /// boot event and persists it. `boot_id` must be random per boot;
    /// `uptime_ms` is the clock at this moment (metering starts now).
    pub fn boot(
        flash: F,
        ota: O,
        mac: [u8; 6],
        boot_id: u32,
        uptime_ms: u64,
        opts: Options,
    ) -> Result<(Self, BootReport), BootFailure<F, O>> {
        let (mut store, mount) = match Store::mount(flash, opts.store) {
            Ok(m) => m,
            Err(e) => {
                return Err(BootFailure {
                    flash: e.flash,
                    ota,
                    error: BootError::Store(e.error),
                });
            }
        };
        let mut blob = alloc::vec![0u8; store::MAX_STATE];
        let st = match store.read_state(&mut blob) {
            Ok(n) => Persisted::decode(&blob[..n]),
            Err(_) => None,
        };
        let state_was_readable = st.is_some();
        let mut st = st.unwrap_or_else(|| {
            // A fresh device takes the interval of the board's engine config.
            let mut p = Persisted::default();
            let rate = opts.meter.sample_rate_hz.max(1);
            p.settings.interval_s = (opts.meter.interval_samples / rate).clamp(1, 3600);
            p
        });

        // The newest record bounds when the previous boot stopped.
        let next = store.next_seq();
        let last_record = if next > 0 {
            let mut cursor = Cursor::new(next.saturating_sub(2));
            let mut last = None;
            while let Ok(Some(r)) = store.read(&mut cursor) {
                last = Some(r);
            }
            last
        } else {
            None
        };

        let clean = st.clean_shutdown;
        let first_boot = st.boot_count == 0;
        let prev_boot_id = (!first_boot).then_some(st.last_boot_id);
        // The last moment the previous boot is known to have been alive: its
        // newest record, or a later persisted time sync.
        let (prev_uptime, prev_wall) = match (&last_record, st.last_wall) {
            (Some(r), Some((b, u, w))) if b == r.boot_id && u > r.uptime_ms => (Some(u), Some(w)),
            (Some(r), _) if Some(r.boot_id) == prev_boot_id => (Some(r.uptime_ms), r.wall_ms),
            (_, Some((b, u, w))) if Some(b) == prev_boot_id => (Some(u), Some(w)),
            _ => (None, None),
        };
        st.boot_count = st.boot_count.wrapping_add(1);
        st.last_boot_id = boot_id;
        st.clean_shutdown = false;
        let at = |kind| Event {
            id: 0,
            boot_id,
            uptime_ms,
            wall_ms: None,
            kind,
        };
        if !clean && let Some(last_boot_id) = prev_boot_id {
            st.push_event(at(EventKind::PowerLoss {
                last_boot_id,
                last_uptime_ms: prev_uptime.unwrap_or(0),
                last_wall_ms: prev_wall,
            }));
        }
        st.push_event(at(EventKind::Boot {
            software: clean,
            last_boot_id: prev_boot_id,
            last_uptime_ms: prev_uptime,
            last_wall_ms: prev_wall,
        }));
        let repaired = match mount {
            MountStatus::Clean => None,
            MountStatus::Recovered(r) => Some(format!(
                "store repaired: torn_tail={} bad_sectors={} state_lost={}",
                r.torn_tail, r.bad_sectors, r.state_lost
            )),
            MountStatus::Formatted { reason } if !first_boot || state_was_readable => {
                Some(format!("store formatted: {reason:?}"))
            }
            MountStatus::Formatted { .. } => None,
        };
        if let Some(detail) = repaired {
            st.push_event(at(EventKind::Fault {
                code: 1,
                detail: Some(detail),
            }));
        }

        let meter = match Self::make_meter(&opts, &st) {
            Ok(m) => m,
            Err(error) => {
                return Err(BootFailure {
                    flash: store.into_flash(),
                    ota,
                    error,
                });
            }
        };
        let api_key = st
            .device_secret
            .map(|s| DeviceSecret::from_bytes(s).api_key());
        let verifier = match st.auth_floor_ms {
            Some(floor) => Verifier::with_floor(opts.auth_window_ms, floor),
            None => Verifier::new(opts.auth_window_ms),
        };
        let mut dev = Self {
            opts,
            mac,
            store,
            meter,
            st,
            api_key,
            time: TimeModel::new(boot_id),
            verifier,
            meter_origin_ms: uptime_ms,
            samples_in_meter: 0,
            last_record: None,
            ota,
            upload: None,
            pending: None,
            legacy_served: None,
            fault: None,
        };
        if let Some(r) = &last_record {
            dev.meter.restore_registers(registers_from(r));
        }
        dev.save_state();
        let report = BootReport {
            mount,
            boot_count: dev.st.boot_count,
            clean,
            last_record,
        };
        Ok((dev, report))
    }

    fn make_meter(opts: &Options, st: &Persisted) -> Result<Meter, BootError<F::Error>> {
        let mut cfg = opts
            .meter
            .with_interval_seconds(st.settings.interval_s.clamp(1, 3600));
        if let Some(c) = &st.calib {
            c.apply(&mut cfg.cal);
        }
        Meter::new(cfg).map_err(BootError::Meter)
    }

    /// Persists the state blob; a failure is remembered as a fault.
    fn save_state(&mut self) {
        self.st.auth_floor_ms = self.verifier.high_water_ms();
        match self.st.encode(store::MAX_STATE) {
            Some(blob) => {
                if let Err(e) = self.store.write_state(&blob) {
                    self.fault = Some(format!("state write failed: {e}"));
                }
            }
            None => self.fault = Some(String::from("state does not fit")),
        }
    }

    fn log(&mut self, now_ms: u64, kind: EventKind) {
        let e = Event {
            id: 0,
            boot_id: self.time.boot_id,
            uptime_ms: now_ms,
            wall_ms: self.time.wall_ms(now_ms),
            kind,
        };
        self.st.push_event(e);
    }

    /// Number of `u16` values in one sample set.
    pub fn channel_count(&self) -> usize {
        self.meter.config().channel_count()
    }

    /// Sample sets per second the engine expects.
    pub fn sample_rate_hz(&self) -> u32 {
        self.meter.config().sample_rate_hz
    }

    /// Feeds interleaved sample sets (whole sets; a trailing partial set is
    /// ignored). Each completed interval is committed to the store before
    /// this returns. Returns the records committed (with their seqs).
    pub fn push_samples(&mut self, sets: &[u16]) -> Result<Vec<Record>, StoreError<F>> {
        let n = self.channel_count();
        let mut committed = Vec::new();
        for set in sets.chunks_exact(n) {
            self.samples_in_meter += 1;
            if let Some(iv) = self.meter.push(set) {
                self.commit(&iv)?;
                committed.extend(self.last_record);
            }
        }
        Ok(committed)
    }

    /// Uptime at the end of the samples pushed so far.
    pub fn metered_uptime_ms(&self) -> u64 {
        self.meter_origin_ms + self.samples_in_meter * 1000 / u64::from(self.sample_rate_hz())
    }

    fn record_from(&self, iv: &Interval) -> Record {
        let rate = u64::from(self.sample_rate_hz());
        let end_sample = iv.start_sample + u64::from(iv.samples);
        let uptime_ms = self.meter_origin_ms + end_sample * 1000 / rate;
        let mut r = Record {
            seq: 0,
            boot_id: self.time.boot_id,
            uptime_ms,
            wall_ms: self.time.wall_ms(uptime_ms),
            duration_ms: (u64::from(iv.samples) * 1000 / rate) as u32,
            flags: Flags(if iv.partial { Flags::PARTIAL } else { 0 }),
            frequency_mhz: f32_to_u32(iv.frequency_hz * 1000.0),
            voltage_count: iv.n_voltages,
            circuit_count: iv.n_circuits,
            ..Record::default()
        };
        for (o, v) in r
            .voltages
            .iter_mut()
            .zip(iv.voltages.iter())
            .take(iv.n_voltages as usize)
        {
            *o = Voltage {
                rms_cv: f32_to_u32(v.rms * 100.0),
                min_cv: f32_to_u32(v.min * 100.0),
                max_cv: f32_to_u32(v.max * 100.0),
            };
        }
        for (i, (o, c)) in r
            .circuits
            .iter_mut()
            .zip(iv.circuits.iter())
            .enumerate()
            .take(iv.n_circuits as usize)
        {
            *o = Circuit {
                i_rms_ma: f32_to_u32(c.i_rms * 1000.0),
                real_power_dw: f32_to_i32(c.real_power_w * 10.0),
                real_power_min_dw: f32_to_i32(c.p_min_w * 10.0),
                real_power_max_dw: f32_to_i32(c.p_max_w * 10.0),
                apparent_power_dva: f32_to_u32(c.apparent_power_va * 10.0),
                power_factor_milli: f32_to_i32(c.power_factor * 1000.0).clamp(-1000, 1000) as i16,
                import_mwh: iv.registers.import_uwh[i] / 1000,
                export_mwh: iv.registers.export_uwh[i] / 1000,
            };
        }
        r
    }

    fn commit(&mut self, iv: &Interval) -> Result<u64, StoreError<F>> {
        let mut r = self.record_from(iv);
        match self.store.append(&r) {
            Ok(seq) => {
                r.seq = seq;
                self.last_record = Some(r);
                Ok(seq)
            }
            Err(e) => {
                self.fault = Some(format!("append failed: {e}"));
                let now = self.metered_uptime_ms();
                self.log(
                    now,
                    EventKind::Fault {
                        code: 2,
                        detail: self.fault.clone(),
                    },
                );
                Err(e)
            }
        }
    }

    /// Closes the running interval early (as a partial record), e.g. before
    /// a requested reboot or a change of interval length.
    pub fn flush_partial(&mut self) -> Result<Option<u64>, StoreError<F>> {
        match self.meter.finish() {
            Some(iv) if iv.samples > 0 => self.commit(&iv).map(Some),
            _ => Ok(None),
        }
    }

    /// The action the shell must carry out, if any (taken once).
    pub fn take_action(&mut self) -> Option<Action> {
        self.pending.take()
    }

    /// The store (read-only use by shells and tests).
    pub fn store_mut(&mut self) -> &mut Store<F> {
        &mut self.store
    }

    /// Consumes the device, returning the flash (power-cut simulation).
    pub fn into_flash(self) -> F {
        self.store.into_flash()
    }

    /// Current energy registers.
    pub fn registers(&self) -> Registers {
        self.meter.registers()
    }

    /// MAC as 12 upper-case hex digits.
    pub fn id(&self) -> String {
        identity::mac_hex(&self.mac)
    }

    /// The SSID the device announces now.
    pub fn ssid(&self) -> String {
        if self.st.settings.legacy {
            identity::legacy_ssid(&self.mac)
        } else {
            identity::ssid(&self.st.settings.ssid_prefix, &self.mac)
        }
    }

    /// The AP's WPA2 passphrase now, `None` for an open AP. Paired: the
    /// passphrase derived from the device secret. Unpaired: the build's
    /// policy ([`Options::setup_ap`]): a per-device setup passphrase derived
    /// from the build's setup key, or open (see [`identity::SetupAp`]).
    pub fn ap_password(&self) -> Option<String> {
        match (self.st.device_secret, self.opts.setup_ap) {
            (Some(s), _) => Some(
                DeviceSecret::from_bytes(s)
                    .ap_password()
                    .as_str()
                    .to_string(),
            ),
            (None, identity::SetupAp::SetupKey(k)) => {
                Some(identity::setup_password(&k, &self.mac).as_str().to_string())
            }
            (None, identity::SetupAp::Open) => None,
        }
    }

    /// Whether the device has been paired.
    pub fn is_paired(&self) -> bool {
        self.api_key.is_some()
    }

    /// Sets the wall clock from the shell (an installer's sync, SNTP):
    /// the same effect as `POST /api/v1/time`, event included.
    pub fn sync_time(&mut self, now_ms: u64, wall_ms: u64, uncertainty_ms: u32) {
        let _ = self.set_time(now_ms, wall_ms, uncertainty_ms);
    }

    /// Turns legacy mode on or off (a build or jumper option on the board;
    /// persisted like `PUT /config`).
    pub fn set_legacy(&mut self, on: bool) {
        if self.st.settings.legacy != on {
            self.st.settings.legacy = on;
            self.save_state();
        }
    }

    /// The latest fault message, if any.
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    /// The time model of this boot.
    pub fn time(&self) -> &TimeModel {
        &self.time
    }

    /// The firmware version this build runs.
    pub fn firmware_version(&self) -> FirmwareVersion {
        self.opts.firmware_version
    }

    /// Records how an OTA trial ended, as an `ota` event (`confirmed` or
    /// `rolled_back`): the shell calls it after marking the image valid
    /// (this build is `to`) or, after a rollback, from the old image
    /// (`from`) once it runs again, if its bootloader tells it.
    pub fn record_ota_result(
        &mut self,
        now_ms: u64,
        from: FirmwareVersion,
        to: FirmwareVersion,
        confirmed: bool,
    ) {
        let v = |v: FirmwareVersion| [v.major, v.minor, v.patch];
        self.log(
            now_ms,
            EventKind::OtaResult {
                from: v(from),
                to: v(to),
                confirmed,
            },
        );
        self.save_state();
    }

    /// Self-test of a freshly installed firmware image, run by the shell on
    /// the first boot after an OTA (the firmware, and the simulator's
    /// virtual bootloader) before it marks the image valid; on an error the
    /// shell rejects the image and the previous one boots again.
    ///
    /// Passes when: no fault was recorded since boot (the boot's state write
    /// and every record append succeeded), the persisted state reads back
    /// and names this boot, the newest records of the log read back, and
    /// `GET /api/v1/info` answers 200 through the route table with this
    /// build's firmware version. It reads flash but writes nothing.
    pub fn self_test(&mut self, now_ms: u64) -> Result<(), SelfTestError> {
        if let Some(f) = &self.fault {
            return Err(SelfTestError::Fault(f.clone()));
        }
        let mut blob = alloc::vec![0u8; store::MAX_STATE];
        let n = self
            .store
            .read_state(&mut blob)
            .map_err(|e| SelfTestError::Store(format!("state: {e}")))?;
        match Persisted::decode(&blob[..n]) {
            Some(p)
                if p.last_boot_id == self.time.boot_id && p.boot_count == self.st.boot_count => {}
            _ => {
                return Err(SelfTestError::Store(String::from(
                    "state does not read back",
                )));
            }
        }
        let mut cursor = Cursor::new(self.store.next_seq().saturating_sub(2));
        loop {
            match self.store.read(&mut cursor) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(SelfTestError::Store(format!("log: {e}"))),
            }
        }
        let crate::routes::Lookup::Found(route) =
            crate::routes::lookup(false, "GET", "/api/v1/info")
        else {
            return Err(SelfTestError::Api(404));
        };
        let req = Request {
            method: "GET",
            path: "/api/v1/info",
            query: None,
            headers: &api::NoHeaders,
            body: &[],
        };
        let resp = self.handle(now_ms, route, &req);
        if resp.status != 200 {
            return Err(SelfTestError::Api(resp.status));
        }
        match serde_json::from_slice::<wire_api::Info>(&resp.body) {
            Ok(info) if info.firmware == self.opts.firmware_version => Ok(()),
            _ => Err(SelfTestError::Api(resp.status)),
        }
    }

    // ------------------------------------------------------------ auth

    fn authorize(&mut self, now_ms: u64, route: &Route, req: &Request<'_>) -> Result<(), Response> {
        match route.access {
            Access::Open | Access::Legacy => return Ok(()),
            Access::OpenWhileUnpaired if !self.is_paired() => return Ok(()),
            Access::OpenWhileUnpaired | Access::Signed => {}
        }
        let Some(key) = self.api_key.clone() else {
            return Err(Response::error(401, "device is not paired"));
        };
        let wall = self.auth_wall(now_ms);
        let digest = body_sha256(req.body);
        let pq = req.path_and_query();
        self.verifier
            .verify_header(
                &key,
                req.method,
                &pq,
                &digest,
                req.headers.get(AUTH_HEADER),
                wall,
            )
            .map(|_| ())
            .map_err(auth_refusal)
    }

    fn auth_wall(&self, now_ms: u64) -> Option<u64> {
        if self.opts.auth_uses_wall_clock {
            self.time.wall_ms(now_ms)
        } else {
            None
        }
    }

    // ------------------------------------------------------------ handlers

    fn channel_map(&self) -> wire_api::ChannelMap {
        let layout = self.meter.config().layout;
        wire_api::ChannelMap {
            layout: match layout {
                Layout::SinglePhase { .. } => wire_api::ChannelLayout::SinglePhase,
                Layout::ThreePhase => wire_api::ChannelLayout::ThreePhase,
                Layout::ThreePhaseVirtual => wire_api::ChannelLayout::ThreePhaseVirtual,
            },
            cts: layout.circuits() as u8,
        }
    }

    fn clock_state(&self, now_ms: u64) -> wire_api::ClockState {
        match (self.time.sync, self.time.wall_ms(now_ms)) {
            (Some(s), Some(now)) => {
                // Crystal drift bound: 100 ppm of the time since the sync.
                let drift = (now_ms.saturating_sub(s.uptime_ms) / 10_000) as u32;
                wire_api::ClockState::Set {
                    now_ms: now,
                    uncertainty_ms: s.uncertainty_ms.saturating_add(drift),
                }
            }
            _ => wire_api::ClockState::Unset,
        }
    }

    fn info(&mut self, now_ms: u64) -> Response {
        let stats = self.store.stats();
        let sector = F::ERASE_SIZE as u64;
        let records = match (stats.oldest_seq, stats.newest_seq) {
            (Some(a), Some(b)) if b >= a => b - a + 1,
            _ => 0,
        };
        let info = wire_api::Info {
            api_version: wire_api::API_VERSION,
            id: self.id(),
            ssid: self.ssid(),
            firmware: self.opts.firmware_version,
            board: self.opts.board.to_string(),
            channels: self.channel_map(),
            interval_s: self.st.settings.interval_s,
            records: wire_api::SeqRange {
                first: stats.oldest_seq,
                last: stats.newest_seq,
            },
            acked_seq: (stats.acked_seq > 0).then_some(stats.acked_seq),
            clock: self.clock_state(now_ms),
            boot_id: u64::from(self.time.boot_id),
            uptime_ms: now_ms,
            boot_count: self.st.boot_count,
            storage: wire_api::StorageUse {
                used_bytes: u64::from(stats.live_sectors) * sector,
                total_bytes: u64::from(self.opts.store.size),
                records,
            },
            paired: self.is_paired(),
            legacy: self.st.settings.legacy,
        };
        json_ok(&info)
    }

    fn pair(&mut self, now_ms: u64, req: &Request<'_>) -> Response {
        if self.is_paired() {
            return Response::error(409, "already paired; factory-reset first");
        }
        let body: wire_api::PairRequest = match decode(req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Ok(secret) = body.device_secret() else {
            return Response::error(400, "device_secret must be 64 hex digits");
        };
        // The state blob is small: keep what fits.
        let cut = |s: Option<String>| {
            let mut s = s.unwrap_or_default();
            while s.len() > crate::state::MAX_PAIR_FIELD {
                s.pop();
            }
            s
        };
        if body.token.len() > crate::state::MAX_PAIR_FIELD {
            return Response::error(400, "token: too long for this device (64 bytes max)");
        }
        self.st.device_secret = Some(*secret.as_bytes());
        self.api_key = Some(secret.api_key());
        self.st.pairing = Some(Pairing {
            token: body.token,
            profile: cut(body.profile),
            server: cut(body.server),
        });
        self.log(now_ms, EventKind::Paired);
        self.save_state();
        json_ok(&wire_api::PairResponse {
            id: self.id(),
            ssid: self.ssid(),
        })
    }

    fn set_time(&mut self, now_ms: u64, wall_ms: u64, uncertainty_ms: u32) -> Option<u64> {
        let before = self.time.set(now_ms, wall_ms, uncertainty_ms);
        self.verifier.clock_set(wall_ms);
        self.st.last_wall = Some((self.time.boot_id, now_ms, wall_ms));
        self.log(
            now_ms,
            EventKind::TimeSync {
                unix_ms: wall_ms,
                uncertainty_ms,
                previous_unix_ms: before,
            },
        );
        self.save_state();
        before
    }

    fn time_route(&mut self, now_ms: u64, req: &Request<'_>) -> Response {
        let body: wire_api::TimeRequest = match decode(req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let before = self.set_time(now_ms, body.unix_ms, body.uncertainty_ms);
        json_ok(&wire_api::TimeResponse {
            boot_id: u64::from(self.time.boot_id),
            uptime_ms: now_ms,
            previous_unix_ms: before,
        })
    }

    fn records(&mut self, req: &Request<'_>) -> Response {
        let after = match req.query_param("after").map(str::parse::<u64>) {
            None => 0,
            Some(Ok(v)) => v,
            Some(Err(_)) => return Response::error(400, "after must be an unsigned integer"),
        };
        let max = self.opts.max_records_per_response;
        let limit = match req.query_param("limit").map(str::parse::<u32>) {
            None => max,
            Some(Ok(v)) if v >= 1 => v.min(max),
            Some(_) => return Response::error(400, "limit must be a positive integer"),
        };
        let next_seq = self.store.next_seq();
        if req.wants_json() {
            let mut cursor = Cursor::new(after);
            let mut records = Vec::new();
            while records.len() < limit as usize {
                match self.store.read(&mut cursor) {
                    Ok(Some(r)) => records.push(wire::RecordJson::from(&r)),
                    Ok(None) => break,
                    Err(e) => return Response::error(500, &format!("flash read failed: {e}")),
                }
            }
            let mut r = json_ok(&wire::RecordsJson { records, next_seq });
            r.headers.push(("X-OFMon-Next-Seq", next_seq.to_string()));
            return r;
        }
        // Binary: the store's own entries. A decoder created with `after`
        // decodes them; entries of seq <= after may lead (block context).
        let last_wanted = after.saturating_add(u64::from(limit));
        let mut cursor = Cursor::new(after);
        let mut out = Vec::new();
        let mut chunk = alloc::vec![0u8; 4096];
        let mut count = 0u32;
        let mut decoder = store::record::Decoder::new(after);
        let mut last_seq = None;
        'fill: while out.len() < self.opts.max_response_bytes {
            let n = match self.store.read_raw(&mut cursor, &mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Response::error(500, &format!("flash read failed: {e}")),
            };
            // Walk the entries to stop exactly at `limit` records.
            let mut pos = 0;
            while pos < n {
                match decoder.decode(&chunk[pos..n]) {
                    Ok(Some(d)) => {
                        if d.consumed == 0 {
                            break;
                        }
                        if let Some(rec) = d.record {
                            if rec.seq > last_wanted {
                                break 'fill;
                            }
                            count += 1;
                            last_seq = Some(rec.seq);
                        }
                        out.extend_from_slice(&chunk[pos..pos + d.consumed]);
                        pos += d.consumed;
                    }
                    Ok(None) => break,
                    Err(_) => return Response::error(500, "stored entry failed to decode"),
                }
            }
            if cursor.after() >= last_wanted {
                break;
            }
        }
        let mut r = Response::with(200, api::BINARY, out);
        r.headers.push(("X-OFMon-Count", count.to_string()));
        r.headers.push(("X-OFMon-Next-Seq", next_seq.to_string()));
        if let Some(s) = last_seq {
            r.headers.push(("X-OFMon-Last-Seq", s.to_string()));
        }
        r
    }

    fn ack(&mut self, req: &Request<'_>) -> Response {
        let body: wire_api::AckRequest = match decode(req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        if body.seq >= self.store.next_seq() {
            return Response::error(400, "seq: above the newest record");
        }
        if let Err(e) = self.store.ack(body.seq) {
            return Response::error(500, &format!("ack failed: {e}"));
        }
        // Persist the auth floor along with the ack.
        self.save_state();
        json_ok(&wire_api::AckResponse {
            acked_seq: self.store.acked(),
        })
    }

    fn events(&mut self, req: &Request<'_>) -> Response {
        let after = match req.query_param("after").map(str::parse::<u64>) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return Response::error(400, "after must be an unsigned integer"),
        };
        let limit = match req.query_param("limit").map(str::parse::<usize>) {
            None => usize::MAX,
            Some(Ok(v)) if v > 0 => v,
            Some(_) => return Response::error(400, "limit must be a positive integer"),
        };
        let events = self
            .st
            .events
            .iter()
            .filter(|e| after.is_none_or(|a| u64::from(e.id) > a))
            .take(limit)
            .map(wire::event_to_api)
            .collect();
        json_ok(&wire_api::EventsResponse { events })
    }

    fn device_config(&self) -> wire_api::DeviceConfig {
        let cfg = self.meter.config();
        let nv = cfg.layout.voltages();
        let nc = cfg.layout.circuits();
        let cal = &cfg.cal;
        wire_api::DeviceConfig {
            interval_s: self.st.settings.interval_s,
            ssid_prefix: self.st.settings.ssid_prefix.clone(),
            legacy_mode: self.st.settings.legacy,
            channels: self.channel_map(),
            calibration: wire_api::Calibration {
                voltages: (0..nv)
                    .map(|i| wire_api::VoltageCalibration {
                        gain: cal.v_gain[i],
                        offset: cal.v_offset[i],
                    })
                    .collect(),
                currents: (0..nc)
                    .map(|i| wire_api::CurrentCalibration {
                        gain: cal.i_gain[i],
                        offset: cal.i_offset[i],
                        phase_deg: cal.phase_deg[i],
                        skew_us: cal.skew_us[i],
                    })
                    .collect(),
            },
        }
    }

    fn put_config(&mut self, now_ms: u64, req: &Request<'_>) -> Response {
        let body: wire_api::DeviceConfig = match decode(req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        if body.channels != self.channel_map() {
            return Response::error(400, "channels: the channel map is fixed by the hardware");
        }
        let calib = Calib::from_api(&body.calibration);
        let mut cal = self.meter.config().cal;
        calib.apply(&mut cal);
        if let Err(e) = self.meter.set_calibration(cal) {
            return Response::error(400, &format!("calibration refused: {e:?}"));
        }
        self.st.calib = Some(calib);
        self.st.settings.legacy = body.legacy_mode;
        self.st.settings.ssid_prefix = body.ssid_prefix;
        if body.interval_s != self.st.settings.interval_s {
            // Close the running interval, then restart the engine on the new
            // grid with the same registers.
            if let Err(e) = self.flush_partial() {
                return Response::error(
                    500,
                    &format!("could not commit the running interval: {e}"),
                );
            }
            self.st.settings.interval_s = body.interval_s;
            if let Err(r) = self.rebuild_meter() {
                return r;
            }
        }
        self.log(now_ms, EventKind::Config);
        self.save_state();
        json_ok(&self.device_config())
    }

    fn rebuild_meter(&mut self) -> Result<(), Response> {
        let regs = self.meter.registers();
        let uptime = self.metered_uptime_ms();
        match Self::make_meter(&self.opts, &self.st) {
            Ok(mut m) => {
                m.restore_registers(regs);
                self.meter = m;
                self.meter_origin_ms = uptime;
                self.samples_in_meter = 0;
                Ok(())
            }
            Err(e) => Err(Response::error(400, &format!("{e}"))),
        }
    }

    fn calibrate(&mut self, now_ms: u64, req: &Request<'_>) -> Response {
        let body: wire_api::CalibrateRequest = match decode(req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        if body.resistive_load {
            return Response::error(
                501,
                "resistive_load phase calibration is not implemented (a power factor gives the phase error's size, not its sign); set phase_deg with PUT /config",
            );
        }
        let Some(last) = self.last_record else {
            return Response::error(409, "no measurement yet in this boot; wait one interval");
        };
        let cfg = self.meter.config();
        let (nv, nc) = (cfg.layout.voltages(), cfg.layout.circuits());
        if body.voltages_v.len() > nv || body.currents_a.len() > nc {
            return Response::error(400, "more reference values than channels");
        }
        let mut cal = cfg.cal;
        for (i, r) in body.voltages_v.iter().enumerate() {
            if let Some(r) = r {
                let measured = last.voltages[i].rms_cv as f32 / 100.0;
                if measured <= 0.0 {
                    return Response::error(409, "voltage channel reads 0; cannot scale");
                }
                cal.v_gain[i] *= r / measured;
            }
        }
        for (i, r) in body.currents_a.iter().enumerate() {
            if let Some(r) = r {
                let measured = last.circuits[i].i_rms_ma as f32 / 1000.0;
                if measured <= 0.0 {
                    return Response::error(409, "CT reads 0 A; cannot scale");
                }
                cal.i_gain[i] *= r / measured;
            }
        }
        let calib = Calib::from_cal(&cal, nv, nc);
        if calib.to_api().validate().is_err() {
            return Response::error(400, "resulting calibration out of range");
        }
        if let Err(e) = self.meter.set_calibration(cal) {
            return Response::error(400, &format!("calibration refused: {e:?}"));
        }
        self.st.calib = Some(calib);
        self.log(now_ms, EventKind::Config);
        self.save_state();
        json_ok(&self.device_config())
    }

    fn live(&mut self, now_ms: u64) -> Response {
        let Some(r) = self.last_record else {
            return Response::error(409, "no measurement yet in this boot; wait one interval");
        };
        json_ok(&wire_api::LiveReading {
            boot_id: u64::from(r.boot_id),
            uptime_ms: r.uptime_ms.min(now_ms),
            wall_ms: r.wall_ms,
            frequency_hz: r.frequency_mhz as f32 / 1000.0,
            voltages_v: r
                .voltages()
                .iter()
                .map(|v| v.rms_cv as f32 / 100.0)
                .collect(),
            currents_a: r
                .circuits()
                .iter()
                .map(|c| c.i_rms_ma as f32 / 1000.0)
                .collect(),
            real_power_w: r
                .circuits()
                .iter()
                .map(|c| c.real_power_dw as f32 / 10.0)
                .collect(),
            apparent_power_va: r
                .circuits()
                .iter()
                .map(|c| c.apparent_power_dva as f32 / 10.0)
                .collect(),
        })
    }

    fn reboot(&mut self) -> Response {
        // A requested reboot loses nothing: the running interval is committed
        // as a partial record first.
        let _ = self.flush_partial();
        self.st.clean_shutdown = true;
        self.save_state();
        self.pending = Some(Action::Reboot);
        json_ok(&wire::Done {
            ok: true,
            message: String::from("rebooting"),
        })
    }

    fn factory_reset(&mut self, now_ms: u64) -> Response {
        if let Err(e) = self.store.reset_log() {
            return Response::error(500, &format!("reset failed: {e}"));
        }
        let boot_count = self.st.boot_count;
        let last_boot_id = self.st.last_boot_id;
        let next_event = self.st.next_event;
        let floor = self.verifier.high_water_ms();
        self.st = Persisted {
            boot_count,
            last_boot_id,
            next_event,
            clean_shutdown: true,
            auth_floor_ms: floor,
            ..Persisted::default()
        };
        self.log(
            now_ms,
            EventKind::Fault {
                code: 3,
                detail: Some(String::from("factory reset")),
            },
        );
        self.api_key = None;
        self.save_state();
        self.pending = Some(Action::Reboot);
        json_ok(&wire::Done {
            ok: true,
            message: String::from("factory reset; rebooting unpaired"),
        })
    }

    // ------------------------------------------------------------ legacy

    fn legacy(&mut self, now_ms: u64, endpoint: Endpoint, req: &Request<'_>) -> Response {
        match endpoint {
            Endpoint::LegacyIndex => {
                Response::with(200, api::HTML, legacy::index_page(&self.id()).into_bytes())
            }
            Endpoint::LegacyVersion => Response::with(
                200,
                api::TEXT,
                self.opts.legacy_version.to_string().into_bytes(),
            ),
            Endpoint::LegacyTelemetry => {
                let mut cursor = Cursor::new(self.store.acked());
                let mut out = Vec::new();
                let mut last = None;
                loop {
                    match self.store.read(&mut cursor) {
                        Ok(Some(r)) => {
                            legacy::push_records(&mut out, &r);
                            last = Some(r.seq);
                        }
                        Ok(None) => break,
                        Err(e) => return Response::error(500, &format!("flash read failed: {e}")),
                    }
                    if out.len() >= 512 * 1024 {
                        break;
                    }
                }
                if last.is_some() {
                    self.legacy_served = last;
                }
                Response::with(200, api::BINARY, out)
            }
            Endpoint::LegacyPowerloss => {
                Response::with(200, api::BINARY, legacy::powerloss_log(&self.st.events))
            }
            Endpoint::LegacyTime => match legacy::parse_time(req.body) {
                Some(ms) => {
                    let _ = self.set_time(now_ms, ms, 1000);
                    Response::with(200, api::TEXT, Vec::new())
                }
                None => Response::error(400, "body must be a u64 LE unix ms"),
            },
            Endpoint::LegacyGetToken => match &self.st.pairing {
                Some(p) => Response::with(200, api::BINARY, legacy::token_bytes(p)),
                None => Response::error(404, "no token"),
            },
            Endpoint::LegacyPostToken => match legacy::parse_token(req.body) {
                Some(p) => {
                    self.st.pairing = Some(p);
                    self.save_state();
                    Response::with(200, api::TEXT, Vec::new())
                }
                None => Response::error(400, "body must be 56 bytes: 20 token + 36 profile"),
            },
            Endpoint::LegacyReset => {
                // Ack only what this client already downloaded: readings
                // written since its /telemetry stay.
                if let Some(seq) = self.legacy_served.take()
                    && let Err(e) = self.store.ack(seq)
                {
                    return Response::error(500, &format!("ack failed: {e}"));
                }
                Response::with(200, api::TEXT, Vec::new())
            }
            _ => Response::error(404, "no such route"),
        }
    }
}

/// Decodes and validates a JSON request body (→ 400 with a short reason).
fn decode<T: serde::de::DeserializeOwned + Validate>(body: &[u8]) -> Result<T, Response> {
    wire_api::decode_request(body).map_err(|e| {
        let mut reason = format!("{e}");
        reason.truncate(160);
        Response::error(400, &reason)
    })
}

fn auth_refusal(e: AuthError) -> Response {
    let reason = match e {
        AuthError::Missing => "missing Authorization header",
        AuthError::Stale => "stale request timestamp",
        AuthError::Replayed => "replayed nonce",
        _ => "bad request signature",
    };
    Response::error(401, reason)
}

impl<F: NorFlash, O: OtaSlot> Service for Device<F, O> {
    fn legacy_enabled(&self) -> bool {
        self.st.settings.legacy
    }

    fn handle(&mut self, now_ms: u64, route: &Route, req: &Request<'_>) -> Response {
        if let Err(r) = self.authorize(now_ms, route, req) {
            return r;
        }
        match route.endpoint {
            Endpoint::Info => self.info(now_ms),
            Endpoint::Pair => self.pair(now_ms, req),
            Endpoint::Time => self.time_route(now_ms, req),
            Endpoint::Records => self.records(req),
            Endpoint::Ack => self.ack(req),
            Endpoint::Events => self.events(req),
            Endpoint::GetConfig => json_ok(&self.device_config()),
            Endpoint::PutConfig => self.put_config(now_ms, req),
            Endpoint::Calibrate => self.calibrate(now_ms, req),
            Endpoint::Live => self.live(now_ms),
            Endpoint::Ota => Response::error(400, "firmware uploads are streamed"),
            Endpoint::Reboot => self.reboot(),
            Endpoint::FactoryReset => self.factory_reset(now_ms),
            e => self.legacy(now_ms, e, req),
        }
    }

    fn upload_begin(&mut self, now_ms: u64, req: &Request<'_>, len: usize) -> Result<(), Response> {
        let Some(key) = self.api_key.clone() else {
            return Err(Response::error(401, "device is not paired"));
        };
        let auth = req
            .headers
            .get(AUTH_HEADER)
            .ok_or(AuthError::Missing)
            .and_then(Authorization::parse)
            .map_err(auth_refusal)?;
        // Freshness and replay now; the signature over the body hash once
        // the body is in (nothing is activated before that).
        self.verifier
            .check_fresh(&auth, self.auth_wall(now_ms))
            .map_err(auth_refusal)?;
        if let Some(mut old) = self.upload.take() {
            old.abort(&mut self.ota);
        }
        let up = Upload::begin(
            &self.opts.ota,
            self.opts.board,
            self.opts.firmware_version,
            &mut self.ota,
            key,
            auth,
            req.method,
            &req.path_and_query(),
            len,
        );
        self.upload = Some(up);
        Ok(())
    }

    fn upload_chunk(&mut self, data: &[u8]) -> Result<(), Response> {
        match self.upload.as_mut() {
            Some(up) => up.chunk(&mut self.ota, data).inspect_err(|_| {
                if let Some(mut up) = self.upload.take() {
                    up.abort(&mut self.ota);
                }
            }),
            None => Err(Response::error(400, "no upload in progress")),
        }
    }

    fn upload_end(&mut self, now_ms: u64, complete: bool) -> Response {
        let Some(up) = self.upload.take() else {
            return Response::error(400, "no upload in progress");
        };
        let wall = self.auth_wall(now_ms);
        match up.finish(&mut self.ota, &mut self.verifier, complete, wall) {
            Ok(version) => {
                let v = self.opts.firmware_version;
                self.log(
                    now_ms,
                    EventKind::Ota {
                        from: [v.major, v.minor, v.patch],
                        to: [version.major, version.minor, version.patch],
                    },
                );
                let _ = self.flush_partial();
                self.st.clean_shutdown = true;
                self.save_state();
                self.pending = Some(Action::Reboot);
                json_ok(&wire::Done {
                    ok: true,
                    message: format!("firmware {version} accepted; rebooting"),
                })
            }
            Err(r) => r,
        }
    }
}

/// The SHA-256 helper re-exported for shells hashing streamed bodies.
pub fn new_body_hasher() -> BodyHasher {
    BodyHasher::new()
}
