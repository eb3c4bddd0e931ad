//! The nmcli backend against a fake `nmcli` that records its arguments.

use std::os::unix::fs::PermissionsExt;

use collector::discovery::{Discovery, NmcliDiscovery};
use protocol::{FleetSecret, Mac};

#[test]
fn scans_joins_with_derived_password_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("args.log");
    let script = dir.path().join("nmcli");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
echo "$*" >> {log}
case "$*" in
  *"wifi list"*) printf 'HomeNet\nOFMon-A0B1C2D3E4F5\nSEM-a0\\:b1\\:c2\\:d3\\:e4\\:f6\nOFMon-A0B1C2D3E4F5\nOFMon-XYZ\n' ;;
  *"show --active"*) printf 'Home\\:Net:802-11-wireless\nlo:loopback\n' ;;
esac
exit 0
"#,
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let fleet = FleetSecret::from_bytes([3; 32]);
    let mut nm = NmcliDiscovery::new(Some(fleet.clone()));
    nm.program = script.display().to_string();
    let found = nm.scan().unwrap();
    let ids: Vec<_> = found.iter().map(|f| f.id.clone().unwrap()).collect();
    assert_eq!(ids, vec!["A0B1C2D3E4F5", "A0B1C2D3E4F6"]);

    let url = nm.join(&found[0]).unwrap();
    assert_eq!(url, "http://10.0.0.1");
    nm.leave().unwrap();

    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let pw = fleet
        .device_keys(&Mac::parse("A0B1C2D3E4F5").unwrap())
        .ap_password;
    assert_eq!(lines[0], "-t -f SSID device wifi list --rescan yes");
    assert_eq!(lines[1], "-t -f NAME,TYPE connection show --active");
    assert_eq!(
        lines[2],
        format!(
            "device wifi connect OFMon-A0B1C2D3E4F5 password {}",
            pw.as_str()
        )
    );
    assert_eq!(lines[3], "connection up id Home:Net");
    assert_eq!(lines.len(), 4);
}

#[test]
fn failing_nmcli_is_an_error_not_a_panic() {
    let mut nm = NmcliDiscovery::new(None);
    nm.program = "/nonexistent/nmcli".into();
    assert!(nm.scan().is_err());
}
