//! The engine: per-sample accumulation, per-cycle integer bookkeeping and the
//! once-per-interval conversion to physical units.

use core::num::NonZeroU32;

use crate::config::{
    Calibration, Config, ConfigError, DelayPlan, IHIST, K_SHIFT, Layout, LinearityTable,
    MAX_CIRCUITS, MAX_VOLTAGES, VHIST, delay_plan, energy_factor_q48,
};

const VMASK: u32 = VHIST as u32 - 1;
const IMASK: u32 = IHIST as u32 - 1;
const FRAC_MASK: u64 = (1u64 << K_SHIFT) - 1;
/// 2π · 2⁴⁸, for Δ = 2π/period in Q32 with the period in Q16.
const TWO_PI_Q48: u64 = 1_768_559_438_007_110;
/// The squares and products of this many samples fit the 32-bit partial
/// sums of [`CycleSums`]: 64 · 5119² < 2³¹.
const FOLD_EVERY: u32 = 64;
const OFFSET_MIN: i32 = -512;
const OFFSET_MAX: i32 = 4607;

/// Cumulative energy registers per circuit.
///
/// Whole micro-watt-hours plus the carried remainder (`*_frac`, in units of
/// 2⁻⁴⁸ µWh), so nothing is ever rounded away: persisting and restoring all
/// four arrays continues the count exactly. Import is energy of cycles with
/// positive real power, export of cycles with negative real power.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Registers {
    /// Imported energy, whole µWh.
    pub import_uwh: [u64; MAX_CIRCUITS],
    /// Exported energy, whole µWh.
    pub export_uwh: [u64; MAX_CIRCUITS],
    /// Imported energy below one µWh, in 2⁻⁴⁸ µWh (always < 2⁴⁸).
    pub import_frac: [u64; MAX_CIRCUITS],
    /// Exported energy below one µWh, in 2⁻⁴⁸ µWh (always < 2⁴⁸).
    pub export_frac: [u64; MAX_CIRCUITS],
}

impl Registers {
    /// Imported energy of circuit `ct` in Wh (whole µWh only; for display).
    pub fn import_wh(&self, ct: usize) -> f64 {
        self.import_uwh.get(ct).map_or(0.0, |&u| u as f64 * 1e-6)
    }

    /// Exported energy of circuit `ct` in Wh (whole µWh only; for display).
    pub fn export_wh(&self, ct: usize) -> f64 {
        self.export_uwh.get(ct).map_or(0.0, |&u| u as f64 * 1e-6)
    }
}

/// Voltage figures of one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VoltageStats {
    /// RMS voltage over the whole interval (V).
    pub rms: f32,
    /// Lowest single-cycle RMS voltage (V).
    pub min: f32,
    /// Highest single-cycle RMS voltage (V).
    pub max: f32,
}

/// Figures of one circuit (CT) over one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CircuitStats {
    /// RMS current (A); exactly 0 when every cycle was under the no-load gate.
    pub i_rms: f32,
    /// Mean real power (W), positive = import.
    pub real_power_w: f32,
    /// Lowest single-cycle real power (W).
    pub p_min_w: f32,
    /// Highest single-cycle real power (W).
    pub p_max_w: f32,
    /// Apparent power Vrms·Irms (VA).
    pub apparent_power_va: f32,
    /// Real / apparent power, 0 when there is no current.
    pub power_factor: f32,
    /// Imported energy in this interval (whole µWh; exactly the change of
    /// the import register since the previous interval).
    pub import_uwh: u64,
    /// Exported energy in this interval (whole µWh; exactly the change of
    /// the export register since the previous interval).
    pub export_uwh: u64,
}

/// One completed (or, from [`Meter::finish`], partial) interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Index of the first sample set of the interval since the meter started.
    pub start_sample: u64,
    /// Sample sets covered (intervals tile the stream: the next one starts
    /// at `start_sample + samples`).
    pub samples: u32,
    /// True for the trailing interval returned by [`Meter::finish`].
    pub partial: bool,
    /// Complete mains cycles detected (used for the frequency).
    pub cycles: u32,
    /// Cycles closed by timeout because no zero crossing came (no voltage).
    pub timeouts: u32,
    /// Mean mains frequency over the detected cycles (Hz), 0 if none.
    pub frequency_hz: f32,
    /// Voltage figures; the first `n_voltages` entries are valid.
    pub voltages: [VoltageStats; MAX_VOLTAGES],
    /// Number of valid entries in `voltages`.
    pub n_voltages: u8,
    /// Circuit figures; the first `n_circuits` entries are valid.
    pub circuits: [CircuitStats; MAX_CIRCUITS],
    /// Number of valid entries in `circuits`.
    pub n_circuits: u8,
    /// The energy registers at the end of the interval.
    pub registers: Registers,
    /// Sample sets refused by [`Meter::push`] (too few channels) so far.
    pub dropped_sets: u32,
}

impl Interval {
    /// Duration in seconds at the given sample rate.
    pub fn duration_s(&self, sample_rate_hz: u32) -> f64 {
        self.samples as f64 / sample_rate_hz as f64
    }

    /// Start time in seconds since the first sample at the given sample rate.
    pub fn start_s(&self, sample_rate_hz: u32) -> f64 {
        self.start_sample as f64 / sample_rate_hz as f64
    }
}

/// Why a cycle is being closed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CycleEnd {
    /// A rising zero crossing after a complete, synchronised cycle.
    Crossing,
    /// A crossing ending an unsynchronised stretch (start, after a timeout):
    /// the window is not a whole period, so its mean is not the DC offset.
    Partial,
    /// No crossing within the longest accepted period.
    Timeout,
    /// [`Meter::finish`]: the trailing incomplete cycle.
    Flush,
}

