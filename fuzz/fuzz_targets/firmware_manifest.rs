//! `torture::smoke::firmware_manifest` on fuzzer input (the same entry point the stable
//! smoke test drives in CI).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    torture::smoke::firmware_manifest(data);
});
