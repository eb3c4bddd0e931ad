//! Loads and piecewise load profiles (current rms and phase as a function of
//! time), including a 1-hour varying profile and a household day.

use crate::{Harmonic, MAX_HARMONICS, Rng};
use std::f64::consts::SQRT_2;

/// A steady load: rms current, phase and current harmonics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Total rms current (A), harmonics included.
    pub i_rms: f64,
    /// Angle by which the fundamental current lags its phase voltage
    /// (degrees): 0 = PF 1, 60 = PF 0.5 lagging, −36.87 = PF 0.8 leading,
    /// beyond ±90 = exporting (180 = pure export).
    pub phase_deg: f64,
    harmonics: [Harmonic; MAX_HARMONICS],
    n_harmonics: usize,
}

impl Load {
    /// No current at all.
    pub const OFF: Load = Load {
        i_rms: 0.0,
        phase_deg: 0.0,
        harmonics: [Harmonic {
            order: 1,
            fraction: 0.0,
            phase_deg: 0.0,
        }; MAX_HARMONICS],
        n_harmonics: 0,
    };

    /// A sinusoidal load of `i_rms` amps lagging by `phase_deg`.
    pub fn new(i_rms: f64, phase_deg: f64) -> Self {
        Load {
            i_rms,
            phase_deg,
            ..Load::OFF
        }
    }

    /// The load with a current harmonic added (ignored beyond
    /// [`MAX_HARMONICS`]). The total rms stays `i_rms`.
    pub fn with_harmonic(mut self, h: Harmonic) -> Self {
        if self.n_harmonics < MAX_HARMONICS {
            self.harmonics[self.n_harmonics] = h;
            self.n_harmonics += 1;
        }
        self
    }

    /// The current harmonics.
    pub fn harmonics(&self) -> &[Harmonic] {
        &self.harmonics[..self.n_harmonics]
    }

    /// True if this load's mean power flows back to the grid.
    pub fn exports(&self) -> bool {
        self.phase_deg.to_radians().cos() < 0.0
    }

    /// Instantaneous current (A) when its phase voltage's fundamental angle
    /// is `th` (radians).
    #[inline]
    pub fn current_at(&self, th: f64) -> f64 {
        if self.i_rms == 0.0 {
            return 0.0;
        }
        let x = th - self.phase_deg.to_radians();
        let mut h2 = 0.0;
        let mut i = x.sin();
        for h in &self.harmonics[..self.n_harmonics] {
            h2 += h.fraction * h.fraction;
            i += h.fraction * (h.order as f64 * x + h.phase_deg.to_radians()).sin();
        }
        SQRT_2 * self.i_rms / (1.0 + h2).sqrt() * i
    }
}

/// A load from `start_s` until the next segment starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    /// Start time (s).
    pub start_s: f64,
    /// The load from then on.
    pub load: Load,
}

/// Piecewise-constant load over time (steps are instantaneous).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadProfile {
    segments: Vec<Segment>,
}

impl LoadProfile {
    /// The same load forever.
    pub fn constant(load: Load) -> Self {
        LoadProfile {
            segments: vec![Segment {
                start_s: f64::NEG_INFINITY,
                load,
            }],
        }
    }

    /// `before` until `at_s`, then `after`.
    pub fn step(before: Load, at_s: f64, after: Load) -> Self {
        Self::from_segments(vec![
            Segment {
                start_s: f64::NEG_INFINITY,
                load: before,
            },
            Segment {
                start_s: at_s,
                load: after,
            },
        ])
    }

    /// From segments in any order; before the first one the load is off.
    pub fn from_segments(mut segments: Vec<Segment>) -> Self {
        segments.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        if segments
            .first()
            .is_none_or(|s| s.start_s > f64::NEG_INFINITY)
        {
            segments.insert(
                0,
                Segment {
                    start_s: f64::NEG_INFINITY,
                    load: Load::OFF,
                },
            );
        }
        LoadProfile { segments }
    }

    /// The segments, sorted by start.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The load at time `t`.
    pub fn at(&self, t: f64) -> &Load {
        let k = self.segments.partition_point(|s| s.start_s <= t);
        &self.segments[k.saturating_sub(1)].load
    }

    /// The load at time `t`, using `cursor` as a hint for (mostly)
    /// increasing times.
    #[inline]
    pub fn at_cursor(&self, t: f64, cursor: &mut usize) -> &Load {
        let segs = &self.segments;
        let mut k = (*cursor).min(segs.len() - 1);
        if segs[k].start_s > t {
            k = self
                .segments
                .partition_point(|s| s.start_s <= t)
                .saturating_sub(1);
        } else {
            while k + 1 < segs.len() && segs[k + 1].start_s <= t {
                k += 1;
            }
        }
        *cursor = k;
        &segs[k].load
    }

