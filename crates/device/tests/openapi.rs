//! `openapi.yaml` and the router's route table describe the same API.

use std::collections::BTreeSet;

use device::routes::{Access, ROUTES};

/// (method, path) → declared status codes, from the spec's `paths:` block
/// (two-space path keys, four-space methods, eight-space status codes).
fn spec_operations() -> Vec<(String, String, BTreeSet<String>)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml"))
        .expect("openapi.yaml at the repository root");
    let mut ops = Vec::new();
    let mut in_paths = false;
    let mut path = String::new();
    for line in text.lines() {
        if line == "paths:" {
            in_paths = true;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = format!("/{}", p.trim_end_matches(':'));
        } else if let Some(m) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let m = m.trim_end_matches(':');
            if ["get", "post", "put", "delete", "patch"].contains(&m) {
                ops.push((m.to_uppercase(), path.clone(), BTreeSet::new()));
            }
        } else if let Some(code) = line.strip_prefix("        \"")
            && let Some(code) = code.get(..3)
            && let Some(op) = ops.last_mut()
        {
            op.2.insert(code.to_string());
        }
    }
    ops
}

#[test]
fn every_route_is_in_the_spec_and_vice_versa() {
    let spec = spec_operations();
    let spec_set: BTreeSet<(String, String)> = spec
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
        .collect();
    assert_eq!(
        spec.len(),
        spec_set.len(),
        "duplicate operations in openapi.yaml"
    );
    for r in &routes {
        assert!(
            spec_set.contains(r),
            "route {r:?} missing from openapi.yaml"
        );
    }
    for s in &spec_set {
        assert!(
            routes.contains(s),
            "openapi.yaml documents {s:?}, which the router does not serve"
        );
    }
}

#[test]
fn the_spec_declares_the_refusals_each_route_can_give() {
    let spec = spec_operations();
    for r in ROUTES {
        let codes = &spec
            .iter()
            .find(|(m, p, _)| m == r.method.as_str() && p == r.path)
            .expect("in spec")
            .2;
        assert!(codes.contains("200"), "{} {}", r.method.as_str(), r.path);
        if matches!(r.access, Access::Signed | Access::OpenWhileUnpaired) {
            assert!(
                codes.contains("401"),
                "{} {} lacks 401",
                r.method.as_str(),
                r.path
            );
        }
        if r.max_body > 0 {
            assert!(
                codes.contains("413"),
                "{} {} lacks 413",
                r.method.as_str(),
                r.path
            );
        }
    }
}
