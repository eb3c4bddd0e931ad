//! `store-bench`: the OFMon store against the original firmware's layout
//! (30-byte records per CT appended to 4 KiB shard files `ct_readings/N` on
//! LittleFS, via the `littlefs2` crate with wear levelling on), on the same
//! emulated NOR flash and the same workload: 1 V + 3 CT, 1-minute intervals
//! from a deterministic household profile simulated per second.
//!
//! `cargo run --release -p store-bench -- [--json] [--days N] [--cuts N]`

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use littlefs2::consts::{U1, U256};
use littlefs2::driver::Storage;
use littlefs2::fs::Filesystem;
use littlefs2::path::PathBuf;
use store::emulated::{EmulatedFlash, Rng};
use store::{Config, Cursor, Record, Store};

const REGION: usize = 0x1e_0000;
const SECTORS: usize = REGION / 4096;

// ------------------------------------------------------------------ workload

use store::workload::Household;

/// Feeds boot id, uptime and wall time like the device would.
struct Clock {
    boot: u32,
    uptime: u64,
    wall: u64,
}

impl Clock {
    fn stamp(&mut self, r: &mut Record) {
        self.uptime += u64::from(r.duration_ms);
        self.wall += u64::from(r.duration_ms);
        r.boot_id = self.boot;
        r.uptime_ms = self.uptime;
        r.wall_ms = Some(self.wall);
    }
    fn reboot(&mut self) {
        self.boot += 1;
        self.uptime = 0;
    }
}

// ------------------------------------------------------------------ results

#[derive(Default, Debug)]
struct Row {
    name: &'static str,
    bytes_per_interval: f64,
    days: f64,
    write_amp: f64,
    erases_per_day: f64,
    spread: f64,
    erase_min: u32,
    erase_max: u32,
    lost: u64,
    cuts: u64,
    committed: u64,
    /// Erase count of every sector of the region after the steady-state run.
    erase_counts: Vec<u32>,
    extra: String,
}

fn spread(counts: &[u32]) -> (f64, u32, u32) {
    let min = counts.iter().copied().min().unwrap_or(0);
    let max = counts.iter().copied().max().unwrap_or(0);
    let s = if min == 0 {
        f64::INFINITY
    } else {
        f64::from(max) / f64::from(min)
    };
    (s, min, max)
}

// ------------------------------------------------------------------ ours

type OurStore = Store<EmulatedFlash>;

fn mount(flash: EmulatedFlash) -> Result<OurStore> {
    OurStore::mount(flash, Config::default())
        .map(|(s, _)| s)
        .map_err(|e| anyhow::anyhow!("mount: {:?}", e.error))
}

fn run_ours(days: u64, cuts: u64) -> Result<Row> {
    let mut row = Row {
        name: "ofmon store",
        ..Row::default()
    };
    // capacity: append without acks until the first merge
    let mut s = mount(EmulatedFlash::new(REGION))?;
    let mut h = Household::new(1);
    let mut clock = Clock {
        boot: 1,
        uptime: 0,
        wall: 1_735_689_600_000,
    };
    let mut held = 0u64;
    while s.stats().merges == 0 {
        let mut r = h.interval();
        clock.stamp(&mut r);
        s.append(&r).map_err(|e| anyhow::anyhow!("append: {e:?}"))?;
        held += 1;
        if held > 10_000_000 {
            bail!("store never filled");
        }
    }
    held -= 1;
    let st = s.stats();
    let entry = st.payload_bytes as f64 / st.appended as f64;
    row.bytes_per_interval = REGION as f64 / held as f64;
    row.days = held as f64 / 1440.0;
    // mount cost on a full partition
    let s = mount(s.into_flash())?;
    let mount_read = s.stats().mount_bytes_read;

    // steady state: daily collection (ack) for `days`
    let mut s = mount(EmulatedFlash::new(REGION))?;
    let mut h = Household::new(2);
    let (mut payload, mut last) = (0u64, 0u64);
    for day in 0..days {
        for _ in 0..1440 {
            let mut r = h.interval();
            clock.stamp(&mut r);
            last = s.append(&r).map_err(|e| anyhow::anyhow!("append: {e:?}"))?;
        }
        if day > 0 {
            s.ack(last).map_err(|e| anyhow::anyhow!("ack: {e:?}"))?;
        }
    }
    payload += s.stats().payload_bytes;
    let f = s.flash();
    let log_counts = &f.erase_counts()[2..];
    let (sp, min, max) = spread(log_counts);
    row.write_amp = f.bytes_programmed() as f64 / payload as f64;
    row.erases_per_day =
        f.erase_counts().iter().map(|&c| u64::from(c)).sum::<u64>() as f64 / days as f64;
    (row.spread, row.erase_min, row.erase_max) = (sp, min, max);
    let state_erases: u32 = f.erase_counts()[..2].iter().sum();
    row.erase_counts = f.erase_counts().to_vec();

    // power cuts
    let mut flash = EmulatedFlash::new(REGION);
    let mut rng = Rng::new(3);
    let mut committed: Vec<u64> = Vec::new();
    let mut n = 0;
    while n < cuts {
        let mut s = mount(flash)?;
        // check everything committed and not acked is there
        let mut c = Cursor::new(s.acked());
        let mut found = std::collections::BTreeSet::new();
        while let Some(r) = s.read(&mut c).map_err(|e| anyhow::anyhow!("read: {e:?}"))? {
            found.insert(r.seq);
        }
        let acked = s.acked();
        row.lost += committed
            .iter()
            .filter(|&&q| q > acked && !found.contains(&q))
            .count() as u64;
        committed.retain(|&q| q > acked && found.contains(&q));
        let mut f = s.into_flash();
        f.cut_after(1 + rng.below(600), rng.next_u64());
        let mut s = mount(f)?;
        clock.reboot();
        loop {
            let mut r = h.interval();
            clock.stamp(&mut r);
            match s.append(&r) {
                Ok(q) => {
                    committed.push(q);
                    row.committed += 1;
                    if q.is_multiple_of(1440) {
                        let _ = s.ack(q);
                    }
                }
                Err(_) => break,
            }
        }
        flash = s.into_flash();
        flash.reboot();
        n += 1;
    }
    row.cuts = n;
    row.extra = format!(
        "\"wire_bytes_per_record\": {entry:.2}, \"mount_bytes_read_full\": {mount_read}, \"state_area_erases\": {state_erases}, \"state_area_sectors\": 2, \"ram_bytes\": {}",
        std::mem::size_of::<OurStore>() - std::mem::size_of::<EmulatedFlash>()
    );
    Ok(row)
}

