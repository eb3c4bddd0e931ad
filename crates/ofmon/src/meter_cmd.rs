//! `ofmon meter`: the metering engine over a recorded capture, one JSON line
//! per interval on stdout.

use crate::capture::{Capture, CaptureError};
use clap::Args;
use metering::{Config, Interval, Layout, MAX_CIRCUITS, Meter};
use serde_json::{Value, json};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for bad input (the capture or the flags).
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Args, Debug)]
pub struct MeterArgs {
    /// Capture file: CSV with a header row naming the channels (`v` or
    /// `v1,v2,v3`, then `i1`..`i3`), one row of raw ADC counts (0..4095) per sample.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Sample sets per second (each channel is sampled once per set).
    #[arg(long, value_name = "HZ")]
    rate: f64,
    /// 1: single phase, each CT its own circuit on `v`. 3: three-phase (with
    /// `v1,v2,v3`, or with one `v` and virtual 120°/240° voltages).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    phases: u8,
    /// Volts per ADC count after DC removal (one value, or one per voltage channel).
    #[arg(
        long,
        value_name = "VOLTS_PER_COUNT",
        value_delimiter = ',',
        default_value = "1.0"
    )]
    v_scale: Vec<f32>,
    /// Amps per ADC count after DC removal (one value for all CTs, or one per CT).
    #[arg(
        long,
        value_name = "A_PER_COUNT",
        value_delimiter = ',',
        default_value = "1.0"
    )]
    i_scale: Vec<f32>,
    /// Per-CT phase correction in degrees (one value for all CTs, or one per CT).
    #[arg(
        long,
        value_name = "DEG",
        value_delimiter = ',',
        default_value = "0",
        allow_negative_numbers = true
    )]
    phase_deg: Vec<f32>,
    /// Interval length in seconds.
    #[arg(long, value_name = "N", default_value_t = 60.0)]
    interval_s: f64,
}

