//! Device identity: MAC, SSID, id string.

use alloc::string::String;
use core::fmt::Write;

/// How the access point is protected while the device is unpaired.
///
/// Policy (docs/SECURITY.md, "The access point before pairing"): a build
/// either carries a **setup key** (32 random bytes, per build or per batch,
/// also kept by the installer's collector), from which each device derives
/// its own setup passphrase ([`setup_password`]); or it has none and the AP
/// is **open until paired**. There is deliberately no fixed setup
/// passphrase: one passphrase for every device is the original's flaw.
/// Once paired, the AP always uses the passphrase derived from the device
/// secret.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetupAp {
    /// No setup key in this build: open AP until paired.
    #[default]
    Open,
    /// WPA2 with [`setup_password`]`(key, mac)` until paired.
    SetupKey([u8; 32]),
}

/// The per-device WPA2 passphrase of an unpaired device under a build's
/// setup key: the key derivation of a paired device applied with the setup
/// key in place of the fleet secret, i.e. the first 20 characters of
/// lower-case base32 of `HMAC(HMAC(setup_key, "ofmon/v1/device" || mac),
/// "ofmon/v1/ap-password")`. A collector holding the setup key computes it
/// with `protocol::FleetSecret::from_bytes(setup_key).device_keys(&mac)`.
/// The setup key must not be the fleet secret (the passphrase would then be
/// the paired one).
pub fn setup_password(setup_key: &[u8; 32], mac: &[u8; 6]) -> protocol::ApPassword {
    protocol::FleetSecret::from_bytes(*setup_key)
        .device_secret(&protocol::Mac(*mac))
        .ap_password()
}

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

    #[test]
    fn setup_passwords_are_per_device_and_match_the_collector_side() {
        let key = [7u8; 32];
        let a = [0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5];
        let b = [0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf6];
        let pa = setup_password(&key, &a);
        assert_eq!(pa.as_str().len(), 20);
        assert_ne!(pa.as_str(), setup_password(&key, &b).as_str());
        assert_ne!(pa.as_str(), setup_password(&[8; 32], &a).as_str());
        // The same SECURITY.md test vector as a paired device's passphrase
        // when the key were (wrongly) the fleet secret 00..1f.
        let mut k = [0u8; 32];
        for (i, x) in k.iter_mut().enumerate() {
            *x = i as u8;
        }
        assert_eq!(setup_password(&k, &a).as_str(), "6exyjwtukyvqouzy57hi");
    }
}
