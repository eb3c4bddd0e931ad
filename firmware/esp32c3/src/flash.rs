//! SPI flash: one shared `FlashStorage`, the store's data partition as a
//! bounded `NorFlash`, and the OTA slot writer.
//!
//! The flash driver is a singleton; the store, the OTA writer and the
//! boot-time image-state handling borrow it for one operation at a time
//! through [`with_flash`] (a critical-section mutex: flash operations run
//! with interrupts masked anyway).

use core::cell::RefCell;

use critical_section::Mutex;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use esp_bootloader_esp_idf::ota::OtaImageState;
use esp_bootloader_esp_idf::ota_updater::OtaUpdater;
use esp_bootloader_esp_idf::partitions::{
    self, AppPartitionSubType, DataPartitionSubType, PARTITION_TABLE_MAX_LEN, PartitionType,
};
use esp_storage::FlashStorage;

static FLASH: Mutex<RefCell<Option<FlashStorage<'static>>>> = Mutex::new(RefCell::new(None));

/// Flash errors seen by the store and the OTA writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// Access outside the partition or misaligned.
    OutOfBounds,
    /// The driver reported an error.
    Driver,
    /// The partition table could not be read or lacks a partition.
    Partition,
    /// OTA writes must be sequential.
    NotSequential,
    /// The flash driver was not installed.
    NoFlash,
}

impl core::fmt::Display for FlashError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FlashError::OutOfBounds => "flash access out of bounds",
            FlashError::Driver => "flash driver error",
            FlashError::Partition => "partition table error",
            FlashError::NotSequential => "OTA writes must be sequential",
            FlashError::NoFlash => "flash driver not installed",
        })
    }
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// Installs the flash driver.
pub fn install(flash: FlashStorage<'static>) {
    critical_section::with(|cs| {
        FLASH.borrow_ref_mut(cs).replace(flash);
    });
}

/// Runs `f` with the flash driver.
pub fn with_flash<R>(
    f: impl FnOnce(&mut FlashStorage<'static>) -> Result<R, FlashError>,
) -> Result<R, FlashError> {
    critical_section::with(|cs| match FLASH.borrow_ref_mut(cs).as_mut() {
        Some(fl) => f(fl),
        None => Err(FlashError::NoFlash),
    })
}

/// Offset and size of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Absolute flash offset.
    pub offset: u32,
    /// Size in bytes.
    pub len: u32,
}

/// Finds the data partition labelled `label` (`partitions.csv`).
pub fn find_data_partition(label: &str) -> Result<Span, FlashError> {
    with_flash(|fl| {
        let mut buf = [0u8; PARTITION_TABLE_MAX_LEN];
        let pt =
            partitions::read_partition_table(fl, &mut buf).map_err(|_| FlashError::Partition)?;
        pt.iter()
            .find(|p| {
                p.label_as_str() == label
                    && matches!(
                        p.partition_type(),
                        PartitionType::Data(
                            DataPartitionSubType::Spiffs | DataPartitionSubType::Undefined
                        )
                    )
            })
            .map(|p| Span {
                offset: p.offset(),
                len: p.len(),
            })
            .ok_or(FlashError::Partition)
    })
}

/// A bounded `NorFlash` view of one partition (offsets relative to its start).
#[derive(Debug, Clone, Copy)]
pub struct Partition {
    span: Span,
}

impl Partition {
    /// A view of `span`.
    pub fn new(span: Span) -> Self {
        Self { span }
    }

    fn abs(&self, offset: u32, len: usize) -> Result<u32, FlashError> {
        let end = offset
            .checked_add(len as u32)
            .ok_or(FlashError::OutOfBounds)?;
        if end > self.span.len {
            return Err(FlashError::OutOfBounds);
        }
        Ok(self.span.offset + offset)
    }
}

impl ErrorType for Partition {
    type Error = FlashError;
}

impl ReadNorFlash for Partition {
    const READ_SIZE: usize = <FlashStorage<'static> as ReadNorFlash>::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let at = self.abs(offset, bytes.len())?;
        with_flash(|fl| ReadNorFlash::read(fl, at, bytes).map_err(|_| FlashError::Driver))
    }

    fn capacity(&self) -> usize {
        self.span.len as usize
    }
}

impl NorFlash for Partition {
    const WRITE_SIZE: usize = <FlashStorage<'static> as NorFlash>::WRITE_SIZE;
    const ERASE_SIZE: usize = <FlashStorage<'static> as NorFlash>::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        if to < from {
            return Err(FlashError::OutOfBounds);
        }
        let a = self.abs(from, (to - from) as usize)?;
        let b = a + (to - from);
        with_flash(|fl| NorFlash::erase(fl, a, b).map_err(|_| FlashError::Driver))
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let at = self.abs(offset, bytes.len())?;
        with_flash(|fl| NorFlash::write(fl, at, bytes).map_err(|_| FlashError::Driver))
    }
}

const SECTOR: usize = FlashStorage::SECTOR_SIZE as usize;

/// Streams an image into the inactive OTA slot (the device core's
/// `OtaSlot`): sequential writes are collected into whole 4 KiB sectors,
/// each sector is erased and programmed once; `activate` pads the last
/// sector, selects the slot in `otadata` and marks it `New`, so the
/// bootloader tries it once and the image must confirm itself
/// ([`confirm_boot`]).
pub struct OtaWriter {
    slot: Option<(AppPartitionSubType, Span)>,
    sector: [u8; SECTOR],
    fill: usize,
    written: usize,
    capacity: usize,
}

impl OtaWriter {
    /// A writer for the slot the bootloader would switch to next.
    pub fn new() -> Self {
        let slot = next_slot().ok();
        Self {
            capacity: slot.map(|(_, s)| s.len as usize).unwrap_or(0),
            slot,
            sector: [0xff; SECTOR],
            fill: 0,
            written: 0,
        }
    }

