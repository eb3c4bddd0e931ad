//! `meter-bench`: the metering benchmark (`cargo xtask bench metering`).
//!
//! Owns the comparison of the new integer engine (`metering`) with a faithful
//! port of the original firmware's f32 EmonLib `calcVI` (`baseline`), in one
//! run, as ratios:
//! - **accuracy**: real-power error over the `waveform` generator's grid, and
//!   energy over a 1-hour varying-load profile (the baseline in its burst
//!   pattern); truth is the generator's analytic value, never the code under test;
//! - **cost**: instructions per sample set on riscv32imc, counted exactly by
//!   QEMU (`bench/rv32`), the CPU share that implies on a 160 MHz ESP32-C3,
//!   and a disassembly check that the per-sample path calls no soft-float
//!   routine.
//!
//! `--check-softfloat` runs only the disassembly check (no QEMU needed) and
//! exits non-zero if it fails; `cargo xtask ci` runs it.

mod accuracy;
mod cost;
mod disasm;

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;

use cost::{CallSpread, Profile, SoftFloatCheck, UartReport};

/// Sample sets per second per channel assumed for the CPU share.
const CPU_SAMPLE_RATE_HZ: f64 = 4000.0;
/// ESP32-C3 core clock.
const CPU_HZ: f64 = 160e6;
/// Target: our instructions per sample set ≤ this share of the baseline's.
const RATIO_TARGET: f64 = 0.2;
/// Target: CPU share for 1 V + 3 CT at 4 kS/s, percent.
const CPU_TARGET_PCT: f64 = 2.0;

#[derive(Parser, Debug)]
#[command(
    name = "meter-bench",
    about = "Metering benchmark: new integer engine vs the original's f32 calcVI (accuracy and rv32imc cost)"
)]
struct Args {
    /// Print one JSON document with every figure instead of tables.
    #[arg(long)]
    json: bool,
    /// Which part to run.
    #[arg(long, value_enum, default_value_t = Section::All)]
    section: Section,
    /// Only check that the per-sample path calls no soft-float routine
    /// (builds the rv32 image, disassembles it; no QEMU). Exits 1 on failure.
    #[arg(long)]
    check_softfloat: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    Accuracy,
    Cost,
    All,
}

/// Every figure of one run.
#[derive(Serialize)]
struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    accuracy: Option<accuracy::AccuracyReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<CostReport>,
}

/// Cost figures for all profiles plus the soft-float check.
#[derive(Serialize)]
struct CostReport {
    /// How the CPU share is derived.
    assumptions: Assumptions,
    /// One entry per build profile; the first is the firmware's (opt-level "s").
    profiles: Vec<ProfileCost>,
    /// Soft-float check on the firmware-profile image.
    soft_float_check_passed: bool,
    soft_float_check: SoftFloatCheck,
}

#[derive(Serialize)]
struct Assumptions {
    sample_rate_hz_per_channel: f64,
    core_hz: f64,
    instructions_per_cycle: f64,
    note: &'static str,
}

/// Figures of one profile.
#[derive(Serialize)]
struct ProfileCost {
    profile: &'static str,
    opt_level: &'static str,
    /// Raw cases from the image (gross, loop and call included).
    cases: BTreeMap<String, CaseOut>,
    /// Loop + call overhead per sample set (the empty wrapper).
    overhead_per_set: f64,
    /// Single-call spreads (empty call subtracted): plain per-sample path
    /// (min/median) vs calls that also close a cycle (max).
    call_spread: BTreeMap<String, CallSpread>,
    /// Net instructions per sample set (overhead subtracted).
    net: BTreeMap<String, f64>,
    /// ours / baseline, net, 1 V + 1 CT.
    ratio_1v1ct: Option<f64>,
    /// ours / baseline (three calcVI), net, 1 V + 3 CT.
    ratio_1v3ct: Option<f64>,
    /// CPU share in percent for 1 V + 3 CT at 4 kS/s on 160 MHz (gross).
    cpu_share_1v3ct_pct: Option<f64>,
    /// Baseline's CPU share in percent if it sampled continuously (gross, 3 calcVI).
    baseline_cpu_share_1v3ct_pct: Option<f64>,
    ratio_target_met: Option<bool>,
    cpu_target_met: Option<bool>,
}

