//! Power cuts during OTA: the real `device::Device` (the firmware's code)
//! receiving signed firmware uploads through its API while it meters, on
//! one emulated NOR chip laid out like the ESP32-C3's partition table: a
//! two-copy boot-state record (`otadata`), two app slots and the store's
//! data partition. A power cut strikes a random program or erase anywhere
//! on the chip while an image streams in (slot erases and programs,
//! interleaved record appends), at its activation (the last sector's flush
//! and the boot-state write), in the state save after it, and in the trial
//! boot that follows (the bootloader's boot-state update, the device's boot,
//! its self-test and the confirmation write).
//!
//! [`FlashOta`] is the device's `OtaSlot` over that chip, written the way
//! the firmware's (`firmware/esp32c3/src/flash.rs`) is: sequential chunks
//! collected into whole 4 KiB sectors, each erased and programmed once;
//! `activate` flushes the last sector, then writes a boot-state entry
//! `New` for the slot. [`bootloader`] stands in for the ROM/second-stage
//! bootloader with the ESP-IDF rollback rules: a `New` entry is booted on
//! trial (entry rewritten `PendingVerify` first), a trial that never
//! confirmed is rolled back, an image that fails its SHA-256 check is
//! never run. Each boot-state update goes to the other copy with a higher
//! generation and a checksum, so a torn update leaves the previous one in
//! force. (This models the scheme; the real chip runs Espressif's
//! bootloader, which these tests do not execute.)
//!
//! Invariants checked after every reboot: the booted image verifies; it is
//! the old one unless the activation write completed (`activate` returned
//! `Ok`), and then the new one (on trial); once the confirmation write
//! completed it stays the new one; no committed record is lost and the
//! energy registers restart from the newest record; the upload retried
//! after the reboot succeeds and its image runs.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use device::api::{Request, Response};
use device::http::Service;
use device::platform::OtaSlot;
use device::{Device, Options};
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use metering::Layout;
use protocol::auth::{self, BodyHasher};
use protocol::firmware::{FirmwareSigningKey, FirmwareVersion};
use protocol::{FleetSecret, Mac};
use serde::{Deserialize, Serialize};
use sim::source::{self, Profile, Source};
use store::emulated::{CutKind, EmuError, EmulatedFlash, Rng};
use store::{Config, Cursor, Flags};

const SECTOR: usize = 4096;
/// Sample sets per second fed to the engine.
const RATE: u32 = 500;
/// HTTP body chunk the device's shell hands to the core.
const CHUNK: usize = 1024;
/// Board name the campaign's manifests carry.
const BOARD: &str = "torture";
/// Magic of the campaign's app images.
const IMAGE_MAGIC: &[u8; 8] = b"OFMONAPP";
/// Header: magic, version (3 × u16), payload length (u32), padding.
const IMAGE_HEADER: usize = 20;
/// Boot-state entry bytes (magic, generation, slot, state, checksum).
const ENTRY_LEN: usize = 16;
const ENTRY_MAGIC: u32 = 0x4F54_4144; // "OTAD"

/// Parameters of [`run`].
#[derive(Clone, Debug)]
pub struct OtaCutOptions {
    /// Power cuts to inject.
    pub cuts: u32,
    /// Seed of everything random.
    pub seed: u64,
    /// Each app slot (bytes, a multiple of 4 KiB; smaller than the chip's
    /// 1 MiB so thousands of uploads stay fast).
    pub slot_bytes: u32,
    /// Store region in 4 KiB sectors.
    pub store_sectors: u32,
    /// Metering interval (s): one record per this many seconds.
    pub interval_s: u32,
}

impl OtaCutOptions {
    /// CI: ~50 cuts.
    pub fn short() -> Self {
        Self {
            cuts: 50,
            seed: 0x07A0_0001,
            slot_bytes: 64 * 1024,
            store_sectors: 16,
            interval_s: 1,
        }
    }

    /// On demand: 2,000 cuts (target ≥ 1,000).
    pub fn long() -> Self {
        Self {
            cuts: 2_000,
            seed: 0x07A0_1000,
            slot_bytes: 96 * 1024,
            store_sectors: 24,
            interval_s: 1,
        }
    }
}

/// Where a cut struck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    BootState,
    Slot,
    Store,
}

