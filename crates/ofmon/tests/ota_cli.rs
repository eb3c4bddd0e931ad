//! `ofmon firmware-key`, `ofmon sign-firmware`, `ofmon ota` as an operator
//! runs them, against the simulator over loopback HTTP.

use std::path::Path;
use std::process::{Command, Output};

use protocol::firmware::FirmwareVersion;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ofmon"))
        .args(args)
        .env_remove("OFMON_HOME")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: &Output, reason: &str) {
    assert!(!o.status.success(), "{}", text(o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(reason),
        "wanted {reason:?}: {}",
        text(o)
    );
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn firmware_of(url: &str) -> String {
    let text = ureq::get(&format!("{url}/api/v1/info"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    body["firmware"].as_str().unwrap().to_string()
}

fn sign(key: &Path, image: &Path, version: &str, board: &str, out: &Path) {
    ok(&run(&[
        "sign-firmware",
        "--key",
        p(key),
        "--image",
        p(image),
        "--version",
        version,
        "--board",
        board,
        "--output",
        p(out),
    ]));
}

#[test]
fn key_sign_and_ota_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let key = dir.path().join("fw.key");

    // A new key; its public key goes to the simulator's home.
    let pk = ok(&run(&["firmware-key", "--output", p(&key)]));
    let pk = pk.trim();
    assert_eq!(pk.len(), 64, "{pk}");
    std::fs::write(home.join(sim::firmware::PUBKEY_FILE), pk).unwrap();
    refused(
        &run(&["firmware-key", "--output", p(&key)]),
        "never overwritten",
    );
    assert_eq!(ok(&run(&["firmware-key", "--key", p(&key)])).trim(), pk);

    // Sign a sim image, 200 KB.
    let v2 = FirmwareVersion::new(0, 2, 0);
    let image = dir.path().join("img.bin");
    std::fs::write(&image, sim::firmware::image(v2, 200_000, false)).unwrap();
    let up = dir.path().join("up.ofmf");
    sign(&key, &image, "0.2.0", "sim", &up);
    let file = std::fs::read(&up).unwrap();
    assert_eq!(file.len(), 200_000 + protocol::firmware::MANIFEST_LEN);
    let pubkey = protocol::firmware::FirmwarePublicKey::from_hex(pk).unwrap();
    let m =
        protocol::firmware::verify_manifest(&pubkey, &file, FirmwareVersion::new(0, 1, 0), "sim")
            .unwrap();
    assert_eq!(m.version, v2);
    refused(
        &run(&[
            "sign-firmware",
            "--key",
            p(&key),
            "--image",
            p(&image),
            "--version",
            "0.2",
            "--output",
            p(&up),
        ]),
        "MAJOR.MINOR.PATCH",
    );

    // Real time: an accelerated device clock, followed by the collector's
    // signing, would push the persisted auth floor into the future, and
    // after the OTA reboot (clock unset) real-time requests would be stale.
    let fleet = sim::Fleet::start(sim::SimOptions {
        base_port: 0,
        home: home.clone(),
        speed: 1.0,
        interval_s: 10,
        ..sim::SimOptions::default()
    })
    .unwrap();
    let d = fleet.devices()[0].clone();
    let h = p(&home);
    // Unpaired: refused before sending.
    refused(&run(&["ota", &d.id, p(&up), "--home", h]), "not paired");
    ok(&run(&["pair", &d.id, "--token", "tok", "--home", h]));

    // The upload: accepted, the device comes back with 0.2.0.
    let out = ok(&run(&["ota", &d.id, p(&up), "--home", h]));
    assert!(out.contains("now running firmware 0.2.0"), "{out}");
    assert_eq!(firmware_of(&d.url), "0.2.0");

    // Same version again: caught locally, nothing sent; with --force the
    // device refuses it.
    refused(
        &run(&["ota", &d.id, p(&up), "--home", h]),
        "only newer versions",
    );
    refused(
        &run(&["ota", &d.url, p(&up), "--home", h, "--force"]),
        "not newer than running 0.2.0",
    );

    // Wrong board (by URL this time).
    let v3 = FirmwareVersion::new(0, 3, 0);
    std::fs::write(&image, sim::firmware::image(v3, 50_000, false)).unwrap();
    let wrong = dir.path().join("esp.ofmf");
    sign(&key, &image, "0.3.0", "esp32c3", &wrong);
    refused(
        &run(&["ota", &d.url, p(&wrong), "--home", h, "--force"]),
        "another board",
    );

    // Signed with another key.
    let other = dir.path().join("other.key");
    ok(&run(&["firmware-key", "--output", p(&other)]));
    let bad = dir.path().join("bad.ofmf");
    sign(&other, &image, "0.3.0", "sim", &bad);
    refused(
        &run(&["ota", &d.id, p(&bad), "--home", h]),
        "bad firmware signature",
    );

    // Truncated file: caught locally; sent anyway, the device refuses it.
    let good3 = dir.path().join("good3.ofmf");
    sign(&key, &image, "0.3.0", "sim", &good3);
    let bytes = std::fs::read(&good3).unwrap();
    let cut = dir.path().join("cut.ofmf");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    refused(&run(&["ota", &d.id, p(&cut), "--home", h]), "damaged");
    refused(
        &run(&["ota", &d.id, p(&cut), "--home", h, "--force"]),
        "truncated",
    );

    assert_eq!(firmware_of(&d.url), "0.2.0", "no refusal changed the image");
    let out = ok(&run(&["ota", &d.id, p(&good3), "--home", h]));
    assert!(out.contains("now running firmware 0.3.0"), "{out}");
    fleet.stop();
}