// ------------------------------------------------------------------ original on littlefs

struct Lfs {
    flash: EmulatedFlash,
}

impl Storage for Lfs {
    const READ_SIZE: usize = 4;
    const WRITE_SIZE: usize = 4;
    const BLOCK_SIZE: usize = 4096;
    const BLOCK_COUNT: usize = SECTORS;
    const BLOCK_CYCLES: isize = 500;
    type CACHE_SIZE = U256;
    type LOOKAHEAD_SIZE = U1;

    fn read(&mut self, off: usize, buf: &mut [u8]) -> littlefs2::io::Result<usize> {
        use embedded_storage::nor_flash::ReadNorFlash;
        self.flash
            .read(off as u32, buf)
            .map_err(|_| littlefs2::io::Error::IO)?;
        Ok(buf.len())
    }
    fn write(&mut self, off: usize, data: &[u8]) -> littlefs2::io::Result<usize> {
        use embedded_storage::nor_flash::NorFlash;
        self.flash
            .write(off as u32, data)
            .map_err(|_| littlefs2::io::Error::IO)?;
        Ok(data.len())
    }
    fn erase(&mut self, off: usize, len: usize) -> littlefs2::io::Result<usize> {
        use embedded_storage::nor_flash::NorFlash;
        self.flash
            .erase(off as u32, (off + len) as u32)
            .map_err(|_| littlefs2::io::Error::IO)?;
        Ok(len)
    }
}

/// The original record: u16 ct_id, f32 real, f32 apparent, f32 i_rms, f32 v_rms, f32 kwh, u64 ts.
fn original_record(ct: u16, r: &Record, c: usize) -> [u8; 30] {
    let ci = &r.circuits[c];
    let mut b = [0u8; 30];
    b[0..2].copy_from_slice(&ct.to_le_bytes());
    b[2..6].copy_from_slice(&(ci.real_power_dw as f32 / 10.0).to_le_bytes());
    b[6..10].copy_from_slice(&(ci.apparent_power_dva as f32 / 10.0).to_le_bytes());
    b[10..14].copy_from_slice(&(ci.i_rms_ma as f32 / 1000.0).to_le_bytes());
    b[14..18].copy_from_slice(&(r.voltages[0].rms_cv as f32 / 100.0).to_le_bytes());
    b[18..22].copy_from_slice(&(ci.import_mwh as f32 / 1e6).to_le_bytes());
    b[22..30].copy_from_slice(&r.wall_ms.unwrap_or(0).to_le_bytes());
    b
}

fn shard_path(n: u32) -> Result<PathBuf> {
    PathBuf::try_from(format!("ct_readings/{n}").as_str())
        .map_err(|e| anyhow::anyhow!("path: {e:?}"))
}

