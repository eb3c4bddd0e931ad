//! # OFMon firmware for the ESP32-C3
//!
//! Board glue only: everything the device does lives in the host-tested
//! `device` crate (state machine, HTTP API v1 router, OTA checks), with
//! `metering`, `store` and `protocol` under it. This crate wires the chip to
//! it:
//!
//! - [`sampler`]: timer-paced ADC1 oneshot reads into a ring buffer;
//! - [`flash`]: the SPI flash as the store's `NorFlash` (data partition) and
//!   the OTA slot writer, image-state confirm/rollback;
//! - [`net`]: Wi-Fi AP, embassy-net on 10.0.0.1/24, DHCP server;
//! - [`board`]: the few chip-specific facts, behind the [`board::Chip`] trait;
//! - this file: boot order, the metering task, the HTTP tasks, self-test.
//!
//! Architecture invariant: no request handling, metering or storage logic
//! here; if it can run on a host, it belongs in a crate under `crates/`.
#![no_std]
#![no_main]

extern crate alloc;

mod board;
mod config;
mod flash;
mod net;
mod sampler;

use core::cell::RefCell;

use embassy_executor::Spawner;
use embassy_net::StackResources;
use embassy_sync::blocking_mutex::{Mutex, raw::NoopRawMutex};
use embassy_time::{Duration, Timer};
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::timer::timg::TimerGroup;
use esp_println::println;
use static_cell::StaticCell;

use device::{Action, Device, Options};
use protocol::firmware::{FirmwarePublicKey, FirmwareVersion};

use board::Chip as _;
use flash::{BootTrial, OtaWriter, Partition};

esp_bootloader_esp_idf::esp_app_desc!();

/// The device core with this board's flash and OTA slot.
type Dev = Device<Partition, OtaWriter>;
/// The device, shared by the metering task and the HTTP tasks. All tasks run
/// on one executor, so a no-op mutex suffices; it is never held across an
/// `.await` (see `device::http::Shared`).
pub(crate) type SharedDev = Mutex<NoopRawMutex, RefCell<Dev>>;
/// The API router over the shared device.
type AppRouter = device::http::ApiRouter<'static, SharedDev, board::Uptime>;

static DEVICE: StaticCell<SharedDev> = StaticCell::new();
static ROUTER: StaticCell<AppRouter> = StaticCell::new();
static CLOCK: board::Uptime = board::Uptime;
static STACK_RESOURCES: StaticCell<StackResources<{ config::HTTP_TASKS + 3 }>> = StaticCell::new();
static HTTP_CONFIG: picoserve::Config = picoserve::Config::const_default().keep_connection_alive();

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // Heap: the Wi-Fi driver, the device core (records, JSON) and embassy-net.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 72 * 1024);

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    let chip = board::Esp32c3;
    let mac = chip.mac();
    println!(
        "ofmon {} on {} ({})",
        config::FIRMWARE_VERSION,
        board::Esp32c3::NAME,
        device::identity::mac_hex(&mac)
    );

    // --- flash: store partition, OTA state -------------------------------
    flash::install(esp_storage::FlashStorage::new(peripherals.FLASH));
    let trial = flash::boot_trial();
    let span = match flash::find_data_partition(config::STORE_PARTITION) {
        Ok(s) => s,
        Err(e) => fail(trial, "no store partition", e).await,
    };

    // --- device core --------------------------------------------------------
    let rng = esp_hal::rng::Rng::new();
    let opts = options();
    let store_cfg = store::Config {
        offset: 0,
        size: span.len,
        ..opts.store
    };
    let opts = Options {
        store: store_cfg,
        ..opts
    };
    let (dev, report) = match Device::boot(
        Partition::new(span),
        OtaWriter::new(),
        mac,
        rng.random(),
        board::Uptime::now_ms(),
        opts,
    ) {
        Ok(d) => d,
        Err(f) => fail(trial, "device boot failed", f.error).await,
    };
    println!(
        "boot #{} store {:?}, {}",
        report.boot_count,
        report.mount,
        if report.clean {
            "clean"
        } else {
            "after power loss"
        }
    );
    let ssid = dev.ssid();
    let pass = dev.ap_password();
    let shared: &'static SharedDev = DEVICE.init(Mutex::new(RefCell::new(dev)));

    // --- sampling -------------------------------------------------------------
    let timg1 = TimerGroup::new(peripherals.TIMG1);
    if let Err(e) = sampler::start(
        peripherals.ADC1,
        peripherals.GPIO0,
        peripherals.GPIO1,
        peripherals.GPIO2,
        peripherals.GPIO3,
        timg1.timer0,
    ) {
        fail(trial, "sampler", e).await;
    }
    spawner.spawn(metering_task(shared).unwrap_or_else(|_| halt("spawn metering")));

    // --- Wi-Fi AP + network ---------------------------------------------------
    let Some(ap) = net::ap_config(&ssid, pass.as_deref()) else {
        fail(trial, "invalid SSID/passphrase", ()).await
    };
    let controller = match esp_radio::wifi::WifiController::new(
        peripherals.WIFI,
        esp_radio::wifi::ControllerConfig::default().with_initial_config(ap),
    ) {
        Ok(c) => c,
        Err(e) => fail(trial, "wifi", e).await,
    };
    let iface = esp_radio::wifi::Interface::access_point();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    let (stack, runner) = embassy_net::new(
        iface,
        net::ipv4_config(),
        STACK_RESOURCES.init(StackResources::new()),
        seed,
    );
    spawner.spawn(net::net_task(runner).unwrap_or_else(|_| halt("spawn net")));
    spawner.spawn(net::dhcp_task(stack).unwrap_or_else(|_| halt("spawn dhcp")));
    spawner.spawn(
        net::wifi_task(controller, (ssid.clone(), pass), shared)
            .unwrap_or_else(|_| halt("spawn wifi")),
    );
    let router: &'static AppRouter = ROUTER.init(device::http::router(shared, &CLOCK));
    for id in 0..config::HTTP_TASKS {
        spawner.spawn(http_task(id, stack, router).unwrap_or_else(|_| halt("spawn http")));
    }
    println!(
        "AP {ssid} up at {}:{}; ADC {}",
        config::AP_ADDR,
        config::HTTP_PORT,
        config::PIN_MAP
    );

    // --- OTA self-test --------------------------------------------------------
    if trial == BootTrial::Pending {
        stack.wait_config_up().await;
        if self_test(shared) {
            match flash::confirm_boot() {
                Ok(()) => println!("ota: self-test passed, image confirmed"),
                Err(e) => println!("ota: confirm failed: {e}"),
            }
        } else {
            fail(trial, "self-test", ()).await;
        }
    }

    // --- actions requested by the API (reboot) ------------------------------
    loop {
        Timer::after(Duration::from_millis(200)).await;
        let action = shared.lock(|d| d.borrow_mut().take_action());
        if action == Some(Action::Reboot) {
            // Let the HTTP answer go out, close the running interval, restart.
            Timer::after(Duration::from_millis(500)).await;
            shared.lock(|d| {
                let _ = d.borrow_mut().flush_partial();
            });
            esp_hal::system::software_reset();
        }
    }
}