/// Figures of the OTA power-cut campaign.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OtaCutReport {
    /// Cuts injected.
    pub cuts: u64,
    /// Cuts while the image streamed in (before `activate`).
    pub during_stream: u64,
    /// Cuts inside `activate` (last sector flush, boot-state write).
    pub during_activate: u64,
    /// Cuts after `activate` returned, before the reboot (state save).
    pub after_activate: u64,
    /// Cuts in the trial boot (bootloader update, boot, self-test, confirm).
    pub during_trial: u64,
    /// Cuts that hit a slot erase / slot program.
    pub slot_erase_cuts: u64,
    /// Cuts that hit a slot program.
    pub slot_program_cuts: u64,
    /// Cuts that hit the boot-state record (erase or program).
    pub bootstate_cuts: u64,
    /// Cuts that hit a store append, merge or state write.
    pub store_cuts: u64,
    /// Boots (bootloader runs).
    pub boots: u64,
    /// Uploads started.
    pub uploads: u64,
    /// Uploads the device accepted (200) and whose image then ran.
    pub installed: u64,
    /// Boots where the image booted was not the one required (must be 0).
    pub wrong_image_boots: u64,
    /// Boots that selected an image failing its SHA-256 check, or found no
    /// bootable image at all (must be 0).
    pub bad_image_boots: u64,
    /// Trials rolled back because a cut ended them before confirmation.
    pub rollbacks: u64,
    /// Uploads retried after a cut left the old image running.
    pub retries: u64,
    /// Of those, accepted and booted (must equal `retries`).
    pub retries_ok: u64,
    /// Records whose append returned `Ok`.
    pub committed: u64,
    /// Committed records missing or altered (must be 0).
    pub lost: u64,
    /// Boots whose energy registers did not restart from the newest record (must be 0).
    pub register_mismatches: u64,
    /// Records read back in the final verification.
    pub records_on_flash: u64,
    /// Final firmware version.
    pub final_version: String,
    /// Size of each app slot in this run (KiB).
    pub slot_kib: u64,
    /// Real seconds spent.
    pub wall_s: f64,
    /// First problems found (empty when all is well).
    pub problems: Vec<String>,
}

impl OtaCutReport {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.cuts > 0
            && self.wrong_image_boots == 0
            && self.bad_image_boots == 0
            && self.retries_ok == self.retries
            && self.lost == 0
            && self.register_mismatches == 0
            && self.problems.is_empty()
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < 20 {
            self.problems.push(p);
        }
    }
}

// ------------------------------------------------------------------ chip

/// Partition layout of the campaign's chip.
#[derive(Clone, Copy, Debug)]
struct Layout2 {
    slot_bytes: u32,
    store: Config,
}

impl Layout2 {
    fn new(o: &OtaCutOptions) -> Self {
        let slot_bytes = o.slot_bytes / SECTOR as u32 * SECTOR as u32;
        Self {
            slot_bytes,
            store: Config {
                offset: 2 * SECTOR as u32 + 2 * slot_bytes,
                size: o.store_sectors * SECTOR as u32,
                state_sectors: 2,
            },
        }
    }
    fn slot_base(&self, slot: u8) -> u32 {
        2 * SECTOR as u32 + u32::from(slot) * self.slot_bytes
    }
    fn size(&self) -> usize {
        (self.store.offset + self.store.size) as usize
    }
    fn region(&self, offset: u32) -> Region {
        if offset < 2 * SECTOR as u32 {
            Region::BootState
        } else if offset < self.store.offset {
            Region::Slot
        } else {
            Region::Store
        }
    }
}

struct Chip {
    flash: EmulatedFlash,
    layout: Layout2,
    /// Cut the k-th program/erase from now (with this seed).
    arm: Option<(u64, u64)>,
    /// What the cut struck.
    struck: Option<(Region, CutKind)>,
}

/// A handle on the one chip (the store, the OTA writer and the bootloader
/// all hold one, as they share the SPI flash on the board).
#[derive(Clone)]
struct ChipFlash(Rc<RefCell<Chip>>);

impl ChipFlash {
    fn is_cut(&self) -> bool {
        self.0.borrow().flash.is_cut()
    }
    fn op(
        &mut self,
        offset: u32,
        f: impl FnOnce(&mut EmulatedFlash) -> Result<(), EmuError>,
    ) -> Result<(), EmuError> {
        let mut c = self.0.borrow_mut();
        if let Some((k, seed)) = c.arm.take() {
            c.flash.cut_after(k, seed);
        }
        let r = f(&mut c.flash);
        if c.flash.is_cut() && c.struck.is_none() {
            let region = c.layout.region(offset);
            let kind = c.flash.last_cut().unwrap_or(CutKind::Program);
            c.struck = Some((region, kind));
        }
        r
    }
}

impl ErrorType for ChipFlash {
    type Error = EmuError;
}

impl ReadNorFlash for ChipFlash {
    const READ_SIZE: usize = EmulatedFlash::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.borrow_mut().flash.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.borrow().flash.capacity()
    }
}

impl NorFlash for ChipFlash {
    const WRITE_SIZE: usize = EmulatedFlash::WRITE_SIZE;
    const ERASE_SIZE: usize = EmulatedFlash::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.op(from, |f| f.erase(from, to))
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.op(offset, |f| f.write(offset, bytes))
    }
}

// ------------------------------------------------------------ boot state

/// State of the boot-state entry (ESP-IDF's `ota_img_states`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ImgState {
    /// Confirmed.
    Valid = 1,
    /// Activated, not booted yet.
    New = 2,
    /// Booted on trial, not confirmed yet.
    PendingVerify = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    generation: u32,
    slot: u8,
    state: ImgState,
}

