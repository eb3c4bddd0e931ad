//! Channel map, calibration and their validation. Floats appear here freely:
//! this code runs once at start-up or on a calibration change, never per sample.

use core::fmt;

/// Most voltage channels a layout can have.
pub const MAX_VOLTAGES: usize = 3;
/// Most current (CT) channels, i.e. circuits, a layout can have.
pub const MAX_CIRCUITS: usize = 3;
/// Most channels in one sample set.
pub const MAX_CHANNELS: usize = MAX_VOLTAGES + MAX_CIRCUITS;

/// Highest raw ADC count (12-bit ADC).
pub const ADC_MAX: u16 = 4095;

/// Lowest sample rate (sample sets per second) accepted.
pub const MIN_SAMPLE_RATE_HZ: u32 = 500;
/// Highest sample rate accepted (a cycle at 40 Hz must fit the integer
/// accumulator bounds and the voltage delay line).
pub const MAX_SAMPLE_RATE_HZ: u32 = 20_000;

/// Lowest mains frequency the cycle detector accepts; a cycle longer than
/// this is closed by timeout (see the crate docs).
pub const MIN_MAINS_HZ: u32 = 40;
/// Highest mains frequency the cycle detector accepts; shorter "cycles" are
/// treated as noise on the zero crossing.
pub const MAX_MAINS_HZ: u32 = 70;

/// Length of the voltage delay line in samples (power of two).
pub(crate) const VHIST: usize = 256;
/// Length of the per-CT current delay line in samples (power of two).
pub(crate) const IHIST: usize = 8;

/// How the channels of one sample set map to voltages and circuits.
///
/// Channel order in a sample set is always: the voltage channel(s) first,
/// then the current channels `i1..in` (see [`Config::channel_count`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One voltage `v`, then `cts` (1..=3) current channels, each CT its own
    /// single-phase circuit measured against `v`.
    SinglePhase {
        /// Number of CTs, 1..=3.
        cts: u8,
    },
    /// Three voltages `v1, v2, v3`, then `i1, i2, i3`; CT n is on phase n.
    /// Needs 6 ADC channels: does not fit the ESP32-C3's 5 usable ADC1 pins.
    ThreePhase,
    /// One voltage `v` (phase 1), then `i1, i2, i3`. CT1 is measured against
    /// `v`, CT2 against `v` delayed by 1/3 cycle (120° lag), CT3 against `v`
    /// delayed by 2/3 cycle (240° lag), as emonLibCM does.
    ThreePhaseVirtual,
}

impl Layout {
    /// Number of voltage channels in a sample set.
    pub const fn voltages(&self) -> usize {
        match self {
            Layout::SinglePhase { .. } | Layout::ThreePhaseVirtual => 1,
            Layout::ThreePhase => 3,
        }
    }

    /// Number of circuits (CT channels) in a sample set.
    pub const fn circuits(&self) -> usize {
        match self {
            Layout::SinglePhase { cts } => *cts as usize,
            Layout::ThreePhase | Layout::ThreePhaseVirtual => 3,
        }
    }

    /// The voltage channel (index into the voltages) CT `ct` is measured against.
    pub const fn voltage_of(&self, ct: usize) -> usize {
        match self {
            Layout::ThreePhase => ct,
            _ => 0,
        }
    }

    /// The virtual phase shift (fraction of a cycle the voltage is delayed)
    /// used for CT `ct`: 0, 1/3 or 2/3 in [`Layout::ThreePhaseVirtual`],
    /// 0 otherwise.
    pub const fn virtual_turns(&self, ct: usize) -> f64 {
        match self {
            Layout::ThreePhaseVirtual => ct as f64 / 3.0,
            _ => 0.0,
        }
    }
}

/// Piecewise-linear ADC linearity correction.
///
/// `points[k]` is the corrected count for the raw count `128 * k`
/// (`k = 0..=32`; the last point is raw 4096, an extrapolation anchor).
/// Between points the correction is interpolated linearly in integer
/// arithmetic. Corrected values must lie in `-512..=4607`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearityTable {
    /// Corrected count at raw `128 * k`.
    pub points: [i16; 33],
}