/// Raw per-cycle sums, counts after subtracting the running offset.
///
/// Per sample, the squares and products go into 32-bit partial sums
/// (`*_p`), which [`CycleSums::fold`] adds into the 64-bit sums every
/// [`FOLD_EVERY`] samples and at the cycle end: a 32-bit add per sample
/// instead of a 64-bit one. |value| ≤ 5119 (counts −512..=4607 minus an
/// offset in the same range), so 64 squares or products fit `i32`/`u32`;
/// the plain sums fit `i32` for any cycle the detector allows (≤ 500 samples).
#[derive(Clone, Copy)]
struct CycleSums {
    n: u32,
    v_s: [i32; MAX_VOLTAGES],
    v_ss_p: [u32; MAX_VOLTAGES],
    i_s: [i32; MAX_CIRCUITS],
    i_ss_p: [u32; MAX_CIRCUITS],
    vc_s: [i32; MAX_CIRCUITS],
    vi_p: [i32; MAX_CIRCUITS],
    v_ss: [u64; MAX_VOLTAGES],
    i_ss: [u64; MAX_CIRCUITS],
    vi: [i64; MAX_CIRCUITS],
}

impl CycleSums {
    const ZERO: CycleSums = CycleSums {
        n: 0,
        v_s: [0; MAX_VOLTAGES],
        v_ss_p: [0; MAX_VOLTAGES],
        i_s: [0; MAX_CIRCUITS],
        i_ss_p: [0; MAX_CIRCUITS],
        vc_s: [0; MAX_CIRCUITS],
        vi_p: [0; MAX_CIRCUITS],
        v_ss: [0; MAX_VOLTAGES],
        i_ss: [0; MAX_CIRCUITS],
        vi: [0; MAX_CIRCUITS],
    };

    /// Moves the 32-bit partial sums into the 64-bit ones.
    #[inline(always)]
    fn fold(&mut self) {
        for ch in 0..MAX_VOLTAGES {
            self.v_ss[ch] += self.v_ss_p[ch] as u64;
            self.v_ss_p[ch] = 0;
        }
        for ct in 0..MAX_CIRCUITS {
            self.i_ss[ct] += self.i_ss_p[ct] as u64;
            self.i_ss_p[ct] = 0;
            self.vi[ct] += self.vi_p[ct] as i64;
            self.vi_p[ct] = 0;
        }
    }
}

/// Interval sums of DC-free per-cycle results (integers).
#[derive(Clone, Copy)]
struct IntervalSums {
    start_sample: u64,
    start_regs: Registers,
    samples: u64,
    cycles: u32,
    cycle_samples: u64,
    timeouts: u32,
    v_ss: [u64; MAX_VOLTAGES],
    /// Per-cycle mean square, Q8 counts².
    v_ms_min: [u64; MAX_VOLTAGES],
    v_ms_max: [u64; MAX_VOLTAGES],
    i_ss: [u64; MAX_CIRCUITS],
    vi: [i64; MAX_CIRCUITS],
    /// Per-cycle mean power, Q8 counts².
    p_min: [i64; MAX_CIRCUITS],
    p_max: [i64; MAX_CIRCUITS],
}

impl IntervalSums {
    fn new(start_sample: u64, start_regs: Registers) -> Self {
        IntervalSums {
            start_sample,
            start_regs,
            samples: 0,
            cycles: 0,
            cycle_samples: 0,
            timeouts: 0,
            v_ss: [0; MAX_VOLTAGES],
            v_ms_min: [u64::MAX; MAX_VOLTAGES],
            v_ms_max: [0; MAX_VOLTAGES],
            i_ss: [0; MAX_CIRCUITS],
            vi: [0; MAX_CIRCUITS],
            p_min: [i64::MAX; MAX_CIRCUITS],
            p_max: [i64::MIN; MAX_CIRCUITS],
        }
    }
}

/// Channel counts of a layout, for the specialised per-sample paths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One voltage, one CT.
    V1C1,
    /// One voltage, two CTs.
    V1C2,
    /// One voltage, three CTs (single phase or virtual three-phase).
    V1C3,
    /// Three voltages, three CTs; CT n against voltage n.
    V3C3,
}

impl Shape {
    fn of(layout: Layout) -> Shape {
        match layout {
            Layout::SinglePhase { cts: 1 } => Shape::V1C1,
            Layout::SinglePhase { cts: 2 } => Shape::V1C2,
            Layout::SinglePhase { .. } | Layout::ThreePhaseVirtual => Shape::V1C3,
            Layout::ThreePhase => Shape::V3C3,
        }
    }
}

/// The metering engine. Fixed size (about 2.5 KiB), no allocation.
///
/// `repr(C)` keeps the fields the per-sample path touches at the start,
/// within reach of the 12-bit load/store offsets of RISC-V.
#[derive(Clone)]
#[repr(C)]
pub struct Meter {
    // --- per-sample state ---
    pos: u32,
    /// Current cycle length so far and sums.
    cyc: CycleSums,
    /// Running DC offsets (counts), updated at every cycle end.
    off_v: [i32; MAX_VOLTAGES],
    off_i: [i32; MAX_CIRCUITS],
    /// Current voltage delay per CT: whole samples and Q15 fraction.
    vdelay: [u32; MAX_CIRCUITS],
    vfrac: [i32; MAX_CIRCUITS],
    /// Whole samples each CT's current is delayed by.
    i_delay: [u32; MAX_CIRCUITS],
    /// `-zc_hysteresis_counts`.
    neg_hyst: i32,
    min_len: u32,
    max_len: u32,
    armed: bool,
    use_lin: bool,
    shape: Shape,
    /// Raw (linearised) current history, indexed by `pos & mask`.
    ihist: [[i16; IHIST]; MAX_CIRCUITS],
    lin: LinearityTable,
    /// Raw (linearised) voltage history, indexed by `pos & mask`.
    vhist: [[i16; VHIST]; MAX_VOLTAGES],
    // --- per-cycle and per-interval state ---
    cfg: Config,
    nv: usize,
    nc: usize,
    no_load_ms: i64,
    vsrc: [usize; MAX_CIRCUITS],
    plan: [DelayPlan; MAX_CIRCUITS],
    k_q48: [u64; MAX_CIRCUITS],
    /// `k_q48` divided by the interpolator's fundamental gain.
    k_eff: [u64; MAX_CIRCUITS],
    /// Interpolator gain at the fundamental, Q32.
    interp_gain_q32: [u64; MAX_CIRCUITS],
    /// CT with a negative gain (direction flipped).
    ct_neg: [bool; MAX_CIRCUITS],
    period_q16: i64,
    period_known: bool,
    synced: bool,
    acc: IntervalSums,
    regs: Registers,
    total: u64,
    next_boundary: u64,
    dropped: u32,
}

