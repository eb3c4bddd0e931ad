//! Power-cut campaign on the device core: the real `device::Device` (the
//! firmware's code) on the store's emulated NOR flash, fed synthetic mains
//! through the real metering engine, with a power cut injected at a random
//! flash program or erase — during record appends, sector merges and erases,
//! state updates at boot — then a reboot from whatever the flash holds.
//!
//! After every boot: the newest record on flash is at least the newest
//! committed one, and the energy registers restart exactly from it. Every
//! `check_every` cuts and at the end: every record whose append returned `Ok`
//! is on flash with its exact cumulative energy (or folded into a `MERGED`
//! record, whose registers are exact for its span), seqs strictly increase,
//! and each record's energy step matches its own interval's power × time.
//!
//! Outages between boots last a random time (world time skips ahead), so a
//! campaign covers weeks to months of simulated time.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};

use device::platform::NoOta;
use device::{Device, Options};
use metering::Layout;
use serde::{Deserialize, Serialize};
use sim::source::{self, Profile, Source};
use store::emulated::{CutKind, EmuError, EmulatedFlash, Rng};
use store::{Config, Cursor, Flags, Record};

/// Sample sets per second fed to the engine (its minimum: 10 per 50 Hz cycle).
const RATE: u32 = 500;

/// Parameters of [`run`].
#[derive(Clone, Debug)]
pub struct PowerOptions {
    /// Power cuts to inject.
    pub cuts: u32,
    /// Seed of everything random.
    pub seed: u64,
    /// Metering interval (s).
    pub interval_s: u32,
    /// Store region in 4 KiB sectors (small, so merges and erases are frequent).
    pub region_sectors: u32,
    /// Share of cuts aimed at an erase (the rest hit a program).
    pub erase_share: f64,
    /// Longest outage between a cut and the next boot (simulated seconds).
    pub max_outage_s: f64,
    /// Full verification of the flash every this many cuts (and at the end).
    pub check_every: u32,
}

impl PowerOptions {
    /// The CI profile: a few hundred cuts, well under a minute in debug.
    pub fn short() -> Self {
        Self {
            cuts: 500,
            seed: 0x5EED_0001,
            interval_s: 1,
            region_sectors: 16,
            erase_share: 0.25,
            max_outage_s: 6.0 * 3600.0,
            check_every: 50,
        }
    }

    /// The on-demand profile: ≥ 10,000 cuts.
    pub fn long() -> Self {
        Self {
            cuts: 10_000,
            seed: 0x5EED_1000,
            interval_s: 2,
            region_sectors: 24,
            erase_share: 0.25,
            max_outage_s: 6.0 * 3600.0,
            check_every: 250,
        }
    }
}

/// Figures of a power campaign.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PowerReport {
    /// Cuts injected (and survived: the device booted again).
    pub cuts: u64,
    /// Cuts that tore a program.
    pub program_cuts: u64,
    /// Cuts that interrupted an erase.
    pub erase_cuts: u64,
    /// Cuts that hit while the device was booting (state write after mount).
    pub cuts_during_boot: u64,
    /// Boots.
    pub boots: u64,
    /// Records whose append returned `Ok`.
    pub committed: u64,
    /// Committed records missing or wrong on flash (must be 0).
    pub lost: u64,
    /// Committed records found folded into a merged record (exact registers).
    pub merged: u64,
    /// Records read back in the final verification.
    pub records_on_flash: u64,
    /// Full verifications of the flash.
    pub verifications: u64,
    /// Boots whose restored energy registers differed from the newest record (must be 0).
    pub register_mismatches: u64,
    /// Consecutive record pairs whose energy step was checked against power × time.
    pub energy_steps_checked: u64,
    /// Energy steps outside tolerance (must be 0).
    pub energy_step_violations: u64,
    /// Largest |energy step − power × duration| seen (mWh).
    pub energy_step_max_dev_mwh: f64,
    /// Mounts that reported a repair (torn tail, bad sector, lost state).
    pub recovered_mounts: u64,
    /// Mounts that had to format (must be 0 after the first boot).
    pub formatted_mounts: u64,
    /// Worst flash bytes read by one boot (mount + state + newest record).
    pub boot_bytes_read_max: u64,
    /// Mean flash bytes read per boot.
    pub boot_bytes_read_mean: f64,
    /// Store region used (bytes).
    pub region_bytes: u64,
    /// Simulated world time covered (days), outages included.
    pub sim_days: f64,
    /// Real seconds spent.
    pub wall_s: f64,
    /// First problems found (empty when all is well).
    pub problems: Vec<String>,
}

impl PowerReport {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.register_mismatches == 0
            && self.energy_step_violations == 0
            && self.formatted_mounts == 0
            && self.problems.is_empty()
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < 20 {
            self.problems.push(p);
        }
    }
}

