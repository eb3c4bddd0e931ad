//! `ofmon meter` end to end: a capture written to disk, the real binary, and
//! truth computed analytically from the waveform parameters.

use std::f64::consts::PI;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ofmon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ofmon"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ofmon-meter-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Writes `seconds` of a clean capture: v at `v_peak` counts, CTs with the
/// given peak counts and phase lag (radians), 50 Hz, mid-scale 2048.
fn write_capture(path: &Path, rate: u32, seconds: f64, v_peak: f64, cts: &[(f64, f64)]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut header = String::from("v");
    for k in 1..=cts.len() {
        header.push_str(&format!(",i{k}"));
    }
    writeln!(f, "{header}").unwrap();
    let n = (seconds * rate as f64) as usize;
    for s in 0..n {
        let t = s as f64 / rate as f64;
        let w = 2.0 * PI * 50.0 * t;
        let mut row = format!("{}", (2048.0 + v_peak * w.sin()).round() as i64);
        for &(peak, lag) in cts {
            row.push_str(&format!(
                ",{}",
                (2048.0 + peak * (w - lag).sin()).round() as i64
            ));
        }
        writeln!(f, "{row}").unwrap();
    }
}

fn run(args: &[&str]) -> Output {
    ofmon().arg("meter").args(args).output().unwrap()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn meters_a_clean_capture_against_analytic_truth() {
    let path = tmp("clean.csv");
    let rate = 4000;
    // 1500-count voltage peak at 0.2 V/count: 300 V peak, 212.1 V rms.
    // CT1 1000 counts at 0.01 A/count, PF 1; CT2 600 counts lagging 60°.
    write_capture(
        &path,
        rate,
        25.0,
        1500.0,
        &[(1000.0, 0.0), (600.0, PI / 3.0)],
    );
    let out = run(&[
        "--input",
        path.to_str().unwrap(),
        "--rate",
        "4000",
        "--v-scale",
        "0.2",
        "--i-scale",
        "0.01",
        "--interval-s",
        "10",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ivs = lines(&out);
    assert_eq!(ivs.len(), 3, "two full intervals and a partial: {ivs:?}");
    assert!(ivs[0].get("partial").is_none());
    assert_eq!(ivs[2]["partial"], true);

    let vrms = 300.0 / 2f64.sqrt();
    let p1 = vrms * (10.0 / 2f64.sqrt());
    let p2 = vrms * (6.0 / 2f64.sqrt()) * 0.5;
    let close = |got: f64, want: f64, tol: f64, what: &str| {
        assert!(
            ((got - want) / want).abs() < tol,
            "{what}: got {got}, want {want}"
        );
    };
    let second = &ivs[1];
    close(
        second["frequency_hz"].as_f64().unwrap(),
        50.0,
        1e-3,
        "frequency",
    );
    close(
        second["voltage"][0]["rms"].as_f64().unwrap(),
        vrms,
        3e-3,
        "vrms",
    );
    assert_eq!(second["voltage"][0]["ch"], "v");
    assert_eq!(second["circuits"][1]["ch"], "i2");
    close(
        second["circuits"][0]["real_power_w"].as_f64().unwrap(),
        p1,
        5e-3,
        "P1",
    );
    close(
        second["circuits"][1]["real_power_w"].as_f64().unwrap(),
        p2,
        1e-2,
        "P2",
    );
    close(
        second["circuits"][1]["power_factor"].as_f64().unwrap(),
        0.5,
        1e-2,
        "PF2",
    );
    close(
        second["circuits"][0]["i_rms"].as_f64().unwrap(),
        10.0 / 2f64.sqrt(),
        3e-3,
        "I1",
    );

    // Intervals tile the file and energy is cumulative.
    let total: f64 = ivs
        .iter()
        .map(|iv| iv["duration_s"].as_f64().unwrap())
        .sum();
    assert!((total - 25.0).abs() < 1e-6, "durations sum to {total}");
    let last = &ivs[2]["circuits"][0];
    let wh = last["import_wh"].as_f64().unwrap();
    close(wh, p1 * 25.0 / 3600.0, 5e-3, "import_wh");
    assert_eq!(last["export_wh"].as_f64().unwrap(), 0.0);
    let first_wh = ivs[0]["circuits"][0]["import_wh"].as_f64().unwrap();
    assert!(first_wh < wh, "energy must accumulate");
}

#[test]
fn export_when_power_flows_backwards() {
    let path = tmp("export.csv");
    write_capture(&path, 2400, 5.0, 1500.0, &[(800.0, PI)]);
    let out = run(&[
        "--input",
        path.to_str().unwrap(),
        "--rate",
        "2400",
        "--interval-s",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ivs = lines(&out);
    let c = &ivs.last().unwrap()["circuits"][0];
    assert!(c["real_power_w"].as_f64().unwrap() < 0.0);
    assert_eq!(c["import_wh"].as_f64().unwrap(), 0.0);
    assert!(c["export_wh"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("empty.csv", "", &["empty"]),
        ("noheader.csv", "2048,2048\n2049,2047\n", &["header"]),
        ("text.csv", "v,i1\n2048,2048\n2048,abc\n", &["row 3", "i1"]),
        ("range.csv", "v,i1\n2048,4096\n", &["row 2", "i1", "4096"]),
        ("ragged.csv", "v,i1\n2048,2048\n2048\n", &["row 3"]),
        ("headeronly.csv", "v,i1\n", &["no sample"]),
    ];
    for (name, text, needles) in cases {
        let path = tmp(name);
        std::fs::write(&path, text).unwrap();
        let out = run(&["--input", path.to_str().unwrap(), "--rate", "4000"]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        for n in *needles {
            assert!(err.contains(n), "{name}: `{err}` lacks `{n}`");
        }
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(out.stdout.is_empty() || *name == "text.csv" || *name == "ragged.csv");
    }
    let out = ofmon().args(["meter", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["--input", "/nonexistent/capture.csv", "--rate", "4000"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn three_phase_virtual_from_one_voltage() {
    let path = tmp("virt.csv");
    // Balanced resistive load on three phases: i2 lags v by 120°, i3 by 240°.
    write_capture(
        &path,
        4000,
        6.0,
        1500.0,
        &[
            (900.0, 0.0),
            (900.0, 2.0 * PI / 3.0),
            (900.0, 4.0 * PI / 3.0),
        ],
    );
    let out = run(&[
        "--input",
        path.to_str().unwrap(),
        "--rate",
        "4000",
        "--phases",
        "3",
        "--interval-s",
        "6",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ivs = lines(&out);
    let iv = ivs.last().unwrap();
    let want = 1500.0 * 900.0 / 2.0;
    for ct in 0..3 {
        let p = iv["circuits"][ct]["real_power_w"].as_f64().unwrap();
        assert!(
            (p - want).abs() / want < 0.01,
            "ct{} p {p} want {want}",
            ct + 1
        );
    }
}
