//! Energy registers: accuracy over a varying hour, exactness of the integer
//! bookkeeping, restore after a "power cut", runtime recalibration,
//! and the no-load gate.

mod common;

use common::*;
use metering::{Config, Layout, Meter, Registers};
use waveform::{Load, LoadProfile, Scenario, Wiring};

#[test]
fn one_hour_varying_load_energy_within_half_percent() {
    let mut sc = realistic(50.0, 230.0, Load::OFF, 21);
    sc.sample_rate_hz = 3200.0;
    sc.mains.drift_hz = 0.3;
    sc.mains.drift_period_s = 600.0;
    sc.loads = vec![LoadProfile::varying_hour(21, RATING_A)];
    let cfg = config_for(&sc, 60.0);
    let (meter, ivs) = run(&sc, cfg, 3600.0);
    assert!(ivs.len() >= 59);
    let end = meter.samples_metered() as f64 / sc.sample_rate_hz;
    let t = sc.truth(0.0, end);
    let r = meter.registers();
    let imp = r.import_wh(0);
    let exp = r.export_wh(0);
    let e_imp = rel_pct(imp, t.import_wh[0]);
    let e_exp = rel_pct(exp, t.export_wh[0]);
    let e_net = rel_pct(imp - exp, t.net_wh(0));
    println!(
        "1 h varying: import {imp:.3} Wh (truth {:.3}, {e_imp:+.3}%), export {exp:.3} Wh (truth {:.3}, {e_exp:+.3}%), net {e_net:+.3}%",
        t.import_wh[0], t.export_wh[0]
    );
    assert!(e_imp.abs() < 0.5);
    assert!(e_exp.abs() < 0.5);
    assert!(e_net.abs() < 0.5);
    // Interval deltas add up to the register exactly and intervals tile.
    let mut sum_i = 0u64;
    let mut sum_e = 0u64;
    let mut next = 0u64;
    for iv in &ivs {
        assert_eq!(iv.start_sample, next);
        next += iv.samples as u64;
        sum_i += iv.circuits[0].import_uwh;
        sum_e += iv.circuits[0].export_uwh;
        assert_eq!(iv.registers.import_uwh[0], sum_i);
        assert_eq!(iv.registers.export_uwh[0], sum_e);
    }
}

fn three_ct_scenario(seed: u64) -> Scenario {
    let mut sc = realistic(50.0, 230.0, Load::OFF, seed);
    sc.wiring = Wiring::SinglePhase { cts: 3 };
    sc.loads = vec![
        LoadProfile::step(Load::new(20.0, 10.0), 3.3, Load::new(60.0, -20.0)),
        LoadProfile::constant(Load::new(35.0, 175.0)), // exporting
        LoadProfile::step(Load::new(5.0, 60.0), 1.7, Load::new(0.0, 0.0)),
    ];
    sc
}

#[test]
fn restore_registers_continues_exactly() {
    let sc = three_ct_scenario(4);
    let cfg = config_for(&sc, 1.0);
    let n = (8.0 * sc.sample_rate_hz) as u64;
    let cut = n / 3 + 17;

    // Reference: one meter over the whole stream.
    let mut whole = Meter::new(cfg).unwrap();
    let mut g = sc.generator();
    let mut set = [0u16; 6];
    for _ in 0..n {
        g.next_set(&mut set);
        whole.push(&set);
    }
    whole.finish();

    // A meter that "loses power" at `cut`: its registers are persisted at
    // the last interval, a fresh meter restores them and meters the rest.
    let mut a = Meter::new(cfg).unwrap();
    let mut g = sc.generator();
    let mut saved = Registers::default();
    for _ in 0..cut {
        g.next_set(&mut set);
        if let Some(iv) = a.push(&set) {
            saved = iv.registers;
        }
    }
    let mut b = Meter::new(cfg).unwrap();
    b.restore_registers(saved);
    assert_eq!(b.registers(), saved);
    let mut lost = a.clone();
    let lost_tail = lost.finish().map(|iv| iv.registers).unwrap_or(saved);
    for _ in cut..n {
        g.next_set(&mut set);
        b.push(&set);
    }
    b.finish();
    for ct in 0..3 {
        let w = whole.registers();
        let r = b.registers();
        // Monotonic and at least what was saved.
        assert!(r.import_uwh[ct] >= saved.import_uwh[ct]);
        assert!(r.export_uwh[ct] >= saved.export_uwh[ct]);
        // Only the unsaved stretch before the cut is missing.
        let missing_i = lost_tail.import_uwh[ct] - saved.import_uwh[ct];
        let diff = w.import_uwh[ct] as i64 - r.import_uwh[ct] as i64 - missing_i as i64;
        let tol = (w.import_uwh[ct] / 500).max(10) as i64; // re-sync of one cycle
        assert!(diff.abs() <= tol, "ct{ct}: {diff} µWh (tol {tol})");
    }
    // CT2 exports, CT1 imports (first load) and both directions are kept apart.
    assert!(b.registers().export_uwh[1] > 0 && b.registers().import_uwh[1] == 0);
}