    /// One hour of varying load on a CT rated `rating_a`: segments of 5 to
    /// 120 s, 10 % of them off, the rest 5 %–120 % of rating (log-uniform)
    /// with power factors between 0.5 lagging and 0.5 leading, some with a
    /// 3rd/5th harmonic, about 10 % exporting.
    pub fn varying_hour(seed: u64, rating_a: f64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5EED_0001);
        let mut segs = Vec::new();
        let mut t = 0.0;
        while t < 3600.0 {
            let u = rng.uniform();
            let load = if u < 0.1 {
                Load::OFF
            } else {
                let i = rating_a * (0.05f64.ln() + rng.uniform() * (1.2f64 / 0.05).ln()).exp();
                let mut phi = rng.range(-60.0, 60.0);
                if u > 0.9 {
                    phi += 180.0;
                }
                let mut l = Load::new(i, phi);
                if rng.uniform() < 0.3 {
                    l = l.with_harmonic(Harmonic::new(
                        3,
                        rng.range(0.0, 0.3),
                        rng.range(0.0, 360.0),
                    ));
                    l = l.with_harmonic(Harmonic::new(
                        5,
                        rng.range(0.0, 0.15),
                        rng.range(0.0, 360.0),
                    ));
                }
                l
            };
            segs.push(Segment { start_s: t, load });
            t += rng.range(5.0, 120.0);
        }
        Self::from_segments(segs)
    }

    /// A household's day (86 400 s, one segment per minute) at 230 V:
    /// fridge cycling, standby, kettle, washing machine, cooking, evening
    /// lights/TV, and rooftop solar peaking at `solar_peak_a` around 13:00
    /// (0 for none). Appliance currents add as phasors, so midday can export.
    pub fn household_day(seed: u64, solar_peak_a: f64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5EED_0002);
        let fridge_phase = rng.range(0.0, 60.0);
        let kettle = [
            rng.range(6.5, 8.0) * 60.0,
            rng.range(15.5, 17.0) * 60.0,
            rng.range(20.5, 22.0) * 60.0,
        ];
        let wash = rng.range(9.5, 12.0) * 60.0;
        let cook = rng.range(17.5, 18.5) * 60.0;
        let mut clouds = [1.0f64; 24 * 4];
        for c in &mut clouds {
            *c = if rng.uniform() < 0.25 {
                rng.range(0.2, 0.8)
            } else {
                1.0
            };
        }
        let mut segs = Vec::with_capacity(1440);
        for minute in 0..1440 {
            let m = minute as f64;
            let mut re = 0.0f64;
            let mut im = 0.0f64;
            let mut add = |i: f64, phi_deg: f64| {
                let p = phi_deg.to_radians();
                re += i * p.cos();
                im -= i * p.sin();
            };
            add(0.35, -30.0); // standby electronics
            if ((m + fridge_phase) % 60.0) < 20.0 {
                add(0.7, 41.0);
            }
            for &k in &kettle {
                if m >= k && m < k + 3.0 {
                    add(9.0, 0.0);
                }
            }
            if m >= wash && m < wash + 60.0 {
                add(if m < wash + 15.0 { 9.0 } else { 2.0 }, 20.0);
            }
            if m >= cook && m < cook + 50.0 && ((m - cook) as u32 % 10) < 6 {
                add(10.0, 0.0);
            }
            if (19.0 * 60.0..23.0 * 60.0).contains(&m) {
                add(1.5, -25.0);
            }
            if solar_peak_a > 0.0 && (6.5 * 60.0..19.5 * 60.0).contains(&m) {
                let x = (m - 13.0 * 60.0) / (6.5 * 60.0);
                let bell = (1.0 - x * x).max(0.0);
                add(solar_peak_a * bell * clouds[minute / 15], 180.0);
            }
            let i = (re * re + im * im).sqrt();
            let phi = if i > 0.0 {
                (-im).atan2(re).to_degrees()
            } else {
                0.0
            };
            segs.push(Segment {
                start_s: m * 60.0,
                load: Load::new(i, phi),
            });
        }
        Self::from_segments(segs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_cursor_agree_with_lookup() {
        let p = LoadProfile::varying_hour(3, 100.0);
        let mut c = 0;
        for k in 0..36_000 {
            let t = k as f64 * 0.1;
            assert_eq!(p.at(t), p.at_cursor(t, &mut c));
        }
        assert_eq!(p.at(-1.0), p.at_cursor(-1.0, &mut c));
    }

    #[test]
    fn household_day_exports_at_noon_with_solar() {
        let p = LoadProfile::household_day(1, 20.0);
        assert!(p.at(13.0 * 3600.0).exports());
        assert!(!p.at(3.0 * 3600.0).exports());
        let q = LoadProfile::household_day(1, 0.0);
        assert!(!q.at(13.0 * 3600.0).exports());
    }
}