fn options(interval_s: u32, region: Config) -> Options {
    let mut m = metering::Config::new(RATE, Layout::SinglePhase { cts: 1 })
        .with_interval_seconds(interval_s);
    m.cal.v_gain = [source::V_PER_COUNT as f32; 3];
    m.cal.i_gain = [source::a_per_count() as f32; 3];
    let mut o = Options::new(m, "torture");
    o.store = region;
    o
}

type Dev = Device<CutFlash, NoOta>;

/// What the campaign wants from the flash while the device owns it.
#[derive(Default)]
struct Ctl {
    /// Arm on the next program/erase: (at erase?, k, seed).
    arm: Option<(bool, u64, u64)>,
    cut: bool,
}

/// The emulated flash with a remote-controlled cut: the device core owns
/// the flash, the campaign keeps a handle.
struct CutFlash {
    inner: EmulatedFlash,
    ctl: Rc<RefCell<Ctl>>,
}

impl CutFlash {
    fn transfer_arm(&mut self) {
        let arm = self.ctl.borrow_mut().arm.take();
        match arm {
            Some((true, k, seed)) => self.inner.cut_at_erase(k, seed),
            Some((false, k, seed)) => self.inner.cut_after(k, seed),
            None => {}
        }
    }
    fn note(&self) {
        if self.inner.is_cut() {
            self.ctl.borrow_mut().cut = true;
        }
    }
}

impl ErrorType for CutFlash {
    type Error = EmuError;
}

impl ReadNorFlash for CutFlash {
    const READ_SIZE: usize = EmulatedFlash::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl NorFlash for CutFlash {
    const WRITE_SIZE: usize = EmulatedFlash::WRITE_SIZE;
    const ERASE_SIZE: usize = EmulatedFlash::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.transfer_arm();
        let r = self.inner.erase(from, to);
        self.note();
        r
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.transfer_arm();
        let r = self.inner.write(offset, bytes);
        self.note();
        r
    }
}

