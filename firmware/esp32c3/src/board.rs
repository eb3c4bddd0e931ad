//! The chip boundary: what an `esp32` (Xtensa) port would change.
//!
//! Everything else in this crate uses esp-hal / esp-radio / esp-storage APIs
//! that are the same on every ESP32 chip. The chip-specific parts are:
//! - [`Chip`] (name, MAC, the ADC1 pins and their GPIO types, see
//!   [`crate::sampler::Pins`] and [`crate::config::PIN_MAP`]);
//! - the target triple and linker flags in `.cargo/config.toml`;
//! - the `esp32c3` feature on each esp-* dependency in `Cargo.toml`.

use esp_hal::efuse::{self, InterfaceMacAddress};

/// Facts about the chip the firmware runs on.
pub trait Chip {
    /// Board name in firmware manifests.
    const NAME: &'static str;
    /// The station MAC, which names the device.
    fn mac(&self) -> [u8; 6];
}

/// The ESP32-C3 (RISC-V, ADC1 on GPIO0..=4).
pub struct Esp32c3;

impl Chip for Esp32c3 {
    const NAME: &'static str = crate::config::BOARD;

    fn mac(&self) -> [u8; 6] {
        let m = efuse::interface_mac_address(InterfaceMacAddress::Station);
        let mut out = [0u8; 6];
        for (o, b) in out.iter_mut().zip(m.as_bytes()) {
            *o = *b;
        }
        out
    }
}

/// Monotonic uptime from the embassy time driver (esp-rtos, system timer).
pub struct Uptime;

impl Uptime {
    /// Milliseconds since boot.
    pub fn now_ms() -> u64 {
        embassy_time::Instant::now().as_millis()
    }
}

impl device::platform::Clock for Uptime {
    fn uptime_ms(&self) -> u64 {
        Self::now_ms()
    }
}