#[derive(Serialize)]
struct CaseOut {
    sets: u64,
    instructions: u64,
    per_set: f64,
}

fn cpu_pct(per_set: f64) -> f64 {
    per_set * CPU_SAMPLE_RATE_HZ / CPU_HZ * 100.0
}

fn profile_cost(profile: Profile, report: &UartReport) -> Result<ProfileCost> {
    let cases = &report.cases;
    let Some(empty) = cases.get("empty") else {
        bail!("the bench image reported no `empty` case");
    };
    let overhead = empty.per_set();
    let net: BTreeMap<String, f64> = cases
        .iter()
        .filter(|(n, _)| n.as_str() != "empty")
        .map(|(n, c)| (n.clone(), c.per_set() - overhead))
        .collect();
    let ratio = |ours: &str, base: &str| Some(net.get(ours)? / net.get(base)?);
    let ratio_1v1ct = ratio("ours_1v1ct", "baseline_1v1ct");
    let ratio_1v3ct = ratio("ours_1v3ct", "baseline_1v3ct");
    let cpu = cases.get("ours_1v3ct").map(|c| cpu_pct(c.per_set()));
    Ok(ProfileCost {
        profile: profile.name,
        opt_level: profile.opt_level,
        cases: cases
            .iter()
            .map(|(n, c)| {
                let out = CaseOut {
                    sets: c.sets,
                    instructions: c.instructions,
                    per_set: c.per_set(),
                };
                (n.clone(), out)
            })
            .collect(),
        overhead_per_set: overhead,
        call_spread: report
            .spreads
            .iter()
            .filter(|(n, _)| n.as_str() != "empty")
            .map(|(n, s)| (n.clone(), *s))
            .collect(),
        ratio_target_met: match (ratio_1v1ct, ratio_1v3ct) {
            (Some(a), Some(b)) => Some(a <= RATIO_TARGET && b <= RATIO_TARGET),
            _ => None,
        },
        cpu_target_met: cpu.map(|c| c <= CPU_TARGET_PCT),
        net,
        ratio_1v1ct,
        ratio_1v3ct,
        cpu_share_1v3ct_pct: cpu,
        baseline_cpu_share_1v3ct_pct: cases.get("baseline_1v3ct").map(|c| cpu_pct(c.per_set())),
    })
}

fn run_cost() -> Result<CostReport> {
    if !cost::qemu_available() {
        bail!(cost::qemu_missing_message());
    }
    let mut profiles = Vec::new();
    let mut check = None;
    for profile in [cost::FIRMWARE_PROFILE, cost::O3_PROFILE] {
        eprintln!(
            "meter-bench: building bench/rv32 ({}, opt-level {})",
            profile.name, profile.opt_level
        );
        let elf = cost::build_image(profile)?;
        if check.is_none() {
            check = Some(cost::check_soft_float(&elf)?);
        }
        eprintln!(
            "meter-bench: running {} under QEMU (-icount shift=0)",
            elf.display()
        );
        let out = cost::run_qemu(&elf, cost::QEMU_TIMEOUT)?;
        let report = cost::parse_uart(&out)?;
        profiles.push(profile_cost(profile, &report)?);
    }
    let Some(check) = check else {
        bail!("no profile was built");
    };
    Ok(CostReport {
        assumptions: Assumptions {
            sample_rate_hz_per_channel: CPU_SAMPLE_RATE_HZ,
            core_hz: CPU_HZ,
            instructions_per_cycle: 1.0,
            note: "CPU share = instructions per sample set x 4000 sets/s / 160e6 cycles/s, \
                   assuming ~1 instruction per cycle (ESP32-C3 is single-issue; loads, \
                   branches and flash cache misses make real cycles somewhat higher)",
        },
        profiles,
        soft_float_check_passed: check.passed(),
        soft_float_check: check,
    })
}

fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "n/a",
    }
}