impl Meter {
    /// Creates an engine for a validated configuration, registers at zero.
    pub fn new(cfg: Config) -> Result<Meter, ConfigError> {
        cfg.validate()?;
        let nv = cfg.layout.voltages();
        let nc = cfg.layout.circuits();
        let mut vhist = [[0i16; VHIST]; MAX_VOLTAGES];
        let mut off_v = [2048i32; MAX_VOLTAGES];
        for ch in 0..nv {
            off_v[ch] = cfg.cal.v_offset[ch] as i32;
            vhist[ch] = [cfg.cal.v_offset[ch] as i16; VHIST];
        }
        let mut ihist = [[0i16; IHIST]; MAX_CIRCUITS];
        let mut off_i = [2048i32; MAX_CIRCUITS];
        let mut vsrc = [0usize; MAX_CIRCUITS];
        for ct in 0..nc {
            off_i[ct] = cfg.cal.i_offset[ct] as i32;
            ihist[ct] = [cfg.cal.i_offset[ct] as i16; IHIST];
            vsrc[ct] = cfg.layout.voltage_of(ct);
        }
        let period_q16 = ((cfg.sample_rate_hz as i64) << 16) / cfg.nominal_hz as i64;
        let mut m = Meter {
            pos: 0,
            cyc: CycleSums::ZERO,
            off_v,
            off_i,
            vdelay: [0; MAX_CIRCUITS],
            vfrac: [0; MAX_CIRCUITS],
            i_delay: [0; MAX_CIRCUITS],
            neg_hyst: -(cfg.zc_hysteresis_counts as i32),
            min_len: cfg.min_cycle_samples(),
            max_len: cfg.max_cycle_samples(),
            armed: false,
            use_lin: false,
            shape: Shape::of(cfg.layout),
            ihist,
            lin: LinearityTable::identity(),
            vhist,
            cfg,
            nv,
            nc,
            no_load_ms: 0,
            vsrc,
            plan: [DelayPlan::default(); MAX_CIRCUITS],
            k_q48: [0; MAX_CIRCUITS],
            k_eff: [0; MAX_CIRCUITS],
            interp_gain_q32: [1 << 32; MAX_CIRCUITS],
            ct_neg: [false; MAX_CIRCUITS],
            period_q16,
            period_known: false,
            synced: false,
            acc: IntervalSums::new(0, Registers::default()),
            regs: Registers::default(),
            total: 0,
            next_boundary: cfg.interval_samples as u64,
            dropped: 0,
        };
        m.apply_calibration(cfg.cal)?;
        Ok(m)
    }

    /// The configuration in force (with the latest calibration).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Sample sets consumed into closed cycles since the start.
    pub fn samples_metered(&self) -> u64 {
        self.total
    }

    /// The current energy registers (cycles closed so far).
    pub fn registers(&self) -> Registers {
        self.regs
    }

    /// Replaces the energy registers, e.g. with values persisted before a
    /// power cut. Counting continues from them; the running interval's
    /// energy deltas count from this point.
    pub fn restore_registers(&mut self, r: Registers) {
        let mut r = r;
        for f in r.import_frac.iter_mut().chain(r.export_frac.iter_mut()) {
            *f &= FRAC_MASK;
        }
        self.regs = r;
        self.acc.start_regs = r;
    }

    /// Installs a new calibration without losing registers or the tracked
    /// DC offsets (the offset start values are only used by [`Meter::new`]).
    /// Gains apply to the whole running interval's figures; energy already
    /// registered stays as it was metered.
    pub fn set_calibration(&mut self, cal: Calibration) -> Result<(), ConfigError> {
        self.cfg.validate_calibration(&cal)?;
        self.apply_calibration(cal)
    }

    fn apply_calibration(&mut self, cal: Calibration) -> Result<(), ConfigError> {
        let mut plan = [DelayPlan::default(); MAX_CIRCUITS];
        let mut k = [0u64; MAX_CIRCUITS];
        let mut neg = [false; MAX_CIRCUITS];
        let mut i_delay = [0u32; MAX_CIRCUITS];
        for ct in 0..self.nc {
            plan[ct] = delay_plan(&self.cfg, &cal, ct)?;
            k[ct] = energy_factor_q48(&self.cfg, &cal, ct).ok_or(ConfigError::Gain)?;
            neg[ct] = cal.i_gain[ct] < 0.0;
            i_delay[ct] = plan[ct].i_delay;
        }
        self.cfg.cal = cal;
        self.plan = plan;
        self.k_q48 = k;
        self.ct_neg = neg;
        self.i_delay = i_delay;
        self.use_lin = cal.linearity.is_some();
        self.lin = cal.linearity.unwrap_or(LinearityTable::identity());
        let thr = cal.no_load_irms_counts as i64;
        self.no_load_ms = thr * thr;
        self.update_delays();
        Ok(())
    }

