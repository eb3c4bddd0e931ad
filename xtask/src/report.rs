//! `cargo xtask bench [WHAT...] [--json]`: benchmarks with their baselines,
//! in one run, rendered as a report.
//!
//! Runs each selected bench with `--json` (release builds), captures the
//! firmware size figures (`cargo xtask firmware`), stores the outputs in a
//! directory that is emptied first (so nothing from an earlier run can slip
//! in), and renders the document with the `bench-report` binary of the
//! `torture` crate: machine, date and commit at the top, a summary table of
//! headline figures against their baselines and targets, one section per
//! bench, PNG plots. A bench that does not exist or fails is reported as
//! "not measured" with the reason, never filled in from another run.
//!
//! - `cargo xtask bench`: every bench → `docs/BENCHMARKS.md` and
//!   `docs/bench-*.png`.
//! - `cargo xtask bench metering store`: only those → a partial report in
//!   `<target>/bench-partial/BENCHMARKS.md` (never in `docs/`), printed too;
//!   the other benches say "not selected in this run".
//!
//! With `--json`, the report's JSON (every figure, the summary lines, the
//! run's machine/date/commit) is printed on stdout.

use anyhow::{Context, Result, bail};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::{cargo, describe, root, run as run_cmd};

/// (name in the report, package) of the benches that have a `--json` mode.
const BENCHES: [(&str, &str); 4] = [
    ("metering", "meter-bench"),
    ("store", "store-bench"),
    ("collect", "collect-bench"),
    ("sync", "sync-bench"),
];

/// Every name `cargo xtask bench WHAT` accepts.
pub const NAMES: [&str; 5] = ["metering", "store", "collect", "sync", "firmware"];

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { root().join(p) } else { p })
        .unwrap_or_else(|| root().join("target"))
}

/// Runs every bench and writes `docs/BENCHMARKS.md` with its plots.
pub fn run(json: bool) -> Result<()> {
    let dir = target_dir().join("bench-report");
    collect(&dir, &NAMES, "")?;
    render(&dir, &root().join("docs/BENCHMARKS.md"), json)
}

/// Runs the benches in `what` only and writes a partial report next to
/// their outputs (never in `docs/`), printing it unless `json`.
pub fn run_some(what: &[&str], json: bool) -> Result<()> {
    for w in what {
        if !NAMES.contains(w) {
            bail!("unknown bench `{w}`; choose from: {}", NAMES.join(", "));
        }
    }
    let dir = target_dir().join("bench-partial");
    let cmdline = format!("`cargo xtask bench {}`", what.join(" "));
    collect(&dir, what, &cmdline)?;
    let out = dir.join("BENCHMARKS.md");
    render(&dir, &out, json)?;
    if !json {
        let md =
            std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
        println!("{md}");
        eprintln!(
            "xtask: partial report (plots included) in {}",
            out.display()
        );
    }
    Ok(())
}

/// Empties `dir`, then stores there the output of each bench in `what`;
/// the others get a `.missing` file saying they were not selected.
fn collect(dir: &Path, what: &[&str], cmdline: &str) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for name in NAMES.iter().filter(|n| !what.contains(n)) {
        std::fs::write(
            dir.join(format!("{name}.missing")),
            format!("not selected in this run ({cmdline})"),
        )?;
    }
    for (name, pkg) in BENCHES.iter().filter(|(n, _)| what.contains(n)) {
        let missing = dir.join(format!("{name}.missing"));
        if !root().join("crates").join(pkg).join("Cargo.toml").is_file() {
            std::fs::write(&missing, format!("package {pkg} does not exist yet"))?;
            continue;
        }
        let mut cmd = cargo();
        cmd.args(["run", "--release", "-q", "-p", pkg, "--", "--json"]);
        eprintln!("xtask: {}", describe(&cmd));
        match capture(&mut cmd) {
            Ok((status, stdout, _)) if status.success() => {
                std::fs::write(dir.join(format!("{name}.json")), stdout)?;
            }
            Ok((status, _, tail)) => std::fs::write(
                &missing,
                format!("`{pkg} --json` failed ({status}): {}", tail.join(" / ")),
            )?,
            Err(e) => std::fs::write(&missing, format!("could not start cargo: {e:#}"))?,
        }
    }
    if what.contains(&"firmware") {
        // Firmware image size and static RAM, as `cargo xtask firmware` prints them.
        let exe = std::env::current_exe().context("locating xtask")?;
        let mut fw = Command::new(exe);
        fw.arg("firmware").current_dir(root());
        eprintln!("xtask: {}", describe(&fw));
        let missing = dir.join("firmware.missing");
        match capture(&mut fw) {
            Ok((status, stdout, _)) if status.success() => {
                std::fs::write(dir.join("firmware.txt"), stdout)?;
            }
            Ok((status, _, tail)) => std::fs::write(
                &missing,
                format!(
                    "`cargo xtask firmware` failed ({status}): {}",
                    tail.join(" / ")
                ),
            )?,
            Err(e) => std::fs::write(&missing, format!("{e:#}"))?,
        }
    }
    Ok(())
}

/// Runs `cmd`, echoing its stderr as it comes; returns its status, its
/// stdout and the last lines of its stderr (for a failure's reason).
fn capture(cmd: &mut Command) -> Result<(ExitStatus, Vec<u8>, Vec<String>)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    let stderr = child.stderr.take();
    let echo = std::thread::spawn(move || {
        let mut tail = VecDeque::new();
        if let Some(e) = stderr {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                eprintln!("  {line}");
                tail.push_back(line);
                if tail.len() > 5 {
                    tail.pop_front();
                }
            }
        }
        Vec::from(tail)
    });
    let mut out = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut out)
            .context("reading the bench's output")?;
    }
    let status = child.wait().context("waiting for the bench")?;
    let tail = echo.join().unwrap_or_default();
    Ok((status, out, tail))
}

/// Renders `out` (plots beside it) from the outputs in `dir`.
fn render(dir: &Path, out: &Path, json: bool) -> Result<()> {
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
        .arg(dir)
        .arg(out);
    if json {
        render.arg("--json");
    }
    run_cmd(&mut render)
}