fn checksum(bytes: &[u8]) -> [u8; 4] {
    let mut h = BodyHasher::new();
    h.update(bytes);
    let d = h.finish();
    [d[0], d[1], d[2], d[3]]
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0..4].copy_from_slice(&ENTRY_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.generation.to_le_bytes());
        b[8] = self.slot;
        b[9] = self.state as u8;
        let c = checksum(&b[..12]);
        b[12..16].copy_from_slice(&c);
        b
    }
    fn decode(b: &[u8; ENTRY_LEN]) -> Option<Self> {
        if b[0..4] != ENTRY_MAGIC.to_le_bytes() || b[12..16] != checksum(&b[..12]) {
            return None;
        }
        let state = match b[9] {
            1 => ImgState::Valid,
            2 => ImgState::New,
            3 => ImgState::PendingVerify,
            _ => return None,
        };
        (b[8] < 2).then_some(Self {
            generation: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            slot: b[8],
            state,
        })
    }
}

/// The entry in force: the valid copy with the highest generation.
fn read_entry<F: NorFlash>(f: &mut F) -> Option<Entry> {
    let mut best: Option<Entry> = None;
    for copy in 0..2u32 {
        let mut b = [0u8; ENTRY_LEN];
        if f.read(copy * SECTOR as u32, &mut b).is_err() {
            continue;
        }
        if let Some(e) = Entry::decode(&b)
            && best.is_none_or(|x| e.generation > x.generation)
        {
            best = Some(e);
        }
    }
    best
}

/// Writes the next entry into the copy not in force (erase, then program).
fn write_entry<F: NorFlash>(f: &mut F, slot: u8, state: ImgState) -> Result<Entry, F::Error> {
    let generation = read_entry(f).map_or(1, |e| e.generation + 1);
    let e = Entry {
        generation,
        slot,
        state,
    };
    let at = (generation % 2) * SECTOR as u32;
    f.erase(at, at + SECTOR as u32)?;
    f.write(at, &e.encode())?;
    Ok(e)
}

// ----------------------------------------------------------------- images

/// An app image of the campaign: header, payload, SHA-256 trailer (the
/// bootloader checks it, like an ESP app image's appended hash).
fn app_image(version: FirmwareVersion, payload_len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(IMAGE_HEADER + payload_len + 32);
    v.extend_from_slice(IMAGE_MAGIC);
    for x in [version.major, version.minor, version.patch] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&(payload_len as u32).to_le_bytes());
    v.resize(IMAGE_HEADER, 0);
    let mut rng = Rng::new(seed);
    while v.len() < IMAGE_HEADER + payload_len {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(IMAGE_HEADER + payload_len);
    let mut h = BodyHasher::new();
    h.update(&v);
    v.extend_from_slice(&h.finish());
    v
}

/// The version of the image in `slot`, if it is a complete, intact image.
fn verify_slot<F: NorFlash>(f: &mut F, layout: &Layout2, slot: u8) -> Option<FirmwareVersion> {
    let base = layout.slot_base(slot);
    let mut head = [0u8; IMAGE_HEADER];
    f.read(base, &mut head).ok()?;
    if &head[..8] != IMAGE_MAGIC {
        return None;
    }
    let u16at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
    let version = FirmwareVersion::new(u16at(8), u16at(10), u16at(12));
    let payload = u32::from_le_bytes([head[14], head[15], head[16], head[17]]) as usize;
    let total = IMAGE_HEADER + payload + 32;
    if total > layout.slot_bytes as usize {
        return None;
    }
    let mut body = vec![0u8; total.div_ceil(4) * 4];
    f.read(base, &mut body).ok()?;
    let mut h = BodyHasher::new();
    h.update(&body[..total - 32]);
    (h.finish()[..] == body[total - 32..total]).then_some(version)
}

/// What the bootloader decided.
#[derive(Clone, Copy, Debug)]
struct Booted {
    slot: u8,
    version: FirmwareVersion,
    /// Booted on trial (must self-test and confirm).
    trial: bool,
    /// A trial that never confirmed was rolled back on this boot.
    rolled_back: bool,
}

/// Why the bootloader did not start an image.
#[derive(Debug)]
enum BootStop {
    /// Power failed during its boot-state update.
    Cut,
    /// No bootable image (a bricked device).
    NoImage(String),
}

/// The bootloader: ESP-IDF's rollback rules over [`read_entry`].
fn bootloader<F: NorFlash>(f: &mut F, layout: &Layout2) -> Result<(Booted, bool), BootStop> {
    let Some(e) = read_entry(f) else {
        return Err(BootStop::NoImage("no boot-state entry".into()));
    };
    let mut slot = e.slot;
    let mut trial = false;
    let mut rolled_back = false;
    let mut bad_selected = false;
    match e.state {
        ImgState::Valid => {}
        ImgState::New => {
            if verify_slot(f, layout, slot).is_some() {
                write_entry(f, slot, ImgState::PendingVerify).map_err(|_| BootStop::Cut)?;
                trial = true;
            } else {
                bad_selected = true;
                slot ^= 1;
                write_entry(f, slot, ImgState::Valid).map_err(|_| BootStop::Cut)?;
            }
        }
        ImgState::PendingVerify => {
            // The trial boot never confirmed: roll back.
            slot ^= 1;
            write_entry(f, slot, ImgState::Valid).map_err(|_| BootStop::Cut)?;
            rolled_back = true;
        }
    }
    match verify_slot(f, layout, slot) {
        Some(version) => Ok((
            Booted {
                slot,
                version,
                trial,
                rolled_back,
            },
            bad_selected,
        )),
        None => Err(BootStop::NoImage(format!(
            "slot {slot} selected by {e:?} does not verify"
        ))),
    }
}

