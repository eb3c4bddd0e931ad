//! One virtual device: boot loop, sample feed, power cuts, HTTP server.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use device::api::{Request, Response};
use device::http::{Service, Shared as SharedCell};
use device::platform::Clock;
use device::routes::Route;
use device::{Action, Device, Options};
use metering::Layout;
use store::emulated::EmulatedFlash;
use tokio::io::AsyncWriteExt;

use crate::firmware::{self, BootState, FirmwareFiles, SimOta};
use crate::flash::{CutControl, SimFlash};
use crate::source::{self, Profile, Source};
use crate::{SimOptions, home};

/// Most concurrent HTTP connections per device; more are refused with 503.
const MAX_CONNECTIONS: usize = 8;
/// Most sample sets fed per lock of the device.
const CHUNK_SETS: usize = 4096;

type SimDevice = Device<SimFlash, SimOta>;

/// Counters of one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceStats {
    /// Boots of this device in this process.
    pub boots: u32,
    /// Power cuts injected and survived.
    pub cuts: u32,
    /// Clean reboots (API requested).
    pub reboots: u32,
    /// Records committed in this process.
    pub committed: u64,
    /// Sample sets fed in this process.
    pub samples: u64,
    /// Simulated seconds since the fleet started (world time).
    pub sim_elapsed_s: f64,
    /// Simulated seconds the feed is behind its target (0 when keeping up).
    pub lag_s: f64,
    /// Real seconds spent, for rate figures.
    pub real_elapsed_s: f64,
    /// Firmware images rolled back in this process (failed self-test or
    /// not bootable).
    pub rollbacks: u32,
}

/// What the device's HTTP server and the runner share.
pub struct Shared {
    slot: Mutex<SimSlot>,
    uptime_ms: AtomicU64,
    stats: Mutex<DeviceStats>,
    committed: Mutex<Vec<(u64, [u64; 3])>>,
    cut: Arc<CutControl>,
    cut_requested: AtomicBool,
    pub(crate) paused: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            slot: Mutex::new(SimSlot(None)),
            uptime_ms: AtomicU64::new(0),
            stats: Mutex::new(DeviceStats::default()),
            committed: Mutex::new(Vec::new()),
            cut: Arc::new(CutControl::default()),
            cut_requested: AtomicBool::new(false),
            paused: AtomicBool::new(false),
        }
    }

    pub(crate) fn stats(&self) -> DeviceStats {
        lock(&self.stats).clone()
    }

    pub(crate) fn committed(&self) -> Vec<(u64, [u64; 3])> {
        lock(&self.committed).clone()
    }

    pub(crate) fn request_cut(&self) {
        self.cut_requested.store(true, Ordering::Release);
    }
}

/// The device as the HTTP shell sees it: up, or rebooting (503).
pub struct SimSlot(Option<SimDevice>);

fn rebooting() -> Response {
    Response::error(503, "device is rebooting")
}

impl Service for SimSlot {
    fn legacy_enabled(&self) -> bool {
        self.0.as_ref().is_some_and(|d| d.legacy_enabled())
    }
    fn handle(&mut self, now_ms: u64, route: &Route, req: &Request<'_>) -> Response {
        match self.0.as_mut() {
            Some(d) => d.handle(now_ms, route, req),
            None => rebooting(),
        }
    }
    fn upload_begin(&mut self, now_ms: u64, req: &Request<'_>, len: usize) -> Result<(), Response> {
        match self.0.as_mut() {
            Some(d) => d.upload_begin(now_ms, req, len),
            None => Err(rebooting()),
        }
    }
    fn upload_chunk(&mut self, data: &[u8]) -> Result<(), Response> {
        match self.0.as_mut() {
            Some(d) => d.upload_chunk(data),
            None => Err(rebooting()),
        }
    }
    fn upload_end(&mut self, now_ms: u64, complete: bool) -> Response {
        match self.0.as_mut() {
            Some(d) => d.upload_end(now_ms, complete),
            None => rebooting(),
        }
    }
}

impl SharedCell for Shared {
    type Target = SimSlot;
    fn with<R>(&self, f: impl FnOnce(&mut SimSlot) -> R) -> R {
        f(&mut lock(&self.slot))
    }
}

impl Clock for Shared {
    fn uptime_ms(&self) -> u64 {
        self.uptime_ms.load(Ordering::Acquire)
    }
}

