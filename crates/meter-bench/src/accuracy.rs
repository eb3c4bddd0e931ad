//! Accuracy: the new engine and the original's calcVI on the same generated
//! sample stream, each judged against the generator's analytic truth
//! (`waveform::Scenario::truth`, noiseless physical signals in f64).
//!
//! - A steady-state grid: 45/50/55 Hz × PF 1 / 0.5 lagging / 0.8 leading ×
//!   5/10/50/100/120 % of the CT rating × without/with 3rd+5th harmonics, on a
//!   realistic acquisition chain (Gaussian noise, slow DC wander, sequential
//!   sampling skew, CT phase lead — both engines calibrated for the skew and
//!   the lead, the baseline through its `phase_cal` at 50 Hz as a user would).
//!   Ours: the real power of one whole 10 s interval after a 10 s warm-up.
//!   Baseline: its bursts (~1 s every 5 s) after the first, each against the
//!   truth over its own span.
//! - Energy over a 1-hour varying-load profile: ours from its energy
//!   registers; the baseline extrapolating power × elapsed time from bursts
//!   every 5 s, and from one burst per hour as the original shipped.

use baseline::{BurstConfig, BurstSampler, Calibration as BaseCal};
use metering::{Config, Layout, Meter};
use serde::Serialize;
use waveform::{Adc, Harmonic, Load, LoadProfile, Mains, Scenario, Wiring};

/// Sample sets per second in every scenario.
pub const RATE: u32 = 4000;
/// CT rating (A): 120 % peaks near the ADC rails.
pub const RATING_A: f64 = 100.0;
/// Mains voltage (V rms).
pub const V_RMS: f64 = 230.0;
/// Interval length of the new engine in the grid (s).
const GRID_INTERVAL_S: u32 = 10;
/// Burst period of the baseline in the grid and the 5 s energy run (ms).
const BURST_PERIOD_MS: u32 = 5000;
/// Sampling skew between consecutive channels (s): sequential oneshot conversions.
const SKEW_S: f64 = 50e-6;
/// CT phase lead (degrees) of the simulated CT.
const CT_LEAD_DEG: f64 = 1.5;
/// Error (%) below which energy ratios stop growing: a claimed ratio of
/// millions would only measure luck.
pub const ENERGY_RESOLUTION_PCT: f64 = 0.01;
/// Seed of the 1-hour profile.
const HOUR_SEED: u64 = 7;

/// Targets (percent of real power) from the issue.
const TARGET_PF1_PCT: f64 = 0.5;
const TARGET_LOW_PCT: f64 = 1.0;
const TARGET_ENERGY_PCT: f64 = 0.5;

/// One grid point.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Mains frequency (Hz).
    pub frequency_hz: f64,
    /// Label of the power factor ("1", "0.5 lag", "0.8 lead").
    pub pf: &'static str,
    /// Current as percent of the CT rating.
    pub load_pct: f64,
    /// 3rd+5th harmonics on voltage and current.
    pub harmonics: bool,
    /// True real power (W).
    pub truth_w: f64,
    /// Our real-power error (%).
    pub ours_err_pct: f64,
    /// The baseline's real-power error (%), mean over its bursts.
    pub baseline_err_pct: f64,
    /// The baseline's worst single-burst error (%).
    pub baseline_worst_burst_pct: f64,
    /// The target this point is held to (%), if the issue sets one.
    pub target_pct: Option<f64>,
    /// Whether our error meets it.
    pub ours_meets_target: Option<bool>,
}

/// The 1-hour energy comparison.
#[derive(Debug, Clone, Serialize)]
pub struct EnergyHour {
    /// Seed of `LoadProfile::varying_hour`.
    pub seed: u64,
    /// Load segments in the hour.
    pub segments: usize,
    /// Truth: imported, exported and net energy (Wh).
    pub truth_import_wh: f64,
    pub truth_export_wh: f64,
    pub truth_net_wh: f64,
    /// Ours: from the energy registers (Wh).
    pub ours_import_wh: f64,
    pub ours_export_wh: f64,
    pub ours_net_wh: f64,
    /// Our errors (% of the true import / export / net).
    pub ours_import_err_pct: f64,
    pub ours_export_err_pct: f64,
    pub ours_net_err_pct: f64,
    /// Baseline, bursts every 5 s, net energy (Wh) and error (%).
    pub baseline_5s_net_wh: f64,
    pub baseline_5s_err_pct: f64,
    /// Baseline as shipped: one burst per hour, power × 1 h.
    pub baseline_hourly_net_wh: f64,
    pub baseline_hourly_err_pct: f64,
    /// |baseline error| / |our error| on net energy, our error floored at
    /// [`ENERGY_RESOLUTION_PCT`] so a near-zero error does not make the ratio meaningless.
    pub baseline_5s_vs_ours_ratio: f64,
    pub baseline_hourly_vs_ours_ratio: f64,
    /// Target for ours (%), and whether import, export and net meet it.
    pub target_pct: f64,
    pub ours_meets_target: bool,
}

