//! A device at high speed with many power cuts keeps every committed record,
//! and its energy registers continue across every cut.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn every_committed_record_survives_many_cuts_with_energy_continuity() {
    let (fleet, home) = start("powercut", |o| {
        o.speed = 5000.0;
        o.interval_s = 10;
        o.cut_every_s = Some(60.0);
        o.profile = sim::ProfileChoice::Commercial;
    });
    let d = fleet.devices()[0].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while fleet.stats(0).unwrap().cuts < 60 {
        assert!(
            std::time::Instant::now() < deadline,
            "too slow: {:?}",
            fleet.stats(0)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    fleet.pause(true);
    std::thread::sleep(Duration::from_millis(100));
    let stats = fleet.stats(0).unwrap();
    eprintln!("{stats:?}");
    eprintln!(
        "sustained {:.0} sample sets/s ({:.0}x real time at 500/s)",
        stats.samples as f64 / stats.real_elapsed_s,
        stats.samples as f64 / stats.real_elapsed_s / 500.0
    );

    let mut c = Client::new(&home, &d.url, &d.id);
    // The device may be between boots for a moment.
    let mut paired = false;
    for _ in 0..100 {
        let r = c.pair();
        if r.status == 200 {
            paired = true;
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(paired);
    let records = c.records_json(0);
    let committed = fleet.committed(0);
    assert!(committed.len() > 100, "only {} records", committed.len());

    // Every record whose append returned Ok is there, with its energy.
    let by_seq: std::collections::HashMap<u64, &serde_json::Value> = records
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r))
        .collect();
    for (seq, import) in &committed {
        let r = by_seq
            .get(seq)
            .unwrap_or_else(|| panic!("committed seq {seq} lost"));
        assert_eq!(
            r["circuits"][0]["import_mwh"].as_u64().unwrap(),
            import[0],
            "seq {seq}"
        );
    }
    // Seqs strictly increase without gaps; energy continues across boots.
    let mut boots = std::collections::HashSet::new();
    for w in records.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert_eq!(b["seq"].as_u64().unwrap(), a["seq"].as_u64().unwrap() + 1);
        boots.insert(b["boot_id"].as_u64().unwrap());
        let ea = a["circuits"][0]["import_mwh"].as_u64().unwrap() as f64;
        let eb = b["circuits"][0]["import_mwh"].as_u64().unwrap() as f64;
        let p_w = b["circuits"][0]["real_power_dw"].as_i64().unwrap() as f64 / 10.0;
        let dur_h = b["duration_ms"].as_u64().unwrap() as f64 / 3_600_000.0;
        let expect = p_w.max(0.0) * dur_h * 1000.0;
        assert!(
            (eb - ea - expect).abs() <= 2.5 + 0.01 * expect,
            "seq {}: energy step {} mWh, interval says {expect:.1} mWh",
            b["seq"],
            eb - ea
        );
        if a["boot_id"] == b["boot_id"] {
            assert!(b["uptime_ms"].as_u64() > a["uptime_ms"].as_u64());
        }
    }
    assert!(boots.len() >= 50, "records from only {} boots", boots.len());

    // The events show the power losses.
    let ev = c.call("GET", "/api/v1/events", b"", &[]);
    assert_eq!(ev.status, 200);
    let n_loss = ev.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"]["type"] == "power_loss")
        .count();
    assert!(n_loss >= 5, "{}", ev.text());
    fleet.stop();
}
