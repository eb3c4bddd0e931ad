//! Bad servers and a full disk: the real `ofmon sync` against a ThingsBoard
//! mock that answers 500 bursts, 401 for one device of three, 413 above a
//! small body limit, slowly or past the timeout, drops connections before or
//! after storing, or is not there at all; and `ofmon collect` / `ofmon sync`
//! on a collector whose disk is full (a size-limited tmpfs in a private
//! mount namespace: `unshare -rm`, no root needed).
//!
//! For every case: the exit code (non-zero when something was left undone),
//! the message names the problem and what to do, nothing is lost or marked
//! sent that the server lacks, and the next run after the fault clears
//! completes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use thingsboard_mock::MockServer;

use crate::sync::{Fixture, ServerCheck, check_server, expected, sent_but_missing, unsent};

/// Parameters of [`run`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Records per device (3 devices).
    pub records: u64,
    /// Records each device adds for the full-disk case.
    pub full_disk_records: u64,
}

impl ServerOptions {
    /// CI profile.
    pub fn short() -> Self {
        Self {
            records: 300,
            full_disk_records: 3_000,
        }
    }
    /// On-demand profile.
    pub fn long() -> Self {
        Self {
            records: 3_000,
            full_disk_records: 20_000,
        }
    }
}

/// One bad-server case.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Case {
    /// What the server (or disk) did.
    pub fault: String,
    /// Exit code of the run under the fault.
    pub exit_code: i32,
    /// Whether that exit code is the one wanted (0 when the run could
    /// still finish, non-zero when something was left undone).
    pub exit_ok: bool,
    /// The line of the output that tells the user (empty when none was wanted).
    pub message: String,
    /// Whether the message names the problem and what to do.
    pub message_ok: bool,
    /// Whether the next run after the fault cleared completed (exit 0, all sent).
    pub recovered: bool,
    /// The server versus the database after recovery.
    pub server: ServerCheck,
    /// Records marked sent that the server lacked (after any run).
    pub sent_but_missing: u64,
    /// Timed records not marked sent after recovery.
    pub unsent: u64,
    /// Anything that went wrong in the case itself.
    pub problem: Option<String>,
}

impl Case {
    /// Whether the case held every invariant.
    pub fn ok(&self) -> bool {
        self.exit_ok
            && self.message_ok
            && self.recovered
            && self.server.missing == 0
            && self.server.wrong == 0
            && self.server.extra == 0
            && self.sent_but_missing == 0
            && self.unsent == 0
            && self.problem.is_none()
    }
}

/// Figures of [`run`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServersReport {
    /// Records in the collector database at the start.
    pub records: u64,
    /// The cases.
    pub cases: Vec<Case>,
    /// Full-disk case, if it could run.
    pub full_disk: Option<FullDisk>,
    /// Why the full-disk case did not run.
    pub full_disk_skipped: Option<String>,
    /// Real seconds spent.
    pub wall_s: f64,
}

impl ServersReport {
    /// Whether every case held.
    pub fn ok(&self) -> bool {
        self.cases.iter().all(Case::ok) && self.full_disk.as_ref().is_none_or(FullDisk::ok)
    }
}

/// How the mock misbehaves in one case.
struct Spec {
    fault: &'static str,
    /// Sets the fault on the mock.
    set: fn(&MockServer, &Fixture),
    /// Extra `ofmon sync` arguments for the faulty run.
    args: &'static [&'static str],
    /// Whether the faulty run must exit non-zero.
    fails: bool,
    /// Words (lowercase) the message must contain; empty: no message needed.
    says: &'static [&'static str],
}

