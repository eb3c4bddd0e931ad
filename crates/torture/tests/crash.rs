//! kill -9 of `ofmon collect` at random moments (CI profile: 20 kills).

#[test]
fn kill_9_during_collect_loses_and_duplicates_nothing() {
    let ofmon = torture::crash::ofmon_binary().unwrap();
    let home = tempfile::tempdir().unwrap();
    let rep =
        torture::crash::run(home.path(), &ofmon, &torture::crash::CrashOptions::short()).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&rep).unwrap());
    assert!(rep.ok(), "{rep:#?}");
    assert_eq!(rep.kills, 20);
    assert!(rep.device_records > 2000);
}