impl LinearityTable {
    /// Raw-count spacing of the table points.
    pub const STEP: u32 = 128;

    /// The identity table (no correction).
    pub const fn identity() -> Self {
        let mut points = [0i16; 33];
        let mut k = 0;
        while k < 33 {
            points[k] = (k * 128) as i16;
            k += 1;
        }
        LinearityTable { points }
    }

    /// Builds a table from a correction function `raw -> true count`
    /// (for instance the inverse of a measured transfer curve). Values are
    /// rounded and clamped to the accepted range.
    pub fn from_fn(mut f: impl FnMut(f32) -> f32) -> Self {
        let mut points = [0i16; 33];
        for (k, p) in points.iter_mut().enumerate() {
            let y = f((k as u32 * Self::STEP) as f32);
            let y = if y.is_finite() { y } else { 0.0 };
            let r = if y >= 0.0 { y + 0.5 } else { y - 0.5 };
            *p = (r as i32).clamp(-512, 4607) as i16;
        }
        LinearityTable { points }
    }

    /// Corrected count for a raw count (raw values above 4095 are clamped).
    #[inline(always)]
    pub fn apply(&self, raw: u16) -> i32 {
        let raw = if raw > ADC_MAX { ADC_MAX } else { raw } as usize;
        let k = raw >> 7;
        let frac = (raw & 127) as i32;
        let a = self.points[k & 31] as i32;
        let b = self.points[(k & 31) + 1] as i32;
        a + (((b - a) * frac + 64) >> 7)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.points.iter().all(|&p| (-512..=4607).contains(&p)) {
            Ok(())
        } else {
            Err(ConfigError::Linearity)
        }
    }
}

/// Calibration constants. Channel arrays are indexed by voltage channel
/// (`v_*`) or by CT (`i_*`, `phase_deg`, `skew_us`); unused entries are ignored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// Volts per count (after DC removal) for each voltage channel.
    pub v_gain: [f32; MAX_VOLTAGES],
    /// Amps per count (after DC removal) for each CT. A negative gain
    /// flips the CT's direction (a clamp put on the wrong way round).
    pub i_gain: [f32; MAX_CIRCUITS],
    /// Start value of the DC offset (counts) for each voltage channel; the
    /// engine tracks the real offset from there.
    pub v_offset: [u16; MAX_VOLTAGES],
    /// Start value of the DC offset (counts) for each CT.
    pub i_offset: [u16; MAX_CIRCUITS],
    /// CT phase error in degrees at the mains frequency: the angle by which
    /// the CT's output **leads** its primary current. Positive values make
    /// the engine advance the voltage relative to the current by that angle
    /// (typical CTs: +0.5 … +5). Measured as: the angle by which the current
    /// appears to lead the voltage on a purely resistive load.
    pub phase_deg: [f32; MAX_CIRCUITS],
    /// Sampling skew: how many microseconds after its voltage sample the CT's
    /// sample of the same set is taken (sequential ADC conversions). Positive
    /// values advance the voltage like `phase_deg`, but as a fixed time, so
    /// the correction stays right when the mains frequency moves.
    pub skew_us: [f32; MAX_CIRCUITS],
    /// Optional ADC linearity correction applied to every raw count.
    pub linearity: Option<LinearityTable>,
    /// No-load gate: a cycle whose current rms (counts, after DC removal) is
    /// below this is metered as exactly zero current and power.
    pub no_load_irms_counts: u16,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            v_gain: [1.0; MAX_VOLTAGES],
            i_gain: [1.0; MAX_CIRCUITS],
            v_offset: [2048; MAX_VOLTAGES],
            i_offset: [2048; MAX_CIRCUITS],
            phase_deg: [0.0; MAX_CIRCUITS],
            skew_us: [0.0; MAX_CIRCUITS],
            linearity: None,
            no_load_irms_counts: 6,
        }
    }
}