fn specs() -> Vec<Spec> {
    vec![
        Spec {
            fault: "500 burst (3 answers), shorter than the retry budget",
            set: |m, _| m.fail_next(3),
            args: &[],
            fails: false,
            says: &[],
        },
        Spec {
            fault: "500 on every request (longer than a 2-retry budget)",
            set: |m, _| m.fail_next(1_000_000),
            args: &["--max-retries", "2"],
            fails: true,
            says: &["500", "gave up", "next sync resumes"],
        },
        Spec {
            fault: "401 for one device of three (token revoked)",
            set: |m, f| m.revoke_token(&f.devices[1].token),
            args: &[],
            fails: true,
            says: &["torture-meter-2", "unauthorized", "access token", "re-pair"],
        },
        Spec {
            fault: "413 above a 16 KiB body (batches of 200 records ≈ 140 KiB)",
            set: |m, _| m.set_body_limit(16 * 1024),
            args: &["--batch", "200"],
            fails: false,
            says: &[],
        },
        Spec {
            fault: "slow answers (400 ms each, within the timeout)",
            set: |m, _| m.set_delay(Duration::from_millis(400)),
            args: &["--batch", "100"],
            fails: false,
            says: &[],
        },
        Spec {
            fault: "answers slower than the 1 s timeout",
            set: |m, _| m.set_delay(Duration::from_millis(2_500)),
            args: &["--timeout", "1", "--max-retries", "1"],
            fails: true,
            says: &["timed out", "next sync resumes"],
        },
        Spec {
            fault: "5 connections dropped before the data is stored",
            set: |m, _| m.drop_next(5),
            args: &["--batch", "100"],
            fails: false,
            says: &[],
        },
        Spec {
            fault: "5 connections dropped after the data is stored (answer lost)",
            set: |m, _| m.drop_after_store_next(5),
            args: &["--batch", "100"],
            fails: false,
            says: &[],
        },
    ]
}

fn clear(m: &MockServer, f: &Fixture) {
    m.clear_faults();
    m.set_body_limit(thingsboard_mock::DEFAULT_BODY_LIMIT);
    for d in &f.devices {
        m.restore_token(&d.token);
    }
}

/// `ofmon sync` output: (exit code, stdout + stderr).
fn ofmon_sync(ofmon: &Path, home: &Path, url: &str, extra: &[&str]) -> Result<(i32, String)> {
    let out = Command::new(ofmon)
        .args(["sync", "--thingsboard", url, "--home"])
        .arg(home)
        .args(extra)
        .env_remove("OFMON_HOME")
        .output()
        .context("running ofmon sync")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}

/// The output line that carries the most of `says` (the one the user reads).
fn message_line(text: &str, says: &[&str]) -> (String, bool) {
    let best = text
        .lines()
        .max_by_key(|l| {
            let l = l.to_lowercase();
            says.iter().filter(|w| l.contains(*w)).count()
        })
        .unwrap_or("")
        .trim()
        .to_string();
    let lower = best.to_lowercase();
    let ok = says.iter().all(|w| lower.contains(w));
    (best, ok)
}