/// Summary lines over the grid.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Worst |error| (%) at PF 1, 10–120 % of rating: ours, baseline.
    pub pf1_10_120_ours_max_pct: f64,
    pub pf1_10_120_baseline_max_pct: f64,
    /// Worst |error| (%) at 5 % of rating or PF 0.5: ours, baseline.
    pub low_or_pf05_ours_max_pct: f64,
    pub low_or_pf05_baseline_max_pct: f64,
    /// Worst |error| (%) over the whole grid: ours, baseline, and their ratio.
    pub all_ours_max_pct: f64,
    pub all_baseline_max_pct: f64,
    pub worst_case_ratio: f64,
    /// Grid points held to a target, and how many of ours meet it.
    pub targeted_points: usize,
    pub ours_points_meeting_target: usize,
}

/// One point of the error-vs-load sweep (the report's plot).
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// Mains frequency (Hz).
    pub frequency_hz: f64,
    /// Label of the power factor ("1", "0.5 lag", "0.8 lead").
    pub pf: &'static str,
    /// Current as percent of the CT rating.
    pub load_pct: f64,
    /// Our real-power error (%).
    pub ours_err_pct: f64,
    /// The baseline's real-power error (%), mean over its bursts.
    pub baseline_err_pct: f64,
}

/// Real-power error against load, finer than the grid, for a curve: the
/// same scenario and calibration as the grid (no harmonics).
#[derive(Debug, Clone, Serialize)]
pub struct ErrorVsLoad {
    /// Loads swept (% of the CT rating).
    pub loads_pct: Vec<f64>,
    /// Frequencies swept (Hz).
    pub frequencies_hz: Vec<f64>,
    /// Power factors swept (labels).
    pub pfs: Vec<&'static str>,
    /// Every (frequency, PF, load) point.
    pub points: Vec<SweepPoint>,
}

/// Everything the accuracy section measures.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyReport {
    /// How the grid is built.
    pub setup: String,
    pub rows: Vec<Row>,
    pub summary: Summary,
    pub energy_hour: EnergyHour,
    /// Error against load on a finer load axis (for the report's plot).
    pub error_vs_load: ErrorVsLoad,
}

/// Power factors of the grid: label and current lag (degrees).
const PFS: [(&str, f64); 3] = [
    ("1", 0.0),
    ("0.5 lag", 60.0),
    ("0.8 lead", -36.869_897_645_844),
];
const LOADS_PCT: [f64; 5] = [5.0, 10.0, 50.0, 100.0, 120.0];
const FREQS: [f64; 3] = [45.0, 50.0, 55.0];
/// Loads of the error-vs-load sweep (% of the CT rating).
const SWEEP_LOADS_PCT: [f64; 14] = [
    1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 70.0, 90.0, 100.0, 120.0,
];

fn adc() -> Adc {
    Adc {
        noise_sigma: 1.0,
        offset_wander_counts: 12.0,
        offset_wander_period_s: 90.0,
        skew_s: SKEW_S,
        ct_phase_lead_deg: [CT_LEAD_DEG; 3],
        ..Adc::default()
    }
}

fn mains(frequency_hz: f64, harmonics: bool) -> Mains {
    let mut m = Mains::new(frequency_hz, V_RMS);
    if harmonics {
        m.harmonics = vec![Harmonic::new(3, 0.03, 0.0), Harmonic::new(5, 0.02, 0.0)];
    }
    m
}

fn load(pct: f64, lag_deg: f64, harmonics: bool) -> Load {
    let l = Load::new(RATING_A * pct / 100.0, lag_deg);
    if harmonics {
        l.with_harmonic(Harmonic::new(3, 0.2, 30.0))
            .with_harmonic(Harmonic::new(5, 0.1, 60.0))
    } else {
        l
    }
}

