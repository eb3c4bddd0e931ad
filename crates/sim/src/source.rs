//! Synthetic mains + load generator feeding raw 12-bit sample sets.
//!
//! The mains is an exact 50 Hz sine (with a 2 % third harmonic) and the
//! sample rate a multiple of 50 Hz, so one cycle is a whole number of
//! samples: every channel is a small table per load segment, recomputed
//! when the load changes (the loads come from `waveform`'s day profiles,
//! one segment per minute). A cheap dither (±1 count) keeps the ADC honest.
//! Per sample set the cost is a few table lookups, so the metering engine,
//! not the generator, sets the simulator's pace.
//!
//! The source also integrates the true energy per CT (from the same tables,
//! in physical units), for tests.

use std::f64::consts::{SQRT_2, TAU};

use waveform::{Load, LoadProfile, Segment};

/// Volts per ADC count of the simulated voltage channel.
pub const V_PER_COUNT: f64 = 0.25;
/// CT rating the simulated ADC range is scaled for (A).
pub const CT_RATING_A: f64 = 60.0;
/// Mains frequency.
pub const MAINS_HZ: u32 = 50;
/// Mains voltage.
pub const MAINS_V: f64 = 230.0;

/// Amps per ADC count of the simulated CTs.
pub fn a_per_count() -> f64 {
    waveform::amps_per_count_for_rating(CT_RATING_A)
}

/// Which loads a device sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A household day (fridge, kettle, washing machine, cooking, evening).
    Household,
    /// An office/shop: heavy daytime load at PF 0.85, light at night.
    Commercial,
    /// A household with rooftop solar (exports around noon).
    Solar,
}

impl Profile {
    fn day(self, seed: u64) -> LoadProfile {
        match self {
            Profile::Household => LoadProfile::household_day(seed, 0.0),
            Profile::Solar => LoadProfile::household_day(seed, 14.0),
            Profile::Commercial => commercial_day(seed),
        }
    }
}

fn commercial_day(seed: u64) -> LoadProfile {
    let mut rng = waveform::Rng::new(seed ^ 0xC0FF_EE00);
    let mut segs = Vec::with_capacity(1440);
    for minute in 0..1440u32 {
        let h = f64::from(minute) / 60.0;
        let base = if (7.5..18.5).contains(&h) { 18.0 } else { 4.0 };
        let i = base * rng.range(0.85, 1.15);
        segs.push(Segment {
            start_s: f64::from(minute) * 60.0,
            load: Load::new(i, rng.range(20.0, 40.0)),
        });
    }
    LoadProfile::from_segments(segs)
}

/// Streams sample sets for one device: voltage(s) first, then CTs.
pub struct Source {
    rate: u32,
    per_cycle: usize,
    nv: usize,
    nc: usize,
    profile: Profile,
    seed: u64,
    day: u64,
    days: Vec<LoadProfile>,
    cursors: [usize; 3],
    seg_end_s: f64,
    k: u64,
    v_table: Vec<[u16; 3]>,
    i_table: Vec<[u16; 3]>,
    power_w: [f64; 3],
    energy_wh: [f64; 3],
    dither: u64,
}

impl Source {
    /// A source at `rate` sample sets per second (a multiple of 50) for
    /// `nv` voltages (1) and `nc` CTs (1..=3; CT n on phase n when `nc` = 3
    /// and the layout is three-phase), starting at time `start_s` of the
    /// simulated world (seconds since the world's day 0 midnight).
    pub fn new(rate: u32, three_phase: bool, profile: Profile, seed: u64, start_s: f64) -> Self {
        let per_cycle = (rate / MAINS_HZ).max(1) as usize;
        let nc = if three_phase { 3 } else { 1 };
        let mut s = Self {
            rate,
            per_cycle,
            nv: 1,
            nc,
            profile,
            seed,
            day: u64::MAX,
            days: Vec::new(),
            cursors: [0; 3],
            seg_end_s: f64::NEG_INFINITY,
            k: (start_s.max(0.0) * f64::from(rate)) as u64,
            v_table: vec![[2048; 3]; per_cycle],
            i_table: vec![[2048; 3]; per_cycle],
            power_w: [0.0; 3],
            energy_wh: [0.0; 3],
            dither: seed | 1,
        };
        s.build_v_table();
        s
    }

    /// Values per sample set.
    pub fn channel_count(&self) -> usize {
        self.nv + self.nc
    }

    /// Sample sets per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Simulated time of the next sample set (s since world day 0).
    pub fn time_s(&self) -> f64 {
        self.k as f64 / f64::from(self.rate)
    }

    /// Skips ahead (a power outage: no samples are taken meanwhile).
    pub fn skip_to(&mut self, t_s: f64) {
        let k = (t_s * f64::from(self.rate)) as u64;
        if k > self.k {
            self.k = k;
            self.seg_end_s = f64::NEG_INFINITY;
        }
    }