    /// Recomputes each CT's voltage delay from the period estimate, and the
    /// energy factor corrected for the interpolator's gain (integer only).
    fn update_delays(&mut self) {
        let max = ((VHIST as i64) - 2) << 16;
        // Δ = 2π/period in Q32. Accepted cycles are at least 7 samples long,
        // so Δ < 1 and everything below fits 64 bits; the clamp only guards
        // that.
        let delta = div_q(TWO_PI_Q48, self.period_q16.max(1) as u64).min(u32::MAX as u64);
        let d2 = (delta * delta) >> 32; // Δ², Q32, < 2³²
        // 1 − cos Δ ≈ Δ²/2 − Δ⁴/24, Q32.
        let d4_24 = (((d2 * d2) >> 32) as u32 / 24) as u64;
        let one_minus_cos = (d2 / 2).saturating_sub(d4_24);
        for ct in 0..self.nc {
            let plan = &self.plan[ct];
            let d = ((self.period_q16 * plan.turns_q32) >> 32) + plan.fixed_q16;
            let d = d.clamp(0, max);
            self.vdelay[ct] = (d >> 16) as u32;
            let c = ((d & 0xFFFF) >> 1) as i32;
            self.vfrac[ct] = c;
            if c == 0 {
                // Whole-sample delay: no interpolation, gain exactly 1.
                self.interp_gain_q32[ct] = 1 << 32;
                self.k_eff[ct] = self.k_q48[ct];
                continue;
            }
            // Linear interpolation at fraction c scales the fundamental by
            // |1 − c + c·e^(−jΔ)| = sqrt(1 − 2c(1−c)(1 − cos Δ))
            //                     ≈ 1 − x − x²/2 with x = c(1−c)(1 − cos Δ).
            let cc = (c as u64) * (32_768 - c as u64); // Q30
            let x = (cc * one_minus_cos) >> 30; // Q32
            let g = (1u64 << 32) - x - ((x * x) >> 33);
            self.interp_gain_q32[ct] = g;
            // k / g through the reciprocal 2⁶⁴/g (one 64-bit division;
            // relative error < 2⁻³¹, far below the f32 calibration).
            let recip = u64::MAX / g.max(1);
            self.k_eff[ct] =
                ((self.k_q48[ct] as u128 * recip as u128) >> 32).min(u64::MAX as u128) as u64;
        }
    }

    /// The linearised count (`LIN`: a linearity table is installed).
    #[inline(always)]
    fn lin_count<const LIN: bool>(&self, raw: u16) -> i32 {
        if LIN {
            self.lin.apply(raw)
        } else {
            raw.min(4095) as i32
        }
    }

    /// Feeds one sample set (raw 12-bit counts in [`Config::channel_count`]
    /// order). Returns the interval this set completed, if any.
    ///
    /// This is the per-sample path: integer only, no allocation, no floats.
    /// A set with fewer channels than the layout needs is ignored and
    /// counted in [`Interval::dropped_sets`].
    #[inline(never)]
    pub fn push(&mut self, set: &[u16]) -> Option<Interval> {
        // One specialised copy of the path per layout shape: the channel
        // loops unroll and every index is a constant.
        match (self.shape, self.use_lin) {
            (Shape::V1C1, false) => self.push_n::<1, 1, 2, false>(set),
            (Shape::V1C2, false) => self.push_n::<1, 2, 3, false>(set),
            (Shape::V1C3, false) => self.push_n::<1, 3, 4, false>(set),
            (Shape::V3C3, false) => self.push_n::<3, 3, 6, false>(set),
            (Shape::V1C1, true) => self.push_n::<1, 1, 2, true>(set),
            (Shape::V1C2, true) => self.push_n::<1, 2, 3, true>(set),
            (Shape::V1C3, true) => self.push_n::<1, 3, 4, true>(set),
            (Shape::V3C3, true) => self.push_n::<3, 3, 6, true>(set),
        }
    }

    /// [`Meter::push`] for `NV` voltages and `NC` CTs (`N = NV + NC`), with
    /// (`LIN`) or without a linearity table. Out
    /// of line so each shape gets its own register allocation (the 1-CT
    /// path then saves no registers at all).
    #[inline(never)]
    fn push_n<const NV: usize, const NC: usize, const N: usize, const LIN: bool>(
        &mut self,
        set: &[u16],
    ) -> Option<Interval> {
        let Some(set) = set.first_chunk::<N>() else {
            self.dropped = self.dropped.saturating_add(1);
            return None;
        };
        let pos = self.pos.wrapping_add(1);
        self.pos = pos;

        // Cycle detection on the first voltage, before this sample is
        // accumulated: a rising crossing starts a new cycle with this sample.
        let raw0 = self.lin_count::<LIN>(set[0]);
        let v0 = raw0 - self.off_v[0];
        let mut end = None;
        if v0 < self.neg_hyst {
            self.armed = true;
        } else if v0 >= 0 && self.armed {
            self.armed = false;
            if self.cyc.n >= self.min_len {
                end = Some(CycleEnd::Crossing);
            }
        }
        if end.is_none() && self.cyc.n >= self.max_len {
            end = Some(CycleEnd::Timeout);
        }
        if let Some(kind) = end {
            return self.close_and_accumulate::<NV, NC, N, LIN>(kind, set, raw0, pos);
        }
        if self.accumulate::<NV, NC, N, LIN>(set, raw0, pos) {
            // A tail call: the common path itself calls nothing.
            return self.fold_sums();
        }
        None
    }

    /// Folds the partial cycle sums (once per [`FOLD_EVERY`] samples); for
    /// [`Meter::push_n`], which tail-calls it.
    #[cold]
    #[inline(never)]
    fn fold_sums(&mut self) -> Option<Interval> {
        self.cyc.fold();
        None
    }

    /// The rare part of [`Meter::push`]: close the cycle, then accumulate the
    /// sample that starts the next one. Out of line so that the common path
    /// calls nothing and needs no saved registers.
    #[inline(never)]
    #[cold]
    fn close_and_accumulate<const NV: usize, const NC: usize, const N: usize, const LIN: bool>(
        &mut self,
        kind: CycleEnd,
        set: &[u16; N],
        raw0: i32,
        pos: u32,
    ) -> Option<Interval> {
        let due = self.close_cycle(kind);
        if self.accumulate::<NV, NC, N, LIN>(set, raw0, pos) {
            self.cyc.fold();
        }
        // Accumulating touches only the new cycle's sums and the history,
        // nothing the interval figures are made of.
        if due {
            Some(self.take_interval(false))
        } else {
            None
        }
    }

