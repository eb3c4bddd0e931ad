//! # protocol — the OFMon wire contract
//!
//! This crate owns everything that two parties of OFMon must agree on
//! byte-for-byte, and nothing else:
//!
//! - [`keys`]: per-device key derivation from the operator's fleet secret and
//!   the device MAC (AP WPA2 password, API key), and device identity strings
//!   (SSID, id) — specified in `docs/SECURITY.md`.
//! - [`auth`]: HMAC-SHA256 request authentication, both the signing (collector)
//!   and the verifying (device) side, sans-IO, with replay and staleness
//!   protection that works on a device without a wall clock.
//! - [`firmware`]: the signed firmware manifest for OTA (ed25519), a streaming
//!   receiver that checks an upload as it arrives, and (feature `sign`) the
//!   signing side for the host CLI.
//! - [`api`]: the JSON bodies of device API v1 (serde), with validation.
//! - [`hex`]: tiny lower-case hex helpers used by all of the above.
//!
//! Architecture invariants:
//! - `no_std` + `alloc`; builds for `riscv32imc-unknown-none-elf`. No IO, no
//!   clocks, no randomness: time, nonces and seeds are always inputs.
//! - Knows nothing about the metering engine, the flash store or HTTP
//!   frameworks: types here are plain fields, header values are plain strings.
//! - Secrets never appear in `Debug` output; MACs and signatures are compared in
//!   constant time.
//!
//! # Example: one authenticated request, both sides
//!
//! ```
//! use protocol::{FleetSecret, Mac, Verifier, auth};
//!
//! // Collector: derive the device's keys from the fleet secret and its MAC.
//! let fleet = FleetSecret::from_hex(&"11".repeat(32)).unwrap();
//! let mac = Mac::parse("A0B1C2D3E4F5").unwrap();
//! let keys = fleet.device_keys(&mac);
//! let body = br#"{"seq":42}"#;
//! let now_ms = 1_700_000_000_000;
//! let nonce = [7u8; 16]; // 16 fresh random bytes in real use
//! let header = auth::sign(&keys.api_key, "POST", "/api/v1/ack", body, now_ms, nonce)
//!     .to_header_value();
//!
//! // Device: it stores only its device secret (sent once in `POST /pair`).
//! let api_key = fleet.device_secret(&mac).api_key();
//! let mut verifier = Verifier::new(auth::DEFAULT_WINDOW_MS);
//! let mut hasher = auth::BodyHasher::new();
//! hasher.update(body); // chunk by chunk as the body arrives
//! let digest = hasher.finish();
//! let wall_clock = None; // no POST /time yet in this boot
//! assert!(verifier
//!     .verify_header(&api_key, "POST", "/api/v1/ack", &digest, Some(&header), wall_clock)
//!     .is_ok());
//! // The same request again is a replay.
//! assert_eq!(
//!     verifier.verify_header(&api_key, "POST", "/api/v1/ack", &digest, Some(&header), wall_clock),
//!     Err(protocol::AuthError::Replayed)
//! );
//! ```
//!
//! Features: `std` (std::error::Error impls), `sign` (firmware signing; the
//! device never needs it).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod api;
pub mod auth;
pub mod firmware;
pub mod hex;
pub mod keys;

pub use auth::{AuthError, Authorization, BodyHasher, Verifier};
pub use firmware::{FirmwareVersion, Manifest, OtaError, OtaReceiver};
pub use keys::{ApPassword, ApiKey, DeviceKeys, DeviceSecret, FleetSecret, Mac};

/// Implements `std::error::Error` for an error type when the `std` feature is on.
macro_rules! std_error {
    ($t:ty) => {
        #[cfg(feature = "std")]
        impl std::error::Error for $t {}
    };
}
pub(crate) use std_error;