// --------------------------------------------------------------- OTA slot

/// The device core's `OtaSlot` on the chip, written like the firmware's.
struct FlashOta {
    chip: ChipFlash,
    layout: Layout2,
    target: Option<u8>,
    sector: Vec<u8>,
    fill: usize,
    written: usize,
    /// Set when `activate` wrote its boot-state entry completely.
    activated: Rc<Cell<bool>>,
}

/// Errors of [`FlashOta`].
#[derive(Debug)]
#[allow(dead_code)] // read through Debug in the device's error answers
enum SlotError {
    Flash(EmuError),
    NotSequential,
    TooLarge,
    NoSlot,
}

impl FlashOta {
    fn flush(&mut self) -> Result<(), SlotError> {
        let slot = self.target.ok_or(SlotError::NoSlot)?;
        let at = self.layout.slot_base(slot) as usize + self.written - self.fill;
        if at + SECTOR > (self.layout.slot_base(slot) + self.layout.slot_bytes) as usize {
            return Err(SlotError::TooLarge);
        }
        let at = at as u32;
        self.chip
            .erase(at, at + SECTOR as u32)
            .map_err(SlotError::Flash)?;
        self.chip
            .write(at, &self.sector)
            .map_err(SlotError::Flash)?;
        self.sector.iter_mut().for_each(|b| *b = 0xFF);
        self.fill = 0;
        Ok(())
    }
}

impl OtaSlot for FlashOta {
    type Error = SlotError;
    fn capacity(&self) -> usize {
        self.layout.slot_bytes as usize
    }
    fn begin(&mut self, len: usize) -> Result<(), SlotError> {
        if len > self.capacity() {
            return Err(SlotError::TooLarge);
        }
        let running = read_entry(&mut self.chip).ok_or(SlotError::NoSlot)?;
        self.target = Some(running.slot ^ 1);
        self.sector = vec![0xFF; SECTOR];
        self.fill = 0;
        self.written = 0;
        Ok(())
    }
    fn write(&mut self, offset: usize, mut data: &[u8]) -> Result<(), SlotError> {
        if offset != self.written {
            return Err(SlotError::NotSequential);
        }
        if self.written + data.len() > self.capacity() {
            return Err(SlotError::TooLarge);
        }
        while !data.is_empty() {
            let n = (SECTOR - self.fill).min(data.len());
            self.sector[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            self.written += n;
            data = &data[n..];
            if self.fill == SECTOR {
                self.flush()?;
            }
        }
        Ok(())
    }
    fn activate(&mut self) -> Result<(), SlotError> {
        if self.fill > 0 {
            self.flush()?;
        }
        let slot = self.target.ok_or(SlotError::NoSlot)?;
        write_entry(&mut self.chip, slot, ImgState::New).map_err(SlotError::Flash)?;
        self.activated.set(true);
        Ok(())
    }
    fn abort(&mut self) {
        self.fill = 0;
        self.written = 0;
        self.target = None;
    }
}

// --------------------------------------------------------------- campaign

type Dev = Device<ChipFlash, FlashOta>;

fn device_options(
    o: &OtaCutOptions,
    layout: &Layout2,
    version: FirmwareVersion,
    pk: [u8; 32],
) -> Options {
    let mut m = metering::Config::new(RATE, Layout::SinglePhase { cts: 1 })
        .with_interval_seconds(o.interval_s);
    m.cal.v_gain = [source::V_PER_COUNT as f32; 3];
    m.cal.i_gain = [source::a_per_count() as f32; 3];
    let mut opts = Options::new(m, BOARD);
    opts.store = layout.store;
    opts.firmware_version = version;
    opts.ota.public_key = Some(pk);
    // The campaign's clock is not real time; replay protection stays on.
    opts.auth_uses_wall_clock = false;
    opts
}

/// What the campaign knows was made durable, to predict the next boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// This version and nothing else.
    Exactly(FirmwareVersion),
    /// A trial boot was cut before its confirmation completed: the old
    /// image (rollback) or the new one on trial again.
    Either(FirmwareVersion, FirmwareVersion),
}

struct Campaign {
    o: OtaCutOptions,
    layout: Layout2,
    chip: ChipFlash,
    rng: Rng,
    src: Source,
    key: FirmwareSigningKey,
    api_key: protocol::ApiKey,
    secret_hex: String,
    mac: [u8; 6],
    clock_ms: u64,
    nonce: u64,
    committed: BTreeMap<u64, u64>,
    rep: OtaCutReport,
    activated: Rc<Cell<bool>>,
    chunk_sets: usize,
}

