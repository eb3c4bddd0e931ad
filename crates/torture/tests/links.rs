//! Bad links: collect through the fault-injecting proxy.

use std::io::{Read, Write};
use std::time::Duration;

use torture::proxy::{Faults, Proxy};

/// A tiny echo server for the proxy's own tests.
fn echo() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn roundtrip(addr: std::net::SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(data)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn proxy_forwards_faithfully_without_faults_and_throttles() {
    let up = echo();
    let mut f = Faults::none();
    f.throttle_bps = 200_000;
    let p = Proxy::start(up, f).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let t = std::time::Instant::now();
    assert_eq!(roundtrip(p.addr(), &data).unwrap(), data);
    // 100 kB each way at 200 kB/s: about a second.
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    let c = p.counts();
    assert_eq!(c.bytes_up, 100_000);
    assert_eq!(c.bytes_down, 100_000);
}

#[test]
fn proxy_resets_mid_stream_and_is_deterministic_per_seed() {
    let up = echo();
    let mut f = Faults::none();
    f.reset_per_chunk = 0.2;
    f.chunk = 512;
    let run = |f: Faults| {
        let p = Proxy::start(up, f).unwrap();
        let data = vec![7u8; 20_000];
        let outcomes: Vec<usize> = (0..20)
            .map(|_| roundtrip(p.addr(), &data).map_or(usize::MAX, |v| v.len()))
            .collect();
        (outcomes, p.counts())
    };
    let (a, ca) = run(f.clone());
    let (b, cb) = run(f);
    assert!(ca.resets >= 15, "{ca:?}");
    assert_eq!(ca.resets, cb.resets);
    assert!(
        a.iter().all(|&n| n != 20_000),
        "a reset stream cannot deliver everything: {a:?}"
    );
    assert_eq!(a.len(), b.len());
}

#[test]
fn collect_through_a_hostile_link_gets_everything_exactly_once() {
    let home = tempfile::tempdir().unwrap();
    let rep = torture::links::run(home.path(), &torture::links::LinkOptions::short()).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&rep).unwrap());
    assert!(rep.ok(), "{rep:#?}");
    assert!(rep.device_records > 500);
    assert!(rep.failed_runs > 0, "the link never failed: {rep:?}");
    assert!(rep.proxy.resets > 0);
}
