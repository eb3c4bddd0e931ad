//! Waveform: synthetic mains with known truth, for tests, benchmarks and the
//! simulator. It is a *helper*, never the code under test.
//!
//! A [`Scenario`] describes the physics (mains voltage and frequency with
//! drift and harmonics, per-CT [`LoadProfile`]s with power factor, harmonics
//! and steps) and the acquisition chain ([`Adc`]: gains, DC offsets with slow
//! wander, CT phase lead, sequential sampling skew, Gaussian noise, 12-bit
//! quantisation with clamping, an ESP32-like nonlinearity near the rails).
//! A [`Generator`] turns it into raw sample sets (`u16` counts, channel order
//! = voltages then currents, as `metering` expects) without per-sample
//! allocation. [`Scenario::truth`] integrates the *noiseless, physical*
//! signals (no offsets, no skew, no CT error, no quantisation) in f64 with
//! 3-point Gauss–Legendre quadrature, giving Vrms, Irms, real and apparent
//! power and import/export energy over any time span.
//!
//! Conventions: the current of a load lags its phase voltage by
//! `phase_deg` (positive = lagging/inductive, negative = leading, beyond ±90°
//! = exporting). Phase p (0, 1, 2) lags phase 0 by `p·120°`. Every rms figure
//! (`v_rms`, `i_rms`) is the *total* rms including harmonics.

// Parallel per-channel arrays read clearer as index loops.
#![allow(clippy::needless_range_loop)]

mod profile;
mod rng;

pub use profile::{Load, LoadProfile, Segment};
pub use rng::Rng;

use std::f64::consts::{PI, SQRT_2, TAU};

/// Most harmonics on one signal.
pub const MAX_HARMONICS: usize = 4;

/// One harmonic of a voltage or current.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Harmonic {
    /// Harmonic order (3, 5, ...).
    pub order: u32,
    /// Amplitude relative to the fundamental.
    pub fraction: f64,
    /// Phase of the harmonic in degrees (relative to `order ×` the
    /// fundamental's phase).
    pub phase_deg: f64,
}

impl Harmonic {
    /// A harmonic of `order` with amplitude `fraction` of the fundamental.
    pub fn new(order: u32, fraction: f64, phase_deg: f64) -> Self {
        Harmonic {
            order,
            fraction,
            phase_deg,
        }
    }
}

/// Mains voltage and frequency.
#[derive(Clone, Debug, PartialEq)]
pub struct Mains {
    /// Mean frequency (Hz).
    pub frequency_hz: f64,
    /// Amplitude of a slow sinusoidal frequency drift (Hz).
    pub drift_hz: f64,
    /// Period of the drift (s).
    pub drift_period_s: f64,
    /// Total rms voltage (V) of each phase.
    pub v_rms: f64,
    /// Voltage harmonics.
    pub harmonics: Vec<Harmonic>,
}

impl Mains {
    /// Clean mains at `frequency_hz` and `v_rms`.
    pub fn new(frequency_hz: f64, v_rms: f64) -> Self {
        Mains {
            frequency_hz,
            drift_hz: 0.0,
            drift_period_s: 60.0,
            v_rms,
            harmonics: Vec::new(),
        }
    }

    /// Fundamental phase θ(t) in radians (integral of 2π·f(t)).
    #[inline]
    pub fn theta(&self, t: f64) -> f64 {
        let mut th = TAU * self.frequency_hz * t;
        if self.drift_hz != 0.0 {
            let w = TAU / self.drift_period_s;
            // f(t) = f0 + d·sin(w t)  =>  θ = 2π(f0 t + d(1 - cos w t)/w)
            th += TAU * self.drift_hz * (1.0 - (w * t).cos()) / w;
        }
        th
    }

    /// Instantaneous frequency (Hz).
    pub fn frequency_at(&self, t: f64) -> f64 {
        self.frequency_hz + self.drift_hz * (TAU * t / self.drift_period_s).sin()
    }
}

/// How the channels are wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wiring {
    /// One voltage, `cts` CTs all on that phase (each its own circuit).
    SinglePhase {
        /// Number of CTs (1..=3).
        cts: usize,
    },
    /// Three voltages (phases 0/120/240° lag), CT n on phase n.
    ThreePhase,
    /// One voltage (phase 0) only; CT n on phase n (0/120/240° lag).
    ThreePhaseVirtual,
}

impl Wiring {
    /// Voltage channels in a sample set.
    pub fn voltages(&self) -> usize {
        match self {
            Wiring::ThreePhase => 3,
            _ => 1,
        }
    }

