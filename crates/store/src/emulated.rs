//! Emulated NOR flash for tests, benchmarks and the simulator (`emulated`
//! feature, needs `std`).
//!
//! - 4 KiB erase sectors, 4-byte write and read granularity;
//! - NOR rules enforced: programming a 1 over a 0 without an erase is an error;
//! - counters: erases per sector, bytes programmed, bytes read, operations;
//! - optional file backing, so contents persist across process restarts;
//! - power-cut injection: [`EmulatedFlash::cut_after`] interrupts the K-th
//!   following program/erase operation, leaving the word (program) or sector
//!   (erase) being changed in an undefined mix of old and new bits drawn from
//!   a seeded RNG; every later operation fails until [`EmulatedFlash::reboot`].

extern crate std;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::vec;
use std::vec::Vec;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Erase sector size.
pub const SECTOR: usize = 4096;
/// Program granularity.
pub const WORD: usize = 4;

/// Emulated flash errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmuError {
    /// Address or length outside the flash.
    OutOfBounds,
    /// Address or length not aligned to the read/write/erase size.
    NotAligned,
    /// Attempt to program a 1 where a 0 is stored (needs an erase first).
    NorViolation,
    /// Power was cut (now or earlier); call [`EmulatedFlash::reboot`].
    PowerCut,
    /// The backing file could not be written.
    Io,
}

impl core::fmt::Display for EmuError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            EmuError::OutOfBounds => "address out of bounds",
            EmuError::NotAligned => "address not aligned",
            EmuError::NorViolation => "program would set a 0 bit to 1 without erase",
            EmuError::PowerCut => "power cut",
            EmuError::Io => "backing file error",
        })
    }
}

impl std::error::Error for EmuError {}

impl NorFlashError for EmuError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            EmuError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            EmuError::NotAligned => NorFlashErrorKind::NotAligned,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// Which kind of operation a power cut interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutKind {
    /// A program (write) operation.
    Program,
    /// A sector erase.
    Erase,
}

/// Small deterministic RNG (xorshift64*), so cuts replay from a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (any seed, 0 included).
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// An in-memory (optionally file-backed) NOR flash.
pub struct EmulatedFlash {
    data: Vec<u8>,
    erase_counts: Vec<u32>,
    bytes_programmed: u64,
    bytes_read: u64,
    ops: u64,
    cut_in: Option<u64>,
    erases_only: bool,
    cut: bool,
    rng: Rng,
    file: Option<File>,
    last_cut: Option<CutKind>,
}

impl EmulatedFlash {
    /// Erased flash of `size` bytes (a multiple of 4 KiB).
    pub fn new(size: usize) -> Self {
        Self::from_image(vec![0xFF; size])
    }

    /// Flash holding `image` (e.g. random bytes for bad-input tests).
    pub fn from_image(mut image: Vec<u8>) -> Self {
        let size = image.len().div_ceil(SECTOR) * SECTOR;
        image.resize(size, 0xFF);
        EmulatedFlash {
            erase_counts: vec![0; size / SECTOR],
            data: image,
            bytes_programmed: 0,
            bytes_read: 0,
            ops: 0,
            cut_in: None,
            erases_only: false,
            cut: false,
            rng: Rng::new(0),
            file: None,
            last_cut: None,
        }
    }

