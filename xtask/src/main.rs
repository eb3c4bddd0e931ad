//! Project automation: `cargo xtask ci`, `cargo xtask bench`, firmware builds.
//!
//! Everything CI does lives here, in Rust, so that `.ci/run` and a developer
//! at their desk run exactly the same steps. `ci` installs what a fresh
//! machine lacks (rustup targets, Debian packages) before it starts.

mod firmware;
mod report;
mod torture;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                 fmt, clippy, tests, no_std/riscv builds, soft-float check
  bench [--json]     every benchmark with its baseline, in one run;
                     writes docs/BENCHMARKS.md
  bench WHAT... [--json]
                     some benchmarks (metering, store, collect, sync,
                     firmware); partial report in <target>/bench-partial/
  torture [--long]   reliability and security campaign; writes
                     docs/RELIABILITY.md (short profile by default)
  firmware           build the ESP32-C3 image, check its flash and RAM budget
  install-deps       install the Debian packages and rustup targets CI needs
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        Some("install-deps") => install_deps(),
        Some("firmware") => firmware::run(),
        Some("torture") => torture::run(if args.iter().any(|a| a == "--long") {
            torture::Profile::Long
        } else {
            torture::Profile::Short
        }),
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown xtask `{other}`\n{USAGE}"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

const RISCV: &str = "riscv32imc-unknown-none-elf";

/// Debian packages the test suite and benches need, keyed by a program that
/// proves the package is there.
const DEBIAN_DEPS: &[(&str, &str)] = &[
    ("qemu-system-riscv32", "qemu-system-misc"),
    ("clang", "clang"),
    ("mosquitto", "mosquitto"),
    ("chromium", "chromium"),
];

fn have_program(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(name).is_file())
}

fn have_libclang() -> bool {
    [
        "/usr/lib/llvm-14/lib",
        "/usr/lib/llvm-15/lib",
        "/usr/lib/llvm-16/lib",
        "/usr/lib/x86_64-linux-gnu",
    ]
    .iter()
    .any(|d| {
        std::fs::read_dir(d).is_ok_and(|mut it| {
            it.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libclang")))
        })
    })
}

/// Installs missing rustup components/targets and Debian packages.
fn install_deps() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup not found: install Rust with rustup (https://rustup.rs)")?;
    if !String::from_utf8_lossy(&out.stdout).contains(RISCV) {
        run(Command::new("rustup").args(["target", "add", RISCV]))?;
    }
    let out = Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output()
        .context("rustup component list failed")?;
    if !String::from_utf8_lossy(&out.stdout).contains("llvm-tools") {
        run(Command::new("rustup").args(["component", "add", "llvm-tools"]))?;
    }
    let mut missing: Vec<&str> = DEBIAN_DEPS
        .iter()
        .filter(|(prog, _)| !have_program(prog))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !have_libclang() {
        missing.push("libclang-dev");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        bail!(
            "missing Debian packages: {}. Install them with `sudo apt-get install -y {}` and run again",
            missing.join(", "),
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing))?;
    Ok(())
}

fn ci() -> Result<()> {
    let started = std::time::Instant::now();
    install_deps()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The dashboard tests run the demo (a simulated fleet metering days of
    // history) and a real headless Chromium: release build, below.
    run(cargo().args(["test", "--workspace", "--exclude", "ui"]))?;
    run(cargo()
        .env("OFMON_DEMO_HISTORY_DAYS", "3")
        .args(["test", "--release", "-p", "ui"]))?;
    // The full power-cut campaign (10,000 cuts) runs in release: minutes in debug.
    run(cargo().args(["test", "--release", "-p", "store", "--test", "powercut"]))?;
    // The no_std crates must build for the chip.
    for krate in ["metering", "store", "protocol", "device"] {
        run(cargo().args(["build", "--release", "-p", krate, "--target", RISCV]))?;
    }
    // The per-sample metering path must call no soft-float routine on the chip.
    run(cargo().args([
        "run",
        "--release",
        "-q",
        "-p",
        "meter-bench",
        "--",
        "--check-softfloat",
    ]))?;
    // The real device: build, size-check and convert the firmware image.
    firmware::run()?;
    eprintln!("xtask: ci passed in {:.0?}", started.elapsed());
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    let json = args.iter().any(|a| a == "--json");
    let what: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    if what.is_empty() {
        report::run(json)
    } else {
        report::run_some(&what, json)
    }
}