/// Runs the campaign.
pub fn run(o: &PowerOptions) -> PowerReport {
    let started = Instant::now();
    let region = Config {
        offset: 0,
        size: o.region_sectors * 4096,
        state_sectors: 2,
    };
    let opts = options(o.interval_s, region);
    let mut rep = PowerReport {
        region_bytes: u64::from(region.size),
        ..PowerReport::default()
    };
    let mut rng = Rng::new(o.seed);
    let mut src = Source::new(RATE, false, Profile::Commercial, o.seed, 0.0);
    let ctl = Rc::new(RefCell::new(Ctl::default()));
    let mut flash = Some(CutFlash {
        inner: EmulatedFlash::new(region.size as usize),
        ctl: ctl.clone(),
    });
    // seq -> cumulative import (mWh) of every record whose append returned Ok.
    let mut committed: BTreeMap<u64, u64> = BTreeMap::new();
    let chunk_sets = (RATE * o.interval_s) as usize; // at most one commit per push
    let mut buf = vec![0u16; chunk_sets * 2];
    let mut boot_bytes_total = 0u64;
    let mac = [0x02, 0x70, 0x72, 0x74, 0x00, 0x01];
    let is_cut = |c: &Rc<RefCell<Ctl>>| c.borrow().cut;

    while rep.cuts < u64::from(o.cuts) {
        let Some(mut f) = flash.take() else { break };
        // Power back on.
        f.inner.reboot();
        f.inner.reset_counters();
        ctl.borrow_mut().cut = false;
        // One boot in twenty gets its cut armed before it boots: the cut
        // strikes inside the boot's own state update (or right after).
        let at_boot = rep.boots > 0 && rng.below(20) == 0;
        if at_boot {
            ctl.borrow_mut().arm = Some((false, 1 + rng.below(3), rng.next_u64()));
        }
        let boot_id = rng.next_u64() as u32;
        let (mut dev, report): (Dev, _) =
            match Device::boot(f, NoOta, mac, boot_id, 0, opts.clone()) {
                Ok(v) => v,
                Err(e) => {
                    if is_cut(&ctl) {
                        // Cut while mounting: count it, power on again.
                        rep.boots += 1;
                        rep.cuts += 1;
                        rep.cuts_during_boot += 1;
                        rep.program_cuts += 1;
                        flash = Some(e.flash);
                        continue;
                    }
                    rep.problem(format!("boot {} failed: {:?}", rep.boots, e.error));
                    break;
                }
            };
        rep.boots += 1;
        let bytes = dev.store_mut().flash().inner.bytes_read();
        boot_bytes_total += bytes;
        rep.boot_bytes_read_max = rep.boot_bytes_read_max.max(bytes);
        match report.mount {
            store::MountStatus::Clean => {}
            store::MountStatus::Recovered(_) => rep.recovered_mounts += 1,
            store::MountStatus::Formatted { reason } => {
                if rep.boots > 1 {
                    rep.formatted_mounts += 1;
                    rep.problem(format!("boot {}: store formatted ({reason:?})", rep.boots));
                }
            }
        }
        // The newest record found is at least the newest committed one, and
        // the registers restart from it.
        if let Some((&last_seq, &last_import)) = committed.last_key_value() {
            match &report.last_record {
                Some(r) if r.seq >= last_seq => {
                    let want = r.circuits[0].import_mwh.saturating_mul(1000);
                    if dev.registers().import_uwh[0] != want {
                        rep.register_mismatches += 1;
                        rep.problem(format!(
                            "boot {}: registers {} µWh, newest record says {want}",
                            rep.boots,
                            dev.registers().import_uwh[0]
                        ));
                    }
                    if r.seq == last_seq && r.circuits[0].import_mwh != last_import {
                        rep.lost += 1;
                        rep.problem(format!(
                            "boot {}: newest record {last_seq} altered",
                            rep.boots
                        ));
                    }
                }
                other => {
                    rep.lost += 1;
                    rep.problem(format!(
                        "boot {}: committed seq {last_seq} but newest on flash is {:?}",
                        rep.boots,
                        other.as_ref().map(|r| r.seq)
                    ));
                }
            }
        }

        if !is_cut(&ctl) {
            // Verify everything now and then.
            if rep.cuts > 0 && rep.cuts.is_multiple_of(u64::from(o.check_every.max(1))) {
                verify(&mut dev, &committed, &mut rep);
            }
            // Arm the next cut, unless one is still pending from boot.
            if ctl.borrow().arm.is_none() && !at_boot {
                let seed = rng.next_u64();
                let to_erase = (rng.below(1000) as f64) < o.erase_share * 1000.0;
                ctl.borrow_mut().arm = Some(if to_erase {
                    (true, 1 + rng.below(2), seed)
                } else {
                    (false, 1 + rng.below(40), seed)
                });
            }
        } else {
            rep.cuts_during_boot += 1;
        }
        // Run until the flash dies.
        let mut guard = 0u64;
        while !is_cut(&ctl) {
            let until = src.time_s() + f64::from(o.interval_s);
            let n = src.fill(&mut buf, until);
            match dev.push_samples(&buf[..n * 2]) {
                Ok(recs) => {
                    for r in recs {
                        committed.insert(r.seq, r.circuits[0].import_mwh);
                        rep.committed += 1;
                    }
                }
                Err(_) => break,
            }
            guard += 1;
            if guard > 2_000_000 {
                rep.problem("armed cut never hit".into());
                break;
            }
        }
        let f = dev.into_flash();
        match f.inner.last_cut() {
            Some(CutKind::Erase) => rep.erase_cuts += 1,
            Some(_) => rep.program_cuts += 1,
            None => rep.problem("device stopped without a cut".into()),
        }
        flash = Some(f);
        rep.cuts += 1;
        // The outage: world time moves on.
        let outage = rng.below(1000) as f64 / 1000.0 * o.max_outage_s;
        src.skip_to(src.time_s() + outage);
    }

    // Final boot and full verification.
    if let Some(mut f) = flash.take() {
        f.inner.reboot();
        ctl.borrow_mut().cut = false;
        match Dev::boot(f, NoOta, mac, 1, 0, opts.clone()) {
            Ok((mut dev, _)) => verify(&mut dev, &committed, &mut rep),
            Err(e) => rep.problem(format!("final boot failed: {:?}", e.error)),
        }
    }
    rep.boot_bytes_read_mean = boot_bytes_total as f64 / rep.boots.max(1) as f64;
    rep.sim_days = src.time_s() / 86_400.0;
    rep.wall_s = started.elapsed().as_secs_f64();
    rep
}