/// One device life: from a boot to the next power loss or reboot.
enum Life {
    /// Up and running.
    Up(Box<Dev>, Booted),
    /// The cut struck during this boot.
    Cut,
}

impl Campaign {
    fn now(&mut self) -> u64 {
        self.clock_ms += 1_000;
        self.clock_ms
    }

    fn header(&mut self, method: &str, target: &str, body: &[u8]) -> String {
        self.nonce += 1;
        let mut n = [0u8; auth::NONCE_LEN];
        n[..8].copy_from_slice(&self.nonce.to_le_bytes());
        n[8..].copy_from_slice(&self.o.seed.to_le_bytes());
        let t = self.now();
        auth::sign(&self.api_key, method, target, body, t, n).to_header_value()
    }

    fn cut_now(&self) -> bool {
        self.chip.is_cut()
    }

    /// Powers on: bootloader, device boot, trial self-test and confirm.
    fn power_on(&mut self) -> Result<Life, String> {
        {
            let mut c = self.chip.0.borrow_mut();
            c.flash.reboot();
            c.struck = None;
        }
        self.rep.boots += 1;
        let mut chip = self.chip.clone();
        let (booted, bad) = match bootloader(&mut chip, &self.layout) {
            Ok(b) => b,
            Err(BootStop::Cut) => return Ok(Life::Cut),
            Err(BootStop::NoImage(why)) => {
                self.rep.bad_image_boots += 1;
                return Err(format!("boot {}: no bootable image: {why}", self.rep.boots));
            }
        };
        if bad {
            self.rep.bad_image_boots += 1;
            self.rep.problem(format!(
                "boot {}: activated image did not verify",
                self.rep.boots
            ));
        }
        if booted.rolled_back {
            self.rep.rollbacks += 1;
        }
        let opts = device_options(
            &self.o,
            &self.layout,
            booted.version,
            self.key.public_key().to_bytes(),
        );
        let ota = FlashOta {
            chip: self.chip.clone(),
            layout: self.layout,
            target: None,
            sector: vec![0xFF; SECTOR],
            fill: 0,
            written: 0,
            activated: self.activated.clone(),
        };
        let boot_id = self.rng.next_u64() as u32;
        let (mut dev, report) = match Dev::boot(self.chip.clone(), ota, self.mac, boot_id, 0, opts)
        {
            Ok(v) => v,
            Err(e) => {
                if self.cut_now() {
                    return Ok(Life::Cut);
                }
                return Err(format!("device boot failed: {:?}", e.error));
            }
        };
        if self.cut_now() {
            return Ok(Life::Cut);
        }
        // The store: the newest committed record is there and the registers
        // restart from it.
        if let Some((&seq, &import)) = self.committed.last_key_value() {
            match &report.last_record {
                Some(r) if r.seq >= seq => {
                    let want = r.circuits[0].import_mwh.saturating_mul(1000);
                    if dev.registers().import_uwh[0] != want {
                        self.rep.register_mismatches += 1;
                        self.rep.problem(format!(
                            "boot {}: registers not from the newest record",
                            self.rep.boots
                        ));
                    }
                    if r.seq == seq && r.circuits[0].import_mwh != import {
                        self.rep.lost += 1;
                        self.rep.problem(format!(
                            "boot {}: newest record {seq} altered",
                            self.rep.boots
                        ));
                    }
                }
                other => {
                    self.rep.lost += 1;
                    self.rep.problem(format!(
                        "boot {}: committed seq {seq}, newest on flash {:?}",
                        self.rep.boots,
                        other.as_ref().map(|r| r.seq)
                    ));
                }
            }
        }
        if !dev.is_paired() {
            let body = serde_json::json!({"token": "torture", "device_secret": self.secret_hex})
                .to_string();
            let r = call(
                &mut dev,
                self.now(),
                "POST",
                "/api/v1/pair",
                &[],
                body.as_bytes(),
            );
            if self.cut_now() {
                return Ok(Life::Cut);
            }
            if r.status != 200 {
                return Err(format!("pairing answered {}: {}", r.status, r.text()));
            }
        }
        if booted.trial {
            let now = self.now();
            let st = dev.self_test(now);
            if self.cut_now() {
                return Ok(Life::Cut);
            }
            if let Err(e) = st {
                return Err(format!("self-test of {} failed: {e}", booted.version));
            }
            let mut chip = self.chip.clone();
            if write_entry(&mut chip, booted.slot, ImgState::Valid).is_err() {
                return Ok(Life::Cut);
            }
        }
        Ok(Life::Up(Box::new(dev), booted))
    }

    /// Feeds one metering interval (a record append).
    fn meter(&mut self, dev: &mut Dev) {
        let mut buf = vec![0u16; self.chunk_sets * 2];
        let until = self.src.time_s() + f64::from(self.o.interval_s);
        let n = self.src.fill(&mut buf, until);
        if let Ok(recs) = dev.push_samples(&buf[..n * 2]) {
            for r in recs {
                self.committed.insert(r.seq, r.circuits[0].import_mwh);
                self.rep.committed += 1;
            }
        }
    }

