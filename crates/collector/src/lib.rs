//! # collector — the OFMon collector library
//!
//! Owns everything a collector (laptop, Raspberry Pi, phone) does with
//! meters, except terminals and output formats, which belong to the `ofmon`
//! binary:
//!
//! - [`home`]: the collector's home directory (database, fleet key, sim file);
//! - [`discovery`]: finding devices behind one [`discovery::Discovery`]
//!   trait (`static` URLs, a running `ofmon sim`, `nmcli` Wi-Fi scans);
//! - [`client`]: the device API v1 client (signed requests over HTTP);
//! - [`decode`]: sans-IO validation of a records stream (store codec, CRC,
//!   strictly increasing seq);
//! - [`collect`]: incremental, idempotent, crash-safe collection into
//!   SQLite, ack after commit, clock set with measured round trip;
//! - [`db`]: the SQLite schema and queries (including the sync outbox);
//! - [`time`]: time reconstruction with explicit bounds;
//! - [`export`]: CSV and JSON export;
//! - [`ota`]: signed firmware updates (check, streamed upload, wait for the reboot).
//!
//! Architecture invariants:
//! - Never acks a seq to a device before the records up to it are committed
//!   (`synchronous=FULL`); a crash anywhere loses and duplicates nothing.
//! - Never writes a record that failed validation; a bad batch is refused
//!   whole and everything before it is kept.
//! - [`time`] and [`decode`] do no IO; platform parts (Wi-Fi, HTTP) sit
//!   behind traits so a mobile shell can embed the library.

pub mod client;
pub mod collect;
pub mod db;
pub mod decode;
pub mod discovery;
pub mod export;
#[cfg(feature = "fake-device")]
pub mod fake;
pub mod home;
pub mod ota;
pub mod pair;
pub mod time;

pub use db::Db;

/// Errors of the collector library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite failed (a full or failing disk says so, and what to do).
    #[error("database: {}{}", .0, db_hint(.0))]
    Db(#[from] rusqlite::Error),
    /// The database was written by a newer collector.
    #[error("database schema version {0} is newer than this collector understands; upgrade ofmon")]
    Schema(i64),
    /// A device is not in the database.
    #[error("unknown device {0}; run `ofmon devices` to list known devices")]
    UnknownDevice(String),
    /// The device sent something invalid; nothing of it was stored.
    #[error("device sent bad data: {0}")]
    BadInput(String),
    /// Talking to the device failed (network, HTTP status).
    #[error("device unreachable or refused: {0}")]
    Transport(String),
    /// Local file IO failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Configuration problem (home, fleet key, arguments).
    #[error("{0}")]
    Config(String),
}

/// What to do about a database error the user can fix: a full disk
/// (`SQLITE_FULL`) or a failing write (`SQLITE_IOERR`, which is also what a
/// full disk gives when SQLite grows its shared-memory file). Empty for
/// other errors. Appended to [`Error::Db`] and to the sync's database error.
pub fn db_hint(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => {
            " — the disk holding the collector database is full: free some space there \
             (or use another home with --home) and run again; everything committed \
             before is kept and the next run resumes where this one stopped"
        }
        Some(rusqlite::ErrorCode::SystemIoFailure) => {
            " — writing the collector database failed: check that its disk is not full \
             (free some space) and is healthy, then run again; everything committed \
             before is kept and the next run resumes where this one stopped"
        }
        _ => "",
    }
}

/// The collector's wall clock, unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
