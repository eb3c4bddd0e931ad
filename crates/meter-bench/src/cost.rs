//! Cost on the chip's instruction set: builds `bench/rv32` for
//! riscv32imc-unknown-none-elf, runs it under `qemu-system-riscv32` with exact
//! instruction counting, parses its UART report, and runs the soft-float
//! disassembly check on the same ELF.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::disasm::{Boundary, CallGraph, Closure, strip_hash};

/// The chip's target triple.
pub const RISCV: &str = "riscv32imc-unknown-none-elf";
/// QEMU binary for the chip's ISA.
pub const QEMU: &str = "qemu-system-riscv32";
/// How long one QEMU run may take before it is killed.
pub const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

/// A cargo profile of the bench image.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Profile {
    /// Cargo profile name in `bench/rv32/Cargo.toml`.
    pub name: &'static str,
    /// Its `opt-level`, for the report.
    pub opt_level: &'static str,
}

/// The firmware's profile (size-optimised): the headline figures.
pub const FIRMWARE_PROFILE: Profile = Profile {
    name: "release",
    opt_level: "s",
};
/// The same at opt-level 3.
pub const O3_PROFILE: Profile = Profile {
    name: "release-o3",
    opt_level: "3",
};

/// One measured case from the image's UART report.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Case {
    /// Sample sets pushed while counting.
    pub sets: u64,
    /// Instructions retired over them (`minstret` delta).
    pub instructions: u64,
}

impl Case {
    /// Instructions per sample set, call and loop overhead included.
    pub fn per_set(&self) -> f64 {
        self.instructions as f64 / self.sets as f64
    }
}

/// Spread of single-call costs over one pass (empty-call cost subtracted):
/// `min`/`median` are the plain per-sample path, `max` includes the
/// per-cycle (and, if one falls in the pass, per-interval) work.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CallSpread {
    /// Cheapest call.
    pub min: u64,
    /// Median call.
    pub median: u64,
    /// Dearest call.
    pub max: u64,
    /// Calls costing more than the median + 50 (cycle ends, interval closes).
    pub heavy_calls: u64,
}

/// Everything the image reports.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct UartReport {
    /// Totals per case.
    pub cases: BTreeMap<String, Case>,
    /// Per-call spreads per case (diagnostic).
    pub spreads: BTreeMap<String, CallSpread>,
}

/// The bench workspace, `bench/rv32` at the repository root.
pub fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/rv32")
}

/// Where the image is built: `<target dir>/rv32-bench`, next to this
/// workspace's own builds (honours `CARGO_TARGET_DIR`).
pub fn image_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    base.join("rv32-bench")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Settings meant for the host workspace must not leak into the image build.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Builds the bench image with `profile`; returns the ELF path.
pub fn build_image(profile: Profile) -> Result<PathBuf> {
    let dir = bench_dir();
    let target_dir = image_target_dir();
    let out = cargo()
        .current_dir(&dir)
        .args([
            "build",
            "--quiet",
            "--profile",
            profile.name,
            "--target",
            RISCV,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run cargo in {}", dir.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            format!("\nhint: install the target with `rustup target add {RISCV}`")
        } else {
            String::new()
        };
        bail!(
            "building the bench image in {} failed ({}):\n{stderr}{hint}",
            dir.display(),
            out.status
        );
    }
    let dir_name = if profile.name == "dev" {
        "debug"
    } else {
        profile.name
    };
    let elf = target_dir.join(RISCV).join(dir_name).join("rv32-bench");
    if !elf.is_file() {
        bail!("the bench build succeeded but {} is missing", elf.display());
    }
    Ok(elf)
}

/// Is `qemu-system-riscv32` on the PATH?
pub fn qemu_available() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The message printed when QEMU is missing.
pub fn qemu_missing_message() -> String {
    format!(
        "`{QEMU}` was not found: the cost bench runs the rv32imc image under QEMU.\n\
         Install it with `sudo apt-get install qemu-system-misc` (Debian/Ubuntu), \
         or `cargo xtask install-deps`, then run again."
    )
}

