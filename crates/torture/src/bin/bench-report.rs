//! `bench-report DIR OUT.md [--json]`: renders the benchmark report from the
//! files one run of `cargo xtask bench` collected in DIR (`<bench>.json` from
//! each bench's `--json`, `<bench>.txt` for plain-text figures,
//! `<bench>.missing` saying why a bench has no figures), with its PNG plots
//! written next to OUT.md. With `--json`, also prints every figure, the
//! summary lines and the run's machine/date/commit as one JSON object.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use torture::bench_report::{BenchOutput, Outcome, RunInfo, render};

/// The benches, in the order of the document.
const BENCHES: [&str; 5] = ["metering", "store", "collect", "sync", "firmware"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-report: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `git rev-parse HEAD` of the checkout holding `dir`, noting uncommitted changes.
fn commit(dir: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(head) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if s.is_empty() => head,
            Some(_) => format!("{head} with uncommitted changes"),
            None => head,
        },
        None => "unknown (not a git checkout)".into(),
    }
}

fn read_outcome(dir: &Path, name: &str) -> Result<Outcome> {
    let j = dir.join(format!("{name}.json"));
    if let Ok(text) = std::fs::read_to_string(&j) {
        return match serde_json::from_str(&text) {
            Ok(v) => Ok(Outcome::Json(v)),
            Err(e) => Ok(Outcome::Missing(format!(
                "its `--json` output is not valid JSON ({e})"
            ))),
        };
    }
    if let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.txt"))) {
        return Ok(Outcome::Text(text));
    }
    if let Ok(why) = std::fs::read_to_string(dir.join(format!("{name}.missing"))) {
        return Ok(Outcome::Missing(why.trim().to_string()));
    }
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Ok(Outcome::Missing("no output from this run".into()))
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json_out = args.iter().any(|a| a == "--json");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (Some(dir), Some(out)) = (pos.first(), pos.get(1)) else {
        bail!("usage: bench-report DIR OUT.md [--json]");
    };
    let dir = PathBuf::from(dir);
    let out = PathBuf::from(out);
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut benches = Vec::new();
    for name in BENCHES {
        benches.push(BenchOutput {
            name: name.to_string(),
            outcome: read_outcome(&dir, name)?,
        });
    }
    let info = RunInfo {
        machine: torture::campaign::machine(),
        date: torture::campaign::utc_now(),
        commit: commit(&out_dir),
    };
    let r = render(&info, &benches, Some(&out_dir));
    std::fs::write(&out, &r.markdown).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("bench-report: wrote {}", out.display());
    for (path, res) in &r.plots {
        match res {
            Ok(()) => eprintln!("bench-report: wrote {}", path.display()),
            Err(why) => eprintln!("bench-report: plot {} not drawn: {why}", path.display()),
        }
    }
    if json_out {
        let mut all = serde_json::Map::new();
        for b in &benches {
            let v = match &b.outcome {
                Outcome::Json(v) => v.clone(),
                Outcome::Text(t) if b.name == "firmware" => json!({
                    "sizes": r.firmware.clone(),
                    "text": t,
                }),
                Outcome::Text(t) => json!({ "text": t }),
                Outcome::Missing(why) => json!({ "not_measured": why }),
            };
            all.insert(b.name.clone(), v);
        }
        let plots: Vec<Value> = r
            .plots
            .iter()
            .map(|(p, res)| {
                json!({
                    "file": p.display().to_string(),
                    "drawn": res.is_ok(),
                    "error": res.as_ref().err(),
                })
            })
            .collect();
        let doc = json!({
            "run": info,
            "summary": r.headlines,
            "plots": plots,
            "benches": all,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}
