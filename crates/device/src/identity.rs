//! Device identity: MAC, SSID, id string.

use alloc::string::String;
use core::fmt::Write;

/// Default SSID prefix of API v1 devices.
pub const DEFAULT_SSID_PREFIX: &str = "OFMon-";

/// The MAC as 12 upper-case hex digits (the device id).
pub fn mac_hex(mac: &[u8; 6]) -> String {
    let mut s = String::with_capacity(12);
    for b in mac {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// SSID of an API v1 device: prefix + 12 upper-case hex digits.
pub fn ssid(prefix: &str, mac: &[u8; 6]) -> String {
    let mut s = String::from(prefix);
    s.push_str(&mac_hex(mac));
    s
}

/// SSID of a device in legacy mode, as the original firmware named it:
/// `SEM-` + the MAC as `xx:xx:xx:xx:xx:xx` (lower-case hex).
pub fn legacy_ssid(mac: &[u8; 6]) -> String {
    let mut s = String::from("SEM-");
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssids() {
        let mac = [0x24, 0x0a, 0xc4, 0x12, 0xab, 0x0f];
        assert_eq!(mac_hex(&mac), "240AC412AB0F");
        assert_eq!(ssid(DEFAULT_SSID_PREFIX, &mac), "OFMon-240AC412AB0F");
        assert_eq!(legacy_ssid(&mac), "SEM-24:0a:c4:12:ab:0f");
    }
}
