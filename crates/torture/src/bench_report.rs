//! Renders `docs/BENCHMARKS.md` from the benches' `--json` output of one run
//! (collected by `cargo xtask report`). The renderer is generic: objects
//! become field/value tables, arrays of objects become tables, and any
//! `ours`/`original` (or `baseline`) pair of numbers becomes a ratio — so a
//! bench that adds a figure shows up without touching this file. Figures of
//! different runs are never mixed: every input comes from the same run.

use std::fmt::Write;

use serde_json::Value;

/// One bench's output.
#[derive(Clone, Debug)]
pub struct BenchOutput {
    /// Bench name (`metering`, `store`, `collect`, `sync`, `firmware`).
    pub name: String,
    /// Its JSON, or `None` when it does not exist yet / failed.
    pub json: Option<Value>,
    /// Plain-text output (firmware size), or why it is missing.
    pub text: Option<String>,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("—".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if n.is_f64() => fmt_f(f),
            _ => n.to_string(),
        }),
        Value::String(s) => Some(s.replace('|', "\\|").replace('\n', " ")),
        _ => None,
    }
}

fn fmt_f(f: f64) -> String {
    let a = f.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{f:.0}")
    } else if a >= 1.0 {
        format!("{f:.3}")
    } else {
        format!("{f:.4}")
    }
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
    .replace('|', "\\|")
}

const BASE_WORDS: [&str; 3] = ["original", "baseline", "seed"];

fn base_key(k: &str) -> Option<String> {
    // `x_ours` ↔ `x_original`, `ours_x` ↔ `original_x`, `ours` ↔ `original`.
    for b in BASE_WORDS {
        if k == "ours" {
            return Some(b.to_string());
        }
        if let Some(x) = k.strip_suffix("_ours") {
            return Some(format!("{x}_{b}"));
        }
        if let Some(x) = k.strip_prefix("ours_") {
            return Some(format!("{b}_{x}"));
        }
    }
    None
}

/// Ratios ours / original found anywhere in `v`: (path, ours, original).
pub fn ratios(v: &Value) -> Vec<(String, f64, f64)> {
    let mut out = Vec::new();
    walk_ratios(v, "", &mut out);
    out
}

fn walk_ratios(v: &Value, path: &str, out: &mut Vec<(String, f64, f64)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let Some(ours) = x.as_f64() {
                    let Some(bk) = base_key(k) else { continue };
                    for b in BASE_WORDS {
                        let cand = bk.replace(BASE_WORDS[0], b);
                        if let Some(base) = m.get(&cand).and_then(Value::as_f64) {
                            out.push((format!("{path}{k}"), ours, base));
                            break;
                        }
                    }
                }
            }
            // Sub-objects `ours` and `original`: compare their common numbers.
            if let Some(Value::Object(o)) = m.get("ours") {
                for b in BASE_WORDS {
                    if let Some(Value::Object(base)) = m.get(b) {
                        for (k, x) in o {
                            if let (Some(a), Some(c)) =
                                (x.as_f64(), base.get(k).and_then(Value::as_f64))
                            {
                                out.push((format!("{path}{k}"), a, c));
                            }
                        }
                    }
                }
            }
            for (k, x) in m {
                walk_ratios(x, &format!("{path}{k}."), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate().take(50) {
                walk_ratios(x, &format!("{path}{i}."), out);
            }
        }
        _ => {}
    }
}

