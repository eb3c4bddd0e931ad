//! Per-device key derivation and device identity.
//!
//! The operator holds one 32-byte **fleet secret** (hex in `fleet.key` on the
//! host). From it and a device's 6-byte MAC everything device-specific is
//! derived with HMAC-SHA256 (full specification: `docs/SECURITY.md`):
//!
//! ```text
//! device_secret = HMAC-SHA256(key = fleet_secret,  msg = "ofmon/v1/device" || mac[6])
//! api_key       = HMAC-SHA256(key = device_secret, msg = "ofmon/v1/api-key")
//! ap_password   = base32_lower(HMAC-SHA256(key = device_secret, msg = "ofmon/v1/ap-password"))[..20]
//! ```
//!
//! A device stores only its [`DeviceSecret`] (or the [`DeviceKeys`] derived
//! from it), never the fleet secret, so a captured device reveals only itself.
//!
//! Identity: the device id is the MAC as 12 upper-case hex digits
//! (`A0B1C2D3E4F5`); the SSID is a prefix (default [`DEFAULT_SSID_PREFIX`])
//! plus the id; the original firmware's legacy SSID is `SEM-` plus the MAC as
//! `xx:xx:xx:xx:xx:xx` in lower case.

use alloc::string::String;
use core::fmt;

use hmac::{Hmac, KeyInit, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::hex;

/// Label of the device-secret derivation (followed by the 6 MAC bytes).
pub const LABEL_DEVICE: &[u8] = b"ofmon/v1/device";
/// Label of the API-key derivation.
pub const LABEL_API_KEY: &[u8] = b"ofmon/v1/api-key";
/// Label of the AP password derivation.
pub const LABEL_AP_PASSWORD: &[u8] = b"ofmon/v1/ap-password";

/// Default SSID prefix: SSID = prefix + 12 upper-case hex digits of the MAC.
pub const DEFAULT_SSID_PREFIX: &str = "OFMon-";
/// SSID prefix of the original firmware (legacy mode).
pub const LEGACY_SSID_PREFIX: &str = "SEM-";
/// Longest SSID prefix that still fits the 32-byte SSID limit with a 12-digit id.
pub const MAX_SSID_PREFIX_LEN: usize = 32 - 12;
/// Length of the derived AP WPA2 passphrase in characters (100 bits).
pub const AP_PASSWORD_LEN: usize = 20;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Error parsing a key from hex or a MAC from text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not exactly 64 hex digits (after trimming surrounding whitespace).
    BadKeyHex,
    /// Not a MAC: expected 12 hex digits, optionally in 6 pairs separated by `:` or `-`.
    BadMac,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::BadKeyHex => f.write_str("key must be exactly 64 hex digits (32 bytes)"),
            KeyError::BadMac => {
                f.write_str("MAC must be 12 hex digits, optionally as xx:xx:xx:xx:xx:xx")
            }
        }
    }
}
crate::std_error!(KeyError);

fn key_from_hex(s: &str) -> Result<[u8; 32], KeyError> {
    hex::decode_array::<32>(s.trim()).map_err(|_| KeyError::BadKeyHex)
}

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps raw key bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
            /// The raw key bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// Parses 64 hex digits (either case); surrounding whitespace, such
            /// as the trailing newline of a key file, is ignored.
            pub fn from_hex(s: &str) -> Result<Self, KeyError> {
                key_from_hex(s).map(Self)
            }
            /// Lower-case hex (64 digits), the format of key files.
            pub fn to_hex(&self) -> String {
                hex::encode(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        /// Constant-time comparison.
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }
        impl Eq for $name {}
    };
}

secret_type!(
    /// The operator's fleet secret: 32 bytes, kept only on collectors
    /// (`fleet.key`, 64 hex digits), never on a device.
    FleetSecret
);
secret_type!(
    /// One device's root secret, derived from the fleet secret and its MAC.
    /// This is what a device stores (sent in [`crate::api::PairRequest`]).
    DeviceSecret
);
secret_type!(
    /// The key for HMAC request authentication with one device.
    ApiKey
);

impl FleetSecret {
    /// `device_secret = HMAC-SHA256(fleet, "ofmon/v1/device" || mac)`.
    pub fn device_secret(&self, mac: &Mac) -> DeviceSecret {
        DeviceSecret(hmac_sha256(&self.0, &[LABEL_DEVICE, &mac.0]))
    }