/// Complete engine configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Sample sets per second (every channel is sampled once per set).
    pub sample_rate_hz: u32,
    /// Nominal interval length in sample sets. Intervals close at the first
    /// cycle end at or after each multiple of this from the start, so an
    /// interval is this long ± one mains cycle and the grid never drifts.
    pub interval_samples: u32,
    /// Channel map.
    pub layout: Layout,
    /// Calibration.
    pub cal: Calibration,
    /// Nominal mains frequency (50 or 60), used until cycles are measured.
    pub nominal_hz: u8,
    /// Zero-crossing hysteresis on the voltage (counts after DC removal):
    /// a rising crossing counts only after the voltage was below `-hysteresis`.
    pub zc_hysteresis_counts: u16,
}

impl Config {
    /// A configuration with default calibration and a 60 s interval.
    pub fn new(sample_rate_hz: u32, layout: Layout) -> Self {
        Config {
            sample_rate_hz,
            interval_samples: sample_rate_hz.saturating_mul(60),
            layout,
            cal: Calibration::default(),
            nominal_hz: 50,
            zc_hysteresis_counts: 24,
        }
    }

    /// Sets the interval length in whole seconds.
    pub fn with_interval_seconds(mut self, seconds: u32) -> Self {
        self.interval_samples = self.sample_rate_hz.saturating_mul(seconds);
        self
    }

    /// Number of channels in one sample set: the voltages (`v`, or `v1,v2,v3`)
    /// first, then `i1..in`.
    pub fn channel_count(&self) -> usize {
        self.layout.voltages() + self.layout.circuits()
    }

    /// Longest cycle (samples) before the detector closes a cycle by timeout.
    pub fn max_cycle_samples(&self) -> u32 {
        self.sample_rate_hz / MIN_MAINS_HZ
    }

    /// Shortest accepted cycle (samples).
    pub fn min_cycle_samples(&self) -> u32 {
        self.sample_rate_hz / MAX_MAINS_HZ
    }

    /// Checks every field; [`crate::Meter::new`] calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&self.sample_rate_hz) {
            return Err(ConfigError::SampleRate);
        }
        if let Layout::SinglePhase { cts } = self.layout
            && !(1..=3).contains(&cts)
        {
            return Err(ConfigError::Layout);
        }
        if !(40..=70).contains(&self.nominal_hz) {
            return Err(ConfigError::NominalFrequency);
        }
        if self.interval_samples < 2 * self.max_cycle_samples() {
            return Err(ConfigError::Interval);
        }
        self.validate_calibration(&self.cal)
    }

    pub(crate) fn validate_calibration(&self, cal: &Calibration) -> Result<(), ConfigError> {
        for ch in 0..self.layout.voltages() {
            let g = cal.v_gain[ch];
            if !(g.is_finite() && g > 0.0) {
                return Err(ConfigError::Gain);
            }
            if cal.v_offset[ch] > ADC_MAX {
                return Err(ConfigError::Offset);
            }
        }
        for ct in 0..self.layout.circuits() {
            let g = cal.i_gain[ct];
            if !(g.is_finite() && g != 0.0) {
                return Err(ConfigError::Gain);
            }
            if cal.i_offset[ct] > ADC_MAX {
                return Err(ConfigError::Offset);
            }
            if !(cal.phase_deg[ct].is_finite() && cal.skew_us[ct].is_finite()) {
                return Err(ConfigError::Phase);
            }
            if energy_factor_q48(self, cal, ct).is_none() {
                return Err(ConfigError::Gain);
            }
            delay_plan(self, cal, ct)?;
        }
        if let Some(t) = &cal.linearity {
            t.validate()?;
        }
        Ok(())
    }
}

/// Fixed-point shift of the energy conversion factor.
pub(crate) const K_SHIFT: u32 = 48;

