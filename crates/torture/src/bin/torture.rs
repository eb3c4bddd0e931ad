//! `torture`: runs the reliability campaign and writes `docs/RELIABILITY.md`.
//!
//! `torture [--long] [--out FILE] [--json FILE] [--fuzz-results FILE] [--ofmon PATH]`
//! or `torture --render REPORT.json` (re-render a saved report)
//! (normally started by `cargo xtask torture`). Exits non-zero when an
//! invariant failed, after writing the report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use torture::Profile;
use torture::campaign::{self, FuzzRun};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("torture: some invariants failed; see the report");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("torture: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let mut profile = Profile::Short;
    let mut out = None;
    let mut json = None;
    let mut fuzz: Vec<FuzzRun> = Vec::new();
    let mut ofmon = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--long" => profile = Profile::Long,
            "--short" => profile = Profile::Short,
            "--out" => out = args.next().map(PathBuf::from),
            "--json" => json = args.next().map(PathBuf::from),
            "--ofmon" => ofmon = args.next().map(PathBuf::from),
            "--render" => {
                // Re-render a saved `--json` report without running anything.
                let p = args.next().context("--render needs a file")?;
                let text = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
                let rep: campaign::CampaignReport = serde_json::from_str(&text)?;
                print!("{}", campaign::render(&rep));
                return Ok(rep.ok());
            }
            "--fuzz-results" => {
                let p = args.next().context("--fuzz-results needs a file")?;
                let text = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
                fuzz = serde_json::from_str(&text).with_context(|| format!("parsing {p}"))?;
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let ofmon = ofmon.or_else(|| torture::crash::ofmon_binary().ok());
    let scratch = tempfile::tempdir().context("scratch directory")?;
    let rep = campaign::run(profile, scratch.path(), ofmon, fuzz)?;
    let md = campaign::render(&rep);
    match &out {
        Some(p) => {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(p, &md).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("torture: wrote {}", p.display());
        }
        None => print!("{md}"),
    }
    if let Some(p) = &json {
        std::fs::write(p, serde_json::to_vec_pretty(&rep)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(rep.ok())
}
