//! The bad-input entry points, shared by the cargo-fuzz targets in `fuzz/`
//! (nightly, long profile) and the stable random-bytes smoke in this
//! crate's tests (CI). Each function takes arbitrary bytes and must neither
//! panic nor loop; the invariants it can check, it asserts.

use device::api::Headers;
use device::platform::NoOta;
use device::routes::{Lookup, lookup};
use device::{Device, Options, Service};
use metering::Layout;
use store::emulated::EmulatedFlash;
use store::{Config, Cursor, Record, Store};

/// The store's wire/flash record decoder.
pub fn record_decoder(data: &[u8]) {
    let mut prev = None;
    for r in store::record::Entries::new(data, 0).take(10_000) {
        match r {
            Ok(r) => {
                if let Some(p) = prev {
                    assert!(r.seq > p, "decoder went backwards");
                }
                prev = Some(r.seq);
            }
            Err(_) => break,
        }
    }
}

/// Mount a region built from the bytes, read everything, append, read.
pub fn store_mount_read(data: &[u8]) {
    let size = 12 * 4096;
    let mut image = vec![0xFFu8; size];
    if !data.is_empty() {
        for (i, b) in image.iter_mut().enumerate() {
            let at = (i % 4096) + (i / 4096) * 7;
            *b = data[at % data.len()];
        }
    }
    let cfg = Config {
        offset: 0,
        size: size as u32,
        state_sectors: 2,
    };
    let Ok((mut s, _)) = Store::<EmulatedFlash, 16>::mount(EmulatedFlash::from_image(image), cfg)
    else {
        return;
    };
    let mut c = Cursor::new(0);
    let mut prev = 0;
    let mut n = 0;
    while let Ok(Some(r)) = s.read(&mut c) {
        assert!(r.seq > prev || n == 0, "seq {} after {prev}", r.seq);
        prev = r.seq;
        n += 1;
        assert!(n < 100_000);
    }
    if let Ok(seq) = s.append(&Record::default()) {
        assert!(seq > prev || n == 0);
    }
}

/// The signed firmware manifest and the streaming OTA receiver.
pub fn firmware_manifest(data: &[u8]) {
    let _ = protocol::Manifest::decode_unverified(data);
    let Ok(key) = protocol::firmware::FirmwarePublicKey::from_bytes(&[
        0x3d, 0x40, 0x17, 0xc3, 0xe8, 0x43, 0x89, 0x5a, 0x92, 0xb7, 0x0a, 0xa7, 0x4d, 0x1b, 0x7e,
        0xbc, 0x9c, 0x98, 0x2c, 0xcf, 0x2e, 0xc4, 0x96, 0x8c, 0xc0, 0xcd, 0x55, 0xf1, 0x2a, 0xf4,
        0x66, 0x0c,
    ]) else {
        return;
    };
    let mut rx = protocol::OtaReceiver::new(
        key,
        protocol::FirmwareVersion::new(0, 1, 0),
        "esp32c3",
        1 << 20,
    );
    // Feed in uneven chunks.
    let mut rest = data;
    let mut i = 0usize;
    while !rest.is_empty() {
        let n = (i * 37 % 200 + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        if rx.push(chunk).is_err() {
            return;
        }
        rest = tail;
        i += 1;
    }
    // Random bytes never carry a valid signature.
    assert!(rx.finish().is_err(), "unsigned bytes accepted as firmware");
}

/// The collector's validating record stream, fed in chunks the first byte picks.
pub fn record_stream(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(first).max(1);
    let mut s = collector::decode::RecordStream::new(u64::from(first >> 4));
    for chunk in body.chunks(step) {
        if s.feed(chunk).is_err() {
            return;
        }
    }
    if let Ok(recs) = s.finish() {
        for w in recs.windows(2) {
            assert!(w[1].seq > w[0].seq);
        }
    }
}

/// A device core for [`device_request`]: paired, on emulated flash.
pub struct SmokeDevice {
    dev: Device<EmulatedFlash, NoOta>,
    now: u64,
}

impl SmokeDevice {
    /// Boots a fresh device.
    pub fn new() -> Self {
        let m = metering::Config::new(500, Layout::SinglePhase { cts: 1 }).with_interval_seconds(1);
        let mut o = Options::new(m, "fuzz");
        o.store = Config {
            offset: 0,
            size: 16 * 4096,
            state_sectors: 2,
        };
        let flash = EmulatedFlash::new(16 * 4096);
        let dev = match Device::boot(flash, NoOta, [2, 0, 0, 0, 0, 1], 7, 0, o) {
            Ok((d, _)) => d,
            Err(e) => panic!("boot: {:?}", e.error),
        };
        Self { dev, now: 1 }
    }
}

impl Default for SmokeDevice {
    fn default() -> Self {
        Self::new()
    }
}

struct RawHeaders<'a>(Vec<(&'a str, &'a str)>);
impl Headers for RawHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// One request, parsed leniently from the bytes as HTTP/1.1 text, through
/// the device's route table and handlers (the sans-IO core the picoserve
/// router dispatches to). Legacy mode is toggled by the first byte.
pub fn device_request(d: &mut SmokeDevice, data: &[u8]) {
    let split = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = std::str::from_utf8(&data[..split]).unwrap_or("GET /api/v1/info HTTP/1.1");
    let body = data.get(split + 4..).unwrap_or(&[]);
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("GET");
    let target = parts.next().unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let headers = RawHeaders(
        lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect(),
    );
    d.now += 1000;
    let legacy = d.dev.legacy_enabled();
    let Lookup::Found(route) = lookup(legacy, method, path) else {
        return;
    };
    let req = device::api::Request {
        method,
        path,
        query,
        headers: &headers,
        body,
    };
    if route.max_body > 64 * 1024 {
        // Streamed upload (OTA).
        if d.dev.upload_begin(d.now, &req, body.len()).is_ok() {
            for c in body.chunks(512) {
                if d.dev.upload_chunk(c).is_err() {
                    break;
                }
            }
            let _ = d.dev.upload_end(d.now, true);
        }
    } else if body.len() <= route.max_body {
        let _ = d.dev.handle(d.now, route, &req);
    }
    // Whatever it was, the device still answers its info route.
    let info = device::api::Request {
        method: "GET",
        path: "/api/v1/info",
        query: None,
        headers: &device::api::NoHeaders,
        body: &[],
    };
    if let Lookup::Found(r) = lookup(false, "GET", "/api/v1/info") {
        let resp = d.dev.handle(d.now, r, &info);
        assert!(resp.status != 500, "info answers 500 after that request");
    }
    let _ = d.dev.take_action();
}
