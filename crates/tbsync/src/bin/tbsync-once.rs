//! Runs one sync of a collector database (used by the crash test, which
//! kills it with SIGKILL at random moments).
//!
//! `tbsync-once DB URL [BATCH_RECORDS]`; exit 0 when every device is done,
//! 1 otherwise, 2 on bad arguments or errors.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: tbsync-once DB URL [BATCH_RECORDS]");
        return ExitCode::from(2);
    }
    let batch = args
        .get(3)
        .and_then(|b| b.parse().ok())
        .unwrap_or(1000usize);
    let conn = match tbsync::outbox::open(std::path::Path::new(&args[1])) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tbsync-once: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = tbsync::SyncOptions {
        server: Some(args[2].clone()),
        batch_records: batch,
        ..tbsync::SyncOptions::default()
    };
    let report = tbsync::Syncer::new(&conn, opts).and_then(|s| s.run(&mut |_| {}));
    match report {
        Ok(r) if r.all_done() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tbsync-once: {e}");
            ExitCode::from(2)
        }
    }
}
