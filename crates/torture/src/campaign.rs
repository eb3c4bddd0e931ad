//! Runs every campaign of a [`Profile`] and renders `docs/RELIABILITY.md`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::Profile;
use crate::crash::{CrashOptions, CrashReport};
use crate::links::{LinkOptions, LinkReport};
use crate::ota::{OtaCutOptions, OtaCutReport};
use crate::power::{MountCost, PowerOptions, PowerReport};
use crate::schema::{SchemaOptions, SchemaReport};
use crate::security::SecurityReport;

/// One cargo-fuzz run (filled in by `cargo xtask torture --long`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FuzzRun {
    /// Target name.
    pub target: String,
    /// Seconds run.
    pub seconds: u64,
    /// Executions.
    pub runs: u64,
    /// Crashes found (must be 0).
    pub crashes: u64,
    /// Why it did not run, if it did not.
    pub skipped: Option<String>,
}

/// Everything one campaign measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CampaignReport {
    /// Profile run.
    pub profile: Profile,
    /// Machine description.
    pub machine: String,
    /// UTC date and time of the run.
    pub date: String,
    /// Power cuts on the device core.
    pub power: PowerReport,
    /// Full-partition mount cost.
    pub mount: MountCost,
    /// Power cuts during OTA (absent in reports saved before it existed).
    #[serde(default)]
    pub ota: Option<OtaCutReport>,
    /// schemathesis against `openapi.yaml` (long profile; a skipped run
    /// does not pass).
    #[serde(default)]
    pub schema: Option<SchemaReport>,
    /// Security campaign.
    pub security: SecurityReport,
    /// Collect through a hostile link.
    pub links: LinkReport,
    /// kill -9 of the collector.
    pub crash: Option<CrashReport>,
    /// Why the crash campaign did not run.
    pub crash_skipped: Option<String>,
    /// Sync to the ThingsBoard mock through the hostile link.
    #[serde(default)]
    pub sync_link: Option<crate::sync::SyncLinkReport>,
    /// The same over the MQTT gateway API to mosquitto.
    #[serde(default)]
    pub sync_mqtt: Option<crate::sync::MqttLinkReport>,
    /// Why the MQTT sync campaign did not run.
    #[serde(default)]
    pub sync_mqtt_skipped: Option<String>,
    /// kill -9 of `ofmon sync`.
    #[serde(default)]
    pub sync_kills: Option<crate::sync::SyncKillReport>,
    /// Bad servers and a full collector disk.
    #[serde(default)]
    pub servers: Option<crate::servers::ServersReport>,
    /// cargo-fuzz runs (long profile).
    pub fuzz: Vec<FuzzRun>,
}

impl CampaignReport {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.power.ok()
            && self.ota.as_ref().is_none_or(OtaCutReport::ok)
            && self.schema.as_ref().is_none_or(SchemaReport::ok)
            && self.security.ok()
            && self.links.ok()
            && self.crash.as_ref().is_none_or(CrashReport::ok)
            && self
                .sync_link
                .as_ref()
                .is_none_or(crate::sync::SyncLinkReport::ok)
            && self
                .sync_mqtt
                .as_ref()
                .is_none_or(crate::sync::MqttLinkReport::ok)
            && self
                .sync_kills
                .as_ref()
                .is_none_or(crate::sync::SyncKillReport::ok)
            && self
                .servers
                .as_ref()
                .is_none_or(crate::servers::ServersReport::ok)
            && self.fuzz.iter().all(|f| f.crashes == 0)
    }
}

