//! Power-cut campaign: random operations with a power cut injected at a
//! random program or erase (during appends, merges, sector reclaim, acks,
//! state writes, log resets and mount repairs), then remount and check:
//!
//! - every record whose append returned `Ok` and is not acknowledged is
//!   present and intact (or folded into a merged record with exact registers);
//! - seqs strictly increase and never repeat; no record that was never
//!   appended is returned;
//! - the state blob and the ack are either the old or the new version.
//!
//! Release mode runs 10,000 cuts:
//! `cargo test --release -p store --test powercut`; debug mode runs a short
//! version so the default test run stays quick.
mod common;

use std::collections::BTreeMap;

use common::{Gen, cfg};
use store::emulated::{CutKind, EmulatedFlash, Rng};
use store::{Cursor, Flags, Record, Store};

type S = Store<EmulatedFlash, 64>;

#[derive(Clone, Debug)]
enum Op {
    Append(Record),
    Ack(u64),
    State(Vec<u8>),
    Reset,
    Mount,
}

#[derive(Default)]
struct Model {
    committed: BTreeMap<u64, Record>,
    acked: u64,
    blob: Vec<u8>,
    max_seen: u64,
}

#[derive(Default, Debug)]
struct Tally {
    cuts: u64,
    erase_cuts: u64,
    program_cuts: u64,
    during: [u64; 5],
    merges_seen: u64,
    merged_records_seen: u64,
    recovered: u64,
}

fn read_all(s: &mut S) -> Vec<Record> {
    let mut c = Cursor::new(0);
    let mut v = Vec::new();
    while let Some(r) = s.read(&mut c).expect("read") {
        v.push(r);
    }
    v
}

/// Check the mounted store against the model and fold the in-flight op in.
fn verify(s: &mut S, m: &mut Model, inflight: Option<&Op>, ctx: &str) -> u64 {
    let got = read_all(s);
    // acked: old or new
    let acked = s.acked();
    match inflight {
        Some(Op::Ack(a)) if acked == (*a).min(m.max_seen) || acked == m.acked => {}
        Some(Op::Reset) => {}
        _ => assert_eq!(acked, m.acked, "{ctx}: ack changed"),
    }
    // reset: took effect or not
    if let Some(Op::Reset) = inflight
        && acked != m.acked
        && got.iter().all(|r| r.seq > acked)
    {
        m.committed.clear();
    }
    m.acked = acked;
    // state blob: old or new
    let mut buf = [0u8; store::MAX_STATE];
    let n = s.read_state(&mut buf).expect("state");
    let blob = &buf[..n];
    match inflight {
        Some(Op::State(b)) if blob == &b[..] => m.blob = b.clone(),
        _ => assert_eq!(
            blob,
            &m.blob[..],
            "{ctx}: state blob is neither old nor new"
        ),
    }
    // in-flight record: present or absent
    if let Some(Op::Append(r)) = inflight
        && got.iter().any(|g| g.seq == r.seq)
    {
        m.committed.insert(r.seq, *r);
    }
    // every returned record is one we appended, seqs strictly increase
    let mut prev = 0;
    for r in &got {
        assert!(r.seq > prev, "{ctx}: seq {} after {}", r.seq, prev);
        prev = r.seq;
        let orig = m
            .committed
            .get(&r.seq)
            .unwrap_or_else(|| panic!("{ctx}: unknown record seq {}", r.seq));
        if r.flags.has(Flags::MERGED) {
            for (a, b) in r.circuits().iter().zip(orig.circuits()) {
                assert_eq!(
                    (a.import_mwh, a.export_mwh),
                    (b.import_mwh, b.export_mwh),
                    "{ctx}: merged registers"
                );
            }
            assert!(r.duration_ms >= orig.duration_ms, "{ctx}: merged duration");
        } else {
            assert_eq!(r, orig, "{ctx}: record {} corrupted", r.seq);
        }
    }
    // every committed un-acked record is present or merged into a later one
    let mut it = got.iter().peekable();
    for (&seq, _) in m.committed.range(acked + 1..) {
        while it.peek().is_some_and(|r| r.seq < seq) {
            it.next();
        }
        let r = it
            .peek()
            .unwrap_or_else(|| panic!("{ctx}: committed record {seq} lost"));
        assert!(
            r.seq == seq || r.flags.has(Flags::MERGED),
            "{ctx}: committed record {seq} lost (next {})",
            r.seq
        );
    }
    // forget what can no longer be read
    let keep: std::collections::BTreeSet<u64> = got.iter().map(|r| r.seq).collect();
    m.committed.retain(|s, _| keep.contains(s) || *s > acked);
    if let Some(last) = got.last() {
        m.max_seen = m.max_seen.max(last.seq);
    }
    assert!(
        s.next_seq() > m.max_seen,
        "{ctx}: next seq {} would repeat {}",
        s.next_seq(),
        m.max_seen
    );
    assert!(
        m.committed.keys().all(|&k| k < s.next_seq()),
        "{ctx}: next seq repeats a committed one"
    );
    got.iter().filter(|r| r.flags.has(Flags::MERGED)).count() as u64
}