/// The device options of this board.
fn options() -> Options {
    let meter = metering::Config::new(config::SAMPLE_RATE_HZ, config::layout());
    let mut opts = Options::new(meter, config::BOARD);
    if let Ok(v) = config::FIRMWARE_VERSION.parse::<FirmwareVersion>() {
        opts.firmware_version = v;
    }
    if let Some(key) =
        config::SETUP_KEY_HEX.and_then(|h| protocol::hex::decode_array::<32>(h.trim()).ok())
    {
        opts.setup_ap = device::identity::SetupAp::SetupKey(key);
    }
    opts.ota.public_key = config::FIRMWARE_PUBKEY_HEX
        .and_then(|h| FirmwarePublicKey::from_hex(h).ok())
        .map(|k| k.to_bytes());
    opts
}

/// Feeds the sampled stream into the device core every 20 ms.
#[embassy_executor::task]
async fn metering_task(dev: &'static SharedDev) -> ! {
    // 20 ms at 2.4 kHz = 48 sets; take up to 4x that per round.
    let mut buf = [0u16; 4 * 48 * config::CHANNELS];
    let mut last_report = 0u64;
    loop {
        Timer::after(Duration::from_millis(20)).await;
        loop {
            let n = sampler::drain(&mut buf);
            if n == 0 {
                break;
            }
            let r = dev.lock(|d| d.borrow_mut().push_samples(&buf[..n]));
            if let Err(e) = r {
                println!("store: append failed: {e:?}");
            }
        }
        let now = board::Uptime::now_ms();
        if now - last_report >= 60_000 {
            last_report = now;
            let s = sampler::stats();
            println!(
                "sampler: {} ticks, {} gap-filled, {} overrun, {} pending",
                s.ticks, s.filled, s.overruns, s.pending
            );
        }
    }
}

/// One HTTP connection at a time per task.
#[embassy_executor::task(pool_size = config::HTTP_TASKS)]
async fn http_task(id: usize, stack: embassy_net::Stack<'static>, router: &'static AppRouter) -> ! {
    let mut rx = [0u8; 1536];
    let mut tx = [0u8; 1536];
    let mut http = [0u8; 2048];
    loop {
        let _ = picoserve::Server::new(router, &HTTP_CONFIG, &mut http)
            .listen_and_serve(id, stack, config::HTTP_PORT, &mut rx, &mut tx)
            .await;
    }
}

/// Boot self-test of a freshly installed image: `Device::self_test` (no
/// fault since boot, the store reads back, `GET /api/v1/info` answers 200
/// with this build's version).
fn self_test(dev: &SharedDev) -> bool {
    let now = board::Uptime::now_ms();
    match dev.lock(|d| d.borrow_mut().self_test(now)) {
        Ok(()) => true,
        Err(e) => {
            println!("ota: self-test failed: {e}");
            false
        }
    }
}

/// A fatal boot error: during an OTA trial boot reject the image (the
/// previous one boots next); otherwise report and retry by rebooting later.
async fn fail<E: core::fmt::Debug>(trial: BootTrial, what: &str, e: E) -> ! {
    println!("fatal: {what}: {e:?}");
    if trial == BootTrial::Pending {
        match flash::reject_boot() {
            Ok(()) => println!("ota: image rejected, rolling back"),
            Err(e) => println!("ota: rollback failed: {e}"),
        }
        Timer::after(Duration::from_millis(100)).await;
        esp_hal::system::software_reset();
    }
    Timer::after(Duration::from_secs(30)).await;
    esp_hal::system::software_reset();
}

fn halt(what: &str) -> ! {
    panic!("{what}");
}