/// Shards present (count, size of the last) and the records they hold.
fn lfs_scan(fs: &Filesystem<'_, Lfs>) -> Result<(u32, usize, u64)> {
    let (mut n, mut last, mut recs) = (0u32, 0usize, 0u64);
    while let Ok(meta) = fs.metadata(&shard_path(n)?) {
        last = meta.len();
        recs += (last / 30) as u64;
        n += 1;
    }
    Ok((n, last, recs))
}

/// Append one 30-byte record the way the original did: open, append, close.
fn lfs_append(
    fs: &Filesystem<'_, Lfs>,
    shard: &mut u32,
    size: &mut usize,
    rec: &[u8; 30],
) -> Result<(), littlefs2::io::Error> {
    if *size + 30 > 4096 {
        *shard += 1;
        *size = 0;
    }
    let path = shard_path(*shard).map_err(|_| littlefs2::io::Error::INVALID)?;
    fs.open_file_with_options_and_then(
        |o| o.write(true).create(true).append(true),
        &path,
        |f| f.write(rec),
    )?;
    *size += 30;
    Ok(())
}

fn lfs_reset(fs: &Filesystem<'_, Lfs>) -> Result<(), littlefs2::io::Error> {
    let mut n = 0;
    while let Ok(p) = shard_path(n) {
        if fs.remove(&p).is_err() {
            break;
        }
        n += 1;
    }
    Ok(())
}

fn lfs_mount_or_format(storage: &mut Lfs) -> Result<()> {
    if !Filesystem::is_mountable(storage) {
        Filesystem::format(storage).map_err(|e| anyhow::anyhow!("format: {e:?}"))?;
    }
    Ok(())
}

fn run_original(days: u64, cuts: u64) -> Result<Row> {
    let mut row = Row {
        name: "original (littlefs, 30 B/CT)",
        ..Row::default()
    };
    let mut clock = Clock {
        boot: 1,
        uptime: 0,
        wall: 1_735_689_600_000,
    };
    // capacity
    let mut st = Lfs {
        flash: EmulatedFlash::new(REGION),
    };
    lfs_mount_or_format(&mut st)?;
    let mut h = Household::new(1);
    let held = Filesystem::mount_and_then(&mut st, |fs| {
        fs.create_dir_all(
            &PathBuf::try_from("ct_readings").map_err(|_| littlefs2::io::Error::INVALID)?,
        )?;
        let (mut shard, mut size, mut held) = (0u32, 0usize, 0u64);
        'outer: loop {
            let mut r = h.interval();
            clock.stamp(&mut r);
            for c in 0..3 {
                if lfs_append(fs, &mut shard, &mut size, &original_record(c as u16, &r, c)).is_err()
                {
                    break 'outer;
                }
            }
            held += 1;
        }
        Ok(held)
    })
    .map_err(|e| anyhow::anyhow!("littlefs: {e:?}"))?;
    row.bytes_per_interval = REGION as f64 / held as f64;
    row.days = held as f64 / 1440.0;

    // steady state: daily collect + GET /reset
    let mut st = Lfs {
        flash: EmulatedFlash::new(REGION),
    };
    lfs_mount_or_format(&mut st)?;
    st.flash.reset_counters();
    let mut h = Household::new(2);
    Filesystem::mount_and_then(&mut st, |fs| {
        fs.create_dir_all(
            &PathBuf::try_from("ct_readings").map_err(|_| littlefs2::io::Error::INVALID)?,
        )?;
        let (mut shard, mut size) = (0u32, 0usize);
        for _ in 0..days {
            for _ in 0..1440 {
                let mut r = h.interval();
                clock.stamp(&mut r);
                for c in 0..3 {
                    lfs_append(fs, &mut shard, &mut size, &original_record(c as u16, &r, c))?;
                }
            }
            lfs_reset(fs)?;
            shard = 0;
            size = 0;
        }
        Ok(())
    })
    .map_err(|e| anyhow::anyhow!("littlefs: {e:?}"))?;
    let payload = days * 1440 * 90;
    row.write_amp = st.flash.bytes_programmed() as f64 / payload as f64;
    row.erases_per_day = st
        .flash
        .erase_counts()
        .iter()
        .map(|&c| u64::from(c))
        .sum::<u64>() as f64
        / days as f64;
    (row.spread, row.erase_min, row.erase_max) = spread(st.flash.erase_counts());
    row.erase_counts = st.flash.erase_counts().to_vec();

    // power cuts: each committed (closed) record must survive
    let mut st = Lfs {
        flash: EmulatedFlash::new(REGION),
    };
    lfs_mount_or_format(&mut st)?;
    let mut rng = Rng::new(3);
    let mut committed = 0u64;
    let mut n = 0;
    let mut formats = 0;
    while n < cuts {
        if !Filesystem::is_mountable(&mut st) {
            row.lost += committed;
            committed = 0;
            formats += 1;
            Filesystem::format(&mut st).map_err(|e| anyhow::anyhow!("format: {e:?}"))?;
        }
        st.flash.cut_after(1 + rng.below(600), rng.next_u64());
        let res = Filesystem::mount_and_then(&mut st, |fs| {
            fs.create_dir_all(
                &PathBuf::try_from("ct_readings").map_err(|_| littlefs2::io::Error::INVALID)?,
            )?;
            let (shards, last, found) = lfs_scan(fs).map_err(|_| littlefs2::io::Error::IO)?;
            let lost = committed.saturating_sub(found);
            let (mut shard, mut size) = (shards.saturating_sub(1), last);
            let mut added = 0u64;
            if found > 20_000 {
                lfs_reset(fs)?;
                return Ok((lost, 0, true));
            }
            loop {
                let mut r = h.interval();
                clock.stamp(&mut r);
                for c in 0..3 {
                    if lfs_append(fs, &mut shard, &mut size, &original_record(c as u16, &r, c))
                        .is_err()
                    {
                        return Ok((lost, found + added, false));
                    }
                    added += 1;
                }
            }
        });
        match res {
            Ok((lost, now, reset)) => {
                row.lost += lost / 3;
                committed = if reset { 0 } else { now };
            }
            Err(_) => {
                // cut during mount or scan: nothing new committed
            }
        }
        row.committed = row.committed.max(committed / 3);
        st.flash.reboot();
        n += 1;
    }
    row.cuts = n;
    row.extra = format!("\"formats_after_cut\": {formats}");
    let _ = &mut clock;
    Ok(row)
}

