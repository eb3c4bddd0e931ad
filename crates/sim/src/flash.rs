//! The simulator's flash (the OTA slot is in [`crate::firmware`]).
//!
//! [`SimFlash`] wraps the store's emulated NOR flash (file-backed) so the
//! runner can arm a power cut while the device core owns the flash: the next
//! program/erase after arming is interrupted, leaving undefined bits, and
//! every later operation fails until the runner "reboots" the flash.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use store::emulated::{EmuError, EmulatedFlash};

/// Shared power-cut trigger.
#[derive(Debug, Default)]
pub struct CutControl {
    /// 0 = disarmed; k = cut the k-th program/erase from now.
    arm: AtomicU64,
    seed: AtomicU64,
}

impl CutControl {
    /// Arms a cut at the `k`-th flash operation from now.
    pub fn arm(&self, k: u64, seed: u64) {
        self.seed.store(seed, Ordering::Relaxed);
        self.arm.store(k.max(1), Ordering::Release);
    }

    /// Whether a cut is armed but has not hit yet.
    pub fn armed(&self) -> bool {
        self.arm.load(Ordering::Acquire) != 0
    }
}

/// Emulated flash with a remote-controlled power cut.
pub struct SimFlash {
    inner: EmulatedFlash,
    ctl: Arc<CutControl>,
}

impl SimFlash {
    /// Wraps `inner`.
    pub fn new(inner: EmulatedFlash, ctl: Arc<CutControl>) -> Self {
        Self { inner, ctl }
    }

    /// Whether power is cut.
    pub fn is_cut(&self) -> bool {
        self.inner.is_cut()
    }

    /// Power back on.
    pub fn power_on(&mut self) {
        self.inner.reboot();
    }

    /// Bytes programmed since creation.
    pub fn bytes_programmed(&self) -> u64 {
        self.inner.bytes_programmed()
    }

    fn transfer_arm(&mut self) {
        let k = self.ctl.arm.swap(0, Ordering::AcqRel);
        if k != 0 {
            self.inner
                .cut_after(k, self.ctl.seed.load(Ordering::Relaxed));
        }
    }
}

impl ErrorType for SimFlash {
    type Error = EmuError;
}

impl ReadNorFlash for SimFlash {
    const READ_SIZE: usize = EmulatedFlash::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl NorFlash for SimFlash {
    const WRITE_SIZE: usize = EmulatedFlash::WRITE_SIZE;
    const ERASE_SIZE: usize = EmulatedFlash::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.transfer_arm();
        self.inner.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.transfer_arm();
        self.inner.write(offset, bytes)
    }
}
