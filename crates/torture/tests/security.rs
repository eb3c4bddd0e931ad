//! Security campaign against a simulated device, generated from openapi.yaml.

use std::path::PathBuf;

fn spec() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml"))
}

#[test]
fn spec_parsing_finds_every_protected_route_of_the_router() {
    let text = std::fs::read_to_string(spec()).unwrap();
    let ops = torture::security::operations(&text).unwrap();
    for r in device::routes::ROUTES {
        let op = ops
            .iter()
            .find(|o| o.method == r.method.as_str() && o.path == r.path)
            .unwrap_or_else(|| panic!("{} {} not in the spec", r.method.as_str(), r.path));
        let protected = matches!(
            r.access,
            device::routes::Access::Signed | device::routes::Access::OpenWhileUnpaired
        );
        assert_eq!(op.protected, protected, "{op:?}");
        assert_eq!(
            op.open_while_unpaired,
            matches!(r.access, device::routes::Access::OpenWhileUnpaired),
            "{op:?}"
        );
    }
    assert!(ops.iter().filter(|o| o.protected).count() >= 10);
    // Bodies are generated from the schemas' required fields.
    let time = ops.iter().find(|o| o.path == "/api/v1/time").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&time.body).unwrap();
    assert!(
        v.get("unix_ms").is_some() && v.get("uncertainty_ms").is_some(),
        "{v}"
    );
}

#[test]
fn every_protected_route_refuses_every_attack() {
    let home = tempfile::tempdir().unwrap();
    let rep = torture::security::run(&spec(), home.path()).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&rep).unwrap());
    assert!(rep.failures.is_empty(), "{:#?}", rep.failures);
    assert!(rep.ok());
    assert!(rep.protected.len() >= 10, "{:?}", rep.protected);
    assert!(rep.probes >= rep.protected.len() * 10);
}

#[test]
fn a_devices_secrets_do_not_reveal_another_devices_keys() {
    let fleet = protocol::FleetSecret::from_bytes([0x11; 32]);
    let k = torture::security::key_isolation(&fleet, 128);
    eprintln!("{k:?}");
    assert!(k.ok(), "{k:?}");
    assert_eq!(k.pairs, 128 * 127);
}