/// Our engine calibrated for the scenario's acquisition chain.
fn our_meter(sc: &Scenario, interval_s: u32) -> Meter {
    let mut cfg =
        Config::new(RATE, Layout::SinglePhase { cts: 1 }).with_interval_seconds(interval_s);
    cfg.nominal_hz = 50;
    cfg.cal.v_gain = [sc.adc.v_per_count[0] as f32; 3];
    cfg.cal.i_gain = [sc.adc.a_per_count[0] as f32; 3];
    cfg.cal.phase_deg = [sc.adc.ct_phase_lead_deg[0] as f32; 3];
    cfg.cal.skew_us = [(sc.adc.skew_s * 1e6) as f32; 3];
    match Meter::new(cfg) {
        Ok(m) => m,
        // The configuration is built here from constants: refusing it is a bug.
        Err(e) => panic!("metering refused the bench configuration: {e}"),
    }
}

/// The baseline calibrated for the same chain: exact scales, mid-scale
/// offsets, and `phase_cal` moving V forward by the skew plus the CT lead
/// at 50 Hz, in samples (EmonLib's calibration of the same thing).
fn baseline_cal(sc: &Scenario) -> BaseCal {
    let ts = 1.0 / f64::from(RATE);
    let lead_s = sc.adc.ct_phase_lead_deg[0] / 360.0 / 50.0;
    BaseCal {
        v_ratio: sc.adc.v_per_count[0] as f32,
        i_ratio: sc.adc.a_per_count[0] as f32,
        phase_cal: (1.0 + (sc.adc.skew_s + lead_s) / ts) as f32,
        offset_v: 2048.0,
        offset_i: 2048.0,
    }
}

fn err_pct(got: f64, truth: f64) -> f64 {
    if truth == 0.0 {
        if got == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        (got - truth) / truth.abs() * 100.0
    }
}