    /// Streams `body` into the device as the HTTP shell does, metering
    /// between chunks. Returns the answer, or `None` if power failed.
    fn upload(&mut self, dev: &mut Dev, body: &[u8]) -> Option<Response> {
        self.rep.uploads += 1;
        let h = self.header("POST", "/api/v1/ota", body);
        let hdrs: &[(&str, &str)] = &[(auth::AUTH_HEADER, h.as_str())];
        let req = Request {
            method: "POST",
            path: "/api/v1/ota",
            query: None,
            headers: &hdrs,
            body: &[],
        };
        let now = self.now();
        if let Err(r) = dev.upload_begin(now, &req, body.len()) {
            return Some(r);
        }
        for (i, c) in body.chunks(CHUNK).enumerate() {
            let _ = dev.upload_chunk(c);
            if self.cut_now() {
                return None;
            }
            if i % 8 == 7 {
                self.meter(dev);
                if self.cut_now() {
                    return None;
                }
            }
        }
        let now = self.now();
        let r = dev.upload_end(now, true);
        if self.cut_now() { None } else { Some(r) }
    }

    fn arm(&mut self, k: u64) {
        let seed = self.rng.next_u64();
        self.chip.0.borrow_mut().arm = Some((k.max(1), seed));
    }

    fn disarm(&mut self) {
        let mut c = self.chip.0.borrow_mut();
        c.arm = None;
        c.flash.disarm();
    }

    fn note_cut(&mut self) {
        self.rep.cuts += 1;
        match self.chip.0.borrow().struck {
            Some((Region::Slot, CutKind::Erase)) => self.rep.slot_erase_cuts += 1,
            Some((Region::Slot, _)) => self.rep.slot_program_cuts += 1,
            Some((Region::BootState, _)) => self.rep.bootstate_cuts += 1,
            Some((Region::Store, _)) => self.rep.store_cuts += 1,
            None => {}
        }
        // The outage: world time moves on.
        let outage = self.rng.below(3600) as f64;
        self.src.skip_to(self.src.time_s() + outage);
    }

    fn check_version(&mut self, got: FirmwareVersion, want: Expect, when: &str) {
        let ok = match want {
            Expect::Exactly(v) => got == v,
            Expect::Either(a, b) => got == a || got == b,
        };
        if !ok {
            self.rep.wrong_image_boots += 1;
            self.rep
                .problem(format!("{when}: booted {got}, required {want:?}"));
        }
    }

    /// Boots until a boot completes with no cut armed; counts cuts that hit
    /// trial boots. Returns the device and what booted.
    fn boot_until_up(
        &mut self,
        mut want: Expect,
        old: FirmwareVersion,
        new: FirmwareVersion,
    ) -> Result<(Box<Dev>, Booted), String> {
        for _ in 0..50 {
            match self.power_on()? {
                Life::Up(dev, b) => {
                    self.check_version(b.version, want, "boot");
                    return Ok((dev, b));
                }
                Life::Cut => {
                    // A cut struck a boot (only armed ones do: trial phase).
                    self.note_cut();
                    self.rep.during_trial += 1;
                    want = Expect::Either(old, new);
                }
            }
        }
        Err("device never came up".into())
    }

    fn signed(&self, version: FirmwareVersion) -> Result<Vec<u8>, String> {
        let max_payload = self.layout.slot_bytes as usize - IMAGE_HEADER - 32;
        let mut rng = Rng::new(self.o.seed ^ u64::from(version.minor));
        let payload =
            (8 * 1024 + rng.below(max_payload as u64 - 8 * 1024) as usize).min(max_payload);
        let img = app_image(version, payload, rng.next_u64());
        self.key
            .sign_image(&img, version, BOARD)
            .map_err(|e| format!("signing: {e}"))
    }
}

/// Runs the campaign.
pub fn run(o: &OtaCutOptions) -> OtaCutReport {
    let started = Instant::now();
    let layout = Layout2::new(o);
    let fleet = FleetSecret::from_bytes([0x0C; 32]);
    let mac = [0x02, 0x07, 0xA0, 0x00, 0x00, 0x01];
    let secret = fleet.device_secret(&Mac(mac));
    let mut c = Campaign {
        o: o.clone(),
        layout,
        chip: ChipFlash(Rc::new(RefCell::new(Chip {
            flash: EmulatedFlash::new(layout.size()),
            layout,
            arm: None,
            struck: None,
        }))),
        rng: Rng::new(o.seed),
        src: Source::new(RATE, false, Profile::Commercial, o.seed, 0.0),
        key: FirmwareSigningKey::from_seed(&[0x07; 32]),
        api_key: secret.api_key(),
        secret_hex: secret.to_hex(),
        mac,
        clock_ms: 1_800_000_000_000,
        nonce: 0,
        committed: BTreeMap::new(),
        rep: OtaCutReport::default(),
        activated: Rc::new(Cell::new(false)),
        chunk_sets: (RATE * o.interval_s) as usize,
    };
    if let Err(e) = campaign(&mut c) {
        c.rep.problem(e);
    }
    // Final boot and full verification of the store.
    c.disarm();
    match c.power_on() {
        Ok(Life::Up(mut dev, b)) => {
            c.rep.final_version = b.version.to_string();
            verify_store(&mut dev, &c.committed, &mut c.rep);
        }
        Ok(Life::Cut) => c.rep.problem("final boot cut with nothing armed".into()),
        Err(e) => c.rep.problem(format!("final boot: {e}")),
    }
    c.rep.slot_kib = u64::from(layout.slot_bytes / 1024);
    c.rep.wall_s = started.elapsed().as_secs_f64();
    c.rep
}