fn campaign(seed: u64, sectors: u32, cuts: u64, tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    let mut g = Gen::new(seed);
    let mut m = Model::default();
    let mut flash = EmulatedFlash::new(sectors as usize * 4096);
    let mut inflight: Option<Op> = None;
    let mut done = 0;
    while done < cuts {
        // occasionally cut during mount's own repairs
        if inflight.is_some() && rng.below(8) == 0 {
            flash.cut_after(1 + rng.below(3), rng.next_u64());
            match S::mount(flash, cfg(sectors)) {
                Ok((s, _)) => flash = s.into_flash(),
                Err(e) => flash = e.flash,
            }
            if flash.is_cut() {
                tally.during[4] += 1;
                tally.cuts += 1;
                done += 1;
            }
            flash.disarm();
            flash.reboot();
        }
        let ctx = format!("seed {seed} cut {done}");
        let (mut s, status) = S::mount(flash, cfg(sectors)).expect("mount");
        if matches!(status, store::MountStatus::Recovered(_)) {
            tally.recovered += 1;
        }
        tally.merged_records_seen += verify(&mut s, &mut m, inflight.as_ref(), &ctx);
        let mut f = s.into_flash();
        if rng.below(4) == 0 {
            f.cut_at_erase(1 + rng.below(3), rng.next_u64());
        } else {
            f.cut_after(1 + rng.below(400), rng.next_u64());
        }
        let (mut s, _) = S::mount(f, cfg(sectors)).expect("remount");
        // run operations until the power fails
        loop {
            let op = match rng.below(100) {
                0..=87 => Op::Append(g.interval()),
                88 => Op::Ack(m.acked + rng.below(m.max_seen.saturating_sub(m.acked) / 2 + 2)),
                89 => Op::Ack(m.acked + 1),
                90..=95 => {
                    let len = rng.below(store::MAX_STATE as u64 + 1) as usize;
                    Op::State((0..len).map(|_| rng.next_u64() as u8).collect())
                }
                96 if rng.below(20) == 0 => Op::Reset,
                _ => Op::Mount,
            };
            let res = match &op {
                Op::Append(r) => s.append(r).map(|seq| {
                    let mut r = *r;
                    r.seq = seq;
                    m.committed.insert(seq, r);
                    m.max_seen = m.max_seen.max(seq);
                }),
                Op::Ack(a) => s.ack(*a).map(|()| m.acked = s.acked()),
                Op::State(b) => s.write_state(b).map(|()| m.blob = b.clone()),
                Op::Reset => s.reset_log().map(|()| {
                    m.committed.clear();
                    m.acked = s.acked();
                }),
                Op::Mount => {
                    let f = s.into_flash();
                    match S::mount(f, cfg(sectors)) {
                        Ok((s2, _)) => {
                            s = s2;
                            Ok(())
                        }
                        Err(e) => {
                            flash = e.flash;
                            inflight = Some(op);
                            break;
                        }
                    }
                }
            };
            if res.is_err() {
                assert!(s.flash().is_cut(), "{ctx}: error without a cut: {res:?}");
                tally.merges_seen += u64::from(s.stats().merges);
                let mut op = op;
                if let Op::Append(r) = &mut op {
                    r.seq = s.next_seq();
                }
                tally.during[match op {
                    Op::Append(_) => 0,
                    Op::Ack(_) | Op::Reset => 1,
                    Op::State(_) => 2,
                    Op::Mount => 3,
                }] += 1;
                inflight = Some(op);
                flash = s.into_flash();
                break;
            }
        }
        match flash.last_cut() {
            Some(CutKind::Erase) => tally.erase_cuts += 1,
            Some(CutKind::Program) => tally.program_cuts += 1,
            None => {}
        }
        flash.reboot();
        g.reboot();
        tally.cuts += 1;
        done += 1;
    }
    let (mut s, _) = S::mount(flash, cfg(sectors)).expect("final mount");
    verify(&mut s, &mut m, inflight.as_ref(), "final");
}

#[test]
fn power_cut_campaign() {
    let full = !cfg!(debug_assertions);
    let per = if full { 2_500 } else { 150 };
    let mut t = Tally::default();
    for (i, sectors) in [8u32, 12, 24, 40].into_iter().enumerate() {
        campaign(1000 + i as u64, sectors, per, &mut t);
    }
    eprintln!("{t:?}");
    assert!(t.cuts >= 4 * per);
    assert!(
        t.erase_cuts > t.cuts / 10 && t.program_cuts > t.cuts / 2,
        "{t:?}"
    );
    assert!(t.merged_records_seen > 0, "merges exercised: {t:?}");
    assert!(
        t.during[2] > 0 && t.during[1] > 0,
        "cuts during state updates and acks: {t:?}"
    );
}