/// A short description of this machine (CPU model, cores, OS).
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}, {cores} cores available, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Now as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Runs every campaign of `profile` in scratch directories under `scratch`.
/// `ofmon` is the collector binary for the crash campaign (skipped if absent).
pub fn run(
    profile: Profile,
    scratch: &Path,
    ofmon: Option<PathBuf>,
    fuzz: Vec<FuzzRun>,
) -> Result<CampaignReport> {
    let dir = |name: &str| -> Result<PathBuf> {
        let d = scratch.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let long = profile == Profile::Long;
    eprintln!("torture: power cuts");
    let power = crate::power::run(&if long {
        PowerOptions::long()
    } else {
        PowerOptions::short()
    });
    eprintln!("torture: power cuts during OTA");
    let schema = if long {
        eprintln!("torture: schemathesis");
        let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml");
        Some(crate::schema::run(
            &spec,
            &dir("schema")?,
            &SchemaOptions::long(schemathesis_venv()),
        ))
    } else {
        None
    };
    let ota = crate::ota::run(&if long {
        OtaCutOptions::long()
    } else {
        OtaCutOptions::short()
    });
    eprintln!("torture: full-partition mount");
    let mount = crate::power::mount_worst_case(if long { 200_000 } else { 130_000 });
    eprintln!("torture: security");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml");
    let security = crate::security::run(&spec, &dir("security")?)?;
    eprintln!("torture: bad links");
    let links = crate::links::run(
        &dir("links")?,
        &if long {
            LinkOptions::long()
        } else {
            LinkOptions::short()
        },
    )?;
    eprintln!("torture: sync through the hostile link");
    let sync_link = Some(crate::sync::run_link(
        &dir("sync-link")?,
        &if long {
            crate::sync::SyncLinkOptions::long()
        } else {
            crate::sync::SyncLinkOptions::short()
        },
    )?);
    eprintln!("torture: MQTT gateway sync through the hostile link");
    let (sync_mqtt, sync_mqtt_skipped) = match crate::sync::mosquitto() {
        Ok(b) => {
            drop(b);
            let o = if long {
                crate::sync::SyncLinkOptions::long()
            } else {
                crate::sync::SyncLinkOptions::short()
            };
            (
                Some(crate::sync::run_mqtt_link(&dir("sync-mqtt")?, &o)?),
                None,
            )
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let (mut sync_kills, mut servers) = (None, None);
    if let Some(bin) = ofmon.as_deref() {
        eprintln!("torture: kill -9 during sync");
        sync_kills = Some(crate::sync::run_kills(
            &dir("sync-kills")?,
            bin,
            &if long {
                crate::sync::SyncKillOptions::long()
            } else {
                crate::sync::SyncKillOptions::short()
            },
        )?);
        eprintln!("torture: bad servers and a full disk");
        servers = Some(crate::servers::run(
            &dir("servers")?,
            bin,
            &if long {
                crate::servers::ServerOptions::long()
            } else {
                crate::servers::ServerOptions::short()
            },
        )?);
    }
    eprintln!("torture: collector crashes");
    let (crash, crash_skipped) = match ofmon {
        Some(bin) => (
            Some(crate::crash::run(
                &dir("crash")?,
                &bin,
                &if long {
                    CrashOptions::long()
                } else {
                    CrashOptions::short()
                },
            )?),
            None,
        ),
        None => (None, Some("ofmon binary not found".to_string())),
    };
    Ok(CampaignReport {
        profile,
        machine: machine(),
        date: utc_now(),
        power,
        mount,
        ota: Some(ota),
        schema,
        security,
        links,
        crash,
        crash_skipped,
        sync_link,
        sync_mqtt,
        sync_mqtt_skipped,
        sync_kills,
        servers,
        fuzz,
    })
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**NOT MET**" }
}

/// Renders `docs/RELIABILITY.md`.
pub fn render(r: &CampaignReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let p = &r.power;
    let _ = writeln!(
        s,
        "# Reliability and security campaign\n\n\
         <!-- Generated by `cargo xtask torture{}`; do not edit by hand. -->\n\n\
         Profile **{:?}**, run {} on {}.\n\
         Overall: {}.\n",
        if r.profile == Profile::Long {
            " --long"
        } else {
            ""
        },
        r.profile,
        r.date,
        r.machine,
        if r.ok() {
            "every invariant held"
        } else {
            "**FAILURES — see below**"
        }
    );

    let _ = writeln!(
        s,
        "## Power cuts (device core on emulated NOR flash)\n\n\
         The device core (the firmware's code) on `store::emulated` flash, fed \
         synthetic mains through the real metering engine ({}-sector region so \
         merges and erases are frequent), cut at a random program or erase — \
         during appends, merges, erases and the boot's state update — and \
         rebooted from what the flash holds after a random outage.\n\n\
         | figure | value | target |\n|---|---|---|\n\
         | power cuts | {} ({} during program, {} during erase, {} during boot) | ≥ 10,000 (long profile) |\n\
         | boots | {} | |\n\
         | simulated time covered | {:.1} days | weeks |\n\
         | records committed (append returned Ok) | {} | |\n\
         | committed records lost | {} | 0 — {} |\n\
         | committed records found folded into merged records (exact registers) | {} | |\n\
         | boots whose energy registers did not restart from the newest record | {} | 0 — {} |\n\
         | energy steps checked against power × duration | {} ({} outside tolerance, worst deviation {:.2} mWh) | 0 outside |\n\
         | mounts that repaired something / had to format | {} / {} | format 0 |\n\
         | flash bytes read per boot (mount + state + newest record) | mean {:.0}, worst {} (region {} B) | |\n\
         | full 1.875 MiB partition after {} appends: mount reads | clean {} B, after a torn append {} B ({} µs emulated) | bounded |\n\
         | wall time | {:.1} s | |\n",
        p.region_bytes / 4096,
        p.cuts,
        p.program_cuts,
        p.erase_cuts,
        p.cuts_during_boot,
        p.boots,
        p.sim_days,
        p.committed,
        p.lost,
        verdict(p.lost == 0),
        p.merged,
        p.register_mismatches,
        verdict(p.register_mismatches == 0),
        p.energy_steps_checked,
        p.energy_step_violations,
        p.energy_step_max_dev_mwh,
        p.recovered_mounts,
        p.formatted_mounts,
        p.boot_bytes_read_mean,
        p.boot_bytes_read_max,
        p.region_bytes,
        r.mount.appended,
        r.mount.clean_mount_bytes,
        r.mount.torn_mount_bytes,
        r.mount.torn_mount_us,
        p.wall_s
    );
    if !p.problems.is_empty() {
        let _ = writeln!(s, "Problems:\n");
        for x in &p.problems {
            let _ = writeln!(s, "- {x}");
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "The raw store has its own 10,000-cut campaign \
         (`cargo test --release -p store --test powercut`).\n"
    );
    match &r.ota {
        Some(o) => render_ota(&mut s, o, p.cuts),
        None => {
            let _ = writeln!(
                s,
                "## Power cuts during OTA\n\n**Not run** in this report.\n"
            );
        }
    }

    let c = &r.security;
    let _ = writeln!(
        s,
        "## Security (generated from `openapi.yaml`)\n\n\
         {} operations in the spec; {} protected ones attacked on a simulated device at real \
         clock speed (clock set, so timestamps are checked): {}.\n\n\
         | figure | value | target |\n|---|---|---|\n\
         | probes | {} | |\n\
         | answered as required (401; a replay of a refused request refused again) | {} | all — {} |\n",
        c.operations,
        c.protected.len(),
        c.attacks.join(", "),
        c.probes,
        c.passed,
        verdict(c.failures.is_empty() && c.probes == c.passed)
    );
    let _ = writeln!(
        s,
        "Correctly signed control requests (must get past auth):\n\n| route | status |\n|---|---|"
    );
    for (k, v) in &c.control_status {
        let _ = writeln!(s, "| `{k}` | {v} |");
    }
    for f in &c.failures {
        let _ = writeln!(
            s,
            "\nFAILED: `{}` {} → {} (wanted {})",
            f.route, f.attack, f.status, f.expected
        );
    }
    let k = &c.keys;
    let _ = writeln!(
        s,
        "\nKey isolation ({} device pairs with neighbouring MACs): collisions {}, \
         another device's secret or key derivable from a captured device's secret or API key {}, \
         cross-device signatures accepted {}, API-key Hamming distance mean {:.1} bits \
         (128 = unrelated), min {} — {}.\n\n\
         `POST /api/v1/ota` is also sent bodies that are not firmware (8 KiB of junk, 5 bytes, \
         the spec's example) unsigned, under a random key and with the signature of another \
         body: all 401 (the device hashes the whole body and checks the request signature \
         before it tells any manifest refusal — fixed: it used to answer 400 from the manifest \
         parser first). A genuine signed image under a wrong request key is refused 401 and \
         never activated. A device without a wall clock (after a reboot, before a collector \
         sets it) cannot refuse future-dated requests; replays stay refused by the nonce ring \
         and the persisted floor (tested across a reboot and across ring turnover).\n",
        k.pairs,
        k.collisions,
        k.derivable,
        k.cross_accepted,
        k.mean_key_distance_bits,
        k.min_key_distance_bits,
        verdict(k.ok())
    );

    let l = &r.links;
    let _ = writeln!(
        s,
        "## Bad links (collect through the fault-injecting proxy)\n\n\
         A seeded userspace TCP proxy on loopback (`torture::proxy`; `tc netem` is unavailable) \
         between the collector library and a simulated device: connections refused, reset \
         mid-stream, stalled past the client's timeout, delayed and throttled.\n\n\
         | figure | value | target |\n|---|---|---|\n\
         | records on the device | {} | |\n\
         | records in the collector's database | {} | all |\n\
         | lost / duplicated | {} / {} | 0 / 0 — {} |\n\
         | collect runs until complete | {} ({} stopped early: {} timeouts, {} resets/transport) | |\n\
         | errors other than transport (bad data accepted or refused) | {} | 0 |\n\
         | proxy: connections, refused, resets, stalls | {}, {}, {}, {} | |\n\
         | bytes up / down | {} / {} | |\n\
         | wall time | {:.1} s | |\n",
        l.device_records,
        l.collected,
        l.lost,
        l.duplicated,
        verdict(l.ok()),
        l.runs,
        l.failed_runs,
        l.timeouts,
        l.transport_errors,
        l.other_errors.len(),
        l.proxy.connections,
        l.proxy.refused,
        l.proxy.resets,
        l.proxy.stalls,
        l.proxy.bytes_up,
        l.proxy.bytes_down,
        l.wall_s
    );
    if let Some(x) = &r.sync_link {
        let _ = writeln!(s, "{}", crate::sync::render_link(x));
        match (&r.sync_mqtt, &r.sync_mqtt_skipped) {
            (Some(m), _) => {
                let _ = writeln!(s, "{}", crate::sync::render_mqtt_link(m));
            }
            (None, why) => {
                let _ = writeln!(
                    s,
                    "The same over MQTT: **not run**: {}.\n",
                    why.as_deref().unwrap_or("?")
                );
            }
        }
    }

    let _ = writeln!(s, "## Collector crashes (`kill -9` of `ofmon collect`)\n");
    match &r.crash {
        Some(k) => {
            let _ = writeln!(
                s,
                "The real `ofmon` binary collecting from a simulated device that keeps \
                 recording, killed with SIGKILL at a random moment of each run, then one clean \
                 collect.\n\n\
                 | figure | value | target |\n|---|---|---|\n\
                 | kills | {} (runs lived {}–{} ms; {} runs finished before their kill) | ≥ 200 (long profile) |\n\
                 | points measured on the device / in the database | {} / {} | equal |\n\
                 | lost / duplicated | {} / {} | 0 / 0 — {} |\n\
                 | kills after which the device was acked beyond the database | {} | 0 |\n\
                 | wall time | {:.1} s | |\n",
                k.kills,
                k.kill_after_ms.0,
                k.kill_after_ms.1,
                k.finished_before_kill,
                k.device_records,
                k.collected,
                k.lost,
                k.duplicated,
                verdict(k.ok()),
                k.ack_ahead,
                k.wall_s
            );
        }
        None => {
            let _ = writeln!(
                s,
                "**Not run**: {}.\n",
                r.crash_skipped.as_deref().unwrap_or("?")
            );
        }
    }

    match &r.sync_kills {
        Some(k) => {
            let _ = writeln!(
                s,
                "{}",
                crate::sync::render_kills(k, r.crash.as_ref().map(|c| c.kills))
            );
        }
        None => {
            let _ = writeln!(
                s,
                "## Collector crashes during sync\n\n**Not run**: ofmon binary not found.\n"
            );
        }
    }
    match &r.servers {
        Some(x) => {
            let _ = writeln!(s, "{}", crate::servers::render(x));
        }
        None => {
            let _ = writeln!(
                s,
                "## Bad servers and a full disk\n\n**Not run**: ofmon binary not found.\n"
            );
        }
    }

    let _ = writeln!(s, "## Bad input\n");
    if r.fuzz.is_empty() {
        let _ = writeln!(
            s,
            "cargo-fuzz targets in `fuzz/` (record decoder, store mount+read, device request \
             handling, firmware manifest, collector record stream): **not run** in this run \
             (`cargo xtask torture --long` runs all five at once on nightly, 10 minutes each). CI runs the \
             stable random-input smoke over the same entry points \
             (`cargo test -p torture --test smoke`: no panic, no hang, random bytes never \
             accepted as signed firmware).\n"
        );
    } else {
        let _ = writeln!(
            s,
            "| target | seconds | executions | crashes |\n|---|---|---|---|"
        );
        for f in &r.fuzz {
            match &f.skipped {
                Some(why) => {
                    let _ = writeln!(s, "| `{}` | — | not run: {why} | — |", f.target);
                }
                None => {
                    let _ = writeln!(
                        s,
                        "| `{}` | {} | {} | {} |",
                        f.target, f.seconds, f.runs, f.crashes
                    );
                }
            }
        }
        s.push('\n');
    }
    render_schema(&mut s, r.schema.as_ref());
    s
}

/// The OTA power-cut section.
fn render_ota(s: &mut String, o: &OtaCutReport, other_cuts: u64) {
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "## Power cuts during OTA (device core, A/B slots and boot state on the same chip)\n\n\
         The device core receives signed firmware uploads through its API (streamed in 1 KiB \
         chunks, as the HTTP shell hands them over) while it meters, on one emulated NOR chip \
         laid out like the board's partition table: a two-copy boot-state record, two app slots \
         ({} KiB each here, 1 MiB on the chip) and the store. The OTA writer is written like the \
         firmware's (whole 4 KiB sectors, each erased then programmed; `activate` flushes the \
         last sector, then writes the boot-state entry); a stand-in bootloader applies the \
         ESP-IDF rollback rules (a new image boots on trial, a trial that never confirmed is \
         rolled back, an image failing its SHA-256 never runs). A cut strikes a random program \
         or erase anywhere on the chip while the image streams, in its activation, in the state \
         save after it, or in the trial boot (bootloader update, boot, self-test, \
         confirmation); after each reboot the same upload is retried until the new image runs.\n\n\
         | figure | value | target |\n|---|---|---|\n\
         | power cuts during OTA | {} ({} while the image streamed, {} inside `activate`, {} after it before the reboot, {} in the trial boot) | ≥ 1,000 (long profile) |\n\
         | what they struck | slot erase {}, slot program {}, boot-state record {}, store (appends, merges, state) {} | |\n\
         | power cuts on the device core, both campaigns | {} | ≥ 10,000 (long profile) |\n\
         | boots / uploads / images installed and run | {} / {} / {} | |\n\
         | boots of another image than required (old unless `activate` completed, then the new; the new for good once confirmed) | {} | 0 — {} |\n\
         | boots selecting an image that fails its SHA-256, or with no bootable image | {} | 0 — {} |\n\
         | trials rolled back (cut before the confirmation completed) | {} | |\n\
         | uploads retried after a cut left the old image running / succeeded | {} / {} | all — {} |\n\
         | records committed / lost / boots whose registers did not restart from the newest record | {} / {} / {} | lost 0, 0 — {} |\n\
         | wall time | {:.1} s | |\n",
        o.slot_kib,
        o.cuts,
        o.during_stream,
        o.during_activate,
        o.after_activate,
        o.during_trial,
        o.slot_erase_cuts,
        o.slot_program_cuts,
        o.bootstate_cuts,
        o.store_cuts,
        o.cuts + other_cuts,
        o.boots,
        o.uploads,
        o.installed,
        o.wrong_image_boots,
        verdict(o.wrong_image_boots == 0),
        o.bad_image_boots,
        verdict(o.bad_image_boots == 0),
        o.rollbacks,
        o.retries,
        o.retries_ok,
        verdict(o.retries == o.retries_ok),
        o.committed,
        o.lost,
        o.register_mismatches,
        verdict(o.lost == 0 && o.register_mismatches == 0),
        o.wall_s
    );
    if !o.problems.is_empty() {
        let _ = writeln!(s, "Problems:\n");
        for x in &o.problems {
            let _ = writeln!(s, "- {x}");
        }
        s.push('\n');
    }
}

/// Where the long profile keeps its schemathesis virtualenv: under the
/// cargo target directory (`$CARGO_TARGET_DIR`, else the one holding this
/// binary).
fn schemathesis_venv() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("schemathesis-venv")
}

/// The schemathesis paragraph of the bad-input section.
fn render_schema(s: &mut String, r: Option<&SchemaReport>) {
    use std::fmt::Write;
    let Some(r) = r else {
        let _ = writeln!(
            s,
            "schemathesis against the simulated device's `openapi.yaml`: **not run** in this \
             profile (`cargo xtask torture --long` installs it from PyPI into a virtualenv and \
             runs it)."
        );
        return;
    };
    if let Some(why) = &r.skipped {
        let _ = writeln!(
            s,
            "schemathesis against the simulated device's `openapi.yaml`: **skipped: {why}** — \
             not counted as passed."
        );
        return;
    }
    let _ = writeln!(
        s,
        "schemathesis {} against `openapi.yaml` on a simulated device (legacy mode on, so the \
         legacy routes are live), examples, coverage and fuzzing phases (no stateful phase: the \
         spec has no links), checks {}.\n\n\
         | figure | value | target |\n|---|---|---|\n\
         | operations tested | {} | every one in the spec |\n\
         | test cases (requests) | {} | |\n\
         | failures (unique) | {} ({} server errors) | 0 — {} |\n\
         | errors of the run | {} | 0 |\n\
         | wall time | {:.1} s | |\n",
        r.version,
        r.checks
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", "),
        r.operations,
        r.test_cases,
        r.failures,
        r.server_errors,
        verdict(r.failures == 0 && r.server_errors == 0),
        r.errors,
        r.wall_s
    );
    for f in &r.failure_lines {
        let _ = writeln!(s, "- FAILED: {f}");
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(s, "schemathesis's own warnings (not failures):\n");
        for w in &r.warnings {
            let _ = writeln!(s, "- {w}");
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "The run is **unauthenticated**: the request signature covers method, path, body digest, \
         timestamp and a fresh nonce, which schemathesis cannot compute per request (a fixed \
         header would be a replay, refused 401). So the protected operations are exercised up to \
         their documented 401 with every generated body, query and method; the open ones \
         (`/api/v1/info`, `/api/v1/pair` while unpaired, the legacy routes) all the way. The \
         signed paths are covered by the security campaign above and the device's own tests.\n"
    );
}