    /// Adds one sample set to the cycle sums (`raw0`: the first voltage,
    /// already linearised; `pos`: this set's history position). Returns
    /// whether the partial sums are due to be folded.
    #[inline(always)]
    fn accumulate<const NV: usize, const NC: usize, const N: usize, const LIN: bool>(
        &mut self,
        set: &[u16; N],
        raw0: i32,
        pos: u32,
    ) -> bool {
        let vp = (pos & VMASK) as usize;
        for ch in 0..NV {
            let raw = if ch == 0 {
                raw0
            } else {
                self.lin_count::<LIN>(set[ch])
            };
            self.vhist[ch][vp] = raw as i16;
            let v = raw - self.off_v[ch];
            self.cyc.v_s[ch] += v;
            self.cyc.v_ss_p[ch] += (v * v) as u32;
        }
        let ip = (pos & IMASK) as usize;
        for ct in 0..NC {
            let raw = self.lin_count::<LIN>(set[NV + ct]);
            let ih = &mut self.ihist[ct];
            ih[ip] = raw as i16;
            let i =
                ih[(pos.wrapping_sub(self.i_delay[ct]) & IMASK) as usize] as i32 - self.off_i[ct];
            let src = if NV == 1 { 0 } else { ct };
            let h = &self.vhist[src];
            let back = pos.wrapping_sub(self.vdelay[ct]);
            let a = h[(back & VMASK) as usize] as i32;
            let b = h[(back.wrapping_sub(1) & VMASK) as usize] as i32;
            let vc = a + (((b - a) * self.vfrac[ct] + (1 << 14)) >> 15) - self.off_v[src];
            self.cyc.i_s[ct] += i;
            self.cyc.i_ss_p[ct] += (i * i) as u32;
            self.cyc.vc_s[ct] += vc;
            self.cyc.vi_p[ct] += vc * i;
        }
        let n = self.cyc.n + 1;
        self.cyc.n = n;
        n.is_multiple_of(FOLD_EVERY)
    }

    /// Closes the trailing incomplete cycle and returns what is left of the
    /// running interval, marked `partial` (or a regular interval if that
    /// cycle completed one). Pushing may continue afterwards; the interval
    /// grid restarts at this point.
    pub fn finish(&mut self) -> Option<Interval> {
        let out = if self.close_cycle(CycleEnd::Flush) {
            Some(self.take_interval(false))
        } else if self.acc.samples > 0 {
            Some(self.take_interval(true))
        } else {
            None
        };
        self.synced = false;
        self.armed = false;
        self.next_boundary = self.total + self.cfg.interval_samples as u64;
        out
    }

    /// Per-cycle work: exact DC removal, no-load gate, energy registers,
    /// offset tracking, period and delay update; leaves the cycle sums at
    /// zero. Returns whether an interval is due ([`Meter::take_interval`]).
    /// Integer only; every division is by the cycle length (< 2¹⁶) and done
    /// with native 32-bit divisions ([`divrem_small`]).
    #[inline(never)]
    fn close_cycle(&mut self, kind: CycleEnd) -> bool {
        use core::mem::take;
        let c = &mut self.cyc;
        let Some(n) = NonZeroU32::new(take(&mut c.n)) else {
            return false;
        };
        let kind = match kind {
            CycleEnd::Crossing if !self.synced => {
                self.synced = true;
                CycleEnd::Partial
            }
            CycleEnd::Timeout => {
                self.synced = false;
                CycleEnd::Timeout
            }
            k => k,
        };
        // The mean of a window that spans one period is the DC offset, so
        // subtracting it is exact DC removal. Partial windows keep the
        // running offset instead.
        let exact = matches!(kind, CycleEnd::Crossing | CycleEnd::Timeout);
        let a = &mut self.acc;
        // Channels beyond the layout's are never accumulated and stay zero.
        for ch in 0..self.nv {
            let s = take(&mut c.v_s[ch]);
            let mut ss = take(&mut c.v_ss[ch]) + take(&mut c.v_ss_p[ch]) as u64;
            if exact {
                ss = ss.saturating_sub(sq_div(s, n));
            }
            a.v_ss[ch] += ss;
            let ms = divrem_small(ss << 8, n).0;
            a.v_ms_min[ch] = a.v_ms_min[ch].min(ms);
            a.v_ms_max[ch] = a.v_ms_max[ch].max(ms);
            self.off_v[ch] = (self.off_v[ch] + round_div(s, n)).clamp(OFFSET_MIN, OFFSET_MAX);
        }
        for ct in 0..self.nc {
            let s = take(&mut c.i_s[ct]);
            let vc_s = take(&mut c.vc_s[ct]);
            let mut ii = (take(&mut c.i_ss[ct]) + take(&mut c.i_ss_p[ct]) as u64) as i64;
            let mut vi = take(&mut c.vi[ct]) + take(&mut c.vi_p[ct]) as i64;
            let ii_ac = ii - sq_div(s, n) as i64;
            if exact {
                ii = ii_ac;
                vi -= mul_div(vc_s, s, n);
            }
            let mut ii = ii.max(0);
            // The gate always judges the AC content of the window, so a DC
            // error in a partial (start-up) cycle cannot open it.
            if ii_ac < self.no_load_ms * n.get() as i64 {
                ii = 0;
                vi = 0;
            }
            let vi = if self.ct_neg[ct] { -vi } else { vi };
            a.i_ss[ct] += ii as u64;
            a.vi[ct] += vi;
            let p = div_signed(vi << 8, n);
            a.p_min[ct] = a.p_min[ct].min(p);
            a.p_max[ct] = a.p_max[ct].max(p);
            let k = self.k_eff[ct];
            if vi >= 0 {
                add_energy(
                    &mut self.regs.import_uwh[ct],
                    &mut self.regs.import_frac[ct],
                    vi as u64,
                    k,
                );
            } else {
                add_energy(
                    &mut self.regs.export_uwh[ct],
                    &mut self.regs.export_frac[ct],
                    vi.unsigned_abs(),
                    k,
                );
            }
            self.off_i[ct] = (self.off_i[ct] + round_div(s, n)).clamp(OFFSET_MIN, OFFSET_MAX);
        }
        let n = n.get();
        a.samples += n as u64;
        match kind {
            CycleEnd::Crossing => {
                a.cycles += 1;
                a.cycle_samples += n as u64;
                let nq = (n as i64) << 16;
                let period = if self.period_known {
                    self.period_q16 + ((nq - self.period_q16) >> 4)
                } else {
                    self.period_known = true;
                    nq
                };
                // The delays are a function of the period alone.
                if period != self.period_q16 {
                    self.period_q16 = period;
                    self.update_delays();
                }
            }
            CycleEnd::Timeout => a.timeouts += 1,
            _ => {}
        }
        self.total += n as u64;
        if self.total >= self.next_boundary {
            let step = self.cfg.interval_samples as u64;
            while self.next_boundary <= self.total {
                self.next_boundary += step;
            }
            return true;
        }
        false
    }

