//! `Device::self_test`: passes on a healthy boot, fails once a flash write
//! failed since boot.

use std::cell::Cell;
use std::rc::Rc;

use device::platform::NoOta;
use device::{Device, Options, SelfTestError};
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use protocol::firmware::FirmwareVersion;
use store::emulated::{EmuError, EmulatedFlash};

/// Emulated flash whose writes can be made to fail.
struct Flaky {
    inner: EmulatedFlash,
    broken: Rc<Cell<bool>>,
}

impl ErrorType for Flaky {
    type Error = EmuError;
}

impl ReadNorFlash for Flaky {
    const READ_SIZE: usize = EmulatedFlash::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), EmuError> {
        self.inner.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl NorFlash for Flaky {
    const WRITE_SIZE: usize = EmulatedFlash::WRITE_SIZE;
    const ERASE_SIZE: usize = EmulatedFlash::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), EmuError> {
        if self.broken.get() {
            self.inner.cut_after(1, 7);
        }
        self.inner.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), EmuError> {
        if self.broken.get() {
            self.inner.cut_after(1, 7);
        }
        self.inner.write(offset, bytes)
    }
}

#[test]
fn self_test_passes_on_a_healthy_boot_and_fails_after_a_flash_fault() {
    let broken = Rc::new(Cell::new(false));
    let flash = Flaky {
        inner: EmulatedFlash::new(store::Config::default().size as usize),
        broken: broken.clone(),
    };
    let meter = metering::Config::new(500, metering::Layout::SinglePhase { cts: 1 })
        .with_interval_seconds(1);
    let mut opts = Options::new(meter, "sim");
    opts.firmware_version = FirmwareVersion::new(1, 2, 3);
    let (mut dev, _) = Device::boot(flash, NoOta, [2, 0, 0, 0, 0, 1], 42, 0, opts).unwrap();
    assert_eq!(dev.self_test(0), Ok(()));
    assert_eq!(dev.firmware_version(), FirmwareVersion::new(1, 2, 3));

    // Two seconds of a 50 Hz sine at 500 sets/s: a record is committed.
    let sets: Vec<u16> = (0..1000)
        .flat_map(|i| {
            let x = (i as f32 * 2.0 * std::f32::consts::PI / 10.0).sin();
            [(2048.0 + x * 1000.0) as u16, (2048.0 + x * 300.0) as u16]
        })
        .collect();
    assert!(!dev.push_samples(&sets).unwrap().is_empty());
    assert_eq!(dev.self_test(1000), Ok(()), "records read back");

    broken.set(true);
    assert!(dev.push_samples(&sets).is_err(), "the append fails");
    assert!(matches!(dev.self_test(2000), Err(SelfTestError::Fault(_))));
}
