//! Stable random-input smoke over the fuzz entry points (the cargo-fuzz
//! targets in `fuzz/` run the same functions for minutes on nightly).

use proptest::prelude::*;
use torture::smoke;

fn cases() -> u32 {
    std::env::var("TORTURE_SMOKE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Valid-looking requests to mutate: every route of the table.
fn seeds() -> Vec<Vec<u8>> {
    device::routes::ROUTES
        .iter()
        .map(|r| {
            format!(
                "{} {}?after=1&limit=5 HTTP/1.1\r\nAuthorization: OFMon-HMAC t=5,n={},s={}\r\nContent-Type: application/json\r\n\r\n{{\"seq\":1,\"unix_ms\":1700000000000,\"uncertainty_ms\":5,\"token\":\"t\",\"device_secret\":\"{}\"}}",
                r.method.as_str(),
                r.path,
                "0".repeat(32),
                "1".repeat(64),
                "2".repeat(64)
            )
            .into_bytes()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn record_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        smoke::record_decoder(&data);
    }

    #[test]
    fn record_stream_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        smoke::record_stream(&data);
    }

    #[test]
    fn firmware_manifest_never_accepts_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        smoke::firmware_manifest(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 10, ..ProptestConfig::default() })]

    #[test]
    fn store_mount_read_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        smoke::store_mount_read(&data);
    }
}

#[test]
fn device_request_handling_survives_mutated_requests() {
    let seeds = seeds();
    let mut d = smoke::SmokeDevice::new();
    let mut x: u64 = 0x1234_5678_9ABC_DEF1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..cases() as usize * 2 {
        let mut req = seeds[i % seeds.len()].clone();
        let flips = next() % 8;
        for _ in 0..flips {
            let at = (next() as usize) % req.len();
            match next() % 4 {
                0 => req[at] = next() as u8,
                1 => {
                    req.remove(at);
                }
                2 => req.insert(at, next() as u8),
                _ => req.truncate(at),
            }
            if req.is_empty() {
                break;
            }
        }
        smoke::device_request(&mut d, &req);
    }
    // Pure random bytes too.
    for _ in 0..cases() {
        let n = (next() % 512) as usize;
        let data: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        smoke::device_request(&mut d, &data);
    }
}