    /// Current channels in a sample set.
    pub fn circuits(&self) -> usize {
        match self {
            Wiring::SinglePhase { cts } => *cts,
            _ => 3,
        }
    }

    /// Phase (0, 1, 2) CT `ct` sits on.
    pub fn phase_of_ct(&self, ct: usize) -> usize {
        match self {
            Wiring::SinglePhase { .. } => 0,
            _ => ct,
        }
    }
}

/// The acquisition chain from volts/amps to raw 12-bit counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Adc {
    /// Volts per count for each voltage channel.
    pub v_per_count: [f64; 3],
    /// Amps per count for each CT.
    pub a_per_count: [f64; 3],
    /// DC offset (counts) of each channel, in sample-set order.
    pub offset: [f64; 6],
    /// Amplitude of a slow sinusoidal wander of every offset (counts).
    pub offset_wander_counts: f64,
    /// Period of the offset wander (s).
    pub offset_wander_period_s: f64,
    /// Gaussian noise sigma (counts).
    pub noise_sigma: f64,
    /// Round to integers (12-bit quantisation). Values are always clamped.
    pub quantise: bool,
    /// Apply [`adc_nonlinearity`] (ESP32-like bends near the rails).
    pub nonlinear: bool,
    /// Time between the conversions of consecutive channels of one set (s):
    /// channel c is sampled at `t_k + c·skew_s`.
    pub skew_s: f64,
    /// CT phase lead (degrees at the fundamental): the CT's output leads its
    /// primary current by this angle.
    pub ct_phase_lead_deg: [f64; 3],
}

impl Default for Adc {
    /// Mid-scale offsets, 0.25 V/count, 0.0893 A/count (100 A rating at
    /// 120 % ≈ 1900 counts peak), no noise, quantised, linear, no skew.
    fn default() -> Self {
        Adc {
            v_per_count: [0.25; 3],
            a_per_count: [amps_per_count_for_rating(100.0); 3],
            offset: [2048.0; 6],
            offset_wander_counts: 0.0,
            offset_wander_period_s: 120.0,
            noise_sigma: 0.0,
            quantise: true,
            nonlinear: false,
            skew_s: 0.0,
            ct_phase_lead_deg: [0.0; 3],
        }
    }
}

/// Amps per count such that 120 % of `rating_a` (sinusoidal) peaks at 1900
/// counts from mid-scale, the convention the accuracy grid uses.
pub fn amps_per_count_for_rating(rating_a: f64) -> f64 {
    1.2 * SQRT_2 * rating_a / 1900.0
}

/// ESP32-like ADC transfer bend: ideal count in, distorted count out. Reads
/// high near 0 (up to +25 counts at 0) and compresses above 3600 (−60
/// counts at 4095). Monotonic, so [`adc_nonlinearity_inverse`] exists.
pub fn adc_nonlinearity(x: f64) -> f64 {
    if x < 400.0 {
        let u = 1.0 - x / 400.0;
        x + 25.0 * u * u
    } else if x > 3600.0 {
        let u = (x - 3600.0) / 495.0;
        x - 60.0 * u * u
    } else {
        x
    }
}

