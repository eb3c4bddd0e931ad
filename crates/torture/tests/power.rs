//! Short power-cut campaign on the device core (CI profile).

#[test]
fn random_power_cuts_lose_nothing_committed() {
    let rep = torture::power::run(&torture::power::PowerOptions::short());
    eprintln!("{rep:#?}");
    assert!(rep.ok(), "{:#?}", rep.problems);
    assert_eq!(rep.cuts, 500);
    assert!(rep.erase_cuts >= 50, "erase cuts {}", rep.erase_cuts);
    assert!(
        rep.cuts_during_boot >= 5,
        "boot cuts {}",
        rep.cuts_during_boot
    );
    assert!(rep.committed > 2_000);
    assert!(rep.merged > 0, "no merge exercised");
    assert!(rep.energy_steps_checked > 1_000);
    assert!(rep.sim_days > 7.0, "{} days", rep.sim_days);
}

#[test]
fn mount_of_a_full_partition_reads_a_bounded_amount() {
    let m = torture::power::mount_worst_case(130_000);
    eprintln!("{m:#?}");
    assert_eq!(m.appended, 130_000);
    assert!(m.clean_mount_bytes > 0 && m.torn_mount_bytes > 0);
    // A mount must not read the whole partition.
    assert!(m.torn_mount_bytes < m.region_bytes / 4, "{m:?}");
}
