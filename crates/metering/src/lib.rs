//! Metering: turns an unbroken stream of raw ADC sample sets into
//! per-interval measurements. `no_std`, no allocation, integer-only per sample.
#![no_std]