/// Factory state, then rounds of: upload with a cut armed somewhere, reboot,
/// check, retry until the new image runs.
fn campaign(c: &mut Campaign) -> Result<(), String> {
    // Factory: image 0.1.0 in slot 0, confirmed.
    let factory = FirmwareVersion::new(0, 1, 0);
    let img = app_image(factory, 20_000, 1);
    {
        let mut chip = c.chip.clone();
        let base = c.layout.slot_base(0);
        let padded = img.len().div_ceil(SECTOR) * SECTOR;
        chip.erase(base, base + padded as u32)
            .map_err(|e| format!("{e:?}"))?;
        let mut buf = img.clone();
        buf.resize(img.len().div_ceil(4) * 4, 0xFF);
        chip.write(base, &buf).map_err(|e| format!("{e:?}"))?;
        write_entry(&mut chip, 0, ImgState::Valid).map_err(|e| format!("{e:?}"))?;
    }
    let mut running = factory;
    let (mut dev, _) = c.boot_until_up(Expect::Exactly(factory), factory, factory)?;
    // Ops of one uncut upload, measured, to spread cuts over it.
    let mut upload_ops = 40u64;
    let mut minor = 1u16;
    while c.rep.cuts < u64::from(c.o.cuts) {
        minor += 1;
        let new = FirmwareVersion::new(0, minor, 0);
        let body = c.signed(new)?;
        for _ in 0..3 {
            c.meter(&mut dev);
        }
        if c.cut_now() {
            return Err("cut with nothing armed".into());
        }
        // Where to cut: 60% anywhere in the upload, 20% in its last
        // operations (activation), 20% in the trial boot after it.
        let phase = c.rng.below(10);
        c.activated.set(false);
        let ops_before = c.chip.0.borrow().flash.ops();
        match phase {
            0..=5 => {
                let k = 1 + c.rng.below(upload_ops);
                c.arm(k);
            }
            6 | 7 => {
                // Armed just before upload_end, below.
            }
            _ => {}
        }
        let answer = if (6..=7).contains(&phase) {
            upload_then_cut_at_end(c, &mut dev, &body)
        } else {
            c.upload(&mut dev, &body)
        };
        let activated = c.activated.get();
        match answer {
            None => {
                // Power failed during the upload or its activation.
                let struck_at_end = c.chip.0.borrow().struck;
                c.note_cut();
                if activated {
                    c.rep.after_activate += 1;
                } else if phase >= 6 || matches!(struck_at_end, Some((Region::BootState, _))) {
                    c.rep.during_activate += 1;
                } else {
                    c.rep.during_stream += 1;
                }
                drop(dev);
                let want = if activated {
                    Expect::Exactly(new)
                } else {
                    Expect::Exactly(running)
                };
                let (d, b) = c.boot_until_up(want, running, new)?;
                dev = d;
                running = b.version;
            }
            Some(r) => {
                // The upload went through uncut (the armed cut lies beyond
                // it): the reboot it asks for, with the cut in the trial.
                c.disarm();
                upload_ops = upload_ops.max(c.chip.0.borrow().flash.ops() - ops_before);
                if r.status != 200 || !activated {
                    return Err(format!(
                        "upload of {new} answered {}: {}",
                        r.status,
                        r.text()
                    ));
                }
                drop(dev);
                if phase >= 8 {
                    // Cut inside the trial boot: bootloader update, device
                    // boot (state write), pairing check, confirmation.
                    let k = 1 + c.rng.below(6);
                    c.arm(k);
                }
                let (d, b) = c.boot_until_up(Expect::Exactly(new), running, new)?;
                c.disarm();
                dev = d;
                running = b.version;
                if running == new {
                    c.rep.installed += 1;
                }
            }
        }
        c.disarm();
        // The retry: while the old image runs, the same upload must succeed
        // and its image must then run (confirmed).
        if running != new {
            c.rep.retries += 1;
            match c.upload(&mut dev, &body) {
                Some(r) if r.status == 200 => {
                    drop(dev);
                    let (d, b) = c.boot_until_up(Expect::Exactly(new), running, new)?;
                    dev = d;
                    running = b.version;
                    if running == new {
                        c.rep.retries_ok += 1;
                        c.rep.installed += 1;
                    }
                }
                Some(r) => {
                    c.rep.problem(format!(
                        "retried upload of {new} answered {}: {}",
                        r.status,
                        r.text()
                    ));
                }
                None => c
                    .rep
                    .problem("cut during a retry with nothing armed".into()),
            }
        }
        if running != new {
            return Err(format!("round {minor}: {new} never ran (still {running})"));
        }
    }
    drop(dev);
    Ok(())
}