fn grid_point(frequency_hz: f64, pf: (&'static str, f64), pct: f64, harmonics: bool) -> Row {
    let mut sc = Scenario::single(
        f64::from(RATE),
        mains(frequency_hz, harmonics),
        load(pct, pf.1, harmonics),
    );
    sc.adc = adc();
    sc.seed = (frequency_hz as u64) << 16 ^ (pct as u64) << 4 ^ u64::from(harmonics);
    let rate = f64::from(RATE);
    let mut meter = our_meter(&sc, GRID_INTERVAL_S);
    let mut base = BurstSampler::new(
        baseline_cal(&sc),
        BurstConfig::original(RATE, BURST_PERIOD_MS),
    );
    let mut generator = sc.generator();
    let mut set = [0u16; 2];
    let total = u64::from(RATE) * u64::from(2 * GRID_INTERVAL_S + 1);
    let mut ours = None;
    let mut bursts = Vec::new();
    for k in 0..total {
        generator.next_set(&mut set);
        if let Some(iv) = meter.push(&set)
            && iv.start_sample > 0
            && ours.is_none()
        {
            ours = Some(iv);
        }
        if let Some(r) = base.push(set[0], set[1]) {
            let start = k + 1 - u64::from(r.samples);
            bursts.push((start, k + 1, r));
        }
    }
    let (ours_err, truth_w) = match ours {
        Some(iv) => {
            let t0 = iv.start_s(RATE);
            let truth = sc.truth(t0, t0 + iv.duration_s(RATE));
            (
                err_pct(
                    f64::from(iv.circuits[0].real_power_w),
                    truth.real_power_w[0],
                ),
                truth.real_power_w[0],
            )
        }
        None => (f64::INFINITY, sc.truth(0.0, 1.0).real_power_w[0]),
    };
    // The first burst starts cold (EmonLib's filtered-V history is zero).
    let mut got = 0.0;
    let mut want = 0.0;
    let mut worst: f64 = 0.0;
    for (start, end, r) in bursts.iter().skip(1) {
        let truth = sc.truth(*start as f64 / rate, *end as f64 / rate);
        got += f64::from(r.real_power);
        want += truth.real_power_w[0];
        let e = err_pct(f64::from(r.real_power), truth.real_power_w[0]);
        if e.abs() > worst.abs() {
            worst = e;
        }
    }
    let baseline_err = if bursts.len() > 1 {
        err_pct(got, want)
    } else {
        f64::INFINITY
    };
    let target = if pct < 10.0 || pf.1 == 60.0 {
        Some(TARGET_LOW_PCT)
    } else if pf.1 == 0.0 {
        Some(TARGET_PF1_PCT)
    } else {
        None
    };
    Row {
        frequency_hz,
        pf: pf.0,
        load_pct: pct,
        harmonics,
        truth_w,
        ours_err_pct: ours_err,
        baseline_err_pct: baseline_err,
        baseline_worst_burst_pct: worst,
        target_pct: target,
        ours_meets_target: target.map(|t| ours_err.abs() <= t),
    }
}

fn energy_hour() -> EnergyHour {
    let profile = LoadProfile::varying_hour(HOUR_SEED, RATING_A);
    let segments = profile.segments().len();
    let sc = Scenario {
        sample_rate_hz: f64::from(RATE),
        mains: mains(50.0, true),
        wiring: Wiring::SinglePhase { cts: 1 },
        loads: vec![profile],
        adc: adc(),
        seed: HOUR_SEED,
    };
    let mut meter = our_meter(&sc, 60);
    let cal = baseline_cal(&sc);
    let mut b5 = BurstSampler::new(cal, BurstConfig::original(RATE, BURST_PERIOD_MS));
    let mut bh = BurstSampler::new(cal, BurstConfig::original(RATE, 3_600_000));
    let mut generator = sc.generator();
    let mut set = [0u16; 2];
    let total = u64::from(RATE) * 3600;
    for _ in 0..total {
        generator.next_set(&mut set);
        let _ = meter.push(&set);
        let _ = b5.push(set[0], set[1]);
        let _ = bh.push(set[0], set[1]);
    }
    let _ = meter.finish();
    let regs = meter.registers();
    let truth = sc.truth(0.0, total as f64 / f64::from(RATE));
    let ours_import = regs.import_wh(0);
    let ours_export = regs.export_wh(0);
    let ours_net = ours_import - ours_export;
    let b5_net = f64::from(b5.energy_wh_extrapolated());
    let bh_net = f64::from(bh.energy_wh_extrapolated());
    let import_err = err_pct(ours_import, truth.import_wh[0]);
    let export_err = err_pct(ours_export, truth.export_wh[0]);
    let net_err = err_pct(ours_net, truth.net_wh(0));
    EnergyHour {
        seed: HOUR_SEED,
        segments,
        truth_import_wh: truth.import_wh[0],
        truth_export_wh: truth.export_wh[0],
        truth_net_wh: truth.net_wh(0),
        ours_import_wh: ours_import,
        ours_export_wh: ours_export,
        ours_net_wh: ours_net,
        ours_import_err_pct: import_err,
        ours_export_err_pct: export_err,
        ours_net_err_pct: net_err,
        baseline_5s_net_wh: b5_net,
        baseline_5s_err_pct: err_pct(b5_net, truth.net_wh(0)),
        baseline_hourly_net_wh: bh_net,
        baseline_hourly_err_pct: err_pct(bh_net, truth.net_wh(0)),
        baseline_5s_vs_ours_ratio: err_pct(b5_net, truth.net_wh(0)).abs()
            / net_err.abs().max(ENERGY_RESOLUTION_PCT),
        baseline_hourly_vs_ours_ratio: err_pct(bh_net, truth.net_wh(0)).abs()
            / net_err.abs().max(ENERGY_RESOLUTION_PCT),
        target_pct: TARGET_ENERGY_PCT,
        ours_meets_target: [import_err, export_err, net_err]
            .iter()
            .all(|e| e.abs() <= TARGET_ENERGY_PCT),
    }
}

fn max_abs<'a>(rows: impl Iterator<Item = &'a Row>, f: impl Fn(&Row) -> f64) -> f64 {
    rows.map(|r| f(r).abs()).fold(0.0, f64::max)
}

