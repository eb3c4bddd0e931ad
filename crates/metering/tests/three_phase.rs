//! Three-phase layouts: three real voltages, and one voltage with virtual
//! 120°/240° phases.

mod common;

use common::*;
use waveform::{Load, LoadProfile, Wiring};

fn check(wiring: Wiring, freq: f64, seed: u64) {
    let mut sc = realistic(freq, 230.0, Load::OFF, seed);
    sc.wiring = wiring;
    sc.loads = vec![
        LoadProfile::constant(Load::new(50.0, 0.0)),
        LoadProfile::constant(Load::new(30.0, 60.0)),
        LoadProfile::constant(Load::new(80.0, -36.87)),
    ];
    let cfg = config_for(&sc, 2.0);
    let (_, ivs) = run(&sc, cfg, 4.05);
    let iv = &ivs[1];
    let t = truth_of(&sc, iv);
    assert_eq!(iv.n_circuits, 3);
    assert_eq!(iv.n_voltages as usize, wiring.voltages());
    for ct in 0..3 {
        let c = &iv.circuits[ct];
        let ep = rel_pct(c.real_power_w as f64, t.real_power_w[ct]);
        let ei = rel_pct(c.i_rms as f64, t.i_rms[ct]);
        let epf = c.power_factor as f64 - t.real_power_w[ct] / t.apparent_power_va[ct];
        println!("{wiring:?} {freq} Hz ct{ct}: P {ep:+.3}% I {ei:+.3}% PF {epf:+.4}");
        let limit = if ct == 1 { 1.0 } else { 0.5 };
        assert!(ep.abs() < limit, "{wiring:?} {freq} Hz ct{ct}: P {ep}");
        assert!(ei.abs() < 0.5);
        assert!(epf.abs() < 0.005);
        let de = c.import_uwh as f64 * 1e-6;
        assert!(rel_pct(de, t.import_wh[ct]).abs() < 0.5);
    }
    for p in 0..wiring.voltages() {
        assert!(rel_pct(iv.voltages[p].rms as f64, t.v_rms[p]).abs() < 0.3);
    }
}

#[test]
fn three_voltages() {
    for (k, f) in [45.0, 50.0, 55.0].into_iter().enumerate() {
        check(Wiring::ThreePhase, f, 40 + k as u64);
    }
}

#[test]
fn one_voltage_virtual_phases_track_frequency() {
    for (k, f) in [45.0, 50.0, 55.0, 60.0].into_iter().enumerate() {
        check(Wiring::ThreePhaseVirtual, f, 50 + k as u64);
    }
}
