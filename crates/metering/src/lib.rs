//! Metering: turns an unbroken stream of raw ADC sample sets into
//! per-interval measurements. `no_std`, no allocation, integer-only per sample.
//!
//! (Skeleton: algorithm documentation and implementation follow.)
#![no_std]
// Parallel per-channel arrays indexed by channel read clearer as index loops.
#![allow(clippy::needless_range_loop)]

mod config;
mod meter;

pub use config::{
    Calibration, Config, ConfigError, Layout, LinearityTable, MAX_CHANNELS, MAX_CIRCUITS,
    MAX_VOLTAGES,
};
pub use meter::{CircuitStats, Interval, Meter, Registers, VoltageStats};
