//! ThingsBoard subcommands: `ofmon sync`, `ofmon tb-mock`, and the REST
//! provisioning used by `ofmon pair --thingsboard URL --user U --password P`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Args, ValueEnum};
use collector::home::Home;
use tbsync::{DeviceStatus, Gzip, Progress, SyncOptions, Syncer, Transport};

/// Transport choice on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TransportArg {
    /// From the URL: http(s):// → HTTP, mqtt(s):// → MQTT.
    Auto,
    /// HTTP device API (batched POSTs).
    Http,
    /// MQTT device API (one connection per device, QoS 1).
    Mqtt,
    /// MQTT gateway API (one connection for all devices; the gateway token
    /// from `ofmon pair --gateway`, or --gateway-token).
    Gateway,
}

/// Gzip choice on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GzipArg {
    /// Probe the server once; gzip only if it accepts it.
    Auto,
    /// Never compress request bodies.
    Never,
    /// Always compress (a proxy in front decompresses).
    Always,
}

/// `ofmon sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Home directory (database). Default: $OFMON_HOME, else the platform
    /// data directory.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// ThingsBoard server for every device (http(s):// or mqtt(s)://).
    /// Default: each device's server from pairing.
    #[arg(long, value_name = "URL")]
    thingsboard: Option<String>,
    /// How to send.
    #[arg(long, value_enum, default_value = "auto")]
    transport: TransportArg,
    /// Access token of the gateway device (gateway transport). Default: the
    /// one saved by `ofmon pair --gateway` for this server.
    #[arg(long, value_name = "TOKEN")]
    gateway_token: Option<String>,
    /// PEM file of a private CA for https:// or mqtts://.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Only this device (id, name or SSID); repeatable.
    #[arg(long = "device", value_name = "DEVICE")]
    devices: Vec<String>,
    /// Most records per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Most bytes of JSON per HTTP request.
    #[arg(long, default_value_t = 1024 * 1024)]
    batch_bytes: usize,
    /// Consecutive failures per device before giving up until the next run.
    #[arg(long, default_value_t = 6)]
    max_retries: u32,
    /// Request timeout, seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Request body compression.
    #[arg(long, value_enum, default_value = "auto")]
    gzip: GzipArg,
    /// Print the per-device summary as JSON.
    #[arg(long)]
    json: bool,
}

