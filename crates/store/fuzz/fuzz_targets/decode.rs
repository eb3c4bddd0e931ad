//! Decode arbitrary wire bytes: never panics, never loops.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for r in store::record::Entries::new(data, 0).take(10_000) {
        if r.is_err() {
            break;
        }
    }
});