    /// Once per interval: integer sums to physical units (floats allowed).
    #[inline(never)]
    fn take_interval(&mut self, partial: bool) -> Interval {
        let a = core::mem::replace(&mut self.acc, IntervalSums::new(self.total, self.regs));
        let cal = &self.cfg.cal;
        let n = a.samples.max(1);
        let mut voltages = [VoltageStats::default(); MAX_VOLTAGES];
        for ch in 0..self.nv {
            let g = cal.v_gain[ch] as f64;
            let has = a.v_ms_max[ch] >= a.v_ms_min[ch];
            voltages[ch] = VoltageStats {
                rms: (g * rms_counts(a.v_ss[ch], n)) as f32,
                min: if has {
                    (g * sqrt_q8(a.v_ms_min[ch])) as f32
                } else {
                    0.0
                },
                max: if has {
                    (g * sqrt_q8(a.v_ms_max[ch])) as f32
                } else {
                    0.0
                },
            };
        }
        let mut circuits = [CircuitStats::default(); MAX_CIRCUITS];
        for ct in 0..self.nc {
            let vg = cal.v_gain[self.vsrc[ct]] as f64;
            let ig = (cal.i_gain[ct] as f64).abs();
            // Undo the interpolator's gain on the voltage used for power.
            let vg = vg * (1u64 << 32) as f64 / self.interp_gain_q32[ct] as f64;
            let i_rms = ig * rms_counts(a.i_ss[ct], n);
            let p = vg * ig * a.vi[ct] as f64 / n as f64;
            let s = voltages[self.vsrc[ct]].rms as f64 * i_rms;
            let pf = if s > 0.0 {
                (p / s).clamp(-1.0, 1.0)
            } else {
                0.0
            };
            let has = a.p_max[ct] >= a.p_min[ct];
            let pq = vg * ig / 256.0;
            circuits[ct] = CircuitStats {
                i_rms: i_rms as f32,
                real_power_w: p as f32,
                p_min_w: if has {
                    (pq * a.p_min[ct] as f64) as f32
                } else {
                    0.0
                },
                p_max_w: if has {
                    (pq * a.p_max[ct] as f64) as f32
                } else {
                    0.0
                },
                apparent_power_va: s as f32,
                power_factor: pf as f32,
                import_uwh: self.regs.import_uwh[ct].wrapping_sub(a.start_regs.import_uwh[ct]),
                export_uwh: self.regs.export_uwh[ct].wrapping_sub(a.start_regs.export_uwh[ct]),
            };
        }
        let frequency_hz = if a.cycle_samples > 0 {
            (self.cfg.sample_rate_hz as f64 * a.cycles as f64 / a.cycle_samples as f64) as f32
        } else {
            0.0
        };
        Interval {
            start_sample: a.start_sample,
            samples: a.samples.min(u32::MAX as u64) as u32,
            partial,
            cycles: a.cycles,
            timeouts: a.timeouts,
            frequency_hz,
            voltages,
            n_voltages: self.nv as u8,
            circuits,
            n_circuits: self.nc as u8,
            registers: self.regs,
            dropped_sets: self.dropped,
        }
    }
}

/// Adds `raw` count²·samples times the Q48 factor `k` to a register,
/// carrying the sub-µWh remainder exactly.
#[inline]
fn add_energy(whole: &mut u64, frac: &mut u64, raw: u64, k: u64) {
    let t = *frac as u128 + raw as u128 * k as u128;
    *whole = whole.wrapping_add((t >> K_SHIFT) as u64);
    *frac = (t as u64) & FRAC_MASK;
}

/// `x / n` rounded down, and the remainder, for `n < 2¹⁶`: three native
/// 32-bit divisions (long division in 16-bit digits; each partial dividend
/// is below `n · 2¹⁶`) instead of a 64-bit division call.
#[inline]
fn divrem_small(x: u64, n: NonZeroU32) -> (u64, u32) {
    debug_assert!(n.get() < 1 << 16);
    let hi = (x >> 32) as u32;
    let lo = x as u32;
    let q2 = hi / n;
    let m = ((hi % n) << 16) | (lo >> 16);
    let q1 = m / n;
    let l = ((m % n) << 16) | (lo & 0xFFFF);
    let q0 = l / n;
    (((q2 as u64) << 32) | ((q1 << 16) | q0) as u64, l % n)
}