/// Inverse of [`adc_nonlinearity`] (bisection), e.g. to build a linearity
/// table the way a chip's calibration data would.
pub fn adc_nonlinearity_inverse(y: f64) -> f64 {
    let (mut lo, mut hi) = (-100.0, 4300.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if adc_nonlinearity(mid) < y {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// A complete synthetic set-up.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Sample sets per second.
    pub sample_rate_hz: f64,
    /// Mains voltage and frequency.
    pub mains: Mains,
    /// Channel wiring.
    pub wiring: Wiring,
    /// One load profile per CT.
    pub loads: Vec<LoadProfile>,
    /// Acquisition chain.
    pub adc: Adc,
    /// Noise seed.
    pub seed: u64,
}

/// Truth over a time span, from the noiseless physical signals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Truth {
    /// Span length (s).
    pub duration_s: f64,
    /// Rms voltage of each phase (V).
    pub v_rms: [f64; 3],
    /// Rms current of each CT (A).
    pub i_rms: [f64; 3],
    /// Mean real power of each CT (W).
    pub real_power_w: [f64; 3],
    /// Vrms(phase of CT) · Irms (VA).
    pub apparent_power_va: [f64; 3],
    /// Imported energy (Wh): ∫v·i over the times the active load imports.
    pub import_wh: [f64; 3],
    /// Exported energy (Wh): −∫v·i over the times the active load exports.
    pub export_wh: [f64; 3],
}

impl Truth {
    /// Net energy (Wh) of CT `ct`.
    pub fn net_wh(&self, ct: usize) -> f64 {
        self.import_wh[ct] - self.export_wh[ct]
    }
}

const PHASE_SHIFT: f64 = TAU / 3.0;

impl Scenario {
    /// A single-phase scenario: one CT with a constant load, default ADC.
    pub fn single(sample_rate_hz: f64, mains: Mains, load: Load) -> Self {
        Scenario {
            sample_rate_hz,
            mains,
            wiring: Wiring::SinglePhase { cts: 1 },
            loads: vec![LoadProfile::constant(load)],
            adc: Adc::default(),
            seed: 1,
        }
    }

    /// Channels per sample set (voltages, then currents).
    pub fn channel_count(&self) -> usize {
        self.wiring.voltages() + self.wiring.circuits()
    }

    /// Fundamental rms voltage (total rms without harmonics).
    fn v_fund_peak(&self) -> f64 {
        let h2: f64 = self
            .mains
            .harmonics
            .iter()
            .map(|h| h.fraction * h.fraction)
            .sum();
        SQRT_2 * self.mains.v_rms / (1.0 + h2).sqrt()
    }

    /// Physical voltage (V) of phase `p` at time `t`.
    pub fn voltage(&self, p: usize, t: f64) -> f64 {
        let th = self.mains.theta(t) - p as f64 * PHASE_SHIFT;
        voltage_at(th, self.v_fund_peak(), &self.mains.harmonics)
    }

    /// Physical primary current (A) of CT `ct` at time `t`.
    pub fn current(&self, ct: usize, t: f64) -> f64 {
        let th = self.mains.theta(t) - self.wiring.phase_of_ct(ct) as f64 * PHASE_SHIFT;
        self.loads[ct].at(t).current_at(th)
    }

    /// Truth over `[t0, t1)` by 3-point Gauss–Legendre quadrature on steps
    /// of one sample period (exact to ~1e-9 for these band-limited signals).
    pub fn truth(&self, t0: f64, t1: f64) -> Truth {
        let nv = self.wiring.voltages();
        let nc = self.wiring.circuits();
        let h = 1.0 / self.sample_rate_hz;
        let steps = (((t1 - t0) / h).ceil() as u64).max(1);
        let h = (t1 - t0) / steps as f64;
        let r = (0.6f64).sqrt() / 2.0;
        let nodes = [
            (0.5 - r, 5.0 / 18.0),
            (0.5, 8.0 / 18.0),
            (0.5 + r, 5.0 / 18.0),
        ];
        let vpk = self.v_fund_peak();
        let mut vv = [0.0f64; 3];
        let mut ii = [0.0f64; 3];
        let mut imp = [0.0f64; 3];
        let mut exp = [0.0f64; 3];
        let mut cursors = [0usize; 3];
        let mut need = [false; 3];
        for (p, n) in need.iter_mut().enumerate() {
            *n = p < nv || (0..nc).any(|ct| self.wiring.phase_of_ct(ct) == p);
        }
        for s in 0..steps {
            let ts = t0 + s as f64 * h;
            for &(x, w) in &nodes {
                let t = ts + x * h;
                let th = self.mains.theta(t);
                let mut v = [0.0f64; 3];
                for p in 0..3 {
                    if need[p] {
                        v[p] = voltage_at(th - p as f64 * PHASE_SHIFT, vpk, &self.mains.harmonics);
                    }
                }
                for p in 0..nv {
                    vv[p] += w * v[p] * v[p];
                }
                for ct in 0..nc {
                    let ph = self.wiring.phase_of_ct(ct);
                    let load = self.loads[ct].at_cursor(t, &mut cursors[ct]);
                    let i = load.current_at(th - ph as f64 * PHASE_SHIFT);
                    ii[ct] += w * i * i;
                    let p = v[ph] * i;
                    if load.exports() {
                        exp[ct] -= w * p;
                    } else {
                        imp[ct] += w * p;
                    }
                }
            }
        }
        let dur = t1 - t0;
        let mut out = Truth {
            duration_s: dur,
            ..Truth::default()
        };
        let norm = h / dur;
        let mut v_phase = [0.0f64; 3];
        for p in 0..nv {
            out.v_rms[p] = (vv[p] * norm).sqrt();
        }
        for (p, vp) in v_phase.iter_mut().enumerate() {
            // Virtual phases have the same rms as phase 0.
            *vp = if p < nv { out.v_rms[p] } else { out.v_rms[0] };
        }
        for ct in 0..nc {
            out.i_rms[ct] = (ii[ct] * norm).sqrt();
            out.real_power_w[ct] = (imp[ct] - exp[ct]) * norm;
            out.apparent_power_va[ct] = v_phase[self.wiring.phase_of_ct(ct)] * out.i_rms[ct];
            out.import_wh[ct] = imp[ct] * h / 3600.0;
            out.export_wh[ct] = exp[ct] * h / 3600.0;
        }
        out
    }

    /// A generator of raw sample sets starting at t = 0.
    pub fn generator(&self) -> Generator {
        Generator::new(self.clone())
    }
}

#[inline]
fn voltage_at(th: f64, peak: f64, harmonics: &[Harmonic]) -> f64 {
    let mut v = th.sin();
    for h in harmonics {
        v += h.fraction * (h.order as f64 * th + h.phase_deg.to_radians()).sin();
    }
    peak * v
}

/// Produces raw sample sets of a [`Scenario`]; no allocation per sample.
#[derive(Clone, Debug)]
pub struct Generator {
    sc: Scenario,
    k: u64,
    rng: Rng,
    cursors: [usize; 3],
    vpk: f64,
    v_harm: [(f64, f64, f64); MAX_HARMONICS],
    n_vh: usize,
    lead: [f64; 3],
    wander_w: f64,
}

impl Generator {
    /// A generator at sample 0.
    pub fn new(sc: Scenario) -> Self {
        let mut v_harm = [(0.0, 0.0, 0.0); MAX_HARMONICS];
        let n_vh = sc.mains.harmonics.len().min(MAX_HARMONICS);
        for (dst, h) in v_harm.iter_mut().zip(&sc.mains.harmonics) {
            *dst = (h.order as f64, h.fraction, h.phase_deg.to_radians());
        }
        let lead = [
            sc.adc.ct_phase_lead_deg[0].to_radians(),
            sc.adc.ct_phase_lead_deg[1].to_radians(),
            sc.adc.ct_phase_lead_deg[2].to_radians(),
        ];
        let wander_w = TAU / sc.adc.offset_wander_period_s.max(1e-9);
        Generator {
            rng: Rng::new(sc.seed),
            vpk: sc.v_fund_peak(),
            sc,
            k: 0,
            cursors: [0; 3],
            v_harm,
            n_vh,
            lead,
            wander_w,
        }
    }

    /// The scenario being generated.
    pub fn scenario(&self) -> &Scenario {
        &self.sc
    }

    /// Index of the next sample set.
    pub fn sample_index(&self) -> u64 {
        self.k
    }

    /// Time (s) of the next sample set.
    pub fn time(&self) -> f64 {
        self.k as f64 / self.sc.sample_rate_hz
    }

    /// Channels per sample set.
    pub fn channel_count(&self) -> usize {
        self.sc.channel_count()
    }

    #[inline]
    fn counts(&mut self, c: usize, t: f64, value: f64, per_count: f64) -> u16 {
        let adc = &self.sc.adc;
        let mut x = adc.offset[c] + value / per_count;
        if adc.offset_wander_counts != 0.0 {
            x += adc.offset_wander_counts * (self.wander_w * t + c as f64).sin();
        }
        if adc.noise_sigma > 0.0 {
            x += adc.noise_sigma * self.rng.normal();
        }
        if adc.nonlinear {
            x = adc_nonlinearity(x);
        }
        if adc.quantise {
            x = x.round();
        }
        x.clamp(0.0, 4095.0) as u16
    }

    /// Writes the next sample set into `out[..channel_count]`.
    /// Panics if `out` is shorter than [`Generator::channel_count`].
    #[inline]
    pub fn next_set(&mut self, out: &mut [u16]) {
        let nv = self.sc.wiring.voltages();
        let nc = self.sc.wiring.circuits();
        let t0 = self.k as f64 / self.sc.sample_rate_hz;
        self.k += 1;
        let skew = self.sc.adc.skew_s;
        for p in 0..nv {
            let t = t0 + p as f64 * skew;
            let th = self.sc.mains.theta(t) - p as f64 * PHASE_SHIFT;
            let mut v = th.sin();
            for &(o, f, ph) in &self.v_harm[..self.n_vh] {
                v += f * (o * th + ph).sin();
            }
            let per = self.sc.adc.v_per_count[p];
            out[p] = self.counts(p, t, self.vpk * v, per);
        }
        for ct in 0..nc {
            let c = nv + ct;
            let t = t0 + c as f64 * skew;
            let ph = self.sc.wiring.phase_of_ct(ct);
            let th = self.sc.mains.theta(t) - ph as f64 * PHASE_SHIFT + self.lead[ct];
            let i = {
                let load = self.sc.loads[ct].at_cursor(t, &mut self.cursors[ct]);
                load.current_at(th)
            };
            let per = self.sc.adc.a_per_count[ct];
            out[c] = self.counts(c, t, i, per);
        }
    }

    /// Fills `out` with whole interleaved sample sets; returns the number of
    /// sets written (`out.len() / channel_count`).
    pub fn fill(&mut self, out: &mut [u16]) -> usize {
        let n = self.channel_count();
        let mut sets = 0;
        for chunk in out.chunks_exact_mut(n) {
            self.next_set(chunk);
            sets += 1;
        }
        sets
    }

    /// Iterator of fixed-size sample sets. `N` must be at least
    /// [`Generator::channel_count`]; extra entries are 0.
    pub fn sets<const N: usize>(&mut self) -> impl Iterator<Item = [u16; N]> + '_ {
        assert!(
            N >= self.channel_count(),
            "N smaller than the channel count"
        );
        std::iter::from_fn(move || {
            let mut a = [0u16; N];
            self.next_set(&mut a);
            Some(a)
        })
    }
}