/// Reads the whole store and checks it against the committed records.
fn verify(dev: &mut Dev, committed: &BTreeMap<u64, u64>, rep: &mut PowerReport) {
    rep.verifications += 1;
    let store = dev.store_mut();
    let mut cursor = Cursor::new(0);
    let mut recs: Vec<Record> = Vec::new();
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
    for w in recs.windows(2) {
        if w[1].seq <= w[0].seq {
            rep.problem(format!("seq {} after {}", w[1].seq, w[0].seq));
        }
    }
    // Every committed record is there, exact, or inside a merged record.
    let mut merged = 0;
    for (&seq, &import) in committed {
        let i = recs.partition_point(|r| r.seq < seq);
        match recs.get(i) {
            Some(r) if r.seq == seq => {
                if r.circuits[0].import_mwh != import {
                    rep.lost += 1;
                    rep.problem(format!(
                        "seq {seq}: import {} mWh on flash, {import} committed",
                        r.circuits[0].import_mwh
                    ));
                }
            }
            Some(r) if r.flags.0 & Flags::MERGED != 0 => merged += 1,
            other => {
                rep.lost += 1;
                rep.problem(format!(
                    "committed seq {seq} lost (next on flash: {:?})",
                    other.map(|r| r.seq)
                ));
            }
        }
    }
    rep.merged = merged;
    // Energy: each step equals the record's own interval energy; the running
    // interval lost at a cut is never counted twice nor invented.
    for w in recs.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let step = b.circuits[0].import_mwh as f64 - a.circuits[0].import_mwh as f64;
        let p_w = f64::from(b.circuits[0].real_power_dw) / 10.0;
        let expect = p_w.max(0.0) * f64::from(b.duration_ms) / 3_600_000.0 * 1000.0;
        let dev_mwh = (step - expect).abs();
        let spanned = b.seq - a.seq; // intervals folded into b
        let tol = 2.5 + 0.01 * expect + spanned as f64;
        rep.energy_steps_checked += 1;
        rep.energy_step_max_dev_mwh = rep.energy_step_max_dev_mwh.max(dev_mwh);
        if dev_mwh > tol {
            rep.energy_step_violations += 1;
            rep.problem(format!(
                "seq {}: energy step {step} mWh, interval says {expect:.1} mWh",
                b.seq
            ));
        }
    }
}

/// Worst-case boot read cost of a full-size store region.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MountCost {
    /// Region size (bytes): the firmware's data partition.
    pub region_bytes: u64,
    /// Records appended to fill it (it merged old ones to make room).
    pub appended: u64,
    /// Flash bytes read by a clean mount of the full region.
    pub clean_mount_bytes: u64,
    /// Flash bytes read by a mount after a cut tore the last append.
    pub torn_mount_bytes: u64,
    /// Wall time of that mount on this machine (emulated flash, µs).
    pub torn_mount_us: u64,
}

/// Fills the default (1.875 MiB) region past full, then measures the flash
/// bytes a mount reads, clean and after a torn append.
pub fn mount_worst_case(records: u64) -> MountCost {
    let cfg = Config::default();
    let mut flash = EmulatedFlash::new(cfg.size as usize);
    let mut appended = 0;
    if let Ok((mut s, _)) = store::Store::<EmulatedFlash>::mount(flash, cfg) {
        let mut r = Record {
            duration_ms: 60_000,
            voltage_count: 1,
            circuit_count: 3,
            frequency_mhz: 50_000,
            ..Record::default()
        };
        let mut rng = Rng::new(7);
        for i in 0..records {
            r.uptime_ms = i * 60_000;
            r.voltages[0].rms_cv = 23_000 + rng.below(200) as u32;
            for c in &mut r.circuits {
                let p = 1_000 + rng.below(20_000) as i32;
                c.real_power_dw = p;
                c.import_mwh += p as u64 * 60 / 36;
            }
            if s.append(&r).is_err() {
                break;
            }
            appended += 1;
        }
        flash = s.into_flash();
    } else {
        return MountCost::default();
    }
    flash.reset_counters();
    let clean = match store::Store::<EmulatedFlash>::mount(flash, cfg) {
        Ok((s, _)) => {
            let mut f = s.into_flash();
            let n = f.bytes_read();
            f.reset_counters();
            flash = f;
            n
        }
        Err(e) => {
            flash = e.flash;
            0
        }
    };
    // Tear the next append.
    let mut torn = 0;
    let mut torn_us = 0;
    if let Ok((mut s, _)) = store::Store::<EmulatedFlash>::mount(flash, cfg) {
        let mut f = {
            // Arm through a fresh mount: the cut hits the next append.
            let r = Record::default();
            let _ = s.append(&r); // a normal append first
            s.into_flash()
        };
        f.cut_after(1, 99);
        if let Ok((mut s, _)) = store::Store::<EmulatedFlash>::mount(f, cfg) {
            let _ = s.append(&Record::default());
            let mut f = s.into_flash();
            f.reboot();
            f.reset_counters();
            let t = Instant::now();
            if let Ok((s, _)) = store::Store::<EmulatedFlash>::mount(f, cfg) {
                torn_us = t.elapsed().as_micros() as u64;
                torn = s.flash().bytes_read();
            }
        }
    }
    MountCost {
        region_bytes: u64::from(cfg.size),
        appended,
        clean_mount_bytes: clean,
        torn_mount_bytes: torn,
        torn_mount_us: torn_us,
    }
}
