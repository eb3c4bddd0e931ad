//! The bench runs end to end on a small backlog and reports consistent figures.

use std::process::Command;

#[test]
fn one_day_runs_and_reports_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_collect-bench"))
        .args(["--json", "--days", "1", "--baseline-rows", "50"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 1440);
    assert_eq!(v["ours"]["records"], 1440);
    let ours_bpr = v["ours"]["bytes_per_record"].as_f64().unwrap();
    // Store-encoded records are far smaller than 3 × 30 raw bytes.
    assert!(ours_bpr > 4.0 && ours_bpr < 45.0, "{ours_bpr}");
    let b = &v["baseline"][0];
    assert_eq!(b["bytes_per_record"].as_f64().unwrap(), 90.0);
    assert_eq!(b["rows"], 1440 * 3);
    assert_eq!(b["rows_inserted"], 50);
    assert_eq!(b["extrapolated"], true);
    assert_eq!(v["baseline"][1]["rows_inserted"], 1440 * 3);
    assert!(v["ours"]["seconds"].as_f64().unwrap() > 0.0);
}