// ------------------------------------------------------------------ main

fn main() -> Result<()> {
    let mut json = false;
    let mut days = 180u64;
    let mut cuts = 1000u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--days" => days = args.next().context("--days N")?.parse()?,
            "--cuts" => cuts = args.next().context("--cuts N")?.parse()?,
            "-h" | "--help" => {
                println!("store-bench [--json] [--days N (default 180)] [--cuts N (default 1000)]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let rows = [run_ours(days, cuts)?, run_original(days, cuts)?];
    if json {
        let mut out = String::from(
            "{\n  \"workload\": {\"voltages\": 1, \"circuits\": 3, \"interval_s\": 60, ",
        );
        let _ = write!(
            out,
            "\"region_bytes\": {REGION}, \"days_simulated\": {days}, \"cuts\": {cuts}}},\n  \"results\": [\n"
        );
        for (i, r) in rows.iter().enumerate() {
            let _ = write!(
                out,
                "    {{\"name\": \"{}\", \"bytes_per_interval\": {:.2}, \"days_in_region\": {:.1}, \"write_amplification\": {:.3}, \"erases_per_day\": {:.2}, \"erase_spread\": {}, \"erase_min\": {}, \"erase_max\": {}, \"records_lost\": {}, \"cuts\": {}, {}, \"erase_counts\": [{}]}}{}",
                r.name,
                r.bytes_per_interval,
                r.days,
                r.write_amp,
                r.erases_per_day,
                if r.spread.is_finite() {
                    format!("{:.2}", r.spread)
                } else {
                    "null".into()
                },
                r.erase_min,
                r.erase_max,
                r.lost,
                r.cuts,
                r.extra,
                r.erase_counts
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                if i + 1 < rows.len() { "," } else { "" }
            );
            out.push('\n');
        }
        out.push_str("  ]\n}");
        println!("{out}");
    } else {
        println!(
            "store bench: 1 V + 3 CT, 1-minute intervals, {days} days simulated, region 0x1e0000 bytes, {cuts} power cuts"
        );
        println!(
            "{:<30} {:>10} {:>8} {:>10} {:>10} {:>14} {:>12}",
            "layout",
            "B/interval",
            "days",
            "write amp",
            "erases/d",
            "spread (max/min)",
            "lost/cuts"
        );
        for r in &rows {
            println!(
                "{:<30} {:>10.1} {:>8.1} {:>10.2} {:>10.1} {:>9.2} ({}/{}) {:>7}/{}",
                r.name,
                r.bytes_per_interval,
                r.days,
                r.write_amp,
                r.erases_per_day,
                r.spread,
                r.erase_max,
                r.erase_min,
                r.lost,
                r.cuts
            );
        }
        println!(
            "extra: {}",
            rows.iter()
                .map(|r| format!("{}: {{{}}}", r.name, r.extra))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}
