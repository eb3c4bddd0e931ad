//! Helpers shared by the `ofmon` CLI tests: run the binary against a home
//! directory, check its exit status, start a simulator fleet that has caught
//! up with real time, and talk to the ThingsBoard mock's REST API.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use thingsboard_mock::{TENANT_PASSWORD, TENANT_USER};

/// Runs `ofmon ARGS --home HOME` with no `OFMON_*` settings inherited from
/// the caller's environment.
pub fn ofmon(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ofmon"))
        .args(args)
        .arg("--home")
        .arg(home)
        .env_remove("OFMON_HOME")
        .env_remove("OFMON_TB_USER")
        .env_remove("OFMON_TB_PASSWORD")
        .output()
        .unwrap()
}

/// Asserts the command succeeded (showing its output if not) and returns
/// its stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Starts `n` simulated three-phase meters with ~29 one-minute records of
/// history each and waits (at most 90 s) until every one has caught up with
/// real time and committed at least 20 records.
pub fn fleet(home: &Path, n: usize) -> sim::Fleet {
    let fleet = sim::Fleet::start(sim::SimOptions {
        devices: n,
        base_port: 0,
        home: home.to_path_buf(),
        speed: 1.0,
        history_days: 0.02,
        phases: 3,
        ..sim::SimOptions::default()
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while (0..n).any(|i| {
        fleet
            .stats(i)
            .is_none_or(|s| s.lag_s > 1.0 || s.committed < 20)
    }) {
        assert!(Instant::now() < deadline, "simulator did not catch up");
        std::thread::sleep(Duration::from_millis(200));
    }
    fleet
}

/// GET `url` from the ThingsBoard REST API with the JWT, as JSON.
pub fn rest_get(url: &str, jwt: &str) -> Value {
    let mut r = ureq::get(url)
        .header("X-Authorization", &format!("Bearer {jwt}"))
        .call()
        .unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// Logs in to the ThingsBoard REST API at `base` as the mock's tenant and
/// returns the JWT.
pub fn login(base: &str) -> String {
    let body = format!(r#"{{"username":"{TENANT_USER}","password":"{TENANT_PASSWORD}"}}"#);
    let mut r = ureq::post(&format!("{base}/api/auth/login"))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .unwrap();
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// `ofmon pair DEVICE --thingsboard URL` logged in as the mock's tenant
/// (the device is created on the server through REST), plus `extra`
/// arguments.
pub fn pair_rest(home: &Path, device: &str, url: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "pair",
        device,
        "--thingsboard",
        url,
        "--user",
        TENANT_USER,
        "--password",
        TENANT_PASSWORD,
    ];
    args.extend_from_slice(extra);
    ofmon(home, &args)
}
