//! schemathesis against the device's `openapi.yaml` on a simulated device.
//!
//! The long profile installs schemathesis from PyPI into a virtualenv under
//! the target directory (`python3 -m venv`, `pip install`), starts one
//! simulated device with legacy mode on (so the legacy routes are live too)
//! and runs schemathesis's examples, coverage and fuzzing phases against
//! every operation of the spec, with the checks that say "the device
//! answers what the spec says": no 5xx, status codes, content types,
//! headers and bodies as documented.
//!
//! The run is **unauthenticated**: the device's HMAC signature covers
//! method, path, body digest, a timestamp and a fresh nonce per request,
//! which schemathesis cannot compute (a fixed `--header` would be a replay,
//! refused 401). So the protected operations are exercised up to their
//! documented 401 (with every generated body, query and method), the open
//! ones (`/api/v1/info`, `/api/v1/pair` while unpaired, the legacy routes)
//! all the way. The signed paths are covered by the security campaign and
//! the device's own tests. When python3 or PyPI is not available the
//! report says "skipped" with the reason, and a skipped run does not pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

/// The schemathesis release the campaign installs.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// The checks run (all of them are about conformance to the spec).
pub const CHECKS: &[&str] = &[
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
];

/// Parameters of [`run`].
#[derive(Clone, Debug)]
pub struct SchemaOptions {
    /// Virtualenv directory (created when missing).
    pub venv: PathBuf,
    /// Test cases per operation and phase (schemathesis `--max-examples`).
    pub max_examples: u32,
    /// Seed.
    pub seed: u64,
    /// Longest time for `pip install` (s).
    pub install_timeout_s: u64,
    /// Longest time for the schemathesis run (s).
    pub run_timeout_s: u64,
}

impl SchemaOptions {
    /// The long profile's run.
    pub fn long(venv: PathBuf) -> Self {
        Self {
            venv,
            max_examples: 100,
            seed: 0x5C4E,
            install_timeout_s: 600,
            run_timeout_s: 1200,
        }
    }
}

/// Figures of the schemathesis run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SchemaReport {
    /// Why it did not run (then it did not pass either).
    pub skipped: Option<String>,
    /// schemathesis version used.
    pub version: String,
    /// Checks run.
    pub checks: Vec<String>,
    /// Operations in the spec tested.
    pub operations: u64,
    /// Test cases (requests) generated.
    pub test_cases: u64,
    /// Failed checks (unique failures; must be 0).
    pub failures: u64,
    /// Of which: server errors (5xx).
    pub server_errors: u64,
    /// Errors of the run itself (connection refused, schema errors).
    pub errors: u64,
    /// Summary lines of the failures (first few).
    pub failure_lines: Vec<String>,
    /// schemathesis's own warnings (not failures), e.g. operations that
    /// only answered 401.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// schemathesis exit code.
    pub exit_code: Option<i32>,
    /// Real seconds spent (install excluded).
    pub wall_s: f64,
}

impl SchemaReport {
    /// Ran, tested something, and found nothing.
    pub fn ok(&self) -> bool {
        self.skipped.is_none()
            && self.operations > 0
            && self.test_cases > 0
            && self.failures == 0
            && self.errors == 0
            && self.exit_code == Some(0)
    }

    fn skipped(why: String) -> Self {
        Self {
            skipped: Some(why),
            ..Self::default()
        }
    }
}

fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Drain the pipes on threads so a chatty child cannot block.
    let mut out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut err = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("timed out after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(std::process::Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let v: Vec<&str> = text.lines().rev().take(lines).collect();
    v.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

/// The schemathesis executable of `venv`, installing it if needed.
/// `Err` carries the reason to report as "skipped".
pub fn ensure_installed(o: &SchemaOptions) -> std::result::Result<PathBuf, String> {
    let exe = o.venv.join("bin").join("schemathesis");
    let pinned = |exe: &Path| {
        Command::new(exe)
            .arg("--version")
            .output()
            .ok()
            .filter(|x| x.status.success())
            .is_some_and(|x| String::from_utf8_lossy(&x.stdout).contains(SCHEMATHESIS_VERSION))
    };
    if pinned(&exe) {
        return Ok(exe);
    }
    let py = Command::new("python3").arg("--version").output();
    if !py.is_ok_and(|x| x.status.success()) {
        return Err("python3 is not available".into());
    }
    if !o.venv.join("bin").join("pip").exists() {
        let r = run_with_timeout(
            Command::new("python3").arg("-m").arg("venv").arg(&o.venv),
            Duration::from_secs(120),
        )
        .map_err(|e| format!("python3 -m venv: {e}"))?;
        if !r.status.success() {
            return Err(format!(
                "python3 -m venv failed (is python3-venv installed?): {}",
                tail(&r.stderr, 2)
            ));
        }
    }
    let r = run_with_timeout(
        Command::new(o.venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("schemathesis=={SCHEMATHESIS_VERSION}")),
        Duration::from_secs(o.install_timeout_s),
    )
    .map_err(|e| format!("pip install schemathesis: {e}"))?;
    if !r.status.success() {
        return Err(format!(
            "pip install schemathesis=={SCHEMATHESIS_VERSION} failed (PyPI unreachable?): {}",
            tail(&r.stderr, 2)
        ));
    }
    if pinned(&exe) {
        Ok(exe)
    } else {
        Err("schemathesis installed but does not run".into())
    }
}

/// Installs schemathesis if needed and runs it against a simulated device.
pub fn run(spec: &Path, home: &Path, o: &SchemaOptions) -> SchemaReport {
    let exe = match ensure_installed(o) {
        Ok(e) => e,
        Err(why) => return SchemaReport::skipped(why),
    };
    match run_against_sim(&exe, spec, home, o) {
        Ok(r) => r,
        Err(e) => SchemaReport::skipped(format!("{e:#}")),
    }
}

fn run_against_sim(
    exe: &Path,
    spec: &Path,
    home: &Path,
    o: &SchemaOptions,
) -> Result<SchemaReport> {
    let fleet = sim::run(sim::SimOptions {
        devices: 1,
        base_port: 0,
        home: home.to_path_buf(),
        speed: 1.0,
        interval_s: 5,
        legacy: true,
        firmware_pubkey: Some(sim::firmware::test_public_key()),
        ..sim::SimOptions::default()
    })
    .map_err(|e| anyhow!("sim: {e}"))?;
    let dev = fleet
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no device"))?;
    let json_path = home.join("schemathesis-report.json");
    let started = Instant::now();
    let out = run_with_timeout(
        Command::new(exe)
            .current_dir(home)
            .arg("run")
            .arg(spec)
            .arg("--url")
            .arg(&dev.url)
            .arg("--checks")
            .arg(CHECKS.join(","))
            .args(["--phases", "examples,coverage,fuzzing"])
            .arg("--max-examples")
            .arg(o.max_examples.to_string())
            .arg("--seed")
            .arg(o.seed.to_string())
            .args(["--workers", "1", "--no-color", "--request-timeout", "20"])
            .args(["--generation-database", "none"])
            .args(["--report", "json", "--report-json-path"])
            .arg(&json_path)
            .env("SCHEMATHESIS_HOOKS", "")
            .env("NO_COLOR", "1"),
        Duration::from_secs(o.run_timeout_s),
    )
    .context("schemathesis run")?;
    let wall_s = started.elapsed().as_secs_f64();
    fleet.stop();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // Kept beside the report for reading the failures in full.
    let _ = std::fs::write(home.join("schemathesis.out"), &out.stdout);
    let mut rep = parse_summary(&stdout);
    rep.version = SCHEMATHESIS_VERSION.into();
    rep.checks = CHECKS.iter().map(|c| c.to_string()).collect();
    rep.exit_code = out.status.code();
    rep.wall_s = wall_s;
    if rep.operations == 0 {
        rep.skipped = Some(format!(
            "no schemathesis summary (exit {:?}): {}",
            rep.exit_code,
            tail(&out.stdout, 4)
        ));
    }
    Ok(rep)
}

fn first_number(s: &str) -> Option<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
}

