//! Board configuration: pin map, sampling rate, network addresses, build-time
//! settings. Everything a different board wiring changes lives here.

use core::net::Ipv4Addr;

/// Board name written into firmware manifests (`protocol::firmware::Board`).
pub const BOARD: &str = "esp32c3";

/// Sample sets per second. One set = one oneshot read of every configured
/// channel; 2400 Hz = 48 sets per 50 Hz cycle (40 per 60 Hz cycle).
pub const SAMPLE_RATE_HZ: u32 = 2400;

/// Number of current transformers wired (1..=3). Channel order in a sample
/// set: voltage, then CT1..CTn (the metering crate's `Layout`).
pub const CT_COUNT: u8 = 3;

/// Total channels in a sample set.
pub const CHANNELS: usize = 1 + CT_COUNT as usize;

/// Pin map (ADC1 only: GPIO0..=GPIO4; ADC2/GPIO5 is unusable on the C3):
///
/// | channel | GPIO | ADC1 channel |
/// |---|---|---|
/// | voltage (AC adapter divider) | GPIO0 | CH0 |
/// | CT1 | GPIO1 | CH1 |
/// | CT2 | GPIO2 | CH2 |
/// | CT3 | GPIO3 | CH3 |
///
/// GPIO4 is left free (a 4th CT would need a `Layout` with 4 circuits).
/// The pin types are fixed in [`crate::sampler::Pins`].
pub const PIN_MAP: &str = "V=GPIO0 CT1=GPIO1 CT2=GPIO2 CT3=GPIO3";

/// The metering layout for this wiring.
pub fn layout() -> metering::Layout {
    if CT_COUNT == 3 && THREE_PHASE_VIRTUAL {
        metering::Layout::ThreePhaseVirtual
    } else {
        metering::Layout::SinglePhase { cts: CT_COUNT }
    }
}

/// Three CTs on three phases with one voltage sensor (virtual 120°/240°
/// voltages). Set at build time with `OFMON_THREE_PHASE=1`.
pub const THREE_PHASE_VIRTUAL: bool = match option_env!("OFMON_THREE_PHASE") {
    Some(v) => v.len() == 1 && v.as_bytes()[0] == b'1',
    None => false,
};

/// Address of the device on its own access point (gateway, DHCP server, API).
pub const AP_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Prefix length of the AP network.
pub const AP_PREFIX: u8 = 24;
/// HTTP port of API v1.
pub const HTTP_PORT: u16 = 80;
/// Concurrent HTTP connections (one task and socket pair each).
pub const HTTP_TASKS: usize = 2;

/// Label of the data partition holding the store (`partitions.csv`).
pub const STORE_PARTITION: &str = "store";

/// Hex ed25519 public key that firmware manifests must be signed with
/// (`OFMON_FIRMWARE_PUBKEY` at build time; without it OTA is refused).
pub const FIRMWARE_PUBKEY_HEX: Option<&str> = option_env!("OFMON_FIRMWARE_PUBKEY");

/// Setup key of this build (`OFMON_SETUP_KEY` at build time, 64 hex digits;
/// keep the same key in the installer's collector). While unpaired the AP
/// uses a per-device WPA2 passphrase derived from it and the MAC
/// (`device::identity::setup_password`); without it the AP is open until
/// paired. After pairing the AP always uses the passphrase derived from the
/// device secret. Policy and trade-off: `docs/SECURITY.md`, "The access
/// point before pairing".
pub const SETUP_KEY_HEX: Option<&str> = option_env!("OFMON_SETUP_KEY");

/// Running firmware version (the crate version; manifests must be newer).
pub const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
