//! # ui — the OFMon dashboard and the one-command demo
//!
//! Owns what a person looks at:
//!
//! - [`server`]: the `ofmon ui` web server (axum). Every page and asset is
//!   embedded in the binary ([`assets`]: plain HTML/CSS/JS plus the vendored
//!   uPlot chart library), so the dashboard works with no internet at all.
//!   The pages read JSON from `/api/...`, which scripts can use too.
//! - [`query`]: read-only SQL over the collector's database (fleet overview,
//!   time series with down-sampling, daily energy, events timeline).
//! - [`jobs`] and [`actions`]: long actions (collect, set time, pair, ...)
//!   run as jobs on blocking threads; their progress is streamed to the page
//!   with server-sent events.
//! - [`settings`]: the dashboard's settings file in the collector home.
//! - [`demo`]: `ofmon demo` — a simulated fleet of three devices with a week
//!   of history, paired, collected into a fresh home, served on the dashboard.
//!
//! Architecture invariants:
//! - The dashboard never writes the collector's tables itself: reads are
//!   plain `SELECT`s ([`query`]); every write goes through the `collector`
//!   library (collect, pair, set clock), exactly as the command line does.
//! - No asset is fetched from the network, at build or at run time.
//! - Only the `ofmon` binary knows about the terminal; this crate returns
//!   values and errors, and logs demo steps through a caller-given function.

pub mod actions;
pub mod assets;
pub mod demo;
pub mod jobs;
pub mod query;
pub mod server;
pub mod settings;

pub use server::{Server, ServerOptions};

/// Errors of the dashboard and the demo.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The collector library failed.
    #[error(transparent)]
    Collector(#[from] collector::Error),
    /// SQLite failed on a read.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The simulator failed.
    #[error("simulator: {0}")]
    Sim(#[from] sim::SimError),
    /// Local IO failed (binding the port, temp directory, files).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A request named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A request was malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The same action is already running for that target.
    #[error("{0}")]
    Busy(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// Current wall clock, unix ms.
pub fn now_ms() -> i64 {
    collector::now_ms()
}