/// Runs one case against a fresh mock (a fresh destination: everything to send).
fn run_case(ofmon: &Path, home: &Path, fx: &Fixture, s: &Spec) -> Result<Case> {
    let db_path = fx.db_path.clone();
    let e = expected(&db_path)?;
    let names: Vec<String> = fx.devices.iter().map(|d| d.name.clone()).collect();
    let m = MockServer::start().map_err(|e| anyhow!("mock: {e}"))?;
    fx.provision(&m);
    let url = m.url();
    let mut c = Case {
        fault: s.fault.to_string(),
        ..Case::default()
    };
    (s.set)(&m, fx);
    let (code, text) = ofmon_sync(ofmon, home, &url, s.args)?;
    c.exit_code = code;
    c.exit_ok = (code != 0) == s.fails;
    if s.says.is_empty() {
        c.message_ok = true;
    } else {
        let (line, ok) = message_line(&text, s.says);
        c.message = line;
        c.message_ok = ok;
    }
    c.sent_but_missing += sent_but_missing(&db_path, &url, &m, &e)?;
    if s.fault.starts_with("401") {
        // The other two devices must have completed in that same run.
        let others: Vec<String> = names
            .iter()
            .skip(2)
            .chain(names.iter().take(1))
            .cloned()
            .collect();
        let mut e2 = e.clone();
        e2.points.retain(|(n, _, _), _| others.contains(n));
        let chk = check_server(&m, &e2, &others, true);
        if chk.missing > 0 {
            c.problem = Some(format!(
                "the devices with a valid token were not completed in the 401 run: {chk:?}"
            ));
        }
    }
    clear(&m, fx);
    // The drops/delays may still be winding down in the mock: let them.
    std::thread::sleep(Duration::from_millis(100));
    let (code2, text2) = ofmon_sync(ofmon, home, &url, &[])?;
    c.server = check_server(&m, &e, &names, true);
    c.sent_but_missing += sent_but_missing(&db_path, &url, &m, &e)?;
    c.unsent = unsent(&db_path, &url)?;
    c.recovered = code2 == 0 && c.server.missing == 0 && c.unsent == 0;
    if code2 != 0 && c.problem.is_none() {
        c.problem = Some(format!("recovery run exit {code2}: {}", text2.trim()));
    }
    Ok(c)
}

/// The server is not there at all (connection refused), then comes up on
/// the same address.
fn run_down(ofmon: &Path, home: &Path, fx: &Fixture) -> Result<Case> {
    let db_path = fx.db_path.clone();
    let e = expected(&db_path)?;
    let names: Vec<String> = fx.devices.iter().map(|d| d.name.clone()).collect();
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let url = format!("http://{addr}");
    let says = ["cannot connect", "next sync resumes"];
    let mut c = Case {
        fault: "server down (connection refused), then back on the same address".into(),
        ..Case::default()
    };
    let (code, text) = ofmon_sync(ofmon, home, &url, &["--max-retries", "1"])?;
    c.exit_code = code;
    c.exit_ok = code != 0;
    let (line, ok) = message_line(&text, &says);
    c.message = line;
    c.message_ok = ok;
    let m = MockServer::start_on(addr).map_err(|e| anyhow!("mock on {addr}: {e}"))?;
    fx.provision(&m);
    c.sent_but_missing += sent_but_missing(&db_path, &url, &m, &e)?;
    let (code2, text2) = ofmon_sync(ofmon, home, &url, &[])?;
    c.server = check_server(&m, &e, &names, true);
    c.sent_but_missing += sent_but_missing(&db_path, &url, &m, &e)?;
    c.unsent = unsent(&db_path, &url)?;
    c.recovered = code2 == 0 && c.server.missing == 0 && c.unsent == 0;
    if code2 != 0 {
        c.problem = Some(format!("recovery run exit {code2}: {}", text2.trim()));
    }
    Ok(c)
}

/// Figures of the full-disk case.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FullDisk {
    /// Size of the tmpfs holding the collector home (KiB).
    pub fs_kib: u64,
    /// Records on the devices to collect.
    pub to_collect: u64,
    /// `ofmon collect` on the full disk: exit code and message.
    pub collect_exit: i32,
    /// Its message.
    pub collect_message: String,
    /// Records committed before the disk filled.
    pub collected_while_full: u64,
    /// `ofmon sync` on the full disk (filled to the last byte): exit code.
    pub sync_exit: i32,
    /// Its message.
    pub sync_message: String,
    /// Whether both messages say the disk is full and what to do.
    pub messages_ok: bool,
    /// After the disk grew: collect and sync exit codes.
    pub recovery_exits: (i32, i32),
    /// Records the devices measured / in the database at the end.
    pub measured: u64,
    /// Records in the database at the end.
    pub db_records: u64,
    /// The server versus the database at the end.
    pub server: ServerCheck,
    /// Records marked sent that the server lacked (after any run).
    pub sent_but_missing: u64,
    /// Timed records not marked sent at the end.
    pub unsent: u64,
    /// The script's transcript when something failed.
    pub problem: Option<String>,
}

