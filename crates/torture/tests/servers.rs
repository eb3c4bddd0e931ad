//! Bad servers (500, 401, 413, slow, dropped, down) and a full disk, with
//! the real `ofmon sync` / `ofmon collect` (CI profile).

#[test]
fn bad_servers_and_a_full_disk_lose_nothing_and_say_what_to_do() {
    let ofmon = torture::crash::ofmon_binary().unwrap();
    let work = tempfile::tempdir().unwrap();
    let rep = torture::servers::run(
        work.path(),
        &ofmon,
        &torture::servers::ServerOptions::short(),
    )
    .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&rep).unwrap());
    for c in &rep.cases {
        assert!(c.ok(), "{c:#?}");
    }
    assert_eq!(rep.cases.len(), 9);
    if let Some(f) = &rep.full_disk {
        assert!(f.ok(), "{f:#?}");
    } else {
        eprintln!("full disk not tested: {:?}", rep.full_disk_skipped);
    }
    assert!(rep.ok());
    let md = torture::servers::render(&rep);
    eprintln!("{md}");
    assert_eq!(
        md.matches("**met**").count(),
        9 + usize::from(rep.full_disk.is_some())
    );
    assert!(!md.contains("NOT MET"));
}
