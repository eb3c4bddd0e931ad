//! Baseline: a faithful `f32` port of the original OFMon firmware's metering,
//! kept only so benchmarks can compare the new engine against it in one run.
//!
//! The original ran EmonLib's `calcVI` (see `shared/reference/ofmon-original.md`):
//! wait for the voltage to be near mid-scale, then take I and V samples for
//! 100 zero crossings (~1 s at 50 Hz) or a timeout, remove DC with an IIR
//! `offset += (sample - offset) / 512`, phase-correct the voltage by linear
//! interpolation `last + phase_cal * (v - last)`, and report Vrms, Irms,
//! real power = mean(v·i) and apparent power = Vrms·Irms. It measured in
//! bursts and extrapolated energy as *power × elapsed time*.
//!
//! This crate owns:
//! - [`CalcVi`]: one `calcVI` measurement, driven one sample set at a time by
//!   [`CalcVi::step`] (the per-sample work, in `f32` exactly as the original —
//!   on a chip without an FPU every operation is a soft-float library call);
//! - [`BurstSampler`]: the original's sampling pattern over a continuous
//!   sample stream — a burst every `period` (a parameter; the original took
//!   one per hour), energy extrapolated from each burst's power.
//!
//! Nothing here is used by the product: it is the yardstick, defects included
//! (it misses every load change between bursts, by design of the original).
#![no_std]

/// Full scale of the 12-bit ADC, `ADC_COUNTS` in EmonLib.
pub const ADC_COUNTS: u16 = 4096;

/// Divisor of the original's DC-removal IIR: `offset += (sample - offset) / 512`.
pub const OFFSET_DIVISOR: f32 = 512.0;

/// Calibration of one voltage + current pair, in the original's terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// Volts per ADC count after DC removal (EmonLib `V_RATIO`).
    pub v_ratio: f32,
    /// Amperes per ADC count after DC removal (EmonLib `I_RATIO`).
    pub i_ratio: f32,
    /// EmonLib `PHASECAL`: 1.0 = no correction; the original shipped 1.7.
    pub phase_cal: f32,
    /// Starting value of the voltage DC-offset estimate, in counts.
    pub offset_v: f32,
    /// Starting value of the current DC-offset estimate, in counts.
    pub offset_i: f32,
}

impl Calibration {
    /// The constants hard-coded in the original firmware: voltage scale 232.5,
    /// current scale 102 (EmonLib `VCAL`/`ICAL`, times 3.3 V / 4096 counts as
    /// EmonLib computes `V_RATIO`/`I_RATIO`), `phase_cal` 1.7, DC offsets
    /// 1892 / 1635 counts.
    pub fn original() -> Self {
        let volts_per_count = 3.3 / f32::from(ADC_COUNTS);
        Self {
            v_ratio: 232.5 * volts_per_count,
            i_ratio: 102.0 * volts_per_count,
            phase_cal: 1.7,
            offset_v: 1892.0,
            offset_i: 1635.0,
        }
    }
}

/// Result of one `calcVI` burst, as the original computed it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// RMS voltage, volts.
    pub v_rms: f32,
    /// RMS current, amperes.
    pub i_rms: f32,
    /// Real power mean(v·i), watts.
    pub real_power: f32,
    /// Apparent power Vrms·Irms, volt-amperes.
    pub apparent_power: f32,
    /// real / apparent (0 when apparent power is 0; EmonLib would give NaN).
    pub power_factor: f32,
    /// Sample sets that went into this reading.
    pub samples: u32,
}

/// One EmonLib `calcVI` measurement, fed one (V, I) sample set at a time.
///
/// DC offsets and the last filtered voltage persist across bursts, as they
/// were members of EmonLib's `EnergyMonitor`; sums restart at each
/// [`CalcVi::begin`].
#[derive(Clone, Debug)]
pub struct CalcVi {
    cal: Calibration,
    offset_v: f32,
    offset_i: f32,
    filtered_v: f32,
    last_filtered_v: f32,
    sum_v: f32,
    sum_i: f32,
    sum_p: f32,
    samples: u32,
    crossings: u32,
    start_v: u16,
    check_v_cross: bool,
    last_v_cross: bool,
}

