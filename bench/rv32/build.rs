//! Links with `link.x` and generates the fixed input table: one second of
//! 1 V + 3 CT sample sets at 4 kS/s (exactly 50 cycles of 50 Hz, so the table
//! repeats seamlessly), 12-bit counts with harmonics and deterministic noise.
//! Soft-float cost depends on the values, so both engines see this same table.

use std::f64::consts::PI;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Sample sets in the table (1 s at 4 kS/s).
const SETS: usize = 4000;
const RATE: f64 = 4000.0;
const MAINS_HZ: f64 = 50.0;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rustc-link-search={}", manifest.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-changed=link.x");
    println!("cargo:rerun-if-changed=build.rs");

    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut noise = move || {
        // xorshift64*: deterministic, uniform in [-4, 4) counts.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        let x = rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 40) as f64 / (1u64 << 24) as f64) * 8.0 - 4.0
    };
    // (amplitude counts, lag radians, 3rd harmonic share, 5th harmonic share)
    let channels: [(f64, f64, f64, f64); 4] = [
        (1300.0, 0.0, 0.03, 0.01),     // voltage
        (900.0, PI / 6.0, 0.10, 0.05), // CT1: PF ~0.87 lagging, harmonics
        (300.0, 0.0, 0.0, 0.0),        // CT2: resistive, light
        (1500.0, -0.6435, 0.05, 0.02), // CT3: PF 0.8 leading
    ];
    let mut out = String::from("[\n");
    for n in 0..SETS {
        let w = 2.0 * PI * MAINS_HZ * n as f64 / RATE;
        out.push_str("    [");
        for (amp, lag, h3, h5) in channels {
            let x = 2048.0
                + amp
                    * ((w - lag).sin()
                        + h3 * (3.0 * (w - lag)).sin()
                        + h5 * (5.0 * (w - lag)).sin())
                + noise();
            let count = x.round().clamp(0.0, 4095.0) as u16;
            let _ = write!(out, "{count}, ");
        }
        out.push_str("],\n");
    }
    out.push_str("]\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("samples.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("cannot write {}: {e}", dest.display());
    }
}