/// µWh per (count² · sample) for CT `ct`, in Q48, or `None` if out of range.
pub(crate) fn energy_factor_q48(cfg: &Config, cal: &Calibration, ct: usize) -> Option<u64> {
    let vg = cal.v_gain[cfg.layout.voltage_of(ct)] as f64;
    let ig = (cal.i_gain[ct] as f64).abs();
    // J = V·A·s; 1 µWh = 3.6e-3 J.
    let k = vg * ig / (cfg.sample_rate_hz as f64 * 3.6e-3);
    let q = k * (1u64 << K_SHIFT) as f64;
    if (1.0..9.0e18).contains(&q) {
        Some(q as u64)
    } else {
        None
    }
}

/// Per-CT phase-correction plan, fixed for a calibration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DelayPlan {
    /// Voltage delay as a fraction of a cycle, Q32 (may be negative).
    pub turns_q32: i64,
    /// Fixed voltage delay in samples, Q16 (skew and current delay folded in).
    pub fixed_q16: i64,
    /// Whole samples the current is delayed by (0..IHIST).
    pub i_delay: u32,
}

/// Works out how CT `ct`'s voltage is delayed: `delay = period·turns +
/// fixed`, where the current delay keeps `delay >= 0` for every period the
/// detector accepts, and `delay + 1 < VHIST` likewise.
pub(crate) fn delay_plan(
    cfg: &Config,
    cal: &Calibration,
    ct: usize,
) -> Result<DelayPlan, ConfigError> {
    let rate = cfg.sample_rate_hz as f64;
    let turns = cfg.layout.virtual_turns(ct) - cal.phase_deg[ct] as f64 / 360.0;
    let skew = cal.skew_us[ct] as f64 * 1e-6 * rate;
    let p_lo = rate / MAX_MAINS_HZ as f64;
    let p_hi = rate / MIN_MAINS_HZ as f64 + 1.0;
    let lo = (p_lo * turns).min(p_hi * turns) - skew;
    let hi = (p_lo * turns).max(p_hi * turns) - skew;
    let i_delay = if lo < 0.0 { ceil(-lo) } else { 0.0 };
    if !(0.0..(IHIST as f64)).contains(&i_delay) || hi + i_delay + 2.0 >= VHIST as f64 {
        return Err(ConfigError::Phase);
    }
    Ok(DelayPlan {
        turns_q32: (turns * 4_294_967_296.0) as i64,
        fixed_q16: ((i_delay - skew) * 65_536.0) as i64,
        i_delay: i_delay as u32,
    })
}

/// `f64::ceil` for non-negative values (not in `core` on every toolchain).
fn ceil(x: f64) -> f64 {
    let t = x as i64 as f64;
    if t < x { t + 1.0 } else { t }
}

/// Why a configuration or calibration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Sample rate outside 500..=20000 sets per second.
    SampleRate,
    /// Single-phase layout with other than 1..=3 CTs.
    Layout,
    /// Nominal mains frequency outside 40..=70 Hz.
    NominalFrequency,
    /// Interval shorter than two of the longest cycles.
    Interval,
    /// A gain is zero, negative (voltage), not finite, or so extreme the
    /// fixed-point energy factor cannot hold it.
    Gain,
    /// A DC offset start value above 4095.
    Offset,
    /// A phase or skew correction that is not finite or does not fit the
    /// delay lines at this sample rate.
    Phase,
    /// A linearity table value outside -512..=4607.
    Linearity,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ConfigError::SampleRate => "sample rate must be 500..=20000 sample sets per second",
            ConfigError::Layout => "single-phase layout needs 1..=3 CTs",
            ConfigError::NominalFrequency => "nominal mains frequency must be 40..=70 Hz",
            ConfigError::Interval => "interval must be at least two 40 Hz cycles long",
            ConfigError::Gain => "gains must be finite, non-zero (voltage: positive) and sane",
            ConfigError::Offset => "DC offset start values must be 0..=4095",
            ConfigError::Phase => "phase/skew correction does not fit the delay lines",
            ConfigError::Linearity => "linearity table values must be -512..=4607",
        };
        f.write_str(s)
    }
}
