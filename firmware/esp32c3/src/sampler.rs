//! Timer-paced ADC sampling.
//!
//! A hardware timer (TIMG1 timer 0) interrupts at [`SAMPLE_RATE_HZ`]; the
//! handler reads every configured ADC1 channel once (oneshot, busy-waiting
//! for each conversion) and appends the sample set to a ring buffer. The
//! metering task drains the ring in the thread context (see
//! [`drain`]) and feeds the device core.
//!
//! Gaps: while the SPI flash is erased or programmed, interrupts are masked
//! (esp-storage runs ROM flash routines in a critical section and the flash
//! cache is off). The handler measures the time since its previous run with
//! the system timer; for every tick it missed it repeats the sample set taken
//! one mains cycle (48 sets) earlier, so the stream keeps its exact length
//! (the metering engine's time base is the sample count) and the energy of
//! the gap is estimated from the cycle before it. Filled sets are counted
//! ([`stats`]). The ring and the gap filler are `device::sampling`
//! (host-tested); this file only reads the ADC and the timer.

use core::cell::RefCell;

use critical_section::Mutex;
use esp_hal::Blocking;
use esp_hal::analog::adc::{Adc, AdcCalBasic, AdcConfig, AdcPin, Attenuation};
use esp_hal::handler;
use esp_hal::peripherals::{ADC1, GPIO0, GPIO1, GPIO2, GPIO3};
use esp_hal::time::{Duration, Instant};
use esp_hal::timer::PeriodicTimer;

use crate::config::{CHANNELS, SAMPLE_RATE_HZ};

/// Sample sets the ring holds: 1024 sets = 427 ms at 2.4 kHz, 8 KiB.
pub const RING_SETS: usize = 1024;
/// Sets in one 50 Hz mains cycle, the distance of the gap filler's copy.
const CYCLE_SETS: u32 = SAMPLE_RATE_HZ / 50;
/// Period of the sampling timer in microseconds.
const PERIOD_US: u64 = 1_000_000 / SAMPLE_RATE_HZ as u64;

type Cal = AdcCalBasic<ADC1<'static>>;

/// The ADC pins of this board (see [`crate::config::PIN_MAP`]).
pub struct Pins {
    /// Voltage.
    pub v: AdcPin<GPIO0<'static>, ADC1<'static>, Cal>,
    /// CT1.
    pub i1: AdcPin<GPIO1<'static>, ADC1<'static>, Cal>,
    /// CT2 (if wired).
    pub i2: AdcPin<GPIO2<'static>, ADC1<'static>, Cal>,
    /// CT3 (if wired).
    pub i3: AdcPin<GPIO3<'static>, ADC1<'static>, Cal>,
}

/// The ring and its gap filler (host-tested in `device::sampling`).
type SampleRing = device::sampling::SampleRing<CHANNELS, RING_SETS>;

/// Sampling counters since boot.
pub use device::sampling::Stats;

struct Sampler {
    adc: Adc<'static, ADC1<'static>, Blocking>,
    pins: Pins,
    timer: PeriodicTimer<'static, Blocking>,
    last: Option<Instant>,
}

static RING: Mutex<RefCell<SampleRing>> =
    Mutex::new(RefCell::new(SampleRing::new(PERIOD_US, CYCLE_SETS)));
static SAMPLER: Mutex<RefCell<Option<Sampler>>> = Mutex::new(RefCell::new(None));

/// Configures ADC1 for the board's pins (11 dB attenuation, eFuse offset
/// calibration) and starts the timer interrupt.
pub fn start(
    adc1: ADC1<'static>,
    gpio0: GPIO0<'static>,
    gpio1: GPIO1<'static>,
    gpio2: GPIO2<'static>,
    gpio3: GPIO3<'static>,
    timer: impl esp_hal::timer::Timer + Into<esp_hal::timer::AnyTimer<'static>>,
) -> Result<(), esp_hal::timer::Error> {
    let mut cfg = AdcConfig::new();
    // 11 dB: about 0..2.5 V usable; the inputs are biased at mid-scale.
    let pins = Pins {
        v: cfg.enable_pin_with_cal::<_, Cal>(gpio0, Attenuation::_11dB),
        i1: cfg.enable_pin_with_cal::<_, Cal>(gpio1, Attenuation::_11dB),
        i2: cfg.enable_pin_with_cal::<_, Cal>(gpio2, Attenuation::_11dB),
        i3: cfg.enable_pin_with_cal::<_, Cal>(gpio3, Attenuation::_11dB),
    };
    let adc = Adc::new(adc1, cfg);
    let mut timer = PeriodicTimer::new(timer);
    timer.set_interrupt_handler(on_tick);
    critical_section::with(|cs| {
        SAMPLER.borrow_ref_mut(cs).replace(Sampler {
            adc,
            pins,
            timer,
            last: None,
        });
    });
    critical_section::with(|cs| {
        let mut s = SAMPLER.borrow_ref_mut(cs);
        match s.as_mut() {
            Some(s) => {
                s.timer.listen();
                s.timer.start(Duration::from_micros(PERIOD_US))
            }
            None => Ok(()),
        }
    })
}

/// Moves ready sample sets into `out`; returns the number of `u16` written.
pub fn drain(out: &mut [u16]) -> usize {
    critical_section::with(|cs| RING.borrow_ref_mut(cs).drain(out))
}

/// Counters since boot.
pub fn stats() -> Stats {
    critical_section::with(|cs| RING.borrow_ref(cs).stats())
}

fn read<P: esp_hal::analog::adc::AdcChannel>(
    adc: &mut Adc<'static, ADC1<'static>, Blocking>,
    pin: &mut AdcPin<P, ADC1<'static>, Cal>,
) -> u16 {
    // A conversion takes a few microseconds; `read_oneshot` never fails
    // other than "not done yet".
    loop {
        match adc.read_oneshot(pin) {
            Ok(v) => return v,
            Err(nb::Error::WouldBlock) => core::hint::spin_loop(),
            Err(nb::Error::Other(())) => return 0,
        }
    }
}

#[handler(priority = esp_hal::interrupt::Priority::Priority3)]
fn on_tick() {
    critical_section::with(|cs| {
        let mut guard = SAMPLER.borrow_ref_mut(cs);
        let Some(s) = guard.as_mut() else { return };
        s.timer.clear_interrupt();
        let now = Instant::now();
        // Time since the previous run: ticks missed while a flash operation
        // masked interrupts are filled by the ring (`device::sampling`).
        let elapsed_us = s.last.map(|last| (now - last).as_micros());
        s.last = Some(now);

        let mut set = [0u16; CHANNELS];
        set[0] = read(&mut s.adc, &mut s.pins.v);
        set[1] = read(&mut s.adc, &mut s.pins.i1);
        if let Some(x) = set.get_mut(2) {
            *x = read(&mut s.adc, &mut s.pins.i2);
        }
        if let Some(x) = set.get_mut(3) {
            *x = read(&mut s.adc, &mut s.pins.i3);
        }

        RING.borrow_ref_mut(cs).on_tick(elapsed_us, set);
    });
}
