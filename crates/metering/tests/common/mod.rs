//! Shared test helpers: map a waveform scenario onto a metering config and
//! run the engine over it.
#![allow(dead_code)]

use metering::{Calibration, Config, Interval, Layout, Meter};
use waveform::{Load, LoadProfile, Mains, Scenario, Wiring, amps_per_count_for_rating};

/// CT rating used by the grid: 120 % peaks at ~1900 counts from mid-scale.
pub const RATING_A: f64 = 100.0;

/// Calibration that matches the scenario's acquisition chain, as a user
/// who calibrated against a reference would have it.
pub fn calibration_for(sc: &Scenario) -> Calibration {
    let nv = sc.wiring.voltages();
    let mut cal = Calibration::default();
    for ch in 0..3 {
        cal.v_gain[ch] = sc.adc.v_per_count[ch] as f32;
        cal.i_gain[ch] = sc.adc.a_per_count[ch] as f32;
        cal.phase_deg[ch] = sc.adc.ct_phase_lead_deg[ch] as f32;
        // CT n is channel nv+n; its voltage is channel (phase) p.
        let vch = match sc.wiring {
            Wiring::ThreePhase => ch,
            _ => 0,
        };
        cal.skew_us[ch] = ((nv + ch - vch) as f64 * sc.adc.skew_s * 1e6) as f32;
    }
    cal
}

pub fn layout_for(sc: &Scenario) -> Layout {
    match sc.wiring {
        Wiring::SinglePhase { cts } => Layout::SinglePhase { cts: cts as u8 },
        Wiring::ThreePhase => Layout::ThreePhase,
        Wiring::ThreePhaseVirtual => Layout::ThreePhaseVirtual,
    }
}

pub fn config_for(sc: &Scenario, interval_s: f64) -> Config {
    let rate = sc.sample_rate_hz as u32;
    let mut cfg = Config::new(rate, layout_for(sc));
    cfg.interval_samples = (interval_s * sc.sample_rate_hz) as u32;
    cfg.cal = calibration_for(sc);
    cfg
}

/// Runs `seconds` of the scenario through a meter; returns the completed
/// intervals (no trailing partial one).
pub fn run(sc: &Scenario, cfg: Config, seconds: f64) -> (Meter, Vec<Interval>) {
    let mut meter = Meter::new(cfg).expect("valid config");
    let mut g = sc.generator();
    let n = (seconds * sc.sample_rate_hz) as u64;
    let mut set = [0u16; 6];
    let mut out = Vec::new();
    for _ in 0..n {
        g.next_set(&mut set);
        if let Some(iv) = meter.push(&set[..]) {
            out.push(iv);
        }
    }
    (meter, out)
}

/// The truth over exactly the samples an interval covers.
pub fn truth_of(sc: &Scenario, iv: &Interval) -> waveform::Truth {
    let r = sc.sample_rate_hz;
    let t0 = iv.start_sample as f64 / r;
    sc.truth(t0, t0 + iv.samples as f64 / r)
}

/// Relative error, in percent.
pub fn rel_pct(measured: f64, truth: f64) -> f64 {
    100.0 * (measured - truth) / truth.abs()
}

/// Realistic single-phase scenario: noise, quantisation, DC wander, CT
/// phase lead, sequential sampling skew, slow frequency drift.
pub fn realistic(freq: f64, v_rms: f64, load: Load, seed: u64) -> Scenario {
    let mut mains = Mains::new(freq, v_rms);
    mains.drift_hz = 0.05;
    mains.drift_period_s = 20.0;
    let mut sc = Scenario::single(4000.0, mains, load);
    sc.loads = vec![LoadProfile::constant(load)];
    sc.adc.a_per_count = [amps_per_count_for_rating(RATING_A); 3];
    sc.adc.noise_sigma = 2.0;
    sc.adc.offset = [2040.0, 2061.0, 2035.0, 2052.0, 2044.0, 2049.0];
    sc.adc.offset_wander_counts = 15.0;
    sc.adc.offset_wander_period_s = 30.0;
    sc.adc.ct_phase_lead_deg = [2.0, 1.5, 3.0];
    sc.adc.skew_s = 25e-6;
    sc.seed = seed;
    sc
}
