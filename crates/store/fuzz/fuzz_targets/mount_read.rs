//! Mount a region built from fuzzer bytes (tiled over 12 sectors, so both
//! the state area and log headers see them), read everything, append, read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::emulated::EmulatedFlash;
use store::{Config, Cursor, Record, Store};

fuzz_target!(|data: &[u8]| {
    let size = 12 * 4096;
    let mut image = vec![0xFFu8; size];
    if !data.is_empty() {
        // first half of the input lands at sector starts, the rest is tiled
        for (i, b) in image.iter_mut().enumerate() {
            let at = (i % 4096) + (i / 4096) * 7;
            *b = data[at % data.len()];
        }
    }
    let cfg = Config { offset: 0, size: size as u32, state_sectors: 2 };
    let Ok((mut s, _)) = Store::<EmulatedFlash, 16>::mount(EmulatedFlash::from_image(image), cfg) else {
        return;
    };
    let mut c = Cursor::new(0);
    let mut n = 0;
    let mut prev = 0;
    while let Ok(Some(r)) = s.read(&mut c) {
        assert!(r.seq > prev);
        prev = r.seq;
        n += 1;
        assert!(n < 100_000);
    }
    let seq = s.append(&Record::default()).expect("append after mount");
    assert!(seq > prev);
});