pub(crate) struct Config {
    pub index: usize,
    pub mac: [u8; 6],
    pub profile: Profile,
    pub opts: SimOptions,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// xorshift for cut timing and boot ids (seeded from the OS).
struct Rand(u64);

impl Rand {
    fn new(seed: u64) -> Self {
        let mut os = [0u8; 8];
        let _ = getrandom::fill(&mut os);
        Self((seed ^ u64::from_le_bytes(os)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn device_options(cfg: &Config, rate: u32) -> Options {
    let layout = if cfg.opts.phases == 3 {
        Layout::ThreePhaseVirtual
    } else {
        Layout::SinglePhase { cts: 1 }
    };
    let mut m = metering::Config::new(rate, layout).with_interval_seconds(cfg.opts.interval_s);
    m.cal.v_gain = [source::V_PER_COUNT as f32; 3];
    m.cal.i_gain = [source::a_per_count() as f32; 3];
    let mut o = Options::new(m, firmware::BOARD);
    o.ota.public_key = cfg.opts.firmware_pubkey;
    // The device's wall clock runs with simulated time; only at real speed
    // does it match the collector's clock well enough for the window check.
    o.auth_uses_wall_clock = cfg.opts.speed == 1.0;
    o.max_records_per_response = 5000;
    o.max_response_bytes = 512 * 1024;
    o
}

pub(crate) fn device_thread(
    cfg: Config,
    shared: Arc<Shared>,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<(String, String), String>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("tokio runtime: {e}")));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("listener: {e}")));
                return;
            }
        };
        tokio::task::spawn_local(serve(listener, shared.clone()));
        if let Err(e) = feed(&cfg, &shared, &stop, Some(ready)).await {
            eprintln!("sim device {}: stopped: {e}", cfg.index);
        }
    });
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Refused, never queued without bound. Drain what the client
            // sent (so the close is a FIN, not a reset), answer 503, close.
            tokio::task::spawn_local(async move {
                use tokio::io::AsyncReadExt;
                let mut scratch = [0u8; 2048];
                let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut scratch))
                    .await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
                          Content-Length: 20\r\nConnection: close\r\n\r\n{\"error\":\"too busy\"}",
                    )
                    .await;
                let _ = stream.shutdown().await;
                let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut scratch))
                    .await;
            });
            continue;
        };
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            let _permit = permit;
            let router = device::router(&*shared, &*shared);
            let config = picoserve::Config::new(picoserve::Timeouts {
                start_read_request: picoserve::time::Duration::from_secs(10),
                persistent_start_read_request: picoserve::time::Duration::from_secs(5),
                read_request: picoserve::time::Duration::from_secs(30),
                write: picoserve::time::Duration::from_secs(30),
            })
            .keep_connection_alive();
            let mut buf = vec![0u8; 8192];
            let _ = picoserve::Server::new_tokio(&router, &config, &mut buf)
                .serve(stream)
                .await;
        });
    }
}

/// World time: seconds since midnight UTC of the day the world started.
struct World {
    epoch_ms: u64,
    /// World seconds at which live pacing starts (= real now at start).
    live_from_s: f64,
    live_since: Option<Instant>,
    /// One sample period, seconds: the feed's clock moves in these steps.
    period_s: f64,
    speed: f64,
    start_s: f64,
    started: Instant,
}

impl World {
    fn new(history_days: f64, speed: f64, period_s: f64) -> Self {
        let now = now_unix_ms();
        let hist_ms = (history_days * 86_400_000.0) as u64;
        let start_ms = now.saturating_sub(hist_ms);
        let epoch_ms = start_ms - start_ms % 86_400_000;
        let start_s = (start_ms - epoch_ms) as f64 / 1000.0;
        Self {
            epoch_ms,
            live_from_s: (now - epoch_ms) as f64 / 1000.0,
            live_since: (hist_ms == 0).then(Instant::now),
            period_s,
            speed,
            start_s,
            started: Instant::now(),
        }
    }

    fn wall_ms(&self, t_s: f64) -> u64 {
        self.epoch_ms + (t_s * 1000.0) as u64
    }

    /// Where the feed should be now.
    ///
    /// The feed's clock moves in whole sample periods, so it can stop up to
    /// one period short of the present; within one period counts as arrived
    /// (else a present that is not a whole number of periods would never
    /// switch the device to real time).
    fn target_s(&mut self, t_s: f64) -> f64 {
        match self.live_since {
            None if self.live_from_s - t_s >= self.period_s => self.live_from_s,
            None => {
                self.live_since = Some(Instant::now());
                self.live_from_s
            }
            Some(since) => self.live_from_s + since.elapsed().as_secs_f64() * self.speed,
        }
    }
}

