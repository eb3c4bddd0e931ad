//! Metering: turns an unbroken stream of raw ADC sample sets into
//! per-interval measurements. `no_std`, no allocation, integer-only per
//! sample and per cycle; floats appear once per interval (and when a
//! calibration is installed). Knows nothing of flash, clocks or HTTP.
//!
//! # Use
//!
//! ```
//! use metering::{Config, Layout, Meter};
//! let mut cfg = Config::new(4000, Layout::SinglePhase { cts: 1 }).with_interval_seconds(60);
//! cfg.cal.v_gain[0] = 0.25; // volts per count after DC removal
//! cfg.cal.i_gain[0] = 0.089; // amps per count
//! let mut meter = Meter::new(cfg).unwrap();
//! for set in [[2048u16, 2048]; 10] {
//!     if let Some(interval) = meter.push(&set) {
//!         // store interval.circuits[0].real_power_w, interval.registers, ...
//!         let _ = interval;
//!     }
//! }
//! let _trailing = meter.finish(); // marked `partial`
//! ```
//!
//! A sample set holds one raw 12-bit count per channel, voltages first
//! (`v`, or `v1,v2,v3`), then currents `i1..in` ([`Config::channel_count`]).
//!
//! # Algorithm
//!
//! **Per sample** ([`Meter::push`], integer only): optional linearity
//! correction ([`LinearityTable`], 33-point piecewise-linear, one multiply);
//! the raw count goes into a small history ring (voltage: 256 samples,
//! current: 8); the running DC offset is subtracted; the first voltage is
//! checked for a rising zero crossing; and per-cycle sums are accumulated:
//! Σv, Σv² per voltage and Σi, Σi², Σv′, Σv′·i per CT, where v′ is the
//! phase-corrected voltage. Values after offset subtraction are within
//! ±5119, so every product fits `i32`; the squares and products are summed
//! in 32-bit partial sums that are folded into `i64` sums every 64 samples
//! (64 · 5119² < 2³¹), so the per-sample adds are 32-bit.
//!
//! **DC removal — exact per cycle.** Within a cycle the offset is a fixed
//! integer `o`, so the sums are of `x − o`. At the cycle end the window mean
//! is removed exactly with integer math: `Σ(x−x̄)² = Σx² − (Σx)²/n` and
//! `Σ(v−v̄)(i−ī) = Σvi − ΣvΣi/n`. Over one whole mains period the mean *is*
//! the DC offset, so this is a high-pass that settles within the cycle in
//! which a DC step happens (no IIR tail as in EmonLib's `offset += (x −
//! offset)/512`, which needs hundreds of cycles and leaks DC into power).
//! Non-integer samples per period leave a second-order error (≈ (1/n)²).
//! Then `o += round(Σx/n)`, so the offset used for zero-crossing detection
//! and the sum magnitudes tracks wander and steps within one cycle.
//!
//! **Cycle detection** on the first voltage with hysteresis: the detector
//! arms when `v − o < −hysteresis` and fires on the first armed sample with
//! `v − o ≥ 0`, if the cycle is at least `rate/70` samples long. A cycle
//! longer than `rate/40` samples is closed by timeout (no voltage), so the
//! engine never stalls. The first crossing after start or after a timeout
//! ends a *partial* window that is not a whole period: it keeps the running
//! offset instead of its window mean. Frequency = `rate · cycles / samples in
//! those cycles`, exact to one sample per interval.
//!
//! **Phase correction.** CT `n`'s voltage is read from the history ring at
//! a fractional delay `d = period·turns + fixed`, where `turns = virtual phase
//! (0, 1/3, 2/3) − phase_deg/360` and `fixed` folds in the sampling skew
//! (`skew_us`, a time, not an angle). Negative delays (the usual CT lead) are
//! made non-negative by delaying the current by a constant whole number of
//! samples (≤ 7). The delay is `m + c` (whole samples, Q15 fraction) and
//! `v′ = v[k−m] + ((v[k−m−1] − v[k−m])·c + 2¹⁴) >> 15` — one multiply. The
//! period estimate (Q16 samples, IIR over cycle lengths, ⅟16) and so all
//! delays are updated each cycle in integer math, so virtual 120°/240°
//! phases stay right at 45–65 Hz. Linear interpolation attenuates the
//! fundamental by `sqrt(1 − 2c(1−c)(1 − cos Δ))`, Δ = 2π/period; that gain is
//! computed per cycle (Q32, series for cos) and divided out of the energy
//! factor and of the interval's power.
//!
//! **No-load gate.** Per cycle, if the AC mean square of a CT is below
//! `no_load_irms_counts²`, that cycle's current and power are exactly zero
//! (default 6 counts: ADC noise of σ ≈ 2–3 counts never opens it; 6 counts is
//! ≈ 0.5 % of a rating whose 120 % peaks at 1900 counts).
//!
//! **Energy registers.** Each cycle's DC-free `Σv′i` (count²·samples) is
//! split by its sign into import or export and multiplied by the CT's factor
//! `K` (µWh per count²·sample, Q48: `v_gain·i_gain/(rate·0.0036)·2⁴⁸`, corrected
//! for the interpolator gain) in `u128`; whole µWh go into a `u64` register,
//! the remainder (< 2⁴⁸) is carried in [`Registers`]. Nothing is rounded
//! away, so totals do not drift over months, persisted registers continue
//! exactly after [`Meter::restore_registers`], and the per-interval deltas
//! in [`CircuitStats`] sum to the register exactly. A calibration change
//! ([`Meter::set_calibration`]) applies to later cycles; registers stay.
//!
//! **Intervals** close at the first cycle end at or after each multiple of
//! `interval_samples` since the start: they tile the stream exactly (every
//! sample in exactly one interval), last `interval_samples` ± one cycle, and
//! the grid never drifts. Per interval (floats here only): Vrms from the
//! summed DC-free squares, min/max of per-cycle Vrms, Irms, real power
//! (mean, per-cycle min/max), apparent power `Vrms·Irms`, power factor.
//! Square roots use `u128::isqrt` (no libm).
//!
//! **Fixed-point formats.** counts: `i32`; cycle sums: `i32`/`i64`;
//! interval sums: `u64`/`i64`; per-cycle mean squares and powers: Q8
//! counts²; period: Q16 samples; delay fraction: Q15; phase turns: Q32;
//! energy factor: Q48 µWh; register remainder: Q48 µWh.
//!
//! **Cost.** The per-sample path has no float, no division and no call;
//! each channel is a few loads/stores, one multiply for interpolation and
//! two for the squares/product, plus 32-bit adds. [`Meter::push`] has one
//! specialised copy per channel shape (1 V + 1/2/3 CT, 3 V + 3 CT) and per
//! linearity on/off, so loops unroll and indices are constants. The
//! cycle-end work (≈ 50/s) divides only by the cycle length (< 2¹⁶) and
//! does that with native 32-bit divisions in 16-bit digits; the per-cycle
//! period update needs Δ = 2π/period and the reciprocal of the interpolator
//! gain, done as normalised 64-by-32-bit long division (two 32-bit
//! divisions each) instead of 64-/128-bit division calls. Only the energy
//! register update multiplies 64 × 64 → 128 bits. On riscv32imc (opt-level
//! "s") 1 V + 1 CT costs ≈ 120 instructions per sample set, 1 V + 3 CT
//! ≈ 260, cycle and interval work included (`meter-bench --section cost`).
//!
//! # Limits
//!
//! Sample rate 500–20 000 sets/s; three-phase with three voltage sensors
//! needs 6 ADC channels, more than the ESP32-C3's 5 usable ADC1 pins (use
//! [`Layout::ThreePhaseVirtual`] there).
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
