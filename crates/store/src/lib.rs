//! OFMon flash store: the device's memory of everything it measured.
//!
//! Owns the on-flash format and its power-loss argument (see `FORMAT.md`):
//!
//! - [`record`]: the interval [`Record`] and its compact delta codec, which is
//!   also the wire format (usable by `std` users such as the collector);
//! - [`Store`]: a wear-levelled, power-cut-safe record log with seq cursor,
//!   ack, merge-on-full, and a small all-or-nothing state blob, over any
//!   `embedded_storage::nor_flash::NorFlash`;
//! - [`emulated`] (feature `emulated`): an emulated NOR flash with wear
//!   counters, file backing and power-cut injection.
//!
//! Architecture invariants: `no_std`, no allocation; knows nothing of
//! metering, clocks or HTTP; never panics on flash contents. RAM: the
//! [`Store`] value is about 3 KiB with the default `N = 480` (4 bytes per
//! log sector + one codec state), plus at most ~3 KiB of stack during a merge.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

mod crc;
#[cfg(feature = "emulated")]
pub mod emulated;
pub mod record;
mod store;
#[cfg(feature = "emulated")]
pub mod workload;

pub use crc::{Crc32, crc32};
pub use record::{Circuit, Flags, Record, Voltage};
pub use store::{
    Config, Cursor, DEFAULT_REGION, Error, FormatReason, MAX_STATE, MountError, MountStatus,
    Recovery, SECTOR_HEADER, Stats, Store,
};