fn summarise(rows: &[Row]) -> Summary {
    let pf1 = || rows.iter().filter(|r| r.pf == "1" && r.load_pct >= 10.0);
    let low = || {
        rows.iter()
            .filter(|r| r.load_pct < 10.0 || r.pf == "0.5 lag")
    };
    let all_ours = max_abs(rows.iter(), |r| r.ours_err_pct);
    let all_base = max_abs(rows.iter(), |r| r.baseline_err_pct);
    Summary {
        pf1_10_120_ours_max_pct: max_abs(pf1(), |r| r.ours_err_pct),
        pf1_10_120_baseline_max_pct: max_abs(pf1(), |r| r.baseline_err_pct),
        low_or_pf05_ours_max_pct: max_abs(low(), |r| r.ours_err_pct),
        low_or_pf05_baseline_max_pct: max_abs(low(), |r| r.baseline_err_pct),
        all_ours_max_pct: all_ours,
        all_baseline_max_pct: all_base,
        worst_case_ratio: if all_ours > 0.0 {
            all_base / all_ours
        } else {
            f64::INFINITY
        },
        targeted_points: rows.iter().filter(|r| r.target_pct.is_some()).count(),
        ours_points_meeting_target: rows
            .iter()
            .filter(|r| r.ours_meets_target == Some(true))
            .count(),
    }
}

/// The error-vs-load sweep: every PF and frequency of the grid on a finer
/// load axis, without harmonics.
fn error_vs_load() -> ErrorVsLoad {
    let mut points = Vec::new();
    for pf in PFS {
        for f in FREQS {
            for pct in SWEEP_LOADS_PCT {
                let r = grid_point(f, pf, pct, false);
                points.push(SweepPoint {
                    frequency_hz: f,
                    pf: pf.0,
                    load_pct: pct,
                    ours_err_pct: r.ours_err_pct,
                    baseline_err_pct: r.baseline_err_pct,
                });
            }
        }
    }
    ErrorVsLoad {
        loads_pct: SWEEP_LOADS_PCT.to_vec(),
        frequencies_hz: FREQS.to_vec(),
        pfs: PFS.iter().map(|p| p.0).collect(),
        points,
    }
}

/// Runs the grid, the error-vs-load sweep and the 1-hour energy profile.
pub fn run() -> AccuracyReport {
    let mut rows = Vec::new();
    for harmonics in [false, true] {
        for pf in PFS {
            for pct in LOADS_PCT {
                for f in FREQS {
                    rows.push(grid_point(f, pf, pct, harmonics));
                }
            }
        }
    }
    let summary = summarise(&rows);
    AccuracyReport {
        setup: format!(
            "{RATE} sample sets/s, {V_RMS} V, CT rating {RATING_A} A (120 % peaks at 1900 counts), \
             12-bit, noise sigma 1 count, DC wander 12 counts / 90 s, skew {:.0} us between \
             channels, CT lead {CT_LEAD_DEG} deg; harmonics = V 3 % 3rd + 2 % 5th, I 20 % 3rd + \
             10 % 5th. Ours: one {GRID_INTERVAL_S} s interval after a {GRID_INTERVAL_S} s warm-up. \
             Baseline: calcVI bursts (100 crossings) every {} s, first burst dropped, \
             phase_cal = 1 + (skew + lead at 50 Hz)/Ts = {:.3}. Truth: waveform's analytic \
             integration of the noiseless physical signals.",
            SKEW_S * 1e6,
            BURST_PERIOD_MS / 1000,
            1.0 + (SKEW_S + CT_LEAD_DEG / 360.0 / 50.0) * f64::from(RATE)
        ),
        rows,
        summary,
        energy_hour: energy_hour(),
        error_vs_load: error_vs_load(),
    }
}

fn target_cell(r: &Row) -> String {
    match (r.target_pct, r.ours_meets_target) {
        (Some(t), Some(true)) => format!("<= {t} ok"),
        (Some(t), _) => format!("<= {t} MISS"),
        _ => "-".to_string(),
    }
}

