//! Power cuts during OTA (short profile): every cut leaves a bootable,
//! intact image — the new one only once its activation completed — no
//! committed record is lost, and the retried upload succeeds.

#[test]
fn power_cuts_during_ota_leave_a_valid_image_and_the_store_intact() {
    let o = torture::ota::OtaCutOptions::short();
    let rep = torture::ota::run(&o);
    eprintln!("{}", serde_json::to_string_pretty(&rep).unwrap());
    assert!(rep.problems.is_empty(), "{:#?}", rep.problems);
    assert!(rep.ok(), "{rep:?}");
    assert!(rep.cuts >= u64::from(o.cuts));
    // The cuts reached every phase and every kind of flash operation.
    assert!(rep.during_stream > 0 && rep.during_activate > 0, "{rep:?}");
    assert!(rep.during_trial + rep.after_activate > 0, "{rep:?}");
    assert!(
        rep.slot_erase_cuts > 0 && rep.slot_program_cuts > 0,
        "{rep:?}"
    );
    assert!(rep.bootstate_cuts > 0, "{rep:?}");
    assert!(rep.retries > 0 && rep.retries_ok == rep.retries, "{rep:?}");
    assert!(rep.committed > 0 && rep.lost == 0, "{rep:?}");
    assert!(rep.records_on_flash > 0);
}
