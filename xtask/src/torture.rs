//! `cargo xtask torture [--long]`: the reliability and security campaign.
//!
//! Builds `ofmon` and the `torture` campaign binary (debug for the short
//! profile, release for the long one), runs every campaign and writes
//! `docs/RELIABILITY.md` (generated, never hand-edited). The long profile
//! also builds the cargo-fuzz targets in `fuzz/` with nightly (installing
//! cargo-fuzz if missing) and runs all of them at the same time, each for 10
//! minutes of wall time; their per-target figures go in the same document.
//! The short profile is what `cargo test -p torture`
//! runs in CI; it needs no nightly.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

use crate::{cargo, root, run as run_cmd};

/// Which campaign profile to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// CI-sized: a couple of minutes in a debug build.
    Short,
    /// On demand: ≥ 10,000 power cuts, ≥ 200 kills, 10 minutes per fuzz target.
    Long,
}

/// The fuzz targets in `fuzz/`.
const FUZZ_TARGETS: [&str; 5] = [
    "record_decoder",
    "store_mount_read",
    "device_request",
    "firmware_manifest",
    "record_stream",
];

/// Seconds per fuzz target in the long profile.
const FUZZ_SECONDS: u64 = 600;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Runs the campaign and writes `docs/RELIABILITY.md`.
pub fn run(profile: Profile) -> Result<()> {
    let long = profile == Profile::Long;
    let mode: &[&str] = if long { &["--release"] } else { &[] };
    run_cmd(
        cargo()
            .args([
                "build", "-p", "ofmon", "-p", "torture", "--bin", "ofmon", "--bin", "torture",
            ])
            .args(mode),
    )?;
    let dir = target_dir().join(if long { "release" } else { "debug" });
    let ofmon = dir.join(format!("ofmon{}", std::env::consts::EXE_SUFFIX));
    let torture = dir.join(format!("torture{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = Command::new(&torture);
    cmd.current_dir(root())
        .arg(if long { "--long" } else { "--short" })
        .arg("--ofmon")
        .arg(&ofmon)
        .arg("--out")
        .arg(root().join("docs/RELIABILITY.md"))
        .arg("--json")
        .arg(target_dir().join("torture-report.json"));
    if long {
        let results = fuzz_all()?;
        cmd.arg("--fuzz-results").arg(results);
    }
    run_cmd(&mut cmd)
}

fn have_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds and runs every fuzz target; returns the results file for `torture`.
fn fuzz_all() -> Result<PathBuf> {
    if !have_cargo_fuzz() {
        eprintln!("xtask: installing cargo-fuzz");
        run_cmd(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    // Build every target first (one cargo invocation, so the five runs
    // below do not queue on the build lock and start together), then fuzz
    // all five at once: each still gets its own -max_total_time of wall
    // time, so the whole step takes ~10 minutes instead of ~50.
    eprintln!("xtask: building the fuzz targets");
    let built = Command::new("cargo")
        .current_dir(root())
        .args(["+nightly", "fuzz", "build"])
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("xtask: cargo fuzz build failed; each run reports why");
    }
    eprintln!(
        "xtask: fuzzing {} targets concurrently for {FUZZ_SECONDS} s each",
        FUZZ_TARGETS.len()
    );
    let results: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = FUZZ_TARGETS
            .iter()
            .map(|&t| (t, s.spawn(move || fuzz_one(t))))
            .collect();
        runs.into_iter()
            .map(|(t, h)| {
                h.join().unwrap_or_else(|_| {
                    format!(
                        r#"{{"target":"{t}","seconds":0,"runs":0,"crashes":0,"skipped":"runner thread panicked"}}"#
                    )
                })
            })
            .collect()
    });
    let path = target_dir().join("torture-fuzz.json");
    let json = format!("[{}]", results.join(","));
    std::fs::create_dir_all(target_dir())?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// One target: `{"target":..,"seconds":..,"runs":..,"crashes":..,"skipped":..}`.
fn fuzz_one(target: &str) -> String {
    eprintln!("xtask: fuzzing {target} for {FUZZ_SECONDS} s");
    let out = Command::new("cargo")
        .current_dir(root())
        .args(["+nightly", "fuzz", "run", target, "--"])
        .arg(format!("-max_total_time={FUZZ_SECONDS}"))
        .output();
    let skipped = |why: String| {
        format!(
            r#"{{"target":"{target}","seconds":0,"runs":0,"crashes":0,"skipped":{}}}"#,
            json_string(&why)
        )
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => return skipped(format!("could not start cargo fuzz: {e}")),
    };
    let err = String::from_utf8_lossy(&out.stderr);
    // libFuzzer ends with "Done N runs in S second(s)".
    let done = err.lines().rev().find_map(|l| {
        let rest = l.split("Done ").nth(1)?;
        let mut w = rest.split_whitespace();
        let runs: u64 = w.next()?.parse().ok()?;
        let secs: u64 = w.nth(2)?.parse().ok()?;
        Some((runs, secs))
    });
    let crashed = !out.status.success()
        && (err.contains("ERROR: libFuzzer")
            || err.contains("panicked")
            || err.contains("SUMMARY:"));
    match (done, crashed) {
        (_, true) => {
            format!(r#"{{"target":"{target}","seconds":0,"runs":0,"crashes":1,"skipped":null}}"#)
        }
        (Some((runs, secs)), false) => format!(
            r#"{{"target":"{target}","seconds":{secs},"runs":{runs},"crashes":0,"skipped":null}}"#
        ),
        (None, false) => {
            let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
            skipped(format!("no libFuzzer summary ({tail})"))
        }
    }
}

fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push(' '),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Fails unless `docs/RELIABILITY.md` exists (for `ci` after a short run).
#[allow(dead_code)]
pub fn check_generated() -> Result<()> {
    if !root().join("docs/RELIABILITY.md").is_file() {
        bail!("docs/RELIABILITY.md missing: run `cargo xtask torture`");
    }
    Ok(())
}
