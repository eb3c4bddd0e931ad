//! One HTTP request (parsed leniently from the input) through the device
//! core's route table and handlers, on one long-lived device, so state built
//! up by earlier inputs (pairing, config, acks) is exercised too.
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use torture::smoke::{SmokeDevice, device_request};

static DEVICE: Mutex<Option<SmokeDevice>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = DEVICE.lock().unwrap_or_else(|p| p.into_inner());
    let dev = guard.get_or_insert_with(SmokeDevice::new);
    device_request(dev, data);
});