/// Prints the accuracy tables.
pub fn print(a: &AccuracyReport) {
    println!(
        "== Accuracy: real-power error vs analytic truth (new engine and calcVI port, same samples) =="
    );
    println!("   {}", a.setup);
    println!();
    println!(
        "  {:>5} {:>9} {:>6} {:>5} {:>11} {:>10} {:>11} {:>11}  target (ours)",
        "Hz", "PF", "load%", "harm", "truth W", "ours %", "calcVI %", "worst burst",
    );
    for r in &a.rows {
        println!(
            "  {:>5.0} {:>9} {:>6.0} {:>5} {:>11.1} {:>+10.3} {:>+11.3} {:>+11.3}  {}",
            r.frequency_hz,
            r.pf,
            r.load_pct,
            if r.harmonics { "yes" } else { "no" },
            r.truth_w,
            r.ours_err_pct,
            r.baseline_err_pct,
            r.baseline_worst_burst_pct,
            target_cell(r)
        );
    }
    let s = &a.summary;
    println!();
    println!("  worst |error| %               ours     calcVI   calcVI/ours");
    let line = |label: &str, o: f64, b: f64| {
        println!(
            "  {label:<28} {o:>7.3} {b:>10.3} {:>12.1}x",
            b / o.max(1e-9)
        );
    };
    line(
        "PF 1, 10-120 % of rating",
        s.pf1_10_120_ours_max_pct,
        s.pf1_10_120_baseline_max_pct,
    );
    line(
        "5 % of rating or PF 0.5",
        s.low_or_pf05_ours_max_pct,
        s.low_or_pf05_baseline_max_pct,
    );
    line("whole grid", s.all_ours_max_pct, s.all_baseline_max_pct);
    println!(
        "  ours meets its target at {}/{} targeted points (PF 1 10-120 %: <= {TARGET_PF1_PCT} %; 5 % or PF 0.5: <= {TARGET_LOW_PCT} %)",
        s.ours_points_meeting_target, s.targeted_points
    );
    let e = &a.energy_hour;
    println!();
    println!(
        "== Energy over a 1-hour varying load (LoadProfile::varying_hour seed {}, {} segments, 50 Hz with harmonics) ==",
        e.seed, e.segments
    );
    println!("  {:<40} {:>12} {:>10}", "", "Wh", "error %");
    println!(
        "  {:<40} {:>12.3} {:>10}",
        "truth import", e.truth_import_wh, ""
    );
    println!(
        "  {:<40} {:>12.3} {:>10}",
        "truth export", e.truth_export_wh, ""
    );
    println!("  {:<40} {:>12.3} {:>10}", "truth net", e.truth_net_wh, "");
    println!(
        "  {:<40} {:>12.3} {:>+10.3}",
        "ours import (registers)", e.ours_import_wh, e.ours_import_err_pct
    );
    println!(
        "  {:<40} {:>12.3} {:>+10.3}",
        "ours export (registers)", e.ours_export_wh, e.ours_export_err_pct
    );
    println!(
        "  {:<40} {:>12.3} {:>+10.3}",
        "ours net", e.ours_net_wh, e.ours_net_err_pct
    );
    println!(
        "  {:<40} {:>12.3} {:>+10.3}",
        "calcVI, 1 s burst every 5 s, P x time", e.baseline_5s_net_wh, e.baseline_5s_err_pct
    );
    println!(
        "  {:<40} {:>12.3} {:>+10.3}",
        "calcVI as shipped, 1 burst per hour", e.baseline_hourly_net_wh, e.baseline_hourly_err_pct
    );
    println!(
        "  ours within {} % (import, export and net): {}; |error| ratio calcVI/ours on net energy \
         (ours floored at {ENERGY_RESOLUTION_PCT} %): bursts every 5 s {:.0}x, hourly {:.0}x",
        e.target_pct,
        if e.ours_meets_target {
            "met"
        } else {
            "NOT met"
        },
        e.baseline_5s_vs_ours_ratio,
        e.baseline_hourly_vs_ours_ratio
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_engines_are_calibrated_for_skew_and_ct_lead() {
        // At PF 0.5 a wrong phase mapping (sign, units, skew left out) costs
        // whole percents; calibrated, both read within a few tenths at 50 Hz.
        let r = grid_point(50.0, PFS[1], 50.0, false);
        assert!(r.ours_err_pct.abs() < 0.2, "{r:?}");
        assert!(r.baseline_err_pct.abs() < 0.2, "{r:?}");
        assert!((r.truth_w - 5750.0).abs() < 5.0, "{r:?}");
        assert_eq!(r.target_pct, Some(TARGET_LOW_PCT));
    }

    #[test]
    fn targets_follow_the_issue() {
        let rows = [
            grid_point(50.0, PFS[0], 10.0, false),
            grid_point(50.0, PFS[2], 10.0, false),
        ];
        assert_eq!(rows[0].target_pct, Some(TARGET_PF1_PCT));
        assert_eq!(rows[1].target_pct, None);
        let s = summarise(&rows);
        assert_eq!(s.targeted_points, 1);
        assert!(s.all_ours_max_pct >= s.pf1_10_120_ours_max_pct);
    }
}
