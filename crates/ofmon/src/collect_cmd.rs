//! `ofmon devices`, `ofmon pair`, `ofmon collect`, `ofmon prune`,
//! `ofmon export`: the terminal side of the `collector` library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use collector::client::{DeviceApi, HttpDevice};
use collector::collect::{self, Progress, Summary};
use collector::db::ExportFilter;
use collector::discovery::{
    Discovery, Found, KnownDevice, NmcliDiscovery, SimDiscovery, StaticDiscovery, resolve,
};
use collector::home::{Home, SIM_FILE, STATIC_FILE};
use collector::pair::PairOptions;
use collector::{Db, export};
use indicatif::{ProgressBar, ProgressStyle};
use protocol::Mac;

/// Timeout of one HTTP request to a device.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `--home` shared by every collector subcommand.
#[derive(Args, Debug, Clone)]
pub struct HomeArg {
    /// Home directory (database, fleet.key, sim-devices.json).
    /// Default: $OFMON_HOME, else the platform data directory.
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
}

impl HomeArg {
    fn resolve(&self) -> Result<Home> {
        Ok(Home::resolve(self.home.as_deref())?)
    }
}

/// `ofmon devices`.
#[derive(Args, Debug)]
pub struct DevicesArgs {
    #[command(flatten)]
    home: HomeArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also scan Wi-Fi with nmcli for devices in range.
    #[arg(long)]
    wifi: bool,
    /// Do not ask ThingsBoard for the devices' current names and labels;
    /// show the cached ones.
    #[arg(long, conflicts_with_all = ["thingsboard", "user"])]
    offline: bool,
    /// Only this ThingsBoard server; with --user/--password, log in there
    /// (the login is remembered as a refresh token, never the password).
    #[arg(long, value_name = "URL")]
    thingsboard: Option<String>,
    /// ThingsBoard tenant user (default: $OFMON_TB_USER).
    #[arg(long, requires_all = ["thingsboard", "password"])]
    user: Option<String>,
    /// ThingsBoard tenant password (default: $OFMON_TB_PASSWORD).
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// PEM file of a private CA for an https:// server.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

/// `ofmon pair`.
#[derive(Args, Debug)]
pub struct PairArgs {
    #[command(flatten)]
    home: HomeArg,
    /// The device: URL, SSID or device id.
    #[arg(required_unless_present = "gateway", conflicts_with = "gateway")]
    device: Option<String>,
    /// Instead of a meter, provision this collector's gateway device (the
    /// "Is gateway" flag) on the server and save its token for
    /// `ofmon sync --transport gateway`. Needs --thingsboard, --user and
    /// --password; --name defaults to "OFMon gateway".
    #[arg(long, requires_all = ["thingsboard", "user"])]
    gateway: bool,
    /// ThingsBoard device access token (or get one with --thingsboard,
    /// --user and --password).
    #[arg(long, required_unless_present = "user", conflicts_with = "user")]
    token: Option<String>,
    /// ThingsBoard server: with --user/--password, log in, create the device
    /// (or find it by name) and read its token; also remembered for sync.
    #[arg(long, value_name = "URL")]
    thingsboard: Option<String>,
    /// ThingsBoard tenant user (REST provisioning).
    #[arg(long, requires_all = ["thingsboard", "password"])]
    user: Option<String>,
    /// ThingsBoard tenant password (REST provisioning).
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// PEM file of a private CA for an https:// server.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// ThingsBoard device name (REST provisioning default: the SSID).
    #[arg(long)]
    name: Option<String>,
    /// ThingsBoard device profile (UUID with --token; profile name with --user).
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `ofmon collect`.
#[derive(Args, Debug)]
pub struct CollectArgs {
    #[command(flatten)]
    home: HomeArg,
    /// The device: URL, SSID or device id.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    device: Option<String>,
    /// Every device in reach (simulator, devices.txt, remembered URLs).
    #[arg(long)]
    all: bool,
    /// Also scan Wi-Fi with nmcli and visit devices in range.
    #[arg(long)]
    wifi: bool,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// Records per request (the device may send fewer).
    #[arg(long, default_value_t = collector::collect::Options::default().page)]
    page: u32,
    /// Do not set the device clock.
    #[arg(long)]
    no_clock: bool,
}

/// `ofmon prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    home: HomeArg,
    /// Delete records measured before this time (YYYY-MM-DD, RFC 3339 UTC
    /// `YYYY-MM-DDTHH:MM:SSZ`, or unix milliseconds). Records whose time is
    /// unknown are kept.
    #[arg(long, value_name = "DATE")]
    before: String,
}

/// Export format.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ExportFormat {
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// `ofmon export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    home: HomeArg,
    /// Only this device (id, SSID or URL as remembered).
    #[arg(long)]
    device: Option<String>,
    /// From this time, inclusive (same formats as `prune --before`).
    #[arg(long, value_name = "T")]
    from: Option<String>,
    /// Up to this time, exclusive.
    #[arg(long, value_name = "T")]
    to: Option<String>,
    /// Output format.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn report(r: Result<ExitCode>) -> ExitCode {
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn backends(home: &Home, wifi: bool) -> Vec<Box<dyn Discovery>> {
    let mut v: Vec<Box<dyn Discovery>> = vec![
        Box::new(SimDiscovery {
            path: home.file(SIM_FILE),
        }),
        Box::new(StaticDiscovery::from_file(
            home.file(STATIC_FILE),
            Vec::new(),
        )),
    ];
    if wifi {
        v.push(Box::new(NmcliDiscovery::new(home.fleet_key().ok())));
    }
    v
}

fn known(db: &Db) -> Result<Vec<KnownDevice>> {
    Ok(db
        .devices()?
        .into_iter()
        .map(|d| (d.id, d.ssid, d.url))
        .collect())
}

/// Runs `ofmon devices`.
pub fn devices(args: &DevicesArgs) -> ExitCode {
    report(devices_inner(args))
}

fn devices_inner(args: &DevicesArgs) -> Result<ExitCode> {
    let home = args.home.resolve()?;
    let mut db = home.db()?;
    let mut code = ExitCode::SUCCESS;
    if !args.offline {
        let ca_pem = match &args.ca_file {
            Some(p) => Some(
                std::fs::read(p)
                    .with_context(|| format!("cannot read --ca-file {}", p.display()))?,
            ),
            None => None,
        };
        let login = crate::tb_names::Login {
            server: args.thingsboard.clone(),
            user: args.user.clone(),
            password: args.password.clone(),
            ca_pem,
        }
        .with_env();
        let o = crate::tb_names::refresh(&home, &mut db, &login, crate::tb_names::FETCH_TIMEOUT)?;
        for n in &o.notes {
            eprintln!("note: {n}");
        }
        // A password typed on the command line that the server refuses is
        // an error; being offline or logged out is not.
        if o.password_refused && args.password.is_some() {
            code = ExitCode::FAILURE;
        }
    }
    let rows = db.devices()?;
    let now = collector::now_ms();
    let mut seen: Vec<Found> = Vec::new();
    for mut b in backends(&home, args.wifi) {
        seen.extend(b.scan().unwrap_or_default());
    }
    let new: Vec<&Found> = seen
        .iter()
        .filter(|f| {
            !rows.iter().any(|r| {
                f.id.as_deref() == Some(r.id.as_str()) || (f.url.is_some() && f.url == r.url)
            })
        })
        .collect();
    if args.json {
        let v = serde_json::json!({ "now_ms": now, "known": rows, "new": new });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    println!(
        "{:<14} {:<20} {:<6} {:<16} {:<16} {:<11} {:>9} {:<20} {:>8}",
        "ID",
        "SSID",
        "PAIRED",
        "NAME",
        "LABEL",
        "NAME AS OF",
        "LAST SEQ",
        "LAST COLLECT (UTC)",
        "PENDING"
    );
    for r in &rows {
        println!(
            "{:<14} {:<20} {:<6} {:<16} {:<16} {:<11} {:>9} {:<20} {:>8}",
            r.id,
            r.ssid.as_deref().unwrap_or("-"),
            if r.paired { "yes" } else { "no" },
            r.name.as_deref().unwrap_or("-"),
            r.label.as_deref().unwrap_or("-"),
            r.tb_fetched_ms
                .map_or("pairing".to_string(), |t| crate::tb_names::age(t, now)),
            r.last_seq,
            r.last_collect_ms.map_or("-".to_string(), fmt_utc),
            r.pending_sync
        );
    }
    for f in new {
        println!(
            "{:<14} {:<20} {:<6} new ({}{})",
            f.id.as_deref().unwrap_or("?"),
            f.ssid.as_deref().unwrap_or("-"),
            "?",
            f.source,
            f.url
                .as_deref()
                .map(|u| format!(" at {u}"))
                .unwrap_or_default()
        );
    }
    Ok(code)
}

/// Runs `ofmon pair`.
pub fn pair(args: &PairArgs) -> ExitCode {
    report(pair_inner(args))
}

/// Default name of the gateway device made by `ofmon pair --gateway`.
pub const GATEWAY_NAME: &str = "OFMon gateway";

fn pair_gateway(args: &PairArgs, home: &Home, db: &Db) -> Result<ExitCode> {
    let (Some(server), Some(user)) = (&args.thingsboard, &args.user) else {
        bail!("--gateway needs --thingsboard URL --user U --password P");
    };
    let name = args.name.as_deref().unwrap_or(GATEWAY_NAME);
    let p = crate::tb_cmd::provision(
        server,
        user,
        args.password.as_deref().unwrap_or(""),
        name,
        args.profile.as_deref(),
        true,
        args.ca_file.as_deref(),
    )?;
    crate::tb_names::save_login(home, server, Some(user), p.refresh_token.as_deref())?;
    let row = collector::db::GatewayRow {
        server: tbsync::outbox::normalize_url(server),
        tb_id: p.device.id.clone(),
        name: p.device.name.clone(),
        token: p.token,
        added_ms: collector::now_ms(),
    };
    db.set_gateway(&row)?;
    if args.json {
        let v = serde_json::json!({
            "gateway": row,
            "created": p.created,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} gateway device {:?} ({}) on {}; `ofmon sync --transport gateway` uses its token",
            if p.created { "created" } else { "found" },
            row.name,
            row.tb_id,
            row.server
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn pair_inner(args: &PairArgs) -> Result<ExitCode> {
    let home = args.home.resolve()?;
    let db = home.db()?;
    if args.gateway {
        return pair_gateway(args, &home, &db);
    }
    let Some(device) = args.device.as_deref() else {
        bail!("name the device to pair (URL, SSID or device id), or pass --gateway");
    };
    let fleet = home.fleet_key()?;
    let mut bs = backends(&home, true);
    let (found, join) = resolve(device, &mut bs, &known(&db)?)?;
    // REST provisioning (issue 7): token from the server, device by name;
    // before joining the device's Wi-Fi, while the server is reachable.
    let mut provisioned = None;
    let (token, name, profile, server) = match (&args.user, &args.thingsboard) {
        (Some(user), Some(server)) => {
            let name = args
                .name
                .clone()
                .or_else(|| found.ssid.clone())
                .or_else(|| found.id.clone())
                .unwrap_or_else(|| device.to_string());
            let p = crate::tb_cmd::provision(
                server,
                user,
                args.password.as_deref().unwrap_or(""),
                &name,
                args.profile.as_deref(),
                false,
                args.ca_file.as_deref(),
            )?;
            eprintln!(
                "ThingsBoard: {} device {} ({})",
                if p.created { "created" } else { "found" },
                p.device.name,
                p.device.id
            );
            crate::tb_names::save_login(&home, server, Some(user), p.refresh_token.as_deref())?;
            let token = p.token.clone();
            let name = p.device.name.clone();
            provisioned = Some((server.clone(), p.device));
            (token, Some(name), None, Some(server.clone()))
        }
        _ => (
            args.token.clone().unwrap_or_default(),
            args.name.clone(),
            args.profile.clone(),
            args.thingsboard.clone(),
        ),
    };
    let url = match join {
        Some(i) => bs[i].join(&found)?,
        None => found
            .url
            .clone()
            .ok_or_else(|| anyhow!("no URL for device"))?,
    };
    let mut dev = HttpDevice::new(&url, None, TIMEOUT);
    let res = collector::pair::pair(
        &db,
        &mut dev,
        &fleet,
        &PairOptions {
            token,
            name,
            profile,
            server,
        },
    );
    if let Some(i) = join {
        bs[i].leave()?;
    }
    let p = res?;
    if let Some((server, tb)) = provisioned {
        db.set_tb_identity(
            &p.device_id,
            &tbsync::outbox::normalize_url(&server),
            &tb.id,
            &tb.name,
            tb.label.as_deref(),
            collector::now_ms(),
        )?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        println!(
            "paired {} ({}); clock set ±{} ms",
            p.device_id, p.ssid, p.clock.uncertainty_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct Bar {
    bar: Option<ProgressBar>,
    bytes: u64,
}

impl Progress for Bar {
    fn start(&mut self, device: &str, expected: u64) {
        if let Some(b) = &self.bar {
            b.set_length(expected);
            b.set_position(0);
            b.set_prefix(device.to_string());
        }
        self.bytes = 0;
    }
    fn bytes(&mut self, n: u64) {
        self.bytes += n;
        if let Some(b) = &self.bar {
            b.set_message(format!("{} KiB", self.bytes / 1024));
        }
    }
    fn committed(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Runs `ofmon collect`.
pub fn collect(args: &CollectArgs) -> ExitCode {
    report(collect_inner(args))
}

fn collect_one(
    db: &mut Db,
    fleet: &protocol::FleetSecret,
    url: &str,
    opts: &collect::Options,
    progress: &mut dyn Progress,
) -> Summary {
    let mut dev = HttpDevice::new(url, None, TIMEOUT);
    // Learn the id to derive the device's API key.
    match dev.info() {
        Ok(info) => match Mac::parse(&info.id) {
            Ok(mac) => dev.set_key(fleet.device_keys(&mac).api_key),
            Err(e) => {
                return Summary {
                    url: Some(url.into()),
                    error: Some(format!("device id {:?}: {e}", info.id)),
                    ..Summary::default()
                };
            }
        },
        Err(e) => {
            return Summary {
                url: Some(url.into()),
                error: Some(e.to_string()),
                ..Summary::default()
            };
        }
    }
    collect::collect(db, &dev, Some(url), opts, progress)
}

fn collect_inner(args: &CollectArgs) -> Result<ExitCode> {
    let home = args.home.resolve()?;
    let mut db = home.db()?;
    let fleet = home.fleet_key()?;
    let opts = collect::Options {
        page: args.page.max(1),
        set_clock: !args.no_clock,
        ..collect::Options::default()
    };
    let show = !args.json && std::io::stderr().is_terminal();
    let mut bar = Bar {
        bar: show.then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} records, {msg} {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        }),
        bytes: 0,
    };
    let mut bs = backends(&home, args.wifi);
    let mut targets: Vec<(Found, Option<usize>)> = Vec::new();
    if let Some(d) = &args.device {
        targets.push(resolve(d, &mut bs, &known(&db)?)?);
    } else {
        for (i, b) in bs.iter_mut().enumerate() {
            for f in b.scan().unwrap_or_default() {
                let join = f.url.is_none().then_some(i);
                targets.push((f, join));
            }
        }
        for (id, ssid, url) in known(&db)? {
            if url.is_some() {
                targets.push((
                    Found {
                        id: Some(id),
                        ssid,
                        url,
                        source: "database".into(),
                    },
                    None,
                ));
            }
        }
        // One visit per device (by id when known, else by URL).
        let mut seen = std::collections::HashSet::new();
        targets.retain(|(f, _)| {
            let key = f.id.clone().or_else(|| f.url.clone()).unwrap_or_default();
            seen.insert(key)
        });
        if targets.is_empty() {
            bail!(
                "no devices found: start `ofmon sim`, list URLs in {}, or name a device",
                home.file(STATIC_FILE).display()
            );
        }
    }
    let mut summaries = Vec::new();
    for (found, join) in targets {
        let url = match join {
            Some(i) => match bs[i].join(&found) {
                Ok(u) => u,
                Err(e) => {
                    summaries.push(Summary {
                        device_id: found.id.clone(),
                        error: Some(e.to_string()),
                        ..Summary::default()
                    });
                    continue;
                }
            },
            None => found.url.clone().unwrap_or_default(),
        };
        let s = collect_one(&mut db, &fleet, &url, &opts, &mut bar);
        if let Some(i) = join
            && let Err(e) = bs[i].leave()
        {
            eprintln!("warning: could not restore the previous Wi-Fi connection: {e}");
        }
        summaries.push(s);
    }
    let ok = summaries.iter().any(Summary::did_something);
    if args.json {
        let total: u64 = summaries.iter().map(|s| s.new_records).sum();
        let v = serde_json::json!({
            "devices": summaries,
            "new_records": total,
            "ok": ok,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for s in &summaries {
            let who = s
                .device_id
                .clone()
                .or_else(|| s.url.clone())
                .unwrap_or_default();
            let clock = s
                .clock
                .map(|c| format!(", clock set ±{} ms", c.uncertainty_ms))
                .unwrap_or_default();
            println!(
                "{who}: {} new records ({} bytes) in {:.2} s, stored up to seq {}{clock}",
                s.new_records, s.bytes, s.seconds, s.last_seq
            );
            if s.lost_on_device > 0 {
                eprintln!(
                    "warning: {who}: {} records were overwritten on the device before any collector saw them",
                    s.lost_on_device
                );
            }
            if let Some(e) = &s.error {
                eprintln!("error: {who}: {e}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `ofmon prune`.
pub fn prune(args: &PruneArgs) -> ExitCode {
    report((|| {
        let before = parse_time(&args.before)?;
        let home = args.home.resolve()?;
        let mut db = home.db()?;
        let n = db.prune(before)?;
        println!("deleted {n} records measured before {}", fmt_utc(before));
        Ok(ExitCode::SUCCESS)
    })())
}

/// Runs `ofmon export`.
pub fn export(args: &ExportArgs) -> ExitCode {
    report(export_inner(args))
}

fn export_inner(args: &ExportArgs) -> Result<ExitCode> {
    let home = args.home.resolve()?;
    let db = home.db()?;
    let device = match &args.device {
        None => None,
        Some(d) => Some(match collector::discovery::classify(d) {
            collector::discovery::Target::Id(id) => id,
            _ => db
                .devices()?
                .into_iter()
                .find(|r| r.ssid.as_deref() == Some(d) || r.url.as_deref() == Some(d))
                .map(|r| r.id)
                .ok_or_else(|| anyhow!("unknown device {d:?}; see `ofmon devices`"))?,
        }),
    };
    let filter = ExportFilter {
        device,
        from_ms: args.from.as_deref().map(parse_time).transpose()?,
        to_ms: args.to.as_deref().map(parse_time).transpose()?,
    };
    let format = match args.format {
        ExportFormat::Csv => export::Format::Csv,
        ExportFormat::Json => export::Format::Json,
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let n = export::export(&db, &filter, format, &mut out)?;
    out.flush()?;
    if args.output.is_some() {
        eprintln!("exported {n} rows");
    }
    Ok(ExitCode::SUCCESS)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]Z` (UTC) or unix milliseconds.
pub fn parse_time(s: &str) -> Result<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && s.len() > 8 {
        return Ok(s.parse()?);
    }
    let bad = || anyhow!("bad time {s:?}: use YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or unix ms");
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (s, None),
    };
    let mut dp = date.split('-').map(|p| p.parse::<i64>());
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d)), None) =
        (dp.next(), dp.next(), dp.next(), dp.next())
    else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = 0;
    if let Some(t) = time {
        let parts: Vec<_> = t.split(':').map(|p| p.parse::<i64>()).collect();
        let v: Vec<i64> = parts
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let (h, mi, se) = match v.as_slice() {
            [h, mi] => (*h, *mi, 0),
            [h, mi, se] => (*h, *mi, *se),
            _ => return Err(bad()),
        };
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&se) {
            return Err(bad());
        }
        secs = h * 3600 + mi * 60 + se;
    }
    Ok((days_from_civil(y, m, d) * 86_400 + secs) * 1000)
}

/// Formats unix ms as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn fmt_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil_from_days
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
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_format() {
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(fmt_utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(
            parse_time("2024-02-29").map(fmt_utc).unwrap(),
            "2024-02-29 00:00:00"
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2024-13-01").is_err());
    }
}