/// Reads schemathesis's closing summary (its text output).
pub fn parse_summary(stdout: &str) -> SchemaReport {
    let mut rep = SchemaReport::default();
    let lines: Vec<&str> = stdout.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("API Operations:") {
            rep.operations = first_number(rest).unwrap_or(0);
            // "API Operations:\n  Selected: 21/21" on the next lines.
            for n in lines.iter().skip(i + 1).take(3) {
                if let Some(v) = n.trim().strip_prefix("Tested:") {
                    rep.operations = first_number(v).unwrap_or(rep.operations);
                } else if let Some(v) = n.trim().strip_prefix("Selected:")
                    && rep.operations == 0
                {
                    rep.operations = first_number(v).unwrap_or(0);
                }
            }
        }
        if t.starts_with("Test cases:") {
            // "Test cases:\n  1234 generated, 1234 passed".
            if let Some(n) = lines.get(i + 1) {
                rep.test_cases = first_number(n).unwrap_or(0);
            }
        }
        if t == "Failures:" {
            // "  ❌ ST105 Undocumented Content-Type: 1" per kind.
            for n in lines.iter().skip(i + 1) {
                let k = n.trim();
                if k.is_empty() {
                    break;
                }
                let kind = k.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
                let count = kind
                    .rsplit_once(':')
                    .and_then(|(_, c)| c.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                rep.failures += count;
                if kind.to_ascii_lowercase().contains("server error") {
                    rep.server_errors += count;
                }
                if rep.failure_lines.len() < 12 {
                    rep.failure_lines.push(kind.to_string());
                }
            }
        }
        if t.starts_with('_') && t.ends_with('_') && t.contains(' ') && rep.failure_lines.len() < 12
        {
            // A failing operation's banner: "____ GET /api/v1/info ____".
            rep.failure_lines
                .push(format!("in {}", t.trim_matches('_').trim()));
        }
        if let Some(x) = t
            .split_once(" found ")
            .and_then(|(_, r)| {
                r.strip_suffix("unique failure")
                    .or_else(|| r.strip_suffix("unique failures"))
            })
            .and_then(|r| {
                r.split_whitespace()
                    .last()
                    .and_then(|w| w.parse::<u64>().ok())
            })
        {
            rep.failures = rep.failures.max(x);
        }
        if t == "Warnings:" {
            for n in lines.iter().skip(i + 1) {
                let w = n.trim();
                if w.is_empty() {
                    break;
                }
                rep.warnings.push(
                    w.trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
                        .to_string(),
                );
            }
        }
        if let Some(rest) = t.strip_prefix("Errors:") {
            rep.errors = first_number(rest).unwrap_or(0);
        }
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILED: &str = "\
=================================== FAILURES ===================================
_______________________________ GET /api/v1/info _______________________________
1. Test Case ID: K9tqgJ
=================================== SUMMARY ====================================

API Operations:
  Selected: 21/21
  Tested: 21

Failures:
  ❌ ST105 Undocumented Content-Type: 1
  ❌ Server error: 2

Warnings:
  ⚠️ Authentication failed: 11 operations returned only 401/403 responses

Test cases:
  574 generated, 1 found 3 unique failures
";

    const PASSED: &str = "\
API Operations:
  Selected: 21/21
  Tested: 21

Test cases:
  785 generated, 785 passed
";

    #[test]
    fn summary_parsing() {
        let r = parse_summary(FAILED);
        assert_eq!((r.operations, r.test_cases), (21, 574));
        assert_eq!((r.failures, r.server_errors), (3, 2));
        assert_eq!(r.failure_lines.len(), 3, "{:?}", r.failure_lines);
        assert_eq!(r.warnings.len(), 1);
        let r = parse_summary(PASSED);
        assert_eq!((r.operations, r.test_cases, r.failures), (21, 785, 0));
        assert!(r.warnings.is_empty());
        // Without an exit code of 0 nothing passes.
        assert!(!r.ok());
        assert!(
            SchemaReport {
                exit_code: Some(0),
                ..r
            }
            .ok()
        );
        assert!(!SchemaReport::skipped("no python".into()).ok());
    }
}
