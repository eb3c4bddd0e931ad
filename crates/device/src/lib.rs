//! # device — the OFMon device application
//!
//! Owns the device's behaviour, written once and run two ways: on the
//! ESP32-C3 (`firmware/esp32c3`) and in the simulator (`crates/sim`):
//! the boot sequence, the metering → store loop, the time model, pairing and
//! keys, and HTTP API v1 as one picoserve router ([`http::router`]).
//!
//! Architecture invariants:
//! - `no_std` + `alloc`; builds for `riscv32imc-unknown-none-elf`.
//! - The core never performs IO: flash comes in as a
//!   `embedded_storage::nor_flash::NorFlash`, time and randomness as values,
//!   and actions (reboot) go back to the shell ([`platform`] traits).
//! - No runtime: no tokio, no embassy executor here. [`http`] is generic over
//!   picoserve's socket and timer, which the shell picks.
//! - Every route lives in one table ([`routes::ROUTES`]); `openapi.yaml` at
//!   the repository root is checked against it by a test.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod api;
pub mod core;
pub mod http;
pub mod identity;
pub mod legacy;
pub mod ota;
pub mod platform;
pub mod routes;
pub mod sampling;
pub mod state;
pub mod time;
pub mod wire;

pub use crate::core::{Action, BootError, BootFailure, BootReport, Device, Options, SelfTestError};
pub use http::{Service, Shared, router};