/// Runs the image under QEMU with exact instruction counting; returns its UART output.
pub fn run_qemu(elf: &Path, timeout: Duration) -> Result<String> {
    let mut child = Command::new(QEMU)
        .args([
            "-machine",
            "virt",
            "-cpu",
            "rv32,f=false,d=false,a=false,c=true",
            "-bios",
            "none",
            "-nographic",
            "-icount",
            "shift=0",
            "-kernel",
        ])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {QEMU}"))?;
    let mut stdout = child.stdout.take().context("qemu stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{QEMU} did not finish within {timeout:?}: the image hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!("{QEMU} exited with {status}; output:\n{out}{err}");
    }
    Ok(out)
}

/// Parses the image's `BENCH <name> <sets> <instructions>` and
/// `PROFILE <name> <min> <median> <max> <heavy>` lines; requires `DONE`.
pub fn parse_uart(out: &str) -> Result<UartReport> {
    let mut report = UartReport::default();
    let mut done = false;
    for line in out.lines() {
        let line = line.trim();
        if line.starts_with("TRAP") || line.starts_with("PANIC") {
            bail!("the bench image failed: {line}");
        }
        if line == "DONE" {
            done = true;
        }
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        if kind != "BENCH" && kind != "PROFILE" {
            continue;
        }
        let parts: Vec<&str> = rest.split_whitespace().collect();
        let Some((name, numbers)) = parts.split_first() else {
            bail!("malformed bench line `{line}`");
        };
        let numbers = numbers
            .iter()
            .map(|n| n.parse::<u64>())
            .collect::<Result<Vec<u64>, _>>()
            .with_context(|| format!("bad count in `{line}`"))?;
        match (kind, numbers.as_slice()) {
            ("BENCH", &[sets, instructions]) => {
                if sets == 0 {
                    bail!("no sample sets in `{line}`");
                }
                report
                    .cases
                    .insert(name.to_string(), Case { sets, instructions });
            }
            ("PROFILE", &[min, median, max, heavy_calls]) => {
                let spread = CallSpread {
                    min,
                    median,
                    max,
                    heavy_calls,
                };
                report.spreads.insert(name.to_string(), spread);
            }
            _ => bail!("malformed bench line `{line}`"),
        }
    }
    if !done {
        bail!("the bench image stopped before `DONE`; output:\n{out}");
    }
    Ok(report)
}

/// Finds `llvm-objdump` from rustup's `llvm-tools` component (or the PATH).
pub fn find_objdump() -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output();
    let host = Command::new(&rustc).arg("-vV").output();
    if let (Ok(sysroot), Ok(host)) = (sysroot, host) {
        let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
        let host = String::from_utf8_lossy(&host.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_string));
        if let Some(host) = host {
            let p = Path::new(&sysroot)
                .join("lib/rustlib")
                .join(host)
                .join("bin/llvm-objdump");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let on_path = Command::new("llvm-objdump")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return Ok(PathBuf::from("llvm-objdump"));
    }
    bail!("llvm-objdump not found: install it with `rustup component add llvm-tools`")
}

/// Symbols of the per-sample wrappers in the image whose closures must be
/// free of soft float (the new engine).
pub const INTEGER_ROOTS: &[&str] = &["bench_ours_1v1ct", "bench_ours_1v3ct"];
/// A wrapper whose closure must contain soft float (the f32 baseline): proves
/// the check can fail.
pub const FLOAT_ROOT: &str = "bench_baseline_1v1ct";

/// Result of the soft-float disassembly check on one image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoftFloatCheck {
    /// Closures of the new engine's per-sample wrappers.
    pub ours: Vec<Closure>,
    /// Closure of the baseline wrapper.
    pub baseline: Closure,
}

