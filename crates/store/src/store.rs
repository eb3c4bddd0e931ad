//! The log engine: sectors, mount, append, read cursor, ack, merge, state area.

use embedded_storage::nor_flash::NorFlash;

use crate::crc::Crc32;
use crate::record::{self, CodecState, Flags, MAX_ENTRY, Record};

/// Bytes at the start of every log sector before the first entry.
pub const SECTOR_HEADER: u32 = 48;
/// Largest state blob.
pub const MAX_STATE: usize = 1024;
/// Default region size: the original data partition, 0x1e0000 bytes.
pub const DEFAULT_REGION: u32 = 0x1e_0000;

const LOG_MAGIC: u32 = 0x474C_464F; // "OFLG"
const STATE_MAGIC: u32 = 0x5453_464F; // "OFST"
const STATE_HEADER: u32 = 32;
const KIND_NORMAL: u32 = 0;
const KIND_MERGED: u32 = 1;
const OFF_COMMIT: u32 = 40;
const OFF_DEAD: u32 = 44;
const FREE: u32 = u32::MAX;
const NONE: u32 = u32::MAX;
/// Group durations of the merge levels (ms); 0 = copy only, MAX = everything.
const LEVELS: [u32; 6] = [
    0,
    15 * 60_000,
    60 * 60_000,
    6 * 3_600_000,
    24 * 3_600_000,
    u32::MAX,
];

/// Where the store lives in the flash and how it is split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Byte offset of the region in the flash (erase-sector aligned).
    pub offset: u32,
    /// Region size in bytes (a multiple of the erase size).
    pub size: u32,
    /// Sectors at the start of the region reserved for the state area (≥ 2).
    pub state_sectors: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            offset: 0,
            size: DEFAULT_REGION,
            state_sectors: 2,
        }
    }
}

/// Store errors; `E` is the flash driver's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The flash driver failed (e.g. a power cut); the store must be remounted.
    Flash(E),
    /// The configuration does not fit the flash or the compiled table size.
    BadConfig,
    /// A state blob larger than [`MAX_STATE`] or a record that cannot be encoded.
    TooLarge,
    /// An earlier flash error left RAM and flash out of step: remount first.
    NeedsRemount,
    /// No sector could be freed (cannot happen with ≥ 5 log sectors).
    Full,
}

impl<E: core::fmt::Debug> core::fmt::Display for Error<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Flash(e) => write!(f, "flash error: {e:?}"),
            Error::BadConfig => f.write_str("store configuration does not fit the flash"),
            Error::TooLarge => f.write_str("value too large for the store"),
            Error::NeedsRemount => f.write_str("store needs a remount after a flash error"),
            Error::Full => f.write_str("no flash sector could be freed"),
        }
    }
}

/// A failed mount hands the flash back.
pub struct MountError<F: NorFlash> {
    /// The flash, untouched by the store from here on.
    pub flash: F,
    /// Why the mount failed.
    pub error: Error<F::Error>,
}

impl<F: NorFlash> core::fmt::Debug for MountError<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MountError({:?})", self.error)
    }
}

/// Why mount started an empty store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatReason {
    /// The region was erased flash.
    Blank,
    /// The region held something, but no valid store (foreign or corrupt data).
    NoValidStore,
}

/// What mount found and repaired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The newest sector ended in a torn or dirty entry; appends continue in a fresh sector.
    pub torn_tail: bool,
    /// Sectors with an unreadable header (interrupted erase); reused after erase.
    pub bad_sectors: u32,
    /// An interrupted merge was completed (sources retired).
    pub merge_completed: bool,
    /// An interrupted merge was rolled back (incomplete output discarded).
    pub merge_rolled_back: bool,
    /// The newest sector held no record (cut right after it was opened).
    pub empty_head: bool,
    /// No valid state slot: state blob empty, ack reset, floor rebuilt from the log.
    pub state_lost: bool,
}

/// Result of [`Store::mount`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountStatus {
    /// A valid store, nothing to repair.
    Clean,
    /// A valid store, repaired as described.
    Recovered(Recovery),
    /// No valid store was found; an empty one was started.
    Formatted {
        /// What the region held.
        reason: FormatReason,
    },
}

/// Counters and levels for diagnostics and `/api/v1/info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Log sectors in the region.
    pub log_sectors: u32,
    /// Sectors holding records.
    pub live_sectors: u32,
    /// Sectors free for reuse.
    pub free_sectors: u32,
    /// Oldest seq still stored (possibly in a merged record).
    pub oldest_seq: Option<u64>,
    /// Newest seq stored.
    pub newest_seq: Option<u64>,
    /// Everything up to this seq was acknowledged by a collector.
    pub acked_seq: u64,
    /// Seq the next append gets.
    pub next_seq: u64,
    /// Records appended since mount.
    pub appended: u64,
    /// Merges since mount (full flash of un-acked data).
    pub merges: u32,
    /// Input records folded into coarser ones by those merges.
    pub records_merged: u64,
    /// Fully acknowledged sectors reclaimed since mount.
    pub sectors_reclaimed: u32,
    /// Sector erases since mount.
    pub erases: u32,
    /// Bytes programmed since mount.
    pub bytes_programmed: u64,
    /// Flash bytes read by the last mount.
    pub mount_bytes_read: u64,
    /// Entry bytes of appended records since mount (the encoded payload).
    pub payload_bytes: u64,
}

