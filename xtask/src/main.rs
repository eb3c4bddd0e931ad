//! Project automation: `cargo xtask ci`, `cargo xtask bench`, firmware builds.
//!
//! Everything CI does is here, in Rust, so that `.ci/run` and a developer run
//! exactly the same steps.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("help") | None => {
            println!("usage: cargo xtask <ci>");
            Ok(())
        }
        Some(other) => bail!("unknown xtask `{other}`; try `cargo xtask help`"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

const RISCV: &str = "riscv32imc-unknown-none-elf";

/// Installs the bare-metal RISC-V target if rustup does not have it yet.
fn ensure_riscv_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup not found: install Rust with rustup (https://rustup.rs)")?;
    if !String::from_utf8_lossy(&out.stdout).contains(RISCV) {
        run(Command::new("rustup").args(["target", "add", RISCV]))?;
    }
    Ok(())
}

fn ci() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args(["test", "--workspace"]))?;
    ensure_riscv_target()?;
    run(cargo().args(["build", "--release", "-p", "metering", "--target", RISCV]))?;
    eprintln!("xtask: ci passed");
    Ok(())
}