    fn flush_sector(&mut self) -> Result<(), FlashError> {
        let (_, span) = self.slot.ok_or(FlashError::Partition)?;
        let at = span.offset as usize + self.written - self.fill;
        if at + SECTOR > (span.offset + span.len) as usize {
            return Err(FlashError::OutOfBounds);
        }
        let at = at as u32;
        let sector = &self.sector;
        with_flash(|fl| {
            NorFlash::erase(fl, at, at + SECTOR as u32).map_err(|_| FlashError::Driver)?;
            NorFlash::write(fl, at, sector).map_err(|_| FlashError::Driver)
        })?;
        self.sector = [0xff; SECTOR];
        self.fill = 0;
        Ok(())
    }
}

impl device::platform::OtaSlot for OtaWriter {
    type Error = FlashError;

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn begin(&mut self, len: usize) -> Result<(), FlashError> {
        self.slot = Some(next_slot()?);
        self.capacity = self.slot.map(|(_, s)| s.len as usize).unwrap_or(0);
        if len > self.capacity {
            return Err(FlashError::OutOfBounds);
        }
        self.sector = [0xff; SECTOR];
        self.fill = 0;
        self.written = 0;
        Ok(())
    }

    fn write(&mut self, offset: usize, mut data: &[u8]) -> Result<(), FlashError> {
        if offset != self.written {
            return Err(FlashError::NotSequential);
        }
        if self.written + data.len() > self.capacity {
            return Err(FlashError::OutOfBounds);
        }
        while !data.is_empty() {
            let n = (SECTOR - self.fill).min(data.len());
            self.sector[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            self.written += n;
            data = &data[n..];
            if self.fill == SECTOR {
                self.flush_sector()?;
            }
        }
        Ok(())
    }

    fn activate(&mut self) -> Result<(), FlashError> {
        if self.fill > 0 {
            self.flush_sector()?;
        }
        let (expected, _) = self.slot.ok_or(FlashError::Partition)?;
        with_flash(|fl| {
            let mut buf = [0u8; PARTITION_TABLE_MAX_LEN];
            let mut ota = OtaUpdater::new(fl, &mut buf).map_err(|_| FlashError::Partition)?;
            let (_, next) = ota.next_partition().map_err(|_| FlashError::Partition)?;
            if next != expected {
                return Err(FlashError::Partition);
            }
            ota.activate_next_partition()
                .map_err(|_| FlashError::Driver)?;
            ota.set_current_ota_state(OtaImageState::New)
                .map_err(|_| FlashError::Driver)
        })
    }

    fn abort(&mut self) {
        self.fill = 0;
        self.written = 0;
    }
}

/// The inactive OTA slot.
fn next_slot() -> Result<(AppPartitionSubType, Span), FlashError> {
    with_flash(|fl| {
        let mut buf = [0u8; PARTITION_TABLE_MAX_LEN];
        let mut ota = OtaUpdater::new(fl, &mut buf).map_err(|_| FlashError::Partition)?;
        let (sub, len) = {
            let (region, sub) = ota.next_partition().map_err(|_| FlashError::Partition)?;
            (sub, region.partition_size() as u32)
        };
        let mut buf2 = [0u8; PARTITION_TABLE_MAX_LEN];
        let pt =
            partitions::read_partition_table(fl, &mut buf2).map_err(|_| FlashError::Partition)?;
        let entry = pt
            .find_partition(PartitionType::App(sub))
            .map_err(|_| FlashError::Partition)?
            .ok_or(FlashError::Partition)?;
        Ok((
            sub,
            Span {
                offset: entry.offset(),
                len: entry.len().min(len),
            },
        ))
    })
}

/// What the running image must do about its OTA state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootTrial {
    /// Already confirmed (or booted without OTA data): nothing to do.
    Confirmed,
    /// First boot of a freshly installed image: self-test, then confirm.
    Pending,
}

/// Reads the running slot's OTA image state.
pub fn boot_trial() -> BootTrial {
    let state = with_flash(|fl| {
        let mut buf = [0u8; PARTITION_TABLE_MAX_LEN];
        let mut ota = OtaUpdater::new(fl, &mut buf).map_err(|_| FlashError::Partition)?;
        ota.current_ota_state().map_err(|_| FlashError::Partition)
    });
    match state {
        Ok(OtaImageState::New | OtaImageState::PendingVerify) => BootTrial::Pending,
        _ => BootTrial::Confirmed,
    }
}

/// Marks the running image valid after a passed self-test.
pub fn confirm_boot() -> Result<(), FlashError> {
    with_flash(|fl| {
        let mut buf = [0u8; PARTITION_TABLE_MAX_LEN];
        let mut ota = OtaUpdater::new(fl, &mut buf).map_err(|_| FlashError::Partition)?;
        ota.set_current_ota_state(OtaImageState::Valid)
            .map_err(|_| FlashError::Driver)
    })
}

/// Marks the running image invalid and selects the other slot (software
/// rollback; works even with a bootloader built without rollback support).
/// The caller reboots.
pub fn reject_boot() -> Result<(), FlashError> {
    with_flash(|fl| {
        let mut buf = [0u8; PARTITION_TABLE_MAX_LEN];
        let mut ota = OtaUpdater::new(fl, &mut buf).map_err(|_| FlashError::Partition)?;
        ota.set_current_ota_state(OtaImageState::Invalid)
            .map_err(|_| FlashError::Driver)?;
        // With two slots the "next" slot is the previous image.
        ota.activate_next_partition()
            .map_err(|_| FlashError::Driver)?;
        ota.set_current_ota_state(OtaImageState::Valid)
            .map_err(|_| FlashError::Driver)
    })
}
