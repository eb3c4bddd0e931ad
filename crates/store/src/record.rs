//! The interval record and its compact, self-checking codec.
//!
//! This module is the wire format as well as the flash format: the device
//! streams the very entries it keeps in flash, and the collector decodes them
//! with [`Decoder`] (or [`Entries`]). It needs neither `std` nor `alloc`.
//!
//! An *entry* is one encoded record: a 4-byte header word followed by the
//! payload padded with `0xFF` to a multiple of 4 bytes:
//!
//! ```text
//! header (u32 LE): bits 0..9 payload length (1..=511)
//!                  bits 9..27 CRC-32 of the payload, low 18 bits
//!                  bits 27..32 number of zero bits in bits 0..27 (Berger code)
//! payload:         header byte (bit 0 key, bits 1..8 group present)
//!                  then adaptive Rice codes of the residuals of present groups
//! ```
//!
//! Every field is predicted from the previous record of the same block (or
//! from zero in a *key* record, which starts every block) and only the
//! zig-zag residual is coded, with an adaptive Golomb-Rice parameter per field
//! (LOCO-I style), so an idle circuit costs no bits and a steady one a few.
//! See `FORMAT.md` for the full description.

use crate::crc::crc32;

/// Most voltage channels a record carries.
pub const MAX_VOLTAGES: usize = 3;
/// Most current (CT) channels a record carries.
pub const MAX_CIRCUITS: usize = 3;
/// Largest payload of one entry.
pub const MAX_PAYLOAD: usize = 511;
/// Largest entry (header + padded payload).
pub const MAX_ENTRY: usize = 4 + 512;
/// Size of the entry header word.
pub const ENTRY_HEADER: usize = 4;

/// Record flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// The interval is shorter than configured (boot, clock change, config change).
    pub const PARTIAL: u8 = 1;
    /// The record is several intervals merged into a coarser one (full flash).
    pub const MERGED: u8 = 2;
    /// A merged record spans more than one boot; `uptime_ms` and `boot_id` are the last one's.
    pub const MULTI_BOOT: u8 = 4;

    /// Whether all bits of `bit` are set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit == bit
    }
}

/// One voltage channel over one interval, in centivolts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Voltage {
    /// RMS voltage over the interval (cV).
    pub rms_cv: u32,
    /// Lowest per-cycle RMS in the interval (cV).
    pub min_cv: u32,
    /// Highest per-cycle RMS in the interval (cV).
    pub max_cv: u32,
}

/// One current channel (CT) over one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Circuit {
    /// RMS current (mA).
    pub i_rms_ma: u32,
    /// Mean real power (dW, positive = import).
    pub real_power_dw: i32,
    /// Lowest real power seen in the interval (dW).
    pub real_power_min_dw: i32,
    /// Highest real power seen in the interval (dW).
    pub real_power_max_dw: i32,
    /// Mean apparent power (dVA).
    pub apparent_power_dva: u32,
    /// Power factor × 1000 (signed: negative when exporting).
    pub power_factor_milli: i16,
    /// Cumulative imported energy at interval end (mWh, exact).
    pub import_mwh: u64,
    /// Cumulative exported energy at interval end (mWh, exact).
    pub export_mwh: u64,
}

/// One metering interval of one device: the unit the store keeps and the
/// collector receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Record {
    /// Sequence number, assigned by the store; never repeats.
    pub seq: u64,
    /// Boot counter of the boot that measured this interval.
    pub boot_id: u32,
    /// Milliseconds since boot at interval end.
    pub uptime_ms: u64,
    /// Unix milliseconds at interval end, if the clock was set in this boot.
    pub wall_ms: Option<u64>,
    /// Length of the interval (ms).
    pub duration_ms: u32,
    /// See [`Flags`].
    pub flags: Flags,
    /// Mean mains frequency (mHz).
    pub frequency_mhz: u32,
    /// Number of valid entries in `voltages` (0..=3).
    pub voltage_count: u8,
    /// Voltage channels; entries past `voltage_count` are zero.
    pub voltages: [Voltage; MAX_VOLTAGES],
    /// Number of valid entries in `circuits` (0..=3).
    pub circuit_count: u8,
    /// Current channels; entries past `circuit_count` are zero.
    pub circuits: [Circuit; MAX_CIRCUITS],
}