impl FullDisk {
    /// Whether the full disk lost nothing and the runs recovered.
    pub fn ok(&self) -> bool {
        self.collect_exit != 0
            && self.sync_exit != 0
            && self.messages_ok
            && self.recovery_exits == (0, 0)
            && self.measured == self.db_records
            && self.server.missing == 0
            && self.server.wrong == 0
            && self.server.extra == 0
            && self.sent_but_missing == 0
            && self.unsent == 0
            && self.problem.is_none()
    }
}

/// Whether this machine lets an unprivileged process mount a tmpfs in a
/// private namespace.
pub fn can_mount_tmpfs() -> Result<(), String> {
    let d = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs \"$1\""])
        .arg("sh")
        .arg(d.path())
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cannot mount a tmpfs in a user namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn du_kib(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len().div_ceil(4096) * 4)
                .sum()
        })
        .unwrap_or(0)
}

/// The full-disk case: the collector home on a tmpfs barely larger than its
/// database; `ofmon collect` fills it; a filler file takes the last bytes
/// and `ofmon sync` runs; then the disk grows (remount) and both run again.
fn run_full_disk(ofmon: &Path, work: &Path, o: &ServerOptions) -> Result<FullDisk> {
    let home = work.join("home");
    let out = work.join("out");
    let mnt = work.join("mnt");
    for d in [&home, &out, &mnt] {
        std::fs::create_dir_all(d)?;
    }
    let db_path = home.join(collector::home::DB_FILE);
    let fx = Fixture::build(&db_path, 3, 200)?;
    std::fs::write(
        home.join(collector::home::FLEET_KEY_FILE),
        protocol::FleetSecret::from_bytes(crate::sync::FLEET).to_hex(),
    )?;
    // Close the database cleanly (checkpointed, no WAL left).
    {
        let db = collector::Db::open(&db_path).map_err(|e| anyhow!("{e}"))?;
        db.conn().pragma_update(None, "journal_mode", "DELETE")?;
        db.conn().pragma_update(None, "journal_mode", "WAL")?;
    }
    for d in &fx.devices {
        let mut st = d.fake.lock();
        let last = st.records.last().map_or(0, |r| r.seq);
        st.records.extend(
            (last + 1..=last + o.full_disk_records).map(|s| collector::fake::sample_record(s, 7)),
        );
    }
    let m = MockServer::start().map_err(|e| anyhow!("mock: {e}"))?;
    fx.provision(&m);
    let url = m.url();
    let fs_kib = du_kib(&home) + 48;
    let urls: Vec<String> = fx.devices.iter().map(|d| d.fake.url.clone()).collect();
    // One namespace for the whole story (the tmpfs lives as long as it).
    let mut s = String::from(
        "set -u\nMNT=$1; OUT=$2; HOME_SRC=$3; OFMON=$4; TB=$5; SIZE=$6\n\
         mount -t tmpfs -o size=${SIZE}k tmpfs \"$MNT\" || exit 90\n\
         cp -a \"$HOME_SRC\"/. \"$MNT\"/ || exit 91\n\
         run() { name=$1; shift; \"$@\" >\"$OUT/$name.out\" 2>&1; echo $? >\"$OUT/$name.rc\"; }\n",
    );
    let collect_all = |tag: &str| -> String {
        let mut c = format!("rc=0; : >\"$OUT/{tag}.out\"\n");
        for u in &urls {
            c.push_str(&format!(
                "\"$OFMON\" collect {u} --home \"$MNT\" >>\"$OUT/{tag}.out\" 2>&1 || rc=$?\n"
            ));
        }
        c.push_str(&format!("echo $rc >\"$OUT/{tag}.rc\"\n"));
        c
    };
    s.push_str(&collect_all("collect1"));
    // Fill the last bytes (another program filling the disk), then sync.
    s.push_str("dd if=/dev/zero of=\"$MNT/filler\" bs=4k >/dev/null 2>&1\n");
    s.push_str("run sync1 \"$OFMON\" sync --thingsboard \"$TB\" --home \"$MNT\"\n");
    // The disk grows (or the user frees space): both complete.
    s.push_str("rm -f \"$MNT/filler\"; mount -o remount,size=65536k \"$MNT\" || exit 92\n");
    s.push_str(&collect_all("collect2"));
    s.push_str("run sync2 \"$OFMON\" sync --thingsboard \"$TB\" --home \"$MNT\"\n");
    s.push_str("cp -a \"$MNT\"/. \"$OUT\"/home/ || exit 93\n");
    std::fs::create_dir_all(out.join("home"))?;
    let st = Command::new("unshare")
        .args(["-rm", "sh", "-c", &s, "sh"])
        .arg(&mnt)
        .arg(&out)
        .arg(&home)
        .arg(ofmon)
        .arg(&url)
        .arg(fs_kib.to_string())
        .output()
        .context("running unshare")?;
    let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap_or_default();
    let rc = |n: &str| read(&format!("{n}.rc")).trim().parse::<i32>().unwrap_or(-1);
    let mut r = FullDisk {
        fs_kib,
        to_collect: 3 * o.full_disk_records,
        collect_exit: rc("collect1"),
        sync_exit: rc("sync1"),
        recovery_exits: (rc("collect2"), rc("sync2")),
        ..FullDisk::default()
    };
    if !st.status.success() {
        r.problem = Some(format!(
            "namespace script failed ({}): {}",
            st.status,
            String::from_utf8_lossy(&st.stderr).trim()
        ));
        return Ok(r);
    }
    let says = ["full", "free"];
    let (cl, cok) = message_line(&read("collect1.out"), &says);
    let (sl, sok) = message_line(&read("sync1.out"), &says);
    r.collect_message = cl;
    r.sync_message = sl;
    r.messages_ok = cok && sok;
    let final_db = out.join("home").join(collector::home::DB_FILE);
    let e = expected(&final_db)?;
    r.measured = fx.measured();
    r.db_records = e.db_records;
    let names: Vec<String> = fx.devices.iter().map(|d| d.name.clone()).collect();
    r.server = check_server(&m, &e, &names, true);
    r.sent_but_missing = sent_but_missing(&final_db, &url, &m, &e)?;
    r.unsent = unsent(&final_db, &url)?;
    r.collected_while_full = collected_while_full(&read("collect1.out"));
    if !r.ok() {
        r.problem = Some(format!(
            "collect1: {}\nsync1: {}\ncollect2: {}\nsync2: {}",
            read("collect1.out").trim(),
            read("sync1.out").trim(),
            read("collect2.out").trim(),
            read("sync2.out").trim()
        ));
    }
    Ok(r)
}