impl SoftFloatCheck {
    /// Passed: our closures are float-free and the baseline's is not.
    pub fn passed(&self) -> bool {
        self.ours.iter().all(Closure::is_float_free) && !self.baseline.soft_float.is_empty()
    }

    /// Human-readable lines explaining the outcome.
    pub fn explain(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for c in &self.ours {
            if c.is_float_free() {
                lines.push(format!(
                    "ok   {}: {} functions walked, {} static instructions, no soft-float call",
                    c.root,
                    c.functions.len() - c.boundaries.len(),
                    c.static_instructions
                ));
                for (name, why) in &c.boundaries {
                    let why = match why {
                        Boundary::Panic => "panic path (cold), not followed",
                        Boundary::PerInterval => {
                            "once-per-interval conversion (floats allowed), not followed"
                        }
                    };
                    lines.push(format!("       stops at {}: {why}", strip_hash(name)));
                }
            } else {
                lines.push(format!(
                    "FAIL {}: per-sample path is not integer-only",
                    c.root
                ));
                for (f, path) in &c.soft_float {
                    lines.push(format!("       calls {f} via {}", path.join(" -> ")));
                }
                for i in &c.indirect_calls {
                    lines.push(format!("       unresolvable indirect call: {i}"));
                }
            }
        }
        let b = &self.baseline;
        if b.soft_float.is_empty() {
            lines.push(format!(
                "FAIL {}: the f32 baseline shows no soft-float call, so the check is blind",
                b.root
            ));
        } else {
            let names: Vec<&str> = b
                .soft_float
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| n.starts_with("__"))
                .collect();
            lines.push(format!(
                "ok   {} (control): calls soft float as expected: {}",
                b.root,
                names.join(", ")
            ));
        }
        lines
    }
}

/// Disassembles `elf` and checks the per-sample closures.
pub fn check_soft_float(elf: &Path) -> Result<SoftFloatCheck> {
    let objdump = find_objdump()?;
    let out = Command::new(&objdump)
        .args(["-d", "-C", "--no-show-raw-insn"])
        .arg(elf)
        .output()
        .with_context(|| format!("could not run {}", objdump.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            objdump.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let graph = CallGraph::parse(&String::from_utf8_lossy(&out.stdout));
    let closure = |root: &str| {
        graph
            .closure(root)
            .with_context(|| format!("symbol `{root}` is not in {}", elf.display()))
    };
    let ours = INTEGER_ROOTS
        .iter()
        .map(|r| closure(r))
        .collect::<Result<Vec<_>>>()?;
    let baseline = closure(FLOAT_ROOT)?;
    Ok(SoftFloatCheck { ours, baseline })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_complete_report() {
        let out = "rv32-bench: 4000 sample sets per pass\nBENCH empty 8000 48000\n\
                   BENCH baseline_1v1ct 8000 10544000\nPROFILE ours_1v1ct 221 223 6624 50\nDONE\n";
        let report = parse_uart(out).unwrap();
        let cases = &report.cases;
        assert_eq!(cases.len(), 2);
        assert_eq!(cases["empty"].per_set(), 6.0);
        assert_eq!(cases["baseline_1v1ct"].per_set(), 1318.0);
        assert_eq!(report.spreads["ours_1v1ct"].max, 6624);
        assert_eq!(report.spreads["ours_1v1ct"].heavy_calls, 50);
    }

    #[test]
    fn refuses_truncated_or_failed_runs() {
        assert!(parse_uart("BENCH empty 10 60\n").is_err());
        assert!(parse_uart("BENCH empty 10 60\nTRAP mcause=0x2 mepc=0x80000010\n").is_err());
        assert!(parse_uart("BENCH empty ten 60\nDONE\n").is_err());
        assert!(parse_uart("BENCH empty 0 60\nDONE\n").is_err());
        assert!(parse_uart("BENCH empty 10\nDONE\n").is_err());
        assert!(parse_uart("PROFILE x 1 2 3\nDONE\n").is_err());
    }
}