impl CalcVi {
    /// A fresh monitor with the given calibration, ready for [`CalcVi::begin`].
    pub fn new(cal: Calibration) -> Self {
        Self {
            cal,
            offset_v: cal.offset_v,
            offset_i: cal.offset_i,
            filtered_v: 0.0,
            last_filtered_v: 0.0,
            sum_v: 0.0,
            sum_i: 0.0,
            sum_p: 0.0,
            samples: 0,
            crossings: 0,
            start_v: ADC_COUNTS / 2,
            check_v_cross: false,
            last_v_cross: false,
        }
    }

    /// Starts a measurement; `start_v` is the voltage sample found near
    /// mid-scale by the wait loop, the threshold for crossing detection.
    pub fn begin(&mut self, start_v: u16) {
        self.start_v = start_v;
        self.samples = 0;
        self.crossings = 0;
        self.sum_v = 0.0;
        self.sum_i = 0.0;
        self.sum_p = 0.0;
    }

    /// The per-sample work of `calcVI`'s main loop for one sample set
    /// (raw counts). All arithmetic in `f32`, as in the original.
    #[inline]
    pub fn step(&mut self, v: u16, i: u16) {
        self.samples += 1;
        self.last_filtered_v = self.filtered_v;

        let sample_v = f32::from(v);
        let sample_i = f32::from(i);

        self.offset_v += (sample_v - self.offset_v) / OFFSET_DIVISOR;
        self.filtered_v = sample_v - self.offset_v;
        self.offset_i += (sample_i - self.offset_i) / OFFSET_DIVISOR;
        let filtered_i = sample_i - self.offset_i;

        self.sum_v += self.filtered_v * self.filtered_v;
        self.sum_i += filtered_i * filtered_i;

        let phase_shifted_v =
            self.last_filtered_v + self.cal.phase_cal * (self.filtered_v - self.last_filtered_v);
        self.sum_p += phase_shifted_v * filtered_i;

        self.last_v_cross = self.check_v_cross;
        self.check_v_cross = v > self.start_v;
        if self.samples == 1 {
            self.last_v_cross = self.check_v_cross;
        }
        if self.last_v_cross != self.check_v_cross {
            self.crossings += 1;
        }
    }

    /// Voltage crossings of the `start_v` level counted since [`CalcVi::begin`].
    pub fn crossings(&self) -> u32 {
        self.crossings
    }

    /// Sample sets taken since [`CalcVi::begin`].
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// Ends the measurement: the original's end-of-`calcVI` arithmetic.
    /// `None` if no sample was taken.
    pub fn finish(&mut self) -> Option<Reading> {
        if self.samples == 0 {
            return None;
        }
        let n = self.samples as f32;
        let v_rms = self.cal.v_ratio * libm::sqrtf(self.sum_v / n);
        let i_rms = self.cal.i_ratio * libm::sqrtf(self.sum_i / n);
        let real_power = self.cal.v_ratio * self.cal.i_ratio * self.sum_p / n;
        let apparent_power = v_rms * i_rms;
        let power_factor = if apparent_power > 0.0 {
            real_power / apparent_power
        } else {
            0.0
        };
        let reading = Reading {
            v_rms,
            i_rms,
            real_power,
            apparent_power,
            power_factor,
            samples: self.samples,
        };
        self.sum_v = 0.0;
        self.sum_i = 0.0;
        self.sum_p = 0.0;
        Some(reading)
    }
}

/// How the original sampled: bursts of `calcVI` over a continuous stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurstConfig {
    /// Sample sets per second of the stream fed to [`BurstSampler::push`].
    pub sample_rate_hz: u32,
    /// Voltage crossings per burst (the original: 100, ~1 s at 50 Hz).
    pub crossings: u32,
    /// Timeout of the wait loop and of the measuring loop, each (the original: 3 s).
    pub timeout_ms: u32,
    /// From the start of one burst to the start of the next. The original
    /// took one reading per hour (3,600,000); EmonLib sketches loop every few
    /// seconds. A period shorter than a burst means back-to-back bursts.
    pub period_ms: u32,
}

