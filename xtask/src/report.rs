//! `cargo xtask report [--json]`: every benchmark in one run → `docs/BENCHMARKS.md`.
//!
//! Runs each bench that exists in this checkout with `--json` (release
//! builds), captures the firmware size figures (`cargo xtask firmware`),
//! stores the outputs in `target/bench-report/`, and renders the document
//! with the `bench-report` binary of the `torture` crate (tables, machine
//! and date at the top, ours/baseline ratios from this same run). A bench
//! that does not exist yet or fails is reported as "not measured", never
//! filled in from another run.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

use crate::{cargo, describe, root, run as run_cmd};

/// (name in the report, package).
const BENCHES: [(&str, &str); 4] = [
    ("metering", "meter-bench"),
    ("store", "store-bench"),
    ("collect", "collect-bench"),
    ("sync", "sync-bench"),
];

fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("bench-report")
}

/// Runs all benches and writes `docs/BENCHMARKS.md`; with `json`, also
/// prints every figure as one JSON object on stdout.
pub fn run(json: bool) -> Result<()> {
    let dir = out_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, pkg) in BENCHES {
        let missing = dir.join(format!("{name}.missing"));
        if !root().join("crates").join(pkg).join("Cargo.toml").is_file() {
            std::fs::write(&missing, format!("package {pkg} does not exist yet"))?;
            continue;
        }
        let mut cmd = cargo();
        cmd.args(["run", "--release", "-q", "-p", pkg, "--", "--json"]);
        eprintln!("xtask: {}", describe(&cmd));
        match cmd.output() {
            Ok(o) if o.status.success() => {
                std::fs::write(dir.join(format!("{name}.json")), &o.stdout)?;
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let tail: Vec<&str> = err.lines().rev().take(5).collect();
                std::fs::write(
                    &missing,
                    format!("`{pkg} --json` failed ({}): {}", o.status, tail.join(" / ")),
                )?;
            }
            Err(e) => std::fs::write(&missing, format!("could not start cargo: {e}"))?,
        }
    }
    // Firmware image size and static RAM, as `cargo xtask firmware` prints them.
    let exe = std::env::current_exe().context("locating xtask")?;
    let mut fw = Command::new(exe);
    fw.arg("firmware").current_dir(root());
    match fw.output() {
        Ok(o) if o.status.success() => {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            std::fs::write(dir.join("firmware.txt"), text)?;
        }
        Ok(o) => std::fs::write(
            dir.join("firmware.missing"),
            format!("`cargo xtask firmware` failed ({})", o.status),
        )?,
        Err(e) => std::fs::write(dir.join("firmware.missing"), e.to_string())?,
    }
    let mut render = cargo();
    render
        .args([
            "run",
            "--release",
            "-q",
            "-p",
            "torture",
            "--bin",
            "bench-report",
            "--",
        ])
        .arg(&dir)
        .arg(root().join("docs/BENCHMARKS.md"));
    if json {
        render.arg("--json");
    }
    run_cmd(&mut render)
}