/// Runs the command; every failure is one line on stderr and exit code 2.
pub fn run(args: &MeterArgs) -> ExitCode {
    match meter(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Expands a flag's values to one per channel: a single value applies to all.
fn per_channel(flag: &str, values: &[f32], n: usize) -> Result<[f32; MAX_CIRCUITS], String> {
    let mut out = [0.0f32; MAX_CIRCUITS];
    match values.len() {
        1 => out[..n].fill(values[0]),
        k if k == n => out[..n].copy_from_slice(values),
        k => {
            return Err(format!(
                "--{flag} has {k} values but the capture has {n} channels for it; give one value or {n}"
            ));
        }
    }
    if let Some(bad) = out[..n].iter().find(|v| !v.is_finite()) {
        return Err(format!("--{flag}: {bad} is not a number"));
    }
    Ok(out)
}

fn meter(args: &MeterArgs) -> Result<(), String> {
    if !(args.rate.is_finite() && args.rate >= 1.0) {
        return Err(format!(
            "--rate {}: the sample rate must be a positive number of Hz",
            args.rate
        ));
    }
    if args.rate.fract() != 0.0 {
        return Err(format!(
            "--rate {}: the sample rate must be a whole number of Hz",
            args.rate
        ));
    }
    let rate = args.rate as u32;
    if !(args.interval_s.is_finite() && args.interval_s > 0.0) {
        return Err(format!(
            "--interval-s {}: must be a positive number of seconds",
            args.interval_s
        ));
    }
    let file = File::open(&args.input)
        .map_err(|e| format!("cannot open {}: {e}", args.input.display()))?;
    let mut capture = Capture::open(BufReader::with_capacity(1 << 20, file))
        .map_err(|e| format!("{}: {e}", args.input.display()))?;

    let layout = match (args.phases, capture.voltages, capture.currents) {
        (1, 1, n) => Layout::SinglePhase { cts: n },
        (1, 3, _) => {
            return Err(
                "the capture has v1,v2,v3: use --phases 3 for a three-phase capture".into(),
            );
        }
        (3, v, 3) => {
            if v == 3 {
                Layout::ThreePhase
            } else {
                Layout::ThreePhaseVirtual
            }
        }
        (3, _, n) => {
            return Err(format!(
                "--phases 3 needs three CT columns i1,i2,i3; the capture has {n}"
            ));
        }
        (p, _, _) => return Err(format!("--phases {p}: use 1 or 3")),
    };
    let mut cfg = Config::new(rate, layout);
    let interval = (args.interval_s * f64::from(rate)).round();
    if interval > f64::from(u32::MAX) {
        return Err(format!("--interval-s {} is too long", args.interval_s));
    }
    cfg.interval_samples = interval as u32;
    let nv = layout.voltages();
    let nc = layout.circuits();
    let v = per_channel("v-scale", &args.v_scale, nv)?;
    cfg.cal.v_gain = v;
    cfg.cal.i_gain = per_channel("i-scale", &args.i_scale, nc)?;
    cfg.cal.phase_deg = per_channel("phase-deg", &args.phase_deg, nc)?;
    let mut meter =
        Meter::new(cfg).map_err(|e| format!("cannot meter with these settings: {e}"))?;

    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut set = vec![0u16; capture.width()];
    let mut any = false;
    let emit = |iv: &Interval, out: &mut BufWriter<_>| -> Result<(), String> {
        let line = interval_json(iv, rate, layout);
        writeln!(out, "{line}").map_err(|e| format!("cannot write output: {e}"))
    };
    loop {
        let more = capture
            .next_set(&mut set)
            .map_err(|e| format!("{}: {e}", args.input.display()))?;
        if !more {
            break;
        }
        any = true;
        if let Some(iv) = meter.push(&set) {
            emit(&iv, &mut out)?;
        }
    }
    if !any {
        return Err(format!(
            "{}: {}",
            args.input.display(),
            CaptureError::NoSamples
        ));
    }
    if let Some(iv) = meter.finish() {
        emit(&iv, &mut out)?;
    }
    out.flush().map_err(|e| format!("cannot write output: {e}"))
}

fn round(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    let r = (x * p).round() / p;
    if r == 0.0 { 0.0 } else { r }
}

fn interval_json(iv: &Interval, rate: u32, layout: Layout) -> Value {
    let vnames: &[&str] = if layout.voltages() == 1 {
        &["v"]
    } else {
        &["v1", "v2", "v3"]
    };
    let voltage: Vec<Value> = (0..usize::from(iv.n_voltages))
        .map(|ch| {
            let s = &iv.voltages[ch];
            json!({
                "ch": vnames.get(ch).copied().unwrap_or("v"),
                "rms": round(f64::from(s.rms), 3),
                "min": round(f64::from(s.min), 3),
                "max": round(f64::from(s.max), 3),
            })
        })
        .collect();
    let circuits: Vec<Value> = (0..usize::from(iv.n_circuits))
        .map(|ct| {
            let c = &iv.circuits[ct];
            json!({
                "ch": format!("i{}", ct + 1),
                "i_rms": round(f64::from(c.i_rms), 4),
                "real_power_w": round(f64::from(c.real_power_w), 3),
                "apparent_power_va": round(f64::from(c.apparent_power_va), 3),
                "power_factor": round(f64::from(c.power_factor), 4),
                "import_wh": round(iv.registers.import_uwh[ct] as f64 * 1e-6, 6),
                "export_wh": round(iv.registers.export_uwh[ct] as f64 * 1e-6, 6),
            })
        })
        .collect();
    let mut obj = json!({
        "start_s": round(iv.start_s(rate), 6),
        "duration_s": round(iv.duration_s(rate), 6),
        "frequency_hz": round(f64::from(iv.frequency_hz), 4),
        "voltage": voltage,
        "circuits": circuits,
    });
    if iv.partial
        && let Some(map) = obj.as_object_mut()
    {
        map.insert("partial".into(), Value::Bool(true));
    }
    obj
}