#[test]
fn deltas_sum_to_registers_with_three_circuits() {
    let sc = three_ct_scenario(9);
    let cfg = config_for(&sc, 0.5);
    let (mut meter, mut ivs) = run(&sc, cfg, 5.3);
    ivs.extend(meter.finish());
    assert!(ivs.last().unwrap().partial);
    let mut sum = Registers::default();
    for iv in &ivs {
        for ct in 0..3 {
            sum.import_uwh[ct] += iv.circuits[ct].import_uwh;
            sum.export_uwh[ct] += iv.circuits[ct].export_uwh;
        }
    }
    let r = meter.registers();
    assert_eq!(sum.import_uwh, r.import_uwh);
    assert_eq!(sum.export_uwh, r.export_uwh);
    let total: u64 = ivs.iter().map(|iv| iv.samples as u64).sum();
    assert_eq!(total, (5.3 * sc.sample_rate_hz) as u64);
    // CT3 is off after 1.7 s: its later intervals read exactly zero.
    let late = ivs
        .iter()
        .find(|iv| iv.start_sample as f64 / sc.sample_rate_hz > 2.0)
        .unwrap();
    assert_eq!(late.circuits[2].i_rms, 0.0);
    assert_eq!(late.circuits[2].real_power_w, 0.0);
    assert_eq!(late.circuits[2].import_uwh, 0);
}

#[test]
fn no_ct_plugged_reads_exactly_zero() {
    for sigma in [2.0, 3.0] {
        let mut sc = realistic(50.0, 230.0, Load::OFF, 33);
        sc.wiring = Wiring::SinglePhase { cts: 3 };
        sc.loads = vec![LoadProfile::constant(Load::OFF); 3];
        sc.adc.noise_sigma = sigma;
        let cfg = config_for(&sc, 1.0);
        let (meter, ivs) = run(&sc, cfg, 5.0);
        assert!(ivs.len() >= 4);
        for iv in &ivs {
            assert!(iv.voltages[0].rms > 225.0);
            for c in &iv.circuits[..3] {
                assert_eq!(c.i_rms, 0.0);
                assert_eq!(c.real_power_w, 0.0);
                assert_eq!(c.apparent_power_va, 0.0);
                assert_eq!(c.power_factor, 0.0);
            }
        }
        assert_eq!(meter.registers(), Registers::default());
    }
}

#[test]
fn recalibration_keeps_registers_and_applies_new_gain() {
    let sc = realistic(50.0, 230.0, Load::new(40.0, 0.0), 8);
    let cfg = config_for(&sc, 1.0);
    let mut m = Meter::new(cfg).unwrap();
    let mut g = sc.generator();
    let mut set = [0u16; 6];
    let mut ivs = Vec::new();
    for k in 0..(6 * 4000) {
        if k == 3 * 4000 {
            let before = m.registers();
            let mut cal = cfg.cal;
            cal.i_gain[0] *= 2.0;
            m.set_calibration(cal).unwrap();
            assert_eq!(m.registers(), before);
        }
        g.next_set(&mut set);
        ivs.extend(m.push(&set));
    }
    let p_before = ivs[1].circuits[0].real_power_w;
    let p_after = ivs[4].circuits[0].real_power_w;
    assert!(
        (p_after / p_before - 2.0).abs() < 0.01,
        "{p_before} -> {p_after}"
    );
    let mut bad = cfg.cal;
    bad.v_gain[0] = -1.0;
    assert!(m.set_calibration(bad).is_err());
}

#[test]
fn config_validation() {
    let ok = Config::new(4000, Layout::SinglePhase { cts: 2 });
    assert_eq!(ok.channel_count(), 3);
    assert!(Meter::new(ok).is_ok());
    assert_eq!(Config::new(4000, Layout::ThreePhase).channel_count(), 6);
    assert_eq!(
        Config::new(4000, Layout::ThreePhaseVirtual).channel_count(),
        4
    );
    for bad in [
        Config::new(100, Layout::SinglePhase { cts: 1 }),
        Config::new(4000, Layout::SinglePhase { cts: 0 }),
        Config::new(4000, Layout::SinglePhase { cts: 4 }),
        Config {
            interval_samples: 10,
            ..ok
        },
        Config {
            nominal_hz: 0,
            ..ok
        },
    ] {
        assert!(Meter::new(bad).is_err(), "{bad:?}");
    }
    let mut big_phase = ok;
    big_phase.cal.phase_deg[0] = 60.0;
    assert!(Meter::new(big_phase).is_err());
    // Short sample sets are refused, not a panic.
    let mut m = Meter::new(ok).unwrap();
    assert!(m.push(&[2048]).is_none());
}