/// Sums "N new records" of `ofmon collect` output lines.
fn collected_while_full(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(": ")?;
            rest.split_once(" new records")?
                .0
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Runs every bad-server case and the full-disk case in `work`.
pub fn run(work: &Path, ofmon: &Path, o: &ServerOptions) -> Result<ServersReport> {
    let started = Instant::now();
    let home: PathBuf = work.join("home");
    let h = collector::home::Home::resolve(Some(&home)).map_err(|e| anyhow!("{e}"))?;
    let db_path = h.file(collector::home::DB_FILE);
    let fx = Fixture::build(&db_path, 3, o.records)?;
    let mut rep = ServersReport {
        records: expected(&db_path)?.db_records,
        ..ServersReport::default()
    };
    for s in specs() {
        rep.cases.push(run_case(ofmon, &home, &fx, &s)?);
    }
    rep.cases.push(run_down(ofmon, &home, &fx)?);
    match can_mount_tmpfs() {
        Ok(()) => {
            let d = work.join("full-disk");
            std::fs::create_dir_all(&d)?;
            rep.full_disk = Some(run_full_disk(ofmon, &d, o)?);
        }
        Err(why) => rep.full_disk_skipped = Some(why),
    }
    if rep.cases.is_empty() {
        bail!("no cases ran");
    }
    rep.wall_s = started.elapsed().as_secs_f64();
    Ok(rep)
}

/// The `docs/RELIABILITY.md` section of [`run`].
pub fn render(r: &ServersReport) -> String {
    use std::fmt::Write;
    let esc = |t: &str| t.replace('|', "\\|");
    let mut s = format!(
        "## Bad servers and a full disk\n\n\
         The real `ofmon sync` (3 devices, {} records) against a ThingsBoard mock that \
         misbehaves, each case on a fresh server (everything to send); then the fault clears \
         and `ofmon sync` runs again. Exit code: 0 when the run could still finish, non-zero \
         when something was left undone; the message must name the problem and what to do. \
         Lost = points missing or different on the server, duplicated = points no record \
         explains or records marked sent that the server lacks.\n\n\
         | fault | exit | what the user is told | next run completes | lost / duplicated | |\n\
         |---|---|---|---|---|---|\n",
        r.records
    );
    for c in &r.cases {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} / {} | {} |",
            esc(&c.fault),
            c.exit_code,
            if c.message.is_empty() {
                "(finished; nothing to tell)".to_string()
            } else {
                format!("`{}`", esc(&c.message))
            },
            if c.recovered { "yes" } else { "**no**" },
            c.server.missing + c.server.wrong,
            c.server.extra + c.sent_but_missing,
            crate::campaign::verdict(c.ok())
        );
    }
    s.push('\n');
    match (&r.full_disk, &r.full_disk_skipped) {
        (Some(f), _) => {
            let _ = writeln!(
                s,
                "**Full disk on the collector.** The collector home on a {} KiB tmpfs (mounted \
                 in a private user namespace, `unshare -rm`; no root needed) barely larger than \
                 its database, with {} new records waiting on the devices: `ofmon collect` \
                 fills it; then another program takes the last bytes and `ofmon sync` runs; \
                 then the disk grows and both run again.\n\n\
                 | figure | value | target |\n|---|---|---|\n\
                 | `ofmon collect` on the full disk | exit {}, {} records committed: `{}` | non-zero, says full + what to do |\n\
                 | `ofmon sync` on the full disk | exit {}: `{}` | non-zero, says full + what to do |\n\
                 | after the disk grew: collect, sync exit codes | {}, {} | 0, 0 |\n\
                 | records measured / in the database | {} / {} | equal |\n\
                 | points on the server / expected | {} / {} | equal |\n\
                 | lost / duplicated | {} / {} | 0 / 0 — {} |\n\n\
                 Finding (fixed): SQLite's own texts were all the user got — `database or disk \
                 is full` with no word on what to do, and for the sync `disk I/O error … \
                 xShmMap`, which does not even say the disk is full. Database errors of the \
                 collector and the sync now say the disk is full (or failing), to free space \
                 and run again, and that everything committed is kept \
                 (`collector::db_hint`; test `crates/collector/tests/disk_full.rs`).\n",
                f.fs_kib,
                f.to_collect,
                f.collect_exit,
                f.collected_while_full,
                esc(&f.collect_message),
                f.sync_exit,
                esc(&f.sync_message),
                f.recovery_exits.0,
                f.recovery_exits.1,
                f.measured,
                f.db_records,
                f.server.stored,
                f.server.expected,
                f.server.missing + f.server.wrong,
                f.server.extra + f.sent_but_missing,
                crate::campaign::verdict(f.ok())
            );
        }
        (None, why) => {
            let _ = writeln!(
                s,
                "**Full disk on the collector: not run**: {}.\n",
                why.as_deref().unwrap_or("?")
            );
        }
    }
    let _ = writeln!(s, "Wall time {:.1} s.\n", r.wall_s);
    s
}