impl Record {
    /// A copy with counts clamped to 3 and unused channels zeroed: the form
    /// that survives an encode/decode round trip.
    pub fn normalized(&self) -> Record {
        let mut r = *self;
        r.voltage_count = r.voltage_count.min(MAX_VOLTAGES as u8);
        r.circuit_count = r.circuit_count.min(MAX_CIRCUITS as u8);
        for v in r.voltages.iter_mut().skip(r.voltage_count as usize) {
            *v = Voltage::default();
        }
        for c in r.circuits.iter_mut().skip(r.circuit_count as usize) {
            *c = Circuit::default();
        }
        r
    }

    /// Valid voltage channels.
    pub fn voltages(&self) -> &[Voltage] {
        &self.voltages[..(self.voltage_count as usize).min(MAX_VOLTAGES)]
    }

    /// Valid current channels.
    pub fn circuits(&self) -> &[Circuit] {
        &self.circuits[..(self.circuit_count as usize).min(MAX_CIRCUITS)]
    }
}

/// Why bytes could not be decoded as an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The header word is not a valid entry header (blank, torn or foreign).
    BadHeader,
    /// The payload does not match its CRC.
    BadCrc,
    /// The payload is malformed (bad group bits, out-of-range value, overrun).
    Malformed,
    /// A delta entry arrived before any key entry.
    NoKey,
    /// The value is too large to encode (cannot happen for real records).
    TooLarge,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DecodeError::BadHeader => "invalid entry header",
            DecodeError::BadCrc => "entry CRC mismatch",
            DecodeError::Malformed => "malformed entry payload",
            DecodeError::NoKey => "delta entry without a preceding key entry",
            DecodeError::TooLarge => "record too large to encode",
        })
    }
}

// ---------------------------------------------------------------- header word

const LEN_BITS: u32 = 9;
const CRC_BITS: u32 = 18;
const DATA_MASK: u32 = (1 << (LEN_BITS + CRC_BITS)) - 1;

fn header_word(payload: &[u8]) -> u32 {
    let len = payload.len() as u32;
    let crc = crc32(payload) & ((1 << CRC_BITS) - 1);
    let data = len | (crc << LEN_BITS);
    let zeros = (!data & DATA_MASK).count_ones();
    data | (zeros << (LEN_BITS + CRC_BITS))
}

/// Parse a header word: `Some(payload_len)` when it is well formed.
///
/// The Berger check makes a header whose programming was interrupted (some
/// bits still 1 that should be 0) always invalid, and `0xFFFF_FFFF` (erased
/// flash) is never valid.
pub fn parse_header(word: u32) -> Option<usize> {
    let data = word & DATA_MASK;
    let zeros = word >> (LEN_BITS + CRC_BITS);
    if zeros != (!data & DATA_MASK).count_ones() {
        return None;
    }
    let len = (data & ((1 << LEN_BITS) - 1)) as usize;
    if len == 0 { None } else { Some(len) }
}

/// Total size of an entry whose payload is `len` bytes.
pub fn entry_size(len: usize) -> usize {
    ENTRY_HEADER + len.div_ceil(4) * 4
}

/// Check the CRC of a payload against its header word.
pub fn check_payload(word: u32, payload: &[u8]) -> bool {
    parse_header(word) == Some(payload.len()) && header_word(payload) == word
}

// ---------------------------------------------------------------- bit I/O

struct BitWriter<'a> {
    buf: &'a mut [u8],
    bit: usize,
}

impl BitWriter<'_> {
    fn put(&mut self, value: u64, n: u32) -> Result<(), DecodeError> {
        for i in 0..n {
            let byte = self.bit / 8;
            if byte >= self.buf.len() {
                return Err(DecodeError::TooLarge);
            }
            if (value >> i) & 1 != 0 {
                self.buf[byte] |= 1 << (self.bit % 8);
            }
            self.bit += 1;
        }
        Ok(())
    }
}