    /// All key material of the device with this MAC.
    pub fn device_keys(&self, mac: &Mac) -> DeviceKeys {
        self.device_secret(mac).keys()
    }
}

impl DeviceSecret {
    /// `api_key = HMAC-SHA256(device_secret, "ofmon/v1/api-key")`.
    pub fn api_key(&self) -> ApiKey {
        ApiKey(hmac_sha256(&self.0, &[LABEL_API_KEY]))
    }

    /// The AP's WPA2 passphrase: the first 20 characters of the RFC 4648
    /// base32 encoding, in lower case and without padding, of
    /// `HMAC-SHA256(device_secret, "ofmon/v1/ap-password")` (100 bits).
    pub fn ap_password(&self) -> ApPassword {
        let mac = hmac_sha256(&self.0, &[LABEL_AP_PASSWORD]);
        ApPassword(base32_lower_prefix::<AP_PASSWORD_LEN>(&mac))
    }

    /// Both derived keys.
    pub fn keys(&self) -> DeviceKeys {
        DeviceKeys {
            api_key: self.api_key(),
            ap_password: self.ap_password(),
        }
    }
}

/// The first `N` characters of the lower-case RFC 4648 base32 encoding of `data`.
fn base32_lower_prefix<const N: usize>(data: &[u8]) -> [u8; N] {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let bit = i * 5;
        let byte = bit / 8;
        let hi = u16::from(data.get(byte).copied().unwrap_or(0));
        let lo = u16::from(data.get(byte + 1).copied().unwrap_or(0));
        let window = (hi << 8) | lo;
        let shift = 16 - 5 - (bit % 8);
        *o = ALPHABET[usize::from((window >> shift) & 0x1f)];
    }
    out
}

/// A device's AP WPA2 passphrase: 20 characters from `a-z2-7`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApPassword([u8; AP_PASSWORD_LEN]);

impl ApPassword {
    /// The passphrase as text (always ASCII).
    pub fn as_str(&self) -> &str {
        // Only ALPHABET bytes are ever stored, which are ASCII.
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for ApPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApPassword(<redacted>)")
    }
}

/// The key material a device needs at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKeys {
    /// Key for request authentication ([`crate::auth`]).
    pub api_key: ApiKey,
    /// WPA2 passphrase of the device's access point.
    pub ap_password: ApPassword,
}

