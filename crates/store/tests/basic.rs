//! Behaviour tests: mount, append, read, ack, state, bad input.
mod common;

use common::{Gen, blank, cfg};
use store::emulated::{EmulatedFlash, Rng};
use store::record::Decoder;
use store::{Cursor, FormatReason, MountStatus, Store};

type S = Store<EmulatedFlash, 64>;

fn read_all(s: &mut S, after: u64) -> Vec<store::Record> {
    let mut c = Cursor::new(after);
    let mut v = Vec::new();
    while let Some(r) = s.read(&mut c).unwrap() {
        v.push(r);
    }
    v
}

#[test]
fn blank_formats_then_round_trips() {
    let (mut s, st) = S::mount(blank(40), cfg(40)).unwrap();
    assert_eq!(
        st,
        MountStatus::Formatted {
            reason: FormatReason::Blank
        }
    );
    let mut g = Gen::new(1);
    let mut want = Vec::new();
    for _ in 0..2000 {
        let mut r = g.interval();
        r.seq = s.append(&r).unwrap();
        want.push(r);
    }
    assert_eq!(read_all(&mut s, 0), want);
    let (mut s, st) = S::mount(s.into_flash(), cfg(40)).unwrap();
    assert_eq!(st, MountStatus::Clean);
    assert_eq!(read_all(&mut s, 0), want);
    assert_eq!(read_all(&mut s, 1500), want[1500..].to_vec());
    let mut r = g.interval();
    r.seq = s.append(&r).unwrap();
    assert_eq!(r.seq, 2001);
}

#[test]
fn raw_entries_decode_on_the_wire() {
    let (mut s, _) = S::mount(blank(40), cfg(40)).unwrap();
    let mut g = Gen::new(2);
    let mut want = Vec::new();
    for _ in 0..1500 {
        let mut r = g.interval();
        r.seq = s.append(&r).unwrap();
        want.push(r);
    }
    let after = 700;
    let mut cur = Cursor::new(after);
    let mut wire = Vec::new();
    let mut buf = [0u8; 1000];
    loop {
        let n = s.read_raw(&mut cur, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&buf[..n]);
    }
    let got: Vec<_> = store::record::Entries::new(&wire, after)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(got, want[after as usize..].to_vec());
    // streaming decode in small pieces
    let mut d = Decoder::new(after);
    let mut at = 0;
    let mut n = 0;
    while let Some(x) = d.decode(&wire[at..]).unwrap() {
        at += x.consumed;
        n += usize::from(x.record.is_some());
    }
    assert_eq!(n, want.len() - after as usize);
}

#[test]
fn ack_reclaims_oldest_only_when_needed_and_merges_when_not_acked() {
    let (mut s, _) = S::mount(blank(12), cfg(12)).unwrap();
    let mut g = Gen::new(3);
    let mut want = Vec::new();
    for _ in 0..400 {
        let mut r = g.interval();
        r.seq = s.append(&r).unwrap();
        want.push(r);
    }
    s.ack(300).unwrap();
    assert_eq!(s.acked(), 300);
    // acked records are still readable
    assert_eq!(read_all(&mut s, 0).len(), 400);
    let st = s.stats();
    eprintln!(
        "bytes/record {}",
        st.payload_bytes as f64 / st.appended as f64
    );
    for _ in 0..20_000 {
        let mut r = g.interval();
        r.seq = s.append(&r).unwrap();
        want.push(r);
    }
    let st = s.stats();
    assert!(st.merges > 0, "{st:?}");
    let got = read_all(&mut s, 0);
    // the newest records are intact, merged ones keep exact registers
    let last = *got.last().unwrap();
    assert_eq!(last, *want.last().unwrap());
    let mut prev = 0;
    for r in &got {
        assert!(r.seq > prev);
        prev = r.seq;
        let orig = want[(r.seq - 1) as usize];
        if r.flags.has(store::Flags::MERGED) {
            assert_eq!(r.circuits[0].import_mwh, orig.circuits[0].import_mwh);
            assert_eq!(r.circuits[2].export_mwh, orig.circuits[2].export_mwh);
            assert!(r.duration_ms > orig.duration_ms);
        } else {
            assert_eq!(*r, orig);
        }
    }
    let (mut s2, st) = S::mount(s.into_flash(), cfg(12)).unwrap();
    assert_eq!(st, MountStatus::Clean);
    assert_eq!(read_all(&mut s2, 0), got);
    assert_eq!(s2.acked(), 300);
}

#[test]
fn state_blob_is_kept_across_mounts_and_acks() {
    let (mut s, _) = S::mount(blank(16), cfg(16)).unwrap();
    let mut out = [0u8; 1024];
    assert_eq!(s.read_state(&mut out).unwrap(), 0);
    for i in 0..50u32 {
        let blob: Vec<u8> = (0..(i * 37 % 1000)).map(|x| (x ^ i) as u8).collect();
        s.write_state(&blob).unwrap();
        s.append(&Gen::new(9).interval()).unwrap();
        s.ack(u64::from(i)).unwrap();
        let (s2, _) = S::mount(s.into_flash(), cfg(16)).unwrap();
        s = s2;
        let n = s.read_state(&mut out).unwrap();
        assert_eq!(&out[..n], &blob[..]);
    }
    assert!(s.write_state(&[0; 1025]).is_err());
}

#[test]
fn seqs_never_repeat_after_reset() {
    let (mut s, _) = S::mount(blank(16), cfg(16)).unwrap();
    let mut g = Gen::new(4);
    for _ in 0..100 {
        s.append(&g.interval()).unwrap();
    }
    s.reset_log().unwrap();
    assert!(read_all(&mut s, 0).is_empty());
    let (mut s, _) = S::mount(s.into_flash(), cfg(16)).unwrap();
    assert!(read_all(&mut s, 0).is_empty());
    assert_eq!(s.append(&g.interval()).unwrap(), 101);
}

#[test]
fn bad_input_mounts_with_clear_status() {
    for (i, fill) in [0x00u8, 0x55, 0xAA].iter().enumerate() {
        let f = EmulatedFlash::from_image(vec![*fill; 20 * 4096]);
        let (mut s, st) = S::mount(f, cfg(20)).unwrap();
        assert_eq!(
            st,
            MountStatus::Formatted {
                reason: FormatReason::NoValidStore
            },
            "{i}"
        );
        assert!(read_all(&mut s, 0).is_empty());
        // and it works as a store afterwards (erase-before-use)
        let mut g = Gen::new(5);
        for _ in 0..500 {
            s.append(&g.interval()).unwrap();
        }
        assert_eq!(read_all(&mut s, 0).len(), 500);
    }
    let mut rng = Rng::new(77);
    for _ in 0..20 {
        let img: Vec<u8> = (0..20 * 4096).map(|_| rng.next_u64() as u8).collect();
        let (mut s, st) = S::mount(EmulatedFlash::from_image(img), cfg(20)).unwrap();
        assert!(matches!(st, MountStatus::Formatted { .. }), "{st:?}");
        assert!(read_all(&mut s, 0).is_empty());
    }
}

#[test]
fn wear_is_even_after_many_cycles() {
    let (mut s, _) = S::mount(blank(24), cfg(24)).unwrap();
    let mut g = Gen::new(6);
    for i in 0..60_000u64 {
        let seq = s.append(&g.interval()).unwrap();
        if i % 500 == 0 {
            s.ack(seq).unwrap();
        }
    }
    let counts = &s.flash().erase_counts()[2..];
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(*min > 5, "{counts:?}");
    assert!(*max as f64 / *min as f64 <= 2.0, "{counts:?}");
}