    /// Flash backed by the file at `path`, created erased if missing. Every
    /// program and erase is written through, so a new process sees it.
    /// Wear counters are not persisted.
    pub fn open_file(path: &Path, size: usize) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut image = Vec::new();
        file.read_to_end(&mut image)?;
        if image.len() != size {
            image = vec![0xFF; size];
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&image)?;
        }
        let mut f = Self::from_image(image);
        f.file = Some(file);
        Ok(f)
    }

    /// Interrupt the `k`-th program or erase from now (1 = the next one).
    /// `seed` drives the undefined bits left behind.
    pub fn cut_after(&mut self, k: u64, seed: u64) {
        self.cut_in = Some(k.max(1));
        self.erases_only = false;
        self.rng = Rng::new(seed);
    }

    /// Interrupt the `k`-th sector erase from now (programs do not count).
    pub fn cut_at_erase(&mut self, k: u64, seed: u64) {
        self.cut_after(k, seed);
        self.erases_only = true;
    }

    /// Cancel a pending cut without triggering it.
    pub fn disarm(&mut self) {
        self.cut_in = None;
    }

    /// Whether power has been cut (all operations fail until [`Self::reboot`]).
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// What the last power cut interrupted.
    pub fn last_cut(&self) -> Option<CutKind> {
        self.last_cut
    }

    /// Power back on: operations work again; contents are kept.
    pub fn reboot(&mut self) {
        self.cut = false;
        self.cut_in = None;
    }

    /// Erases per 4 KiB sector.
    pub fn erase_counts(&self) -> &[u32] {
        &self.erase_counts
    }

    /// Bytes programmed so far.
    pub fn bytes_programmed(&self) -> u64 {
        self.bytes_programmed
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Program and erase operations so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// The raw contents.
    pub fn image(&self) -> &[u8] {
        &self.data
    }

    /// Reset the counters (not the contents).
    pub fn reset_counters(&mut self) {
        self.erase_counts.iter_mut().for_each(|c| *c = 0);
        self.bytes_programmed = 0;
        self.bytes_read = 0;
        self.ops = 0;
    }

    fn persist(&mut self, at: usize, len: usize) -> Result<(), EmuError> {
        if let Some(f) = &mut self.file {
            f.seek(SeekFrom::Start(at as u64))
                .map_err(|_| EmuError::Io)?;
            f.write_all(&self.data[at..at + len])
                .map_err(|_| EmuError::Io)?;
        }
        Ok(())
    }

    /// Count an operation; `true` when this one is interrupted.
    fn tick(&mut self, erase: bool) -> Result<bool, EmuError> {
        if self.cut {
            return Err(EmuError::PowerCut);
        }
        self.ops += 1;
        if self.erases_only && !erase {
            return Ok(false);
        }
        if let Some(k) = self.cut_in.as_mut() {
            *k -= 1;
            if *k == 0 {
                self.cut_in = None;
                self.cut = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn bounds(&self, offset: u32, len: usize, align: usize) -> Result<usize, EmuError> {
        let at = offset as usize;
        if !at.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(EmuError::NotAligned);
        }
        if at.checked_add(len).is_none_or(|end| end > self.data.len()) {
            return Err(EmuError::OutOfBounds);
        }
        Ok(at)
    }
}

impl ErrorType for EmulatedFlash {
    type Error = EmuError;
}

impl ReadNorFlash for EmulatedFlash {
    const READ_SIZE: usize = WORD;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), EmuError> {
        if self.cut {
            return Err(EmuError::PowerCut);
        }
        let at = self.bounds(offset, bytes.len(), WORD)?;
        bytes.copy_from_slice(&self.data[at..at + bytes.len()]);
        self.bytes_read += bytes.len() as u64;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.data.len()
    }
}

impl NorFlash for EmulatedFlash {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = SECTOR;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), EmuError> {
        if to < from {
            return Err(EmuError::OutOfBounds);
        }
        let at = self.bounds(from, (to - from) as usize, SECTOR)?;
        for s in (at..to as usize).step_by(SECTOR) {
            if self.tick(true)? {
                self.last_cut = Some(CutKind::Erase);
                // Interrupted erase: per bit old or erased, or a partial prefix.
                let mode = self.rng.below(3);
                let cut = self.rng.below(SECTOR as u64) as usize;
                for (i, b) in self.data[s..s + SECTOR].iter_mut().enumerate() {
                    *b = match mode {
                        0 => *b | self.rng.next_u64() as u8,
                        1 if i < cut => 0xFF,
                        _ => *b,
                    };
                }
                self.persist(s, SECTOR)?;
                return Err(EmuError::PowerCut);
            }
            self.data[s..s + SECTOR].fill(0xFF);
            self.erase_counts[s / SECTOR] += 1;
            self.persist(s, SECTOR)?;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), EmuError> {
        let at = self.bounds(offset, bytes.len(), WORD)?;
        if self.cut {
            return Err(EmuError::PowerCut);
        }
        let old = &self.data[at..at + bytes.len()];
        if old.iter().zip(bytes).any(|(o, n)| o & n != *n) {
            return Err(EmuError::NorViolation);
        }
        let interrupted = self.tick(false)?;
        if interrupted {
            self.last_cut = Some(CutKind::Program);
        }
        let words = bytes.len() / WORD;
        let stop = if interrupted {
            self.rng.below(words as u64) as usize
        } else {
            words
        };
        for w in 0..stop.min(words) {
            let r = at + w * WORD..at + (w + 1) * WORD;
            self.data[r.clone()].copy_from_slice(&bytes[w * WORD..(w + 1) * WORD]);
        }
        self.bytes_programmed += (stop * WORD) as u64;
        if interrupted {
            // The word being programmed: each bit that should go 1→0 may or may not have.
            let w = stop;
            for i in 0..WORD {
                let mask = self.rng.next_u64() as u8;
                let b = &mut self.data[at + w * WORD + i];
                let target = bytes[w * WORD + i];
                *b = (*b & target) | (*b & mask);
            }
            self.persist(at, bytes.len())?;
            return Err(EmuError::PowerCut);
        }
        self.persist(at, bytes.len())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nor_rules_and_cut() {
        let mut f = EmulatedFlash::new(2 * SECTOR);
        f.write(0, &[0x0F, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(
            f.write(0, &[0xF0, 0xFF, 0xFF, 0xFF]),
            Err(EmuError::NorViolation)
        );
        assert_eq!(f.write(1, &[0; 4]), Err(EmuError::NotAligned));
        f.erase(0, SECTOR as u32).unwrap();
        assert_eq!(f.erase_counts()[0], 1);
        f.cut_after(2, 7);
        f.write(0, &[0; 4]).unwrap();
        assert_eq!(f.write(4, &[0; 8]), Err(EmuError::PowerCut));
        assert!(f.is_cut());
        let mut b = [0u8; 4];
        assert_eq!(f.read(0, &mut b), Err(EmuError::PowerCut));
        f.reboot();
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
    }
}