struct BitReader<'a> {
    buf: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    fn get(&mut self, n: u32) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..n {
            let byte = self.bit / 8;
            let b = *self.buf.get(byte).ok_or(DecodeError::Malformed)?;
            if (b >> (self.bit % 8)) & 1 != 0 {
                v |= 1 << i;
            }
            self.bit += 1;
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------- adaptive Rice

const ESCAPE_Q: u64 = 8;
const RICE_RESET: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rice {
    a: u64,
    n: u32,
}

impl Rice {
    const INIT: Rice = Rice { a: 16, n: 1 };

    fn k(&self) -> u32 {
        let mut k = 0;
        while k < 58 && (u64::from(self.n) << k) < self.a {
            k += 1;
        }
        k
    }

    fn update(&mut self, u: u64) {
        self.a = self.a.saturating_add(u.min(1 << 48));
        self.n += 1;
        if self.n >= RICE_RESET {
            self.a = self.a.div_ceil(2);
            self.n /= 2;
        }
    }

    fn write(&mut self, w: &mut BitWriter<'_>, u: u64) -> Result<(), DecodeError> {
        let k = self.k();
        let q = u >> k;
        if q < ESCAPE_Q {
            w.put((1u64 << q) - 1, q as u32 + 1)?; // q ones then a zero
            w.put(u, k)?;
        } else {
            w.put((1u64 << ESCAPE_Q) - 1, ESCAPE_Q as u32)?;
            let bits = 64 - u.leading_zeros();
            w.put(u64::from(bits), 7)?;
            w.put(u, bits)?;
        }
        self.update(u);
        Ok(())
    }

    fn read(&mut self, r: &mut BitReader<'_>) -> Result<u64, DecodeError> {
        let k = self.k();
        let mut q = 0;
        while q < ESCAPE_Q && r.get(1)? == 1 {
            q += 1;
        }
        let u = if q < ESCAPE_Q {
            (q << k) | r.get(k)?
        } else {
            let bits = r.get(7)? as u32;
            if bits > 64 {
                return Err(DecodeError::Malformed);
            }
            r.get(bits)?
        };
        self.update(u);
        Ok(u)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

// ---------------------------------------------------------------- fields

const META: usize = 0; // 6 fields
const GRID: usize = 6; // freq + V0 (4 fields)
const VOLT1: usize = 10; // V1 (3), V2 at 13
const CIRC: usize = 16; // C0 at 16, C1 at 24, C2 at 32 (8 fields each)
/// Number of coded fields.
const FIELDS: usize = 40;

/// (first field, field count) of the 7 groups, in coding order.
const GROUPS: [(usize, usize); 7] = [
    (META, 6),
    (GRID, 4),
    (VOLT1, 3),
    (VOLT1 + 3, 3),
    (CIRC, 8),
    (CIRC + 8, 8),
    (CIRC + 16, 8),
];

fn shape(r: &Record) -> i64 {
    i64::from(r.voltage_count) | (i64::from(r.circuit_count) << 2) | (i64::from(r.flags.0) << 4)
}

fn wall_code(w: Option<u64>) -> i64 {
    match w {
        None => 0,
        Some(w) => w.wrapping_add(1) as i64,
    }
}

/// Whether group `g` exists in a record with this shape.
fn group_used(g: usize, r: &Record) -> bool {
    match g {
        0 | 1 => true,
        2 => r.voltage_count >= 2,
        3 => r.voltage_count >= 3,
        _ => (r.circuit_count as usize) > g - 4,
    }
}

fn volt_of(r: &Record, c: usize) -> u32 {
    let v = if r.voltage_count >= 3 { c } else { 0 };
    r.voltages[v].rms_cv
}

/// V·I estimate of apparent power in dVA.
fn vi_dva(r: &Record, c: usize) -> i64 {
    (i64::from(volt_of(r, c)).wrapping_mul(i64::from(r.circuits[c].i_rms_ma))) / 10_000
}

fn pf_est(r: &Record, c: usize) -> i64 {
    let ci = &r.circuits[c];
    if ci.apparent_power_dva == 0 {
        0
    } else {
        i64::from(ci.real_power_dw).wrapping_mul(1000) / i64::from(ci.apparent_power_dva)
    }
}

/// Energy in mWh of `dw` deci-watts over `ms` milliseconds.
fn energy_mwh(dw: i32, ms: u32) -> i64 {
    i64::from(dw).wrapping_mul(i64::from(ms)) / 36_000
}

fn get(r: &Record, f: usize) -> i64 {
    match f {
        0 => shape(r),
        1 => i64::from(r.duration_ms),
        2 => i64::from(r.boot_id),
        3 => r.seq as i64,
        4 => r.uptime_ms as i64,
        5 => wall_code(r.wall_ms),
        6 => i64::from(r.frequency_mhz),
        7..=15 => {
            let (v, k) = if f < 10 {
                (0, f - 7)
            } else {
                ((f - 10) / 3 + 1, (f - 10) % 3)
            };
            let v = &r.voltages[v];
            i64::from([v.rms_cv, v.min_cv, v.max_cv][k])
        }
        _ => {
            let c = &r.circuits[(f - CIRC) / 8];
            match (f - CIRC) % 8 {
                0 => i64::from(c.real_power_dw),
                1 => i64::from(c.real_power_min_dw),
                2 => i64::from(c.real_power_max_dw),
                3 => i64::from(c.i_rms_ma),
                4 => i64::from(c.apparent_power_dva),
                5 => i64::from(c.power_factor_milli),
                6 => c.import_mwh as i64,
                _ => c.export_mwh as i64,
            }
        }
    }
}

fn set(r: &mut Record, f: usize, v: i64) -> Result<(), DecodeError> {
    let u32v = || u32::try_from(v).map_err(|_| DecodeError::Malformed);
    let i32v = || i32::try_from(v).map_err(|_| DecodeError::Malformed);
    match f {
        0 => {
            if !(0..4096).contains(&v) {
                return Err(DecodeError::Malformed);
            }
            r.voltage_count = (v & 3) as u8;
            r.circuit_count = ((v >> 2) & 3) as u8;
            r.flags = Flags((v >> 4) as u8);
        }
        1 => r.duration_ms = u32v()?,
        2 => r.boot_id = u32v()?,
        3 => r.seq = v as u64,
        4 => r.uptime_ms = v as u64,
        5 => {
            r.wall_ms = if v == 0 {
                None
            } else {
                Some((v as u64).wrapping_sub(1))
            }
        }
        6 => r.frequency_mhz = u32v()?,
        7..=15 => {
            let (vi, k) = if f < 10 {
                (0, f - 7)
            } else {
                ((f - 10) / 3 + 1, (f - 10) % 3)
            };
            let x = u32v()?;
            let volt = &mut r.voltages[vi];
            match k {
                0 => volt.rms_cv = x,
                1 => volt.min_cv = x,
                _ => volt.max_cv = x,
            }
        }
        _ => {
            let c = &mut r.circuits[(f - CIRC) / 8];
            match (f - CIRC) % 8 {
                0 => c.real_power_dw = i32v()?,
                1 => c.real_power_min_dw = i32v()?,
                2 => c.real_power_max_dw = i32v()?,
                3 => c.i_rms_ma = u32v()?,
                4 => c.apparent_power_dva = u32v()?,
                5 => c.power_factor_milli = i16::try_from(v).map_err(|_| DecodeError::Malformed)?,
                6 => c.import_mwh = v as u64,
                _ => c.export_mwh = v as u64,
            }
        }
    }
    Ok(())
}

/// Prediction of field `f` of `cur` from `prev` and the fields of `cur`
/// before `f` (which the decoder already has).
fn predict(f: usize, p: &Record, c: &Record) -> i64 {
    let same_boot = c.boot_id == p.boot_id;
    match f {
        0 => shape(p),
        1 => i64::from(p.duration_ms),
        2 => i64::from(p.boot_id),
        3 => (p.seq as i64).wrapping_add(1),
        4 => {
            if same_boot {
                (p.uptime_ms as i64).wrapping_add(i64::from(c.duration_ms))
            } else {
                i64::from(c.duration_ms)
            }
        }
        5 => match p.wall_ms {
            Some(w) if same_boot => wall_code(Some(w.wrapping_add(u64::from(c.duration_ms)))),
            _ => 0,
        },
        6 => i64::from(p.frequency_mhz),
        7..=15 => {
            let (vi, k) = if f < 10 {
                (0, f - 7)
            } else {
                ((f - 10) / 3 + 1, (f - 10) % 3)
            };
            let (pv, cv) = (&p.voltages[vi], &c.voltages[vi]);
            let (prms, crms) = (i64::from(pv.rms_cv), i64::from(cv.rms_cv));
            match k {
                0 => prms,
                1 => crms.wrapping_sub(prms.wrapping_sub(i64::from(pv.min_cv))),
                _ => crms.wrapping_add(i64::from(pv.max_cv).wrapping_sub(prms)),
            }
        }
        _ => {
            let ci = (f - CIRC) / 8;
            let (pc, cc) = (&p.circuits[ci], &c.circuits[ci]);
            let (pavg, cavg) = (i64::from(pc.real_power_dw), i64::from(cc.real_power_dw));
            match (f - CIRC) % 8 {
                0 => pavg,
                1 => cavg.wrapping_sub(pavg.wrapping_sub(i64::from(pc.real_power_min_dw))),
                2 => cavg.wrapping_add(i64::from(pc.real_power_max_dw).wrapping_sub(pavg)),
                // current scales with |real power| at a steady power factor
                3 => {
                    let pi = i64::from(pc.i_rms_ma);
                    match pavg.unsigned_abs() {
                        0 => pi,
                        d => pi.wrapping_mul(cavg.wrapping_abs()) / d as i64,
                    }
                }
                4 => i64::from(pc.apparent_power_dva)
                    .wrapping_add(vi_dva(c, ci))
                    .wrapping_sub(vi_dva(p, ci)),
                5 => i64::from(pc.power_factor_milli)
                    .wrapping_add(pf_est(c, ci))
                    .wrapping_sub(pf_est(p, ci)),
                6 => {
                    let e = energy_mwh(cc.real_power_dw, c.duration_ms);
                    (pc.import_mwh as i64).wrapping_add(e.max(0))
                }
                _ => {
                    let e = energy_mwh(cc.real_power_dw, c.duration_ms);
                    (pc.export_mwh as i64).wrapping_add(e.min(0).wrapping_neg())
                }
            }
        }
    }
}

// ---------------------------------------------------------------- codec state

/// The state shared by encoder and decoder: the previous record of the block
/// and the adaptive coding parameters. Identical on both sides after the same
/// entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecState {
    prev: Record,
    rice: [Rice; FIELDS],
    have_key: bool,
}

impl Default for CodecState {
    fn default() -> Self {
        CodecState {
            prev: Record::default(),
            rice: [Rice::INIT; FIELDS],
            have_key: false,
        }
    }
}

impl CodecState {
    /// The last record encoded or decoded, if a key record was seen.
    pub fn last(&self) -> Option<&Record> {
        self.have_key.then_some(&self.prev)
    }

    fn reset(&mut self) {
        *self = CodecState::default();
    }

    /// Encode `rec` (normalized) as an entry into `out`, delta against the
    /// previous record unless `key` or no key was written yet. Returns the
    /// entry length (a multiple of 4). On error the state is unchanged.
    pub fn encode(
        &mut self,
        rec: &Record,
        key: bool,
        out: &mut [u8; MAX_ENTRY],
    ) -> Result<usize, DecodeError> {
        let mut next = self.clone();
        let key = key || !next.have_key;
        if key {
            next.reset();
        }
        let cur = rec.normalized();
        let mut resid = [0u64; FIELDS];
        for (f, r) in resid.iter_mut().enumerate() {
            *r = zigzag(get(&cur, f).wrapping_sub(predict(f, &next.prev, &cur)));
        }
        out.fill(0);
        let (head, body) = out.split_at_mut(ENTRY_HEADER);
        let payload = &mut body[..MAX_PAYLOAD];
        let mut groups = 0u8;
        for (g, &(start, n)) in GROUPS.iter().enumerate() {
            if group_used(g, &cur) && resid[start..start + n].iter().any(|&r| r != 0) {
                groups |= 1 << (g + 1);
            }
        }
        payload[0] = groups | u8::from(key);
        let mut w = BitWriter {
            buf: &mut payload[1..],
            bit: 0,
        };
        for (g, &(start, n)) in GROUPS.iter().enumerate() {
            if groups & (1 << (g + 1)) != 0 {
                for (f, &r) in resid.iter().enumerate().skip(start).take(n) {
                    next.rice[f].write(&mut w, r)?;
                }
            }
        }
        let len = 1 + w.bit.div_ceil(8);
        let padded = len.div_ceil(4) * 4;
        payload[len..padded].fill(0xFF);
        let word = header_word(&payload[..len]);
        head.copy_from_slice(&word.to_le_bytes());
        next.prev = cur;
        next.have_key = true;
        *self = next;
        Ok(ENTRY_HEADER + padded)
    }

    /// Decode a payload whose CRC was already checked. On error the state is
    /// unchanged.
    pub fn decode_payload(&mut self, payload: &[u8]) -> Result<Record, DecodeError> {
        let (&groups, rest) = payload.split_first().ok_or(DecodeError::Malformed)?;
        let key = groups & 1 != 0;
        if !key && !self.have_key {
            return Err(DecodeError::NoKey);
        }
        let mut next = self.clone();
        if key {
            next.reset();
        }
        let mut cur = Record::default();
        let mut r = BitReader { buf: rest, bit: 0 };
        for (g, &(start, n)) in GROUPS.iter().enumerate() {
            let present = groups & (1 << (g + 1)) != 0;
            let used = group_used(g, &cur);
            if present && !used {
                return Err(DecodeError::Malformed);
            }
            for f in start..start + n {
                let resid = if present {
                    next.rice[f].read(&mut r)?
                } else {
                    0
                };
                if used {
                    let v = predict(f, &next.prev, &cur).wrapping_add(unzigzag(resid));
                    set(&mut cur, f, v)?;
                }
            }
        }
        if r.bit.div_ceil(8) != rest.len() {
            return Err(DecodeError::Malformed);
        }
        next.prev = cur;
        next.have_key = true;
        *self = next;
        Ok(cur)
    }
}

// ---------------------------------------------------------------- public wire API

/// Encode records into entries (the flash and wire format).
#[derive(Clone, Debug, Default)]
pub struct Encoder {
    state: CodecState,
}

impl Encoder {
    /// A fresh encoder; its first entry is a key entry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encode one record (with its `seq` as given); `key` forces a key entry.
    pub fn encode(
        &mut self,
        rec: &Record,
        key: bool,
        out: &mut [u8; MAX_ENTRY],
    ) -> Result<usize, DecodeError> {
        self.state.encode(rec, key, out)
    }
}

/// One entry decoded by [`Decoder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of input this entry took.
    pub consumed: usize,
    /// The record; `None` when its seq is not after the decoder's cursor.
    pub record: Option<Record>,
}

/// Streaming decoder of entries, e.g. a `GET /api/v1/records?after=N` body.
/// Entries with `seq <= after` (the rest of the first block) are skipped.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    state: CodecState,
    after: u64,
}

