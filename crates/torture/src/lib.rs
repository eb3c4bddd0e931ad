//! # torture — the OFMon reliability and security campaign
//!
//! Attacks the whole chain the way the field does and measures the result:
//!
//! - [`power`]: thousands of random power cuts on the device core (the
//!   firmware's code) over emulated NOR flash, during appends, merges,
//!   erases and state updates; nothing committed is ever lost.
//! - [`security`]: every protected route of `openapi.yaml`, unauthenticated,
//!   wrong-key, replayed, stale → 401 on a simulated device; key isolation
//!   between devices.
//! - [`proxy`]: a seeded fault-injecting TCP proxy on loopback (resets
//!   mid-stream, stalls, delays, throttles) — `tc netem` is not available.
//! - [`links`]: collect from a simulated device through that proxy.
//! - [`ota`]: power cuts while an OTA image streams in, activates and
//!   boots on trial (A/B slots and boot state on the same emulated chip).
//! - [`crash`]: `kill -9` of the `ofmon collect` process at random moments.
//! - [`sync`]: sync to the ThingsBoard mock through the hostile link, and
//!   `kill -9` of `ofmon sync` at random moments.
//! - [`servers`]: `ofmon sync` against a misbehaving server (500, 401,
//!   413, slow, dropped, down) and a full disk under `ofmon collect`/`sync`.
//! - [`schema`]: runs schemathesis (installed from PyPI into a virtualenv)
//!   against `openapi.yaml` on a simulated device (long profile).
//! - [`smoke`]: random-input smoke over the fuzz entry points (the stable
//!   counterpart of the `fuzz/` cargo-fuzz targets).
//! - [`campaign`]: runs everything for a [`Profile`] and collects one
//!   [`campaign::CampaignReport`]; [`campaign::render`] turns it into
//!   `docs/RELIABILITY.md` (binary `torture`, run by `cargo xtask torture`).
//! - [`bench_report`]: renders `docs/BENCHMARKS.md` from the benches' JSON
//!   (binary `bench-report`, run by `cargo xtask bench`).
//!
//! Architecture invariants: loopback only; every campaign is seeded and
//! returns figures instead of printing them; nothing here is used by the
//! product crates.

pub mod bench_report;
pub mod campaign;
pub mod crash;
pub mod http;
pub mod links;
pub mod ota;
pub mod power;
pub mod proxy;
pub mod schema;
pub mod security;
pub mod servers;
pub mod smoke;
pub mod sync;

/// How hard to push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// CI: a couple of minutes in a debug build.
    Short,
    /// On demand: the figures published in `docs/RELIABILITY.md`.
    Long,
}