/// Degrees to a phase angle in radians, for readability at call sites.
pub fn deg(d: f64) -> f64 {
    d * PI / 180.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(pf_deg: f64, i: f64) -> Scenario {
        Scenario::single(4000.0, Mains::new(50.0, 230.0), Load::new(i, pf_deg))
    }

    #[test]
    fn truth_of_clean_sine_matches_closed_form() {
        for &phi in &[0.0, 60.0, -36.87, 180.0] {
            let sc = basic(phi, 10.0);
            let t = sc.truth(0.0, 1.0);
            assert!((t.v_rms[0] - 230.0).abs() < 1e-6);
            assert!((t.i_rms[0] - 10.0).abs() < 1e-6);
            let p = 2300.0 * deg(phi).cos();
            assert!(
                (t.real_power_w[0] - p).abs() < 1e-5,
                "{phi}: {}",
                t.real_power_w[0]
            );
            if p >= 0.0 {
                assert!((t.import_wh[0] - p / 3600.0).abs() < 1e-8);
            } else {
                assert!((t.export_wh[0] + p / 3600.0).abs() < 1e-8);
            }
        }
    }

    #[test]
    fn harmonics_count_in_total_rms() {
        let mut sc = basic(0.0, 10.0);
        sc.mains.harmonics = vec![Harmonic::new(3, 0.3, 0.0)];
        sc.loads[0] =
            LoadProfile::constant(Load::new(10.0, 0.0).with_harmonic(Harmonic::new(3, 0.3, 0.0)));
        let t = sc.truth(0.0, 1.0);
        assert!((t.v_rms[0] - 230.0).abs() < 1e-6);
        assert!((t.i_rms[0] - 10.0).abs() < 1e-6);
        // In-phase 3rd harmonics on both: P = Vrms·Irms.
        assert!((t.real_power_w[0] - 2300.0).abs() < 1e-4);
    }

    #[test]
    fn samples_match_gains_and_clamp() {
        let mut sc = basic(0.0, 100.0);
        sc.adc.quantise = false;
        let mut g = sc.generator();
        let mut buf = vec![0u16; 2 * 4000];
        assert_eq!(g.fill(&mut buf), 4000);
        let peak_v = buf.chunks(2).map(|s| s[0]).max().unwrap();
        assert!(
            (peak_v as f64 - (2048.0 + 325.27 / 0.25)).abs() < 2.0,
            "{peak_v}"
        );
        let peak_i = buf.chunks(2).map(|s| s[1]).max().unwrap() as f64 - 2048.0;
        assert!((peak_i - 1900.0 / 1.2).abs() < 2.0, "{peak_i}");
        let mut sc2 = basic(0.0, 200.0);
        sc2.adc.offset[1] = 2048.0;
        let mut g2 = sc2.generator();
        for s in g2.sets::<2>().take(1000) {
            assert!(s[1] <= 4095);
        }
    }

    #[test]
    fn nonlinearity_inverts() {
        for x in [0.0, 100.0, 399.0, 2048.0, 3700.0, 4095.0] {
            let y = adc_nonlinearity(x);
            assert!((adc_nonlinearity_inverse(y) - x).abs() < 1e-6);
        }
    }

    #[test]
    fn drift_integrates_frequency() {
        let mut m = Mains::new(50.0, 230.0);
        m.drift_hz = 2.0;
        m.drift_period_s = 10.0;
        let dt = 1e-4;
        let t = 3.3;
        let num = (m.theta(t + dt) - m.theta(t - dt)) / (2.0 * dt) / TAU;
        assert!((num - m.frequency_at(t)).abs() < 1e-6);
    }
}