impl BurstConfig {
    /// The original's burst (100 crossings, 3 s timeout) repeated every `period_ms`.
    pub fn original(sample_rate_hz: u32, period_ms: u32) -> Self {
        Self {
            sample_rate_hz,
            crossings: 100,
            timeout_ms: 3000,
            period_ms,
        }
    }

    fn ms_to_samples(&self, ms: u32) -> u64 {
        u64::from(ms) * u64::from(self.sample_rate_hz) / 1000
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Between bursts: samples go by unseen.
    Idle,
    /// Waiting for the voltage to be near mid-scale; samples spent so far.
    Waiting(u64),
    /// Inside `calcVI`'s main loop; samples spent so far.
    Measuring(u64),
}

/// The original's metering over a continuous sample stream: a `calcVI` burst
/// every [`BurstConfig::period_ms`], energy extrapolated as the burst's real
/// power times the time elapsed since the previous reading.
#[derive(Clone, Debug)]
pub struct BurstSampler {
    cfg: BurstConfig,
    calc: CalcVi,
    phase: Phase,
    period_samples: u64,
    timeout_samples: u64,
    since_burst_start: u64,
    since_reading: u64,
    energy_wh: f32,
    readings: u32,
    last: Option<Reading>,
}

/// The wait loop's window: `0.45 * ADC_COUNTS < v < 0.55 * ADC_COUNTS`.
fn near_mid_scale(v: u16) -> bool {
    let v = f32::from(v);
    let full = f32::from(ADC_COUNTS);
    v < full * 0.55 && v > full * 0.45
}

impl BurstSampler {
    /// A sampler that starts waiting for its first burst at the first sample.
    pub fn new(cal: Calibration, cfg: BurstConfig) -> Self {
        Self {
            cfg,
            calc: CalcVi::new(cal),
            phase: Phase::Waiting(0),
            period_samples: cfg.ms_to_samples(cfg.period_ms),
            timeout_samples: cfg.ms_to_samples(cfg.timeout_ms).max(1),
            since_burst_start: 0,
            since_reading: 0,
            energy_wh: 0.0,
            readings: 0,
            last: None,
        }
    }

    /// Feeds one sample set (raw counts). Returns the reading when a burst ends.
    pub fn push(&mut self, v: u16, i: u16) -> Option<Reading> {
        self.since_burst_start += 1;
        self.since_reading += 1;
        if self.phase == Phase::Idle && self.since_burst_start > self.period_samples {
            self.since_burst_start = 1;
            self.phase = Phase::Waiting(0);
        }
        match self.phase {
            Phase::Idle => None,
            Phase::Waiting(spent) => {
                // The sample read by the wait loop is not part of the measurement.
                if near_mid_scale(v) || spent + 1 > self.timeout_samples {
                    self.calc.begin(v);
                    self.phase = Phase::Measuring(0);
                } else {
                    self.phase = Phase::Waiting(spent + 1);
                }
                None
            }
            Phase::Measuring(spent) => {
                self.calc.step(v, i);
                let spent = spent + 1;
                if self.calc.crossings() >= self.cfg.crossings || spent >= self.timeout_samples {
                    self.phase = Phase::Idle;
                    self.end_burst()
                } else {
                    self.phase = Phase::Measuring(spent);
                    None
                }
            }
        }
    }

    fn end_burst(&mut self) -> Option<Reading> {
        let reading = self.calc.finish()?;
        let hours = self.since_reading as f32 / self.cfg.sample_rate_hz as f32 / 3600.0;
        self.energy_wh += reading.real_power * hours;
        self.since_reading = 0;
        self.readings += 1;
        self.last = Some(reading);
        Some(reading)
    }