/// Sample sets in one pass of the image's table (the spread is over one pass).
fn cost_table_sets() -> u32 {
    4000
}

fn case_label(name: &str) -> &str {
    match name {
        "ours_1v1ct" => "ours, 1 V + 1 CT (Meter::push)",
        "ours_1v3ct" => "ours, 1 V + 3 CT (Meter::push)",
        "baseline_1v1ct" => "baseline calcVI step, 1 V + 1 CT",
        "baseline_1v3ct" => "baseline, 3 x calcVI step",
        other => other,
    }
}

fn print_cost(c: &CostReport) {
    println!(
        "== Cost: instructions per sample set on riscv32imc (QEMU virt, -icount shift=0, minstret) =="
    );
    println!(
        "   same fixed input table for every case; net = gross minus the empty-call loop overhead"
    );
    for p in &c.profiles {
        println!();
        println!(
            "profile `{}` (opt-level {}), loop+call overhead {:.1}/set",
            p.profile, p.opt_level, p.overhead_per_set
        );
        println!("  {:<34} {:>12} {:>12}", "case", "gross/set", "net/set");
        for (name, case) in &p.cases {
            if name == "empty" {
                continue;
            }
            println!(
                "  {:<34} {:>12.1} {:>12}",
                case_label(name),
                case.per_set,
                fmt_opt(p.net.get(name).copied(), 1)
            );
        }
        for (name, s) in &p.call_spread {
            println!(
                "  {:<34} single calls: plain path {}-{}, with a cycle end up to {} ({} of {} calls)",
                case_label(name),
                s.min,
                s.median,
                s.max,
                s.heavy_calls,
                cost_table_sets()
            );
        }
        println!(
            "  ratio ours/baseline: 1V+1CT {}  1V+3CT {}  (target <= {:.2}: {})",
            fmt_opt(p.ratio_1v1ct, 3),
            fmt_opt(p.ratio_1v3ct, 3),
            RATIO_TARGET,
            yes_no(p.ratio_target_met)
        );
        println!(
            "  CPU share 1V+3CT @ 4 kS/s on 160 MHz: ours {} %  (target <= {CPU_TARGET_PCT} %: {}); baseline sampling continuously would need {} %",
            fmt_opt(p.cpu_share_1v3ct_pct, 3),
            yes_no(p.cpu_target_met),
            fmt_opt(p.baseline_cpu_share_1v3ct_pct, 1)
        );
    }
    println!();
    println!("  ({})", c.assumptions.note);
    println!();
    println!(
        "== Soft-float check (llvm-objdump call graph of the opt-level \"s\" image): {} ==",
        if c.soft_float_check_passed {
            "PASSED"
        } else {
            "FAILED"
        }
    );
    for line in c.soft_float_check.explain() {
        println!("  {line}");
    }
}

fn check_softfloat_only(json: bool) -> Result<bool> {
    let elf = cost::build_image(cost::FIRMWARE_PROFILE)?;
    let check = cost::check_soft_float(&elf)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "soft_float_check_passed": check.passed(),
                "soft_float_check": check,
            }))?
        );
    } else {
        println!(
            "soft-float check on {}: {}",
            elf.display(),
            if check.passed() { "PASSED" } else { "FAILED" }
        );
        for line in check.explain() {
            println!("  {line}");
        }
    }
    Ok(check.passed())
}

fn run(args: &Args) -> Result<bool> {
    if args.check_softfloat {
        return check_softfloat_only(args.json);
    }
    let want_acc = matches!(args.section, Section::Accuracy | Section::All);
    let want_cost = matches!(args.section, Section::Cost | Section::All);
    let accuracy = if want_acc {
        Some(accuracy::run())
    } else {
        None
    };
    if let (Some(a), false) = (&accuracy, args.json) {
        accuracy::print(a);
        println!();
    }
    let cost = if want_cost { Some(run_cost()?) } else { None };
    if let (Some(c), false) = (&cost, args.json) {
        print_cost(c);
    }
    let ok = cost.as_ref().is_none_or(|c| c.soft_float_check_passed);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Report { accuracy, cost })?
        );
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("meter-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
