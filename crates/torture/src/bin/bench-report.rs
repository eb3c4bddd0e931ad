//! `bench-report DIR OUT.md [--json]`: renders `docs/BENCHMARKS.md` from the
//! files `cargo xtask report` collected in DIR (`<bench>.json` from each
//! bench's `--json`, `<bench>.txt` for plain-text figures, `<bench>.missing`
//! saying why a bench did not run). With `--json`, also prints everything as
//! one JSON object.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use torture::bench_report::{BenchOutput, render};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-report: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (Some(dir), Some(out)) = (pos.first(), pos.get(1)) else {
        bail!("usage: bench-report DIR OUT.md [--json]");
    };
    let dir = PathBuf::from(dir);
    let order = ["metering", "store", "collect", "sync", "firmware"];
    let mut benches = Vec::new();
    for name in order {
        let j = dir.join(format!("{name}.json"));
        let t = dir.join(format!("{name}.txt"));
        let m = dir.join(format!("{name}.missing"));
        let json = match std::fs::read_to_string(&j) {
            Ok(text) => Some(
                serde_json::from_str(&text).with_context(|| format!("parsing {}", j.display()))?,
            ),
            Err(_) => None,
        };
        let text = std::fs::read_to_string(&t).ok().or_else(|| {
            std::fs::read_to_string(&m)
                .ok()
                .map(|w| format!("not measured: {w}"))
        });
        benches.push(BenchOutput {
            name: name.to_string(),
            json,
            text,
        });
    }
    let machine = torture::campaign::machine();
    let date = torture::campaign::utc_now();
    let md = render(&machine, &date, &benches);
    std::fs::write(out.as_str(), md).with_context(|| format!("writing {out}"))?;
    eprintln!("bench-report: wrote {out}");
    if json {
        let mut all = serde_json::Map::new();
        all.insert("machine".into(), machine.into());
        all.insert("date".into(), date.into());
        for b in benches {
            all.insert(
                b.name,
                b.json
                    .unwrap_or_else(|| b.text.map_or(serde_json::Value::Null, Into::into)),
            );
        }
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}