    /// True energy fed so far per CT (Wh, net of export), from the signal.
    pub fn energy_wh(&self) -> [f64; 3] {
        self.energy_wh
    }

    fn build_v_table(&mut self) {
        let vpk = SQRT_2 * MAINS_V / (1.0f64 + 0.02 * 0.02).sqrt();
        for (k, row) in self.v_table.iter_mut().enumerate() {
            let th = TAU * k as f64 / self.per_cycle as f64;
            let v = vpk * (th.sin() + 0.02 * (3.0 * th).sin());
            row[0] = (2048.0 + v / V_PER_COUNT).round().clamp(0.0, 4095.0) as u16;
        }
    }

    fn load_for(&mut self, ct: usize, t: f64) -> (Load, f64) {
        let day = (t / 86_400.0).floor().max(0.0) as u64;
        if day != self.day {
            self.day = day;
            self.days = (0..self.nc as u64)
                .map(|c| {
                    self.profile
                        .day(self.seed.wrapping_mul(31).wrapping_add(day * 7 + c))
                })
                .collect();
            self.cursors = [0; 3];
        }
        let t_day = t - day as f64 * 86_400.0;
        let prof = &self.days[ct];
        let load = *prof.at_cursor(t_day, &mut self.cursors[ct]);
        let next = prof
            .segments()
            .get(self.cursors[ct] + 1)
            .map_or(86_400.0, |s| s.start_s.min(86_400.0));
        (load, day as f64 * 86_400.0 + next)
    }

    fn rebuild_loads(&mut self) {
        let t = self.time_s();
        let mut end = f64::INFINITY;
        let vpk = SQRT_2 * MAINS_V / (1.0f64 + 0.02 * 0.02).sqrt();
        for ct in 0..self.nc {
            let (load, seg_end) = self.load_for(ct, t);
            end = end.min(seg_end);
            let shift = if self.nc == 3 {
                ct as f64 * TAU / 3.0
            } else {
                0.0
            };
            let mut p = 0.0;
            for k in 0..self.per_cycle {
                let th = TAU * k as f64 / self.per_cycle as f64 - shift;
                let i = load.current_at(th);
                let v = vpk * (th.sin() + 0.02 * (3.0 * th).sin());
                p += v * i;
                self.i_table[k][ct] =
                    (2048.0 + i / a_per_count()).round().clamp(0.0, 4095.0) as u16;
            }
            self.power_w[ct] = p / self.per_cycle as f64;
        }
        self.seg_end_s = end.max(t + 1.0 / f64::from(self.rate));
    }

    /// Fills `out` with whole sample sets, never past simulated time
    /// `until_s`; returns the number of sets written.
    pub fn fill(&mut self, out: &mut [u16], until_s: f64) -> usize {
        let n = self.channel_count();
        let mut sets = 0;
        let until_k = (until_s * f64::from(self.rate)) as u64;
        let dt_h = 1.0 / f64::from(self.rate) / 3600.0;
        for chunk in out.chunks_exact_mut(n) {
            if self.k >= until_k {
                break;
            }
            if self.time_s() >= self.seg_end_s {
                self.rebuild_loads();
            }
            let phase = (self.k % self.per_cycle as u64) as usize;
            // xorshift dither: -1, 0 or +1 count on each channel.
            self.dither ^= self.dither << 13;
            self.dither ^= self.dither >> 7;
            self.dither ^= self.dither << 17;
            let d = self.dither;
            let v = self.v_table[phase][0];
            chunk[0] = dith(v, d);
            for ct in 0..self.nc {
                chunk[1 + ct] = dith(self.i_table[phase][ct], d >> (8 * (ct + 1)));
            }
            for ct in 0..self.nc {
                self.energy_wh[ct] += self.power_w[ct] * dt_h;
            }
            self.k += 1;
            sets += 1;
        }
        sets
    }
}

#[inline]
fn dith(x: u16, d: u64) -> u16 {
    match d & 3 {
        0 => x.saturating_sub(1),
        1 => (x + 1).min(4095),
        _ => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_whole_sets_up_to_the_limit() {
        let mut s = Source::new(500, true, Profile::Household, 1, 0.0);
        let mut buf = vec![0u16; 4 * 1000];
        assert_eq!(s.fill(&mut buf, 1.0), 500);
        assert_eq!(s.fill(&mut buf, 1.0), 0);
        assert!((s.time_s() - 1.0).abs() < 1e-9);
        assert!(buf.iter().all(|&x| x <= 4095));
        // The voltage channel swings around mid-scale by about 325 V peak.
        let vmax = buf.chunks(4).map(|c| c[0]).max().unwrap();
        assert!(vmax > 2048 + 1200 && vmax < 2048 + 1400, "{vmax}");
    }
}