/// A read position in the log: yields records with `seq > after`.
///
/// A cursor stays valid across appends, acks and merges: if its sector was
/// reclaimed, it seeks again from the last seq it returned.
#[derive(Clone, Debug)]
pub struct Cursor {
    after: u64,
    slot: u32,
    slot_first: u32,
    off: u32,
    codec: CodecState,
}

impl Cursor {
    /// A cursor for records with `seq > after` (0 = everything).
    pub fn new(after: u64) -> Self {
        Cursor {
            after,
            slot: NONE,
            slot_first: FREE,
            off: SECTOR_HEADER,
            codec: CodecState::default(),
        }
    }
    /// The last seq returned (or the starting point).
    pub fn after(&self) -> u64 {
        self.after
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct StateInfo {
    valid: bool,
    generation: u32,
    floor: u64,
    acked: u64,
    len: u32,
    sector: u32,
    off: u32,
    end: u32,
}

#[derive(Clone, Copy, Debug)]
struct Head {
    slot: u32,
    off: u32,
    sealed: bool,
}

enum Entry {
    End,
    Invalid,
    Found(usize),
}

enum Blob<'a> {
    Keep,
    New(&'a [u8]),
}

/// The record log and state area on one flash region.
///
/// `N` is the most log sectors supported (RAM: 4 bytes each); the default
/// fits the 0x1e0000-byte partition.
pub struct Store<F: NorFlash, const N: usize = 480> {
    flash: F,
    base_addr: u32,
    sector: u32,
    state_sectors: u32,
    slots: u32,
    /// first seq of each log slot, relative to `base`, or FREE.
    first: [u32; N],
    base: u64,
    cursor_slot: u32,
    next_wc: u32,
    head: Option<Head>,
    codec: CodecState,
    next_seq: u64,
    state: StateInfo,
    poisoned: bool,
    stats: Stats,
    read_bytes: u64,
}

type R<T, F> = Result<T, Error<<F as embedded_storage::nor_flash::ErrorType>::Error>>;

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl<F: NorFlash, const N: usize> Store<F, N> {
    /// Mount the store in `config`'s region of `flash`, repairing whatever an
    /// interruption left. Reads every sector header, the state area and the
    /// newest sector: bounded, independent of how much was ever written.
    pub fn mount(flash: F, config: Config) -> Result<(Self, MountStatus), MountError<F>> {
        let sector = F::ERASE_SIZE as u32;
        let ok = sector >= 1024
            && sector.is_multiple_of(4)
            && 4 % F::WRITE_SIZE == 0
            && 4 % F::READ_SIZE == 0
            && config.offset.is_multiple_of(sector)
            && config.size.is_multiple_of(sector)
            && config.state_sectors >= 2
            && config.size / sector >= config.state_sectors + 5
            && (config.size / sector - config.state_sectors) as usize <= N
            && u64::from(config.offset) + u64::from(config.size) <= flash.capacity() as u64;
        if !ok {
            return Err(MountError {
                flash,
                error: Error::BadConfig,
            });
        }
        let mut s = Store {
            flash,
            base_addr: config.offset,
            sector,
            state_sectors: config.state_sectors,
            slots: config.size / sector - config.state_sectors,
            first: [FREE; N],
            base: 0,
            cursor_slot: 0,
            next_wc: 0,
            head: None,
            codec: CodecState::default(),
            next_seq: 1,
            state: StateInfo::default(),
            poisoned: false,
            stats: Stats::default(),
            read_bytes: 0,
        };
        match s.mount_inner() {
            Ok(status) => {
                s.stats.mount_bytes_read = s.read_bytes;
                Ok((s, status))
            }
            Err(error) => Err(MountError {
                flash: s.flash,
                error,
            }),
        }
    }

    /// Give the flash back.
    pub fn into_flash(self) -> F {
        self.flash
    }

    /// The flash (e.g. to read emulator counters).
    pub fn flash(&self) -> &F {
        &self.flash
    }

    fn mount_inner(&mut self) -> R<MountStatus, F> {
        let mut rec = Recovery::default();
        let mut blank = true;
        self.scan_state(&mut blank)?;
        self.base = if self.state.valid {
            self.state.floor
        } else {
            0
        };
        // Pass over all sector headers.
        let mut max_wc: Option<(u32, u32)> = None;
        let mut merged: Option<(u32, u32, u64, u64)> = None; // (wc, slot, lo, hi)
        let mut hdr = [0u8; SECTOR_HEADER as usize];
        for slot in 0..self.slots {
            self.rd(self.slot_addr(slot), &mut hdr)?;
            if hdr.iter().all(|&b| b == 0xFF) {
                continue;
            }
            blank = false;
            if le32(&hdr, 0) != LOG_MAGIC || crate::crc::crc32(&hdr[..36]) != le32(&hdr, 36) {
                rec.bad_sectors += 1;
                continue;
            }
            let wc = le32(&hdr, 4);
            if max_wc.is_none_or(|(w, _)| wc.wrapping_sub(w) as i32 > 0) {
                max_wc = Some((wc, slot));
            }
            if le32(&hdr, OFF_DEAD as usize) != 0xFFFF_FFFF {
                continue;
            }
            let first = le64(&hdr, 8);
            let kind = le32(&hdr, 32);
            if kind == KIND_MERGED {
                if le32(&hdr, OFF_COMMIT as usize) != 0 {
                    rec.merge_rolled_back = true;
                    continue;
                }
                if merged.is_none_or(|(w, ..)| wc.wrapping_sub(w) as i32 > 0) {
                    merged = Some((wc, slot, le64(&hdr, 16), le64(&hdr, 24)));
                }
            } else if kind != KIND_NORMAL {
                rec.bad_sectors += 1;
                continue;
            }
            if first < self.base || first - self.base >= u64::from(FREE) {
                // below the floor: reset log remains
                self.kill(slot)?;
                continue;
            }
            self.first[slot as usize] = (first - self.base) as u32;
        }
        if let Some((wc, slot)) = max_wc {
            self.next_wc = wc.wrapping_add(1);
            self.cursor_slot = slot;
        }
        // Finish an interrupted merge: its sources are still live.
        if let Some((_, mslot, lo, hi)) = merged {
            for slot in 0..self.slots {
                let f = self.first[slot as usize];
                if slot != mslot && f != FREE {
                    let seq = self.base + u64::from(f);
                    if (lo..=hi).contains(&seq) {
                        self.kill(slot)?;
                        rec.merge_completed = true;
                    }
                }
            }
        }
        // Find the head (newest sector) and the end of its records.
        while let Some(slot) = self.newest_slot() {
            let (codec, off, torn) = self.scan_sector(slot)?;
            if codec.last().is_none() {
                rec.empty_head = true;
                self.kill(slot)?;
                continue;
            }
            let sealed = torn || !self.is_erased(slot, off, self.sector - off)?;
            rec.torn_tail |= sealed;
            if let Some(last) = codec.last() {
                self.next_seq = last.seq.wrapping_add(1);
            }
            self.codec = codec;
            self.head = Some(Head { slot, off, sealed });
            break;
        }
        let live = self
            .first
            .iter()
            .take(self.slots as usize)
            .any(|&f| f != FREE);
        if self.state.valid {
            self.next_seq = self.next_seq.max(self.state.floor).max(1);
            if rec == Recovery::default() {
                return Ok(MountStatus::Clean);
            }
            return Ok(MountStatus::Recovered(rec));
        }
        // No valid state: start one, keeping whatever log there is.
        let floor = self.next_seq.max(1);
        self.next_seq = floor;
        self.write_state_slot(floor, 0, Blob::New(&[]))?;
        if live {
            rec.state_lost = true;
            Ok(MountStatus::Recovered(rec))
        } else {
            let reason = if blank {
                FormatReason::Blank
            } else {
                FormatReason::NoValidStore
            };
            Ok(MountStatus::Formatted { reason })
        }
    }

    // ------------------------------------------------------------ flash helpers

    fn slot_addr(&self, slot: u32) -> u32 {
        self.base_addr + (self.state_sectors + slot) * self.sector
    }

    fn rd(&mut self, addr: u32, buf: &mut [u8]) -> R<(), F> {
        self.read_bytes += buf.len() as u64;
        self.flash.read(addr, buf).map_err(Error::Flash)
    }

    fn program(&mut self, addr: u32, bytes: &[u8]) -> R<(), F> {
        self.stats.bytes_programmed += bytes.len() as u64;
        self.flash.write(addr, bytes).map_err(|e| {
            self.poisoned = true;
            Error::Flash(e)
        })
    }

    fn erase(&mut self, addr: u32) -> R<(), F> {
        self.stats.erases += 1;
        self.flash.erase(addr, addr + self.sector).map_err(|e| {
            self.poisoned = true;
            Error::Flash(e)
        })
    }

    fn is_erased_at(&mut self, addr: u32, len: u32) -> R<bool, F> {
        let mut buf = [0u8; 64];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(64);
            self.rd(addr + done, &mut buf[..n as usize])?;
            if buf[..n as usize].iter().any(|&b| b != 0xFF) {
                return Ok(false);
            }
            done += n;
        }
        Ok(true)
    }

    fn is_erased(&mut self, slot: u32, off: u32, len: u32) -> R<bool, F> {
        self.is_erased_at(self.slot_addr(slot) + off, len)
    }

    fn check(&self) -> R<(), F> {
        if self.poisoned {
            Err(Error::NeedsRemount)
        } else {
            Ok(())
        }
    }

    fn kill(&mut self, slot: u32) -> R<(), F> {
        self.first[slot as usize] = FREE;
        self.program(self.slot_addr(slot) + OFF_DEAD, &[0; 4])
    }

    fn live_slots(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.first
            .iter()
            .take(self.slots as usize)
            .enumerate()
            .filter(|(_, f)| **f != FREE)
            .map(|(i, f)| (i as u32, *f))
    }

    fn newest_slot(&self) -> Option<u32> {
        self.live_slots().max_by_key(|&(_, f)| f).map(|(s, _)| s)
    }

    fn oldest_two(&self) -> (Option<u32>, Option<u32>) {
        let mut a: Option<(u32, u32)> = None;
        let mut b: Option<(u32, u32)> = None;
        for (s, f) in self.live_slots() {
            if a.is_none_or(|(_, af)| f < af) {
                b = a;
                a = Some((s, f));
            } else if b.is_none_or(|(_, bf)| f < bf) {
                b = Some((s, f));
            }
        }
        (a.map(|x| x.0), b.map(|x| x.0))
    }

    /// The live slot whose first seq follows `rel`.
    fn next_slot_after(&self, rel: u32) -> Option<u32> {
        self.live_slots()
            .filter(|&(_, f)| f > rel)
            .min_by_key(|&(_, f)| f)
            .map(|(s, _)| s)
    }

    fn free_count(&self) -> u32 {
        self.slots - self.live_slots().count() as u32
    }

    /// Read the entry at `off` of `slot` into `buf`.
    fn read_entry(&mut self, slot: u32, off: u32, buf: &mut [u8; MAX_ENTRY]) -> R<Entry, F> {
        if off + 8 > self.sector {
            return Ok(Entry::End);
        }
        let addr = self.slot_addr(slot) + off;
        self.rd(addr, &mut buf[..4])?;
        let word = le32(buf, 0);
        if word == 0xFFFF_FFFF {
            return Ok(Entry::End);
        }
        let Some(len) = record::parse_header(word) else {
            return Ok(Entry::Invalid);
        };
        let size = record::entry_size(len);
        if off as usize + size > self.sector as usize {
            return Ok(Entry::Invalid);
        }
        self.rd(addr + 4, &mut buf[4..size])?;
        if !record::check_payload(word, &buf[4..4 + len]) {
            return Ok(Entry::Invalid);
        }
        Ok(Entry::Found(size))
    }

    /// Decode a whole sector: codec state after its last record, end offset, torn?
    fn scan_sector(&mut self, slot: u32) -> R<(CodecState, u32, bool), F> {
        let mut codec = CodecState::default();
        let mut buf = [0u8; MAX_ENTRY];
        let mut off = SECTOR_HEADER;
        let first = self.base + u64::from(self.first[slot as usize]);
        loop {
            match self.read_entry(slot, off, &mut buf)? {
                Entry::End => return Ok((codec, off, false)),
                Entry::Invalid => return Ok((codec, off, true)),
                Entry::Found(size) => {
                    let len = record::parse_header(le32(&buf, 0)).unwrap_or(0);
                    let prev = codec.last().map(|r| r.seq);
                    let mut next = codec.clone();
                    match next.decode_payload(&buf[4..4 + len]) {
                        Ok(r) if prev.is_none_or(|p| r.seq > p) && r.seq >= first => {
                            codec = next;
                            off += size as u32;
                        }
                        _ => return Ok((codec, off, true)),
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ state area

    fn state_addr(&self, sector: u32) -> u32 {
        self.base_addr + sector * self.sector
    }

    fn scan_state(&mut self, blank: &mut bool) -> R<(), F> {
        let mut best = StateInfo::default();
        let mut hdr = [0u8; STATE_HEADER as usize];
        for sector in 0..self.state_sectors {
            let mut off = 0;
            while off + STATE_HEADER <= self.sector {
                let addr = self.state_addr(sector) + off;
                self.rd(addr, &mut hdr)?;
                if hdr.iter().all(|&b| b == 0xFF) {
                    break;
                }
                *blank = false;
                let len = le32(&hdr, 24);
                if le32(&hdr, 0) != STATE_MAGIC || len as usize > MAX_STATE {
                    break;
                }
                let end = off + STATE_HEADER + len.div_ceil(4) * 4;
                if end > self.sector {
                    break;
                }
                let mut crc = Crc32::new();
                crc.update(&hdr[..28]);
                let mut chunk = [0u8; 64];
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(64) as usize;
                    let rn = n.div_ceil(4) * 4;
                    self.rd(addr + STATE_HEADER + done, &mut chunk[..rn])?;
                    crc.update(&chunk[..n]);
                    done += n as u32;
                }
                if crc.finish() != le32(&hdr, 28) {
                    break;
                }
                let generation = le32(&hdr, 4);
                if !best.valid || generation.wrapping_sub(best.generation) as i32 > 0 {
                    best = StateInfo {
                        valid: true,
                        generation,
                        floor: le64(&hdr, 8),
                        acked: le64(&hdr, 16),
                        len,
                        sector,
                        off,
                        end,
                    };
                }
                if best.valid && best.sector == sector && best.generation == generation {
                    best.end = end;
                }
                off = end;
            }
        }
        self.state = best;
        Ok(())
    }

    fn write_state_slot(&mut self, floor: u64, acked: u64, blob: Blob<'_>) -> R<(), F> {
        let len = match blob {
            Blob::Keep => self.state.len,
            Blob::New(b) => b.len() as u32,
        };
        if len as usize > MAX_STATE {
            return Err(Error::TooLarge);
        }
        let size = STATE_HEADER + len.div_ceil(4) * 4;
        let old = self.state;
        let (sector, off) = if old.valid
            && old.end + size <= self.sector
            && self.is_erased_at(self.state_addr(old.sector) + old.end, size)?
        {
            (old.sector, old.end)
        } else {
            let s = if old.valid {
                (old.sector + 1) % self.state_sectors
            } else {
                0
            };
            self.erase(self.state_addr(s))?;
            (s, 0)
        };
        let generation = if old.valid {
            old.generation.wrapping_add(1)
        } else {
            1
        };
        let mut hdr = [0u8; STATE_HEADER as usize];
        hdr[0..4].copy_from_slice(&STATE_MAGIC.to_le_bytes());
        hdr[4..8].copy_from_slice(&generation.to_le_bytes());
        hdr[8..16].copy_from_slice(&floor.to_le_bytes());
        hdr[16..24].copy_from_slice(&acked.to_le_bytes());
        hdr[24..28].copy_from_slice(&len.to_le_bytes());
        let mut crc = Crc32::new();
        crc.update(&hdr[..28]);
        // Blob first, header last: the slot exists only once its header is whole.
        let dst = self.state_addr(sector) + off + STATE_HEADER;
        let src = self.state_addr(old.sector) + old.off + STATE_HEADER;
        let mut chunk = [0u8; 64];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(64) as usize;
            let rn = n.div_ceil(4) * 4;
            chunk[..rn].fill(0xFF);
            match blob {
                Blob::Keep => self.rd(src + done, &mut chunk[..rn])?,
                Blob::New(b) => chunk[..n].copy_from_slice(&b[done as usize..done as usize + n]),
            }
            chunk[n..rn].fill(0xFF);
            crc.update(&chunk[..n]);
            self.program(dst + done, &chunk[..rn])?;
            done += n as u32;
        }
        hdr[28..32].copy_from_slice(&crc.finish().to_le_bytes());
        self.program(self.state_addr(sector) + off, &hdr)?;
        self.state = StateInfo {
            valid: true,
            generation,
            floor,
            acked,
            len,
            sector,
            off,
            end: off + size,
        };
        Ok(())
    }

    /// Length of the current state blob.
    pub fn state_len(&self) -> usize {
        self.state.len as usize
    }

    /// Copy the state blob into `out` (at least [`Store::state_len`] bytes);
    /// returns its length. Empty after a format.
    pub fn read_state(&mut self, out: &mut [u8]) -> R<usize, F> {
        let len = self.state.len as usize;
        if out.len() < len {
            return Err(Error::TooLarge);
        }
        let src = self.state_addr(self.state.sector) + self.state.off + STATE_HEADER;
        let whole = len / 4 * 4;
        self.rd(src, &mut out[..whole])?;
        if whole < len {
            let mut w = [0u8; 4];
            self.rd(src + whole as u32, &mut w)?;
            out[whole..len].copy_from_slice(&w[..len - whole]);
        }
        Ok(len)
    }

    /// Replace the state blob (≤ [`MAX_STATE`] bytes) all-or-nothing: after a
    /// cut, mount finds either the old or the new blob.
    pub fn write_state(&mut self, blob: &[u8]) -> R<(), F> {
        self.check()?;
        let (floor, acked) = (self.state.floor, self.state.acked);
        self.write_state_slot(floor, acked, Blob::New(blob))
    }

    // ------------------------------------------------------------ append

    /// Append one interval; the store assigns and returns its seq. When this
    /// returns `Ok` the record is on flash and survives any power cut.
    pub fn append(&mut self, record: &Record) -> R<u64, F> {
        self.check()?;
        let mut rec = record.normalized();
        rec.seq = self.next_seq;
        let mut buf = [0u8; MAX_ENTRY];
        loop {
            if let Some(head) = self.head.filter(|h| !h.sealed) {
                let mut codec = self.codec.clone();
                let n = codec
                    .encode(&rec, false, &mut buf)
                    .map_err(|_| Error::TooLarge)? as u32;
                if head.off + n <= self.sector {
                    let addr = self.slot_addr(head.slot) + head.off;
                    self.program(addr + 4, &buf[4..n as usize])?;
                    self.program(addr, &buf[..4])?;
                    self.codec = codec;
                    self.head = Some(Head {
                        off: head.off + n,
                        ..head
                    });
                    self.next_seq += 1;
                    self.stats.appended += 1;
                    self.stats.payload_bytes += u64::from(n);
                    return Ok(rec.seq);
                }
                if head.off == SECTOR_HEADER {
                    return Err(Error::TooLarge);
                }
            }
            self.make_room()?;
            let slot = self.open_sector(rec.seq, KIND_NORMAL, (u64::MAX, u64::MAX))?;
            self.codec = CodecState::default();
            self.head = Some(Head {
                slot,
                off: SECTOR_HEADER,
                sealed: false,
            });
        }
    }

    fn rel(&self, seq: u64) -> R<u32, F> {
        seq.checked_sub(self.base)
            .and_then(|d| u32::try_from(d).ok())
            .filter(|&d| d != FREE)
            .ok_or(Error::Full)
    }

    fn open_sector(&mut self, first: u64, kind: u32, cover: (u64, u64)) -> R<u32, F> {
        let rel = self.rel(first)?;
        let slot = (1..=self.slots)
            .map(|i| (self.cursor_slot + i) % self.slots)
            .find(|&s| self.first[s as usize] == FREE)
            .ok_or(Error::Full)?;
        let addr = self.slot_addr(slot);
        self.erase(addr)?;
        let mut hdr = [0u8; 40];
        hdr[0..4].copy_from_slice(&LOG_MAGIC.to_le_bytes());
        hdr[4..8].copy_from_slice(&self.next_wc.to_le_bytes());
        hdr[8..16].copy_from_slice(&first.to_le_bytes());
        hdr[16..24].copy_from_slice(&cover.0.to_le_bytes());
        hdr[24..32].copy_from_slice(&cover.1.to_le_bytes());
        hdr[32..36].copy_from_slice(&kind.to_le_bytes());
        let crc = crate::crc::crc32(&hdr[..36]);
        hdr[36..40].copy_from_slice(&crc.to_le_bytes());
        self.program(addr, &hdr)?;
        self.first[slot as usize] = rel;
        self.cursor_slot = slot;
        self.next_wc = self.next_wc.wrapping_add(1);
        Ok(slot)
    }

    /// Keep two free sectors: reclaim the oldest if fully acked, else merge
    /// the two oldest into one coarser sector.
    fn make_room(&mut self) -> R<(), F> {
        while self.free_count() < 2 {
            let (Some(a), Some(b)) = self.oldest_two() else {
                break;
            };
            let head = self.head.map(|h| h.slot);
            if Some(b) == head || Some(a) == head {
                break;
            }
            let b_first = self.base + u64::from(self.first[b as usize]);
            if b_first <= self.state.acked.saturating_add(1) {
                self.kill(a)?;
                self.stats.sectors_reclaimed += 1;
            } else if self.free_count() >= 1 {
                self.merge(a, b)?;
            } else {
                break;
            }
        }
        if self.free_count() == 0 {
            Err(Error::Full)
        } else {
            Ok(())
        }
    }

    fn merge(&mut self, a: u32, b: u32) -> R<(), F> {
        let cap = u64::from(self.sector - SECTOR_HEADER);
        let mut chosen = LEVELS.len() - 1;
        let mut plan = MergePlan::default();
        for (i, _) in LEVELS.iter().enumerate() {
            plan = self.merge_pass(a, b, i, None)?;
            if plan.bytes <= cap {
                chosen = i;
                break;
            }
        }
        if plan.count == 0 {
            self.kill(a)?;
            return self.kill(b);
        }
        let lo = self.base + u64::from(self.first[a as usize]);
        let hi = plan
            .last_in
            .max(self.base + u64::from(self.first[b as usize]));
        let f = self.open_sector(plan.first_out, KIND_MERGED, (lo, hi))?;
        self.merge_pass(a, b, chosen, Some(f))?;
        self.program(self.slot_addr(f) + OFF_COMMIT, &[0; 4])?;
        self.kill(a)?;
        self.kill(b)?;
        self.stats.merges += 1;
        self.stats.records_merged += plan.inputs;
        Ok(())
    }

    fn merge_pass(&mut self, a: u32, b: u32, level: usize, out: Option<u32>) -> R<MergePlan, F> {
        let mut plan = MergePlan::default();
        let mut enc = CodecState::default();
        let mut acc: Option<Acc> = None;
        let mut buf = [0u8; MAX_ENTRY];
        let mut ebuf = [0u8; MAX_ENTRY];
        let mut out_off = SECTOR_HEADER;
        let target = LEVELS[level];
        for slot in [a, b] {
            let mut dec = CodecState::default();
            let mut off = SECTOR_HEADER;
            let first = self.base + u64::from(self.first[slot as usize]);
            while let Entry::Found(size) = self.read_entry(slot, off, &mut buf)? {
                let len = record::parse_header(le32(&buf, 0)).unwrap_or(0);
                let prev = dec.last().map(|r| r.seq);
                let Ok(r) = dec.decode_payload(&buf[4..4 + len]) else {
                    break;
                };
                if prev.is_some_and(|p| r.seq <= p) || r.seq < first {
                    break;
                }
                off += size as u32;
                plan.last_in = r.seq;
                if r.seq <= self.state.acked {
                    continue;
                }
                plan.inputs += 1;
                match &mut acc {
                    Some(x) if x.can_join(&r, target) => x.add(&r),
                    _ => {
                        if let Some(x) = acc.take() {
                            self.emit(
                                &x.finish(),
                                &mut enc,
                                &mut ebuf,
                                &mut plan,
                                out,
                                &mut out_off,
                            )?;
                        }
                        acc = Some(Acc::start(&r));
                    }
                }
            }
        }
        if let Some(x) = acc.take() {
            self.emit(
                &x.finish(),
                &mut enc,
                &mut ebuf,
                &mut plan,
                out,
                &mut out_off,
            )?;
        }
        Ok(plan)
    }

    fn emit(
        &mut self,
        r: &Record,
        enc: &mut CodecState,
        ebuf: &mut [u8; MAX_ENTRY],
        plan: &mut MergePlan,
        out: Option<u32>,
        out_off: &mut u32,
    ) -> R<(), F> {
        if plan.count == 0 {
            plan.first_out = r.seq;
        }
        plan.count += 1;
        let n = enc.encode(r, false, ebuf).map_err(|_| Error::TooLarge)? as u32;
        plan.bytes += u64::from(n);
        if let Some(f) = out {
            if *out_off + n > self.sector {
                return Err(Error::Full);
            }
            let addr = self.slot_addr(f) + *out_off;
            self.program(addr + 4, &ebuf[4..n as usize])?;
            self.program(addr, &ebuf[..4])?;
        }
        *out_off += n;
        Ok(())
    }

    // ------------------------------------------------------------ ack, reset

    /// Mark everything up to `seq` as collected. Acked records stay readable
    /// until their space is needed. Persisted (a state-area write) only when
    /// it moves forward.
    pub fn ack(&mut self, seq: u64) -> R<(), F> {
        self.check()?;
        let seq = seq.min(self.next_seq - 1);
        if seq <= self.state.acked {
            return Ok(());
        }
        let floor = self.state.floor;
        self.write_state_slot(floor, seq, Blob::Keep)
    }

    /// Factory reset of the log: every record is dropped; seqs continue above
    /// the old ones. The state blob is kept (write an empty one to clear it).
    pub fn reset_log(&mut self) -> R<(), F> {
        self.check()?;
        let floor = self.next_seq;
        self.write_state_slot(floor, floor - 1, Blob::Keep)?;
        for slot in 0..self.slots {
            if self.first[slot as usize] != FREE {
                self.kill(slot)?;
            }
        }
        self.head = None;
        self.codec = CodecState::default();
        Ok(())
    }

    // ------------------------------------------------------------ reading

    /// Next record with `seq > cursor.after()`, or `None` at the end (call
    /// again later for records appended meanwhile).
    pub fn read(&mut self, cursor: &mut Cursor) -> R<Option<Record>, F> {
        let mut buf = [0u8; MAX_ENTRY];
        while let Some((r, _)) = self.step(cursor, &mut buf)? {
            if r.seq > cursor.after {
                cursor.after = r.seq;
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Fill `out` with whole entries, exactly as stored, for the wire: a
    /// [`record::Decoder`] created with the cursor's starting `after`
    /// decodes them. Returns the bytes written (0 = nothing more now).
    pub fn read_raw(&mut self, cursor: &mut Cursor, out: &mut [u8]) -> R<usize, F> {
        let mut buf = [0u8; MAX_ENTRY];
        let mut n = 0;
        loop {
            let saved = cursor.clone();
            let Some((r, size)) = self.step(cursor, &mut buf)? else {
                break;
            };
            if n + size > out.len() {
                *cursor = saved;
                break;
            }
            out[n..n + size].copy_from_slice(&buf[..size]);
            n += size;
            cursor.after = cursor.after.max(r.seq);
        }
        Ok(n)
    }

    fn seek(&self, cursor: &mut Cursor) -> bool {
        let target = cursor.after.saturating_add(1);
        let mut best: Option<(u32, u32)> = None;
        let mut oldest: Option<(u32, u32)> = None;
        for (s, f) in self.live_slots() {
            let seq = self.base + u64::from(f);
            if seq <= target && best.is_none_or(|(_, bf)| f > bf) {
                best = Some((s, f));
            }
            if oldest.is_none_or(|(_, of)| f < of) {
                oldest = Some((s, f));
            }
        }
        match best.or(oldest) {
            Some((s, f)) => {
                cursor.slot = s;
                cursor.slot_first = f;
                cursor.off = SECTOR_HEADER;
                cursor.codec = CodecState::default();
                true
            }
            None => false,
        }
    }

    /// Next entry at the cursor, with its record (any seq).
    fn step(
        &mut self,
        cursor: &mut Cursor,
        buf: &mut [u8; MAX_ENTRY],
    ) -> R<Option<(Record, usize)>, F> {
        self.check()?;
        loop {
            if (cursor.slot == NONE
                || self.first.get(cursor.slot as usize) != Some(&cursor.slot_first))
                && !self.seek(cursor)
            {
                return Ok(None);
            }
            let slot = cursor.slot;
            let entry = self.read_entry(slot, cursor.off, buf)?;
            if let Entry::Found(size) = entry {
                let len = record::parse_header(le32(buf, 0)).unwrap_or(0);
                let prev = cursor.codec.last().map(|r| r.seq);
                let first = self.base + u64::from(cursor.slot_first);
                let mut next = cursor.codec.clone();
                if let Ok(r) = next.decode_payload(&buf[4..4 + len])
                    && prev.is_none_or(|p| r.seq > p)
                    && r.seq >= first
                {
                    cursor.codec = next;
                    cursor.off += size as u32;
                    return Ok(Some((r, size)));
                }
            }
            // End of this sector's records.
            let is_open_head = self.head.is_some_and(|h| h.slot == slot && !h.sealed);
            if is_open_head && matches!(entry, Entry::End) {
                return Ok(None);
            }
            match self.next_slot_after(cursor.slot_first) {
                Some(s) => {
                    cursor.slot = s;
                    cursor.slot_first = self.first[s as usize];
                    cursor.off = SECTOR_HEADER;
                    cursor.codec = CodecState::default();
                }
                None => return Ok(None),
            }
        }
    }

    // ------------------------------------------------------------ stats

    /// Current counters and levels.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.log_sectors = self.slots;
        s.free_sectors = self.free_count();
        s.live_sectors = self.slots - s.free_sectors;
        s.acked_seq = self.state.acked;
        s.next_seq = self.next_seq;
        s.oldest_seq = self
            .live_slots()
            .map(|(_, f)| f)
            .min()
            .map(|f| self.base + u64::from(f));
        s.newest_seq = self.codec.last().map(|r| r.seq);
        s
    }

    /// Seq the next append will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Everything up to this seq is acknowledged.
    pub fn acked(&self) -> u64 {
        self.state.acked
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct MergePlan {
    bytes: u64,
    count: u64,
    inputs: u64,
    first_out: u64,
    last_in: u64,
}

/// Accumulates consecutive records into one merged record.
struct Acc {
    last: Record,
    n: u32,
    dur: u64,
    multi_boot: bool,
    freq: i128,
    v: [i128; 3],
    i: [i128; 3],
    p: [i128; 3],
    s: [i128; 3],
}

impl Acc {
    fn start(r: &Record) -> Self {
        let mut a = Acc {
            last: *r,
            n: 0,
            dur: 0,
            multi_boot: false,
            freq: 0,
            v: [0; 3],
            i: [0; 3],
            p: [0; 3],
            s: [0; 3],
        };
        a.n = 0;
        a.sum(r);
        a.n = 1;
        a
    }

    fn sum(&mut self, r: &Record) {
        let d = i128::from(r.duration_ms);
        self.dur += u64::from(r.duration_ms);
        self.freq += i128::from(r.frequency_mhz) * d;
        for k in 0..3 {
            self.v[k] += i128::from(r.voltages[k].rms_cv) * d;
            self.i[k] += i128::from(r.circuits[k].i_rms_ma) * d;
            self.p[k] += i128::from(r.circuits[k].real_power_dw) * d;
            self.s[k] += i128::from(r.circuits[k].apparent_power_dva) * d;
        }
    }

    fn can_join(&self, r: &Record, target: u32) -> bool {
        if target == u32::MAX {
            return true;
        }
        target != 0
            && r.voltage_count == self.last.voltage_count
            && r.circuit_count == self.last.circuit_count
            && r.boot_id == self.last.boot_id
            && self.dur + u64::from(r.duration_ms) <= u64::from(target)
    }

    fn add(&mut self, r: &Record) {
        self.sum(r);
        self.n += 1;
        let prev = self.last;
        self.multi_boot |= r.boot_id != prev.boot_id;
        let mut m = *r;
        m.flags = Flags(r.flags.0 | prev.flags.0);
        m.voltage_count = r.voltage_count.max(prev.voltage_count);
        m.circuit_count = r.circuit_count.max(prev.circuit_count);
        for k in 0..3 {
            let (a, b) = (&prev.voltages[k], &mut m.voltages[k]);
            b.min_cv = b.min_cv.min(a.min_cv);
            b.max_cv = b.max_cv.max(a.max_cv);
            let (a, b) = (&prev.circuits[k], &mut m.circuits[k]);
            b.real_power_min_dw = b.real_power_min_dw.min(a.real_power_min_dw);
            b.real_power_max_dw = b.real_power_max_dw.max(a.real_power_max_dw);
            // registers are cumulative: the last value is exact for the whole span
            b.import_mwh = b.import_mwh.max(a.import_mwh);
            b.export_mwh = b.export_mwh.max(a.export_mwh);
        }
        self.last = m;
    }

    fn finish(&self) -> Record {
        let mut m = self.last;
        if self.n <= 1 {
            return m;
        }
        m.flags.0 |= Flags::MERGED;
        if self.multi_boot {
            m.flags.0 |= Flags::MULTI_BOOT;
        }
        m.duration_ms = u32::try_from(self.dur).unwrap_or(u32::MAX);
        if self.dur > 0 {
            let d = i128::from(self.dur);
            let avg = |x: i128| (x + d / 2).div_euclid(d);
            m.frequency_mhz = u32::try_from(avg(self.freq)).unwrap_or(m.frequency_mhz);
            for k in 0..3 {
                m.voltages[k].rms_cv =
                    u32::try_from(avg(self.v[k])).unwrap_or(m.voltages[k].rms_cv);
                let c = &mut m.circuits[k];
                c.i_rms_ma = u32::try_from(avg(self.i[k])).unwrap_or(c.i_rms_ma);
                c.real_power_dw = i32::try_from(avg(self.p[k])).unwrap_or(c.real_power_dw);
                c.apparent_power_dva =
                    u32::try_from(avg(self.s[k])).unwrap_or(c.apparent_power_dva);
                c.power_factor_milli = if c.apparent_power_dva > 0 {
                    let pf = i64::from(c.real_power_dw) * 1000 / i64::from(c.apparent_power_dva);
                    pf.clamp(-1000, 1000) as i16
                } else {
                    c.power_factor_milli
                };
            }
        }
        m.normalized()
    }
}