/// A 6-byte Wi-Fi MAC address, the device's identity.
///
/// `Display` prints the device id: 12 upper-case hex digits, e.g. `A0B1C2D3E4F5`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Parses a MAC or device id: 12 hex digits (either case), or six pairs
    /// separated by `:` or `-` (`a0:b1:c2:d3:e4:f5`).
    pub fn parse(s: &str) -> Result<Mac, KeyError> {
        let s = s.trim();
        let mut out = [0u8; 6];
        let b = s.as_bytes();
        if b.len() == 12 {
            hex::decode_into(s, &mut out).map_err(|_| KeyError::BadMac)?;
            return Ok(Mac(out));
        }
        if b.len() != 17 {
            return Err(KeyError::BadMac);
        }
        let sep = b[2];
        if sep != b':' && sep != b'-' {
            return Err(KeyError::BadMac);
        }
        for (i, o) in out.iter_mut().enumerate() {
            if i > 0 && b[3 * i - 1] != sep {
                return Err(KeyError::BadMac);
            }
            let pair = s.get(3 * i..3 * i + 2).ok_or(KeyError::BadMac)?;
            let mut one = [0u8; 1];
            hex::decode_into(pair, &mut one).map_err(|_| KeyError::BadMac)?;
            *o = one[0];
        }
        Ok(Mac(out))
    }

    /// The device id: 12 upper-case hex digits.
    pub fn id(&self) -> String {
        alloc::format!("{self}")
    }

    /// SSID `prefix + id`, e.g. `OFMon-A0B1C2D3E4F5`.
    pub fn ssid(&self, prefix: &str) -> String {
        alloc::format!("{prefix}{self}")
    }

    /// The original firmware's SSID: `SEM-a0:b1:c2:d3:e4:f5`.
    pub fn legacy_ssid(&self) -> String {
        alloc::format!("{LEGACY_SSID_PREFIX}{}", self.colon_lower())
    }

    /// The MAC as `a0:b1:c2:d3:e4:f5`.
    pub fn colon_lower(&self) -> String {
        let m = &self.0;
        alloc::format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5]
        )
    }

    /// Recovers the MAC from an SSID: `prefix` followed by 12 hex digits, or
    /// the legacy `SEM-` followed by `xx:xx:xx:xx:xx:xx`. Returns `None` for
    /// anything else (e.g. a foreign network).
    pub fn from_ssid(ssid: &str, prefix: &str) -> Option<Mac> {
        if let Some(rest) = ssid.strip_prefix(prefix)
            && rest.len() == 12
            && let Ok(mac) = Mac::parse(rest)
        {
            return Some(mac);
        }
        let rest = ssid.strip_prefix(LEGACY_SSID_PREFIX)?;
        if rest.len() == 17 {
            Mac::parse(rest).ok()
        } else {
            None
        }
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl core::str::FromStr for Mac {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mac::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FLEET_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const MAC_A: Mac = Mac([0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5]);
    const MAC_B: Mac = Mac([0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf6]);

    // Test vectors computed independently with Python 3's standard library:
    //
    //   import hmac, hashlib, base64
    //   fleet = bytes(range(32)); mac = bytes.fromhex("a0b1c2d3e4f5")
    //   h = lambda k, m: hmac.new(k, m, hashlib.sha256).digest()
    //   ds = h(fleet, b"ofmon/v1/device" + mac)
    //   ds.hex(); h(ds, b"ofmon/v1/api-key").hex()
    //   base64.b32encode(h(ds, b"ofmon/v1/ap-password")).decode().lower()[:20]
    const VEC_A_DEVICE: &str = "8afc97aba6855414df1df629947a9ce248015892bae2106d3170d0b05088f787";
    const VEC_A_API: &str = "3920612fb35d00d134f6a1bc4e10d68ca6976cdb401e41cc6ffc942f2337ef83";
    const VEC_A_AP: &str = "6exyjwtukyvqouzy57hi";
    const VEC_B_DEVICE: &str = "e67d4a5539a4f911b1b1c8920d7027a904763c35f51ba7031da15ba4d27db626";

    fn fleet() -> FleetSecret {
        FleetSecret::from_hex(FLEET_HEX).unwrap()
    }

    #[test]
    fn derivation_matches_independent_vectors() {
        let ds = fleet().device_secret(&MAC_A);
        assert_eq!(ds.to_hex(), VEC_A_DEVICE);
        assert_eq!(hex::encode(ds.api_key().as_bytes()), VEC_A_API);
        assert_eq!(ds.ap_password().as_str(), VEC_A_AP);
        assert_eq!(fleet().device_secret(&MAC_B).to_hex(), VEC_B_DEVICE);
    }

    #[test]
    fn derivation_is_deterministic_and_per_device() {
        let a1 = fleet().device_keys(&MAC_A);
        let a2 = fleet().device_keys(&MAC_A);
        assert_eq!(a1, a2);
        let b = fleet().device_keys(&MAC_B);
        assert_ne!(a1.api_key, b.api_key);
        assert_ne!(a1.ap_password, b.ap_password);
        // A device's own material is not the fleet secret, nor another device's.
        let da = fleet().device_secret(&MAC_A);
        assert_ne!(da.as_bytes(), fleet().as_bytes());
        // Treating device A's secret as if it were a fleet secret does not
        // yield device B's secret (no "walking" from one device to another).
        let fake_fleet = FleetSecret::from_bytes(*da.as_bytes());
        assert_ne!(
            fake_fleet.device_secret(&MAC_B),
            fleet().device_secret(&MAC_B)
        );
        // Labels separate the two derived keys.
        assert_ne!(
            da.api_key().as_bytes()[..],
            da.ap_password().as_str().as_bytes()[..]
        );
    }

    #[test]
    fn ap_password_is_valid_wpa2_passphrase() {
        let p = fleet().device_keys(&MAC_A).ap_password;
        assert_eq!(p.as_str().len(), AP_PASSWORD_LEN);
        assert!(
            p.as_str()
                .bytes()
                .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
        );
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 section 10: BASE32("foobar") = "MZXW6YTBOI======"
        assert_eq!(&base32_lower_prefix::<10>(b"foobar"), b"mzxw6ytboi");
        assert_eq!(&base32_lower_prefix::<2>(b"f"), b"my");
    }

    #[test]
    fn key_hex_parsing() {
        assert!(FleetSecret::from_hex(&alloc::format!("{FLEET_HEX}\n")).is_ok());
        assert!(FleetSecret::from_hex(&alloc::format!("  {}  ", FLEET_HEX.to_uppercase())).is_ok());
        assert_eq!(
            FleetSecret::from_hex(&FLEET_HEX[..62]).err(),
            Some(KeyError::BadKeyHex)
        );
        assert_eq!(FleetSecret::from_hex("zz").err(), Some(KeyError::BadKeyHex));
        assert_eq!(fleet().to_hex(), FLEET_HEX);
        assert_eq!(alloc::format!("{:?}", fleet()), "FleetSecret(<redacted>)");
    }

    #[test]
    fn identity_strings() {
        assert_eq!(MAC_A.id(), "A0B1C2D3E4F5");
        assert_eq!(MAC_A.ssid(DEFAULT_SSID_PREFIX), "OFMon-A0B1C2D3E4F5");
        assert_eq!(MAC_A.ssid("Meter_"), "Meter_A0B1C2D3E4F5");
        assert_eq!(MAC_A.legacy_ssid(), "SEM-a0:b1:c2:d3:e4:f5");
        assert_eq!(Mac::from_ssid("OFMon-A0B1C2D3E4F5", "OFMon-"), Some(MAC_A));
        assert_eq!(Mac::from_ssid("OFMon-a0b1c2d3e4f5", "OFMon-"), Some(MAC_A));
        assert_eq!(
            Mac::from_ssid("SEM-a0:b1:c2:d3:e4:f5", "OFMon-"),
            Some(MAC_A)
        );
        assert_eq!(
            Mac::from_ssid("SEM-A0:B1:C2:D3:E4:F5", "OFMon-"),
            Some(MAC_A)
        );
        assert_eq!(Mac::from_ssid("Meter_A0B1C2D3E4F5", "Meter_"), Some(MAC_A));
        assert_eq!(Mac::from_ssid("OFMon-A0B1C2D3E4F", "OFMon-"), None);
        assert_eq!(Mac::from_ssid("OFMon-A0B1C2D3E4F5X", "OFMon-"), None);
        assert_eq!(Mac::from_ssid("HomeWifi", "OFMon-"), None);
        assert_eq!(Mac::from_ssid("SEM-a0:b1:c2:d3:e4", "OFMon-"), None);
        assert_eq!(Mac::parse("a0-b1-c2-d3-e4-f5"), Ok(MAC_A));
        assert_eq!(Mac::parse("a0:b1-c2:d3:e4:f5"), Err(KeyError::BadMac));
        assert_eq!(Mac::parse("a0:b1:c2:d3:e4:g5"), Err(KeyError::BadMac));
        assert_eq!(Mac::parse("a0:b1:c2:d3:e4:f5:"), Err(KeyError::BadMac));
        assert_eq!("A0B1C2D3E4F5".parse::<Mac>(), Ok(MAC_A));
    }

    proptest! {
        #[test]
        fn mac_text_round_trips(bytes in any::<[u8; 6]>()) {
            let mac = Mac(bytes);
            prop_assert_eq!(Mac::parse(&mac.id()), Ok(mac));
            prop_assert_eq!(Mac::parse(&mac.colon_lower()), Ok(mac));
            prop_assert_eq!(Mac::from_ssid(&mac.ssid("OFMon-"), "OFMon-"), Some(mac));
            prop_assert_eq!(Mac::from_ssid(&mac.legacy_ssid(), "OFMon-"), Some(mac));
        }

        #[test]
        fn mac_parse_never_panics(s in "\\PC{0,24}") {
            let _ = Mac::parse(&s);
            let _ = Mac::from_ssid(&s, "OFMon-");
        }

        #[test]
        fn distinct_macs_give_distinct_keys(a in any::<[u8; 6]>(), b in any::<[u8; 6]>()) {
            prop_assume!(a != b);
            let f = FleetSecret::from_bytes([7; 32]);
            prop_assert_ne!(f.device_keys(&Mac(a)).api_key, f.device_keys(&Mac(b)).api_key);
        }
    }
}
