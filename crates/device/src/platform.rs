//! Small traits the board (firmware) or the simulator implements.
//!
//! The device core never performs IO itself: flash comes in as an
//! [`embedded_storage::nor_flash::NorFlash`], time and randomness are passed
//! in as values, and actions such as a reboot are returned to the shell,
//! which carries them out through these traits.

/// Interleaved raw ADC sample sets (12-bit counts), in the order of the
/// metering channel map.
pub trait SampleSource {
    /// Fills `buf` with whole sample sets and returns how many `u16` values
    /// were written (a multiple of the channel count; 0 if none are ready).
    fn read(&mut self, buf: &mut [u16]) -> usize;
}

/// Monotonic time since this boot.
pub trait Clock {
    /// Milliseconds since boot; never goes backwards within a boot.
    fn uptime_ms(&self) -> u64;
}

/// A source of random bytes (hardware RNG on the chip, OS RNG in the sim).
pub trait Rng {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// Restarts the device.
pub trait Reboot {
    /// Reboots; on hardware this does not return.
    fn reboot(&mut self);
}

/// The MAC address that names the device.
pub trait Mac {
    /// The station MAC, six bytes.
    fn mac(&self) -> [u8; 6];
}

/// Writes a firmware image into the inactive OTA slot.
///
/// Call order per upload, as the device core drives it
/// ([`crate::ota::Upload`]): `begin` once (after the manifest verified),
/// then `write` with **sequential offsets**: the first call at offset 0 and
/// each next call at the previous offset plus the previous chunk's length,
/// never overlapping, never skipping, never going back; chunks have any
/// length ≥ 1 (they follow the HTTP body's chunking, not sector sizes).
/// Then either `activate` once (the whole image arrived and its digest
/// verified) or `abort` (refusal, truncation, a new upload). An
/// implementation may buffer to whole sectors and may refuse an offset that
/// is not the next one. `activate` must flush anything buffered.
pub trait OtaSlot {
    /// Error from the slot writer.
    type Error: core::fmt::Debug;
    /// Capacity of the slot in bytes.
    fn capacity(&self) -> usize;
    /// Prepares the inactive slot for an image of `len` bytes.
    fn begin(&mut self, len: usize) -> Result<(), Self::Error>;
    /// Writes the next chunk of the image at `offset` (always the sum of the
    /// lengths written since `begin`; see the trait docs).
    fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), Self::Error>;
    /// Marks the written image as the one to boot next (pending self-test).
    fn activate(&mut self) -> Result<(), Self::Error>;
    /// Abandons a partial image.
    fn abort(&mut self);
}

/// An OTA slot that refuses every image, for builds without OTA.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOta;

/// The error of [`NoOta`].
#[derive(Debug, Clone, Copy)]
pub struct OtaUnsupported;

impl OtaSlot for NoOta {
    type Error = OtaUnsupported;
    fn capacity(&self) -> usize {
        0
    }
    fn begin(&mut self, _len: usize) -> Result<(), Self::Error> {
        Err(OtaUnsupported)
    }
    fn write(&mut self, _offset: usize, _data: &[u8]) -> Result<(), Self::Error> {
        Err(OtaUnsupported)
    }
    fn activate(&mut self) -> Result<(), Self::Error> {
        Err(OtaUnsupported)
    }
    fn abort(&mut self) {}
}