/// `⌊(u1·2³² + u0) / v⌋` for a normalised divisor (`v ≥ 2³¹`) and
/// `u1 < v`, so the quotient fits 32 bits: long division in 16-bit digits
/// with two native 32-bit divisions (Hacker's Delight, `divlu`).
#[inline]
fn div_norm(u1: u32, u0: u32, v: u32) -> u32 {
    debug_assert!(v >= 1 << 31 && u1 < v);
    const B: u32 = 1 << 16;
    let (vn1, vn0) = (v >> 16, v & 0xFFFF);
    let (un1, un0) = (u0 >> 16, u0 & 0xFFFF);
    // vn1 ≥ 2¹⁵, so each estimate is at most 2 too high.
    let mut q1 = u1 / vn1;
    let mut rhat = u1 - q1 * vn1;
    while q1 >= B || q1 * vn0 > (rhat << 16) + un1 {
        q1 -= 1;
        rhat += vn1;
        if rhat >= B {
            break;
        }
    }
    // The partial remainder is < v; computed modulo 2³².
    let un21 = (u1 << 16)
        .wrapping_add(un1)
        .wrapping_sub(q1.wrapping_mul(v));
    let mut q0 = un21 / vn1;
    let mut rhat = un21 - q0 * vn1;
    while q0 >= B || q0 * vn0 > (rhat << 16) + un0 {
        q0 -= 1;
        rhat += vn1;
        if rhat >= B {
            break;
        }
    }
    (q1 << 16) + q0
}

/// `⌊x / d⌋` for `0 < d < 2³²`: normalises `d` and uses [`div_norm`]
/// instead of a 64-bit division call (≈ 300 instructions on rv32). Exact
/// when `x · 2^lz(d) < 2⁶⁴` (then the quotient is below 2³³); otherwise the
/// quotient is at least 2³² and `u64::MAX` comes back.
fn div_q(x: u64, d: u64) -> u64 {
    debug_assert!(d > 0 && d <= u32::MAX as u64);
    let s = (d as u32).leading_zeros();
    let v = (d as u32) << s;
    // x · 2^s as 96 bits: top (u2), middle (u1), low (u0) words.
    let (hi, lo) = ((x >> 32) as u32, x as u32);
    let (u2, u1, u0) = if s == 0 {
        (0, hi, lo)
    } else {
        (hi >> (32 - s), (hi << s) | (lo >> (32 - s)), lo << s)
    };
    if u2 > 0 {
        return u64::MAX;
    }
    // High quotient word: 0 or 1, as v ≥ 2³¹.
    let (qh, r) = if u1 >= v { (1, u1 - v) } else { (0, u1) };
    ((qh as u64) << 32) | div_norm(r, u0, v) as u64
}

/// `s² / n` rounded down.
#[inline]
fn sq_div(s: i32, n: NonZeroU32) -> u64 {
    let a = s.unsigned_abs() as u64;
    divrem_small(a * a, n).0
}

/// `x · y / n` rounded toward zero.
#[inline]
fn mul_div(x: i32, y: i32, n: NonZeroU32) -> i64 {
    div_signed(x as i64 * y as i64, n)
}

/// `x / n` rounded toward zero (as `i64` division), for `|x| < 2⁶³`.
#[inline]
fn div_signed(x: i64, n: NonZeroU32) -> i64 {
    let q = divrem_small(x.unsigned_abs(), n).0 as i64;
    if x < 0 { -q } else { q }
}

/// `s / n` rounded to nearest, halves away from zero.
#[inline]
fn round_div(s: i32, n: NonZeroU32) -> i32 {
    let q = ((s.unsigned_abs() + n.get() / 2) / n) as i32;
    if s < 0 { -q } else { q }
}

/// sqrt(ss / n) in counts, via an integer square root in Q16.
fn rms_counts(ss: u64, n: u64) -> f64 {
    let q = ((ss as u128) << 32) / n as u128;
    q.isqrt() as f64 / 65_536.0
}

