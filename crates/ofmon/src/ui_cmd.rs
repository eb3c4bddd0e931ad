//! `ofmon ui` and `ofmon demo`: terminal side of the `ui` crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ui::demo::{Demo, DemoOptions, ThingsBoard};
use ui::{Server, ServerOptions};

/// Serve the dashboard over the collector's database.
#[derive(Debug, Clone, clap::Args)]
pub struct UiArgs {
    /// Address to listen on. The dashboard has no login: keep it on
    /// loopback unless the network is trusted.
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    /// Collector home (database, fleet key). Default: $OFMON_HOME or the
    /// platform data directory.
    #[arg(long)]
    pub home: Option<PathBuf>,
}

/// Run the whole system with no config and no network: three simulated
/// devices with a week of history, paired and collected into a fresh home,
/// a ThingsBoard mock, and the dashboard.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Home directory to use (kept). Default: a temporary one, removed on exit.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Dashboard address.
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    /// Days of history the simulated devices meter before going live.
    #[arg(long, default_value_t = 7.0)]
    pub history: f64,
    /// Sync to this ThingsBoard instead of the built-in mock (needs three --token).
    #[arg(long, value_name = "URL", requires = "token")]
    pub thingsboard: Option<String>,
    /// Device access token on --thingsboard, once per device (household,
    /// solar, commercial).
    #[arg(long, value_name = "TOKEN")]
    pub token: Vec<String>,
    /// No simulated power cuts.
    #[arg(long)]
    pub no_cuts: bool,
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("ofmon {what}: {e}");
    ExitCode::FAILURE
}

/// `ofmon ui`.
pub fn ui(args: &UiArgs) -> ExitCode {
    let home = match collector::home::Home::resolve(args.home.as_deref()) {
        Ok(h) => h.dir().to_path_buf(),
        Err(e) => return fail("ui", e),
    };
    let server = match Server::start(ServerOptions {
        listen: args.listen,
        home: home.clone(),
    }) {
        Ok(s) => s,
        Err(e) => return fail("ui", e),
    };
    println!("OFMon dashboard: {}", server.url());
    eprintln!("home {}; Ctrl-C to stop", home.display());
    if let Err(e) = ui::server::wait_for_shutdown_signal() {
        eprintln!("ofmon ui: {e}");
    }
    eprintln!("ofmon ui: stopping");
    server.stop();
    ExitCode::SUCCESS
}

/// `ofmon demo`.
pub fn demo(args: &DemoArgs) -> ExitCode {
    let thingsboard = match &args.thingsboard {
        Some(url) => ThingsBoard::Real {
            url: url.clone(),
            tokens: args.token.clone(),
        },
        None => ThingsBoard::Mock,
    };
    let opts = DemoOptions {
        home: args.home.clone(),
        listen: args.listen,
        history_days: args.history,
        power_cuts: !args.no_cuts,
        thingsboard,
    };
    let demo = match Demo::start(opts, &|line| eprintln!("demo: {line}")) {
        Ok(d) => d,
        Err(e) => return fail("demo", e),
    };
    eprintln!("demo: started in {:.1} s", demo.timings.total_s);
    for d in &demo.devices {
        eprintln!("  {}  {}  ({})", d.ssid, d.url, d.role);
    }
    if demo.home().join(ui::demo::FIRMWARE_KEY_FILE).is_file() {
        eprintln!(
            "  firmware updates: sign images with `ofmon sign-firmware --key {}`",
            demo.home().join(ui::demo::FIRMWARE_KEY_FILE).display()
        );
    }
    println!("OFMon demo dashboard: {}", demo.url());
    eprintln!(
        "Ctrl-C to stop{}",
        if demo.temporary_home() {
            " (the temporary home is removed)"
        } else {
            ""
        }
    );
    if let Err(e) = ui::server::wait_for_shutdown_signal() {
        eprintln!("ofmon demo: {e}");
    }
    eprintln!("ofmon demo: stopping");
    demo.stop();
    ExitCode::SUCCESS
}