    /// Energy so far, watt-hours: each reading's power times the time since
    /// the reading before it (the original's extrapolation). Time after the
    /// last reading is not counted until the next one.
    pub fn energy_wh(&self) -> f32 {
        self.energy_wh
    }

    /// Energy as it would stand if the stream ended now: the booked energy
    /// plus the last reading's power over the time since (0 if none yet).
    pub fn energy_wh_extrapolated(&self) -> f32 {
        let pending = self.since_reading as f32 / self.cfg.sample_rate_hz as f32 / 3600.0;
        self.energy_wh + self.last.map_or(0.0, |r| r.real_power * pending)
    }

    /// The most recent reading, if any burst has completed.
    pub fn last_reading(&self) -> Option<Reading> {
        self.last
    }

    /// Bursts completed so far.
    pub fn readings(&self) -> u32 {
        self.readings
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    const RATE: u32 = 4000;

    /// Ideal calibration for a synthetic signal: mid-scale offsets, given scales.
    fn cal(phase_cal: f32) -> Calibration {
        Calibration {
            v_ratio: 0.25,
            i_ratio: 0.01,
            phase_cal,
            offset_v: 2048.0,
            offset_i: 2048.0,
        }
    }

    /// Sample set `n` of a sine pair: amplitudes in counts, current lagging by `phi` radians.
    fn sample(n: u64, freq: f64, v_amp: f64, i_amp: f64, phi: f64) -> (u16, u16) {
        let t = n as f64 / f64::from(RATE);
        let w = 2.0 * std::f64::consts::PI * freq * t;
        let v = 2048.0 + v_amp * w.sin();
        let i = 2048.0 + i_amp * (w - phi).sin();
        (v.round() as u16, i.round() as u16)
    }

    fn one_burst(c: &mut CalcVi, freq: f64, v_amp: f64, i_amp: f64, phi: f64) -> Reading {
        c.begin(2048);
        let mut n = 0;
        while c.crossings() < 100 {
            let (v, i) = sample(n, freq, v_amp, i_amp, phi);
            c.step(v, i);
            n += 1;
            assert!(n < 20_000, "no crossings counted");
        }
        c.finish().unwrap()
    }

    #[test]
    fn unity_power_factor_sine_reads_true_power() {
        let mut c = CalcVi::new(cal(1.0));
        let r = one_burst(&mut c, 50.0, 1300.0, 1000.0, 0.0);
        let v_rms = 1300.0 / 2f64.sqrt() * 0.25;
        let i_rms = 1000.0 / 2f64.sqrt() * 0.01;
        let p = v_rms * i_rms;
        assert!((f64::from(r.v_rms) / v_rms - 1.0).abs() < 0.005, "{r:?}");
        assert!((f64::from(r.i_rms) / i_rms - 1.0).abs() < 0.005, "{r:?}");
        assert!((f64::from(r.real_power) / p - 1.0).abs() < 0.005, "{r:?}");
        assert!(r.power_factor > 0.995, "{r:?}");
        // 100 crossings of a 50 Hz wave = 50 cycles = 1 s = ~4000 samples.
        assert!((3900..=4100).contains(&r.samples), "{}", r.samples);
    }

    #[test]
    fn phase_cal_shifts_voltage_by_fractional_samples() {
        // With simultaneous V and I, phase_cal 1.7 advances V by 0.7 samples:
        // at PF 0.5 lagging this reads a known, large error.
        let phi = std::f64::consts::PI / 3.0;
        let mut c = CalcVi::new(cal(1.7));
        let r = one_burst(&mut c, 50.0, 1300.0, 1000.0, phi);
        let shift = 0.7 * 2.0 * std::f64::consts::PI * 50.0 / f64::from(RATE);
        let apparent = (1300.0 / 2f64.sqrt() * 0.25) * (1000.0 / 2f64.sqrt() * 0.01);
        // Linear interpolation also scales the amplitude slightly; allow 1 %.
        let expected = apparent * (phi + shift).cos();
        let rel = f64::from(r.real_power) / expected - 1.0;
        assert!(rel.abs() < 0.01, "got {} expected {expected}", r.real_power);
        let uncorrected = apparent * phi.cos();
        assert!(f64::from(r.real_power) < uncorrected * 0.97);
    }

    #[test]
    fn dc_offset_iir_converges_from_a_wrong_start() {
        let mut c = CalcVi::new(Calibration {
            offset_v: 1892.0,
            offset_i: 1635.0,
            ..cal(1.0)
        });
        let first = one_burst(&mut c, 50.0, 1300.0, 1000.0, 0.0);
        for _ in 0..3 {
            one_burst(&mut c, 50.0, 1300.0, 1000.0, 0.0);
        }
        let settled = one_burst(&mut c, 50.0, 1300.0, 1000.0, 0.0);
        // The /512 IIR ripples with the signal (~A / (512 * 2π f / rate) ≈ 25
        // counts here) but no longer carries the 400-count start error.
        assert!((c.offset_v - 2048.0).abs() < 40.0, "{}", c.offset_v);
        assert!((c.offset_i - 2048.0).abs() < 40.0, "{}", c.offset_i);
        let i_rms = 1000.0 / 2f64.sqrt() * 0.01;
        assert!((f64::from(settled.i_rms) / i_rms - 1.0).abs() < 0.005);
        assert!((f64::from(first.i_rms) / i_rms - 1.0).abs() > 0.01);
    }

    fn feed(s: &mut BurstSampler, seconds: u64, mut on: impl FnMut(u64) -> bool) -> Vec<Reading> {
        let mut out = Vec::new();
        for n in 0..seconds * u64::from(RATE) {
            let amp = if on(n) { 1000.0 } else { 0.0 };
            let (v, i) = sample(n, 50.0, 1300.0, amp, 0.0);
            if let Some(r) = s.push(v, i) {
                out.push(r);
            }
        }
        out
    }

    #[test]
    fn bursts_repeat_at_the_period_and_extrapolate_energy() {
        let mut s = BurstSampler::new(cal(1.0), BurstConfig::original(RATE, 5000));
        let readings = feed(&mut s, 60, |_| true);
        assert_eq!(readings.len(), 12);
        assert_eq!(s.readings(), 12);
        let p = (1300.0 / 2f64.sqrt() * 0.25) * (1000.0 / 2f64.sqrt() * 0.01);
        let truth_wh = p * 60.0 / 3600.0;
        let got = f64::from(s.energy_wh_extrapolated());
        assert!((got / truth_wh - 1.0).abs() < 0.01, "{got} vs {truth_wh}");
        // Booked energy stops at the last reading (~56 s of 60 s).
        assert!(f64::from(s.energy_wh()) < truth_wh * 0.97);
    }

    #[test]
    fn loads_between_bursts_are_missed() {
        // A load that is on only from 2 s to 4.5 s of every 5 s: the original
        // bursts (the first ~1 s of each period) never see it.
        let mut s = BurstSampler::new(cal(1.0), BurstConfig::original(RATE, 5000));
        let readings = feed(&mut s, 30, |n| {
            let in_period = n % (5 * u64::from(RATE));
            (8000..18000).contains(&in_period)
        });
        assert!(!readings.is_empty());
        assert!(s.energy_wh_extrapolated().abs() < 0.01, "{}", s.energy_wh());
    }

    #[test]
    fn wait_loop_times_out_on_a_flat_voltage() {
        let mut s = BurstSampler::new(cal(1.0), BurstConfig::original(RATE, 5000));
        let mut got = None;
        // Voltage stuck at a rail: never near mid-scale, never crosses.
        for _ in 0..(7 * RATE) {
            if let Some(r) = s.push(4000, 2048) {
                got = Some(r);
                break;
            }
        }
        let r = got.expect("both timeouts elapsed: a reading must come out");
        assert_eq!(r.samples, 3 * RATE);
    }
}
