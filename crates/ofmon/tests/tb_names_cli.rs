//! `ofmon devices` with server-side names (fetched, cached, offline) and
//! `ofmon pair --gateway` + `ofmon sync --transport gateway`, against the
//! ThingsBoard mock on loopback.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use thingsboard_mock::{MockServer, TENANT_PASSWORD, TENANT_USER};

mod common;
use common::{fleet, login, ofmon, ok, pair_rest, rest_get, stderr};

fn known(home: &Path, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["devices", "--json"];
    args.extend_from_slice(extra);
    let o = ofmon(home, &args);
    let out = ok(&o);
    let v: Value = serde_json::from_str(&out).unwrap();
    (v["known"][0].clone(), stderr(&o))
}

/// `ofmon pair --gateway` against the mock at `url` as its tenant, plus
/// `extra` arguments.
fn pair_gateway(home: &Path, url: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "pair",
        "--gateway",
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

#[test]
fn devices_show_server_names_fetched_and_cached() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let tb = MockServer::start().unwrap();
    let url = tb.url();
    let fleet = fleet(h, 1);
    let dev = fleet.devices()[0].clone();
    ok(&pair_rest(h, &dev.id, &url, &["--name", "kitchen"]));
    // The login is kept as a refresh token, owner-only, never the password.
    let login = h.join("thingsboard-login.json");
    let text = std::fs::read_to_string(&login).unwrap();
    assert!(text.contains("refresh_token"), "{text}");
    assert!(
        !text.contains("password") && !text.contains(&format!("\"{TENANT_PASSWORD}\"")),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&login).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Labelled on the server: the next listing shows it.
    assert!(tb.update_device("kitchen", "kitchen", Some("Main panel")));
    let (d, err) = known(h, &[]);
    assert_eq!(d["name"], "kitchen", "{err}");
    assert_eq!(d["label"], "Main panel", "{err}");
    assert!(d["tb_id"].as_str().is_some());
    // Renamed on the server, and the access token expired meanwhile: the
    // saved refresh token logs in again and the new name shows.
    tb.expire_sessions();
    assert!(tb.update_device("kitchen", "cuisine", Some("Panel B")));
    let o = ofmon(h, &["devices"]);
    let table = ok(&o);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert!(
        table.contains("LABEL") && table.contains("NAME AS OF"),
        "{table}"
    );
    let row = table.lines().find(|l| l.starts_with(&dev.id)).unwrap();
    assert!(row.contains(&dev.ssid), "{row}");
    assert!(row.contains("cuisine") && row.contains("Panel B"), "{row}");
    assert!(row.contains("now"), "{row}");

    // Wrong password typed on the command line: a clear error that says
    // what to check; the cached names still show.
    let o = ofmon(
        h,
        &[
            "devices",
            "--thingsboard",
            &url,
            "--user",
            TENANT_USER,
            "--password",
            "wrong",
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("wrong user or password") && e.contains("--password"),
        "{e}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("cuisine"));
    // The saved login expired: a note naming the command to log in again,
    // exit 0, cached names.
    tb.revoke_refresh_tokens();
    let (d, e) = known(h, &[]);
    assert_eq!(d["name"], "cuisine");
    assert!(
        e.contains("expired") && e.contains(&format!("ofmon devices --thingsboard {url}")),
        "{e}"
    );
    // Logging in again explicitly (environment variables) fixes it.
    assert!(tb.update_device("cuisine", "cucina", None));
    let o = Command::new(env!("CARGO_BIN_EXE_ofmon"))
        .args(["devices", "--json", "--thingsboard", &url, "--home"])
        .arg(h)
        .env_remove("OFMON_HOME")
        .env("OFMON_TB_USER", TENANT_USER)
        .env("OFMON_TB_PASSWORD", TENANT_PASSWORD)
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(v["known"][0]["name"], "cucina");
    assert_eq!(v["known"][0]["label"], Value::Null);
    let (d, e) = known(h, &[]);
    assert_eq!(d["name"], "cucina", "{e}");
    assert!(e.is_empty(), "{e}");

    // Server gone: cached name with its age, a one-line note, exit 0.
    drop(tb);
    {
        let db = collector::Db::open(&h.join("ofmon.db")).unwrap();
        db.conn()
            .execute("UPDATE tb_device SET fetched_ms = fetched_ms - 7200000", [])
            .unwrap();
    }
    let t = Instant::now();
    let o = ofmon(h, &["devices"]);
    let table = ok(&o);
    assert!(t.elapsed() < Duration::from_secs(10));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("not reachable"), "{e}");
    let row = table.lines().find(|l| l.starts_with(&dev.id)).unwrap();
    assert!(row.contains("cucina") && row.contains("2 h ago"), "{row}");
    // --offline does not even try.
    let o = ofmon(h, &["devices", "--offline"]);
    assert!(ok(&o).contains("cucina"));
    assert!(stderr(&o).is_empty());
    fleet.stop();
}

#[test]
fn gateway_pair_sync_and_read_back_by_name() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let tb = MockServer::start().unwrap();
    let mq = tb.start_mqtt().unwrap();
    let url = tb.url();
    let fleet = fleet(h, 2);
    let devs = fleet.devices();
    // One meter provisioned through REST, one paired with a token only:
    // the gateway creates that one on the server by its name.
    ok(&pair_rest(h, &devs[0].id, &url, &["--name", "kitchen"]));
    ok(&ofmon(
        h,
        &[
            "pair",
            &devs[1].id,
            "--token",
            "unused",
            "--name",
            "garage",
            "--thingsboard",
            &url,
        ],
    ));
    assert!(tb.device("garage").is_none());
    let out = ok(&pair_gateway(h, &url, &[]));
    assert!(out.contains("created gateway device"), "{out}");
    let gw = tb.device("OFMon gateway").unwrap();
    assert!(gw.gateway);
    // Again: found, not duplicated.
    let out = ok(&pair_gateway(h, &url, &[]));
    assert!(out.contains("found gateway device"), "{out}");
    // A non-gateway device of that name is refused clearly.
    let o = pair_gateway(h, &url, &["--name", "kitchen"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a gateway"), "{}", stderr(&o));

    let v: Value = serde_json::from_str(&ok(&ofmon(h, &["collect", "--all", "--json"]))).unwrap();
    assert_eq!(v["ok"], true);
    // The gateway token is found without --gateway-token.
    let out = ok(&ofmon(
        h,
        &[
            "sync",
            "--transport",
            "gateway",
            "--thingsboard",
            &mq.url(),
            "--json",
        ],
    ));
    let r: Value = serde_json::from_str(&out).unwrap();
    let mut sent = 0;
    for d in r["devices"].as_array().unwrap() {
        assert_eq!(d["status"]["status"], "done", "{out}");
        assert_eq!(d["pending"], 0, "{out}");
        sent += d["sent"].as_u64().unwrap();
    }
    assert!(sent >= 40, "{out}");
    assert!(tb.device("garage").is_some(), "created by the gateway");

    // Read back through the REST API by name, as a dashboard would.
    let jwt = login(&url);
    let get = |u: &str| rest_get(u, &jwt);
    let db = collector::Db::open(&h.join("ofmon.db")).unwrap();
    for (name, id) in [("kitchen", &devs[0].id), ("garage", &devs[1].id)] {
        let d = get(&format!("{url}/api/tenant/devices?deviceName={name}"));
        let tb_id = d["id"]["id"].as_str().unwrap();
        let ts = get(&format!(
            "{url}/api/plugins/telemetry/DEVICE/{tb_id}/values/timeseries?keys=v_rms,real_power_1&startTs=0&endTs=9999999999999&limit=100000"
        ));
        let n = ts["v_rms"].as_array().unwrap().len() as u64;
        let timed: u64 = db
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM record WHERE device_id = ?1 AND ts_ms IS NOT NULL",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, timed, "{name}");
        assert_eq!(ts["real_power_1"].as_array().unwrap().len() as u64, n);
    }
    fleet.stop();
}

#[test]
fn tb_mock_serves_mqtt_when_asked() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ofmon"))
        .args(["tb-mock", "--port", "0", "--mqtt-port", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut gateway = None;
    for l in lines.take(8) {
        let l = l.unwrap();
        if l.starts_with("gateway:") {
            gateway = Some(l);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = gateway.expect("a gateway line");
    let url = line.rsplit(' ').next().unwrap();
    assert!(url.starts_with("mqtt://127.0.0.1:"), "{line}");
    assert!(line.contains("ofmon pair --gateway"), "{line}");
}
