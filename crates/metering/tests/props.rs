//! Invariants under arbitrary input, and DC-step settling.

mod common;

use common::*;
use metering::{Config, Layout, Meter};
use proptest::prelude::*;
use waveform::Load;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any stream (garbage included) never panics, intervals tile the stream
    /// and the per-interval deltas add up to the registers exactly.
    #[test]
    fn arbitrary_stream_keeps_invariants(
        layout in prop_oneof![
            (1u8..=3).prop_map(|cts| Layout::SinglePhase { cts }),
            Just(Layout::ThreePhase),
            Just(Layout::ThreePhaseVirtual),
        ],
        seed in any::<u64>(),
        len in 0usize..6000,
        amp in 0u32..2100,
        wild in any::<bool>(),
    ) {
        let mut cfg = Config::new(2000, layout);
        cfg.interval_samples = 250;
        let mut m = Meter::new(cfg).unwrap();
        let n = cfg.channel_count();
        let mut rng = waveform::Rng::new(seed);
        let mut ivs = Vec::new();
        let mut set = [0u16; 6];
        for k in 0..len {
            for (c, x) in set[..n].iter_mut().enumerate() {
                *x = if wild {
                    rng.next_u64() as u16
                } else {
                    let ph = k as f64 * 0.157 + c as f64;
                    (2048.0 + amp as f64 * ph.sin() + rng.range(-3.0, 3.0)) as u16
                };
            }
            ivs.extend(m.push(&set[..n]));
        }
        ivs.extend(m.finish());
        let mut next = 0u64;
        let mut imp = [0u64; 3];
        let mut exp = [0u64; 3];
        for iv in &ivs {
            prop_assert_eq!(iv.start_sample, next);
            next += iv.samples as u64;
            for ct in 0..iv.n_circuits as usize {
                imp[ct] += iv.circuits[ct].import_uwh;
                exp[ct] += iv.circuits[ct].export_uwh;
                prop_assert!(iv.circuits[ct].power_factor.abs() <= 1.0);
                prop_assert!(iv.circuits[ct].i_rms >= 0.0);
            }
        }
        prop_assert_eq!(next, len as u64);
        prop_assert_eq!(imp, m.registers().import_uwh);
        prop_assert_eq!(exp, m.registers().export_uwh);
    }
}

/// A sudden DC shift on every channel (e.g. a supply glitch) costs at most
/// the cycle it happens in: the interval holding it is still within 0.5 %.
#[test]
fn dc_step_settles_within_a_cycle() {
    let sc = realistic(50.0, 230.0, Load::new(60.0, 30.0), 77);
    let cfg = config_for(&sc, 1.0);
    let mut m = Meter::new(cfg).unwrap();
    let mut g = sc.generator();
    let mut set = [0u16; 6];
    let step_at = (2.437 * sc.sample_rate_hz) as u64;
    let mut ivs = Vec::new();
    for k in 0..(5 * 4000) {
        g.next_set(&mut set);
        if k >= step_at {
            set[0] = (set[0] + 180).min(4095);
            set[1] = set[1].saturating_sub(140);
        }
        ivs.extend(m.push(&set[..2]));
    }
    for iv in &ivs[1..] {
        let t = truth_of(&sc, iv);
        let ep = rel_pct(iv.circuits[0].real_power_w as f64, t.real_power_w[0]);
        let ev = rel_pct(iv.voltages[0].rms as f64, t.v_rms[0]);
        println!("interval @{}: P {ep:+.3}% V {ev:+.3}%", iv.start_sample);
        assert!(ep.abs() < 0.5, "P {ep}");
        assert!(ev.abs() < 0.5, "V {ev}");
    }
}