/// Uploads with the cut armed for the upload's last flash operations (the
/// last sector's flush and the boot-state write of `activate`, or the
/// state save after it).
fn upload_then_cut_at_end(c: &mut Campaign, dev: &mut Dev, body: &[u8]) -> Option<Response> {
    c.rep.uploads += 1;
    let h = c.header("POST", "/api/v1/ota", body);
    let hdrs: &[(&str, &str)] = &[(auth::AUTH_HEADER, h.as_str())];
    let req = Request {
        method: "POST",
        path: "/api/v1/ota",
        query: None,
        headers: &hdrs,
        body: &[],
    };
    let now = c.now();
    if let Err(r) = dev.upload_begin(now, &req, body.len()) {
        return Some(r);
    }
    for ch in body.chunks(CHUNK) {
        let _ = dev.upload_chunk(ch);
    }
    let k = 1 + c.rng.below(6);
    c.arm(k);
    let now = c.now();
    let r = dev.upload_end(now, true);
    if c.cut_now() { None } else { Some(r) }
}

fn call(
    dev: &mut Dev,
    now: u64,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let device::routes::Lookup::Found(route) = device::routes::lookup(false, method, path) else {
        return Response::error(404, "no such route");
    };
    let req = Request {
        method,
        path,
        query: None,
        headers: &headers,
        body,
    };
    dev.handle(now, route, &req)
}

/// Reads the whole store and checks it against the committed records.
fn verify_store(dev: &mut Dev, committed: &BTreeMap<u64, u64>, rep: &mut OtaCutReport) {
    let store = dev.store_mut();
    let mut cursor = Cursor::new(0);
    let mut recs = Vec::new();
    loop {
        match store.read(&mut cursor) {
            Ok(Some(r)) => recs.push(r),
            Ok(None) => break,
            Err(e) => {
                rep.problem(format!("read failed: {e:?}"));
                break;
            }
        }
    }
    rep.records_on_flash = recs.len() as u64;
    for (&seq, &import) in committed {
        let i = recs.partition_point(|r| r.seq < seq);
        match recs.get(i) {
            Some(r) if r.seq == seq && r.circuits[0].import_mwh == import => {}
            Some(r) if r.seq != seq && r.flags.0 & Flags::MERGED != 0 => {}
            other => {
                rep.lost += 1;
                rep.problem(format!(
                    "committed seq {seq} lost or altered (on flash: {:?})",
                    other.map(|r| (r.seq, r.circuits[0].import_mwh))
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_and_torn_copy_ignored() {
        let layout = Layout2::new(&OtaCutOptions::short());
        let mut f = EmulatedFlash::new(layout.size());
        assert_eq!(read_entry(&mut f), None);
        write_entry(&mut f, 0, ImgState::Valid).unwrap();
        write_entry(&mut f, 1, ImgState::New).unwrap();
        assert_eq!(
            read_entry(&mut f).map(|e| (e.slot, e.state)),
            Some((1, ImgState::New))
        );
        // A torn third write leaves the second in force.
        f.cut_after(2, 3);
        assert!(write_entry(&mut f, 1, ImgState::PendingVerify).is_err());
        f.reboot();
        assert_eq!(
            read_entry(&mut f).map(|e| (e.slot, e.state)),
            Some((1, ImgState::New))
        );
    }

    #[test]
    fn slot_image_checksum_catches_a_flipped_bit() {
        let layout = Layout2::new(&OtaCutOptions::short());
        let mut f = EmulatedFlash::new(layout.size());
        let mut img = app_image(FirmwareVersion::new(1, 2, 3), 5000, 9);
        img.resize(img.len().div_ceil(4) * 4, 0xFF);
        let base = layout.slot_base(1);
        f.erase(base, base + 8192).unwrap();
        f.write(base, &img).unwrap();
        assert_eq!(
            verify_slot(&mut f, &layout, 1),
            Some(FirmwareVersion::new(1, 2, 3))
        );
        assert_eq!(verify_slot(&mut f, &layout, 0), None);
        // Program one more bit to 0 in the payload: the hash no longer matches.
        let at = (IMAGE_HEADER..img.len() - 32)
            .find(|&i| img[i] != 0)
            .unwrap();
        let word = at / 4 * 4;
        let mut w = [0u8; 4];
        w.copy_from_slice(&img[word..word + 4]);
        w[at - word] &= w[at - word] - 1; // clear the lowest set bit
        f.write(base + word as u32, &w).unwrap();
        assert_eq!(verify_slot(&mut f, &layout, 1), None);
    }
}