impl Decoder {
    /// A decoder that yields only records with `seq > after`.
    pub fn new(after: u64) -> Self {
        Decoder {
            state: CodecState::default(),
            after,
        }
    }

    /// Decode the entry at the start of `input`. `Ok(None)` when `input` does
    /// not yet hold a whole entry (feed more bytes).
    pub fn decode(&mut self, input: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        let Some(word) = input.get(..4) else {
            return Ok(None);
        };
        let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        let len = parse_header(word).ok_or(DecodeError::BadHeader)?;
        let size = entry_size(len);
        let Some(payload) = input.get(ENTRY_HEADER..ENTRY_HEADER + len) else {
            return Ok(None);
        };
        if input.len() < size {
            return Ok(None);
        }
        if !check_payload(word, payload) {
            return Err(DecodeError::BadCrc);
        }
        let rec = self.state.decode_payload(payload)?;
        let record = if rec.seq > self.after {
            self.after = rec.seq;
            Some(rec)
        } else {
            None
        };
        Ok(Some(Decoded {
            consumed: size,
            record,
        }))
    }
}

/// Iterator over the records of a complete byte slice of entries.
pub struct Entries<'a> {
    input: &'a [u8],
    decoder: Decoder,
    failed: bool,
}

impl<'a> Entries<'a> {
    /// Records with `seq > after` from `input`.
    pub fn new(input: &'a [u8], after: u64) -> Self {
        Entries {
            input,
            decoder: Decoder::new(after),
            failed: false,
        }
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Record, DecodeError>;
    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed && !self.input.is_empty() {
            match self.decoder.decode(self.input) {
                Ok(Some(d)) => {
                    self.input = &self.input[d.consumed..];
                    if let Some(r) = d.record {
                        return Some(Ok(r));
                    }
                }
                Ok(None) => {
                    self.failed = true;
                    return Some(Err(DecodeError::Malformed));
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn sample(seq: u64) -> Record {
        let mut r = Record {
            seq,
            boot_id: 3,
            uptime_ms: 60_000 * seq,
            wall_ms: Some(1_700_000_000_000 + 60_000 * seq),
            duration_ms: 60_000,
            frequency_mhz: 50_010,
            voltage_count: 1,
            circuit_count: 2,
            ..Record::default()
        };
        r.voltages[0] = Voltage {
            rms_cv: 23_012,
            min_cv: 22_950,
            max_cv: 23_100,
        };
        r.circuits[0] = Circuit {
            i_rms_ma: 2_100,
            real_power_dw: 4_500,
            real_power_min_dw: 4_000,
            real_power_max_dw: 5_000,
            apparent_power_dva: 4_830,
            power_factor_milli: 931,
            import_mwh: 1_234_567 + 7_500 * seq,
            export_mwh: 0,
        };
        r
    }

    #[test]
    fn header_rejects_blank_and_torn() {
        assert_eq!(parse_header(0xFFFF_FFFF), None);
        let w = header_word(&[1, 2, 3]);
        assert_eq!(parse_header(w), Some(3));
        // any subset of unprogrammed zero bits is detected
        for bit in 0..32 {
            if w & (1 << bit) == 0 {
                assert_eq!(parse_header(w | (1 << bit)), None, "bit {bit}");
            }
        }
    }

    #[test]
    fn round_trip_and_small() {
        let mut enc = Encoder::new();
        let mut buf = [0u8; MAX_ENTRY];
        let mut wire = [0u8; 4096];
        let mut at = 0;
        for s in 1..=20 {
            let n = enc.encode(&sample(s), false, &mut buf).unwrap();
            wire[at..at + n].copy_from_slice(&buf[..n]);
            at += n;
        }
        let got: Result<Vec<_>, _> = Entries::new(&wire[..at], 0).collect();
        let got = got.unwrap();
        assert_eq!(got.len(), 20);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(*r, sample(i as u64 + 1));
        }
        // a perfectly regular record costs just the header byte + header word
        assert!(at < 20 * 12 + 100, "{at}");
        let after: usize = Entries::new(&wire[..at], 15)
            .map(|r| r.unwrap())
            .filter(|r| r.seq > 15)
            .count();
        assert_eq!(after, 5);
    }

    #[test]
    fn rejects_garbage() {
        let mut d = Decoder::new(0);
        assert_eq!(d.decode(&[0; 8]), Err(DecodeError::BadHeader));
        assert_eq!(d.decode(&[0xFF; 8]), Err(DecodeError::BadHeader));
        let mut enc = Encoder::new();
        let mut buf = [0u8; MAX_ENTRY];
        let n = enc.encode(&sample(1), false, &mut buf).unwrap();
        buf[n - 5] ^= 0x10;
        assert!(d.decode(&buf[..n]).is_err());
    }
}
