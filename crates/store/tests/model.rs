//! Property test: random append / ack / read / remount / state sequences
//! against a simple in-memory model.
mod common;

use common::{Gen, cfg};
use proptest::prelude::*;
use store::emulated::EmulatedFlash;
use store::{Cursor, Flags, Record, Store};

type S = Store<EmulatedFlash, 64>;

#[derive(Clone, Debug)]
enum Op {
    Append(u8),
    Ack(u16),
    Read(u16),
    Remount,
    State(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u8..40).prop_map(Op::Append),
        1 => any::<u16>().prop_map(Op::Ack),
        2 => any::<u16>().prop_map(Op::Read),
        1 => Just(Op::Remount),
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::State),
    ]
}

fn check_read(s: &mut S, model: &[Record], acked: u64, after: u64) {
    let mut c = Cursor::new(after);
    let mut got = Vec::new();
    while let Some(r) = s.read(&mut c).unwrap() {
        got.push(r);
    }
    let mut prev = after;
    for r in &got {
        assert!(r.seq > prev);
        prev = r.seq;
        let orig = &model[(r.seq - 1) as usize];
        if r.flags.has(Flags::MERGED) {
            assert_eq!(r.circuits[0].import_mwh, orig.circuits[0].import_mwh);
        } else {
            assert_eq!(r, orig);
        }
    }
    // all un-acked records after `after` are there (exact or merged)
    let mut it = got.iter().peekable();
    for m in model.iter().filter(|m| m.seq > after.max(acked)) {
        while it.peek().is_some_and(|r| r.seq < m.seq) {
            it.next();
        }
        let r = it.peek().expect("record lost");
        assert!(r.seq == m.seq || r.flags.has(Flags::MERGED));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn store_matches_model(sectors in prop_oneof![Just(9u32), Just(14), Just(30)], ops in proptest::collection::vec(op(), 1..60)) {
        let (mut s, _) = S::mount(EmulatedFlash::new(sectors as usize * 4096), cfg(sectors)).unwrap();
        let mut g = Gen::new(u64::from(sectors));
        let mut model: Vec<Record> = Vec::new();
        let mut acked = 0u64;
        let mut blob = Vec::new();
        for op in ops {
            match op {
                Op::Append(n) => for _ in 0..u32::from(n) * 10 {
                    let mut r = g.interval();
                    r.seq = s.append(&r).unwrap();
                    prop_assert_eq!(r.seq, model.len() as u64 + 1);
                    model.push(r);
                },
                Op::Ack(a) => {
                    let a = u64::from(a) % (model.len() as u64 + 2);
                    s.ack(a).unwrap();
                    acked = acked.max(a.min(model.len() as u64));
                    prop_assert_eq!(s.acked(), acked);
                }
                Op::Read(a) => check_read(&mut s, &model, acked, u64::from(a) % (model.len() as u64 + 2)),
                Op::Remount => {
                    let (s2, st) = S::mount(s.into_flash(), cfg(sectors)).unwrap();
                    prop_assert_eq!(st, store::MountStatus::Clean);
                    s = s2;
                    g.reboot();
                }
                Op::State(b) => {
                    s.write_state(&b).unwrap();
                    blob = b;
                }
            }
            let mut out = [0u8; store::MAX_STATE];
            let n = s.read_state(&mut out).unwrap();
            prop_assert_eq!(&out[..n], &blob[..]);
        }
        check_read(&mut s, &model, acked, 0);
    }
}