/// Rejects the image waiting in the slot: the confirmed version boots next.
fn reject(fw: &FirmwareFiles, st: &mut BootState, shared: &Shared) {
    st.next = false;
    st.rollbacks = st.rollbacks.saturating_add(1);
    if let Err(e) = fw.set_state(st) {
        eprintln!("sim: writing the firmware state: {e}");
    }
    lock(&shared.stats).rollbacks += 1;
}

async fn feed(
    cfg: &Config,
    shared: &Arc<Shared>,
    stop: &AtomicBool,
    mut ready: Option<mpsc::Sender<Result<(String, String), String>>>,
) -> Result<(), String> {
    let fail = |ready: &mut Option<mpsc::Sender<_>>, msg: String| {
        if let Some(tx) = ready.take() {
            let _ = tx.send(Err(msg.clone()));
        }
        msg
    };
    let opts = &cfg.opts;
    let rate = opts.rate();
    let id = device::identity::mac_hex(&cfg.mac);
    let dir = home::device_dir(&opts.home, &id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(&mut ready, format!("{}: {e}", dir.display())))?;
    let path = dir.join("flash.bin");
    let fresh = !path.exists();
    let region = store::Config::default().size as usize;
    let emu = EmulatedFlash::open_file(&path, region)
        .map_err(|e| fail(&mut ready, format!("{}: {e}", path.display())))?;
    let mut flash = Some(SimFlash::new(emu, shared.cut.clone()));
    let mut world = World::new(
        if fresh { opts.history_days } else { 0.0 },
        opts.speed,
        1.0 / f64::from(rate),
    );
    let seed = opts
        .seed
        .wrapping_mul(1_000_003)
        .wrapping_add(cfg.index as u64);
    let mut source = Source::new(rate, opts.phases == 3, cfg.profile, seed, world.start_s);
    let mut rng = Rand::new(seed);
    let mut buf = vec![0u16; CHUNK_SETS * source.channel_count()];
    let mut first_boot = true;
    let mut boot_failures = 0u32;
    // An image rejected on its trial boot, to report from the next boot.
    let mut rolled_back = None;

    'life: loop {
        // ---- boot (the virtual bootloader picks the image)
        let boot_t = source.time_s();
        let boot_id = rng.next() as u32;
        let Some(f) = flash.take() else {
            return Err(fail(&mut ready, "flash lost".into()));
        };
        let fw = FirmwareFiles::new(&dir);
        let mut boot_state = fw.state();
        let trial = if boot_state.next {
            let h = fw.slot_image();
            if h.is_none() {
                eprintln!(
                    "sim device {}: OTA slot holds no bootable image; rolled back",
                    cfg.index
                );
                reject(&fw, &mut boot_state, shared);
            }
            h
        } else {
            None
        };
        let mut options = device_options(cfg, rate);
        options.firmware_version = trial.map_or(boot_state.running, |h| h.version);
        let (mut dev, report) =
            match Device::boot(f, SimOta::new(&dir), cfg.mac, boot_id, 0, options) {
                Ok(v) => v,
                Err(failure) => {
                    if let Some(h) = trial {
                        reject(&fw, &mut boot_state, shared);
                        rolled_back = Some(h.version);
                    }
                    // A cut armed for the running boot may hit the next one.
                    let mut f = failure.flash;
                    f.power_on();
                    flash = Some(f);
                    boot_failures += 1;
                    if boot_failures > 10 {
                        return Err(fail(
                            &mut ready,
                            format!("boot failed: {:?}", failure.error),
                        ));
                    }
                    continue 'life;
                }
            };
        if let Some(h) = trial {
            // First boot of a new image: self-test, then confirm or roll back.
            let verdict = if h.broken {
                Err("the image is marked broken".to_string())
            } else {
                dev.self_test(0).map_err(|e| e.to_string())
            };
            match verdict {
                Ok(()) => {
                    let from = boot_state.running;
                    boot_state.running = h.version;
                    boot_state.next = false;
                    match fw.set_state(&boot_state) {
                        Ok(()) => dev.record_ota_result(0, from, h.version, true),
                        Err(e) => {
                            eprintln!("sim device {}: confirming the image: {e}", cfg.index)
                        }
                    }
                }
                Err(e) => {
                    eprintln!(
                        "sim device {}: firmware {} failed its self-test ({e}); rolling back to {}",
                        cfg.index, h.version, boot_state.running
                    );
                    reject(&fw, &mut boot_state, shared);
                    rolled_back = Some(h.version);
                    let mut f = dev.into_flash();
                    f.power_on();
                    flash = Some(f);
                    continue 'life;
                }
            }
        }
        boot_failures = 0;
        if let Some(rejected) = rolled_back.take() {
            dev.record_ota_result(0, boot_state.running, rejected, false);
        }
        if first_boot && fresh && report.last_record.is_none() {
            // The installer set the clock when the device went in.
            dev.sync_time(0, world.wall_ms(boot_t), 1000);
        }
        if opts.legacy {
            dev.set_legacy(true);
        }
        let ssid = dev.ssid();
        lock(&shared.slot).0 = Some(dev);
        shared.uptime_ms.store(0, Ordering::Release);
        lock(&shared.stats).boots += 1;
        if let Some(tx) = ready.take() {
            let _ = tx.send(Ok((id.clone(), ssid)));
        }
        first_boot = false;
        let mut next_cut = opts
            .cut_every_s
            .map(|c| source.time_s() + c * (0.5 + rng.uniform()));

        // ---- run
        let outcome = loop {
            if stop.load(Ordering::Acquire) {
                break 'life;
            }
            let t = source.time_s();
            let target = world.target_s(t);
            {
                let mut s = lock(&shared.stats);
                s.sim_elapsed_s = t - world.start_s;
                s.lag_s = (target - t).max(0.0);
                s.real_elapsed_s = world.started.elapsed().as_secs_f64();
            }
            if shared.paused.load(Ordering::Acquire) || t >= target {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if let Some(a) = lock(&shared.slot).0.as_mut().and_then(|d| d.take_action()) {
                    break Some(a);
                }
                continue;
            }
            if next_cut.is_some_and(|c| t >= c)
                || shared.cut_requested.swap(false, Ordering::AcqRel)
            {
                // Tear one of the next few flash operations.
                shared.cut.arm(1 + rng.next() % 3, rng.next());
                next_cut = opts.cut_every_s.map(|c| t + c * (0.5 + rng.uniform()));
            }
            let n = source.fill(&mut buf, target);
            let sets = &buf[..n * source.channel_count()];
            let (result, action) = {
                let mut slot = lock(&shared.slot);
                let Some(dev) = slot.0.as_mut() else {
                    break None;
                };
                let r = dev.push_samples(sets);
                shared
                    .uptime_ms
                    .store(dev.metered_uptime_ms(), Ordering::Release);
                (r, dev.take_action())
            };
            match result {
                Ok(seqs) => {
                    if !seqs.is_empty() {
                        let mut c = lock(&shared.committed);
                        for r in &seqs {
                            c.push((r.seq, r.circuits.map(|c| c.import_mwh)));
                        }
                    }
                    let mut st = lock(&shared.stats);
                    st.committed += seqs.len() as u64;
                    st.samples += n as u64;
                }
                Err(_) => break None, // the flash died: power cut
            }
            if action.is_some() {
                break action;
            }
            tokio::task::yield_now().await;
        };

        // ---- power off / reboot
        let Some(dev) = lock(&shared.slot).0.take() else {
            return Err("device vanished".into());
        };
        let mut f = dev.into_flash();
        let outage_s = match outcome {
            Some(Action::Reboot) => {
                lock(&shared.stats).reboots += 1;
                2.0
            }
            None => {
                lock(&shared.stats).cuts += 1;
                let c = opts.cut_every_s.unwrap_or(60.0);
                (c / 4.0).min(600.0) * rng.uniform()
            }
        };
        f.power_on();
        flash = Some(f);
        source.skip_to(source.time_s() + outage_s);
        // The outage passes in simulated time too.
        let wake = source.time_s();
        while world.target_s(wake) < wake && !stop.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    if let Some(dev) = lock(&shared.slot).0.take() {
        drop(dev.into_flash());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The feed goes live after its history even when the present is not a
    /// whole number of sample periods (it used to spin there forever).
    #[test]
    fn goes_live_when_the_present_is_between_samples() {
        let rate = 500u32;
        for frac in [0.0, 0.0003, 0.0011, 0.0019] {
            let live_from_s = 100.0 + frac;
            let mut world = World {
                epoch_ms: 0,
                live_from_s,
                live_since: None,
                period_s: 1.0 / f64::from(rate),
                speed: 1.0,
                start_s: 99.0,
                started: Instant::now(),
            };
            let mut source = Source::new(rate, false, Profile::Household, 1, 99.0);
            let mut buf = vec![0u16; 64 * source.channel_count()];
            let mut spins = 0;
            while world.live_since.is_none() {
                let target = world.target_s(source.time_s());
                source.fill(&mut buf, target);
                spins += 1;
                assert!(
                    spins < 1000,
                    "stuck at {} before {live_from_s}",
                    source.time_s()
                );
            }
            assert!(live_from_s - source.time_s() < 1.0 / f64::from(rate));
        }
    }
}