/// sqrt of a Q8 mean square, in counts.
fn sqrt_q8(ms_q8: u64) -> f64 {
    ((ms_q8 as u128) << 24).isqrt() as f64 / 65_536.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Layout, LinearityTable};

    /// xorshift64*, deterministic.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform-ish in `lo..=hi`.
        fn between(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo + 1) as u64) as i64
        }
    }

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn divrem_small_matches_u64_division() {
        let mut r = Rng(0x1234_5678_9abc_def1);
        for k in 0..200_000 {
            // Mix full-width and small dividends, and divisor extremes.
            let x = match k % 3 {
                0 => r.next(),
                1 => r.next() >> (r.next() % 64),
                _ => r.next() % 1_000_000,
            };
            let n = match k % 4 {
                0 => 1,
                1 => 0xFFFF,
                _ => r.between(1, 0xFFFF) as u32,
            };
            let (q, rem) = divrem_small(x, nz(n));
            assert_eq!(q, x / n as u64, "{x} / {n}");
            assert_eq!(rem as u64, x % n as u64, "{x} % {n}");
        }
    }

    #[test]
    fn div_norm_matches_u64_division() {
        let mut r = Rng(0x0bad_cafe_f00d_0001);
        for k in 0..200_000 {
            let v = match k % 3 {
                0 => 1 << 31,
                1 => u32::MAX,
                _ => (r.next() as u32) | 1 << 31,
            };
            let u1 = match k % 5 {
                0 => v - 1,
                1 => 0,
                _ => (r.next() % v as u64) as u32,
            };
            let u0 = r.next() as u32;
            let x = (u1 as u64) << 32 | u0 as u64;
            assert_eq!(div_norm(u1, u0, v) as u64, x / v as u64, "{x} / {v}");
        }
    }

    #[test]
    fn div_q_matches_u64_division_or_saturates() {
        let mut r = Rng(0x5eed_5eed_5eed_5eed);
        let mut exact = 0;
        for k in 0..200_000 {
            let d = match k % 4 {
                0 => r.between(1, 1 << 20) as u64,
                1 => r.between(1 << 31, u32::MAX as i64) as u64,
                _ => (r.next() as u32).max(1) as u64,
            };
            let x = if k % 2 == 0 {
                r.next()
            } else {
                r.next() >> (r.next() % 64)
            };
            let q = div_q(x, d);
            let truth = x / d;
            if (x as u128) << (d as u32).leading_zeros() < 1u128 << 64 {
                assert_eq!(q, truth, "{x} / {d}");
                exact += 1;
            } else {
                assert!(
                    q == truth || (q == u64::MAX && truth >= 1 << 32),
                    "{x} / {d}"
                );
            }
        }
        assert!(exact > 50_000);
        // The two uses: Δ = 2π/period and the interpolator reciprocal.
        for p in [7u64 << 16, 80 << 16, (80 << 16) + 12_345, 501 << 16] {
            assert_eq!(div_q(TWO_PI_Q48, p), TWO_PI_Q48 / p);
        }
        for g in [(1u64 << 31) + 1, 3 << 30, (1 << 32) - 1] {
            assert_eq!(div_q(u64::MAX, g), u64::MAX / g);
        }
    }

    #[test]
    fn cycle_arithmetic_matches_64_bit_reference() {
        let mut r = Rng(0xfeed_beef_0000_0042);
        for _ in 0..200_000 {
            let n = r.between(1, 500) as u32;
            let lim = 5119 * n as i64;
            let s = r.between(-lim, lim) as i32;
            let t = r.between(-lim, lim) as i32;
            let (s64, t64, n64) = (s as i64, t as i64, n as i64);
            assert_eq!(sq_div(s, nz(n)) as i64, s64 * s64 / n64);
            assert_eq!(mul_div(s, t, nz(n)), s64 * t64 / n64);
            let big = r.between(-(1 << 50), 1 << 50);
            assert_eq!(div_signed(big, nz(n)), big / n64);
            // The original rounding: halves away from zero.
            let want = if s >= 0 {
                (s64 + n64 / 2) / n64
            } else {
                -((-s64 + n64 / 2) / n64)
            };
            assert_eq!(round_div(s, nz(n)) as i64, want);
        }
    }

    /// The interpolator gain and the corrected energy factor agree with the
    /// straightforward 128-bit formulas (Δ² = (2π)²·2⁶⁴/p², k·2³²/g) to
    /// within a few parts in 2³², at mains frequencies and sample rates
    /// across the accepted range.
    #[test]
    fn delays_and_energy_factor_match_wide_reference() {
        const FOUR_PI_SQ_Q64: u128 = 728_248_265_982_611_338_390;
        let virt = Layout::ThreePhaseVirtual;
        let single = Layout::SinglePhase { cts: 3 };
        for (rate, hz, layout) in [
            (500u32, 70.0f64, virt),
            (4000, 50.0, virt),
            (4000, 45.3, virt),
            (6000, 61.7, virt),
            (20_000, 40.0, single),
        ] {
            let mut cfg = Config::new(rate, layout);
            cfg.cal.phase_deg = [2.7, -1.3, 4.1];
            cfg.cal.skew_us = [13.0, 0.0, 41.0];
            cfg.cal.v_gain[0] = 0.31;
            cfg.cal.i_gain = [0.09, 0.021, 0.4];
            let mut m = Meter::new(cfg).unwrap();
            m.period_q16 = (rate as f64 / hz * 65_536.0) as i64;
            m.update_delays();
            let p = m.period_q16 as u128;
            let d2 = (FOUR_PI_SQ_Q64 / (p * p)) as u64;
            let omc = d2 / 2 - ((d2 as u128 * d2 as u128) >> 32) as u64 / 24;
            for ct in 0..3 {
                let c = m.vfrac[ct] as u64;
                let x = ((c * (32_768 - c)) * omc) >> 30;
                let g = (1u64 << 32) - x - ((x * x) >> 33);
                let got = m.interp_gain_q32[ct];
                assert!(
                    got.abs_diff(g) <= 4,
                    "gain {got} vs {g} ({rate}/{hz}, ct {ct})"
                );
                let k = ((m.k_q48[ct] as u128) << 32).div_ceil(g as u128) as u64;
                let err = m.k_eff[ct].abs_diff(k) as f64 / k as f64;
                assert!(
                    err < 4e-9,
                    "k_eff {} vs {k} ({rate}/{hz}, ct {ct})",
                    m.k_eff[ct]
                );
            }
        }
    }

    /// Rail-to-rail steps with offsets at the opposite rail give the largest
    /// per-sample values (|v| = 5119); the 32-bit partial sums must hold
    /// them (debug builds check for overflow) and the results stay sane.
    #[test]
    fn extreme_values_do_not_overflow_partial_sums() {
        for layout in [
            Layout::SinglePhase { cts: 1 },
            Layout::SinglePhase { cts: 3 },
            Layout::ThreePhase,
        ] {
            let mut cfg = Config::new(20_000, layout);
            cfg.interval_samples = 2_000;
            let mut points = [-512i16; 33];
            points[16..].fill(4607);
            cfg.cal.linearity = Some(LinearityTable { points });
            cfg.cal.v_offset = [0; 3];
            cfg.cal.i_offset = [0; 3];
            let mut m = Meter::new(cfg).unwrap();
            let nch = cfg.channel_count();
            let mut intervals = 0;
            // Long low stretches pull the offsets to −512, then full-scale
            // highs for a whole (timed-out) cycle, then the reverse.
            for k in 0..40_000u32 {
                let high = (k / 1_500) % 2 == 1;
                let set = [if high { 4095 } else { 0 }; 6];
                if let Some(iv) = m.push(&set[..nch]) {
                    intervals += 1;
                    for ch in 0..iv.n_voltages as usize {
                        assert!(iv.voltages[ch].rms.is_finite());
                    }
                    for ct in 0..iv.n_circuits as usize {
                        assert!(iv.circuits[ct].i_rms.is_finite());
                        assert!(iv.circuits[ct].i_rms >= 0.0);
                    }
                }
            }
            assert!(intervals >= 19, "{intervals}");
        }
    }

    #[test]
    fn short_sets_are_dropped_and_counted() {
        let mut m = Meter::new(Config::new(4000, Layout::SinglePhase { cts: 2 })).unwrap();
        for _ in 0..10 {
            assert!(m.push(&[2048, 2048]).is_none());
        }
        assert!(m.push(&[2048, 2048, 2048]).is_none());
        let iv = m.finish().unwrap();
        assert_eq!(iv.dropped_sets, 10);
        assert_eq!(iv.samples, 1);
    }
}