fn render_value(s: &mut String, v: &Value, heading: &str, depth: usize) {
    match v {
        Value::Object(m) => {
            let leaves: Vec<(&String, String)> = m
                .iter()
                .filter_map(|(k, x)| scalar(x).map(|t| (k, t)))
                .collect();
            if !leaves.is_empty() {
                if !heading.is_empty() {
                    let _ = writeln!(s, "{} {heading}\n", "#".repeat((depth + 2).min(6)));
                }
                let _ = writeln!(s, "| field | value |\n|---|---|");
                for (k, t) in leaves {
                    let _ = writeln!(s, "| {k} | {t} |");
                }
                s.push('\n');
            }
            for (k, x) in m {
                if scalar(x).is_none() {
                    let h = if heading.is_empty() {
                        k.clone()
                    } else {
                        format!("{heading} / {k}")
                    };
                    render_value(s, x, &h, depth + 1);
                }
            }
        }
        Value::Array(a) if a.iter().all(Value::is_object) && !a.is_empty() => {
            let mut cols: Vec<String> = Vec::new();
            for x in a {
                if let Value::Object(m) = x {
                    for k in m.keys() {
                        if !cols.contains(k) {
                            cols.push(k.clone());
                        }
                    }
                }
            }
            let _ = writeln!(s, "{} {heading}\n", "#".repeat((depth + 2).min(6)));
            let _ = writeln!(s, "| {} |", cols.join(" | "));
            let _ = writeln!(s, "|{}", "---|".repeat(cols.len()));
            for x in a.iter().take(200) {
                let row: Vec<String> = cols
                    .iter()
                    .map(|c| {
                        x.get(c)
                            .map(|v| scalar(v).unwrap_or_else(|| compact(v)))
                            .unwrap_or_default()
                    })
                    .collect();
                let _ = writeln!(s, "| {} |", row.join(" | "));
            }
            s.push('\n');
        }
        Value::Array(a) => {
            let _ = writeln!(s, "{} {heading}\n", "#".repeat((depth + 2).min(6)));
            let items: Vec<String> = a
                .iter()
                .take(100)
                .map(|v| scalar(v).unwrap_or_else(|| compact(v)))
                .collect();
            let _ = writeln!(s, "{}\n", items.join(", "));
        }
        other => {
            let _ = writeln!(s, "{heading}: {}\n", scalar(other).unwrap_or_default());
        }
    }
}

/// The whole document.
pub fn render(machine: &str, date: &str, benches: &[BenchOutput]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Benchmarks\n\n<!-- Generated by `cargo xtask report`; do not edit by hand. -->\n\n\
         Run {date} on {machine}. Every figure below comes from this one run; each \
         ratio compares ours with its baseline measured in the same run.\n"
    );
    let _ = writeln!(s, "## Summary: ours vs baseline\n");
    let mut any = false;
    let _ = writeln!(
        s,
        "| bench | figure | ours | baseline | ours / baseline |\n|---|---|---|---|---|"
    );
    for b in benches {
        if let Some(j) = &b.json {
            for (path, ours, base) in ratios(j) {
                any = true;
                let r = if base != 0.0 {
                    fmt_f(ours / base)
                } else {
                    "—".into()
                };
                let _ = writeln!(
                    s,
                    "| {} | {path} | {} | {} | {r} |",
                    b.name,
                    fmt_f(ours),
                    fmt_f(base)
                );
            }
        }
    }
    if !any {
        let _ = writeln!(s, "| — | no ours/baseline pairs in this run | | | |");
    }
    s.push('\n');
    for b in benches {
        let _ = writeln!(s, "## {}\n", b.name);
        match (&b.json, &b.text) {
            (Some(j), _) => render_value(&mut s, j, "", 0),
            (None, Some(t)) => {
                let _ = writeln!(s, "```text\n{}\n```\n", t.trim_end());
            }
            (None, None) => {
                let _ = writeln!(s, "**Not measured** in this run.\n");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_found_in_pairs_and_sub_objects() {
        let v = serde_json::json!({
            "density": {"days_ours": 90.0, "days_original": 15.0},
            "collect": {"ours": {"seconds": 1.0, "bytes": 10}, "baseline": {"seconds": 4.0, "bytes": 40}},
            "rows": [{"x": 1}]
        });
        let r = ratios(&v);
        assert!(
            r.iter()
                .any(|(p, a, b)| p.ends_with("days_ours") && *a == 90.0 && *b == 15.0)
        );
        assert!(
            r.iter()
                .any(|(p, a, b)| p.ends_with("seconds") && *a == 1.0 && *b == 4.0)
        );
        let md = render(
            "m",
            "d",
            &[BenchOutput {
                name: "x".into(),
                json: Some(v),
                text: None,
            }],
        );
        assert!(
            md.contains("| x | density.days_ours | 90.000 | 15.000 | 6.000 |"),
            "{md}"
        );
        assert!(md.contains("**Not measured**") || !md.is_empty());
    }
}
