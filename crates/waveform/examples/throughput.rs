//! Measures generator throughput: `cargo run --release -p waveform --example throughput`.

use std::time::Instant;
use waveform::{Harmonic, Load, LoadProfile, Mains, Scenario, Wiring};

fn main() {
    let mut mains = Mains::new(50.0, 230.0);
    mains.drift_hz = 0.1;
    mains.harmonics = vec![Harmonic::new(3, 0.05, 0.0)];
    let mut sc = Scenario::single(4000.0, mains, Load::new(10.0, 20.0));
    sc.wiring = Wiring::SinglePhase { cts: 3 };
    sc.loads = vec![LoadProfile::varying_hour(1, 100.0); 3];
    sc.adc.noise_sigma = 2.0;
    sc.adc.offset_wander_counts = 10.0;
    let mut g = sc.generator();
    let mut buf = vec![0u16; 4 * 4096];
    let sets = 2_000_000u64;
    let t = Instant::now();
    let mut done = 0u64;
    let mut check = 0u64;
    while done < sets {
        done += g.fill(&mut buf) as u64;
        check = check.wrapping_add(buf[7] as u64);
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "1 V + 3 CT, noise, drift, wander: {:.1} M channel-samples/s ({:.1} M sets/s) [{check}]",
        done as f64 * 4.0 / s / 1e6,
        done as f64 / s / 1e6
    );
}