/// `ofmon tb-mock`.
#[derive(Args, Debug)]
pub struct TbMockArgs {
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Also serve the MQTT device and gateway API on this port (0: any free
    /// port), e.g. for `ofmon sync --transport gateway`.
    #[arg(long, value_name = "PORT")]
    mqtt_port: Option<u16>,
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

/// Runs `ofmon tb-mock`: serves until killed.
pub fn tb_mock(args: &TbMockArgs) -> ExitCode {
    report(tb_mock_inner(args))
}

fn tb_mock_inner(args: &TbMockArgs) -> Result<ExitCode> {
    let m = thingsboard_mock::MockServer::start_on((args.bind, args.port).into())
        .with_context(|| format!("is port {} already in use? try --port 0", args.port))?;
    println!("ThingsBoard mock listening on {}", m.url());
    println!(
        "tenant login: {} / {}",
        thingsboard_mock::TENANT_USER,
        thingsboard_mock::TENANT_PASSWORD
    );
    println!(
        "pair: ofmon pair DEVICE --thingsboard {} --user {} --password {}",
        m.url(),
        thingsboard_mock::TENANT_USER,
        thingsboard_mock::TENANT_PASSWORD
    );
    println!("sync: ofmon sync --thingsboard {}", m.url());
    let _mqtt = match args.mqtt_port {
        Some(port) => {
            let mq = m
                .start_mqtt_on((args.bind, port).into())
                .with_context(|| format!("is port {port} already in use? try --mqtt-port 0"))?;
            println!(
                "gateway: ofmon pair --gateway --thingsboard {} --user {} --password {}; \
                 ofmon sync --transport gateway --thingsboard {}",
                m.url(),
                thingsboard_mock::TENANT_USER,
                thingsboard_mock::TENANT_PASSWORD,
                mq.url()
            );
            Some(mq)
        }
        None => None,
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

fn status_text(s: &DeviceStatus) -> String {
    match s {
        DeviceStatus::Done => "ok".into(),
        DeviceStatus::Unauthorized => {
            "UNAUTHORIZED: the server refused the access token; re-pair the device".into()
        }
        DeviceStatus::GaveUp(e) => format!("gave up for now (next sync resumes): {e}"),
        DeviceStatus::NoServer => "skipped: no server (pass --thingsboard URL)".into(),
        DeviceStatus::NoToken => "skipped: not paired (no access token; run `ofmon pair`)".into(),
        DeviceStatus::Failed(e) => format!("failed: {e}"),
    }
}

/// Runs `ofmon sync`.
pub fn sync(args: &SyncArgs) -> ExitCode {
    report(sync_inner(args))
}

fn sync_inner(args: &SyncArgs) -> Result<ExitCode> {
    let home = Home::resolve(args.home.as_deref())?;
    let db = home.db()?;
    let ca_pem = match &args.ca_file {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("cannot read --ca-file {}", p.display()))?,
        ),
        None => None,
    };
    let opts = SyncOptions {
        server: args.thingsboard.clone(),
        transport: match args.transport {
            TransportArg::Auto => Transport::Auto,
            TransportArg::Http => Transport::Http,
            TransportArg::Mqtt => Transport::Mqtt,
            TransportArg::Gateway => Transport::Gateway,
        },
        gateway_token: match (&args.gateway_token, args.transport) {
            (Some(t), _) => Some(t.clone()),
            (None, TransportArg::Gateway) => saved_gateway_token(&db, args.thingsboard.as_deref())?,
            (None, _) => None,
        },
        only: args.devices.clone(),
        batch_records: args.batch.max(1),
        batch_bytes: args.batch_bytes.max(1024),
        max_retries: args.max_retries,
        timeout: Duration::from_secs(args.timeout.max(1)),
        gzip: match args.gzip {
            GzipArg::Auto => Gzip::Auto,
            GzipArg::Never => Gzip::Never,
            GzipArg::Always => Gzip::Always,
        },
        ca_pem,
        ..SyncOptions::default()
    };
    let opts_ca = opts.ca_pem.clone();
    let syncer = Syncer::new(db.conn(), opts)?;
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} records {per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let r = syncer.run(&mut |p| match p {
        Progress::Start { pending } => bar.set_length(pending),
        Progress::Device { device, .. } => bar.set_message(device.display_name().to_string()),
        Progress::Sent { records, .. } => bar.inc(records),
        Progress::Retry {
            device,
            attempt,
            error,
            wait,
        } => bar.set_message(format!(
            "{device}: attempt {attempt} failed ({error}); retrying in {} ms",
            wait.as_millis()
        )),
        Progress::Done(d) => {
            if d.status == DeviceStatus::Unauthorized {
                bar.println(format!("{} ({}): {}", d.name, d.id, status_text(&d.status)));
            }
        }
    })?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{:<14} {:<20} {:>8} {:>7} {:>8} {:>8}  status",
            "device", "name", "sent", "failed", "pending", "untimed"
        );
        for d in &r.devices {
            println!(
                "{:<14} {:<20} {:>8} {:>7} {:>8} {:>8}  {}",
                d.id,
                d.name,
                d.sent,
                d.failed,
                d.pending,
                d.untimed,
                status_text(&d.status)
            );
        }
        let secs = r.elapsed_ms as f64 / 1000.0;
        println!(
            "sent {} records in {:.1} s{}",
            r.sent(),
            secs,
            if secs > 0.0 {
                format!(" ({:.0} records/s)", r.sent() as f64 / secs)
            } else {
                String::new()
            }
        );
        let moved: u64 = r.devices.iter().map(|d| d.moved).sum();
        if moved > 0 {
            println!(
                "{moved} records were re-sent at a corrected time (time reconstruction changed \
                 it after an earlier sync)"
            );
        }
    }
    // Delete the earlier points of re-sent records where a login is saved;
    // never fails the sync.
    let timeout = Duration::from_secs(args.timeout.max(1));
    let lines = match delete_stale(&home, &db, timeout, opts_ca.as_deref()) {
        Ok(lines) => lines,
        Err(e) => vec![format!(
            "warning: could not delete the earlier points of re-sent records: {e:#}"
        )],
    };
    for l in lines {
        if args.json {
            eprintln!("{l}");
        } else {
            println!("{l}");
        }
    }
    if r.devices.is_empty() {
        eprintln!(
            "no devices in the database: pair and collect first (`ofmon pair`, `ofmon collect`)"
        );
    }
    let bad = r.devices.iter().any(|d| {
        matches!(
            d.status,
            DeviceStatus::Unauthorized | DeviceStatus::GaveUp(_) | DeviceStatus::Failed(_)
        )
    });
    let nothing_to_talk_to = !r.devices.is_empty()
        && r.devices
            .iter()
            .all(|d| matches!(d.status, DeviceStatus::NoServer | DeviceStatus::NoToken));
    Ok(if bad || nothing_to_talk_to {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Deletes the earlier points of records re-sent at a corrected ts
/// (`sync_stale`) on each server with a saved REST login, for devices with
/// a known ThingsBoard id; returns the lines to print (what was deleted,
/// what remains and why).
fn delete_stale(
    home: &Home,
    db: &collector::Db,
    timeout: Duration,
    ca_pem: Option<&[u8]>,
) -> Result<Vec<String>> {
    use std::collections::BTreeMap;
    use tbsync::rest::{Credentials, LOGIN_FILE, LoginStore};

    let queued = tbsync::stale::queued(db.conn())?;
    if queued.is_empty() {
        return Ok(Vec::new());
    }
    let devices: BTreeMap<String, collector::db::DeviceRow> = db
        .devices()?
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    // REST server → groups; points that no server can take.
    let mut by_server: BTreeMap<String, Vec<tbsync::stale::StaleGroup>> = BTreeMap::new();
    let mut no_id = 0u64;
    for (url, mut g) in queued {
        let d = devices.get(&g.device);
        let server = d
            .and_then(|d| d.tb_server.as_deref())
            .map(tbsync::outbox::normalize_url);
        match (server, d.and_then(|d| d.tb_id.clone())) {
            // The point is on the destination; the device's id is known on
            // the server it was paired with (same host: the MQTT URL of a
            // server differs from its REST URL in scheme and port).
            (Some(s), Some(id)) if host_of(&s) == host_of(&url) => {
                g.tb_id = id;
                by_server.entry(s).or_default().push(g);
            }
            _ => no_id += g.ts.len() as u64,
        }
    }
    let store = LoginStore::new(home.file(LOGIN_FILE));
    let mut lines = Vec::new();
    let mut deleted = 0u64;
    let mut no_login: Vec<(String, u64)> = Vec::new();
    for (server, groups) in by_server {
        let n: u64 = groups.iter().map(|g| g.ts.len() as u64).sum();
        let saved = match store.get(&server) {
            Ok(s) => s,
            Err(e) => {
                lines.push(format!("warning: ThingsBoard {server}: {e}"));
                None
            }
        };
        let Some(saved) = saved else {
            no_login.push((server, n));
            continue;
        };
        let r = tbsync::stale::delete_blocking(
            db.conn(),
            &server,
            Credentials::RefreshToken(&saved.refresh_token),
            &groups,
            timeout,
            timeout.saturating_mul(4),
            ca_pem,
        );
        match r {
            Ok(d) => {
                crate::tb_names::save_login(
                    home,
                    &server,
                    saved.user.as_deref(),
                    d.refresh_token.as_deref(),
                )?;
                deleted += d.deleted;
                if d.remaining > 0 {
                    lines.push(format!(
                        "warning: {} earlier points of re-sent records remain on ThingsBoard \
                         {server} (the next sync retries){}",
                        d.remaining,
                        d.error.map(|e| format!(": {e}")).unwrap_or_default()
                    ));
                }
            }
            Err(e) => lines.push(format!(
                "warning: {n} earlier points of re-sent records remain on ThingsBoard {server} \
                 (the next sync retries): {e}"
            )),
        }
    }
    if deleted > 0 {
        lines.insert(
            0,
            format!("deleted {deleted} earlier points of re-sent records from ThingsBoard"),
        );
    }
    for (server, n) in no_login {
        lines.push(format!(
            "{n} earlier points of re-sent records remain on ThingsBoard {server} at their old \
             times; to delete them, save a login once with `ofmon devices --thingsboard {server} \
             --user USER --password PASSWORD` and sync again"
        ));
    }
    if no_id > 0 {
        lines.push(format!(
            "{no_id} earlier points of re-sent records remain on ThingsBoard at their old times \
             (their devices were not paired through the REST API, so their ThingsBoard ids are \
             unknown; `ofmon devices --thingsboard URL --user USER --password PASSWORD` looks \
             them up)"
        ));
    }
    Ok(lines)
}

/// Logs in, finds the device `name` or creates it (with `profile`; with
/// `gateway`, as a gateway device), and reads its access token. Called by
/// `ofmon pair` before it pairs the meter, and by `ofmon pair --gateway`.
pub fn provision(
    server: &str,
    user: &str,
    password: &str,
    name: &str,
    profile: Option<&str>,
    gateway: bool,
    ca_file: Option<&std::path::Path>,
) -> Result<tbsync::rest::Provisioned> {
    let ca = match ca_file {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("cannot read --ca-file {}", p.display()))?,
        ),
        None => None,
    };
    tbsync::rest::provision_blocking(
        server,
        user,
        password,
        name,
        profile,
        gateway,
        ca.as_deref(),
    )
    .map_err(|e| anyhow!("{e}"))
}

/// The host of a server URL (`http://h:8080/x` → `h`).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// The gateway token `ofmon pair --gateway` saved for the server the gateway
/// transport talks to: the one on the same host as `server` (the REST URL
/// and the MQTT URL differ in scheme and port), else the only one saved.
pub fn saved_gateway_token(db: &collector::Db, server: Option<&str>) -> Result<Option<String>> {
    let gws = db.gateways()?;
    let same_host = server.and_then(|s| gws.iter().find(|g| host_of(&g.server) == host_of(s)));
    Ok(match (same_host, gws.len()) {
        (Some(g), _) => Some(g.token.clone()),
        (None, 1) if server.is_none() => Some(gws[0].token.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts() {
        assert_eq!(host_of("http://tb.example:8080/"), "tb.example");
        assert_eq!(host_of("mqtt://127.0.0.1:1883"), "127.0.0.1");
        assert_eq!(host_of("https://u@tb"), "tb");
        assert_eq!(host_of("mqtt://[::1]:1883"), "::1");
        assert_eq!(host_of("tb.local"), "tb.local");
    }
}
